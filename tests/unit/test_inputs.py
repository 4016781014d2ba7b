"""The one bounded reader (llamas_ebpf/inputs.py), and the inputs that go through it: what is not
a regular file is refused before a byte is read (a FIFO does not block), what is too big is
refused at its limit, and each refusal is one line naming the input."""

from __future__ import annotations

import io
import os
import sys
import threading
from pathlib import Path

import pytest

from llamas_ebpf import config, inputs
from llamas_ebpf.devices.descriptions import load_file
from llamas_ebpf.errors import LlamasError
from llamas_ebpf.paths import Paths
from llamas_ebpf.snapshot import load


def _refused(call, *args) -> str:
    with pytest.raises(LlamasError) as caught:
        call(*args)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_a_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "policy.json"
    os.mkfifo(fifo)
    done: list[str] = []
    reader = threading.Thread(target=lambda: done.append(_refused(inputs.read_bytes, fifo, 100)), daemon=True)
    reader.start()
    reader.join(5)  # nobody ever writes to it
    assert done == [f"{fifo}: a FIFO, not a regular file"]


@pytest.mark.parametrize(("path", "kind"), [("/dev/zero", "a character device"), ("/", "a directory")])
def test_devices_and_directories_are_refused(path, kind):
    assert _refused(inputs.read_bytes, Path(path), 100) == f"{path}: {kind}, not a regular file"


def test_a_file_over_its_limit_is_refused_and_one_at_it_is_read(tmp_path):
    big = tmp_path / "big.json"
    big.write_bytes(b"x" * 2048)
    assert _refused(inputs.read_bytes, big, 1024) == f"{big}: 2,048 bytes, more than 1 KiB, the most llamas reads here"
    assert inputs.read_bytes(big, 2048) == b"x" * 2048
    assert _refused(inputs.read_bytes, tmp_path / "none", 10) == f"{tmp_path / 'none'}: No such file or directory"


def test_stdin_is_read_up_to_its_limit(monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"y" * (1 << 17))))
    assert _refused(inputs.read_bytes, Path("-"), 1 << 16) == "stdin: more than 64 KiB, the most llamas reads here"
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"{}")))
    assert inputs.read_bytes(Path("-"), 1 << 16) == b"{}"


def test_every_outside_input_goes_through_it(tmp_path, monkeypatch):
    """Snapshots, descriptions and config.toml: binary, oversized or special files end in one
    line, never a traceback (a binary snapshot was a UnicodeDecodeError)."""
    binary = tmp_path / "snaps.jsonl"
    binary.write_bytes(b'{"schema"\xff\xfe\n')
    assert _refused(lambda: list(load(binary))) == f"{binary}: not UTF-8 text (line 1)"
    assert _refused(lambda: list(load(Path("/dev/zero")))) == "/dev/zero: a character device, not a regular file"
    huge = tmp_path / "gpu.toml"
    huge.write_bytes(b"#" * (inputs.DESCRIPTION_BYTES + 1))
    assert str(load_file(huge)) == (f"{huge}: {inputs.DESCRIPTION_BYTES + 1:,} bytes, more than 256 KiB, the "
                                    "most llamas reads here")
    etc = tmp_path / "etc"
    etc.mkdir()
    os.mkfifo(etc / "config.toml")
    monkeypatch.setenv("LLAMAS_CONFIG_DIR", str(etc))
    assert _refused(config.load, Paths.from_env()) == f"{etc / 'config.toml'}: a FIFO, not a regular file"


def test_a_policy_document_from_a_fifo_or_over_a_mebibyte_is_one_line(tmp_path):
    """What `llamas policy apply FILE` reads the document with."""
    from llamas_ebpf.commands.policy import read_document

    fifo = tmp_path / "doc.json"
    os.mkfifo(fifo)
    assert _refused(read_document, fifo) == f"{fifo}: a FIFO, not a regular file"
    big = tmp_path / "big.json"
    big.write_bytes(b" " * (inputs.POLICY_BYTES + 1))
    assert "more than 1 MiB" in _refused(read_document, big)
