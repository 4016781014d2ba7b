"""`llamas devices` on the live host: the kernel's facts, capture and read-back, error exits."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from llamas_ebpf.kernel import nodes
from tests.host.conftest import llamas

EXAMPLES = Path(__file__).resolve().parents[2] / "devices"


def test_live_inventory_matches_sysfs(tmp_path):
    result = llamas("devices", "--json", "--devices", str(tmp_path))
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert [n["id"] for n in data["nodes"]] == nodes.node_ids()
    for node in data["nodes"]:
        assert node["cpus"] == nodes.node_cpus(node["id"])
        assert node["memory_mb"] == nodes.memory_mb(node["id"])
    assert data["undescribed"][: len(data["nodes"])] == [f"node{n}" for n in nodes.node_ids()]


def test_capture_reads_back_the_same(tmp_path):
    capture = tmp_path / "tree"
    assert llamas("devices", "--capture", str(capture)).returncode == 0
    # The tree is meant to be shared: read it back from a git clone, which keeps no empty directories.
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C"]
    subprocess.run([*git, str(capture), "init", "-q"], check=True)
    subprocess.run([*git, str(capture), "add", "-A"], check=True)
    subprocess.run([*git, str(capture), "commit", "-q", "-m", "capture"], check=True)
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(capture), str(clone)], check=True)
    live = json.loads(llamas("devices", "--json", "--devices", str(EXAMPLES)).stdout)
    again = json.loads(
        llamas("devices", "--json", "--devices", str(EXAMPLES), "--sysfs-root", str(clone)).stdout
    )
    for key in ("nodes", "nics", "gpus", "cxl", "dax", "conflicts", "undescribed", "described_absent"):
        assert again[key] == live[key], key
    refused = llamas("devices", "--capture", str(capture))
    assert refused.returncode == 2 and "not empty" in refused.stderr


def test_bad_description_still_prints_the_inventory(tmp_path):
    (tmp_path / "good.toml").write_text((EXAMPLES / "dram-socket.toml").read_text())
    (tmp_path / "bad.toml").write_text('schema = "llamas.device/v1"\nname = "x"\nkind = "memory"\n')
    result = llamas("devices", "--json", "--devices", str(tmp_path))
    assert result.returncode == 1
    expected = f"llamas: {tmp_path / 'bad.toml'}: type: required field missing (and 2 more)"
    assert result.stderr.strip() == expected
    data = json.loads(result.stdout)
    assert [d["name"] for d in data["descriptions"]] == ["dram-sockets"]
    assert data["description_errors"] == [result.stderr.strip().removeprefix("llamas: ")]


def test_not_a_sysfs_root(tmp_path):
    result = llamas("devices", "--sysfs-root", str(tmp_path))
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "not a sysfs root" in result.stderr
