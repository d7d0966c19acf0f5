"""`mdpipe status`: one screen for every stage, read from the running stages' metrics and the broker.

Gatherers (connections, markets, frames/s, gaps, spool), dedup (lag in seconds per gatherer, duplicate
ratio, single-copy events), sink (rows/s, lag), topics (partitions, records). Stages are found through
``.run/stages/*.json`` (written by each long-running command); rates come from two scrapes
``--interval`` seconds apart. ``--json`` prints the same as one JSON object for scripts.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from typing import Any

from mdpipe.config import Config

__all__ = ["add_parser", "collect", "run", "stage_figures"]


def add_parser(sub: Any) -> argparse.ArgumentParser:
    parser = sub.add_parser(
        "status",
        help="one screen showing every stage (gatherers, dedup, sink, topics)",
        description="Scrape every running stage's Prometheus endpoint (found in .run/stages) twice, --interval "
        "seconds apart, and read topic offsets from the broker; print one screen, or JSON with --json.",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the screen")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between the two scrapes for rates (1)")
    parser.add_argument("--no-topics", action="store_true", help="do not ask the broker about topics")
    return parser


def _sum(samples: list[Any], name: str, **labels: str) -> float:
    return sum(s.value for s in samples if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))


def _by_label(samples: list[Any], name: str, label: str) -> dict[str, float]:
    out: dict[str, float] = defaultdict(float)
    for s in samples:
        if s.name == name and label in s.labels:
            out[s.labels[label]] += s.value
    return dict(out)


def _gatherer(before: list[Any], after: list[Any], dt: float) -> dict[str, Any]:
    frames = _sum(after, "mdpipe_gather_frames_total")
    return {
        "connections_up": _sum(after, "mdpipe_gather_connections_up"),
        "subscribed_markets": _sum(after, "mdpipe_gather_subscribed_markets"),
        "frames_total": frames,
        "frames_per_s": round((frames - _sum(before, "mdpipe_gather_frames_total")) / dt, 1),
        "frames_by_kind": _by_label(after, "mdpipe_gather_frames_total", "kind"),
        "gaps": _sum(after, "mdpipe_gather_gaps_total"),
        "reconnects": _sum(after, "mdpipe_gather_reconnects_total"),
        "dlq": _sum(after, "mdpipe_gather_dlq_total"),
        "producer_queue": _sum(after, "mdpipe_gather_producer_queue_messages"),
        "spool_records": _sum(after, "mdpipe_gather_spool_records"),
        "dropped": _sum(after, "mdpipe_gather_dropped_frames_total"),
    }


def _dedup(before: list[Any], after: list[Any], dt: float) -> dict[str, Any]:
    frames_in = _by_label(after, "mdpipe_dedup_frames_in_total", "gatherer")
    dups = _by_label(after, "mdpipe_dedup_frames_duplicate_total", "gatherer")
    total_in, total_dup = sum(frames_in.values()), sum(dups.values())
    events = _sum(after, "mdpipe_dedup_events_out_total")
    return {
        "events_out": events,
        "events_per_s": round((events - _sum(before, "mdpipe_dedup_events_out_total")) / dt, 1),
        "frames_in": frames_in,
        "won": _by_label(after, "mdpipe_dedup_frames_won_total", "gatherer"),
        "duplicate_ratio": round(total_dup / total_in, 4) if total_in else 0.0,
        "sync_lag_s": _by_label(after, "mdpipe_dedup_sync_lag_seconds", "gatherer"),
        "single_copy_events": _by_label(after, "mdpipe_dedup_single_copy_events_total", "gatherer"),
        "gap_reports": _by_label(after, "mdpipe_dedup_gap_reports_total", "gatherer"),
        "match_age_s": _sum(after, "mdpipe_dedup_match_age_seconds"),
        "window_s": _sum(after, "mdpipe_dedup_window_seconds"),
    }


def _sink(before: list[Any], after: list[Any], dt: float) -> dict[str, Any]:
    rows = _sum(after, "mdpipe_sink_rows_total")
    return {
        "rows_total": rows,
        "rows_per_s": round((rows - _sum(before, "mdpipe_sink_rows_total")) / dt, 1),
        "rows_by_table": _by_label(after, "mdpipe_sink_rows_total", "table"),
        "lag_records": _sum(after, "mdpipe_sink_consumer_lag_records"),
        "lag_s": _sum(after, "mdpipe_sink_consumer_lag_seconds"),
        "duplicates_absorbed": _sum(after, "mdpipe_sink_duplicate_rows_total"),
        "db_errors": _sum(after, "mdpipe_sink_db_errors_total"),
    }


def stage_figures(stage: str, before: list[Any], after: list[Any], dt: float) -> tuple[str, dict[str, Any]]:
    """(section, figures) of one stage from two scrapes ``dt`` seconds apart; section is ``gatherers``,
    ``dedup``, ``sink`` or ``other`` (chosen by the stage name's prefix)."""
    if stage.startswith("gather"):
        return "gatherers", _gatherer(before, after, dt)
    if stage.startswith("dedup"):
        return "dedup", _dedup(before, after, dt)
    if stage.startswith("sink"):
        return "sink", _sink(before, after, dt)
    return "other", {}


def _topics(config: Config) -> list[dict[str, Any]]:
    from mdpipe.kafka import kafka_client_config
    from mdpipe.preflight import require_broker
    from mdpipe.probe import KafkaProbe
    from mdpipe.topics import topic_names

    require_broker(config.kafka)  # bounded; its one-line failure becomes the screen's "broker not reachable"
    probe = KafkaProbe(kafka_client_config(config.kafka))
    try:
        names = topic_names(config).all()
        ends = probe.end_offsets(names)
        return [{"topic": n, "partitions": probe.partitions(n), "records": ends.get(n, 0)} for n in names]
    finally:
        probe.close()


def collect(config: Config, interval: float = 1.0, topics: bool = True) -> dict[str, Any]:
    from mdpipe.metrics import registered_stages
    from mdpipe.probe import scrape

    stages = registered_stages()
    before = {s["stage"]: scrape(str(s["metrics_url"])) for s in stages}
    started = time.monotonic()
    time.sleep(interval)
    after = {s["stage"]: scrape(str(s["metrics_url"])) for s in stages}
    dt = max(time.monotonic() - started, 1e-3)
    out: dict[str, Any] = {"gatherers": {}, "dedup": {}, "sink": {}, "other": []}
    for record in stages:
        name = str(record["stage"])
        b, a = before.get(name, []), after.get(name, [])
        entry = {"pid": record["pid"], "metrics_url": record["metrics_url"], "up": bool(a)}
        section, figures = stage_figures(name, b, a, dt)
        if section == "other":
            out["other"].append({"stage": name, **entry})
        else:
            out[section][name] = {**entry, **figures}
    if topics:
        try:
            out["topics"] = _topics(config)
        except Exception as exc:  # broker down: say so, keep the rest of the screen
            out["topics_error"] = str(exc)
    return out


def _render(data: dict[str, Any]) -> str:
    lines = ["GATHERERS   conns  markets    frames/s   gaps  reconn  dlq  queue  spool"]
    for name, g in sorted(data["gatherers"].items()):
        lines.append(
            f"  {name:<10}{g['connections_up']:>5.0f}{g['subscribed_markets']:>9.0f}{g['frames_per_s']:>12,.0f}"
            f"{g['gaps']:>7.0f}{g['reconnects']:>8.0f}{g['dlq']:>5.0f}{g['producer_queue']:>7.0f}"
            f"{g['spool_records']:>7.0f}" + ("" if g["up"] else "  (not answering)")
        )
    if not data["gatherers"]:
        lines.append("  (none running)")
    lines.append("DEDUP       events/s   dup ratio   sync lag s (per gatherer)   single-copy   gap reports")
    for name, d in sorted(data["dedup"].items()):
        lag = " ".join(f"{g}={v:.2f}" for g, v in sorted(d["sync_lag_s"].items())) or "-"
        singles = " ".join(f"{g}={v:.0f}" for g, v in sorted(d["single_copy_events"].items())) or "-"
        gaps = " ".join(f"{g}={v:.0f}" for g, v in sorted(d["gap_reports"].items())) or "-"
        lines.append(
            f"  {name:<10}{d['events_per_s']:>8,.0f}{d['duplicate_ratio']:>12.3f}   {lag:<28}{singles:<14}{gaps}"
        )
    if not data["dedup"]:
        lines.append("  (none running)")
    lines.append("SINK        rows/s     lag records   lag s   duplicates absorbed   db errors")
    for name, s in sorted(data["sink"].items()):
        lines.append(
            f"  {name:<10}{s['rows_per_s']:>8,.0f}{s['lag_records']:>14,.0f}{s['lag_s']:>8.2f}"
            f"{s['duplicates_absorbed']:>22,.0f}{s['db_errors']:>12.0f}"
        )
    if not data["sink"]:
        lines.append("  (none running)")
    if "topics" in data:
        lines.append("TOPICS      partitions   records")
        for t in data["topics"]:
            missing = "" if t["partitions"] else "  (missing: run `mdpipe topics create`)"
            lines.append(f"  {t['topic']:<24}{t['partitions']:>4}{t['records']:>12,}{missing}")
    elif "topics_error" in data:
        lines.append(f"TOPICS      broker not reachable: {data['topics_error']}")
    return "\n".join(lines)


def run(args: argparse.Namespace, config: Config) -> int:
    data = collect(config, args.interval, topics=not args.no_topics)
    print(json.dumps(data, indent=2, default=str) if args.json else _render(data))
    return 0
