"""`mdpipe verify`: judge one run's database against the venue's own truth and record (rules: :mod:`ops.verify`)."""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from mdpipe.config import Config, ConfigError, run_dir
from mdpipe.logging import get_logger
from venues import names as venues_names

__all__ = ["add_parser", "format_report", "run", "verify"]

log = get_logger(__name__)


def add_parser(sub: Any) -> argparse.ArgumentParser:
    parser = sub.add_parser(
        "verify",
        help="judge the database against the venue emulator's ground truth and delivery record",
        description="Compare the rows in the database with what the venue says it generated (`mdpipe sim --truth`) "
        "and delivered to each gatherer (its record, next to the truth file): coverage held by 0..N gatherers, "
        "missing (by type, with examples), reported losses, uncovered markets, duplicated, unexpected, snapshots "
        "matched by content, order books rebuilt from the database against the venue's at its checkpoints, and "
        "the venue-to-database latency. Exit status 1 unless CLEAN.",
    )
    parser.add_argument(
        "--truth",
        metavar="PATH",
        help="ground-truth file written by `mdpipe sim --truth` (default: .run/demo/truth.msgpack)",
    )
    parser.add_argument("--record", metavar="PATH", help="the venue's record (default: next to the truth file)")
    parser.add_argument("--dsn", help="database to check (default: postgres.dsn from config / `mdpipe infra up`)")
    parser.add_argument("--examples", type=int, default=5, help="how many examples to list per problem (default 5)")
    parser.add_argument(
        "--subscribe-grace-s",
        type=float,
        default=10.0,
        help="events before a market's first subscription are excused when it came within this many seconds of "
        "the market going live or the first gatherer connecting, whichever is later (default 10)",
    )
    parser.add_argument(
        "--gap-slack-s",
        type=float,
        default=2.0,
        help="a gap window (gatherer receive clock) covers events generated this close to its ends (default 2)",
    )
    parser.add_argument(
        "--venue",
        choices=venues_names(),
        help="the venue whose protocol the emulator served; only its rows are judged (default: venue.name)",
    )
    parser.add_argument("--seed", type=int, help="the emulator's seed (`mdpipe sim --seed`), needed by some venues")
    parser.add_argument("--json", action="store_true", help="print the report as one JSON object")
    return parser


def verify(
    truth_path: Path,
    dsn: str,
    examples: int = 5,
    latency_after_ns: int = 0,
    *,
    record_path: Path | None = None,
    subscribe_grace_s: float = 10.0,
    gap_slack_s: float = 2.0,
    on_truth: Callable[[Any], None] | None = None,
    venue: str | None = None,
    seed: int | None = None,
) -> dict[str, Any]:
    """The report of one run as a dict (``format_report`` prints it); ConfigError when an input is missing.

    ``venue``: the venue whose protocol the emulator served (None: the default venue) and whose rows are judged
    (None: every row); ``seed``: the emulator's seed, needed for a venue whose messages the emulator translates
    (:meth:`venues.interface.Venue.truth_translator`). ``on_truth`` sees every venue event
    (:class:`ops.verify.TruthItem`, in generation order) as the comparison reads it, so another judgement of the
    same run (:mod:`ops.hops`) needs no second pass over the truth file."""
    import psycopg

    from ops.verify import Rules, compare, iter_truth_items
    from ops.verify_db import read_database
    from ops.verify_record import VenueRecord
    from venue_sim import record as venue_record
    from venue_sim.truth import read_truth
    from venues import default_name, get_venue

    if not Path(truth_path).is_file():
        raise ConfigError(f"verify --truth: no ground-truth file at {truth_path}")
    record_file = Path(record_path) if record_path else venue_record.record_path(truth_path)
    if not record_file.is_file():
        raise ConfigError(
            f"verify: no venue record at {record_file} (the emulator writes it next to its truth file; "
            "without it nothing says what each gatherer was sent)"
        )
    started = time.monotonic()
    rules = Rules(
        subscribe_grace_ns=int(subscribe_grace_s * 1e9),
        gap_slack_ns=int(gap_slack_s * 1e9),
        examples=examples,
        latency_after_ns=latency_after_ns,
    )
    the_venue = get_venue(venue or default_name())
    if seed is None:
        seed = _no_seed(the_venue.name)
    translator = the_venue.truth_translator(seed)
    records = venue_record.read_record(record_file)
    if translator is None:
        record = VenueRecord.build(records)
    else:
        record = VenueRecord.build(translator.record(records), translator.channel_of_kind)
    book_rule = the_venue.book_rule()
    with psycopg.connect(dsn) as conn:
        rows = read_database(conn, record.checkpoints, venue, trade_ids=the_venue.trade_ids, db_books=book_rule is None)
    read_s = time.monotonic() - started
    truth: Iterable[Any] = iter_truth_items(
        read_truth(truth_path), record.bad, the_venue.name, translator=translator, sent=_collect(record)
    )
    if on_truth is not None:
        truth = _tap(truth, on_truth)
    report = compare(truth, record, rows, rules, book_rule).as_dict()
    report["settings"] = {"subscribe_grace_s": subscribe_grace_s, "gap_slack_s": gap_slack_s}
    log.info("verified", read_s=round(read_s, 1), total_s=round(time.monotonic() - started, 1), clean=report["clean"])
    return report


def _no_seed(venue: str) -> int:
    """The seed when none was given: any, for a venue that needs none; else a one-line error."""
    from venues import get_venue

    if get_venue(venue).truth_translator(0) is None:
        return 0
    raise ConfigError(f"verify: the {venue} emulator's truth is read with the run's seed: give --seed")


def _collect(record: Any) -> Callable[[str, Any], None]:
    """Adds each book the venue sent (a translated venue's, learnt while reading its truth) to ``record``."""

    def sent(market: str, book: Any) -> None:
        record.snapshots_sent.setdefault(market, set()).add(book.normalised())
        record.snapshots_sent_count += 1

    return sent


def _tap(items: Iterable[Any], see: Callable[[Any], None]) -> Iterator[Any]:
    for item in items:
        see(item)
        yield item


def _n(value: int) -> str:
    return f"{value:>12,}"


def format_report(report: dict[str, Any]) -> str:
    """The report as text: one line per figure, then the examples, then the verdict."""
    lat = report.get("latency_ms") or {}
    rcv = report.get("receive_latency_ms") or {}
    grace = (report.get("settings") or {}).get("subscribe_grace_s", 10.0)
    held = "   ".join(f"{n}: {count:,}" for n, count in report["held_by"].items())
    others = sum(report["other_clients"].values())
    lines = [
        "verification report",
        f"  venue events          {_n(report['venue_events'])}",
        f"  held by gatherers     {held}",
        f"  bad input             {_n(report['bad_input'])}   (invalid on purpose: dead-lettered, never stored)",
        f"  expected in db        {_n(report['expected'])}   (delivered to a gatherer)",
        f"  not subscribed        {_n(report['not_subscribed'])}   "
        f"(excused: market not live, or before a first subscription within {grace:g} s)",
        f"  rows loaded           {_n(report['rows'])}",
        f"  matched               {_n(report['matched'])}",
        f"  missing               {_n(report['missing'])}   {report['missing_by_kind'] or ''}",
        f"  reported losses       {_n(report['reported_losses'])}   {report['reported_by_kind'] or ''}",
        f"  uncovered events      {_n(report['uncovered'])}   {report['uncovered_by_kind'] or ''}",
        f"  markets uncovered     {_n(report['markets_uncovered'])}   (a live market no gatherer held)",
        f"  markets without rows  {_n(report['markets_without_rows'])}",
        f"  duplicated            {_n(report['duplicated'])}   {report['duplicated_by_kind'] or ''}",
        f"  unexpected            {_n(report['unexpected'])}   {report['unexpected_by_kind'] or ''}",
        f"  snapshots stored      {_n(report['snapshots'])}   (venue sent {report['snapshots_sent']:,})",
        f"  snapshots unmatched   {_n(report['snapshots_unmatched'])}   (equal to no snapshot the venue sent)",
        f"  books checked         {_n(report['books_checked'])}   (markets, at their last of "
        f"{report['book_checkpoints']:,} checkpoints; {report['books_compared']:,} comparisons in all; "
        f"{report['markets_traded']:,} markets traded)",
        f"  books mismatched      {_n(report['books_mismatched'])}",
        f"  books unchecked       {_n(report['books_unchecked'])}   (not yet subscribed, or first snapshot later)",
        f"  gatherers             {' '.join(report['gatherers']) or 'NONE identified'}"
        + (f"   (+ {others} connection(s) of other clients)" if others else ""),
        f"  latency venue->db     p50 {lat.get('p50', 0):.1f} ms   p99 {lat.get('p99', 0):.1f} ms   "
        f"max {lat.get('max', 0):.1f} ms",
        f"  venue->gatherer       p50 {rcv.get('p50', 0):.1f} ms   p99 {rcv.get('p99', 0):.1f} ms   "
        f"max {rcv.get('max', 0):.1f} ms   (receive hop alone)",
    ]
    for kind, d in (report.get("latency_by_kind") or {}).items():
        lines.append(
            f"    {kind:<20}p50 {d.get('p50', 0):.1f} ms   p99 {d.get('p99', 0):.1f} ms   max {d.get('max', 0):.1f} ms"
            f"   ({int(d.get('count', 0)):,} events)"
        )
    for kind, items in report["missing_examples"].items():
        lines += [f"  missing {kind}: {item}" for item in items]
    lines += [f"  reported loss: {item}" for item in report["reported_examples"]]
    lines += [f"  uncovered: {item}" for item in report["uncovered_examples"]]
    lines += [f"  market without rows: {item}" for item in report["markets_without_rows_examples"]]
    lines += [f"  duplicated: {item}" for item in report["duplicated_examples"]]
    lines += [f"  unexpected: {item}" for item in report["unexpected_examples"]]
    lines += [f"  snapshot unmatched: {item}" for item in report["snapshot_examples"]]
    lines += [f"  book mismatch: {item}" for item in report["book_examples"]]
    if not report["gatherers"]:
        clients = ", ".join(f"{c!r}" for c in report["other_clients"]) or "none"
        lines.append(f"  no connection named a gatherer (User-Agent mdpipe-gather/<id>); clients seen: {clients}")
    lines.append("  RESULT: CLEAN" if report["clean"] else "  RESULT: PROBLEMS FOUND")
    return "\n".join(lines)


def run(args: argparse.Namespace, config: Config) -> int:
    truth = Path(args.truth) if args.truth else run_dir() / "demo" / "truth.msgpack"
    dsn = args.dsn or config.postgres.dsn
    if not dsn:
        raise ConfigError("postgres.dsn: not set (run `mdpipe infra up` or set MDPIPE_POSTGRES__DSN)")
    from mdpipe.preflight import require_database

    require_database(dsn)  # before reading the truth: one line when the database is unreachable or refuses us
    report = verify(
        truth,
        dsn,
        args.examples,
        record_path=Path(args.record) if args.record else None,
        subscribe_grace_s=args.subscribe_grace_s,
        gap_slack_s=args.gap_slack_s,
        venue=args.venue or config.venue.name,
        seed=args.seed,
    )
    print(json.dumps(report, default=str) if args.json else format_report(report))
    return 0 if report["clean"] else 1
