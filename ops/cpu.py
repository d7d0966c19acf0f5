"""CPU seconds per process over a window, from ``/proc/<pid>/stat`` (Linux): what each stage costs per venue event.

What is counted for a process: its ``utime + stime`` (every thread, live or ended) **plus its descendants'**: the
``cutime + cstime`` of children it has reaped, and the same sum, recursively, over its children still alive. The
difference of that total between two samples is exactly the CPU the process tree used in between: a child that
ends inside the window moves from "live" to its parent's ``cutime`` with all of its time, and the part it had used
before the window was already in the first sample. Children are counted because the work they do is the stage's:
PostgreSQL's backends, checkpointer and WAL writer are children of the postmaster (a backend that ends is reaped
by it), and the sink's optional row-building helper is a child of the sink. Our stages have no other children.
Not counted: a descendant re-parented away from the tree (an orphan; none of our processes leave one) and the
kernel's own work on their behalf outside their context (softirq network processing).

Resolution: clock ticks (``SC_CLK_TCK``, 10 ms), per process and sample. A process whose start time changed between
the samples (it restarted) has no figure for that window.

The whole machine's busy time (``/proc/stat``: user, nice, system, irq, softirq) is sampled too: the row ``other``
(machine minus every named process) is work the named processes did not do (another user of the machine, kernel
threads, interrupts), and ``steal`` the time the hypervisor gave our CPUs to someone else: a measurement with a
large ``other`` or ``steal`` was disturbed.

:func:`parse_stat` and :func:`tree_ticks` are pure; :func:`read_table` reads ``/proc``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "CLK_TCK",
    "CpuSample",
    "ProcStat",
    "cpu_rows",
    "machine_busy_ticks",
    "parse_stat",
    "read_table",
    "sample",
    "tree_ticks",
]

CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass(frozen=True, slots=True)
class ProcStat:
    """The fields of ``/proc/<pid>/stat`` this module uses (times in clock ticks)."""

    pid: int
    comm: str
    state: str
    ppid: int
    utime: int
    stime: int
    cutime: int
    cstime: int
    starttime: int  # ticks after boot: with the pid, identifies the process (pids are reused)

    @property
    def own(self) -> int:
        """This process's ticks, all threads, plus those of the children it reaped."""
        return self.utime + self.stime + self.cutime + self.cstime


def parse_stat(text: str) -> ProcStat:
    """Parse one ``/proc/<pid>/stat`` line. ``comm`` (field 2) is in parentheses and may itself contain spaces and
    parentheses: it ends at the LAST ``)``. Field numbers as in proc(5): 3 state, 4 ppid, 14-17 utime, stime, cutime,
    cstime, 22 starttime."""
    open_at = text.index("(")
    close_at = text.rindex(")")
    rest = text[close_at + 2 :].split()
    if len(rest) < 20:
        raise ValueError(f"/proc stat line too short: {text[:80]!r}")

    def field_(number: int) -> int:
        return int(rest[number - 3])

    return ProcStat(
        pid=int(text[:open_at]),
        comm=text[open_at + 1 : close_at],
        state=rest[0],
        ppid=field_(4),
        utime=field_(14),
        stime=field_(15),
        cutime=field_(16),
        cstime=field_(17),
        starttime=field_(22),
    )


def machine_busy_ticks(stat_text: str) -> tuple[int, int]:
    """(busy, steal) ticks of all CPUs from ``/proc/stat``'s ``cpu`` line: busy = user + nice + system + irq + softirq
    (guest time is inside user; idle and iowait are not busy); steal = time a hypervisor gave our CPUs to others."""
    for line in stat_text.splitlines():
        if line.startswith("cpu "):
            f = [int(x) for x in line.split()[1:]]
            return f[0] + f[1] + f[2] + f[5] + f[6], f[7] if len(f) > 7 else 0
    raise ValueError("/proc/stat: no cpu line")


def read_table(proc: Path = Path("/proc")) -> dict[int, ProcStat]:
    """Every process now, by pid (processes that end while being read are skipped)."""
    out: dict[int, ProcStat] = {}
    for entry in os.scandir(proc):
        if not entry.name.isdigit():
            continue
        try:
            out[int(entry.name)] = parse_stat((proc / entry.name / "stat").read_text())
        except (OSError, ValueError):
            continue
    return out


def tree_ticks(pid: int, table: Mapping[int, ProcStat], with_children: bool = True) -> int | None:
    """Ticks of ``pid`` and (``with_children``) of its descendants, as the module docstring says; None if gone."""
    root = table.get(pid)
    if root is None:
        return None
    if not with_children:
        return root.utime + root.stime
    children: dict[int, list[int]] = {}
    for p in table.values():
        children.setdefault(p.ppid, []).append(p.pid)
    total, todo, seen = 0, [pid], set()
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        total += table[current].own
        todo.extend(children.get(current, ()))
    return total


@dataclass
class CpuSample:
    """Ticks per named process (tree) at one instant, with the process identities and the venue's event count."""

    at_ns: int
    venue_events: int
    ticks: dict[str, int | None] = field(default_factory=dict)
    identity: dict[str, tuple[int, int]] = field(default_factory=dict)  # name -> (pid, starttime)
    machine_ticks: int | None = None  # busy ticks of the whole machine (machine_busy_ticks)
    steal_ticks: int | None = None


def sample(processes: Mapping[str, int], at_ns: int, venue_events: int, own_only: Iterable[str] = ()) -> CpuSample:
    """Sample ``processes`` (name -> pid) now; names in ``own_only`` without their children."""
    table = read_table()
    alone = set(own_only)
    out = CpuSample(at_ns, venue_events)
    with contextlib.suppress(OSError, ValueError):
        out.machine_ticks, out.steal_ticks = machine_busy_ticks(Path("/proc/stat").read_text())
    for name, pid in processes.items():
        out.ticks[name] = tree_ticks(pid, table, with_children=name not in alone)
        if pid in table:
            out.identity[name] = (pid, table[pid].starttime)
    return out


def cpu_rows(start: CpuSample, end: CpuSample, clk_tck: int = CLK_TCK) -> dict[str, dict[str, float | None]]:
    """Per process: CPU seconds between two samples, share of one core, and µs per venue event generated meanwhile;
    then ``other`` (the machine's busy time not in any named process; see the module docstring)."""
    events = end.venue_events - start.venue_events
    wall_s = (end.at_ns - start.at_ns) / 1e9
    rows: dict[str, dict[str, float | None]] = {}
    for name, before in start.ticks.items():
        after = end.ticks.get(name)
        same = start.identity.get(name) == end.identity.get(name)
        if before is None or after is None or not same:
            rows[name] = {"cpu_s": None, "core_share": None, "us_per_event": None}
            continue
        rows[name] = _row((after - before) / clk_tck, wall_s, events)
    if start.machine_ticks is not None and end.machine_ticks is not None:
        named = sum((end.ticks[n] or 0) - (t or 0) for n, t in start.ticks.items() if rows[n]["cpu_s"] is not None)
        other_s = (end.machine_ticks - start.machine_ticks - named) / clk_tck
        rows["other"] = _row(other_s, wall_s, events)
    if start.steal_ticks is not None and end.steal_ticks is not None:
        rows["steal"] = _row((end.steal_ticks - start.steal_ticks) / clk_tck, wall_s, events)
    return rows


def _row(cpu_s: float, wall_s: float, events: int) -> dict[str, float | None]:
    return {
        "cpu_s": round(cpu_s, 2),
        "core_share": round(cpu_s / wall_s, 3) if wall_s > 0 else None,
        "us_per_event": round(cpu_s / events * 1e6, 1) if events > 0 else None,
    }
