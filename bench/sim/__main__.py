"""``make bench-sim``: the emulator at 1M markets and 20K events/s with 3 all-market readers.

Starts ``mdpipe sim`` (truth file on) and one reader process holding N connections that subscribe to
every market in chunks (a snapshot each), waits for all snapshots, then measures several windows:
events generated per second, deltas delivered per connection, server CPU and RSS. Then it raises the
rate to find the saturation point. Baseline, measured in the same run: a trivial websockets broadcast
of pre-encoded messages to the same number of readers (messages delivered per connection per second).
Last line: ``RESULT {json}``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

__all__ = ["main"]

CLK = os.sysconf("SC_CLK_TCK")


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK


def _rss_mb(pid: int) -> tuple[float, float]:
    rss = hwm = 0.0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) / 1024
        elif line.startswith("VmHWM:"):
            hwm = int(line.split()[1]) / 1024
    return rss, hwm


def _read_json(path: Path) -> dict[str, Any]:
    for _ in range(50):
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            time.sleep(0.05)
    raise RuntimeError(f"no stats at {path}")


def _read_json_after(path: Path, after: dict[str, Any], timeout_s: float = 10.0) -> dict[str, Any]:
    """The client's stats written after ``after`` (its ``t`` moved on): a busy client may not have rewritten the
    file within a short window, and a rate over an unchanged snapshot divides by zero."""
    deadline = time.monotonic() + timeout_s
    while True:
        stats = _read_json(path)
        if stats["t"] > after["t"]:
            return stats
        if time.monotonic() > deadline:
            raise RuntimeError(f"the stats at {path} were not rewritten within {timeout_s:.0f} s")
        time.sleep(0.05)


def _http(url: str, body: dict[str, Any] | None = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method="POST" if data is not None else "GET")
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())


def _wait_line(proc: subprocess.Popen[str], prefix: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"process exited before printing {prefix!r}")
        if line.startswith(prefix):
            return line.split()[1]
    raise RuntimeError(f"timeout waiting for {prefix!r}")


def _discovery(rest: str) -> tuple[float, int]:
    """Seconds to page through every market with limit=1000 (what a gatherer's discovery does)."""
    t0 = time.monotonic()
    cursor = ""
    listed = 0
    while True:
        with urllib.request.urlopen(f"{rest}/markets?limit=1000&cursor={cursor}", timeout=60) as resp:
            body = resp.read()
        listed += body.count(b'"ticker":"')
        cursor = json.loads(body[body.rindex(b'"cursor":') + 9 : -1])
        if not cursor:
            return time.monotonic() - t0, listed


def _client(ws_url: str, markets: int, connections: int, chunk: int, stats: Path) -> subprocess.Popen[str]:
    args = [sys.executable, "-m", "bench.sim.client", ws_url, str(markets), str(connections), str(chunk), str(stats)]
    return subprocess.Popen(args, text=True)


def _stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _windows(
    n: int, seconds: float, sim_pid: int, admin: str, stats_path: Path, log: list[str]
) -> list[dict[str, float]]:
    out = []
    for i in range(n):
        s0 = _http(f"{admin}/stats")
        c0 = _read_json(stats_path)
        cpu0, t0 = _cpu_s(sim_pid), time.monotonic()
        time.sleep(seconds)
        s1 = _http(f"{admin}/stats")
        c1 = _read_json_after(stats_path, c0)
        cpu1, t1 = _cpu_s(sim_pid), time.monotonic()
        dt = t1 - t0
        gen = (s1["events_generated"] - s0["events_generated"]) / dt
        delivered = [
            (b["deltas"] - a["deltas"]) / (c1["t"] - c0["t"]) for a, b in zip(c0["readers"], c1["readers"], strict=True)
        ]
        queued = sum(c["data_messages"] for c in s1["connections"])
        received = sum(r["deltas"] for r in c1["readers"])
        row = {
            "events_per_s": gen,
            "delivered_min_per_conn": min(delivered),
            "cpu_pct": 100 * (cpu1 - cpu0) / dt,
            "backlog_msgs": queued - received,
            "connections": len(s1["connections"]),
            "overflowed_sids": sum(c["overflowed_sids"] for c in s1["connections"]),
        }
        log.append(f"window {i + 1}: " + " ".join(f"{k}={v:.0f}" for k, v in row.items()))
        print(log[-1], file=sys.stderr, flush=True)
        out.append(row)
    return out


def _med(rows: list[dict[str, float]], key: str) -> float:
    return statistics.median(r[key] for r in rows)


def run_sim(args: argparse.Namespace, tmp: Path, log: list[str]) -> dict[str, Any]:
    env = {**os.environ, "MDPIPE_RUN_DIR": str(tmp / "run")}
    sim = subprocess.Popen(
        [sys.executable, "-m", "mdpipe", "sim", "--no-auth", "--port", "0", "--markets", str(args.markets),
         "--rate", str(args.rate), "--seed", "1", "--truth", str(tmp / "truth.msgpack"), "--metrics-port", "0"],
        stdout=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    client = None
    try:
        rest = _wait_line(sim, "REST", 120)
        ws = _wait_line(sim, "WS", 30)
        admin = rest.split("/trade-api")[0] + "/_sim"
        rss_start, _ = _rss_mb(sim.pid)
        stats_path = tmp / "client.json"
        t0 = time.monotonic()
        client = _client(ws, args.markets, args.connections, args.chunk, stats_path)
        deadline = t0 + args.snapshot_timeout
        while True:
            if client.poll() is not None:
                raise RuntimeError("reader process died")
            if stats_path.exists():
                c = _read_json(stats_path)
                if all(r["snapshots"] >= args.markets for r in c["readers"]):
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("snapshots not all received in time")
            time.sleep(0.5)
        snapshot_s = time.monotonic() - t0
        log.append(f"subscribed {args.connections} x {args.markets} markets in {snapshot_s:.1f}s")
        print(log[-1], file=sys.stderr, flush=True)
        time.sleep(args.settle_s)  # let the generator settle after the snapshot burst
        target = _windows(args.windows, args.window_s, sim.pid, admin, stats_path, log)
        rss, hwm = _rss_mb(sim.pid)
        discovery_s, listed = _discovery(rest)
        log.append(f"REST discovery of {listed} markets (limit=1000 pages) while generating: {discovery_s:.1f}s")
        print(log[-1], file=sys.stderr, flush=True)
        saturated: list[dict[str, float]] = []
        if args.saturate_rate:
            _http(f"{admin}/rate", {"rate": args.saturate_rate})
            time.sleep(args.settle_s)
            saturated = _windows(max(1, args.windows - 1), args.window_s, sim.pid, admin, stats_path, log)
        final = _http(f"{admin}/stats")
        errors = [e for r in _read_json(stats_path)["readers"] for e in r["errors"]]
        return {
            "target": target,
            "saturated": saturated,
            "rss_mb": rss,
            "hwm_mb": hwm,
            "rss_start_mb": rss_start,
            "snapshot_s": snapshot_s,
            "discovery_s": discovery_s,
            "books_materialised": final["books_materialised"],
            "tick_lag_max_s": final["tick_lag_max_s"],
            "errors": errors,
        }
    finally:
        if client is not None:
            _stop(client)
        _stop(sim)


def run_baseline(args: argparse.Namespace, tmp: Path, log: list[str]) -> list[float]:
    server_stats = tmp / "baseline.json"
    server = subprocess.Popen(
        [sys.executable, "-m", "bench.sim.baseline", str(server_stats)], stdout=subprocess.PIPE, text=True
    )
    client = None
    try:
        ws = _wait_line(server, "WS", 60)
        stats_path = tmp / "baseline-client.json"
        client = _client(ws, 0, args.connections, args.chunk, stats_path)
        time.sleep(args.settle_s + 1.0)
        rates = []
        for i in range(args.windows):
            c0 = _read_json(stats_path)
            time.sleep(args.window_s)
            c1 = _read_json_after(stats_path, c0)
            dt = c1["t"] - c0["t"]
            per = [(b["deltas"] - a["deltas"]) / dt for a, b in zip(c0["readers"], c1["readers"], strict=True)]
            rates.append(min(per))
            log.append(f"baseline window {i + 1}: delivered_min_per_conn={min(per):.0f}")
            print(log[-1], file=sys.stderr, flush=True)
        return rates
    finally:
        _stop(server)
        if client is not None:
            _stop(client)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.sim", description=__doc__.split("\n\n")[0])
    p.add_argument("--markets", type=int, default=1_000_000, help="markets listed (default 1,000,000)")
    p.add_argument("--rate", type=float, default=20_000.0, help="target venue events/s (default 20,000)")
    p.add_argument("--connections", type=int, default=3, help="reader connections, each on every market")
    p.add_argument("--chunk", type=int, default=10_000, help="markets per subscribe command")
    p.add_argument("--windows", type=int, default=3, help="measurement windows (runs) per phase")
    p.add_argument("--window-s", type=float, default=8.0, help="seconds per window")
    p.add_argument("--saturate-rate", type=float, default=100_000.0, help="rate for the saturation phase; 0 = skip")
    p.add_argument("--settle-s", type=float, default=2.0, help="pause before each measured phase")
    p.add_argument("--snapshot-timeout", type=float, default=900.0, help="max seconds for the subscription phase")
    args = p.parse_args(argv)
    log: list[str] = []
    with tempfile.TemporaryDirectory(prefix="bench-sim-") as d:
        tmp = Path(d)
        sim = run_sim(args, tmp, log)
        base = run_baseline(args, tmp, log)
    value = _med(sim["target"], "events_per_s")
    baseline = statistics.median(base)
    result = {
        "bench": "sim",
        "value": round(value, 1),
        "unit": "events/s",
        "baseline": round(baseline, 1),
        "baseline_desc": "trivial websockets.broadcast of pre-encoded frames, msgs/s per connection",
        "ratio": round(value / baseline, 3) if baseline else None,
        "runs": len(sim["target"]),
        "target_rate": args.rate,
        "markets": args.markets,
        "connections": args.connections,
        "delivered_per_conn": round(_med(sim["target"], "delivered_min_per_conn"), 1),
        "server_cpu_pct": round(_med(sim["target"], "cpu_pct"), 1),
        "rss_mb": round(sim["rss_mb"], 1),
        "rss_peak_mb": round(sim["hwm_mb"], 1),
        "rss_at_start_mb": round(sim["rss_start_mb"], 1),
        "snapshot_phase_s": round(sim["snapshot_s"], 1),
        "rest_discovery_s": round(sim["discovery_s"], 1),
        "max_events_per_s": round(_med(sim["saturated"], "events_per_s"), 1) if sim["saturated"] else None,
        "max_cpu_pct": round(_med(sim["saturated"], "cpu_pct"), 1) if sim["saturated"] else None,
        "max_delivered_per_conn": (
            round(_med(sim["saturated"], "delivered_min_per_conn"), 1) if sim["saturated"] else None
        ),
        "saturation_ratio": (
            round(_med(sim["saturated"], "delivered_min_per_conn") / baseline, 3)
            if sim["saturated"] and baseline
            else None
        ),
        "books_materialised": sim["books_materialised"],
        "reader_errors": sim["errors"][:3],
    }
    print(f"RESULT {json.dumps(result)}", flush=True)
    return 0


if __name__ == "__main__":
    from mdpipe.failures import guarded

    raise SystemExit(guarded(main, "bench.sim"))  # expected failures: one line, no traceback
