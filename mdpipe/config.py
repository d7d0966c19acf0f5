"""Configuration for every mdpipe stage: one TOML file plus ``MDPIPE_<SECTION>__<KEY>`` variables.

The only reader of ``os.environ`` for settings. Each stage receives its own frozen section.
A bad value raises :class:`ConfigError` whose message is one line naming the setting
(``kafka.partitions``) and, where the set is closed, the accepted values.

Precedence (lowest first): struct defaults, the TOML file (``--config``, ``$MDPIPE_CONFIG`` or
``./mdpipe.toml``), environment variables, and finally the addresses written by ``mdpipe infra up``
(``infra.json`` in :func:`run_dir`) for ``kafka.bootstrap_servers`` / ``postgres.dsn`` when those are left empty.

State (spools, RocksDB, infra data) lives in :func:`run_dir`: ``$MDPIPE_RUN_DIR``, else ``.run/`` of a source
checkout, else the per-user ``$XDG_STATE_HOME/mdpipe`` (``~/.local/state/mdpipe``), never inside the package.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
import typing
from pathlib import Path
from typing import Any, Literal

import msgspec

__all__ = [
    "Config",
    "ConfigError",
    "DedupConfig",
    "GatherConfig",
    "KafkaConfig",
    "LogConfig",
    "PostgresConfig",
    "SimConfig",
    "SinkConfig",
    "VenueConfig",
    "cache_dir",
    "gatherer_metrics_port",
    "is_checkout",
    "load_config",
    "redacted",
    "repo_root",
    "run_dir",
    "user_state_dir",
]

ENV_PREFIX = "MDPIPE_"
GATHERER_ID = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
INSTANCE_ID = re.compile(r"^[A-Za-z0-9._-]{1,200}$")  # a legal Kafka group.instance.id


class ConfigError(ValueError):
    """A setting is missing or invalid. ``str(err)`` is one line that names the setting."""


class _Section(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    pass


def _positive(name: str, value: float) -> None:
    if value <= 0:
        raise ValueError(f"{name}: must be > 0, got {value}")


# Default /metrics + /healthz ports (documented in docs/operations-observability.md and used by
# infra/prometheus/prometheus.yml). Gatherer gather.ids[i] serves on GATHER_METRICS_PORT + i.
GATHER_METRICS_PORT = 9101
DEDUP_METRICS_PORT = 9111
SINK_METRICS_PORT = 9121
SIM_METRICS_PORT = 9131
DEFAULT_METRICS_HOST = "127.0.0.1"
# gather.bundle_max_bytes at most: librdkafka's message.max.bytes default (a larger record is refused by the client)
MAX_BUNDLE_BYTES = 1_000_000


def _metrics_address(host: str, port: int) -> None:
    """``metrics_host`` / ``metrics_port`` of a stage: a bind address and a TCP port (0 = any free port)."""
    if not host.strip() or any(c.isspace() for c in host):
        raise ValueError(f"metrics_host: must be an address to bind (0.0.0.0, ::, 127.0.0.1, ...), got {host!r}")
    if not 0 <= port <= 65535:
        raise ValueError(f"metrics_port: must be 0 (any free port) .. 65535, got {port}")


class KafkaConfig(_Section):
    """Broker connection and topic layout."""

    bootstrap_servers: str = ""
    partitions: int = 6
    replication_factor: int = 1
    min_insync_replicas: int = 1
    raw_retention_ms: int = 7 * 24 * 3600 * 1000
    events_retention_ms: int = 7 * 24 * 3600 * 1000
    dlq_retention_ms: int = 30 * 24 * 3600 * 1000
    compression: Literal["none", "gzip", "snappy", "lz4", "zstd"] = "lz4"
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["", "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = ""
    sasl_username: str = ""
    sasl_password: str = ""
    ssl_cafile: str = ""
    topic_prefix: str = ""  # prepended to every topic name (raw.*, events, dlq, markets); tests isolate with it
    # commands that need the broker ask it for metadata first and stop with one line when it does not answer
    # within this long (mdpipe.preflight), instead of librdkafka's retries
    probe_timeout_s: float = 5.0

    def __post_init__(self) -> None:
        _positive("partitions", self.partitions)
        _positive("probe_timeout_s", self.probe_timeout_s)
        _positive("replication_factor", self.replication_factor)


class PostgresConfig(_Section):
    """Database the sink loads into (and `verify` reads)."""

    dsn: str = ""
    timescaledb: Literal["auto", "on", "off"] = "auto"
    chunk_interval: str = "1 hour"  # TimescaleDB chunk length
    compress_after: str = "6 hours"
    # Data older than this is dropped, whole partitions (plain) or chunks (TimescaleDB) at a time; "off" (the
    # default) keeps everything: an archive keeps every message unless told otherwise.
    retention: str = "off"
    # Plain PostgreSQL: event tables are partitioned by ts in ranges of this length (days or hours, aligned to
    # the Unix epoch, UTC); the sink creates partitions_ahead of them ahead of the clock, at start-up and every
    # partition_check_s (sink.partitions).
    partition_interval: str = "1 day"
    partitions_ahead: int = 2
    partition_check_s: float = 300.0

    def __post_init__(self) -> None:
        if self.partitions_ahead < 1:
            raise ValueError(f"partitions_ahead: must be >= 1, got {self.partitions_ahead}")
        _positive("partition_check_s", self.partition_check_s)


def _default_venue() -> str:
    from venues import default_name

    return default_name()


class VenueConfig(_Section):
    """Which venue to gather from and how to authenticate."""

    # a venue of the venue wing (venues/<name>/); default: the venue that declares itself the default
    name: str = msgspec.field(default_factory=_default_venue)
    rest_url: str = "http://127.0.0.1:8700/trade-api/v2"
    ws_url: str = "ws://127.0.0.1:8700/trade-api/ws/v2"
    key_id: str = ""
    private_key_path: str = ""
    private_key_pem: str = ""
    auth: bool = True
    # PEM file of the CA trusted for wss:// and https:// venue URLs; "" = the system trust store (the real venue)
    ca_file: str = ""

    def __post_init__(self) -> None:
        from venues import UnknownVenue, get_venue

        try:
            get_venue(self.name)
        except UnknownVenue as exc:
            raise ValueError(f"name: {exc}") from None


class GatherConfig(_Section):
    """Gatherer (ingest) tuning."""

    ids: list[str] = msgspec.field(default_factory=lambda: ["g1", "g2", "g3"])
    markets_per_connection: int = 7000
    markets_per_subscription: int = 7000
    channels: list[str] = []  # venue channels to subscribe; empty: every market-data channel of the venue
    discovery_interval_s: float = 60.0
    silence_timeout_s: float = 30.0
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 30.0
    queue_max_frames: int = 200_000  # records in librdkafka's queue (a bundle, gather.bundle_max_bytes, counts once)
    spool_dir: str = ""
    spool_max_bytes: int = 10 * 1024**3
    # /metrics + /healthz: gatherer gather.ids[i] listens on metrics_port + i (0 = any free port); metrics_host is
    # the bind address (0.0.0.0 or :: for a Prometheus or a probe on another host)
    metrics_port: int = GATHER_METRICS_PORT
    metrics_host: str = DEFAULT_METRICS_HOST
    # identical delta/ticker bodies are numbered per venue millisecond; a body is forgotten once the venue clock has
    # moved this far past it (memory only: see the venue's event keys)
    key_horizon_s: float = 120.0
    probe_timeout_s: float = 10.0  # a silent connection's probe must be answered within this, else it reconnects
    snapshot_hold_s: float = 1.0  # a snapshot waits this long for the deltas that follow it (its position)
    # a lifecycle stream with nothing new for this long keys its waiting messages by the anchor before them
    anchor_hold_s: float = 5.0
    # a lifecycle message with an anchor before it waits at most this long for the next anchor (its forward key),
    # then it is keyed by the anchor before it alone, and again with its forward key when the next anchor comes
    # (the venue's anchor chain, where it has one); 0 = no cap: it waits for the next anchor (seconds on the demo's
    # stream). Off by default: the cap is exactly-once only while the dedup stage reads the gatherers' topics < 1 s
    # apart
    anchor_max_wait_ms: float = 0.0
    queue_max_kbytes: int = 256 * 1024  # producer queue bound before frames go to the on-disk spool
    # frames are held this long before they go to librdkafka together (ingest.gatherer): the raw hop's latency cost
    # (a frame waits 0..linger_ms, up to 2x when no read follows) against librdkafka's per-request CPU
    linger_ms: int = 40
    # picows: after a read, a venue socket is not read again for this long, so one read returns every message of
    # the window (fewer wake-ups per message); the receive hop's latency cost is 0..read_window_ms (0 = off).
    # A frame's linger counts from its window's start, so with read_window_ms >= linger_ms every read releases.
    read_window_ms: float = 40.0
    # A release's frames of one raw partition travel in one Kafka record (a bundle, schemas.raw_record) of up to
    # this many bytes: every record costs each stage a fixed amount, three records per venue event. A frame
    # larger than this goes alone. 0 = one frame per record, for readers of the raw topics outside mdpipe. At most
    # 1,000,000 (librdkafka's message.max.bytes and about the broker's default max.message.bytes).
    bundle_max_bytes: int = 256 * 1024
    ws_client: Literal["picows", "websockets"] = "picows"  # venue WebSocket client (picows: ~8x less CPU/frame)
    # REST listings lag the WebSocket (~30 s seen): a market's REST status counts only for requests sent at least
    # this long after the market's last lifecycle change; until then the lifecycle status wins (ingest.registry).
    rest_lag_s: float = 60.0
    # REST status filters that discovery lists every pass, for a venue that lists by status: [] = the venue's own
    # (the statuses a gatherer holds), else a list the venue checks. A held market missing from all of them is
    # released only once a look-up by ticker shows it closed/settled (ingest.registry).
    discovery_statuses: list[str] = []
    # The service loop (delivery reports, spool drain, metrics) failing this long without one success: the
    # gatherer turns unhealthy and exits with status 3 for its supervisor (ingest.gatherer).
    task_failure_limit_s: float = 120.0
    # /healthz answers 503 for this long after a frame was dropped (spool or disk full, permanent broker error).
    unhealthy_after_drop_s: float = 30.0
    # Credentials the venue refuses (HTTP 401/403): with nothing streaming, 3 refusals in a row make the gatherer
    # give up (exit 2, one line) after 5 s when they were never accepted since start, after this long when they had
    # been (a revoked key, or the venue's auth hiccuping for a while); see ingest.auth_refusals.
    auth_refusal_limit_s: float = 120.0
    # REST requests per second of one gatherer (discovery listings, their look-ups by ticker and lifecycle refreshes
    # share it; bursts of one second's worth). The default fits the first venue's basic tier: 200 read
    # tokens/s per account at 10 tokens per request = 20 requests/s per account; three gatherers on one account get
    # 20/3 = 6.7 each, less a margin for anything else using the account: 5 (its production notes under docs/).
    rest_requests_per_s: float = 5.0
    # The broker unreachable this long (since it last answered): new frames go to the on-disk spool and what the
    # producer held in memory is moved there too; replayed in order once it answers (ingest.outage). Lower: less to
    # lose if the gatherer dies early in an outage; higher: fewer spool round trips for a broker that blips.
    spool_after_s: float = 5.0
    # fsync cadence of the spool: a power failure loses at most this many seconds of spooled frames (ingest.spool).
    spool_fsync_s: float = 1.0

    def __post_init__(self) -> None:
        for gid in self.ids:
            if not GATHERER_ID.match(gid):
                raise ValueError(f"ids: gatherer id {gid!r} must match {GATHERER_ID.pattern}")
        _metrics_address(self.metrics_host, self.metrics_port)
        if self.metrics_port and self.metrics_port + len(self.ids) - 1 > 65535:
            raise ValueError(f"metrics_port: {self.metrics_port} + one port per gatherer id passes 65535")
        _positive("markets_per_connection", self.markets_per_connection)
        _positive("markets_per_subscription", self.markets_per_subscription)
        _positive("silence_timeout_s", self.silence_timeout_s)
        _positive("probe_timeout_s", self.probe_timeout_s)
        _positive("key_horizon_s", self.key_horizon_s)
        _positive("rest_lag_s", self.rest_lag_s)
        _positive("task_failure_limit_s", self.task_failure_limit_s)
        _positive("auth_refusal_limit_s", self.auth_refusal_limit_s)
        _positive("rest_requests_per_s", self.rest_requests_per_s)
        _positive("spool_after_s", self.spool_after_s)
        if self.anchor_max_wait_ms < 0:
            raise ValueError(f"anchor_max_wait_ms: {self.anchor_max_wait_ms} must be >= 0 (0: no cap)")
        _positive("spool_fsync_s", self.spool_fsync_s)
        if not 0 <= self.bundle_max_bytes <= MAX_BUNDLE_BYTES:
            raise ValueError(
                f"bundle_max_bytes: {self.bundle_max_bytes} must be 0 (one frame per record) to {MAX_BUNDLE_BYTES}"
            )


class DedupConfig(_Section):
    """Dedup stage tuning (both engines unless noted)."""

    app_id: str = "mdpipe-dedup"
    window_s: float = 3600.0
    data_dir: str = ""
    metrics_port: int = DEDUP_METRICS_PORT  # /metrics + /healthz (0 = any free port); one worker per host and port
    metrics_host: str = DEFAULT_METRICS_HOST  # bind address (0.0.0.0 or :: to be scraped from another host)
    singles_horizon_s: float = 30.0  # an event is "seen by one gatherer only" if no copy came within this
    standby_replicas: int = 0  # Faust table standbys (1 in production with >= 2 workers)
    session_timeout_s: float = 10.0  # how fast a dead worker's partitions move to the others
    engine: Literal["native", "faust"] = "native"  # native: confluent-kafka batch worker; faust: the Faust app
    # Native engine: static group membership (Kafka group.instance.id). A worker restarted under the same id (after a
    # crash, a deploy) gets its partitions back without a rebalance and without waiting for its old session to
    # expire; a worker that stops for good keeps its partitions unowned until session_timeout_s (no leave on close).
    # "" = "<host name>-<work dir name>" (unique per worker: two live workers with one id fence each other);
    # "none" = dynamic membership (every stop and start moves partitions).
    group_instance_id: str = ""
    # Native engine timers and fetch sizes, down to commit_every (each one's latency cost said here; chosen from
    # bench-dedup's paced case, figures in docs/latency-budget.md; the Faust engine has its own, dedup_stream.app):
    # the broker answers the worker's fetch once fetch_min_bytes of raw frames are ready or fetch_wait_ms passed.
    # Small fetches cost the worker (librdkafka threads and a Python wake-up per fetch) and the broker CPU per
    # request; a frame waits at most fetch_wait_ms for its fetch (less when the bytes fill first: the busier the
    # pipeline, the shorter the wait), and every frame of a fetch then waits for the whole fetch to be decided and its
    # changelog acknowledged, so the wait counts in the dedup hop about twice. At a paced rate the bytes do not fill
    # within the wait and the wait alone sets the batch. A shorter wait shortens the dedup hop but costs the worker
    # and the broker CPU per frame (more, smaller batches); docs/latency-budget.md has what 20 and 30 (against 50
    # and 20) bought and cost in the whole pipeline
    fetch_wait_ms: int = 30
    fetch_min_bytes: int = 256 << 10
    # the changelog and events producers send a batch this long after its first record: adds up to 2 x linger_ms to
    # a frame's dedup hop (its batch's changelog, then its events)
    linger_ms: int = 2
    # raw offsets are committed this often (and every commit_every frames), asynchronously once the output of the
    # frames named is acknowledged: the loop reads on meanwhile, the events of the batches decided meanwhile wait for
    # those acknowledgements (one round trip, a few ms; dedup_stream.commit_point); a crash re-reads and
    # re-emits up to this much input (absorbed by the sink's unique key) and replays the changelog written since, so
    # a SIGKILLed worker's catch-up after its restart grows with it (bench-failover); each commit also stores the
    # changelog offset in the local state (what a restart replays from)
    commit_interval_s: float = 1.0
    commit_every: int = 50_000

    def __post_init__(self) -> None:
        _positive("window_s", self.window_s)
        _positive("fetch_wait_ms", self.fetch_wait_ms)
        _positive("fetch_min_bytes", self.fetch_min_bytes)
        _positive("commit_interval_s", self.commit_interval_s)
        _positive("commit_every", self.commit_every)
        if self.linger_ms < 0:
            raise ValueError(f"linger_ms: must be >= 0, got {self.linger_ms}")
        _metrics_address(self.metrics_host, self.metrics_port)


class SinkConfig(_Section):
    """Database loader tuning."""

    group_id: str = "mdpipe-sink"
    # Timers and sizes, and what each costs (sink.loader, sink.flush; chosen with `python -m bench.sink.paced`):
    # the largest batch (one COPY per table, one transaction). Reached only while catching up (a backlog after a
    # restart or an outage): no latency cost at a paced rate; larger = fewer transactions while draining, more to
    # redo after a crash mid-batch
    batch_rows: int = 20_000
    # each writer lane commits its batches at most once per batch_ms on average (bursts of two; a full batch of
    # batch_rows goes at once), so a record waits at most batch_ms in the sink before its batch goes to a writer
    # (then COPY + COMMIT); a batch whose lane is within its rate goes when its first record arrives (sink.flush).
    # At a paced rate records arrive with each fetch response (sink.fetch_wait_max_ms), so that wait sets the
    # transactions per second (a COMMIT, a WAL flush, a COPY per table) as long as it is at least batch_ms;
    # shorter = more of those per second (docs/latency-budget.md)
    batch_ms: int = 20
    metrics_port: int = SINK_METRICS_PORT  # /metrics + /healthz (0 = any free port); one sink per host and port
    metrics_host: str = DEFAULT_METRICS_HOST  # bind address (0.0.0.0 or :: to be scraped from another host)
    load_markets: bool = True  # also upsert the `markets` topic into the markets table
    backoff_initial_s: float = 0.2
    backoff_max_s: float = 5.0
    idle_exit_s: float = 2.0  # --exit-when-idle: caught up and nothing new for this long
    session_timeout_ms: int = 10_000  # a crashed sink's partitions move to the others after this long
    # the sink's identity in its consumer group (static membership, Kafka group.instance.id): a sink restarted with
    # the same identity gets its partitions back at once, without a rebalance and without waiting out the session of
    # the process it replaces. "" = derived by `mdpipe sink`: "<host name>-<metrics port>" when the metrics port is
    # fixed (one sink per host and port), none (dynamic membership) with metrics_port 0. Two running sinks must
    # never share one (the broker fences the older one). A static member does not leave the group when it stops:
    # a sink stopped for good hands its partitions to the others after session_timeout_ms.
    instance_id: str = ""
    # what the sink's fetch requests ask of the broker: answer once fetch_min_bytes are there or fetch_wait_max_ms
    # have passed (librdkafka fetch.min.bytes / fetch.wait.max.ms). Latency cost: up to fetch_wait_max_ms per record
    # (about half on average) whenever the events topic carries less than fetch_min_bytes per fetch_wait_max_ms,
    # i.e. at any paced rate; in exchange the broker answers one fetch per wait instead of one per producer batch
    # (fewer requests and wake-ups for the broker and the sink). fetch_min_bytes = 1 makes the wait apply only to
    # a topic with nothing new (no latency cost, more fetches)
    fetch_min_bytes: int = 65_536
    fetch_wait_max_ms: int = 20
    # the sink's progress mirrored to Kafka's committed offsets (for `mdpipe status` and other lag tools) at most
    # this often; the sink resumes from the offsets stored with the rows, so this costs no correctness, and Kafka's
    # view of the sink's lag is at most this much older than the database's
    kafka_commit_interval_ms: int = 1000
    helper_share: float = 0.0  # share of each consumed chunk's rows built by a helper process (0 = no helper)
    # database connections writing in parallel; the assigned partitions are split between them (each commits its
    # partitions' rows and offsets in its own transactions) while draining a backlog; at a paced rate (batches due
    # by batch_ms with every writer idle) all lanes' batches commit together as one transaction (sink.flush)
    writers: int = 2
    # a database host that vanishes without resetting the connection: TCP keepalives break an idle wait (e.g. for
    # the COMMIT's answer) after idle + interval * count s, tcp_user_timeout a send nobody acknowledges
    db_keepalives_idle_s: int = 10
    db_keepalives_interval_s: int = 5
    db_keepalives_count: int = 3
    db_tcp_user_timeout_ms: int = 30_000
    max_write_s: float = 120.0  # /healthz is unhealthy while one write attempt has been in flight longer than this
    # events -> COPY rows: "auto" = the compiled C builder when installed, else Python; "c" = require it; "python"
    row_codec: Literal["auto", "c", "python"] = "auto"
    # file the sink appends, per committed batch, when it read and committed each run of events offsets (sink.trace;
    # make bench-e2e / bench-failover set it for the hop table); empty = off
    hop_trace: str = ""

    def __post_init__(self) -> None:
        _positive("batch_rows", self.batch_rows)
        _positive("batch_ms", self.batch_ms)
        _positive("writers", self.writers)
        _positive("db_keepalives_idle_s", self.db_keepalives_idle_s)
        _positive("db_keepalives_interval_s", self.db_keepalives_interval_s)
        _positive("db_keepalives_count", self.db_keepalives_count)
        _positive("db_tcp_user_timeout_ms", self.db_tcp_user_timeout_ms)
        _positive("max_write_s", self.max_write_s)
        _positive("fetch_min_bytes", self.fetch_min_bytes)
        _positive("fetch_wait_max_ms", self.fetch_wait_max_ms)
        if self.kafka_commit_interval_ms < 0:
            raise ValueError(f"kafka_commit_interval_ms: must be >= 0, got {self.kafka_commit_interval_ms}")
        _metrics_address(self.metrics_host, self.metrics_port)
        if self.instance_id and not INSTANCE_ID.match(self.instance_id):
            raise ValueError(f"instance_id: must match {INSTANCE_ID.pattern}, got {self.instance_id!r}")
        if not 0.0 <= self.helper_share < 1.0:
            raise ValueError(f"helper_share: must be >= 0 and < 1, got {self.helper_share}")
        # row_codec = "c" needs the compiled builder: the sink checks its own install at start-up (sink.cli).


class SimConfig(_Section):
    """Venue emulator defaults (CLI flags override)."""

    markets: int = 1000
    rate: float = 1000.0
    port: int = 8700
    seed: int = 1
    truth_path: str = ""
    auth: bool = True
    public_key_path: str = ""
    key_id: str = ""
    sub_cap: int = 0
    identical_share: float = 0.05
    churn_per_s: float = 0.2
    heartbeat_s: float = 10.0
    metrics_port: int = SIM_METRICS_PORT  # /metrics + /healthz (0 = any free port)
    metrics_host: str = DEFAULT_METRICS_HOST  # bind address
    # Real-venue behaviours (venue_sim.lifecycle; `mdpipe sim --help`); off by default, `mdpipe demo` turns them on.
    checkpoint_s: float = 20.0
    dormant_share: float = 0.0
    rest_lag_s: float = 0.0
    activate_after_s: float = 0.0
    pause_per_s: float = 0.0
    pause_markets: int = 8
    pause_s: float = 3.0
    flap_share: float = 0.25
    metadata_per_s: float = 0.0
    unknown_lifecycle_per_s: float = 0.0
    fee_update_per_s: float = 0.0
    event_lifecycle: bool = False

    def __post_init__(self) -> None:
        _metrics_address(self.metrics_host, self.metrics_port)
        for name in ("dormant_share", "flap_share"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name}: must be in 0..1, got {value}")
        for name in (
            "checkpoint_s",
            "rest_lag_s",
            "activate_after_s",
            "pause_per_s",
            "pause_s",
            "metadata_per_s",
            "unknown_lifecycle_per_s",
            "fee_update_per_s",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}: must be >= 0, got {getattr(self, name)}")
        if self.pause_markets < 1:
            raise ValueError(f"pause_markets: must be >= 1, got {self.pause_markets}")


class LogConfig(_Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["kv", "json"] = "kv"


class Config(_Section):
    """The whole effective configuration."""

    kafka: KafkaConfig = msgspec.field(default_factory=KafkaConfig)
    postgres: PostgresConfig = msgspec.field(default_factory=PostgresConfig)
    venue: VenueConfig = msgspec.field(default_factory=VenueConfig)
    gather: GatherConfig = msgspec.field(default_factory=GatherConfig)
    dedup: DedupConfig = msgspec.field(default_factory=DedupConfig)
    sink: SinkConfig = msgspec.field(default_factory=SinkConfig)
    sim: SimConfig = msgspec.field(default_factory=SimConfig)
    log: LogConfig = msgspec.field(default_factory=LogConfig)

    def __post_init__(self) -> None:
        if self.gather.discovery_statuses:  # the venue's to check: only it knows its statuses
            from venues import get_venue
            from venues.interface import discovery_kind

            found = get_venue(self.venue.name).discovery(self.venue.rest_url, 1000)
            if discovery_kind(found) != "status_listings":
                raise ValueError(f"gather.discovery_statuses: venue {self.venue.name} does not list by status; use []")
            try:
                found.statuses(list(self.gather.discovery_statuses))  # type: ignore[union-attr]
            except ValueError as exc:
                raise ValueError(f"gather.discovery_statuses: {exc}") from None


def gatherer_metrics_port(gather: GatherConfig, gatherer_id: str) -> int:
    """The /metrics port of gatherer ``gatherer_id``: ``gather.metrics_port + i`` where ``gather.ids[i]`` is it, so
    that the gatherers of one host never collide and a scrape config can name each one (g1 -> 9101, g2 -> 9102...).

    0 stays 0 (any free port). An id missing from ``gather.ids`` has no port of its own: :class:`ConfigError`
    (dedup reads only the raw topics of ``gather.ids`` anyway); pass ``--metrics-port`` to run it regardless."""
    if gather.metrics_port == 0:
        return 0
    if gatherer_id not in gather.ids:
        raise ConfigError(
            f"config setting gather.metrics_port: gatherer {gatherer_id!r} is not in gather.ids "
            f"({', '.join(gather.ids)}), so it has no port of its own; add it there or pass --metrics-port"
        )
    return gather.metrics_port + gather.ids.index(gatherer_id)


SECRET_FIELDS = {("kafka", "sasl_password"), ("venue", "private_key_pem")}


def repo_root() -> Path:
    """The folder above the ``mdpipe`` package: a source checkout (``$MDPIPE_HOME`` when set), or site-packages
    for a regular install (see :func:`is_checkout`)."""
    env = os.environ.get("MDPIPE_HOME")
    if env:
        return Path(env).resolve()
    return Path(__file__).resolve().parent.parent


def is_checkout(root: Path | None = None) -> bool:
    """mdpipe runs from a source checkout (a clone, an editable install, ``$MDPIPE_HOME``): the folder above the
    package holds ``pyproject.toml``. A regular (wheel) install sits in site-packages, which has none."""
    return ((root or repo_root()) / "pyproject.toml").is_file()


def user_state_dir(environ: typing.Mapping[str, str] | None = None) -> Path:
    """The per-user state folder: ``$XDG_STATE_HOME/mdpipe`` (an absolute XDG_STATE_HOME only, as the XDG spec
    says), else ``~/.local/state/mdpipe``."""
    environ = os.environ if environ is None else environ
    xdg = environ.get("XDG_STATE_HOME", "")
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".local" / "state"
    return base / "mdpipe"


def cache_dir() -> Path:
    """Downloaded tools (the native broker's jars): ``.cache/`` of a source checkout, else the per-user
    ``$XDG_CACHE_HOME/mdpipe`` (absolute only), ``~/.cache/mdpipe``; never inside the installed package."""
    root = repo_root()
    if is_checkout(root):
        return root / ".cache"
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    return (Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".cache") / "mdpipe"


def run_dir() -> Path:
    """The folder for runtime state: the native broker's and database's data, ``infra.json`` (addresses), gatherer
    spools, dedup RocksDB state, stage records, demo and replay work folders.

    The rule, first match wins:

    1. ``$MDPIPE_RUN_DIR`` when set (the container image sets ``/var/lib/mdpipe``, a volume);
    2. a source checkout (:func:`is_checkout`): ``<checkout>/.run``, git-ignored; `make demo`, `make up` and the
       tests share it;
    3. a regular install: the per-user state folder (:func:`user_state_dir`, ``~/.local/state/mdpipe``), never a
       folder inside the installed package.
    """
    env = os.environ.get("MDPIPE_RUN_DIR")
    if env:
        return Path(env)
    root = repo_root()
    return root / ".run" if is_checkout(root) else user_state_dir()


def _env_overlay(environ: typing.Mapping[str, str]) -> dict[str, dict[str, Any]]:
    sections = {f.name for f in msgspec.structs.fields(Config)}
    out: dict[str, dict[str, Any]] = {}
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX) or "__" not in name:
            continue
        section, _, key = name[len(ENV_PREFIX) :].partition("__")
        section, key = section.lower(), key.lower()
        if section not in sections:
            raise ConfigError(f"{name}: unknown section {section!r}; accepted: {', '.join(sorted(sections))}")
        out.setdefault(section, {})[key] = _parse_env_value(raw)
    return out


def _parse_env_value(raw: str) -> Any:
    text = raw.strip()
    if text[:1] in "[{":
        try:
            return json.loads(text)
        except ValueError:
            pass
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    return raw


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _accepted_values(path: list[str]) -> str:
    """For a failing setting path, the accepted values when its type is a closed set."""
    tp: Any = Config
    for part in path:
        hints = typing.get_type_hints(tp) if isinstance(tp, type) else {}
        if part not in hints:
            return ""
        tp = hints[part]
    if typing.get_origin(tp) is Literal:
        return "; accepted: " + ", ".join(repr(v) for v in typing.get_args(tp))
    return ""


def _format_validation(err: msgspec.ValidationError, source: str) -> ConfigError:
    text = str(err)
    match = re.search(r"- at `\$\.([\w.\[\]]+)`$", text)
    if not match:
        across = re.match(r"^(\w+\.\w+): (.*)$", text)  # raised by Config.__post_init__: "section.field: reason"
        if across:
            return ConfigError(f"config setting {across.group(1)} ({source}): {across.group(2)}")
        return ConfigError(f"config ({source}): {text}")
    path = match.group(1)
    detail = text[: match.start()].strip().rstrip("-").strip()
    field = re.match(r"^(\w+): (.*)$", detail)
    if field:  # raised by a section's __post_init__: "field: reason"
        path, detail = f"{path}.{field.group(1)}", field.group(2)
    parts = [p for p in re.split(r"[.\[\]]", path) if p and not p.isdigit()]
    return ConfigError(f"config setting {path} ({source}): {detail}{_accepted_values(parts)}")


def _infra_addresses() -> dict[str, str]:
    state = run_dir() / "infra.json"
    try:
        data = json.loads(state.read_text())
    except (OSError, ValueError):
        return {}
    return {k: v for k, v in data.items() if isinstance(v, str)}


def load_config(
    path: str | os.PathLike[str] | None = None,
    environ: typing.Mapping[str, str] | None = None,
    use_infra_state: bool = True,
) -> Config:
    """Read TOML + environment, validate, fill broker/database addresses from `mdpipe infra up`."""
    environ = os.environ if environ is None else environ
    source = "defaults"
    data: dict[str, Any] = {}
    chosen = path or environ.get("MDPIPE_CONFIG")
    if chosen is None and Path("mdpipe.toml").is_file():
        chosen = "mdpipe.toml"
    if chosen is not None:
        try:
            data = tomllib.loads(Path(chosen).read_text())
        except OSError as exc:
            raise ConfigError(f"config file {chosen}: cannot read ({exc.strerror})") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {chosen}: invalid TOML ({exc})") from None
        source = str(chosen)
    overlay = _env_overlay(environ)
    if overlay:
        source = f"{source} + environment" if chosen else "environment"
    data = _merge(data, overlay)
    try:
        config = msgspec.convert(data, Config, strict=False)
    except msgspec.ValidationError as exc:
        raise _format_validation(exc, source) from None
    if use_infra_state:
        infra = _infra_addresses()
        if not config.kafka.bootstrap_servers and infra.get("bootstrap_servers"):
            config = msgspec.structs.replace(
                config, kafka=msgspec.structs.replace(config.kafka, bootstrap_servers=infra["bootstrap_servers"])
            )
        if not config.postgres.dsn and infra.get("dsn"):
            config = msgspec.structs.replace(
                config, postgres=msgspec.structs.replace(config.postgres, dsn=infra["dsn"])
            )
    return config


def redacted(config: Config) -> dict[str, Any]:
    """The configuration as builtins with secrets (passwords, keys, DSN passwords) masked."""
    data: dict[str, Any] = msgspec.to_builtins(config)
    for section, key in SECRET_FIELDS:
        if data[section].get(key):
            data[section][key] = "***"
    data["postgres"]["dsn"] = re.sub(r"(://[^:/@]+:)[^@]+@", r"\1***@", data["postgres"]["dsn"])
    data["postgres"]["dsn"] = re.sub(r"(password=)\S+", r"\1***", data["postgres"]["dsn"])
    return data
