"""``make bench-gatherer``: frames/s one gatherer process delivers to Kafka (acknowledged), side by side with a
bare receive loop on the same emulator in the same run.

Starts ``mdpipe sim`` in its own process at about the highest rate it sustains (``--rate``, default 60,000
events/s: as fast as it can push without bursting past its send buffers), then alternates the cases of
:mod:`bench.gatherer.cases`, each in a fresh process, ``--runs`` times: the bare websockets receive loop
(baseline), the bare picows receive loop (extra figure) and the gatherer with ``--ws-client`` (default: the
configured ``gather.ws_client``). Value = median acknowledged frames/s of the gatherer; baseline = median
messages/s of the bare websockets loop; ``*_cpu_us_per_frame`` = process CPU (all threads, librdkafka included)
per frame, medians: at the emulator's ceiling frames/s are alike, CPU per frame is the figure that moves.
``--scale``: instead, one gatherer holding ``--markets`` (default 1,000,000) markets over 7,000-market
connections: time until every market has its snapshot, and peak RSS. ``--tls``: the emulator serves ``wss://`` and
``https://`` (``mdpipe sim --tls``) and every case speaks TLS trusting its generated CA (the gatherer through
``venue.ca_file``), so the figures include the TLS cost, as against the real venue. Last line: ``RESULT {json}``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

__all__ = ["main"]


def _bootstrap() -> str:
    from mdpipe.config import load_config

    servers = load_config().kafka.bootstrap_servers
    if not servers:
        subprocess.run([sys.executable, "-m", "mdpipe", "infra", "up"], check=True, stdout=subprocess.DEVNULL)
        servers = load_config().kafka.bootstrap_servers
    return servers


def _start_sim(markets: int, rate: float, extra: list[str] | None = None) -> tuple[subprocess.Popen[str], str, str]:
    cmd = [
        sys.executable,
        "-m",
        "mdpipe",
        "--log-level",
        "WARNING",
        "sim",
        "--markets",
        str(markets),
        "--rate",
        str(rate),
        "--port",
        "0",
        "--no-auth",
        "--churn",
        "0",
        "--metrics-port",
        "0",
        *(extra or []),
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    rest = ws = ""
    assert proc.stdout is not None
    deadline = time.monotonic() + 300
    while not (rest and ws):
        line = proc.stdout.readline()
        if not line:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("the emulator did not start")
            continue
        if line.startswith("REST "):
            rest = line.split()[1]
        elif line.startswith("WS "):
            ws = line.split()[1]
    return proc, rest, ws


def _tls(ns: argparse.Namespace, folder: Path) -> tuple[list[str], str]:
    """With ``--tls``: the emulator's extra flags and the CA file the cases trust (else no flags, "")."""
    if not ns.tls:
        return [], ""
    return ["--tls", "--tls-dir", str(folder / "tls")], str(folder / "tls" / "ca.pem")


def _topics(bootstrap: str, partitions: int = 6) -> dict[str, str]:
    from confluent_kafka.admin import AdminClient, NewTopic

    tag = uuid.uuid4().hex[:8]
    topics = {"raw": f"bench.{tag}.raw.gbench", "dlq": f"bench.{tag}.dlq", "markets": f"bench.{tag}.markets"}
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for fut in admin.create_topics([NewTopic(t, partitions, 1) for t in topics.values()]).values():
        fut.result()
    return topics


def _drop_topics(bootstrap: str, topics: dict[str, str]) -> None:
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap})
    for fut in admin.delete_topics(list(topics.values()), operation_timeout=30).values():
        try:
            fut.result()
        except Exception as exc:
            print(f"cleanup: {exc}", file=sys.stderr)


def _case(case: str, args: dict[str, Any]) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "bench.gatherer.cases", case, json.dumps(args)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    if out.returncode != 0 or not lines:
        raise RuntimeError(f"{case} failed: {out.stderr[-2000:]}")
    return json.loads(lines[-1])


def throughput(ns: argparse.Namespace) -> dict[str, Any]:
    bootstrap = _bootstrap()
    tmp = Path(tempfile.mkdtemp(prefix="bench-gatherer-"))
    tls_flags, ca_file = _tls(ns, tmp)
    sim, rest, ws = _start_sim(ns.markets, ns.rate, tls_flags)
    cases = ("baseline", "baseline_picows", "candidate")
    results: dict[str, list[dict[str, Any]]] = {case: [] for case in cases}
    try:
        for run in range(ns.runs):
            for case in cases:
                topics = _topics(bootstrap)
                args = {
                    "rest_url": rest,
                    "ws_url": ws,
                    "bootstrap": bootstrap,
                    "topics": topics,
                    "markets_per_connection": ns.markets_per_connection,
                    "warmup_s": ns.warmup,
                    "duration_s": ns.duration,
                    "spool_dir": str(tmp / f"spool-{run}"),
                    "ws_client": ns.ws_client,
                    "ca_file": ca_file,
                }
                if ns.profile and case == "candidate" and run == 0:
                    args["profile"] = ns.profile
                r = _case(case, args)
                _drop_topics(bootstrap, topics)
                results[case].append(r)
                print(f"run {run + 1} {case}: {r['frames_per_s']:.0f} frames/s  {json.dumps(r)}", flush=True)
    finally:
        sim.terminate()
        sim.wait(30)
    value = statistics.median(r["frames_per_s"] for r in results["candidate"])
    base = statistics.median(r["frames_per_s"] for r in results["baseline"])
    cand = results["candidate"]
    bare = results["baseline_picows"]

    def us_per_frame(rs: list[dict[str, Any]]) -> float:
        return round(statistics.median(1e6 * r["cpu_s"] / max(1, r["frames"]) for r in rs), 2)

    return {
        "bench": "gatherer",
        "value": round(value),
        "unit": "frames/s acknowledged by Kafka (one gatherer process)",
        "baseline": round(base),
        "baseline_desc": "frames/s of a bare websockets receive loop (no parsing, no produce), same emulator",
        "ratio": round(value / base, 3) if base else None,
        "runs": ns.runs,
        "runs_candidate": [round(r["frames_per_s"]) for r in cand],
        "runs_baseline": [round(r["frames_per_s"]) for r in results["baseline"]],
        "ws_client": cand[0]["ws_client"],
        "candidate_cpu_us_per_frame": us_per_frame(cand),
        "baseline_cpu_us_per_frame": us_per_frame(results["baseline"]),
        "picows_bare_frames_per_s": round(statistics.median(r["frames_per_s"] for r in bare)),
        "picows_bare_cpu_us_per_frame": us_per_frame(bare),
        "runs_candidate_cpu_us_per_frame": [round(1e6 * r["cpu_s"] / max(1, r["frames"]), 2) for r in cand],
        "candidate_cpu_per_s": round(statistics.median(r["cpu_s"] / r["seconds"] for r in cand), 3),
        "baseline_cpu_per_s": round(statistics.median(r["cpu_s"] / r["seconds"] for r in results["baseline"]), 3),
        "candidate_rss_mb": round(statistics.median(r["rss_mb"] for r in cand), 1),
        "markets": ns.markets,
        "connections": cand[0]["connections"],
        "spooled": sum(r["spooled"] for r in cand),
        "cpus": os.cpu_count(),
        "tls": bool(ca_file),
    }


def scale(ns: argparse.Namespace) -> dict[str, Any]:
    bootstrap = _bootstrap()
    tmp = Path(tempfile.mkdtemp(prefix="bench-gatherer-scale-"))
    tls_flags, ca_file = _tls(ns, tmp)
    sim, rest, ws = _start_sim(ns.markets, 10.0, tls_flags)
    topics = _topics(bootstrap)
    try:
        args = {
            "rest_url": rest,
            "ws_url": ws,
            "bootstrap": bootstrap,
            "topics": topics,
            "markets_per_connection": ns.markets_per_connection,
            "markets": ns.markets,
            "spool_dir": str(tmp / "spool"),
            "timeout_s": ns.scale_timeout,
            "ws_client": ns.ws_client,
            "ca_file": ca_file,
        }
        r = _case("scale", args)
    finally:
        sim.terminate()
        sim.wait(60)
        _drop_topics(bootstrap, topics)
    print(json.dumps(r), flush=True)
    return {
        "bench": "gatherer-scale",
        "value": r["subscribe_all_s"],
        "unit": "s until every market is subscribed and snapshotted",
        "baseline": None,
        "ratio": None,
        "runs": 1,
        "markets": ns.markets,
        "connections": r["connections"],
        "peak_rss_mb": r["peak_rss_mb"],
        "rss_after_mb": r["rss_mb"],
        "snapshots": r["snapshots"],
        "under_1GiB": r["peak_rss_mb"] < 1024,
        "ws_client": r["ws_client"],
        "tls": bool(ca_file),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.gatherer", description=__doc__)
    p.add_argument("--markets", type=int, default=None, help="markets listed by the emulator")
    p.add_argument(
        "--rate",
        type=float,
        default=60_000.0,
        help="emulator events/s; ~its ceiling on 2 cores (above it, it emits bursts that overflow send buffers)",
    )
    p.add_argument("--markets-per-connection", type=int, default=None, help="markets per WebSocket connection")
    p.add_argument("--runs", type=int, default=3, help="runs of each case (medians are reported)")
    p.add_argument("--warmup", type=float, default=4.0, help="seconds before measuring (subscribe, snapshots)")
    p.add_argument("--duration", type=float, default=8.0, help="seconds measured per run")
    p.add_argument(
        "--ws-client",
        choices=["picows", "websockets"],
        default=None,
        help="the gatherer's WebSocket client (default: gather.ws_client, picows)",
    )
    p.add_argument(
        "--tls",
        action="store_true",
        help="run over wss:// and https:// (emulator --tls, its generated CA trusted): TLS cost included",
    )
    p.add_argument("--profile", metavar="PATH", help="write a pyinstrument profile of the first candidate run")
    p.add_argument("--scale", action="store_true", help="1M-market memory and subscribe-time run instead")
    p.add_argument("--scale-timeout", type=float, default=900.0, help="give up the scale run after this long")
    ns = p.parse_args(argv)
    if ns.scale:
        ns.markets = ns.markets or 1_000_000
        ns.markets_per_connection = ns.markets_per_connection or 7000
        result = scale(ns)
    else:
        ns.markets = ns.markets or 2000
        ns.markets_per_connection = ns.markets_per_connection or 1000
        result = throughput(ns)
    print("RESULT " + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    from mdpipe.failures import guarded

    raise SystemExit(guarded(main, "bench.gatherer"))  # expected failures: one line, no traceback
