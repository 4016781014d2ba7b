from __future__ import annotations

from pathlib import Path

import pytest

from llamas_ebpf.kernel import cpulist, nodes, tracefs

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


def test_cpulist_round_trip():
    assert cpulist.parse("0-3,8,10-11\n") == [0, 1, 2, 3, 8, 10, 11]
    assert cpulist.format([11, 10, 8, 3, 2, 1, 0]) == "0-3,8,10-11"
    assert cpulist.parse("") == []
    for bad in ("3-1", "a", "-2"):
        with pytest.raises(ValueError):
            cpulist.parse(bad)


def test_migrate_reasons_come_from_the_format_file():
    text = (FIXTURES / "tracefs/mm_migrate_pages.format").read_text()
    reasons = tracefs.parse_symbolic(text, "reason")
    assert reasons[0] == "compaction"
    assert reasons[3] == "syscall_or_cpuset"
    assert reasons[5] == "numa_misplaced"
    assert reasons[8] == "demotion"
    modes = tracefs.parse_symbolic(text, "mode")
    assert modes == {0: "MIGRATE_ASYNC", 1: "MIGRATE_SYNC_LIGHT", 2: "MIGRATE_SYNC"}
    # a kernel that renumbers the reasons is read as it says
    shifted = text.replace('{0, "compaction"}', '{42, "compaction"}')
    assert tracefs.parse_symbolic(shifted, "reason")[42] == "compaction"


def _two_node_tree(tmp_path: Path) -> Path:
    base = tmp_path / "sys/devices/system/node"
    for node, cpus in ((0, "0-1"), (1, "2-3"), (2, "")):
        (base / f"node{node}").mkdir(parents=True)
        (base / f"node{node}/cpulist").write_text(cpus + "\n")
    (base / "online").write_text("0-2\n")
    (tmp_path / "proc").mkdir()
    (tmp_path / "proc/zoneinfo").write_text(
        "Node 0, zone      DMA\n  pages free 1\n        spanned  4095\n  start_pfn:           1\n"
        "Node 0, zone    DMA32\n        spanned  258048\n  start_pfn:           4096\n"
        "Node 1, zone   Normal\n        spanned  262144\n  start_pfn:           262144\n"
        "Node 1, zone  Movable\n        spanned  0\n"
        "Node 2, zone   Normal\n        spanned  262144\n  start_pfn:           524288\n"
    )
    return tmp_path


def test_nodes_from_a_fixture_root(tmp_path):
    root = _two_node_tree(tmp_path)
    assert nodes.node_ids(root) == [0, 1, 2]
    assert nodes.cpu_to_node(root) == {0: 0, 1: 0, 2: 1, 3: 1}
    assert nodes.node_cpus(2, root) == []
    assert nodes.pfn_ranges(root) == [
        nodes.PfnRange(1, 262144, 0),
        nodes.PfnRange(262144, 524288, 1),
        nodes.PfnRange(524288, 786432, 2),
    ]


def test_room_is_free_memory_above_each_zones_watermark_and_reserve(tmp_path):
    """As the lab's 1 GiB node 0 has it: of 244,560 free pages, 3712 in the DMA zone (991 kept
    back from user allocations, 174 high watermark) and a DMA32 high watermark of 11,517."""
    (tmp_path / "proc").mkdir()
    (tmp_path / "proc/zoneinfo").write_text(
        "Node 0, zone      DMA\n  pages free     3712\n        min      116\n        low      145\n"
        "        high     174\n        managed  3840\n        protection: (0, 991, 991, 991, 991)\n"
        "  pagesets\n    cpu: 0\n              count: 0\n              high:  0\n"
        "Node 0, zone    DMA32\n  pages free     240848\n        min      7679\n        low      9598\n"
        "        high     11517\n        managed  253839\n        protection: (0, 0, 0, 0, 0)\n"
        "  pagesets\n    cpu: 0\n              count: 12\n              high:  9598\n"
        "Node 0, zone   Normal\n  pages free     0\n        min      0\n        low      0\n"
        "        high     0\n        managed  0\n        protection: (0, 0, 0, 0, 0)\n"
        "Node 1, zone    DMA32\n  pages free     216632\n        min      6948\n        low      8685\n"
        "        high     10422\n        managed  231966\n        protection: (0, 0, 0, 0, 0)\n"
    )
    assert nodes.room_pages(0, tmp_path) == (3712 - 174 - 991) + (240848 - 11517)
    assert nodes.room_pages(1, tmp_path) == 216632 - 10422
    assert nodes.room_pages(2, tmp_path) == 0
    assert nodes.room_pages(0, tmp_path / "nowhere") is None
