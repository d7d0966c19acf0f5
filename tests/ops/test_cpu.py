"""CPU per process tree from /proc (ops.cpu): parsing, the tree sum, rows per window, and a real child."""

from __future__ import annotations

import os
import subprocess
import sys

from ops.cpu import CpuSample, ProcStat, cpu_rows, machine_busy_ticks, parse_stat, read_table, tree_ticks

# proc(5) layout; the comm of this one has a space and a ")" in it, as any program may name itself
LINE = (
    "4242 (we(i)rd) name) S 17 4242 4242 0 -1 4194560 1000 2000 3 4 "
    "150 25 7 3 20 0 5 0 987654 123456789 2000 18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0"
)


def test_parse_stat_finds_comm_by_its_last_parenthesis() -> None:
    stat = parse_stat(LINE)
    assert stat == ProcStat(4242, "we(i)rd) name", "S", 17, utime=150, stime=25, cutime=7, cstime=3, starttime=987654)
    assert stat.own == 185


def test_parse_stat_of_this_process() -> None:
    with open("/proc/self/stat") as f:
        stat = parse_stat(f.read())
    assert stat.pid == os.getpid() and stat.ppid == os.getppid() and stat.state == "R"


def _p(pid: int, ppid: int, u: int, s: int = 0, cu: int = 0, cs: int = 0, start: int = 1) -> ProcStat:
    return ProcStat(pid, f"p{pid}", "S", ppid, u, s, cu, cs, start)


def test_tree_counts_live_descendants_and_reaped_children_once() -> None:
    before = {1: _p(1, 0, 999), 10: _p(10, 1, 100, 20), 11: _p(11, 10, 30), 12: _p(12, 11, 5), 20: _p(20, 1, 50)}
    # later: 12 ended and 11 reaped it (its whole 9 ticks into 11's cutime); 11 ended and 10 reaped it (11's own 40
    # plus the 9 it had collected); 10 worked 10 more ticks; a new child 13 of 10 used 2
    after = {1: _p(1, 0, 999), 10: _p(10, 1, 105, 25, cu=49), 13: _p(13, 10, 2), 20: _p(20, 1, 80)}
    assert tree_ticks(10, before) == 100 + 20 + 30 + 5
    assert tree_ticks(10, after) == 105 + 25 + 49 + 2
    assert tree_ticks(10, after) - tree_ticks(10, before) == 5 + 5 + (40 - 30) + (9 - 5) + 2  # type: ignore[operator]
    assert tree_ticks(10, before, with_children=False) == 120
    assert tree_ticks(99, before) is None


def test_rows_per_window_and_a_restarted_process_has_no_figure() -> None:
    start = CpuSample(at_ns=0, venue_events=1_000, ticks={"a": 100, "b": 50, "gone": 5},
                      identity={"a": (1, 7), "b": (2, 7), "gone": (3, 7)},
                      machine_ticks=1000, steal_ticks=3)  # fmt: skip
    end = CpuSample(at_ns=10 * 10**9, venue_events=21_000, ticks={"a": 350, "b": 90, "gone": None},
                    identity={"a": (1, 7), "b": (2, 8)}, machine_ticks=1400, steal_ticks=13)  # fmt: skip
    rows = cpu_rows(start, end, clk_tck=100)
    assert rows["a"] == {"cpu_s": 2.5, "core_share": 0.25, "us_per_event": 125.0}
    assert rows["b"] == {"cpu_s": None, "core_share": None, "us_per_event": None}  # b restarted (new start time)
    assert rows["gone"]["cpu_s"] is None
    assert rows["other"]["cpu_s"] == 1.5  # 4 s busy on the machine, 2.5 of them in "a" (b and gone unknown)
    assert rows["steal"] == {"cpu_s": 0.1, "core_share": 0.01, "us_per_event": 5.0}


def test_machine_busy_ticks_leave_idle_and_iowait_out() -> None:
    text = "cpu  100 2 30 5000 7 4 5 6 0 0\ncpu0 50 1 15 2500 3 2 2 3 0 0\nintr 1 2\n"
    assert machine_busy_ticks(text) == (100 + 2 + 30 + 4 + 5, 6)


def test_a_real_child_that_ends_inside_the_window_is_counted() -> None:
    me = os.getpid()
    before = tree_ticks(me, read_table())
    busy = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.3: pass"
    subprocess.run([sys.executable, "-c", busy], check=True)  # run and reaped: its time is in our cutime now
    after = tree_ticks(me, read_table())
    assert before is not None and after is not None
    assert after - before >= 0.28 * os.sysconf("SC_CLK_TCK")
