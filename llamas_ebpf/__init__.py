"""llamas-ebpf: memory and CPU placement for tiered-memory hosts, driven by BPF telemetry."""

__version__ = "0.1.0"
