"""`mdpipe status` aggregation: rates from two scrapes, ratios and per-gatherer figures."""

from __future__ import annotations

from typing import Any

from ops.probe import Sample
from ops.status_cli import _dedup, _gatherer, _render, _sink


def s(name: str, value: float, **labels: str) -> Sample:
    return Sample(name, labels, value)


def test_gatherer_rates_and_totals() -> None:
    before = [s("mdpipe_gather_frames_total", 100, kind="delta"), s("mdpipe_gather_frames_total", 50, kind="trade")]
    after = [
        s("mdpipe_gather_frames_total", 300, kind="delta"),
        s("mdpipe_gather_frames_total", 70, kind="trade"),
        s("mdpipe_gather_connections_up", 3, gatherer="g1"),
        s("mdpipe_gather_gaps_total", 2, gatherer="g1"),
    ]
    g = _gatherer(before, after, 2.0)
    assert g["frames_per_s"] == 110.0
    assert g["frames_by_kind"] == {"delta": 300, "trade": 70}
    assert (g["connections_up"], g["gaps"]) == (3, 2)


def test_dedup_duplicate_ratio_and_lags() -> None:
    after = [
        s("mdpipe_dedup_frames_in_total", 100, gatherer="g1"),
        s("mdpipe_dedup_frames_in_total", 100, gatherer="g2"),
        s("mdpipe_dedup_frames_duplicate_total", 20, gatherer="g1"),
        s("mdpipe_dedup_frames_duplicate_total", 80, gatherer="g2"),
        s("mdpipe_dedup_sync_lag_seconds", 0.5, gatherer="g2"),
        s("mdpipe_dedup_events_out_total", 100),
    ]
    d = _dedup([s("mdpipe_dedup_events_out_total", 40)], after, 1.0)
    assert d["duplicate_ratio"] == 0.5
    assert d["sync_lag_s"] == {"g2": 0.5}
    assert d["events_per_s"] == 60.0


def test_render_shows_every_section() -> None:
    data = {
        "gatherers": {"gather-g1": {"up": True, **_gatherer([], [], 1.0)}},
        "dedup": {"dedup": {"up": True, **_dedup([], [], 1.0)}},
        "sink": {"sink": {"up": True, **_sink([], [s("mdpipe_sink_rows_total", 5, table="trades")], 1.0)}},
        "other": [],
        "topics": [
            {"topic": "events", "partitions": 6, "records": 10},
            {"topic": "dlq", "partitions": 0, "records": 0},
        ],
    }
    text = _render(data)
    for needle in ("GATHERERS", "gather-g1", "DEDUP", "SINK", "TOPICS", "events", "(missing"):
        assert needle in text


def test_parse_endpoint_accepts_host_port_urls_and_names() -> None:
    from ops.status_cli import Endpoint, parse_endpoint

    assert parse_endpoint("host1:9101") == Endpoint("", "http://host1:9101/metrics")
    assert parse_endpoint("dedup-a=http://10.0.0.2:9111/metrics") == Endpoint("dedup-a", "http://10.0.0.2:9111/metrics")
    assert parse_endpoint("https://h/x/metrics") == Endpoint("", "https://h/x/metrics")
    assert parse_endpoint("sink=h:9121") == Endpoint("sink", "http://h:9121/metrics")
    assert parse_endpoint("http://h:1/metrics?a=b") == Endpoint("", "http://h:1/metrics?a=b")  # '=' in the query


def test_an_endpoint_is_classified_by_what_it_exports() -> None:
    from ops.status_cli import _endpoint_name, classify

    gatherer = [s("mdpipe_gather_connections_up", 3, gatherer="g2"), s("process_cpu_seconds_total", 1)]
    assert classify(gatherer) == "gatherers"
    assert _endpoint_name("gatherers", gatherer, "http://h1:9102/metrics") == "gather-g2@h1:9102"
    dedup = [s("mdpipe_dedup_frames_in_total", 1, gatherer="g1"), s("mdpipe_dedup_window_seconds", 3600)]
    assert classify(dedup) == "dedup" and _endpoint_name("dedup", dedup, "http://h2:9111/metrics") == "dedup@h2:9111"
    assert classify([s("mdpipe_sink_rows_total", 1, table="trades")]) == "sink"
    assert classify([s("mdpipe_sim_markets", 5)]) == "other" and classify([]) == "other"


def test_dedup_figures_include_the_consumer_lag_of_its_partitions() -> None:
    after = [
        s("mdpipe_dedup_consumer_lag_records", 30, topic="raw.g1", partition="0"),
        s("mdpipe_dedup_consumer_lag_records", 12, topic="raw.g2", partition="0"),
        s("mdpipe_dedup_consumer_lag_seconds", 2.5),
    ]
    d = _dedup([], after, 1.0)
    assert (d["lag_records"], d["lag_s"]) == (42, 2.5)


def _group(lag_s: float | None) -> dict[str, object]:
    from ops.group_lag import summarise

    return summarise(
        "mdpipe-sink",
        "sink",
        "Stable",
        1,
        [("events", 0, 10, 0, 15), ("events", 1, None, 0, 0)],
        {("events", 0): 1_000} if lag_s is not None else {},
        {("events", 0): "mdpipe-sink@10.0.0.7"},
        now_ms=3_500,
    ).to_dict()


def test_render_shows_the_consumer_groups_per_partition() -> None:
    data = {"gatherers": {}, "dedup": {}, "sink": {}, "other": [], "groups": [_group(2.5)]}
    text = _render(data)
    assert "CONSUMER GROUPS" in text and "sink  mdpipe-sink  Stable, 1 member(s)   lag 5 records, 2.50 s" in text
    (row,) = [line for line in text.splitlines() if "mdpipe-sink@10.0.0.7" in line]
    assert row.split() == ["events", "0", "10", "15", "5", "2.50", "mdpipe-sink@10.0.0.7"]
    (row,) = [line for line in text.splitlines() if line.strip().startswith("events") and line.endswith("-")]
    assert row.split() == ["events", "1", "-", "0", "0", "0.00", "-"]
    text = _render({"gatherers": {}, "dedup": {}, "sink": {}, "other": [], "groups": [_group(None)]})
    assert "lag 5 records, ?" in text
    text = _render({"gatherers": {}, "dedup": {}, "sink": {}, "other": [], "groups_error": "KafkaError timed out"})
    assert "CONSUMER GROUPS   broker not reachable: KafkaError timed out" in text


def test_status_scrapes_the_endpoints_it_is_given(tmp_path: Any, monkeypatch: Any, capsys: Any) -> None:
    """A stage on another host: given with --metrics, named after what it exports, rates from two scrapes."""
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from mdpipe.cli import main

    scrapes = [0]

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            scrapes[0] += 1
            frames = 100 * scrapes[0]
            body = (
                f'mdpipe_gather_frames_total{{gatherer="g3",kind="delta"}} {frames}\n'
                'mdpipe_gather_connections_up{gatherer="g3"} 2\n'
            ).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("MDPIPE_RUN_DIR", str(tmp_path))  # no local stages announced
    monkeypatch.setenv("MDPIPE_CONFIG", "/dev/null")
    try:
        where = f"127.0.0.1:{server.server_address[1]}"
        code = main(["status", "--json", "--no-topics", "--no-groups", "--interval", "0.5", "--metrics", where])
    finally:
        server.shutdown()
        server.server_close()
    assert code == 0
    data = json.loads(capsys.readouterr().out)
    g = data["gatherers"][f"gather-g3@{where}"]
    assert g["up"] and g["connections_up"] == 2 and g["pid"] is None
    assert 150 <= g["frames_per_s"] <= 200  # 100 frames between two scrapes about 0.5 s apart
    assert "groups" not in data and "topics" not in data


def test_render_says_when_a_group_lost_records_to_retention() -> None:
    from ops.group_lag import summarise

    group = summarise(
        "mdpipe-sink", "sink", "Stable", 1, [("events", 0, 10, 17, 30)], {("events", 0): 1_000}, {}, now_ms=3_000
    ).to_dict()
    text = _render({"gatherers": {}, "dedup": {}, "sink": {}, "other": [], "groups": [group]})
    assert "lag 13 records, 2.00 s   7 RECORDS EXPIRED UNREAD" in text
    (row,) = [line for line in text.splitlines() if line.strip().startswith("events")]
    assert row.endswith("7 expired unread")
