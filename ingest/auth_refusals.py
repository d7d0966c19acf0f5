"""When a gatherer stops retrying credentials the venue keeps refusing (HTTP 401/403 on the WebSocket upgrade or a
REST request): pure bookkeeping, fed by the connections and the REST calls, read by the gatherer's supervisor.

Policy -- the gatherer gives up (one line naming the venue's answer and what to check; the CLI exits 2) only when
ALL of these hold:

* nothing is streaming: no WebSocket connection of the gatherer is up. A gatherer still receiving on connections
  it opened earlier keeps them whatever the venue answers to new upgrades: exiting would lose that data, and a
  restart could not open them again with refused credentials;
* the venue refused at least ``MIN_REFUSALS`` (3) requests of one kind (``websocket`` upgrades or ``rest``
  requests) in a row, with no request of that kind accepted in between;
* the refusals have lasted ``START_GRACE_S`` (5 s) when that kind of request was never accepted since start (a
  wrong key id or key file, a key of the other environment: retrying cannot help, so a start with bad credentials
  fails within seconds), or ``limit_s`` (``gather.auth_refusal_limit_s``, default 120 s) once it had been
  accepted (a revoked key -- or the venue's authentication hiccuping for a while: two minutes of reconnects with
  backoff ride that out).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

__all__ = ["MIN_REFUSALS", "START_GRACE_S", "AuthRefusals", "http_status", "refusal_detail"]

MIN_REFUSALS = 3
START_GRACE_S = 5.0
REFUSED_STATUSES = (401, 403)


@dataclass
class _Kind:
    in_a_row: int = 0
    first_at: float = 0.0  # monotonic time of the first refusal of the current run
    ever_accepted: bool = False
    last: str = ""  # the venue's last answer, for the message


@dataclass
class AuthRefusals:
    """Counts the venue's refusals per kind of request and decides when to give up (see module docstring)."""

    limit_s: float = 120.0
    kinds: dict[str, _Kind] = field(default_factory=dict)

    def refused(self, kind: str, now: float, detail: str) -> None:
        state = self.kinds.setdefault(kind, _Kind())
        if state.in_a_row == 0:
            state.first_at = now
        state.in_a_row += 1
        state.last = detail

    def accepted(self, kind: str) -> None:
        state = self.kinds.setdefault(kind, _Kind())
        state.in_a_row = 0
        state.ever_accepted = True

    def verdict(self, now: float, streaming: bool) -> str | None:
        """Why to give up now (the venue's last answer and for how long it refused), else None."""
        if streaming:
            return None
        for kind, state in self.kinds.items():
            if state.in_a_row < MIN_REFUSALS:
                continue
            lasting = now - state.first_at
            if lasting >= (self.limit_s if state.ever_accepted else START_GRACE_S):
                return (
                    f"the venue refused the gatherer's credentials on {state.in_a_row} {kind} requests in a row over "
                    f"{lasting:.0f} s ({state.last})"
                )
        return None


def http_status(exc: BaseException | None) -> int | None:
    """The HTTP status of a refused WebSocket upgrade (picows ``WSInvalidStatusError``, websockets
    ``InvalidStatus``) or a failed REST request (``urllib.error.HTTPError``), looking through the exceptions it
    was raised from; None when ``exc`` carries no status."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        response = getattr(exc, "response", None)
        for candidate in (
            getattr(response, "status", None),  # picows WSUpgradeResponse
            getattr(response, "status_code", None),  # websockets Response
            getattr(exc, "status", None),
            getattr(exc, "code", None) if isinstance(exc, OSError) else None,  # urllib HTTPError
        ):
            if candidate is not None:
                try:
                    return int(candidate)
                except (TypeError, ValueError):
                    pass
        exc = exc.__cause__ or exc.__context__
    return None


def refusal_detail(exc: BaseException | None, status: int) -> str:
    """``HTTP 401 authentication_error: unknown key`` from the answer's body (a JSON ``{"error": {"code",
    "message"}}`` as the venue sends), else the start of the body."""
    body: object = b""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen and not body:
        seen.add(id(exc))
        response = getattr(exc, "response", None)
        body = getattr(exc, "raw_body", None) or getattr(response, "body", None) or b""
        if not body and isinstance(exc, OSError) and callable(getattr(exc, "read", None)):  # urllib HTTPError
            try:
                body = exc.read(2000)  # type: ignore[attr-defined]
            except Exception:
                body = b""
        exc = exc.__cause__ or exc.__context__
    text = bytes(body).decode("utf-8", "replace") if isinstance(body, bytes | bytearray) else str(body or "")
    try:
        err = json.loads(text).get("error", {})
        said = ": ".join(str(p) for p in (err.get("code"), err.get("message")) if p)
    except (ValueError, AttributeError):
        said = " ".join(text.split())[:200]
    return f"HTTP {status}" + (f" {said}" if said else "")
