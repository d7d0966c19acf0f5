"""`mdpipe status`: one screen for every stage, read from the stages' metrics endpoints and the broker.

Works from any host that reaches the broker: the consumer groups' lag (dedup's app id on the raw topics, the sink
group on ``events``/``markets``) per partition, in records and in seconds, comes from Kafka itself
(:meth:`ops.probe.KafkaProbe.group_lag`, :mod:`ops.group_lag`), with the member holding each partition.
Stage figures come from Prometheus endpoints: those given with ``--metrics [NAME=]URL`` (any host) and the stages
of this host announced in ``.run/stages/*.json``. Gatherers (connections, markets, frames/s, gaps, spool), dedup
(sync lag per gatherer, duplicate ratio, single-copy events, consumer lag), sink (rows/s, lag), topics
(partitions, records). Rates come from two scrapes ``--interval`` seconds apart. ``--json`` prints the same as
one JSON object for scripts.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from mdpipe.config import Config, ConfigError

__all__ = ["Endpoint", "add_parser", "classify", "collect", "parse_endpoint", "run", "stage_figures"]

SECTIONS = {"mdpipe_gather_": "gatherers", "mdpipe_dedup_": "dedup", "mdpipe_sink_": "sink", "mdpipe_sim_": "other"}


def add_parser(sub: Any) -> argparse.ArgumentParser:
    parser = sub.add_parser(
        "status",
        help="one screen showing every stage (gatherers, dedup, sink, consumer-group lag, topics)",
        description="From any host that reaches the broker: the dedup and sink consumer groups' lag per partition "
        "(records, and seconds = age of the oldest record not yet processed), read from Kafka. Plus the figures "
        "of every stage whose Prometheus endpoint is given with --metrics or announced on this host in "
        ".run/stages, scraped twice --interval seconds apart; and the topics' partitions and records. One "
        "screen, or JSON with --json.",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the screen")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between the two scrapes for rates (1)")
    parser.add_argument(
        "--metrics",
        nargs="+",
        action="extend",
        default=[],
        metavar="[NAME=]URL",
        help="stage metrics endpoints to scrape, e.g. host1:9101 or dedup-a=http://host2:9111/metrics (scheme and "
        "/metrics optional); the stage kind is read from the metrics, NAME labels the row",
    )
    parser.add_argument("--no-topics", action="store_true", help="do not ask the broker about topics")
    parser.add_argument("--no-groups", action="store_true", help="do not ask the broker about consumer-group lag")
    return parser


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A stage's metrics endpoint: ``name`` ("" = name it after what it exports), ``url``, ``pid`` if local."""

    name: str
    url: str
    pid: int | None = None


def parse_endpoint(text: str) -> Endpoint:
    """``[NAME=]URL`` -> Endpoint; ``host:port`` becomes ``http://host:port/metrics``."""
    name, sep, url = text.partition("=")
    if not sep or "/" in name or ":" in name:
        name, url = "", text
    url = url.strip()
    if not url:
        raise ConfigError(f"status --metrics {text!r}: expected [NAME=]URL, e.g. host:9101")
    if "://" not in url:
        url = "http://" + url
    scheme, _, rest = url.partition("://")
    if "/" not in rest:
        url = f"{scheme}://{rest}/metrics"
    return Endpoint(name.strip(), url)


def classify(samples: list[Any]) -> str:
    """Which section a scraped endpoint belongs to: the stage prefix most of its samples carry."""
    counts: dict[str, int] = defaultdict(int)
    for sample in samples:
        for prefix, section in SECTIONS.items():
            if sample.name.startswith(prefix):
                counts[section] += 1
    return max(counts, key=lambda k: counts[k]) if counts else "other"


def _endpoint_name(section: str, samples: list[Any], url: str) -> str:
    """A name for an endpoint given without one: ``gather-g2@host:9102``, ``dedup@host:9111``, ``sink@...``."""
    where = url.split("://", 1)[-1].split("/", 1)[0]
    if section == "gatherers":
        ids = sorted({s.labels.get("gatherer", "") for s in samples if s.name.startswith("mdpipe_gather_")} - {""})
        return f"gather-{','.join(ids) or '?'}@{where}"
    kind = section if section in ("dedup", "sink") else "stage"
    return f"{kind}@{where}"


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
        "lag_records": _sum(after, "mdpipe_dedup_consumer_lag_records"),
        "lag_s": _sum(after, "mdpipe_dedup_consumer_lag_seconds"),
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
    ``dedup``, ``sink`` or ``other``: chosen by the stage name's prefix, else by what the endpoint exports."""
    section = next((sec for prefix, sec in _NAME_PREFIXES if stage.startswith(prefix)), "") or classify(after)
    if section == "gatherers":
        return section, _gatherer(before, after, dt)
    if section == "dedup":
        return section, _dedup(before, after, dt)
    if section == "sink":
        return section, _sink(before, after, dt)
    return "other", {}


_NAME_PREFIXES = (("gather", "gatherers"), ("dedup", "dedup"), ("sink", "sink"))


def _topics(config: Config, probe: Any) -> list[dict[str, Any]]:
    from mdpipe.topics import topic_names

    names = topic_names(config).all()
    ends = probe.end_offsets(names)
    return [{"topic": n, "partitions": probe.partitions(n), "records": ends.get(n, 0)} for n in names]


def consumer_groups(config: Config) -> list[tuple[str, str, list[str]]]:
    """(role, group id, topics) of the pipeline's consumer groups: dedup's app id reads the raw topics, the sink
    group reads ``events`` (and ``markets``; the sink keeps its offsets in the database and mirrors them to Kafka
    after each commit, which is what the broker reports)."""
    from mdpipe.topics import topic_names

    names = topic_names(config)
    sink_topics = [names.events] + ([names.markets] if config.sink.load_markets else [])
    return [("dedup", config.dedup.app_id, list(names.raw.values())), ("sink", config.sink.group_id, sink_topics)]


def _groups(config: Config, probe: Any) -> list[dict[str, Any]]:
    return [probe.group_lag(group, topics, role=role).to_dict() for role, group, topics in consumer_groups(config)]


def _endpoints(extra: list[Endpoint]) -> list[Endpoint]:
    """This host's announced stages, then the endpoints given on the command line (an URL listed once)."""
    from mdpipe.stage_announce import registered_stages

    out = [Endpoint(str(r["stage"]), str(r["metrics_url"]), int(str(r["pid"]))) for r in registered_stages()]
    seen = {e.url for e in out}
    for endpoint in extra:
        if endpoint.url not in seen:
            seen.add(endpoint.url)
            out.append(endpoint)
    return out


def collect(
    config: Config,
    interval: float = 1.0,
    topics: bool = True,
    groups: bool = True,
    endpoints: list[Endpoint] | None = None,
) -> dict[str, Any]:
    from ops.probe import scrape

    stages = _endpoints(endpoints or [])
    out: dict[str, Any] = {"gatherers": {}, "dedup": {}, "sink": {}, "other": []}
    if stages:
        before = [scrape(e.url) for e in stages]
        started = time.monotonic()
        time.sleep(interval)
        after = [scrape(e.url) for e in stages]
        dt = max(time.monotonic() - started, 1e-3)
        for endpoint, b, a in zip(stages, before, after, strict=True):
            section, figures = stage_figures(endpoint.name, b, a, dt)
            name = endpoint.name or _endpoint_name(section, a, endpoint.url)
            entry = {"pid": endpoint.pid, "metrics_url": endpoint.url, "up": bool(a)}
            if section == "other":
                out["other"].append({"stage": name, **entry})
            else:
                out[section][name] = {**entry, **figures}
    if topics or groups:
        from mdpipe.failures import Failure
        from mdpipe.kafka import kafka_client_config
        from mdpipe.preflight import require_broker
        from ops.probe import KafkaProbe

        try:
            require_broker(config.kafka)  # bounded (kafka.probe_timeout_s): one line instead of librdkafka's retries
        except Failure as exc:  # broker down: say so, keep the rest of the screen
            for wanted, key in ((groups, "groups"), (topics, "topics")):
                if wanted:
                    out[f"{key}_error"] = str(exc)
            return out
        probe = KafkaProbe(kafka_client_config(config.kafka))
        try:
            for wanted, key, read in ((groups, "groups", _groups), (topics, "topics", _topics)):
                if wanted:
                    try:
                        out[key] = read(config, probe)
                    except Exception as exc:  # broker down: say so, keep the rest of the screen
                        out[f"{key}_error"] = str(exc)
        finally:
            probe.close()
    return out


def _width(names: Any) -> int:
    return max([10, *(len(n) + 2 for n in names)])


def _render_groups(groups: list[dict[str, Any]]) -> list[str]:
    lines = ["CONSUMER GROUPS (broker: committed vs end offsets; lag s = age of the oldest record not yet processed)"]
    for g in groups:
        lag_s = "?" if g["lag_s"] is None else f"{g['lag_s']:.2f} s"
        lines.append(
            f"  {g['role']:<6}{g['group']}  {g['state'] or '-'}, {g['members']} member(s)   "
            f"lag {g['lag_records']:,} records, {lag_s}"
            + (
                f"   {g['expired']:,} RECORDS EXPIRED UNREAD (deleted by retention before this group read them)"
                if g.get("expired")
                else ""
            )
        )
        width = _width(p["topic"] for p in g["partitions"])
        lines.append(f"    {'topic':<{width}}part   committed         end         lag     lag s  owner")
        for p in g["partitions"]:
            committed = "-" if p["committed"] is None else f"{p['committed']:,}"
            seconds = "?" if p["lag_s"] is None else f"{p['lag_s']:.2f}"
            lines.append(
                f"    {p['topic']:<{width}}{p['partition']:>4}{committed:>12}{p['high']:>12,}{p['lag_records']:>12,}"
                f"{seconds:>10}  {p['owner'] or '-'}"
                + (f"  {p['expired']:,} expired unread" if p.get("expired") else "")
            )
        if not g["partitions"]:
            lines.append("    (no topics: run `mdpipe topics create`)")
    return lines


def _render(data: dict[str, Any]) -> str:
    w = _width(data["gatherers"])
    lines = [f"{'GATHERERS':<{w + 2}}conns  markets    frames/s   gaps  reconn  dlq  queue  spool"]
    for name, g in sorted(data["gatherers"].items()):
        lines.append(
            f"  {name:<{w}}{g['connections_up']:>5.0f}{g['subscribed_markets']:>9.0f}{g['frames_per_s']:>12,.0f}"
            f"{g['gaps']:>7.0f}{g['reconnects']:>8.0f}{g['dlq']:>5.0f}{g['producer_queue']:>7.0f}"
            f"{g['spool_records']:>7.0f}" + ("" if g["up"] else "  (not answering)")
        )
    if not data["gatherers"]:
        lines.append("  (none found)")
    w = _width(data["dedup"])
    heading = "events/s   dup ratio   lag rec    lag s   sync lag s (per gatherer)   single-copy   gap reports"
    lines.append(f"{'DEDUP':<{w + 2}}{heading}")
    for name, d in sorted(data["dedup"].items()):
        lag = " ".join(f"{g}={v:.2f}" for g, v in sorted(d["sync_lag_s"].items())) or "-"
        singles = " ".join(f"{g}={v:.0f}" for g, v in sorted(d["single_copy_events"].items())) or "-"
        gaps = " ".join(f"{g}={v:.0f}" for g, v in sorted(d["gap_reports"].items())) or "-"
        lines.append(
            f"  {name:<{w}}{d['events_per_s']:>8,.0f}{d['duplicate_ratio']:>12.3f}{d['lag_records']:>10,.0f}"
            f"{d['lag_s']:>9.2f}   {lag:<28}{singles:<14}{gaps}" + ("" if d["up"] else "  (not answering)")
        )
    if not data["dedup"]:
        lines.append("  (none found)")
    w = _width(data["sink"])
    lines.append(f"{'SINK':<{w + 2}}rows/s     lag records   lag s   duplicates absorbed   db errors")
    for name, s in sorted(data["sink"].items()):
        lines.append(
            f"  {name:<{w}}{s['rows_per_s']:>8,.0f}{s['lag_records']:>14,.0f}{s['lag_s']:>8.2f}"
            f"{s['duplicates_absorbed']:>22,.0f}{s['db_errors']:>12.0f}" + ("" if s["up"] else "  (not answering)")
        )
    if not data["sink"]:
        lines.append("  (none found)")
    for other in data["other"]:
        answering = "" if other["up"] else " (not answering)"
        lines.append(f"OTHER       {other['stage']} {other['metrics_url']}{answering}")
    if "groups" in data:
        lines += _render_groups(data["groups"])
    elif "groups_error" in data:
        lines.append(f"CONSUMER GROUPS   broker not reachable: {data['groups_error']}")
    if "topics" in data:
        lines.append("TOPICS      partitions   records")
        for t in data["topics"]:
            missing = "" if t["partitions"] else "  (missing: run `mdpipe topics create`)"
            lines.append(f"  {t['topic']:<24}{t['partitions']:>4}{t['records']:>12,}{missing}")
    elif "topics_error" in data:
        lines.append(f"TOPICS      broker not reachable: {data['topics_error']}")
    return "\n".join(lines)


def run(args: argparse.Namespace, config: Config) -> int:
    endpoints = [parse_endpoint(text) for text in args.metrics]
    data = collect(config, args.interval, topics=not args.no_topics, groups=not args.no_groups, endpoints=endpoints)
    print(json.dumps(data, indent=2, default=str) if args.json else _render(data))
    return 0
