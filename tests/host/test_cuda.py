"""The CUDA uprobes against a real shared library with the driver's symbol names."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from llamas_ebpf.sense import Sensor
from tests.conftest import ROOT, require

K, B = 37, 1 << 20


@pytest.fixture(scope="module")
def stub(tmp_path_factory) -> Path:
    require(subprocess.run(["which", "gcc"], capture_output=True).returncode == 0, "gcc missing")
    out = tmp_path_factory.mktemp("cuda")
    lib = out / "libcuda.so.1"
    helpers = ROOT / "tests/helpers"
    subprocess.run(["gcc", "-O0", "-shared", "-fPIC", "-o", lib, helpers / "cuda_stub.c"], check=True)
    subprocess.run(["gcc", "-O0", "-o", out / "cuda_caller", helpers / "cuda_caller.c",
                    "-L", out, "-l:libcuda.so.1", f"-Wl,-rpath,{out}"], check=True)
    return out


# alone: its own object; shared: in the sensor's one object with other probes (bundle.py)
@pytest.mark.parametrize("only", [{"cuda"}, {"cuda", "faults", "page_migrate"}], ids=["alone", "shared"])
def test_calls_and_bytes_are_exact(stub, only):
    with Sensor(cuda_lib=stub / "libcuda.so.1", only=only) as sensor:
        assert sensor.health["cuda"].status == "ok", sensor.health["cuda"].reason
        assert ("cuda" in sensor.bundle.health) == (len(only) > 1), sensor.bundle.note
        child = subprocess.Popen([stub / "cuda_caller", str(K), str(B)], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, text=True)
        child.communicate("go\n", timeout=30)
        assert child.returncode == 0
        snap = sensor.collect()
    sample = snap.process(child.pid)
    assert sample is not None
    calls, nbytes = sample.gpu.calls, sample.gpu.bytes
    assert calls["cuCtxCreate_v2"] == 1
    for symbol in ("cuMemAlloc_v2", "cuMemAllocManaged", "cuMemcpyHtoD_v2", "cuMemcpyDtoH_v2",
                   "cuMemcpyHtoDAsync_v2", "cuMemcpyDtoHAsync_v2", "cuLaunchKernel",
                   "cuMemPrefetchAsync", "cuMemAdvise"):
        assert calls[symbol] == K, symbol
    assert calls["cuMemFree_v2"] == 2 * K
    for symbol in ("cuMemAlloc_v2", "cuMemAllocManaged", "cuMemcpyHtoD_v2", "cuMemcpyDtoH_v2",
                   "cuMemcpyHtoDAsync_v2", "cuMemcpyDtoHAsync_v2", "cuMemPrefetchAsync",
                   "cuMemAdvise"):
        assert nbytes[symbol] == K * B, symbol
    # frees carry the size remembered from the allocation's return
    assert nbytes["cuMemFree_v2"] == 2 * K * B


def test_missing_library_is_unavailable_with_reason(tmp_path):
    with Sensor(cuda_lib=tmp_path / "nope.so", only={"cuda"}) as sensor:
        health = sensor.health["cuda"]
    assert health.status == "unavailable"
    assert "no such file" in health.reason
    assert os.environ.get("LD_PRELOAD") is None
