"""Fault injection: the ``--faults`` schedule syntax and the controller the server applies faults through.

Schedule syntax (comma-separated items, times in seconds after the venue started)::

    KIND[:ARG][#CONN]@AT

    drop[:N]          drop the next N data messages carrying a seq (default 1): a seq gap on that sid
    close             close the connection(s) (WebSocket close 1001)
    freeze:SECONDS    socket stays open, pings answered, no data for SECONDS (seq keeps counting: a gap after)
    delay:LAT[/FOR]   hold every outgoing frame LAT seconds, for FOR seconds (default 5)
    malformed         send one text frame that is not valid JSON
    refuse:SECONDS    refuse new WebSocket connections (HTTP 503) for SECONDS
    redeliver[:N]     send the next N seq-carrying data messages twice, same seq (a re-delivered seq)
    badnumber[:VAR]   the venue sends one orderbook_delta (valid envelope, next seq, real market) with an
                      out-of-range number: VAR = exp (price "1E+1000000", default), nan (size "NaN"), digits
                      (a 5,000-digit size) or negative (a negative price). A venue event (truth + BadMessage
                      record) that does not change the book; sent to every subscriber of its market (no #CONN)
    failpage[:N]      REST: the next N listing pages that carry a cursor (GET /markets?cursor=..., i.e. not a
                      listing's first page) answer HTTP 503: a listing failing half way (default 1; no #CONN)
    #CONN             only connection CONN (ids from 1 in accept order); default: every connection
    @AT               when, e.g. @10s, @1.5, @250ms

Example: ``drop@10s,close#2@20s,freeze:5s@30s,refuse:3s@40s,redeliver#1@50s,badnumber:nan@60s``. Pure parsing
plus a controller that forwards to a :class:`FaultTarget` (the venue); no asyncio here.
"""

from __future__ import annotations

import re
from typing import Literal, Protocol

import msgspec

from venue_sim.lifecycle import BAD_NUMBER_VARIANTS

__all__ = ["FAULT_KINDS", "FaultSpec", "FaultTarget", "Faults", "parse_faults"]

FaultKind = Literal["drop", "close", "freeze", "delay", "malformed", "refuse", "redeliver", "badnumber", "failpage"]
FAULT_KINDS: tuple[str, ...] = (
    "drop",
    "close",
    "freeze",
    "delay",
    "malformed",
    "refuse",
    "redeliver",
    "badnumber",
    "failpage",
)

_ITEM = re.compile(
    r"^(?P<kind>[a-z]+)(?::(?P<arg>[0-9a-z.]+)(?:/(?P<dur>[0-9.]+(?:ms|s)?))?)?"
    r"(?:#(?P<conn>\d+))?@(?P<at>[0-9.]+(?:ms|s)?)$"
)
_NUMBER = re.compile(r"^[0-9]+(?:\.[0-9]*)?(?:ms|s)?$")


class FaultSpec(msgspec.Struct, frozen=True, kw_only=True):
    """One fault: what, on which connection (None = all), with which argument, when (s after start)."""

    kind: FaultKind
    at_s: float = 0.0
    conn_id: int | None = None
    seconds: float = 0.0  # freeze/refuse duration, delay latency
    duration_s: float = 5.0  # delay: how long the latency applies
    count: int = 1  # drop/redeliver: how many messages; failpage: how many pages
    variant: str = ""  # badnumber: which bad value (lifecycle.BAD_NUMBER_VARIANTS; "" = exp)

    def __post_init__(self) -> None:
        if self.kind == "badnumber":
            if self.variant and self.variant not in BAD_NUMBER_VARIANTS:
                raise ValueError(f"badnumber variant must be one of {', '.join(BAD_NUMBER_VARIANTS)}")
            if self.conn_id is not None:
                raise ValueError("badnumber is a venue event for every subscriber of its market, not #CONN")
        if self.kind == "failpage" and self.conn_id is not None:
            raise ValueError("failpage applies to the venue's REST API, not #CONN")
        if self.count < 1:
            raise ValueError("count must be >= 1")


def _seconds(text: str) -> float:
    if text.endswith("ms"):
        return float(text[:-2]) / 1000.0
    return float(text.rstrip("s"))


def parse_faults(spec: str) -> list[FaultSpec]:
    """Parse a ``--faults`` string (see the module docstring); raises ValueError naming the bad item."""
    out: list[FaultSpec] = []
    for raw in spec.split(","):
        item = raw.strip()
        if not item:
            continue
        match = _ITEM.match(item)
        if not match or match["kind"] not in FAULT_KINDS:
            raise ValueError(f"bad fault {item!r}: expected KIND[:ARG][#CONN]@AT with KIND in {', '.join(FAULT_KINDS)}")
        kind = match["kind"]
        arg, dur = match["arg"], match["dur"]
        conn = int(match["conn"]) if match["conn"] else None
        at = _seconds(match["at"])
        if kind in ("freeze", "refuse", "delay") and arg is None:
            raise ValueError(f"bad fault {item!r}: {kind} needs a duration, e.g. {kind}:5s@{match['at']}")
        if dur is not None and kind != "delay":
            raise ValueError(f"bad fault {item!r}: only delay takes LAT/FOR")
        if kind in ("refuse", "badnumber", "failpage") and conn is not None:
            raise ValueError(f"bad fault {item!r}: {kind} applies to the whole venue, not #CONN")
        if kind == "badnumber":
            if arg is not None and arg not in BAD_NUMBER_VARIANTS:
                raise ValueError(f"bad fault {item!r}: badnumber variant is one of {', '.join(BAD_NUMBER_VARIANTS)}")
            out.append(FaultSpec(kind="badnumber", at_s=at, variant=arg or "exp"))
            continue
        if arg is not None and not _NUMBER.match(arg):
            raise ValueError(f"bad fault {item!r}: {arg!r} is not a number or a duration")
        if kind in ("drop", "redeliver", "failpage"):
            count = int(float(arg)) if arg else 1
            if count < 1:
                raise ValueError(f"bad fault {item!r}: {kind} needs N >= 1")
            out.append(FaultSpec(kind=kind, at_s=at, conn_id=conn, count=count))  # type: ignore[arg-type]
        elif kind == "delay":
            out.append(
                FaultSpec(
                    kind="delay",
                    at_s=at,
                    conn_id=conn,
                    seconds=_seconds(arg or "0"),
                    duration_s=_seconds(dur) if dur else 5.0,
                )
            )
        else:
            seconds = _seconds(arg) if arg else 0.0
            out.append(FaultSpec(kind=kind, at_s=at, conn_id=conn, seconds=seconds))  # type: ignore[arg-type]
    return sorted(out, key=lambda f: f.at_s)


class FaultTarget(Protocol):
    """What the controller needs from the venue (connection faults go on to the server)."""

    def apply_fault(self, fault: FaultSpec) -> int:
        """Apply now; return how many connections it touched."""
        ...


class Faults:
    """Inject faults by call (``sim.faults.drop_next()``); every injection is recorded in ``history``."""

    def __init__(self, target: FaultTarget) -> None:
        self._target = target
        self.history: list[dict[str, object]] = []

    def apply(self, fault: FaultSpec) -> int:
        touched = self._target.apply_fault(fault)
        self.history.append({**msgspec.to_builtins(fault), "connections": touched})
        return touched

    def drop_next(self, conn_id: int | None = None, count: int = 1) -> int:
        """Drop the next ``count`` seq-carrying data messages (a seq gap at the client)."""
        return self.apply(FaultSpec(kind="drop", conn_id=conn_id, count=count))

    def close_connections(self, conn_id: int | None = None) -> int:
        """Close the connection ``conn_id`` (all when None)."""
        return self.apply(FaultSpec(kind="close", conn_id=conn_id))

    def freeze(self, seconds: float, conn_id: int | None = None) -> int:
        """No data for ``seconds`` (socket open, pings answered); seq keeps counting."""
        return self.apply(FaultSpec(kind="freeze", conn_id=conn_id, seconds=seconds))

    def delay(self, seconds: float, conn_id: int | None = None, duration_s: float = 5.0) -> int:
        """Hold every outgoing frame ``seconds`` for the next ``duration_s`` seconds (nothing lost)."""
        return self.apply(FaultSpec(kind="delay", conn_id=conn_id, seconds=seconds, duration_s=duration_s))

    def malformed(self, conn_id: int | None = None) -> int:
        """Send one text frame that is not valid JSON."""
        return self.apply(FaultSpec(kind="malformed", conn_id=conn_id))

    def refuse_connections(self, seconds: float) -> int:
        """Refuse new WebSocket connections (HTTP 503) for ``seconds``."""
        return self.apply(FaultSpec(kind="refuse", seconds=seconds))

    def redeliver(self, conn_id: int | None = None, count: int = 1) -> int:
        """Send the next ``count`` seq-carrying data messages twice with the same seq."""
        return self.apply(FaultSpec(kind="redeliver", conn_id=conn_id, count=count))

    def fail_pages(self, count: int = 1) -> int:
        """The next ``count`` listing pages that carry a cursor answer HTTP 503."""
        return self.apply(FaultSpec(kind="failpage", count=count))

    def bad_number(self, variant: str = "exp") -> int:
        """The venue sends one orderbook_delta with an out-of-range number (see the module docstring)."""
        return self.apply(FaultSpec(kind="badnumber", variant=variant))
