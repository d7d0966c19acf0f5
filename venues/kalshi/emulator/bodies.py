"""The message bodies (``msg`` of an envelope) the emulator's generator writes, in Kalshi's JSON: pure functions.

The generator (:mod:`venue_sim.load`) decides what happens (which market, side, price, size, time); these
functions spell it as the venue does: ``orderbook_delta``, ``trade`` and ``ticker`` bodies with fixed-point dollar
and ``_fp`` count strings, and the lifecycle channel's bodies (``created``, ``activated``, ``deactivated``,
``determined``, ``settled``, ``metadata_updated`` and its older form without ``event_type``, types no client knows
yet, ``event_fee_update``, ``event_lifecycle``), plus the ``orderbook_delta`` with an out-of-range number the
``badnumber`` fault sends. The bodies are also the emulator's ground truth (its truth file records them), so every
venue's emulator profile reads them (:mod:`venues.kalshi.emulator`). Bytes must not change: verify and the
benchmarks compare them.
"""

from __future__ import annotations

from venue_sim.lifecycle import BAD_NUMBER_VARIANTS
from venues.kalshi.emulator_wire import PRICE, count_fp

# Lifecycle event types no client knows yet (the venue adds types); the generator sends them in turn.
UNKNOWN_EVENT_TYPES: tuple[str, ...] = ("trading_hours_updated", "collateral_terms_updated")

__all__ = [
    "BAD_NUMBER_VARIANTS",
    "UNKNOWN_EVENT_TYPES",
    "activated_body",
    "bad_delta_body",
    "created_body",
    "deactivated_body",
    "delta_body",
    "delta_head",
    "determined_body",
    "event_lifecycle_body",
    "fee_body",
    "metadata_body",
    "settled_body",
    "ticker_body",
    "trade_body",
    "unknown_body",
]


# -- market data (the hot path: one call per event) ---------------------------------------------------------
def delta_head(ticker: str, market_id: str) -> str:
    """A delta body up to and including ``"price_dollars":"`` (the generator caches it per hot market)."""
    return f'{{"market_ticker":"{ticker}","market_id":"{market_id}","price_dollars":"'


def delta_body(head: str, side_no: int, price: int, delta: int, ts: int) -> tuple[str, str | None]:
    """(body, body for ``use_yes_price`` subscribers or None when the same) of a delta of ``delta`` hundredths at
    ``price`` cents on the YES (``side_no`` 0) or NO (1) ladder; ``head`` from :func:`delta_head`."""
    if side_no:
        tail = f'","delta_fp":"{count_fp(delta)}","side":"no","ts_ms":{ts}}}'
        return f"{head}{PRICE[price]}{tail}", f"{head}{PRICE[100 - price]}{tail}"
    return f'{head}{PRICE[price]}","delta_fp":"{count_fp(delta)}","side":"yes","ts_ms":{ts}}}', None


def trade_body(trade_id: str, ticker: str, yes_price: int, count: int, taker: str, ts: int) -> str:
    return (
        f'{{"trade_id":"{trade_id}","market_ticker":"{ticker}",'
        f'"yes_price_dollars":"{PRICE[yes_price]}","no_price_dollars":"{PRICE[100 - yes_price]}",'
        f'"count_fp":"{count_fp(count)}","taker_side":"{taker}","taker_outcome_side":"{taker}",'
        f'"taker_book_side":"bid","is_block_trade":false,"ts":{ts // 1000},"ts_ms":{ts}}}'
    )


def ticker_body(
    market_id: str,
    ticker: str,
    top: tuple[int, int, int, int],
    last: int,
    last_trade: int,
    vol: int,
    oi: int,
    ts: int,
    time_text: str,
) -> str:
    """A ``ticker`` body; ``top`` = (best YES bid, YES ask, their sizes), ``time_text`` = RFC3339 of ``ts``."""
    yes_bid, yes_ask, bid_size, ask_size = top
    return (
        f'{{"market_id":"{market_id}","market_ticker":"{ticker}",'
        f'"price_dollars":"{PRICE[last]}","yes_bid_dollars":"{PRICE[yes_bid]}",'
        f'"yes_ask_dollars":"{PRICE[yes_ask]}","yes_bid_size_fp":"{count_fp(bid_size)}",'
        f'"yes_ask_size_fp":"{count_fp(ask_size)}","last_trade_size_fp":"{count_fp(last_trade)}",'
        f'"volume_fp":"{count_fp(vol)}","open_interest_fp":"{count_fp(oi)}",'
        f'"dollar_volume":{vol * last // 10000},"dollar_open_interest":{oi * last // 10000},'
        f'"ts":{ts // 1000},"ts_ms":{ts},"time":"{time_text}"}}'
    )


# -- lifecycle channel -------------------------------------------------------------------------------------
def created_body(m: int, ticker: str, event_ticker: str, open_s: int, close_s: int) -> str:
    """``created`` of market number ``m`` with its ``additional_metadata``."""
    meta = (
        f'{{"name":"Simulated market {m}","title":"Simulated market {m}",'
        f'"yes_sub_title":"Outcome {m} happens","no_sub_title":"Outcome {m} does not happen",'
        f'"rules_primary":"Resolves Yes if outcome {m} happens.","rules_secondary":"",'
        f'"can_close_early":true,"event_ticker":"{event_ticker}",'
        f'"expected_expiration_ts":{close_s}}}'
    )
    return (
        f'{{"market_ticker":"{ticker}","event_type":"created","open_ts":{open_s},"close_ts":{close_s},'
        f'"additional_metadata":{meta}}}'
    )


def determined_body(ticker: str, result: str, ts: int) -> str:
    value = "1.0000" if result == "yes" else "0.0000"
    return (
        f'{{"market_ticker":"{ticker}","event_type":"determined","result":"{result}",'
        f'"settlement_value":"{value}","determination_ts":{ts // 1000}}}'
    )


def settled_body(ticker: str, ts: int) -> str:
    return f'{{"market_ticker":"{ticker}","event_type":"settled","settled_ts":{ts // 1000}}}'


def deactivated_body(ticker: str) -> str:
    return f'{{"market_ticker":"{ticker}","event_type":"deactivated","is_deactivated":true}}'


def activated_body(ticker: str) -> str:
    return f'{{"market_ticker":"{ticker}","event_type":"activated","is_deactivated":false}}'


def metadata_body(ticker: str, variant: int, legacy: bool) -> str:
    """Subtitle and strike of variant 0 or 1; ``legacy`` = the older form without ``event_type``."""
    strike = 45 + 5 * variant
    kind = "" if legacy else '"event_type":"metadata_updated",'
    return (
        f'{{"market_ticker":"{ticker}",{kind}"yes_sub_title":"Above {strike}","no_sub_title":"{strike} or below",'
        f'"strike_type":"greater","floor_strike":{strike}}}'
    )


def unknown_body(ticker: str, event_type: str, ts_ms: int) -> str:
    """A lifecycle message of a type clients do not know (a small body, as a new venue type would have)."""
    start = ts_ms // 1000 // 3600 * 3600
    return (
        f'{{"market_ticker":"{ticker}","event_type":"{event_type}",'
        f'"trading_hours":[{{"open_ts":{start},"close_ts":{start + 8 * 3600}}}]}}'
    )


def fee_body(event_ticker: str, on: bool) -> str:
    if on:
        return f'{{"event_ticker":"{event_ticker}","fee_type_override":"quadratic","fee_multiplier_override":1}}'
    return f'{{"event_ticker":"{event_ticker}","fee_type_override":null,"fee_multiplier_override":null}}'


def event_lifecycle_body(event_ticker: str, number: int, series: str) -> str:
    return (
        f'{{"event_ticker":"{event_ticker}","exchange_index":0,"title":"Simulated event {number}",'
        f'"subtitle":"","collateral_return_type":"","series_ticker":"{series}"}}'
    )


def bad_delta_body(head: str, price: str, variant: str, ts_ms: int) -> tuple[str, str]:
    """(body, reason) of an ``orderbook_delta`` whose price or size is out of range. ``head`` is the body up to
    and including ``"price_dollars":"``."""
    delta = "1.00"
    if variant == "exp":
        price = "1E+1000000"
    elif variant == "nan":
        delta = "NaN"
    elif variant == "digits":
        delta = "9" * 5000 + ".00"
    elif variant == "negative":
        price = "-" + price
    else:
        raise ValueError(f"bad-number variant must be one of {', '.join(BAD_NUMBER_VARIANTS)}, got {variant!r}")
    reason = f"{variant}: price_dollars={price[:24]} delta_fp={delta[:24]}"
    return f'{head}{price}","delta_fp":"{delta}","side":"yes","ts_ms":{ts_ms}}}', reason
