"""The sd_notify(3) protocol, for `Type=notify` units: one datagram of newline-separated
KEY=VALUE assignments to the AF_UNIX socket named in $NOTIFY_SOCKET (a leading '@' names an
abstract socket). Outside systemd the variable is unset and notify() does nothing."""

from __future__ import annotations

import os
import socket


def notify(*assignments: str) -> bool:
    """Send e.g. notify("READY=1", "STATUS=generation 3 in force"); False when not under systemd."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address or address[0] not in "@/":
        return False
    target = "\0" + address[1:] if address.startswith("@") else address
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        try:
            sock.sendto("\n".join(assignments).encode(), target)
        except OSError:
            return False
    return True
