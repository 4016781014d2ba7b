"""The lab: a multi-node, tiered-memory Linux guest in QEMU (through virtme-ng), sharing this
host's root filesystem read-only, so the project's venv and BCC work inside it.

The root is shared over virtio-fs (scripts/virtiofsd-shim where only QEMU's C virtiofsd is
installed) rather than virtme-ng's fallback, 9p with cache=none, which under TCG makes a round
trip of every file read: Python imports and BCC's compiles run 2-3x faster in the guest.

Topologies are described to the guest through ACPI HMAT, so the guest kernel builds its own
memory tiers from latencies and bandwidths, as it would on real hardware.
"""

from __future__ import annotations

import functools
import glob
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from llamas_ebpf.errors import LlamasError

STARTED = "@@llamas-lab-started@@"
ENDED = "@@llamas-lab-ended@@"
# a line of the guest kernel's console (printk's timestamp), kept apart from the command's output
_KERNEL_LINE = re.compile(r"^\[\s*\d+\.\d+\] ")
# what a guest kernel says when it dies (the guest runs with panic=-1: a panic ends QEMU at once)
_KERNEL_DEATH = ("BUG:", "Oops", "general protection fault", "Kernel panic")
_CONSOLE_STARTED = "==== llamas-lab: the command started ===="
# what scripts/lab says of a guest that died with nothing on its console (the lab tier reboots those)
QEMU_ENDED = "QEMU itself ended"


@dataclass(frozen=True)
class Link:
    """What an initiator (a node with CPUs) sees of a memory target."""

    read_latency_ns: int
    write_latency_ns: int
    read_bandwidth_mbps: int
    write_bandwidth_mbps: int


@dataclass(frozen=True)
class Topology:
    name: str
    memory_mb: tuple[int, ...]  # per node
    cpus: tuple[int | None, ...]  # per node: its one CPU, or None for a CPU-less node
    links: dict[tuple[int, int], Link]  # (initiator, target) -> performance
    split_read_write: bool  # describe reads and writes apart (else one access figure)

    @property
    def initiators(self) -> list[int]:
        return [n for n, cpu in enumerate(self.cpus) if cpu is not None]


def _links(local: Link, remote: Link, slow: Link | None, nodes: int) -> dict[tuple[int, int], Link]:
    result: dict[tuple[int, int], Link] = {}
    for initiator in (0, 1):
        for target in range(nodes):
            if target == initiator:
                result[initiator, target] = local
            elif target in (0, 1):
                result[initiator, target] = remote
            else:
                assert slow is not None
                result[initiator, target] = slow
    return result


DRAM_LOCAL = Link(80, 80, 20000, 20000)
DRAM_REMOTE = Link(140, 140, 10000, 10000)
TOPOLOGIES = {
    "tiered": Topology("tiered", (1024, 1024, 1024), (0, 1, None),
                       _links(DRAM_LOCAL, DRAM_REMOTE, Link(300, 300, 5000, 5000), 3), False),
    # reads nearly as fast as DRAM, writes five times slower: read-mostly data belongs here
    "pmem": Topology("pmem", (1024, 1024, 1024), (0, 1, None),
                     _links(DRAM_LOCAL, DRAM_REMOTE, Link(100, 500, 15000, 3000), 3), True),
    "2socket": Topology("2socket", (1536, 1536), (0, 1), _links(DRAM_LOCAL, DRAM_REMOTE, None, 2), False),
}


def qemu_hmat_options(topology: Topology) -> list[str]:
    options = ["-machine", "hmat=on"]
    for (initiator, target), link in sorted(topology.links.items()):
        entry = f"hmat-lb,initiator={initiator},target={target},hierarchy=memory"
        if topology.split_read_write:
            figures = [("read-latency", f"latency={link.read_latency_ns}"),
                       ("write-latency", f"latency={link.write_latency_ns}"),
                       ("read-bandwidth", f"bandwidth={link.read_bandwidth_mbps}M"),
                       ("write-bandwidth", f"bandwidth={link.write_bandwidth_mbps}M")]
        else:
            figures = [("access-latency", f"latency={link.read_latency_ns}"),
                       ("access-bandwidth", f"bandwidth={link.read_bandwidth_mbps}M")]
        for data_type, value in figures:
            options += ["-numa", f"{entry},data-type={data_type},{value}"]
    return options


def guest_kernel() -> Path:
    """Debian's 6.12 kernel image (scripts/setup --lab installs it)."""
    images = sorted(glob.glob("/boot/vmlinuz-6.12.*-amd64"))
    if not images:
        raise LlamasError("no /boot/vmlinuz-6.12.*-amd64: run scripts/setup --lab")
    return Path(images[-1])


def guest_script(project: Path, numa_balancing: int, command: list[str]) -> str:
    """What runs inside the guest, as root: mounts, NUMA balancing mode, then the command."""
    return " ; ".join([
        "mountpoint -q /sys/kernel/tracing || mount -t tracefs tracefs /sys/kernel/tracing",
        "mountpoint -q /sys/kernel/debug || mount -t debugfs debugfs /sys/kernel/debug",
        "mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf",
        f"echo {numa_balancing} > /proc/sys/kernel/numa_balancing",
        f"cd {shlex.quote(str(project))}",
        f"export PATH={shlex.quote(str(project / '.venv/bin'))}:$PATH LLAMAS_LAB=1 PYTHONDONTWRITEBYTECODE=1",
        # the marker, with how the root is shared (virtiofs, or 9p when no virtiofsd would start)
        f"echo {STARTED} $(findmnt -n -o FSTYPE /)",
        # the command's own status, so that a guest that dies under it is told apart
        f"{shlex.join(command)}",
        f"status=$? ; echo {ENDED} $status ; exit $status",
    ])


def vng_command(topology: Topology, project: Path, script: str, kvm: bool) -> list[str]:
    # --verbose: the kernel's console, which _boot keeps apart, is the record of a guest that died
    command = [str(project / ".venv/bin/vng"), "--run", str(guest_kernel()), "--verbose",
               "--cpus", str(len(topology.initiators)),
               "--memory", f"{sum(topology.memory_mb)}M"]
    qemu = qemu_hmat_options(topology)
    if not kvm:
        # One host thread for all the vCPUs. Multi-threaded TCG (QEMU's default for x86) races
        # with the guest kernel's live patching of its own code: text_poke_bp() puts an int3 in
        # place, and a vCPU that ran a stale translation of it after the patch was done took
        # "Oops: int3" in exc_page_fault while a probe attached: a CI run here lost the tiered
        # guest to it, and one before it lost that guest the same way without a record.
        command.append("--disable-kvm")
        qemu += ["-accel", "tcg,thread=single"]
    for node, memory in enumerate(topology.memory_mb):
        cpu = topology.cpus[node]
        command += ["--numa", f"{memory}M" + (f",cpus={cpu}" if cpu is not None else "")]
    command += [f"--qemu-opts={shlex.join(qemu)}",
                "--rwdir", str(project / ".lab"), "--cwd", str(project), "--exec", script]
    return command


def kvm_works(project: Path) -> bool:
    """Whether a KVM guest boots here; asked once per host boot and remembered in .lab/."""
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return False
    boot_id = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    verdict = project / ".lab" / f"kvm-{boot_id}"
    if verdict.exists():
        return verdict.read_text() == "yes"
    probe = [str(project / ".venv/bin/vng"), "--run", str(guest_kernel()), "--cpus", "1",
             "--memory", "512M", "--exec", "echo llamas-kvm-ok"]
    try:
        result = subprocess.run(probe, capture_output=True, text=True, timeout=120, env=_env(project))
        works = result.returncode == 0 and "llamas-kvm-ok" in result.stdout
    except subprocess.TimeoutExpired:
        works = False
    verdict.write_text("yes" if works else "no")
    return works


def _env(project: Path) -> dict[str, str]:
    # vng runs its helpers (virtme-run) by name
    path = [str(project / ".venv/bin"), os.environ.get("PATH", "")]
    if os.environ.get("LLAMAS_LAB_SHARE") != "9p" and _needs_virtiofsd_shim():
        path.insert(0, str(project / "scripts/virtiofsd-shim"))
    return {**os.environ, "PATH": ":".join(path)}


_RUST_VIRTIOFSD = ("/usr/libexec/virtiofsd", "/usr/lib/virtiofsd/virtiofsd", "/usr/lib/virtiofsd")
_C_VIRTIOFSD = "/usr/lib/qemu/virtiofsd"


def virtiofs_expected() -> bool:
    """Whether the guest's root should come over virtio-fs: a virtiofsd that virtme-ng uses, or
    QEMU's C one that scripts/virtiofsd-shim drives (unless LLAMAS_LAB_SHARE=9p, which
    leaves the shim out, to compare)."""
    if os.environ.get("LLAMAS_LAB_SHARE") == "9p":
        return False
    return _rust_virtiofsd() or _needs_virtiofsd_shim()


def _rust_virtiofsd() -> bool:
    """Whether a virtiofsd that virtme-ng speaks to is installed where it looks for one."""
    return bool(shutil.which("virtiofsd") or any(os.access(p, os.X_OK) for p in _RUST_VIRTIOFSD))


@functools.cache
def _needs_virtiofsd_shim() -> bool:
    """Whether virtme-ng would find only QEMU's C virtiofsd (Debian bookworm's QEMU 7.2), whose
    arguments it does not speak, and so share the root over 9p: scripts/virtiofsd-shim
    translates. A Rust virtiofsd, wherever virtme-ng looks for one, is used as it is."""
    if _rust_virtiofsd() or not os.access(_C_VIRTIOFSD, os.X_OK):
        return False
    try:
        usage = subprocess.run([_C_VIRTIOFSD, "--help"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return "-o source=" in usage.stdout + usage.stderr and "--shared-dir" not in usage.stdout


def run(topology_name: str, numa_balancing: int, command: list[str], project: Path,
        timeout_s: float = 900) -> int:
    """Boot, run `command` as root in the project directory, stream its output; its exit status.

    A guest that ends before the command starts (virtme-ng's 255: QEMU or the guest kernel died
    during boot, about one boot in twenty under TCG here, silently) is booted once more."""
    started = time.monotonic()
    for attempt in (1, 2):
        status, ran = _boot(topology_name, numa_balancing, command, project,
                            timeout_s - (time.monotonic() - started))
        if ran or status == 0 or attempt == 2 or time.monotonic() - started > timeout_s / 2:
            return status
        print(f"lab: the {topology_name} guest ended during boot (status {status}) before the "
              f"command started; booting again", file=sys.stderr, flush=True)
    return status


def _boot(topology_name: str, numa_balancing: int, command: list[str], project: Path,
          timeout_s: float) -> tuple[int, bool]:
    """One boot: (exit status, whether the command started).

    The guest kernel's console goes to .lab/console-TOPOLOGY-PID.log, not to the output; the file
    is kept only when the guest died or ran out of time, and its last lines are printed then."""
    topology = TOPOLOGIES[topology_name]
    (project / ".lab").mkdir(exist_ok=True)
    kvm = kvm_works(project)
    argv = vng_command(topology, project, guest_script(project, numa_balancing, command), kvm)
    console_path = project / ".lab" / f"console-{topology_name}-{os.getpid()}.log"
    started = time.monotonic()
    ran = ended = False
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=_env(project), errors="replace")
    assert proc.stdout is not None
    with console_path.open("w") as console:
        try:
            for line in proc.stdout:
                if line.startswith(STARTED):
                    ran = True
                    console.write(_CONSOLE_STARTED + "\n")
                    root = line[len(STARTED):].strip() or "unknown"
                    print(f"lab: {topology_name} guest booted in {time.monotonic() - started:.1f}s "
                          f"({'KVM' if kvm else 'TCG'}, root over {root})", file=sys.stderr, flush=True)
                elif not ran or _KERNEL_LINE.match(line):
                    console.write(line)  # all of the boot, and the kernel's lines after it
                elif line.startswith(ENDED):
                    ended = True
                else:
                    sys.stdout.write(line)
                    sys.stdout.flush()
                if time.monotonic() - started > timeout_s:
                    raise subprocess.TimeoutExpired(argv, timeout_s)
            status = proc.wait(timeout=max(timeout_s - (time.monotonic() - started), 1))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            status = 124
            print(f"lab: the guest ran past {timeout_s:.0f}s and was stopped; its console: "
                  f"{console_path}", file=sys.stderr)
    if ended:
        console_path.unlink(missing_ok=True)
    elif status != 124:
        when = "while the command ran" if ran else "during boot"
        print(f"lab: the {topology_name} guest died {when} (status {status}, no exit status from "
              f"the command); {died_how(console_path)}", file=sys.stderr, flush=True)
    return status, ran


def died_how(console_path: Path) -> str:
    """What the guest kernel's console says about a guest that died: its panic or oops, else
    that it said nothing (QEMU itself ended), with where the whole console is."""
    try:
        lines = console_path.read_text(errors="replace").splitlines()
    except OSError:
        lines = []
    # what the kernel said once the command ran (booting, this topology draws a warning)
    first = lines.index(_CONSOLE_STARTED) + 1 if _CONSOLE_STARTED in lines else 0
    death = [i for i, line in enumerate(lines) if i >= first and any(m in line for m in _KERNEL_DEATH)]
    if death:
        said = " | ".join(line.strip() for line in lines[death[0]:death[0] + 6])
        return f"the guest kernel said: {said} (whole console: {console_path})"
    tail = " | ".join(line.strip() for line in lines[-3:])
    return (f"no panic or oops on its console, so {QEMU_ENDED}; the console's last lines: "
            f"{tail} ({console_path})")
