"""CPU and memory of a process tree, from ``/proc``: parsing is pure, reading is one function each.

A server's cost is the utime + stime of its whole tree (master and every descendant) over the
measured window. Children reaped during the window are not lost: the kernel adds a reaped child's
times to its parent's cutime + cstime, which are counted too. So a worker that exits mid-window
(``max_requests``, a crash) moves its ticks into the master's c-times and the difference of two
snapshots still holds all of them.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")
HZ = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True)
class ProcStat:
    """The fields of ``/proc/PID/stat`` the benchmark uses."""

    pid: int
    ppid: int
    pgrp: int
    cpu_ticks: int  # utime + stime + cutime + cstime
    start_ticks: int  # starttime: with pid, identifies one process across snapshots
    rss_pages: int


@dataclass(frozen=True)
class MachineTicks:
    """All CPUs' ticks from the first line of ``/proc/stat``."""

    busy: int
    total: int


def parse_stat(text: str) -> ProcStat:
    """Parse one ``/proc/PID/stat`` line (the command name may hold spaces and parentheses)."""
    pid = int(text[: text.index(" ")])
    rest = text[text.rindex(")") + 2 :].split()
    # rest[0] is field 3 (state); field n is rest[n - 3]
    return ProcStat(
        pid=pid,
        ppid=int(rest[1]),
        pgrp=int(rest[2]),
        cpu_ticks=int(rest[11]) + int(rest[12]) + int(rest[13]) + int(rest[14]),
        start_ticks=int(rest[19]),
        rss_pages=int(rest[21]),
    )


def parse_machine(first_line: str) -> MachineTicks:
    """Parse the ``cpu`` line of ``/proc/stat``: busy = total - idle - iowait (guest is in user)."""
    values = [int(x) for x in first_line.split()[1:9]]
    values += [0] * (8 - len(values))
    return MachineTicks(busy=sum(values) - values[3] - values[4], total=sum(values))


def children_map(table: Mapping[int, ProcStat]) -> dict[int, list[int]]:
    """ppid -> pids of its children, for every process in the table."""
    children: dict[int, list[int]] = {}
    for stat in table.values():
        children.setdefault(stat.ppid, []).append(stat.pid)
    return children


def tree_pids(root: int, table: Mapping[int, ProcStat]) -> list[int]:
    """root and all its descendants present in the table (root first; empty if root is gone)."""
    if root not in table:
        return []
    children = children_map(table)
    out: list[int] = []
    todo = [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, ()))
    return out


def tree_cpu_ticks(root: int, table: Mapping[int, ProcStat]) -> int:
    """CPU ticks of root's tree, reaped children included (through their parents' c-times)."""
    return sum(table[pid].cpu_ticks for pid in tree_pids(root, table))


def window_cpu_seconds(
    root: int, before: Mapping[int, ProcStat], after: Mapping[int, ProcStat]
) -> float:
    """CPU seconds root's tree spent between two snapshots."""
    return (tree_cpu_ticks(root, after) - tree_cpu_ticks(root, before)) / HZ


def worker_pids(root: int, table: Mapping[int, ProcStat]) -> list[int]:
    """The processes that serve: root's descendants, or root itself when it has none (uvicorn)."""
    pids = tree_pids(root, table)
    return pids[1:] or pids


def max_rss_bytes(pids: Iterable[int], table: Mapping[int, ProcStat]) -> int:
    """The largest resident set among pids, in bytes (0 when none is present)."""
    return max((table[p].rss_pages * PAGE for p in pids if p in table), default=0)


def parse_hwm_kib(status_text: str) -> int:
    """VmHWM (peak resident set, KiB) from ``/proc/PID/status`` text; 0 when absent."""
    for line in status_text.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


# ------------------------------------------------------------------------------------ reading /proc
def read_table() -> dict[int, ProcStat]:
    """A snapshot of every process's stat."""
    table: dict[int, ProcStat] = {}
    for entry in os.listdir(PROC):
        if entry.isdigit():
            stat = read_stat(int(entry))
            if stat is not None:
                table[stat.pid] = stat
    return table


def read_stat(pid: int) -> ProcStat | None:
    """One process's stat, or None if it is gone."""
    try:
        return parse_stat((PROC / str(pid) / "stat").read_bytes().decode("latin-1"))
    except (OSError, ValueError, IndexError):
        return None


def read_hwm_bytes(pid: int) -> int:
    """A process's peak resident set in bytes (0 if it is gone)."""
    try:
        return parse_hwm_kib((PROC / str(pid) / "status").read_text("latin-1")) * 1024
    except OSError:
        return 0


def read_machine() -> MachineTicks:
    """The machine's busy and total ticks now."""
    with open(PROC / "stat") as f:
        return parse_machine(f.readline())
