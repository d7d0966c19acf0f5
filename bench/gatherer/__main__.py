"""``make bench-gatherer``: frames/s one gatherer process delivers to Kafka (acknowledged), side by side with a
bare receive loop on the same emulator in the same run, and the gatherer's CPU per frame at fixed rates.

Starts ``mdpipe sim`` in its own process (its CPU is not counted: every figure is the CPU of the measured case's
own process, all threads, librdkafka included).

1. Paced (``--rates``, default 5,000 and 20,000 frames/s): the emulator is set to each rate (``POST /_sim/rate``;
   its rate is venue events/s, and the cases subscribe every market, so each event is one frame to the gatherer:
   the frames/s received are reported next to the rate asked). At each rate the bare picows receive loop
   (baseline: what receiving these frames in Python costs at all) and the gatherer (parsing, keys, gap checks,
   encoding, produce to the running broker with the configured linger/compression) alternate, each in a fresh
   process, ``--paced-runs`` times; each run measures ``--windows`` windows of ``--window`` seconds after its
   warm-up. ``cpu_us_per_frame_<rate>`` = median over all windows of the gatherer's CPU-µs per received frame,
   ``baseline_cpu_us_per_frame_<rate>`` the same for the bare loop; ``<rate>`` is written ``5k``, ``20k``.
   ``threads_us_per_frame_<rate>`` splits the gatherer's CPU per frame into its event-loop thread (``main``) and
   librdkafka's threads (``rdk``), with each one's wake-ups per second (voluntary context switches).
   ``--py-spy DIR`` records a py-spy profile of the gatherer's first run at each rate (``DIR/gatherer-<rate>.*``).
   ``--reference DIR`` adds the gatherer of another source tree (e.g. ``git archive main``), run with this tree's
   cases module and alternating with this tree's gatherer: ``reference_*`` and ``vs_reference_*`` (also at
   saturation), so a change is judged against the old code measured in the same session.
2. Saturation (skip with ``--no-saturation``): the emulator at about the highest rate it sustains (``--rate``,
   default 60,000 events/s: as fast as it can push without bursting past its send buffers); the cases of
   :mod:`bench.gatherer.cases` alternate ``--runs`` times: the bare websockets receive loop (baseline), the bare
   picows receive loop (extra figure) and the gatherer with ``--ws-client`` (default: the configured
   ``gather.ws_client``). Value = median acknowledged frames/s of the gatherer; baseline = median messages/s of the
   bare websockets loop; ``*_cpu_us_per_frame`` = CPU per frame, medians: at the emulator's ceiling frames/s are
   alike, CPU per frame is the figure that moves.

The load average (1 min) before and after each measured case is kept in RESULT (``load_avg``), so a figure taken
while something else burned CPU can be told.
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
import urllib.request
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


def _case(case: str, args: dict[str, Any], py_spy: str | None = None, src: str | None = None) -> dict[str, Any]:
    """Run one case in a fresh process; with ``py_spy`` (an output path without suffix), profile its measured
    windows with py-spy (speedscope JSON and a flame graph). ``src``: run it from that source tree instead (the
    ``reference`` case: its ``ingest``/``mdpipe``/``schemas``, this tree's cases module)."""
    load0 = os.getloadavg()[0]
    if src is not None:
        _overlay_cases(src)
    run_case = "candidate" if case == "reference" else case
    with tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bench.gatherer.cases", run_case, json.dumps(args)],
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            cwd=src,
        )
        assert proc.stdout is not None
        lines: list[str] = []
        spies: list[subprocess.Popen[bytes]] = []
        deadline = time.monotonic() + 600
        for line in proc.stdout:
            if line.startswith("MEASURING ") and py_spy:
                _, pid, seconds = line.split()
                spies = [_py_spy(pid, float(seconds), py_spy, fmt) for fmt in ("speedscope", "flamegraph")]
            elif line.startswith("{"):
                lines.append(line)
            if time.monotonic() > deadline:
                proc.kill()
                break
        rc = proc.wait(60)
        for spy in spies:
            spy.wait(120)
        err.seek(0)
        stderr = err.read()
    if rc != 0 or not lines:
        raise RuntimeError(f"{case} failed: {stderr[-2000:]}")
    result: dict[str, Any] = json.loads(lines[-1])
    result["load_avg"] = [round(load0, 2), round(os.getloadavg()[0], 2)]
    return result


def _overlay_cases(src: str) -> None:
    """The reference tree runs this tree's cases module (same measurement, the other tree's gatherer code)."""
    here = Path(__file__).with_name("cases.py")
    there = Path(src) / "bench" / "gatherer" / "cases.py"
    if not there.exists() or there.read_bytes() != here.read_bytes():
        there.parent.mkdir(parents=True, exist_ok=True)
        there.write_bytes(here.read_bytes())


def _py_spy(pid: str, seconds: float, path: str, fmt: str) -> subprocess.Popen[bytes]:
    """py-spy (next to this interpreter) sampling ``pid`` for ``seconds`` (GIL and idle time left out)."""
    exe = Path(sys.executable).with_name("py-spy")
    suffix = {"speedscope": "speedscope.json", "flamegraph": "svg"}[fmt]
    cmd = [str(exe), "record", "--pid", pid, "--duration", str(int(seconds)), "--rate", "200"]
    cmd += ["--format", fmt, "--output", f"{path}.{suffix}", "--nonblocking"]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _set_rate(rest_url: str, rate: float, ca_file: str = "") -> None:
    """Pace the emulator at ``rate`` events/s (admin API on the REST port; with ``--tls`` over https trusting
    ``ca_file``)."""
    import ssl

    base = rest_url.split("/trade-api/")[0]
    req = urllib.request.Request(
        f"{base}/_sim/rate",
        data=json.dumps({"rate": rate}).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    context = ssl.create_default_context(cafile=ca_file) if ca_file else None
    with urllib.request.urlopen(req, timeout=30, context=context) as r:
        r.read()


def _rate_label(rate: float) -> str:
    return f"{rate / 1000:g}k" if rate >= 1000 else f"{rate:g}"


def _us_per_frame(windows: list[dict[str, Any]]) -> float:
    return 1e6 * statistics.median(w["cpu_s"] / max(1, w["frames"]) for w in windows)


def _thread_split(windows: list[dict[str, Any]]) -> dict[str, float]:
    """Median CPU-µs per frame of the event-loop thread (``main``), of librdkafka's threads (``rdk``) and of the
    process's other threads (``other``), and wake-ups per second of the first two, over ``windows``."""
    names = ("main", "rdk", "other", "main_wakeups_per_s", "rdk_wakeups_per_s")
    groups: dict[str, list[float]] = {name: [] for name in names}
    for w in windows:
        threads = w.get("threads_cpu_s") or {}
        wakeups = {name[:-8]: v for name, v in threads.items() if name.endswith("/wakeups")}
        cpu = {name: v for name, v in threads.items() if not name.endswith("/wakeups")}
        frames = max(1, w["frames"])
        main = cpu.get("main", 0.0)
        rdk = sum(v for name, v in cpu.items() if name.startswith("rdk:"))
        groups["main"].append(1e6 * main / frames)
        groups["rdk"].append(1e6 * rdk / frames)
        groups["other"].append(1e6 * (sum(cpu.values()) - main - rdk) / frames)
        groups["main_wakeups_per_s"].append(wakeups.get("main", 0) / w["seconds"])
        groups["rdk_wakeups_per_s"].append(sum(v for n, v in wakeups.items() if n.startswith("rdk:")) / w["seconds"])
    return {name: round(statistics.median(v), 2) for name, v in groups.items() if v}


def paced(ns: argparse.Namespace, sim_rest: str, ws: str, bootstrap: str, tmp: Path) -> dict[str, Any]:
    """CPU per frame of the gatherer and of the bare picows loop at each of ``ns.rates`` (see module docstring)."""
    out: dict[str, Any] = {}
    cases = ("baseline_picows", "candidate", *(("reference",) if ns.reference else ()))
    for rate in ns.rates:
        label = _rate_label(rate)
        _set_rate(sim_rest, rate, ns.ca_file)
        time.sleep(1.0)
        results: dict[str, list[dict[str, Any]]] = {case: [] for case in cases}
        for run in range(ns.paced_runs):
            for case in cases:
                topics = _topics(bootstrap)
                args = _case_args(ns, sim_rest, ws, bootstrap, topics, tmp / f"spool-{label}-{run}")
                args.update(windows=ns.windows, window_s=ns.window)
                if ns.linger_ms is not None:
                    args["linger_ms"] = ns.linger_ms
                if ns.read_window_ms is not None:
                    args["read_window_ms"] = ns.read_window_ms
                spy = None
                if ns.py_spy and case == "candidate" and run == 0:
                    Path(ns.py_spy).mkdir(parents=True, exist_ok=True)
                    spy = str(Path(ns.py_spy) / f"gatherer-{label}")
                r = _case(case, args, py_spy=spy, src=ns.reference if case == "reference" else None)
                _drop_topics(bootstrap, topics)
                results[case].append(r)
                per = [round(1e6 * w["cpu_s"] / max(1, w["frames"]), 2) for w in r["windows"]]
                print(
                    f"{label} run {run + 1} {case}: {r['frames_per_s']:.0f} frames/s  cpu us/frame per window {per}"
                    f"  threads {_thread_split(r['windows'])}  rss {r['rss_mb']:.0f} MB  load {r['load_avg']}",
                    flush=True,
                )
        cand = [w for r in results["candidate"] for w in r["windows"]]
        base = [w for r in results["baseline_picows"] for w in r["windows"]]
        us, base_us = _us_per_frame(cand), _us_per_frame(base)
        out[f"cpu_us_per_frame_{label}"] = round(us, 2)
        out[f"threads_us_per_frame_{label}"] = _thread_split(cand)
        out[f"baseline_cpu_us_per_frame_{label}"] = round(base_us, 2)
        out[f"ratio_{label}"] = round(us / base_us, 2) if base_us else None
        out[f"frames_per_s_{label}"] = round(statistics.median(w["frames"] / w["seconds"] for w in cand))
        out[f"baseline_frames_per_s_{label}"] = round(statistics.median(w["frames"] / w["seconds"] for w in base))
        out[f"acked_per_s_{label}"] = round(statistics.median(r["acked_per_s"] for r in results["candidate"]))
        out[f"cpu_per_s_{label}"] = round(statistics.median(w["cpu_s"] / w["seconds"] for w in cand), 3)
        out[f"rss_mb_{label}"] = round(statistics.median(r["rss_mb"] for r in results["candidate"]), 1)
        out[f"baseline_rss_mb_{label}"] = round(statistics.median(r["rss_mb"] for r in results["baseline_picows"]), 1)
        out[f"runs_cpu_us_per_frame_{label}"] = [round(_us_per_frame(r["windows"]), 2) for r in results["candidate"]]
        out[f"runs_baseline_cpu_us_per_frame_{label}"] = [
            round(_us_per_frame(r["windows"]), 2) for r in results["baseline_picows"]
        ]
        out[f"load_avg_{label}"] = [r["load_avg"] for r in results["candidate"]]
        if ns.reference:
            ref = [w for r in results["reference"] for w in r["windows"]]
            ref_us = _us_per_frame(ref)
            out[f"reference_cpu_us_per_frame_{label}"] = round(ref_us, 2)
            out[f"vs_reference_{label}"] = round(us / ref_us, 3) if ref_us else None
            out[f"reference_threads_us_per_frame_{label}"] = _thread_split(ref)
            out[f"runs_reference_cpu_us_per_frame_{label}"] = [
                round(_us_per_frame(r["windows"]), 2) for r in results["reference"]
            ]
            out[f"reference_load_avg_{label}"] = [r["load_avg"] for r in results["reference"]]
        out[f"spooled_{label}"] = sum(r["spooled"] for r in results["candidate"])
        out[f"dead_{label}"] = sum(r["dead"] for r in results["candidate"])
    out["paced_rates"] = ns.rates
    out["paced_windows"] = f"{ns.paced_runs} runs x {ns.windows} windows of {ns.window:g} s"
    return out


def throughput(ns: argparse.Namespace) -> dict[str, Any]:
    bootstrap = _bootstrap()
    tmp = Path(tempfile.mkdtemp(prefix="bench-gatherer-"))
    tls_flags, ns.ca_file = _tls(ns, tmp)
    sim, rest, ws = _start_sim(ns.markets, ns.rates[0] if ns.rates else ns.rate, tls_flags)
    try:
        out = paced(ns, rest, ws, bootstrap, tmp) if ns.rates else {}
        if ns.saturation:
            _set_rate(rest, ns.rate, ns.ca_file)
            time.sleep(1.0)
            out = {**saturation(ns, rest, ws, bootstrap, tmp), **out}
    finally:
        sim.terminate()
        sim.wait(30)
    if not ns.saturation:  # paced figures only: the 5k (first rate's) CPU per frame is the value
        label = _rate_label(ns.rates[0])
        out = {
            "bench": "gatherer",
            "value": out[f"cpu_us_per_frame_{label}"],
            "unit": f"CPU-us per frame at {ns.rates[0]:g} frames/s (one gatherer process, produce included)",
            "baseline": out[f"baseline_cpu_us_per_frame_{label}"],
            "baseline_desc": "CPU-us per frame of a bare picows receive loop at the same rate, same run",
            "ratio": out[f"ratio_{label}"],
            **out,
        }
    out.update(
        markets=ns.markets,
        cpus=os.cpu_count(),
        linger_ms=_linger(ns),
        read_window_ms=_read_window(ns),
        tls=bool(ns.ca_file),
    )
    return out


def _linger(ns: argparse.Namespace) -> int:
    from mdpipe.config import GatherConfig

    return ns.linger_ms if ns.linger_ms is not None else GatherConfig().linger_ms


def _read_window(ns: argparse.Namespace) -> float:
    from mdpipe.config import GatherConfig

    return ns.read_window_ms if ns.read_window_ms is not None else GatherConfig().read_window_ms


def _case_args(
    ns: argparse.Namespace, rest: str, ws: str, bootstrap: str, topics: Any, spool_dir: Path
) -> dict[str, Any]:
    """What every gatherer case is given, paced or at saturation (each adds its own timing)."""
    return {
        "rest_url": rest,
        "ws_url": ws,
        "bootstrap": bootstrap,
        "topics": topics,
        "markets_per_connection": ns.markets_per_connection,
        "warmup_s": ns.warmup,
        "spool_dir": str(spool_dir),
        "ws_client": ns.ws_client,
        "ca_file": ns.ca_file,
    }


def saturation(ns: argparse.Namespace, rest: str, ws: str, bootstrap: str, tmp: Path) -> dict[str, Any]:
    """Frames/s and CPU per frame with the emulator at its ceiling (see module docstring)."""
    cases = ("baseline", "baseline_picows", "candidate", *(("reference",) if ns.reference else ()))
    results: dict[str, list[dict[str, Any]]] = {case: [] for case in cases}
    for run in range(ns.runs):
        for case in cases:
            topics = _topics(bootstrap)
            args = _case_args(ns, rest, ws, bootstrap, topics, tmp / f"spool-{run}")
            args["duration_s"] = ns.duration
            if ns.read_window_ms is not None:
                args["read_window_ms"] = ns.read_window_ms
            if ns.profile and case == "candidate" and run == 0:
                args["profile"] = ns.profile
            r = _case(case, args, src=ns.reference if case == "reference" else None)
            _drop_topics(bootstrap, topics)
            results[case].append(r)
            print(f"run {run + 1} {case}: {r['frames_per_s']:.0f} frames/s  {json.dumps(r)}", flush=True)
    value = statistics.median(r["frames_per_s"] for r in results["candidate"])
    base = statistics.median(r["frames_per_s"] for r in results["baseline"])
    cand = results["candidate"]
    bare = results["baseline_picows"]

    def us_per_frame(rs: list[dict[str, Any]]) -> float:
        return round(statistics.median(1e6 * r["cpu_s"] / max(1, r["frames"]) for r in rs), 2)

    reference: dict[str, Any] = {}
    if ns.reference:
        ref = results["reference"]
        reference = {
            "reference_frames_per_s": round(statistics.median(r["frames_per_s"] for r in ref)),
            "reference_cpu_us_per_frame": us_per_frame(ref),
            "runs_reference_cpu_us_per_frame": [round(1e6 * r["cpu_s"] / max(1, r["frames"]), 2) for r in ref],
            "vs_reference_cpu": round(us_per_frame(cand) / us_per_frame(ref), 3) if us_per_frame(ref) else None,
            "reference_load_avg": [r["load_avg"] for r in ref],
        }
    return {
        **reference,
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
        "connections": cand[0]["connections"],
        "spooled": sum(r["spooled"] for r in cand),
        "load_avg": [r["load_avg"] for r in cand],
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
        "--rates",
        type=lambda text: [float(x) for x in text.split(",") if x.strip()],
        default=[5000.0, 20000.0],
        help="paced rates, frames/s, comma-separated ('' = none; default 5000,20000)",
    )
    p.add_argument("--paced-runs", type=int, default=3, help="runs of each case per paced rate")
    p.add_argument("--windows", type=int, default=4, help="measured windows per paced run")
    p.add_argument("--window", type=float, default=3.0, help="seconds per paced window")
    p.add_argument(
        "--saturation",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also measure at the emulator's ceiling (--rate)",
    )
    p.add_argument(
        "--linger-ms", type=int, default=None, help="the gatherer's producer linger (default: gather.linger_ms)"
    )
    p.add_argument(
        "--read-window-ms",
        type=float,
        default=None,
        help="the gatherer's read coalescing window (default: gather.read_window_ms; 0 = off)",
    )
    p.add_argument(
        "--reference",
        metavar="DIR",
        help="also run the gatherer from this source tree (e.g. an export of main), alternating with this tree's, "
        "and report both (reference_*, vs_reference_*); its bench/gatherer/cases.py is replaced by this tree's",
    )
    p.add_argument("--py-spy", metavar="DIR", help="py-spy profiles of the first gatherer run at each paced rate")
    p.add_argument(
        "--tls",
        action="store_true",
        help="run over wss:// and https:// (emulator --tls, its generated CA trusted): TLS cost included",
    )
    p.add_argument("--profile", metavar="PATH", help="write a pyinstrument profile of the first saturation candidate")
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
        if not ns.rates and not ns.saturation:
            p.error("nothing to measure: --rates '' with --no-saturation")
        result = throughput(ns)
    print("RESULT " + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    from mdpipe.failures import guarded

    raise SystemExit(guarded(main, "bench.gatherer"))  # expected failures: one line, no traceback
