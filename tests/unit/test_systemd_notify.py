"""sd_notify(3) as llamas speaks it, to a real AF_UNIX datagram socket: a path, and an abstract
name ('@...'), and nothing at all outside systemd."""

from __future__ import annotations

import os
import socket

import pytest

from llamas_ebpf.systemd import notify


@pytest.mark.parametrize("abstract", [False, True])
def test_ready_reaches_the_socket(tmp_path, monkeypatch, abstract):
    name = f"\0llamas-test-{os.getpid()}" if abstract else str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(name)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name[1:] if abstract else name)
        assert notify("READY=1", "STATUS=keeping generation 3 in force")
        assert server.recv(4096) == b"READY=1\nSTATUS=keeping generation 3 in force"


def test_nothing_happens_outside_systemd(monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert notify("READY=1") is False
    monkeypatch.setenv("NOTIFY_SOCKET", "relative-is-not-a-socket")
    assert notify("READY=1") is False
