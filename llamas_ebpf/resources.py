"""The files llamas ships beside its code: the BPF sources and headers, the example device
descriptions. In a wheel they are package data (llamas_ebpf/bpf/, llamas_ebpf/example_devices/,
pyproject.toml maps them there from the repository's top-level bpf/ and devices/); in a
checkout installed editable they are those top-level folders. Found through importlib.resources,
so an installed llamas runs from any directory."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from llamas_ebpf.errors import LlamasError

_CHECKOUT = Path(__file__).resolve().parent.parent


def _folder(packaged: str, in_checkout: str) -> Path:
    inside = resources.files("llamas_ebpf") / packaged
    if inside.is_dir():
        return Path(str(inside))
    checkout = _CHECKOUT / in_checkout
    if checkout.is_dir():
        return checkout
    raise LlamasError(f"llamas is installed without its {in_checkout}/ folder (looked in {inside} and "
                      f"{checkout}): reinstall it from a wheel or a checkout")


def bpf_dir() -> Path:
    """The BPF sources and headers."""
    return _folder("bpf", "bpf")


def example_devices() -> Path:
    """The documented example device descriptions."""
    return _folder("example_devices", "devices")
