"""The facts Python reads from bpf/*.h: defines and struct layouts, and what is built on them
(CompiledRule.pack against struct rule_value, byte for byte)."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from llamas_ebpf import bpf_headers
from llamas_ebpf.policy.maps import MASK_WORDS, RULE_CPU, RULE_FORMAT, RULE_MEMORY, CompiledRule
from llamas_ebpf.probes.base import expand_source

BPF = Path(__file__).resolve().parents[2] / "bpf"


def test_defines_are_read_from_the_headers():
    h = bpf_headers.defines("llamas.h", BPF)
    assert h["LLAMAS_MAX_NODES"] == 16 and h["LLAMAS_REGION_SHIFT"] == 21 and h["HEALTH_SLOTS"] == 5
    slots = [h[f"HEALTH_{n}"] for n in ("PROC_INSERTS", "PROC_FULL", "REGION_INSERTS", "REGION_FULL", "DROPS")]
    assert slots == list(range(h["HEALTH_SLOTS"]))  # one slot each, none past the array
    p = bpf_headers.defines("llamas_policy.h", BPF)
    assert p["NO_POLICY"] == 0xFFFFFFFF and p["RULE_MASK_WORDS"] == 4
    assert len({p[f"REQ_{k}"] for k in ("CLASSIFIED", "VIOLATION", "HOT_REGION", "EXEC")}) == 4


@pytest.mark.parametrize(("name", "fmt", "size"), [
    ("rule_value", "<4QiiII", 48),  # cpumask[RULE_MASK_WORDS], home_node, demote_node, hot_faults, flags
    ("comm_key", "<I16s", 20),
    ("cgroup_key", "<IIQ", 16),
    ("request", "<IIIIQ", 24),
])
def test_policy_structs_have_c_layouts(name, fmt, size):
    layout = bpf_headers.layout("llamas_policy.h", name, BPF)
    assert (layout.format, layout.size) == (fmt, size)


def test_natural_alignment_pads_like_clang(tmp_path):
    (tmp_path / "t.h").write_text("#define N 3\nstruct s {\n    u32 a;   /* pad follows */\n    u64 b;\n"
                                  "    char c[N];\n};\n")
    layout = bpf_headers.layout("t.h", "s", tmp_path)
    assert layout.size == 24 and layout.unpack(struct.pack("<I4xQ3s5x", 1, 2, b"abc")) == (1, 2, b"abc")


def test_a_field_it_cannot_read_is_an_error_not_a_guess(tmp_path):
    (tmp_path / "t.h").write_text("struct s {\n    void *p;\n};\n")
    with pytest.raises(ValueError, match="cannot read"):
        bpf_headers.layout("t.h", "s", tmp_path)


def test_compiled_rule_packs_into_struct_rule_value():
    rule = CompiledRule(cpus=[0, 3, 64, 255], home_node=1, demote_node=2, hot_faults=8)
    *mask, home, demote, hot, flags = RULE_FORMAT.unpack(rule.pack())
    assert len(mask) == MASK_WORDS and mask == [0b1001, 1, 0, 1 << 63]
    assert (home, demote, hot, flags) == (1, 2, 8, RULE_CPU | RULE_MEMORY)
    none = CompiledRule(cpus=[], home_node=-1, demote_node=-1, hot_faults=0)
    assert RULE_FORMAT.unpack(none.pack())[-4:] == (-1, -1, 0, 0)


def test_helpers_expand_on_their_own_line():
    text = "a\nLLAMAS_HEALTH(faults);\nLLAMAS_LOOKUP_OR_INIT(m, u32, struct v, faults, REGION);\nb"
    lines = expand_source(text).split("\n")
    assert len(lines) == 4 and lines[0] == "a" and lines[3] == "b"
    assert "BPF_PERCPU_ARRAY(faults_health, u64, HEALTH_SLOTS)" in lines[1]
    assert "struct v *m_get(u32 *key)" in lines[2] and "HEALTH_REGION_INSERTS : HEALTH_REGION_FULL" in lines[2]
    sampled = expand_source("LLAMAS_SAMPLED(faults);")
    assert "BPF_PERCPU_ARRAY(faults_rate, struct sample_rate, 1)" in sampled
    assert "u64 faults_weight(void)" in sampled and "bpf_jiffies64()" in sampled
    assert bpf_headers.layout("llamas.h", "sample_rate", BPF).format == "<QQQQ"
    with pytest.raises(ValueError, match="PROC nor REGION"):
        expand_source("LLAMAS_LOOKUP_OR_INIT(m, u32, struct v, faults, OTHER);")
    with pytest.raises(ValueError, match="arguments"):
        expand_source("LLAMAS_HEALTH(a, b);")
