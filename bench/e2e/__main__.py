"""`make bench-e2e`: venue-to-database latency at a fixed rate, and the highest sustained rate.

1. Latency: venue_sim at ``--rate`` (10,000 events/s) with three gatherers, dedup and sink, for
   ``--duration`` seconds, ``--runs`` times; `verify` gives per-event venue->database latency and, from the
   same rows, venue->gatherer latency: the baseline hop that every capture pays, measured in the same run.
2. Sustained: runs at rising rates (``--ramp``); a rate is sustained when the venue kept it (>= 95%) and
   the dedup and sink backlogs at the end of generation stay under ``--max-backlog-s`` seconds of traffic
   (raw frames for dedup, events for the sink) or have not grown since mid-run.

Each latency run also reports where the time and the CPU go:

- ``hops_ms``: per hop (venue->gatherer, gatherer->raw acked, raw->dedup read, dedup->events acked, events->sink
  read, sink read->committed) and venue->committed, p50/p99/max over the same events as the latency (generated after
  the warm-up), exact percentiles from the stamps each event carries (:mod:`ops.hops`). ``hops_by_kind``: the same
  per kind of event (delta, ticker, trade, lifecycle), printed as one line a kind with the hop where its slowest
  event waited: a few lifecycle messages held seconds for their anchor set the hops' max, not the other kinds.
- ``cpu``: per process (emulator ``sim``, each gatherer, ``broker``, ``dedup-1``, ``sink``, ``postgres``; ``bench`` =
  this harness, for information) CPU seconds over the generation window, share of one core and µs per venue event
  generated in it (:mod:`ops.cpu`: the process and its children, from /proc; ``other`` and ``steal``: the
  machine's busy time outside those processes and the hypervisor's steal, both ~0 on an undisturbed run), and
  ``cpu_us_per_event`` = the
  pipeline without the emulator and the harness (gatherers + broker + dedup + sink + PostgreSQL). ``cpu_steady``
  and ``cpu_us_per_event_steady``: the same after the warm-up; ``cpu_us_per_event_to_drain``: from the start of
  generation to the end of the drain (the work a backlog defers past the window included).

Before the latency runs, ``--warmup-s`` seconds of traffic at ``--rate`` go through the same pipeline unmeasured
(``warmup_s`` in RESULT; 0 = none): a freshly started broker's JVM compiles its hot paths over the first minutes of
load and meanwhile costs more CPU per event, which is a start-up cost, not the per-event budget. The warm-up's
backlogs are printed (run ``warmup``).

Last line: ``RESULT {json}`` with value = median p99 venue->database (ms), baseline = median p99
venue->gatherer (ms), ratio, p50_ms, p99_ms, max_events_per_s, hops_ms, cpu, cpu_us_per_event (medians over the
latency runs). Latencies leave out the first WARMUP_S seconds of each run (the initial snapshot burst); loss and
duplication are checked over the whole run.

``--set section.key=value`` (repeatable) overrides a setting of every stage of the runs, e.g.
``--set sink.batch_ms=20 --set dedup.fetch_wait_ms=10``: it becomes the ``MDPIPE_SECTION__KEY`` variable the stages
inherit (mdpipe.config's precedence: above the TOML file), checked against the configuration before any run starts.
RESULT names the overrides (``settings``) and the topics' partition count (``partitions``: the broker's CPU per
event grows with it, docs/perf-broker.md).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
from typing import Any

import venues
from mdpipe.config import ConfigError, load_config, run_dir
from ops.hops import format_hops, format_kinds
from ops.pipeline_run import FaultPlan, PipelineRun, Progress, RunOptions

WARMUP_S = 10.0  # latencies of events generated in the first seconds (subscription burst) are left out
# The verify report's figures each latency run keeps (summed over runs in RESULT), and what it adds when not clean.
VERDICT_KEYS = (
    "missing",
    "duplicated",
    "unexpected",
    "reported_losses",
    "markets_uncovered",
    "markets_without_rows",
    "books_checked",
    "books_mismatched",
    "snapshots_unmatched",
)
DETAIL_KEYS = (
    "missing_by_kind",
    "missing_examples",
    "duplicated_examples",
    "unexpected_examples",
    "uncovered_examples",
    "markets_without_rows_examples",
    "snapshot_examples",
    "book_examples",
)


# rows that are not the pipeline's (cpu_us_per_event): the emulator, the harness, and the machine's other work
NOT_PIPELINE = ("sim", "bench", "other", "steal")


def pipeline_us_per_event(rows: dict[str, dict[str, float | None]]) -> float | None:
    """µs per venue event of the pipeline's processes together; None when one of them has no figure."""
    figures = [r["us_per_event"] for name, r in rows.items() if name not in NOT_PIPELINE]
    if not figures or any(f is None for f in figures):
        return None
    return round(sum(f for f in figures if f is not None), 1)


def format_cpu(rows: dict[str, dict[str, float | None]], total: float | None) -> str:
    lines = [f"  {'process':<14}{'cpu s':>8}{'core':>8}{'us/event':>10}"]
    for name, r in rows.items():
        if r["cpu_s"] is None:
            lines.append(f"  {name:<14}{'-':>8}{'-':>8}{'-':>10}")
            continue
        lines.append(f"  {name:<14}{r['cpu_s']:>8.2f}{r['core_share'] or 0:>8.2f}{r['us_per_event'] or 0:>10.1f}")
    shown = total if total is not None else "-"
    lines.append(f"  {'pipeline':<14}{'':>8}{'':>8}{shown:>10}  (without {', '.join(NOT_PIPELINE)})")
    return "\n".join(lines)


def _run_name(text: str) -> str:
    if not re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,40}", text):
        raise argparse.ArgumentTypeError(f"{text!r}: lower-case letters, digits, - and _ only")
    return text


def settings_env(assignments: list[str], environ: dict[str, str] | None = None) -> dict[str, str]:
    """``--set`` assignments (``section.key=value``) as the ``MDPIPE_SECTION__KEY`` variables that carry them to
    every stage; raises ConfigError when one is malformed or the configuration refuses it (unknown section or key,
    a value of the wrong type or out of range)."""
    env: dict[str, str] = {}
    for text in assignments:
        name, sep, value = text.partition("=")
        section, dot, key = name.strip().partition(".")
        if not sep or not dot or not section or not key or "." in key:
            raise ConfigError(f"--set {text!r}: expected section.key=value (e.g. sink.batch_ms=20)")
        env[f"MDPIPE_{section.upper()}__{key.upper()}"] = value.strip()
    base = dict(os.environ if environ is None else environ)
    load_config(environ={**base, **env}, use_infra_state=False)  # refuses what a stage would refuse
    return env


def run_options(
    rate: float, duration: float, markets: int, gatherers: int, verify: bool, tag: str, venue: str, name: str
) -> RunOptions:
    """The pipeline run of one latency (``verify``) or ramp run: no faults, the hop trace and CPU samples when
    verified, and no scrapes of the stages' /metrics (nothing here reads them; each costs the stage a few ms of CPU,
    which the CPU table would count as the pipeline's)."""
    return RunOptions(
        venues=(venue,) if venue else (),
        markets=markets,
        rate=rate,
        duration_s=duration,
        gatherers=gatherers,
        faults=FaultPlan.none(),
        workdir=run_dir() / name / tag,
        drain_timeout_s=300.0,
        database="mdpipe_" + name.replace("-", "_"),
        hop_trace=verify,
        measure_cpu=verify,
        scrape_stages=False,
    )


def one_run(
    rate: float,
    duration: float,
    markets: int,
    gatherers: int,
    verify: bool,
    tag: str,
    venue: str = "",
    name: str = "bench-e2e",
) -> dict[str, Any]:
    options = run_options(rate, duration, markets, gatherers, verify, tag, venue, name)
    run = PipelineRun(load_config(), options)
    during: list[Progress] = []

    def keep(p: Progress) -> None:
        if p.elapsed_s <= duration:
            during.append(p)
        if verify and p.elapsed_s >= min(WARMUP_S, duration / 2) and "warm" not in run.cpu_samples:
            run.cpu_mark("warm")

    try:
        run.start()
        run.run(keep)
    finally:
        run.stop()
    tail = during[len(during) // 2 :] or during
    venue_rate = statistics.median(p.rates.get("venue", 0.0) for p in tail) if tail else 0.0
    # Backlogs at the end of generation; the minimum over the last samples removes the sawtooth of dedup's
    # periodic offset commits (Faust commits every ~2 s, so its committed lag is never 0 while it runs).
    # The middle samples give the trend: the initial snapshot burst (one per market and gatherer) may leave a
    # backlog that a sustainable rate keeps shrinking.
    end = during[-5:]
    mid = during[len(during) // 2 - 2 : len(during) // 2 + 3] or end
    out: dict[str, Any] = {
        "rate": rate,
        "venue_rate": round(venue_rate),
        "dedup_backlog": min(p.dedup_lag for p in end) if end else None,
        "sink_backlog": min(p.sink_lag for p in end) if end else None,
        "dedup_backlog_mid": min(p.dedup_lag for p in mid) if mid else None,
        "sink_backlog_mid": min(p.sink_lag for p in mid) if mid else None,
        # raw records count frames or bundles of them (gather.bundle_max_bytes): the ramp's bound is in seconds
        "dedup_backlog_s": min(p.dedup_lag_s for p in end) if end else None,
        "dedup_backlog_mid_s": min(p.dedup_lag_s for p in mid) if mid else None,
    }
    if verify:
        report = run.verify(warmup_s=WARMUP_S)
        out.update({k: report[k] for k in VERDICT_KEYS})
        out.update(latency_ms=report["latency_ms"], receive_latency_ms=report["receive_latency_ms"])
        out.update(hops_ms=report["hops_ms"], hops_by_kind=report["hops_by_kind"], hop_stats=report["hop_stats"])
        cpu = run.cpu_table("start", "end")
        steady = run.cpu_table("warm", "end") if "warm" in run.cpu_samples else {}
        out.update(
            cpu=cpu,
            cpu_us_per_event=pipeline_us_per_event(cpu),
            cpu_steady=steady,
            cpu_us_per_event_steady=pipeline_us_per_event(steady) if steady else None,
            cpu_us_per_event_to_drain=pipeline_us_per_event(run.cpu_table("start", "drained")),
            venue_events_window=run.cpu_samples["end"].venue_events - run.cpu_samples["start"].venue_events,
        )
        if not report["clean"]:  # what went wrong, for the one who has to find out why
            out.update({k: report[k] for k in DETAIL_KEYS if report[k]})
        print(f"run {tag}: where the time goes (events generated after the {WARMUP_S:g} s warm-up)", flush=True)
        print(format_hops(report["hops_ms"], [("venue->database", report["latency_ms"])]), flush=True)
        print(f"run {tag}: by kind of event", flush=True)
        print(format_kinds(report["hops_by_kind"]), flush=True)
        print(f"run {tag}: CPU over the generation window ({out['venue_events_window']:,} venue events)", flush=True)
        print(format_cpu(cpu, out["cpu_us_per_event"]), flush=True)
    print(json.dumps({"run": tag, **out}), flush=True)
    return out


def median_table(tables: list[dict[str, dict[str, Any]]], fields: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """Per row, the median over runs of each of ``fields`` (rows or figures a run lacks are left out)."""
    out: dict[str, dict[str, Any]] = {}
    for name in dict.fromkeys(n for t in tables for n in t):
        row = {}
        for f in fields:
            values = [t[name][f] for t in tables if t.get(name) and t[name].get(f) is not None]
            if values:
                row[f] = statistics.median(values)
        out[name] = row
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.e2e", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=10_000.0, help="events/s for the latency runs (10000)")
    parser.add_argument("--duration", type=float, default=45.0, help="seconds each latency run generates (45)")
    parser.add_argument("--runs", type=int, default=3, help="latency runs; medians are reported (3)")
    parser.add_argument("--markets", type=int, default=20_000, help="markets (20000)")
    parser.add_argument("--gatherers", type=int, default=3, help="gatherers (3)")
    parser.add_argument("--venue", choices=venues.names(), help="the venue emulated and gathered (default: venue.name)")
    parser.add_argument(
        "--warmup-s",
        type=float,
        default=60.0,
        help="seconds of unmeasured traffic at --rate before the latency runs, so that a freshly started broker's "
        "JIT compiler has compiled its hot paths (60; 0 = none)",
    )
    parser.add_argument(
        "--ramp", default="5000,10000,15000,20000,30000", help="rates tried for the sustained rate ('' = skip the ramp)"
    )
    parser.add_argument("--ramp-duration", type=float, default=30.0, help="seconds per ramp step (30)")
    parser.add_argument("--max-backlog-s", type=float, default=2.0, help="backlog bound, in seconds of traffic (2)")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override a setting of every stage (repeatable), e.g. --set sink.batch_ms=20",
    )
    parser.add_argument(
        "--name",
        default="bench-e2e",
        type=_run_name,
        help="the runs' folder under the run directory and their database (mdpipe_<name>): bench-e2e",
    )
    args = parser.parse_args(argv)
    overrides = settings_env(args.set)
    os.environ.update(overrides)  # the harness's own config and every child's environment

    if args.warmup_s > 0:
        one_run(args.rate, args.warmup_s, args.markets, args.gatherers, False, "warmup", args.venue or "", args.name)
    latency = [
        one_run(args.rate, args.duration, args.markets, args.gatherers, True, f"lat{i}", args.venue or "", args.name)
        for i in range(args.runs)
    ]
    max_rate = 0.0
    for step in (float(r) for r in args.ramp.split(",") if r.strip()):
        tag = f"ramp{int(step)}"
        res = one_run(step, args.ramp_duration, args.markets, args.gatherers, False, tag, args.venue or "", args.name)
        kept = res["venue_rate"] >= 0.95 * step
        # Bounded: at the end of generation each backlog is under --max-backlog-s of traffic (seconds of raw
        # records at their mean rate for dedup, events for the sink) or no larger than at mid-run (still shrinking
        # after the start-up burst).
        bounded = (res["dedup_backlog_s"] or 0) <= max(args.max_backlog_s, res["dedup_backlog_mid_s"] or 0) and (
            res["sink_backlog"] or 0
        ) <= max(args.max_backlog_s * step, res["sink_backlog_mid"] or 0)
        if not (kept and bounded):
            break
        max_rate = step
    p50 = statistics.median(r["latency_ms"].get("p50", 0.0) for r in latency)
    p99 = statistics.median(r["latency_ms"].get("p99", 0.0) for r in latency)
    base = statistics.median(r["receive_latency_ms"].get("p99", 0.0) for r in latency)
    per_event = [r["cpu_us_per_event"] for r in latency if r.get("cpu_us_per_event") is not None]
    steady = [r["cpu_us_per_event_steady"] for r in latency if r.get("cpu_us_per_event_steady") is not None]
    config = load_config()
    result = {
        "bench": "e2e",
        "venue": args.venue or config.venue.name,
        "value": p99,
        "unit": "ms p99 venue->database",
        "baseline": base,
        "baseline_unit": "ms p99 venue->gatherer (same runs)",
        "ratio": round(p99 / base, 2) if base else None,
        "runs": args.runs,
        "warmup_s": args.warmup_s,
        "rate": args.rate,
        "gatherers": args.gatherers,
        "settings": args.set,
        "partitions": config.kafka.partitions,  # every raw topic's and events' (the broker's cost is per partition)
        "p50_ms": p50,
        "p99_ms": p99,
        "max_events_per_s": max_rate,
        "hops_ms": median_table([r["hops_ms"] for r in latency], ("p50", "p99", "max", "count")),
        "cpu": median_table([r["cpu"] for r in latency], ("cpu_s", "core_share", "us_per_event")),
        "cpu_us_per_event": statistics.median(per_event) if per_event else None,
        "cpu_us_per_event_steady": statistics.median(steady) if steady else None,
        **{k: sum(r[k] for r in latency) for k in VERDICT_KEYS},
    }
    print("RESULT " + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    from mdpipe.failures import guarded

    sys.exit(guarded(main, "bench.e2e"))  # expected failures: one line, no traceback
