"""What a server process holds, read from /proc and /metrics: the evidence of leaks and bounded memory."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import httpx


@dataclass(frozen=True)
class Usage:
    fds: int  # open file descriptors, sockets included
    sockets: int
    rss_mb: float
    threads: int
    files: tuple[str, ...] = ()  # what the descriptors that are not sockets point at

    def kinds(self) -> dict[str, int]:
        """Descriptors by what they point at (a path's file name, pipe, anon_inode…), for messages."""
        counts: dict[str, int] = {"socket": self.sockets}
        for target in self.files:
            name = target.rsplit("/", 1)[-1].split(":", 1)[0]
            counts[name] = counts.get(name, 0) + 1
        return counts


def usage(pid: int) -> Usage:
    """The process's open descriptors, resident memory and threads now (Linux /proc)."""
    fd_dir = Path(f"/proc/{pid}/fd")
    targets = []
    for entry in fd_dir.iterdir():
        try:
            targets.append(os.readlink(entry))
        except FileNotFoundError:  # closed while we listed it
            continue
    status = Path(f"/proc/{pid}/status").read_text()
    rss_kb = int(re.search(r"^VmRSS:\s+(\d+)", status, re.M).group(1))  # type: ignore[union-attr]
    threads = int(re.search(r"^Threads:\s+(\d+)", status, re.M).group(1))  # type: ignore[union-attr]
    sockets = sum(1 for t in targets if t.startswith("socket:"))
    files = tuple(sorted(t for t in targets if not t.startswith("socket:")))
    return Usage(fds=len(targets), sockets=sockets, rss_mb=rss_kb / 1024, threads=threads, files=files)


def metric(client: httpx.Client, name: str) -> float:
    """One unlabelled sample from the server's /metrics (the client needs an engineer key)."""
    text = client.get("/metrics").text
    found = re.search(rf"^{name}(?:_total)? (\S+)$", text, re.M)
    assert found, f"{name} not in /metrics"
    return float(found.group(1))
