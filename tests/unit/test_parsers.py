

def test_cold_mappings_from_smaps():
    from llamas_ebpf.actuator.cold import cold_in_smaps

    def vma(span: str, perms: str, name: str, rss: int, referenced: int, flags: str = "rd wr mr") -> str:
        return (f"{span} {perms} 00000000 00:00 0          {name}\nSize:  8 kB\nRss:   {rss} kB\n"
                f"Pss:   {rss} kB\nReferenced:  {referenced} kB\nAnonymous: {rss} kB\nVmFlags: {flags}\n")

    text = "".join([
        vma("7f0000000000-7f0000400000", "rw-p", "", 4096, 0),  # cold, 4 MiB: two regions
        vma("7f0000401000-7f0000402000", "rw-p", "", 4, 4),  # referenced
        vma("7f0000500000-7f0000501000", "r--p", "/usr/lib/libc.so.6", 4, 0),  # not writable
        vma("7f0000600000-7f0000601000", "rw-p", "", 0, 0),  # nothing resident
        vma("7ffd00000000-7ffd00021000", "rw-p", "[stack]", 132, 0),
        vma("7f0000700000-7f0000701000", "rw-s", "/dev/shm/x", 4, 0),  # shared
        vma("7f0000800000-7f0000a00000", "rw-p", "", 2048, 0, "rd wr mr lo"),  # locked: madvise refuses it
    ])
    assert cold_in_smaps(text) == [(0x7F0000000000, 0x7F0000200000), (0x7F0000200000, 0x7F0000400000)]


def test_madvise_candidates_leave_out_what_the_kernel_refuses():
    from llamas_ebpf.actuator.cold import candidates

    text = ("7f0000000000-7f0000001000 rw-p 00000000 00:00 0\nRss:   4 kB\nReferenced:  4 kB\n"
            "VmFlags: rd wr mr ac\n"
            "7f0000002000-7f0000003000 rw-p 00000000 00:00 0\nRss:   4 kB\nReferenced:  0 kB\n"
            "VmFlags: rd wr pf io\n"
            "7f0000004000-7f0000005000 rw-p 00000000 00:00 0\nRss:   4 kB\nReferenced:  0 kB\n")  # no VmFlags
    assert candidates(text) == [(0x7F0000000000, 0x7F0000001000, 4, 4)]


def test_observe_probes_are_known_names_only():
    from llamas_ebpf.commands.observe import probe_names
    from llamas_ebpf.errors import LlamasError

    assert probe_names(None) is None
    assert probe_names("faults, access") == {"faults", "access"}
    for bad in ("faults,bogus", ",", "\x1b[2J"):
        try:
            probe_names(bad)
        except LlamasError as exc:
            assert "\x1b" not in str(exc) and "the probes are" in str(exc)
        else:
            raise AssertionError(bad)
