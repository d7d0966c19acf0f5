"""`mdpipe demo` (what `make demo` runs): the whole pipeline on the emulator, live progress, verification report.

Starts venue_sim, N gatherers, one dedup worker and one sink against the local broker and database,
injects faults (a venue disconnect, a seq gap, a gatherer killed and restarted), stops the venue,
drains the pipeline, verifies the database against the venue's ground truth and prints the report.
The last line is machine-readable: ``DEMO {json}``.

``--venue NAME`` runs the emulator of that venue (one of :func:`venues.names`) and gatherers of that venue;
``--venue all`` runs every venue at once into one dedup and one sink (:mod:`ops.pipeline_run`) and verifies each
venue on its own: the DEMO JSON then sums the venues' figures and holds each venue's under ``venues``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from typing import Any

from mdpipe.config import Config
from venues import get_venue, names

ALL = "all"  # --venue: every venue at once

__all__ = ["add_parser", "render_progress", "run"]


def add_parser(sub: Any) -> argparse.ArgumentParser:
    parser = sub.add_parser(
        "demo",
        help="run the whole pipeline on the emulator and print a verification report",
        description="Start the emulator, gatherers, dedup and sink; inject faults; drain; verify against the "
        "venue's ground truth. Needs `mdpipe infra up` (make demo does it). Last line: DEMO {json}.",
    )
    parser.add_argument(
        "--venue",
        choices=[*names(), ALL],
        help=f"the venue whose emulator and gatherers run, or {ALL!r}: every venue at once into the same dedup and "
        "sink, each verified on its own (default: venue.name)",
    )
    parser.add_argument("--duration", type=float, default=120.0, help="seconds the venue generates events (120)")
    scale = ", ".join(f"{n} {get_venue(n).demo_markets}" for n in names())
    parser.add_argument(
        "--markets",
        type=int,
        help=f"markets each venue lists (default: the venue's demo scale: {scale}; the smallest with {ALL})",
    )
    rates = ", ".join(f"{n} {get_venue(n).demo_rate:g}" for n in names())
    parser.add_argument(
        "--rate",
        type=float,
        help=f"venue events per second, all markets, per venue (default: the venue's: {rates}; the smallest with "
        f"{ALL})",
    )
    parser.add_argument("--gatherers", type=int, default=3, help="redundant gatherers g1..gN (3)")
    parser.add_argument("--dedup-workers", type=int, default=1, help="dedup workers sharing the partitions (1)")
    parser.add_argument("--seed", type=int, default=7, help="emulator seed: same seed, same events (7)")
    parser.add_argument(
        "--no-faults",
        action="store_true",
        help="do not inject faults (disconnect, seq gap, re-delivered seqs, bad numbers, gatherer kill); the venue's "
        "own behaviours (dormant markets, pauses, metadata and unknown lifecycle types, REST lag) stay on",
    )
    parser.add_argument("--no-auth", action="store_true", help="venue without RSA-PSS authentication")
    parser.add_argument(
        "--export",
        action="store_true",
        help="also export what was loaded to Parquet (mdpipe export), read it back and compare it with the database: "
        "DEMO JSON gains export_rows and export_mismatched (0 on a clean run)",
    )
    return parser


def _bar(fraction: float, width: int = 30) -> str:
    filled = int(max(0.0, min(1.0, fraction)) * width)
    return "#" * filled + "." * (width - filled)


def render_progress(p: Any) -> str:
    """One status block for the terminal (also usable as plain log lines)."""
    r = p.rates
    # frames each gatherer read (its metrics); the raw topics' offsets count records, a bundle being one
    raw = "  ".join(f"{g} {p.gatherer(g, 'frames_per_s') or r.get(g, 0):>7,.0f}/s" for g in p.raw)
    markets = "  ".join(f"{g} {p.gatherer(g, 'subscribed_markets'):>7,.0f}" for g in p.raw)
    reported = p.gap_reports()
    gaps = " ".join(f"{g}={reported.get(g, 0.0):.0f}" for g in p.raw)
    sync = " ".join(f"{g}={lag:.2f}" for g, lag in sorted(p.sync_lag_s().items())) or "-"
    lines = [
        f"[{_bar(p.elapsed_s / p.duration_s)}] {min(p.elapsed_s, p.duration_s):5.0f}/{p.duration_s:.0f}s"
        + ("  (draining)" if p.elapsed_s > p.duration_s else ""),
        f"  venue   {r.get('venue', 0):>8,.0f} ev/s   total {p.venue_events:,}",
        f"  raw     {raw}",
        f"  markets {markets}   seq gaps {gaps}",
        f"  dedup   {r.get('events', 0):>8,.0f} ev/s   events {p.events:,}   lag {p.dedup_lag:,} records"
        f" (~{p.dedup_lag_s:.1f} s)   sync lag s {sync}",
        f"  sink    {p.sink('rows_per_s'):>8,.0f} rows/s lag {p.sink_lag:,} events ({p.sink('lag_s'):.1f} s)",
    ]
    lines[2:2] = _venue_lines(getattr(p, "venue", {}))
    lines += [f"  {note}" for note in p.notes]
    return "\n".join(lines)


def _venue_lines(v: dict[str, Any]) -> list[str]:
    """What the venue did that a collector must survive (counts from /_sim/stats), when it did any of it."""
    if not v:
        return []

    def n(key: str) -> int:
        return int(v.get(key, 0) or 0)

    lag = float(v.get("rest_lag_s", 0) or 0)
    rows = [
        [
            f"{n('paused')} paused/{n('resumed')} resumed ({n('flaps')} fast repeats, {n('paused_markets')} now)",
            f"{n('created')} created ({n('activated_created')} activated)",
            f"{n('event_lifecycle')} new events",
        ],
        [
            f"{n('metadata_updates')} metadata ({n('metadata_legacy')} old form)",
            f"{n('unknown_lifecycle')} unknown lifecycle types",
            f"{n('fee_updates')} fee updates",
        ],
        [
            f"{n('redelivered')} redelivered",
            f"{n('bad_numbers')} bad numbers",
            f"{n('dormant_markets'):,} dormant markets",
            f"REST lag {lag:.0f} s",
        ],
    ]
    return ["          " + ", ".join(row) for row in rows]


class _Screen:
    def __init__(self) -> None:
        self.tty = sys.stdout.isatty()
        self.height = 0
        self.last_plain = 0.0

    def show(self, text: str) -> None:
        if self.tty:
            if self.height:
                sys.stdout.write(f"\x1b[{self.height}F\x1b[J")
            sys.stdout.write(text + "\n")
            sys.stdout.flush()
            self.height = text.count("\n") + 1
        elif time.monotonic() - self.last_plain >= 5:
            self.last_plain = time.monotonic()
            print(text, flush=True)


def chosen_venues(args: argparse.Namespace, config: Config) -> tuple[str, ...]:
    """The venues ``--venue`` names: every venue for ``all``, else the one given (default: the config's)."""
    venue = getattr(args, "venue", None) or config.venue.name
    return names() if venue == ALL else (venue,)


def run(args: argparse.Namespace, config: Config) -> int:
    from ops.pipeline_run import FaultPlan, PipelineRun, RunOptions

    venues = chosen_venues(args, config)
    markets = args.markets or min(get_venue(v).demo_markets for v in venues)
    rate = args.rate or min(get_venue(v).demo_rate for v in venues)
    options = RunOptions(
        venues=venues,
        markets=markets,
        rate=rate,
        duration_s=args.duration,
        gatherers=args.gatherers,
        dedup_workers=args.dedup_workers,
        seed=args.seed,
        faults=FaultPlan.none() if args.no_faults else FaultPlan(),
        auth=not args.no_auth,
    )
    print(
        f"mdpipe demo: {' + '.join(venues)}, {options.markets:,} markets, {options.rate:,.0f} events/s for "
        f"{options.duration_s:.0f}s, "
        f"{options.gatherers} gatherers, {options.dedup_workers} dedup worker(s), "
        f"faults {'off' if args.no_faults else 'on'}",
        flush=True,
    )
    run_ = PipelineRun(config, options)
    screen = _Screen()
    started = time.monotonic()
    try:
        run_.start()
        urls = "  ".join(f"{v} {rest}" for v, (rest, _) in run_.urls.items())
        print(f"  venue {urls}  |  logs {run_.workdir / 'logs'}", flush=True)
        run_.run(lambda p: screen.show(render_progress(p)))
    finally:
        run_.stop()
    print("\n".join(run_.events_log))
    from ops.verify_cli import format_report

    report = run_.verify()
    for venue, own in (report.get("venues") or {}).items():
        print(f"{venue}:")
        print(format_report(own))
    if "venues" in report:
        print("all venues:")
    print(format_report(report))
    summary = _summary(report)
    if "venues" in report:
        summary["venues"] = {venue: _summary(own) for venue, own in report["venues"].items()}
    summary.update(
        venue=ALL if len(venues) > 1 else venues[0],
        markets=options.markets,
        rate=options.rate,
        gatherers=options.gatherers,
        wall_s=round(time.monotonic() - started, 1),
    )
    exported: dict[str, Any] = {}
    if args.export:
        from archive.roundtrip import export_roundtrip

        exported = export_roundtrip(run_.dsn, str(run_.workdir / "export"))
        print(f"export: {exported['export_rows']:,} rows, {exported['export_mismatched']} differ from the database")
        summary.update(exported)
    for name in run_.children:
        if name.startswith("dedup-"):
            shutil.rmtree(run_.workdir / name, ignore_errors=True)
    print("DEMO " + json.dumps(summary))
    return 0 if report["clean"] and not exported.get("export_mismatched") else 1


def _summary(report: dict[str, Any]) -> dict[str, Any]:
    """The DEMO JSON figures of one verification report."""
    lat = report.get("latency_ms") or {}
    return {
        "events": report["venue_events"],
        "expected": report["expected"],
        "rows": report["rows"],
        "missing": report["missing"],
        "duplicated": report["duplicated"],
        "unexpected": report["unexpected"],
        "reported_losses": report["reported_losses"],
        "markets_uncovered": report["markets_uncovered"],
        "markets_without_rows": report["markets_without_rows"],
        "books_checked": report["books_checked"],
        "markets_traded": report["markets_traded"],
        "books_mismatched": report["books_mismatched"],
        "snapshots_unmatched": report["snapshots_unmatched"],
        "bad_input": report["bad_input"],
        **{f"held_by_{n}": count for n, count in report["held_by"].items()},
        "p50_ms": lat.get("p50"),
        "p99_ms": lat.get("p99"),
        "max_ms": lat.get("max"),
    }
