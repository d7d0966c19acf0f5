"""``mdpipe sim``: run the local venue emulator (REST + WebSocket on one port) until stopped.

The protocol served is the emulator profile of ``--venue`` (default: the config's ``venue.name``, else
:func:`venues.default_name`); its paths and headers are that venue's (``venues/<name>/``).

Prints ``REST http://...`` and ``WS ws://...`` (one line each) on stdout once listening; with ``--tls``
``REST https://...``, ``WS wss://...`` and ``CA <path>`` (the certificate a client must trust: ``venue.ca_file``).
"""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["add_parser", "run"]

FAULTS_HELP = (
    "fault schedule, comma-separated KIND[:ARG][#CONN]@AT (AT = seconds after start, e.g. 10s, 1.5, 250ms). "
    "KIND: drop[:N] (drop next N seq-carrying messages: a seq gap), close (close connection), "
    "freeze:SECS (no data, pings answered, seq keeps counting), delay:LAT[/FOR] (hold frames LAT s for FOR s, "
    "default 5), malformed (one non-JSON text frame), refuse:SECS (HTTP 503 on new connections), "
    "redeliver[:N] (send the next N seq-carrying messages twice, same seq), badnumber[:VARIANT] (one "
    "orderbook_delta of a trading market, valid envelope and next seq, with an out-of-range number: exp = price "
    "1E+1000000 (default), nan = size NaN, digits = a 5,000-digit size, negative = a negative price; a venue event "
    "that does not change the book, sent to every subscriber of the market, no #CONN), failpage[:N] (REST: the next "
    "N listing pages carrying a cursor, i.e. not a listing's first page, answer HTTP 503: a listing failing half "
    "way; default 1, no #CONN). "
    "#CONN targets one connection (ids from 1 in accept order), default all. "
    "Example: drop@10s,close#2@20s,freeze:5s@30s,refuse:3s@40s,redeliver#1@50s,badnumber:nan@60s,failpage:2@70s. "
    'At run time: POST /_sim/faults {"kind":"drop","conn_id":2}, {"kind":"badnumber","variant":"digits"}, '
    '{"kind":"failpage","count":1} or {"spec":"freeze:2s@0"}'
)


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = subparsers.add_parser(
        "sim",
        help="run the local venue emulator (ground truth, fault injection)",
        description="Emulated venue: the REST API and WebSocket feed of --venue share one port; admin API: "
        "GET /_sim/stats, POST /_sim/faults, /_sim/stop-generating, /_sim/markets (create), "
        '/_sim/settle {"ticker":..}, /_sim/rate {"rate":..}, /_sim/lifecycle {"ticker":..,"action":..} (action: '
        "deactivate, activate, metadata, metadata_legacy, unknown, fee_set, fee_clear). With --truth the venue also "
        "writes its record (connections, subscriptions, suppressions, snapshots, book checkpoints) next to it "
        "(truth.msgpack -> truth.record.msgpack). Defaults come from the [sim] config section.",
    )
    p.add_argument("--markets", type=int, help="number of markets listed at start (default: sim.markets)")
    p.add_argument(
        "--venue",
        help="the venue whose protocol is served (one of the venues/ folders; default: venue.name)",
    )
    p.add_argument("--rate", type=float, help="aggregate venue events per second (default: sim.rate)")
    p.add_argument("--port", type=int, help="TCP port for REST and WebSocket; 0 = a free port (default: sim.port)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--seed", type=int, help="random seed; same seed/markets/rate = same events (default: sim.seed)")
    p.add_argument("--no-auth", action="store_true", help="accept WebSocket upgrades without a signature")
    p.add_argument("--public-key", metavar="PEM", help="PEM file of the RSA public key signatures must verify with")
    p.add_argument("--key-id", help="when set, the venue's key id header must equal this key id (default: any)")
    p.add_argument("--faults", default="", help=FAULTS_HELP)
    p.add_argument("--truth", metavar="PATH", help="ground-truth file to write (msgpack; default: sim.truth_path)")
    p.add_argument(
        "--duration", type=float, default=0.0, help="generate for this many seconds, then flush truth and exit"
    )
    p.add_argument("--sub-cap", type=int, help="max markets per subscription, error 26 above it; 0 = no cap")
    p.add_argument(
        "--identical-share", type=float, help="share of deltas identical in body to the market's previous delta"
    )
    p.add_argument("--churn", type=float, help="markets created (and one settled) per second; 0 = none")
    p.add_argument("--heartbeat", type=float, help="seconds between server pings (body 'heartbeat'; default 10)")
    p.add_argument(
        "--base-ts-ms",
        type=int,
        default=0,
        help="venue clock origin (Unix ms) for ts_ms; fix it to make two runs with one seed byte-identical "
        "(default: wall clock at start)",
    )
    p.add_argument(
        "--metrics-port",
        type=int,
        help="Prometheus exporter port; 0 = a free port (default: sim.metrics_port, 9131; bind address: "
        "sim.metrics_host)",
    )
    t = p.add_argument_group("TLS and REST rate limit", "Off unless given; not read from the config file.")
    t.add_argument(
        "--tls",
        action="store_true",
        help="serve https:// and wss:// only, with a CA and server certificate generated at start-up; prints "
        "`CA <path>`: the file a client trusts (venue.ca_file)",
    )
    t.add_argument(
        "--tls-dir",
        metavar="DIR",
        default="",
        help="with --tls: write ca.pem, server.pem, server.key here (default: a new temporary folder)",
    )
    t.add_argument(
        "--rest-rate",
        type=float,
        default=0.0,
        metavar="N",
        help="REST requests per second per client (its key id header, else its address); over it: HTTP 429 "
        '{"error": "too many requests"} (per-account token buckets, as the default venue); 0 = no limit (default)',
    )
    t.add_argument(
        "--rest-burst", type=float, default=0.0, metavar="N", help="REST bucket size (default max(1, --rest-rate))"
    )
    t.add_argument(
        "--rest-retry-after",
        choices=["none", "seconds", "date"],
        default="none",
        help="what a 429 carries: none (as the default venue documents, default), seconds (Retry-After: N) or date "
        "(Retry-After: <HTTP date>)",
    )
    b = p.add_argument_group(
        "real-venue behaviours",
        "What a real venue does that a collector must survive; all off unless set here or in [sim] "
        "(mdpipe demo turns them on). Schedules run on the venue clock and follow the seed.",
    )
    b.add_argument(
        "--checkpoint-s",
        type=float,
        help="with --truth: write every market's book (those that had a delta) into the venue record every this "
        "many seconds of venue time, and once when generation stops; 0 = only the final one (default 20)",
    )
    b.add_argument(
        "--dormant-share",
        type=float,
        help="share (0..1) of the markets listed at start, the highest indexes, that never get data events "
        "(whole subscriber connections stay quiet); they still get lifecycle messages (default 0)",
    )
    b.add_argument(
        "--rest-lag",
        type=float,
        dest="rest_lag_s",
        help="seconds REST listings trail the WebSocket: GET /markets (status filter and tickers= included) "
        "reports each market's status as it was this long ago, a just-created market not at all (default 0)",
    )
    b.add_argument(
        "--activate-after",
        type=float,
        dest="activate_after_s",
        help="seconds between `created` (status initialized) and `activated` of a market created while "
        "running; 0 = activated at once (default 0)",
    )
    b.add_argument(
        "--pause-rate",
        type=float,
        dest="pause_per_s",
        help="deactivate/activate cycles per second (`deactivated` is_deactivated=true, REST status inactive, no "
        "data, then `activated`), always on the same --pause-markets markets so identical bodies recur (default 0)",
    )
    b.add_argument("--pause-markets", type=int, help="size of the pool of markets that get paused (default 8)")
    b.add_argument("--pause-s", type=float, help="mean length of a pause in seconds (default 3)")
    b.add_argument(
        "--flap-share",
        type=float,
        help="share of pauses that flap: back after 20 ms and paused again 50 ms after the first (default 0.25)",
    )
    b.add_argument(
        "--metadata-rate",
        type=float,
        dest="metadata_per_s",
        help="market_lifecycle_v2 metadata updates per second on a pool of 4 markets whose subtitle/strike "
        "flip-flops (A, B, A: identical bodies repeat); half the pool sends the older form without event_type "
        "(default 0)",
    )
    b.add_argument(
        "--unknown-lifecycle-rate",
        type=float,
        dest="unknown_lifecycle_per_s",
        help="lifecycle messages per second with an event_type clients do not know yet, e.g. "
        "trading_hours_updated (default 0)",
    )
    b.add_argument(
        "--fee-update-rate",
        type=float,
        dest="fee_update_per_s",
        help="event_fee_update messages per second (set/clear cycles on a few events; identical bodies repeat) "
        "(default 0)",
    )
    b.add_argument(
        "--event-lifecycle",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="send an event_lifecycle message when a created market opens a new event (default off)",
    )
    return p


def run(args: argparse.Namespace, config: Any) -> int:
    import asyncio
    import signal

    import msgspec

    from mdpipe.config import ConfigError
    from mdpipe.metrics import start_metrics_server
    from venue_sim.app import SimOptions, VenueSim
    from venue_sim.faults import parse_faults
    from venue_sim.metrics import register
    from venues import UnknownVenue, get_venue

    sc = config.sim

    def pick(value: Any, default: Any) -> Any:
        return default if value is None else value

    auth = sc.auth and not args.no_auth
    public_key = pick(args.public_key, sc.public_key_path)
    if auth and not public_key:
        raise ConfigError("sim: auth is on but no --public-key (sim.public_key_path) given; pass --no-auth to disable")
    if args.venue:
        try:
            get_venue(args.venue)
        except UnknownVenue as exc:
            raise ConfigError(f"sim --venue: {exc}") from None
    if args.faults:
        try:
            parse_faults(args.faults)
        except ValueError as exc:
            raise ConfigError(f"sim --faults: {exc}") from None
    flags = {
        "markets": args.markets,
        "rate": args.rate,
        "seed": args.seed,
        "port": args.port,
        "key_id": args.key_id,
        "truth_path": args.truth,
        "sub_cap": args.sub_cap,
        "identical_share": args.identical_share,
        "churn_per_s": args.churn,
        "heartbeat_s": args.heartbeat,
        "checkpoint_s": args.checkpoint_s,
        "dormant_share": args.dormant_share,
        "rest_lag_s": args.rest_lag_s,
        "activate_after_s": args.activate_after_s,
        "pause_per_s": args.pause_per_s,
        "pause_markets": args.pause_markets,
        "pause_s": args.pause_s,
        "flap_share": args.flap_share,
        "metadata_per_s": args.metadata_per_s,
        "unknown_lifecycle_per_s": args.unknown_lifecycle_per_s,
        "fee_update_per_s": args.fee_update_per_s,
        "event_lifecycle": args.event_lifecycle,
    }
    try:  # the command line's settings go into the sim section, through its validation
        section = msgspec.structs.replace(
            sc,
            auth=auth,
            public_key_path=public_key or "",
            **{name: value for name, value in flags.items() if value is not None},
        )
    except ValueError as exc:
        raise ConfigError(f"sim: {exc}") from None
    options = SimOptions(
        host=args.host,
        pong_timeout_s=2 * section.heartbeat_s,
        faults=args.faults,
        duration_s=args.duration,
        base_ts_ms=args.base_ts_ms,
        tls=args.tls,
        tls_dir=args.tls_dir,
        rest_rate=args.rest_rate,
        rest_burst=args.rest_burst,
        rest_retry_after=args.rest_retry_after,
    )

    async def main() -> int:
        try:
            sim = VenueSim(section, options, venue=args.venue or config.venue.name)
        except ValueError as exc:
            raise ConfigError(f"sim: {exc}") from None
        await sim.start()
        register(sim)
        start_metrics_server(
            pick(args.metrics_port, sc.metrics_port),
            health=lambda: True,
            stage="sim",
            host=sc.metrics_host,
            setting="sim.metrics_port",
        )
        print(f"REST {sim.rest_url}", flush=True)
        print(f"WS {sim.ws_url}", flush=True)
        if sim.ca_file:
            print(f"CA {sim.ca_file}", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        done = asyncio.create_task(sim.wait_done()) if options.duration_s else None
        waiters = [asyncio.create_task(stop.wait())] + ([done] if done else [])
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        for task in waiters:
            task.cancel()
        await sim.stop()
        return 0

    return asyncio.run(main())
