"""Structured logging for every stage: one event per line, `key=value` or JSON.

Use ``log = get_logger(__name__)`` then ``log.info("event_name", sid=3, expected=7)``.
Handlers are installed only by the CLI (:func:`configure_logging`).

librdkafka (confluent-kafka) logs through :func:`kafka_client_logger`, set as the ``logger`` key of every client
configuration (:mod:`mdpipe.kafka`): instead of its own ``%3|...|FAIL|...`` lines written straight to stderr
(which broke ``--log-format json``), each message becomes one ``kafka_client`` record (fields ``client``,
``fac``, ``message``) of this module's format, rate-limited by :class:`KafkaClientLogFilter` so a dead broker
does not flood the log. confluent-kafka hands them over when the client is polled. The stages' own reports of
client errors (``error_cb``, error events) go through :func:`log_client_error`, rate-limited the same way.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

__all__ = [
    "KAFKA_CLIENT_LOGGER",
    "KafkaClientLogFilter",
    "KvLogger",
    "RepeatLimiter",
    "configure_logging",
    "failure_line",
    "get_logger",
    "kafka_client_logger",
    "log_client_error",
]


class KvLogger:
    """A thin wrapper that turns ``log.info("event", k=v)`` into one structured record."""

    __slots__ = ("_logger", "context")

    def __init__(self, logger: logging.Logger, context: dict[str, Any] | None = None) -> None:
        self._logger = logger
        self.context = context or {}

    def bind(self, **context: Any) -> KvLogger:
        return KvLogger(self._logger, {**self.context, **context})

    def isEnabledFor(self, level: int) -> bool:
        return self._logger.isEnabledFor(level)

    def _log(self, level: int, event: str, fields: dict[str, Any], exc_info: bool = False) -> None:
        if self._logger.isEnabledFor(level):
            self._logger.log(level, event, extra={"kv": {**self.context, **fields}}, exc_info=exc_info, stacklevel=3)

    def debug(self, event: str, **fields: Any) -> None:
        self._log(logging.DEBUG, event, fields)

    def info(self, event: str, **fields: Any) -> None:
        self._log(logging.INFO, event, fields)

    def warning(self, event: str, **fields: Any) -> None:
        self._log(logging.WARNING, event, fields)

    def error(self, event: str, **fields: Any) -> None:
        self._log(logging.ERROR, event, fields)

    def critical(self, event: str, **fields: Any) -> None:
        self._log(logging.CRITICAL, event, fields)

    def exception(self, event: str, **fields: Any) -> None:
        self._log(logging.ERROR, event, fields, exc_info=True)


def get_logger(name: str, **context: Any) -> KvLogger:
    return KvLogger(logging.getLogger(name), context)


def _quote(value: Any) -> str:
    text = str(value)
    if not text or any(c in text for c in ' "=\n'):
        return json.dumps(text)
    return text


class KvFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z"
        parts = [
            f"ts={ts}",
            f"level={record.levelname.lower()}",
            f"logger={record.name}",
            f"event={_quote(record.getMessage())}",
        ]
        parts += [f"{k}={_quote(v)}" for k, v in getattr(record, "kv", {}).items()]
        if record.exc_info:
            parts.append(f"exc={_quote(self.formatException(record.exc_info))}")
        return " ".join(parts)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": record.created,
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
            **getattr(record, "kv", {}),
        }
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is at emit time (it may be replaced, e.g. by a test harness)."""

    def __init__(self) -> None:
        super().__init__()

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


def configure_logging(level: str = "INFO", fmt: str = "kv", stream: Any = None) -> None:
    """Install one handler on the root logger (CLI only)."""
    handler = logging.StreamHandler(stream) if stream is not None else _StderrHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else KvFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("aiokafka", "kafka", "faust", "mode", "websockets", "asyncio"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))


def failure_line(message: str, fmt: str = "kv", **fields: Any) -> str:
    """The one line a command prints when it fails: ``mdpipe: <message>`` as text (the message names what failed),
    or one JSON object (event ``command_failed``, with ``fields`` such as the command) with ``--log-format json`` so
    that every line on stderr stays JSON."""
    if fmt != "json":
        return f"mdpipe: {message}"
    return json.dumps(
        {"ts": time.time(), "level": "error", "logger": "mdpipe.cli", "event": "command_failed", **fields,
         "error": message},
        default=str,
    )  # fmt: skip


# ------------------------------------------------------------------------------------ librdkafka's log lines
KAFKA_CLIENT_LOGGER = "mdpipe.kafka.client"
_THREAD_PREFIX = re.compile(r"^\[thrd:[^\]]*\]: ")
# what varies between repeats of one message: librdkafka's "(after 12ms in state CONNECT[, 3 identical error(s)
# suppressed])" and other timings
_VARIABLE = re.compile(r"\s*\((?:after \d+ms in state \w+)?(?:, )?(?:\d+ identical error\(s\) suppressed)?\)|\d+ms")


class RepeatLimiter:
    """Lets the first message of a kind pass, then at most one per ``interval_s`` while it keeps coming, and counts
    the ones held back. A dead broker makes librdkafka report a failed connect per client every ~100 ms to 10 s:
    with the default 10 s that is at most one line per client and kind every 10 s. ``max_kinds`` bounds the
    memory (the least recently seen kinds are forgotten). Thread-safe: clients are polled from several threads."""

    def __init__(
        self, interval_s: float = 10.0, max_kinds: int = 1000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.interval_s = interval_s
        self.max_kinds = max_kinds
        self.clock = clock
        self._kinds: OrderedDict[Hashable, list[float]] = OrderedDict()  # kind -> [passed_at, held back since]
        self._lock = threading.Lock()

    def admit(self, kind: Hashable) -> int | None:
        """None: hold this one back; else let it pass, returning how many of its kind were held back before it."""
        now = self.clock()
        with self._lock:
            state = self._kinds.get(kind)
            if state is not None and now - state[0] < self.interval_s:
                state[1] += 1
                return None
            held = int(state[1]) if state is not None else 0
            self._kinds[kind] = [now, 0]
            self._kinds.move_to_end(kind)
            while len(self._kinds) > self.max_kinds:
                self._kinds.popitem(last=False)
        return held


class KafkaClientLogFilter(logging.Filter):
    """Turns confluent-kafka's log calls (``logger.log(level, "%s [%s] %s", fac, client, message)``) into one
    structured ``kafka_client`` record and rate-limits repeats with a :class:`RepeatLimiter`: a kind of message
    (client, facility, and the text without its timings) passes the first time, then at most once per
    ``interval_s`` while it keeps coming, carrying ``repeated=N`` (how many were held back since the last one)."""

    def __init__(
        self, interval_s: float = 10.0, max_kinds: int = 1000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__()
        self.limiter = RepeatLimiter(interval_s, max_kinds, clock)

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args if isinstance(record.args, tuple) else ()
        if len(args) == 3:
            fac, client, text = (str(a) for a in args)
        else:  # not the confluent-kafka call shape: keep it whole
            fac, client, text = "", "", record.getMessage()
        text = _THREAD_PREFIX.sub("", text)
        held = self.limiter.admit((client, fac, _VARIABLE.sub("", text)))
        if held is None:
            return False
        fields: dict[str, Any] = {"client": client, "fac": fac, "message": text[:1000]}
        if held:
            fields["repeated"] = held
        record.msg, record.args = "kafka_client", ()
        record.kv = {**getattr(record, "kv", {}), **fields}
        return True


_client_errors = RepeatLimiter()


def log_client_error(log: KvLogger, event: str, err: Any, **fields: Any) -> None:
    """Log a Kafka client's error (``error_cb``, an error event of ``consume``) as a warning ``event`` with
    ``error=str(err)``, rate-limited per kind (event, error code, text without timings) like librdkafka's own
    lines: during an outage the same error comes every few hundred ms per client."""
    name = err.name() if callable(getattr(err, "name", None)) else type(err).__name__
    text = err.str() if callable(getattr(err, "str", None)) else str(err)
    held = _client_errors.admit((event, name, _VARIABLE.sub("", _THREAD_PREFIX.sub("", text))))
    if held is None:
        return
    if held:
        fields["repeated"] = held
    log.warning(event, error=str(err), **fields)


_kafka_logger_lock = threading.Lock()


def kafka_client_logger() -> logging.Logger:
    """The logging.Logger given to every confluent-kafka client (``logger`` config key): its records go to the
    handler :func:`configure_logging` installed, through one shared :class:`KafkaClientLogFilter`."""
    logger = logging.getLogger(KAFKA_CLIENT_LOGGER)
    with _kafka_logger_lock:
        if not any(isinstance(f, KafkaClientLogFilter) for f in logger.filters):
            logger.addFilter(KafkaClientLogFilter())
    return logger
