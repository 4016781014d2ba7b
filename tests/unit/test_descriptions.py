"""Device descriptions: the shipped examples, and every kind of bad file, message by message."""

from __future__ import annotations

from pathlib import Path

import pytest

from llamas_ebpf.devices.descriptions import DescriptionError, load_dir, load_file

EXAMPLES = Path(__file__).resolve().parents[2] / "devices"
GOOD = """schema = "llamas.device/v1"
name = "slow-node"
kind = "memory"
type = "pmem"
summary = "a slow node"

[match]
numa_node = 2

[properties]
read_latency_ns = 300
"""


def test_examples_load():
    loaded, errors = load_dir(EXAMPLES)
    assert errors == []
    assert {d.description.type for d in loaded} == {"dram", "cxl", "pmem", "hbm", "gpu", "nic"}
    assert len(loaded) == 6


def error_of(tmp_path: Path, text: str | bytes, name: str = "bad.toml") -> str:
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    result = load_file(path)
    assert isinstance(result, DescriptionError), result
    return str(result)


@pytest.mark.parametrize("text, expected", [
    (GOOD.replace("[properties]", "[properties"), ":10: bad TOML:"),
    (GOOD.replace("read_latency_ns = 300", "read_latency = 300"),
     ":11: properties.read_latency: unknown field"),
    (GOOD.replace('name = "slow-node"\n', ""), ": name: required field missing"),
    (GOOD.replace("read_latency_ns = 300", 'read_latency_ns = "fast"'),
     ":11: properties.read_latency_ns: Input should be a valid integer"),
    (GOOD.replace("read_latency_ns = 300", "read_latency_ns = -5"),
     ":11: properties.read_latency_ns: Input should be greater than 0"),
    (GOOD.replace("numa_node = 2", 'numa_node = 2\nnic = "eth0"'),
     ": match: give exactly one of numa_node, pci_address, pci_id, cxl_memdev, nic (got numa_node, nic)"),
    (GOOD.replace('kind = "memory"', 'kind = "gpu"'),
     ": a gpu device is matched by pci_address or pci_id, not numa_node"),
    (GOOD.replace('schema = "llamas.device/v1"', 'schema = "llamas.device/v9"'),
     ":1: schema: Input should be"),
    (GOOD.replace('type = "pmem"', 'type = "tape"'), ":4: type: Input should be"),
    (GOOD.replace("numa_node = 2", 'pci_id = "10DE:2331"'), ": match.pci_id: String should match pattern"),
    (GOOD.replace("read_latency_ns = 300", "read_latency_ns = 300\ncapacity_gb = inf"), ":12: inf is not a finite number"),
    (GOOD.replace("read_latency_ns = 300", "read_latency_ns = 300\ncapacity_gb = -nan"), ":12: -nan is not a finite"),
    ("a = " + "[" * 100_000 + "]" * 100_000, ": bad TOML: nested too deeply"),
    ("a = " + "{b = " * 20_000 + "1" + "}" * 20_000, ": bad TOML: nested too deeply"),
])
def test_each_error_names_file_line_and_field(tmp_path, text, expected):
    message = error_of(tmp_path, text)
    assert message.startswith(str(tmp_path / "bad.toml"))
    assert expected in message, message
    assert "\n" not in message


def test_not_utf8(tmp_path):
    message = error_of(tmp_path, GOOD.encode().replace(b"a slow node", b"a slow \xff node"))
    assert message == f"{tmp_path / 'bad.toml'}:5: not UTF-8 text"


def test_bad_files_do_not_stop_good_ones(tmp_path):
    (tmp_path / "a-good.toml").write_text(GOOD)
    (tmp_path / "b-bad.toml").write_text("name = [")
    (tmp_path / "c-same-name.toml").write_text(GOOD)
    (tmp_path / "notes.txt").write_text("not a description")
    loaded, errors = load_dir(tmp_path)
    assert [d.description.name for d in loaded] == ["slow-node"]
    assert [e.path.name for e in errors] == ["b-bad.toml", "c-same-name.toml"]
    assert "'slow-node' is already described in a-good.toml" in str(errors[1])
    assert str(errors[1]).startswith(f"{tmp_path / 'c-same-name.toml'}:2: name:")


def test_missing_directory_is_no_descriptions(tmp_path):
    assert load_dir(tmp_path / "nope") == ([], [])
