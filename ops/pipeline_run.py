"""One whole-pipeline run on the emulator: venue_sim, N gatherers, one dedup worker, one sink, then verify.

Shared by `make demo`, the end-to-end test and `make bench-e2e`. A run gets a fresh database and fresh
topics, so its verification speaks of that run alone.

Venues (``RunOptions.venues``, names of :func:`venues.names`; none = the default venue): one emulator per venue
(``mdpipe sim --venue``), N gatherers per venue, and ONE dedup and ONE sink for all of them. With one venue the
children are ``sim`` and ``gather-g1..gN``; with several, ``sim-<venue>`` and ``gather-<venue>-g1..`` and each
emulator writes its truth under ``<workdir>/<venue>/``. Every gatherer writes its own raw topic
(``raw.<gatherer>``, the same partition count for all); dedup reads them all and emits into the one ``events``
topic (a frame carries its ``venue``: dedup normalises it with that venue's normaliser; the venues' markets and
event keys never collide), and the sink loads every venue into the same tables (their ``venue`` column).
Verification runs per venue against that venue's emulator and only that venue's rows.

Progress is measured where the data is: topic end offsets (what each gatherer wrote, what dedup emitted), the dedup
group's committed offsets, and the sink's offsets stored with the rows.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from mdpipe.config import Config, SimConfig, run_dir
from mdpipe.logging import get_logger
from ops.cpu import CpuSample, cpu_rows
from ops.cpu import sample as cpu_sample
from ops.fault_spacing import BLINDING, FaultSpacing
from ops.probe import KafkaProbe
from ops.processes import Child
from ops.settle import Settle, SettleWatch, stage_lags

__all__ = ["DEMO_VENUE", "FaultPlan", "PipelineRun", "Progress", "RunOptions", "venue_args"]

# sink_committed's kept connection: what bounded the connection each tick used to open, and a dead peer noticed
_PROGRESS_DB_OPTIONS = {
    "connect_timeout": 3,
    "options": "-c statement_timeout=3000",
    "keepalives": 1,
    "keepalives_idle": 5,
    "keepalives_interval": 2,
    "keepalives_count": 2,
    "tcp_user_timeout": 5000,
}
LISTING_INTERVAL_S = 5.0  # gather.discovery_interval_s of a venue whose markets arrive by listing only (see _env)

log = get_logger(__name__)

VENUE_FIGURES = ("dormant_markets", "paused_markets", "rest_lag_s")  # /_sim/stats figures the display shows


@dataclass(frozen=True)
class FaultPlan:
    """Faults injected during a run, at fractions of its duration."""

    disconnect_at: float | None = 0.25  # the venue closes one gatherer connection
    seq_gap_at: float | None = 0.40  # the venue drops one message on one connection
    kill_gatherer_at: float | None = 0.55  # SIGKILL one gatherer, restart it after `restart_after_s`
    restart_after_s: float = 5.0
    redeliver_at: tuple[float, ...] = (0.30, 0.70)  # the busiest connection gets one seq twice
    bad_number_at: tuple[tuple[float, str], ...] = ((0.45, "exp"), (0.80, "digits"))  # (when, variant)
    # (when, child name): SIGKILL that child and start it again at once, as a supervisor would (make bench-failover)
    crash_restart_at: tuple[tuple[float, str], ...] = ()

    @classmethod
    def none(cls) -> FaultPlan:
        return cls(None, None, None, redeliver_at=(), bad_number_at=())


# What the real venue does that the emulator reproduces during a demo (`mdpipe sim` flags, see its --help): at
# 20,000 markets and 5,000 events/s for 120 s, two quiet gatherer connections out of three (70 % dormant markets),
# REST 30 s behind the WebSocket, ~30 deactivate/activate cycles on 6 markets with fast repeats, metadata and fee
# updates with identical bodies repeating, a few unknown lifecycle types, and markets created (activated 3 s later)
# while running. They are behaviours, not faults: ``--no-faults`` keeps them. Every other setting of the emulator is
# the ``sim`` section's default; a run with ``venue=SimConfig()`` is the emulator as configured by default.
DEMO_VENUE = SimConfig(
    dormant_share=0.7,
    rest_lag_s=30.0,
    churn_per_s=0.1,  # markets created (and one settled) per second
    activate_after_s=3.0,
    pause_per_s=0.25,
    pause_markets=6,
    flap_share=0.3,
    metadata_per_s=0.2,
    unknown_lifecycle_per_s=0.03,
    fee_update_per_s=0.1,
    event_lifecycle=True,
)


def venue_args(venue: SimConfig) -> list[str]:
    """The `mdpipe sim` flags that give the emulator ``venue``'s real-venue behaviours."""
    return [
        "--dormant-share", str(venue.dormant_share),
        "--rest-lag", str(venue.rest_lag_s),
        "--churn", str(venue.churn_per_s),
        "--activate-after", str(venue.activate_after_s),
        "--pause-rate", str(venue.pause_per_s),
        "--pause-markets", str(venue.pause_markets),
        "--pause-s", str(venue.pause_s),
        "--flap-share", str(venue.flap_share),
        "--metadata-rate", str(venue.metadata_per_s),
        "--unknown-lifecycle-rate", str(venue.unknown_lifecycle_per_s),
        "--fee-update-rate", str(venue.fee_update_per_s),
        "--event-lifecycle" if venue.event_lifecycle else "--no-event-lifecycle",
        "--checkpoint-s", str(venue.checkpoint_s),
    ]  # fmt: skip


@dataclass(frozen=True)
class RunOptions:
    markets: int = 20_000
    rate: float = 5_000.0
    duration_s: float = 120.0
    gatherers: int = 3
    dedup_workers: int = 1  # one native worker: ~95K raw frames/s in bench-dedup; 3 gatherers x 10K events/s = 30K
    seed: int = 7
    faults: FaultPlan = field(default_factory=FaultPlan)
    venue: SimConfig = DEMO_VENUE  # the emulator's behaviours (the demo's; SimConfig(): the sim section's defaults)
    auth: bool = True
    workdir: Path | None = None
    drain_timeout_s: float = 60.0  # give up draining after this long without progress
    database: str = "mdpipe_demo"  # dropped and created fresh by start(); tests and benches use their own name
    hop_trace: bool = False  # the sink writes its hop trace (sink.trace): verify() then adds the hop table
    measure_cpu: bool = False  # CPU samples (ops.cpu) at the start and end of generation and after the drain
    venues: tuple[str, ...] = ()  # the venues of the run (venues.names()); () = the default venue alone
    # wait for the steady state (ops.settle) before duration_s and its faults start; None: they start at once
    settle: Settle | None = None
    # scrape every stage's /metrics at each progress sample (Progress.stages: the live display's stage figures; the
    # settle watch reads them whatever this says). A scrape costs the stage's process a few ms of CPU (prometheus_client
    # formats every sample), which a benchmark that reads none of it would count as the pipeline's
    scrape_stages: bool = True


@dataclass
class Progress:
    elapsed_s: float
    duration_s: float
    venue_events: int = 0
    raw: dict[str, int] = field(default_factory=dict)
    events: int = 0
    dedup_lag: int = 0
    sink_lag: int = 0
    rates: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    # figures scraped from each stage's /metrics (ops.status_cli.stage_figures), by section then child name
    stages: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    dedup_lag_s: float = 0.0  # dedup backlog in seconds of raw input at the run's mean arrival rate
    # the venue's behaviour counters (/_sim/stats "behaviours") plus dormant_markets, paused_markets, rest_lag_s
    venue: dict[str, Any] = field(default_factory=dict)

    def gatherer(self, gid: str, figure: str) -> float:
        return float(self.stages.get("gatherers", {}).get(f"gather-{gid}", {}).get(figure, 0.0))

    def _dedup_per_gatherer(self, figure: str, combine: Callable[[float, float], float]) -> dict[str, float]:
        """A per-gatherer dedup figure, combined over the dedup workers."""
        out: dict[str, float] = {}
        for d in self.stages.get("dedup", {}).values():
            for gid, value in d.get(figure, {}).items():
                out[gid] = combine(out[gid], value) if gid in out else value
        return out

    def sync_lag_s(self) -> dict[str, float]:
        """Per gatherer, the largest sync lag any dedup worker reports."""
        return self._dedup_per_gatherer("sync_lag_s", max)

    def gap_reports(self) -> dict[str, float]:
        """Per gatherer, gap reports counted by dedup (survive a gatherer restart, unlike its own counter)."""
        return self._dedup_per_gatherer("gap_reports", lambda a, b: a + b)

    def sink(self, figure: str) -> float:
        return sum(float(s.get(figure, 0.0)) for s in self.stages.get("sink", {}).values())


class PipelineRun:
    def __init__(self, config: Config, options: RunOptions) -> None:
        self.config = config
        self.options = options
        # names this run's topics, dedup app and sink group on a shared broker: two runs started in the same second
        # (parallel tests, two demos) must not share them, so the second is followed by a random part
        self.run_id = f"{time.strftime('%Y%m%d%H%M%S')}-{secrets.token_hex(3)}"
        self.workdir = options.workdir or run_dir() / "demo"
        self.truth_path = self.workdir / "truth.msgpack"
        from venues import default_name, get_venue

        self.venue_names: tuple[str, ...] = options.venues or (default_name(),)
        for name in self.venue_names:
            get_venue(name)  # an unknown name: one line listing the known ones, before anything starts
        self.multi = len(self.venue_names) > 1
        # gatherer ids per venue: g1..gN with one venue (as always), <venue>-g1.. with several
        self.gatherers_of: dict[str, list[str]] = {
            v: [f"{v}-g{i + 1}" if self.multi else f"g{i + 1}" for i in range(options.gatherers)]
            for v in self.venue_names
        }
        self.gatherer_ids = [g for v in self.venue_names for g in self.gatherers_of[v]]
        self.topic_prefix = f"{self.workdir.name}{self.run_id}."
        self.app_id = f"mdpipe-dedup-{self.run_id}"
        self.group_id = f"mdpipe-sink-{self.run_id}"
        self.children: dict[str, Child] = {}
        self.events_log: list[str] = []
        self.key_id = ""
        self.private_key_path = ""
        self.generation_started_ns = 0
        self._killed = ""  # name of the child this run SIGKILLed and has not restarted yet
        self._spacing = FaultSpacing()  # blinding faults of one venue never overlap (ops.fault_spacing)
        self.rest_url = ""  # the first venue's emulator (urls: every venue's)
        self.ws_url = ""
        self.urls: dict[str, tuple[str, str]] = {}  # venue -> (REST URL, WebSocket URL) of its emulator
        self.truth_paths = {
            v: self.workdir / v / "truth.msgpack" if self.multi else self.truth_path for v in self.venue_names
        }
        self.dsn = ""
        self._probe: KafkaProbe | None = None
        self._progress_db: Any = None  # psycopg connection of sink_committed, kept between progress ticks
        self._scrapes: dict[str, tuple[float, list[Any]]] = {}  # child name -> (monotonic time, last samples)
        self.kills: list[tuple[str, int]] = []  # (child name, wall-clock ns) of each crash_restart_at SIGKILL
        # with options.settle: seconds from the start of generation to the steady state (None: never reached within
        # its timeout), and when the faults' clock started (wall-clock ns)
        self.settled_s: float | None = None
        self.schedule_started_ns = 0
        self.cpu_samples: dict[str, CpuSample] = {}  # mark name -> sample (cpu_mark)
        self.trace_path = self.workdir / "sink-hops.trace"

    # ----------------------------------------------------------------- set-up
    def _client_config(self) -> dict[str, Any]:
        from mdpipe.kafka import kafka_client_config

        return kafka_client_config(self.config.kafka)

    def _fresh_database(self) -> str:
        import psycopg
        from psycopg.conninfo import conninfo_to_dict, make_conninfo

        base = self.config.postgres.dsn
        name = self.options.database
        if not name.replace("_", "").isalnum() or not name[0].isalpha():
            raise ValueError(f"run database name must be letters, digits and underscores: {name!r}")
        with psycopg.connect(make_conninfo(base, dbname="postgres"), autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            conn.execute(f"CREATE DATABASE {name}")
        params = conninfo_to_dict(base)
        params["dbname"] = name
        return make_conninfo(**params)  # type: ignore[arg-type]

    def _fresh_topics(self) -> None:
        """Create this run's topics under its own prefix (``demo<run id>.raw.g1`` ...)."""
        from mdpipe.topics import ensure_topics

        ensure_topics(self._stage_config())

    def _stage_config(self) -> Config:
        gather = msgspec.structs.replace(self.config.gather, ids=self.gatherer_ids)
        kafka = msgspec.structs.replace(self.config.kafka, topic_prefix=self.topic_prefix)
        return msgspec.structs.replace(self.config, gather=gather, kafka=kafka)

    def sim_name(self, venue: str) -> str:
        """The child name of ``venue``'s emulator."""
        return f"sim-{venue}" if self.multi else "sim"

    def venue_of_gatherer(self, gid: str) -> str:
        return next(v for v, ids in self.gatherers_of.items() if gid in ids)

    def _auth(self, venue: str) -> bool:
        from venues import get_venue

        return self.options.auth and get_venue(venue).needs_auth

    def _env(self, venue: str = "") -> dict[str, str]:
        """Every child's environment; a gatherer's (``venue``) also names its venue and that emulator's URLs."""
        from venues import get_venue

        venue = venue or self.venue_names[0]
        rest_url, ws_url = self.urls.get(venue, (self.rest_url, self.ws_url))
        env = {
            "MDPIPE_GATHER__IDS": json.dumps(self.gatherer_ids),
            "MDPIPE_POSTGRES__DSN": self.dsn,
            "MDPIPE_KAFKA__BOOTSTRAP_SERVERS": self.config.kafka.bootstrap_servers,
            "MDPIPE_KAFKA__TOPIC_PREFIX": self.topic_prefix,
            "MDPIPE_DEDUP__APP_ID": self.app_id,
            "MDPIPE_SINK__GROUP_ID": self.group_id,
            "MDPIPE_SINK__INSTANCE_ID": f"sink-{self.run_id}",  # static membership: a restarted sink rejoins at once
            "MDPIPE_VENUE__NAME": venue,
            "MDPIPE_VENUE__REST_URL": rest_url,
            "MDPIPE_VENUE__WS_URL": ws_url,
            "MDPIPE_VENUE__AUTH": "true" if self._auth(venue) else "false",
            # several runs (demos, tests, benchmarks) share a host: free ports, not the documented fixed ones;
            # every stage announces its address in .run/stages
            **{f"MDPIPE_{section}__METRICS_PORT": "0" for section in ("GATHER", "DEDUP", "SINK", "SIM")},
        }
        if self.options.hop_trace:
            env["MDPIPE_SINK__HOP_TRACE"] = str(self.trace_path)
        if not get_venue(venue).lifecycle_channel:  # new markets arrive by listing only: list often
            env["MDPIPE_GATHER__DISCOVERY_INTERVAL_S"] = str(LISTING_INTERVAL_S)
        if self._auth(venue):
            env["MDPIPE_VENUE__KEY_ID"] = self.key_id
            env["MDPIPE_VENUE__PRIVATE_KEY_PATH"] = self.private_key_path
        return env

    def _child(self, name: str, args: list[str], venue: str = "") -> Child:
        child = Child(name, args, self._env(venue), self.workdir / "logs")
        self.children[name] = child
        return child.start()

    def start(self) -> None:
        import shutil

        shutil.rmtree(self.workdir, ignore_errors=True)
        (self.workdir / "logs").mkdir(parents=True)
        self.dsn = self._fresh_database()
        self._fresh_topics()
        for venue in self.venue_names:
            self._start_sim(venue)
        self.rest_url, self.ws_url = self.urls[self.venue_names[0]]
        self._child("sink-migrate", ["sink", "migrate"]).proc.wait()  # type: ignore[union-attr]
        self._child("sink", ["sink"])
        dedups = [f"dedup-{i + 1}" for i in range(self.options.dedup_workers)]
        for name in dedups:
            self._child(name, ["dedup", "--workdir", str(self.workdir / name)])
        self._wait_healthy(["sink", *dedups], timeout=90)
        for gid in self.gatherer_ids:
            self._child(f"gather-{gid}", ["gather", "--id", gid], self.venue_of_gatherer(gid))
        self._probe = KafkaProbe(self._client_config())

    def _start_sim(self, venue: str) -> None:
        """Start ``venue``'s emulator and note its URLs."""
        import re

        truth = self.truth_paths[venue]
        truth.parent.mkdir(parents=True, exist_ok=True)
        sim_args = [
            "sim",
            "--venue", venue,
            "--markets", str(self.options.markets),
            "--rate", str(self.options.rate),
            "--port", "0",
            "--seed", str(self.options.seed),
            "--truth", str(truth),
            *venue_args(self.options.venue),
        ]  # fmt: skip
        if self._auth(venue):
            from venue_sim.keys import generate_test_keypair

            if not self.key_id:
                keys = generate_test_keypair(self.workdir / "keys")
                self.key_id, self.private_key_path = keys.key_id, keys.private_path
            public = str(Path(self.private_key_path).with_name("public.pem"))
            sim_args += ["--public-key", public, "--key-id", self.key_id]
        else:
            sim_args.append("--no-auth")
        sim = self._child(self.sim_name(venue), sim_args, venue)
        rest = re.search(r"https?://\S+", sim.wait_for_line("http://", 120)).group(0)  # type: ignore[union-attr]
        ws = re.search(r"wss?://\S+", sim.wait_for_line("ws://", 30)).group(0)  # type: ignore[union-attr]
        self.urls[venue] = (rest, ws)

    def _wait_healthy(self, names: list[str], timeout: float) -> None:
        """Wait until each child announced its metrics endpoint (.run/stages) and its /healthz answers 200."""
        deadline = time.monotonic() + timeout
        pending = set(names)
        while pending and time.monotonic() < deadline:
            self._check_children()
            by_pid = _stages_by_pid()
            for name in list(pending):
                proc = self.children[name].proc
                record = by_pid.get(proc.pid) if proc is not None else None
                if record is None:
                    continue
                try:
                    with urllib.request.urlopen(str(record["health_url"]), timeout=2) as resp:
                        if resp.status == 200:
                            pending.discard(name)
                except OSError:
                    pass
            time.sleep(0.2)
        if pending:
            raise TimeoutError(f"{', '.join(sorted(pending))} not healthy within {timeout:.0f}s")

    # ----------------------------------------------------------------- faults
    def sim_admin(self, path: str, body: dict[str, Any] | None = None, venue: str = "") -> Any:
        """Call an admin route of ``venue``'s emulator (default: the first venue's)."""
        rest_url = self.urls[venue][0] if venue else self.rest_url
        base = rest_url.split("/trade-api")[0]
        data = json.dumps(body or {}).encode() if body is not None else None
        req = urllib.request.Request(
            f"{base}{path}",
            data=data,
            method="POST" if data is not None else "GET",
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read() or b"null")

    def _note(self, text: str) -> None:
        self.events_log.append(f"{time.strftime('%H:%M:%S')} {text}")
        log.debug("run_event", text=text)

    def _faults_due(self, fraction: float, done: set[str], kill_time: list[float]) -> None:
        for venue in self.venue_names:
            self._venue_faults_due(venue, fraction, done)
        plan = self.options.faults
        gid = self.gatherer_ids[-1]
        if (
            plan.kill_gatherer_at is not None
            and fraction >= plan.kill_gatherer_at
            and "kill" not in done
            and self._may_blind(self.venue_of_gatherer(gid), down=True)
        ):
            done.add("kill")
            victim = self.children[f"gather-{gid}"]
            self._killed = victim.name
            victim.kill()
            kill_time.append(time.monotonic())
            self._note(f"fault: SIGKILL {victim.name}")
        if kill_time and "restart" not in done and time.monotonic() - kill_time[0] >= plan.restart_after_s:
            done.add("restart")
            self._restart_killed()
        for k, (at, name) in enumerate(plan.crash_restart_at):
            if fraction >= at and f"crash{k}" not in done:
                done.add(f"crash{k}")
                self.crash_restart(name)

    def _venue_faults_due(self, venue: str, fraction: float, done: set[str]) -> None:
        """The emulator faults due at ``fraction`` of the run on ``venue``'s emulator, but those its wire gives a client
        no means to detect or undo (:attr:`venues.interface.Venue.silent_faults`)."""
        from venues import get_venue

        plan = self.options.faults
        silent = get_venue(venue).silent_faults
        on = f" ({venue})" if self.multi else ""

        def due(key: str, at: float | None, fault: str) -> bool:
            if at is None or fraction < at or f"{key}{on}" in done:
                return False
            if fault in silent:
                done.add(f"{key}{on}")
                self._note(f"fault {fault}{on} skipped: the venue's wire gives a client no means to detect it")
                return False
            if fault in BLINDING and not self._may_blind(venue):
                return False  # a later tick (ops.fault_spacing)
            done.add(f"{key}{on}")
            return True

        if due("disconnect", plan.disconnect_at, "close"):
            self.sim_admin("/_sim/faults", {"fault": "close", "conn_id": 1}, venue)
            self._note(f"fault: venue closed connection 1{on}")
        if due("gap", plan.seq_gap_at, "drop"):
            self.sim_admin("/_sim/faults", {"fault": "drop", "conn_id": 2}, venue)
            self._note(f"fault: venue dropped one message on connection 2 (seq gap){on}")
        for k, at in enumerate(plan.redeliver_at):
            if due(f"redeliver{k}", at, "redeliver"):
                conn = self._busiest_connection(venue)
                if conn is not None:
                    self.sim_admin("/_sim/faults", {"fault": "redeliver", "conn_id": conn}, venue)
                    self._note(f"fault: venue re-delivered a seq on connection {conn}{on}")
        for k, (at, variant) in enumerate(plan.bad_number_at):
            if due(f"badnumber{k}", at, "badnumber"):
                self.sim_admin("/_sim/faults", {"fault": "badnumber", "variant": variant}, venue)
                self._note(f"fault: venue sent an orderbook_delta with a bad number ({variant}){on}")

    def crash_restart(self, name: str) -> None:
        """SIGKILL child ``name`` and start it again at once (its workdir, hence its local state, kept)."""
        child = self.children[name]
        killed_ns = time.time_ns()
        child.kill()
        self.kills.append((name, killed_ns))
        child.start()
        self._note(f"fault: SIGKILL {name}, restarted")

    def _may_blind(self, venue: str, down: bool = False) -> bool:
        """May a fault that blinds a gatherer of ``venue`` fire now (:mod:`ops.fault_spacing`)? If so it is recorded
        as fired (``down``: a gatherer is killed, until :meth:`_restart_killed`)."""
        now, conns = time.monotonic(), len(self._connections(venue))
        if not self._spacing.may_blind(venue, now, conns):
            return False
        self._spacing.blinded(venue, now, conns, down=down)
        return True

    def _connections(self, venue: str = "") -> list[dict[str, Any]]:
        """The emulator's open connections (its ``/_sim/stats``)."""
        return list(self.sim_admin("/_sim/stats", None, venue).get("connections", []))

    def _busiest_connection(self, venue: str = "") -> int | None:
        """The venue connection that carried the most data so far (quiet ones would hold a redelivery back)."""
        conns = self._connections(venue)
        if not conns:
            return None
        return int(max(conns, key=lambda c: c.get("data_messages", 0))["conn_id"])

    def _restart_killed(self) -> None:
        victim = self.children[self._killed]
        self._killed = ""
        victim.start()
        self._spacing.restored(self.venue_of_gatherer(victim.name.removeprefix("gather-")), time.monotonic())
        self._note(f"restarted {victim.name}")

    # ----------------------------------------------------------------- progress
    def sink_committed(self) -> int:
        """Events the sink committed (its offsets on the events topic only: it also consumes `markets`). Asked every
        progress tick on one kept connection (a new one each second was a backend start per tick, charged to the
        PostgreSQL whose CPU bench-e2e measures); a connection that died (the server restarted, the connection
        killed) is replaced at once; any failure reads 0, as before. Bounded like the connection a tick used to open:
        3 s to connect, 3 s per statement, and a server that stops answering breaks the connection
        (``tcp_user_timeout``, keepalives) instead of freezing the progress loop."""
        import psycopg

        from mdpipe.topics import topic_names

        events = topic_names(self._stage_config()).events
        for _ in range(2):
            kept = self._progress_db is not None and not self._progress_db.closed
            try:
                if not kept:
                    self._progress_db = psycopg.connect(self.dsn, autocommit=True, **_PROGRESS_DB_OPTIONS)
                row = self._progress_db.execute(
                    "SELECT coalesce(sum(next_offset), 0) FROM sink_offsets WHERE group_id = %s AND topic = %s",
                    (self.group_id, events),
                ).fetchone()
                return int(row[0]) if row else 0
            except psycopg.OperationalError:  # the connection (or the server) is gone: one fresh try if it was kept
                self._close_progress_db()
                if not kept:
                    return 0
            except psycopg.Error:  # e.g. no sink_offsets table yet: the connection itself is fine
                return 0
        return 0

    def _close_progress_db(self) -> None:
        db, self._progress_db = self._progress_db, None
        if db is not None:
            with contextlib.suppress(Exception):
                db.close()

    def progress(self, started: float, last: Progress | None) -> Progress:
        assert self._probe is not None
        from mdpipe.topics import topic_names

        names = topic_names(self._stage_config())
        raw_topics = list(names.raw.values())
        now = time.monotonic()
        ends = self._probe.end_offsets([*raw_topics, names.events])
        dedup = self._probe.committed(self.app_id, raw_topics)
        p = Progress(now - started, self.options.duration_s)
        try:
            p.venue_events, p.venue = self._venue_stats()
        except (OSError, ValueError):
            p.venue_events = last.venue_events if last else 0
            p.venue = last.venue if last else {}
        p.raw = {gid: ends[t] for gid, t in names.raw.items()}
        p.events = ends[names.events]
        p.dedup_lag = sum(ends[t] - dedup.get(t, 0) for t in raw_topics)
        p.sink_lag = max(0, ends[names.events] - self.sink_committed())
        if last is not None and p.elapsed_s > last.elapsed_s:
            dt = p.elapsed_s - last.elapsed_s
            p.rates["venue"] = (p.venue_events - last.venue_events) / dt
            for g, n in p.raw.items():
                p.rates[g] = (n - last.raw.get(g, 0)) / dt
            p.rates["events"] = (p.events - last.events) / dt
        generating_s = min(p.elapsed_s, p.duration_s)
        raw_rate = sum(p.raw.values()) / generating_s if generating_s > 0 else 0.0  # mean input rate of the run
        p.dedup_lag_s = p.dedup_lag / raw_rate if raw_rate > 0 else 0.0
        if self.options.scrape_stages or self.options.settle is not None:
            p.stages = self._scrape_stages()
        p.notes = list(self.events_log[-3:])
        return p

    def _venue_stats(self) -> tuple[int, dict[str, Any]]:
        """Events generated and the behaviour figures, summed over the venues' emulators (/_sim/stats)."""
        events, figures = 0, {}
        for venue in self.venue_names:
            stats = self.sim_admin("/_sim/stats", None, venue)
            events += int(stats.get("events_generated", 0))
            for key, value in {**stats.get("behaviours", {}), **{k: stats.get(k, 0) for k in VENUE_FIGURES}}.items():
                if isinstance(value, int | float) and not isinstance(value, bool):
                    figures[key] = figures.get(key, 0) + value
        return events, figures

    def _scrape_stages(self) -> dict[str, dict[str, dict[str, Any]]]:
        """Scrape every child's /metrics (found by pid in .run/stages); rates against the previous scrape."""
        from ops.probe import scrape
        from ops.status_cli import stage_figures

        by_pid = _stages_by_pid()
        out: dict[str, dict[str, dict[str, Any]]] = {}
        for name, child in self.children.items():
            record = by_pid.get(child.proc.pid) if child.proc is not None and child.alive else None
            if record is None:
                continue
            now, samples = time.monotonic(), scrape(str(record["metrics_url"]), timeout=1.0)
            before_at, before = self._scrapes.get(name, (now - 1.0, samples))
            self._scrapes[name] = (now, samples)
            section, figures = stage_figures(name, before, samples, max(now - before_at, 1e-3))
            out.setdefault(section, {})[name] = figures
        return out

    # ----------------------------------------------------------------- the run
    def run(self, on_progress: Callable[[Progress], None] | None = None, interval_s: float = 1.0) -> None:
        """Generate for ``duration_s`` with faults (after the steady state, with ``settle``), then quiesce the venue
        and drain the pipeline."""
        if self.options.measure_cpu:
            self.cpu_mark("start")
        started = time.monotonic()
        self.generation_started_ns = self.schedule_started_ns = time.time_ns()
        done: set[str] = set()
        kill_time: list[float] = []
        last: Progress | None = None
        duration = self.options.duration_s
        watch = SettleWatch(self.options.settle) if self.options.settle else None
        clock: float | None = None if watch else 0.0  # elapsed seconds when the faults' clock started
        while True:
            elapsed = time.monotonic() - started
            if clock is not None and elapsed - clock >= duration:
                break
            if clock is not None:
                self._faults_due((elapsed - clock) / duration, done, kill_time)
            self._check_children()
            last = self.progress(started, last)
            if on_progress:
                on_progress(last)
            if watch is not None and clock is None:
                lags = stage_lags(last.stages, self.options.dedup_workers + 1)
                if watch.observe(last.elapsed_s, lags) or watch.timed_out(elapsed):
                    clock = time.monotonic() - started
                    self.settled_s = None if watch.settled_at is None else round(watch.settled_at, 1)
                    self.schedule_started_ns = self.generation_started_ns + int(clock * 1e9)
                    self._note("never settled" if self.settled_s is None else f"steady after {self.settled_s} s")
            time.sleep(max(0.0, interval_s - (time.monotonic() - started - elapsed)))
        if self.options.measure_cpu:
            self.cpu_mark("end")
        if kill_time and "restart" not in done:
            self._restart_killed()
        for venue in self.venue_names:
            self.sim_admin("/_sim/stop-generating", {}, venue)
        self._note("venue stopped generating; draining")
        self.drain(started, last, on_progress, interval_s)
        if self.options.measure_cpu:
            self.cpu_mark("drained")

    # ----------------------------------------------------------------- CPU
    def cpu_processes(self) -> dict[str, int]:
        """What :meth:`cpu_mark` samples, name -> pid: the emulator and every stage of this run, the broker and the
        PostgreSQL server (from the infra run dir; missing under Docker), and this harness (``bench``)."""
        out = {
            name: child.proc.pid
            for name, child in self.children.items()
            if name != "sink-migrate" and child.proc is not None and child.alive
        }
        out.update(_infra_pids())
        out["bench"] = os.getpid()
        return out

    def cpu_mark(self, name: str) -> CpuSample:
        """Sample every process's CPU (:mod:`ops.cpu`) and the venue's event count now, as mark ``name``."""
        try:
            venue_events = self._venue_stats()[0]
        except (OSError, ValueError):
            venue_events = -1
        taken = cpu_sample(self.cpu_processes(), time.time_ns(), venue_events, own_only=("bench",))
        self.cpu_samples[name] = taken
        return taken

    def cpu_table(self, start: str = "start", end: str = "end") -> dict[str, dict[str, float | None]]:
        """Per process, CPU seconds and µs per venue event between two marks (:func:`ops.cpu.cpu_rows`)."""
        return cpu_rows(self.cpu_samples[start], self.cpu_samples[end])

    def _check_children(self) -> None:
        """Fail the run when a child died, except the gatherer this run killed on purpose (until restarted)."""
        for name, child in self.children.items():
            if name == "sink-migrate" or child.proc is None or child.alive:
                continue
            if name == self._killed and child.returncode == -9:
                continue
            raise RuntimeError(f"{name} exited with status {child.returncode}; see {child.log_path}")

    def drain(
        self, started: float, last: Progress | None, on_progress: Callable[[Progress], None] | None, interval_s: float
    ) -> None:
        """Wait until gatherers stopped writing, dedup consumed everything and the sink loaded all of it.

        Gives up only when nothing moved for ``drain_timeout_s`` (a slow machine may take long, a stuck one
        is reported). Not before the gatherers' holds ran out: a snapshot waits ``gather.snapshot_hold_s`` for its
        position and lifecycle messages of a stream gone quiet wait ``gather.anchor_hold_s`` for their key.
        """
        stable = 0
        gather = self.config.gather
        holds_end = time.monotonic() + gather.anchor_hold_s + gather.snapshot_hold_s + 1.0
        prev: tuple[int, ...] | None = None
        last_move = time.monotonic()
        while time.monotonic() - last_move < self.options.drain_timeout_s:
            self._check_children()
            last = self.progress(started, last)
            if on_progress:
                on_progress(last)
            state = (*last.raw.values(), last.events, last.dedup_lag, last.sink_lag)
            if state != prev:
                last_move = time.monotonic()
            quiet = state == prev and last.dedup_lag == 0 and last.sink_lag == 0
            stable = stable + 1 if quiet else 0
            prev = state
            if stable >= 3 and time.monotonic() >= holds_end:
                return
            time.sleep(interval_s)
        raise TimeoutError(f"pipeline did not drain: nothing moved for {self.options.drain_timeout_s:.0f}s")

    def stop(self) -> None:
        order = [n for n in self.children if n.startswith("gather-")]
        order += [n for n in self.children if n.startswith("dedup-")] + ["sink"]
        order += [self.sim_name(v) for v in self.venue_names]
        try:
            for name in order:
                child = self.children.get(name)
                if child is not None:
                    child.stop()
            if self._probe is not None:
                self._probe.close()
        finally:
            self._close_progress_db()

    def verify(
        self, warmup_s: float = 0.0, windows: dict[str, tuple[int, int]] | None = None, marks: tuple[int, ...] = ()
    ) -> dict[str, Any]:
        """Verify the run; latencies only for events generated ``warmup_s`` after generation started.

        With one venue, that venue's report. With several, one report per venue (its emulator's truth and record
        against its own rows) under ``venues``, and at the top the counts summed, the latency of the slowest venue
        and ``clean`` when every venue is clean.

        With ``hop_trace`` the report also has ``hops_ms`` (:mod:`ops.hops`: per hop over the same events as
        ``latency_ms``), ``hops_by_kind`` (the same per kind of event), ``hop_windows`` (the same per extra window
        of generation times), ``hop_marks`` (per mark, boundary -> when an event generated after it first reached
        it) and ``hop_stats``."""
        if not self.multi:
            return self._verify_venue(self.venue_names[0], warmup_s, windows, marks)
        reports = {v: self._verify_venue(v, warmup_s, windows, marks) for v in self.venue_names}
        return combine_reports(reports)

    def _verify_venue(
        self, venue: str, warmup_s: float, windows: dict[str, tuple[int, int]] | None, marks: tuple[int, ...]
    ) -> dict[str, Any]:
        from ops.verify_cli import verify

        after = self.generation_started_ns + int(warmup_s * 1e9) if warmup_s else 0
        truth, seed = self.truth_paths[venue], self.options.seed
        if not self.options.hop_trace:
            return verify(truth, self.dsn, latency_after_ns=after, venue=venue, seed=seed)
        from mdpipe.topics import topic_names
        from ops.hops import HopJoin
        from ops.hops_read import read_trips

        events = topic_names(self._stage_config()).events
        trips, stats = read_trips(self._client_config(), events, self.trace_path)
        join = HopJoin(trips, {"all": (after, 2**63 - 1), **(windows or {})}, marks)
        report = verify(
            truth,
            self.dsn,
            latency_after_ns=after,
            on_truth=lambda t: join.observe(t.identity, t.gen_ns),
            venue=venue,
            seed=seed,
        )
        report["hops_ms"] = join.table()
        report["hops_by_kind"] = join.table_by_kind()
        report["hop_windows"] = {name: join.table(name) for name in windows or {}}
        report["hop_marks"] = [join.first_after(i) for i in range(len(marks))]
        report["hop_stats"] = {**vars(stats), "paired": join.paired, "unpaired": join.unpaired}
        return report


def combine_reports(reports: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """One report of several venues' (``venue -> report``): integer figures and per-kind counts summed, lists
    joined, latencies of the slowest venue, ``clean`` only when every venue is; each venue's own under ``venues``."""
    out: dict[str, Any] = {}
    for report in reports.values():
        for key, value in report.items():
            if key == "clean":
                continue
            if isinstance(value, bool) or not isinstance(value, int | list | dict):
                out.setdefault(key, value)
            elif isinstance(value, int):
                out[key] = out.get(key, 0) + value
            elif isinstance(value, list):
                out[key] = sorted({*out.get(key, []), *value}) if key == "gatherers" else [*out.get(key, []), *value]
            elif key.endswith("latency_ms"):
                mine = out.get(key) or {}
                out[key] = value if value.get("p99", 0) > mine.get("p99", 0) else mine
            elif key == "latency_by_kind":  # per kind, the slowest venue's
                kinds = dict(out.get(key) or {})
                for kind, dist in value.items():
                    if dist.get("p99", 0) > (kinds.get(kind) or {}).get("p99", 0):
                        kinds[kind] = dist
                out[key] = dict(sorted(kinds.items()))
            else:
                merged = dict(out.get(key) or {})
                for k, v in value.items():
                    merged[k] = merged.get(k, 0) + v if isinstance(v, int) and not isinstance(v, bool) else v
                out[key] = merged
    out["clean"] = all(r["clean"] for r in reports.values())
    out["venues"] = reports
    return out


def _infra_pids() -> dict[str, int]:
    """The native broker's and PostgreSQL's pids from the infra run dir (.run/infra.json; none under Docker)."""
    from infra.procs import cmdline, pid_alive

    try:
        state = json.loads((run_dir() / "infra.json").read_text())
    except (OSError, ValueError):
        return {}
    out: dict[str, int] = {}
    kafka_pid = int((state.get("kafka") or {}).get("pid") or 0)
    if pid_alive(kafka_pid) and "kafka" in cmdline(kafka_pid).lower():
        out["broker"] = kafka_pid
    pg = state.get("postgres") or {}
    pg_pid = int(pg.get("pid") or 0)
    with contextlib.suppress(OSError, ValueError):  # the postmaster's own record is the authority
        pg_pid = int((Path(pg.get("home", "")) / "data" / "postmaster.pid").read_text().split("\n", 1)[0])
    if pid_alive(pg_pid) and "postgres" in cmdline(pg_pid):
        out["postgres"] = pg_pid
    return out


def _stages_by_pid() -> dict[int, dict[str, object]]:
    """The running stages' announcements (.run/stages), by process id."""
    from mdpipe.stage_announce import registered_stages

    return {int(str(r["pid"])): r for r in registered_stages()}
