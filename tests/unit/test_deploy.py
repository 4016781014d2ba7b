"""What ships for running llamas as a service checks out structurally: the Kubernetes DaemonSet
has what the daemon needs from the host, and the systemd unit keeps only the capabilities
benchmarks/capabilities.py measured."""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def test_daemonset_has_what_the_daemon_needs():
    doc = yaml.safe_load((ROOT / "deploy/kubernetes/llamas-daemonset.yaml").read_text())
    assert doc["kind"] == "DaemonSet" and doc["apiVersion"] == "apps/v1"
    spec = doc["spec"]["template"]["spec"]
    assert doc["spec"]["selector"]["matchLabels"].items() <= doc["spec"]["template"]["metadata"]["labels"].items()
    assert spec["hostPID"] is True
    (container,) = spec["containers"]
    assert container["securityContext"]["privileged"] is True
    assert container["args"][0] == "run" and "--metrics" in container["args"]
    port = container["args"][container["args"].index("--metrics") + 1].rsplit(":", 1)[1]
    assert {p["containerPort"] for p in container["ports"]} == {int(port)}
    assert doc["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"] == port
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    for needed in ("/sys/fs/bpf", "/sys/kernel/tracing", "/sys/kernel/debug", "/lib/modules", "/usr/src",
                   "/var/lib/llamas"):
        assert needed in mounts, needed
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert set(mounts.values()) <= set(volumes)
    for path, name in mounts.items():
        if "hostPath" in volumes[name]:
            assert volumes[name]["hostPath"]["path"] == path
    key = next(e for e in container["env"] if e["name"] == "ANTHROPIC_API_KEY")
    assert "secretKeyRef" in key["valueFrom"] and "value" not in key  # never in the manifest itself
    assert spec["terminationGracePeriodSeconds"] >= 60  # time to roll back on SIGTERM


def test_unit_is_hardened_and_notifies():
    lines = (ROOT / "llamas_ebpf/units/llamas.service").read_text().splitlines()
    settings = dict(line.split("=", 1) for line in lines if "=" in line and not line.startswith("#"))
    assert settings["Type"] == "notify" and settings["Restart"] == "on-failure"
    assert settings["ProtectSystem"] == "strict" and "/var/lib/llamas" in settings["ReadWritePaths"]
    assert set(settings["CapabilityBoundingSet"].split()) == {"CAP_SYS_ADMIN", "CAP_SYS_NICE", "CAP_SYS_PTRACE"}
    assert settings["ExecStart"].startswith("@LLAMAS@ run ") and "ANTHROPIC" not in settings["ExecStart"]
    assert settings["EnvironmentFile"].startswith("-/etc/llamas/")
