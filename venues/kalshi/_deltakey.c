/*
 * venues.kalshi._deltakey: the gatherer's per-message key work in C -- one ``orderbook_delta`` or ``ticker`` body
 * (JSON) to the parts of its event key, without building Python objects per field.
 *
 * It is an accelerator, not a second implementation of the rules (venues/kalshi/keys.py states them): it handles
 * the well-formed, common shape only -- a flat JSON object whose strings are printable ASCII without escapes,
 * ``price_dollars``/``delta_fp`` sent as plain ``[-]digits[.digits]`` strings well inside their ranges, ``side``
 * "yes" or "no", ``ts_ms`` a JSON integer -- and returns None for anything else (nested values, escapes,
 * non-ASCII, numbers sent as JSON numbers, out-of-range or oddly spelled decimals, a repeated known field, bad
 * JSON), which the caller then passes through the Python path (EventKeyer.delta_body's msgspec decoders), where
 * the key is derived or the error raised. So what it returns must be exactly what the Python path derives for the
 * same body; tests/venues/kalshi/test_deltakey.py checks that on every shape and on randomised input.
 *
 * delta_parts(body: bytes-like, e.g. msgspec.Raw) -> (market_ticker: str, digest: str, ts_ms: int) | None
 *   digest = h(f"{market_ticker}\x1f{side}\x1f{norm(price_dollars)}\x1f{norm(delta_fp)}\x1f{ts_ms}"), h = the
 *   first 8 bytes of BLAKE2b (digest_size=8) in hex, norm = keys.norm_decimal.
 * ticker_parts(body) -> (market_ticker, digest, ts_ms) | None: the same for a ``ticker`` body, the digest of
 *   messages.TickerMsg's fields in order joined by \x1f (numbers normalised, absent or null ones ""), as
 *   keys.EventKeyer.ticker_body derives it; handled only with ``ts_ms`` a JSON integer.
 * message_parts(message: bytes-like) -> (kind, sid, seq, market_ticker, digest, ts_ms) | None: a whole WebSocket
 *   message in the venue's common envelope -- ``{"type":"orderbook_delta"|"ticker","sid":N[,"seq":N],"msg":{..}}``,
 *   ``type`` first, no other field, ``sid``/``seq`` JSON integers -- in one call: kind is "delta" or "ticker"
 *   (messages.KIND_BY_TYPE's names), seq None when absent, the rest as delta_parts/ticker_parts give them for the
 *   body. Anything else (other types, another field order, ``id``, bad JSON, a body those two hand back) returns
 *   None and takes the session's msgspec path (protocol.KalshiSession._receive), so a message handled here is one
 *   that path would have decoded to the same type, sid, seq and body.
 * snapshot_parts(body: bytes-like) -> (market_ticker, digest) | None: an ``orderbook_snapshot`` body, as
 *   keys.EventKeyer.snapshot_body keys it: digest = h(f"{market}\x1fyes\x1f{yes}\x1fno\x1f{no}"), each side's
 *   ``[[price, size], ..]`` normalised (prices as a delta's, sizes as a delta's ``delta_fp``), sorted by value
 *   (price, then size) and joined as ``p,c;p,c``. Handled: an object with ``market_ticker`` (a string),
 *   optionally ``market_id`` (a string) and the two level lists (arrays of two-string arrays), other fields any
 *   JSON value without escaped strings; the market is not checked here (the caller's session does). Anything else
 *   returns None.
 * blake2b8_hex(data: bytes) -> str: h(data) (exposed for the tests).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define MAX_NUMBER_CHARS 40 /* keys.MAX_NUMBER_CHARS */
#define MAX_FRACTION 18     /* keys._MAX_ADJUSTED: no digit finer than 1e-18 */
#define MAX_SIZE_DIGITS 15  /* |size| < 1e15 (keys.SIZE is [-1e15, 1e15]) */
#define MAX_MARKET 256      /* protocol.MAX_TICKER: longer tickers take the Python path (which rejects them) */

/* ---------------------------------------------------------------- BLAKE2b (RFC 7693), 8-byte digest, no key */

static const uint64_t B2B_IV[8] = {
    0x6a09e667f3bcc908ULL, 0xbb67ae8584caa73bULL, 0x3c6ef372fe94f82bULL, 0xa54ff53a5f1d36f1ULL,
    0x510e527fade682d1ULL, 0x9b05688c2b3e6c1fULL, 0x1f83d9abfb41bd6bULL, 0x5be0cd19137e2179ULL,
};

static const uint8_t B2B_SIGMA[12][16] = {
    {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}, {14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3},
    {11, 8, 12, 0, 5, 2, 15, 13, 10, 14, 3, 6, 7, 1, 9, 4}, {7, 9, 3, 1, 13, 12, 11, 14, 2, 6, 5, 10, 4, 0, 15, 8},
    {9, 0, 5, 7, 2, 4, 10, 15, 14, 1, 11, 12, 6, 8, 3, 13}, {2, 12, 6, 10, 0, 11, 8, 3, 4, 13, 7, 5, 15, 14, 1, 9},
    {12, 5, 1, 15, 14, 13, 4, 10, 0, 7, 6, 3, 9, 2, 8, 11}, {13, 11, 7, 14, 12, 1, 3, 9, 5, 0, 15, 4, 8, 6, 2, 10},
    {6, 15, 14, 9, 11, 3, 0, 8, 12, 2, 13, 7, 1, 4, 10, 5}, {10, 2, 8, 4, 7, 6, 1, 5, 15, 11, 9, 14, 3, 12, 13, 0},
    {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}, {14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3},
};

static inline uint64_t rotr64(uint64_t x, int n) { return (x >> n) | (x << (64 - n)); }

static inline uint64_t load64(const uint8_t *p) {
    return (uint64_t)p[0] | ((uint64_t)p[1] << 8) | ((uint64_t)p[2] << 16) | ((uint64_t)p[3] << 24) |
           ((uint64_t)p[4] << 32) | ((uint64_t)p[5] << 40) | ((uint64_t)p[6] << 48) | ((uint64_t)p[7] << 56);
}

#define B2B_G(a, b, c, d, x, y)        \
    do {                               \
        v[a] = v[a] + v[b] + (x);      \
        v[d] = rotr64(v[d] ^ v[a], 32); \
        v[c] = v[c] + v[d];            \
        v[b] = rotr64(v[b] ^ v[c], 24); \
        v[a] = v[a] + v[b] + (y);      \
        v[d] = rotr64(v[d] ^ v[a], 16); \
        v[c] = v[c] + v[d];            \
        v[b] = rotr64(v[b] ^ v[c], 63); \
    } while (0)

static void b2b_compress(uint64_t h[8], const uint8_t block[128], uint64_t t, int last) {
    uint64_t v[16], m[16];
    for (int i = 0; i < 8; i++) {
        v[i] = h[i];
        v[i + 8] = B2B_IV[i];
    }
    v[12] ^= t; /* inputs here are far below 2^64 bytes: the high word of the counter stays 0 */
    if (last) v[14] = ~v[14];
    for (int i = 0; i < 16; i++) m[i] = load64(block + 8 * i);
    for (int r = 0; r < 12; r++) {
        const uint8_t *s = B2B_SIGMA[r];
        B2B_G(0, 4, 8, 12, m[s[0]], m[s[1]]);
        B2B_G(1, 5, 9, 13, m[s[2]], m[s[3]]);
        B2B_G(2, 6, 10, 14, m[s[4]], m[s[5]]);
        B2B_G(3, 7, 11, 15, m[s[6]], m[s[7]]);
        B2B_G(0, 5, 10, 15, m[s[8]], m[s[9]]);
        B2B_G(1, 6, 11, 12, m[s[10]], m[s[11]]);
        B2B_G(2, 7, 8, 13, m[s[12]], m[s[13]]);
        B2B_G(3, 4, 9, 14, m[s[14]], m[s[15]]);
    }
    for (int i = 0; i < 8; i++) h[i] ^= v[i] ^ v[i + 8];
}

/* BLAKE2b with an 8-byte digest of data[0..n) -> 16 lowercase hex characters in out. */
static void blake2b8_hex(const uint8_t *data, size_t n, char out[16]) {
    uint64_t h[8];
    uint8_t block[128];
    memcpy(h, B2B_IV, sizeof h);
    h[0] ^= 0x01010000ULL ^ 8; /* parameter block: digest length 8, no key, fanout 1, depth 1 */
    uint64_t t = 0;
    while (n > 128) {
        t += 128;
        b2b_compress(h, data, t, 0);
        data += 128;
        n -= 128;
    }
    memset(block, 0, sizeof block);
    memcpy(block, data, n);
    t += n;
    b2b_compress(h, block, t, 1);
    static const char HEX[] = "0123456789abcdef";
    for (int i = 0; i < 8; i++) {
        uint8_t byte = (uint8_t)(h[0] >> (8 * i));
        out[2 * i] = HEX[byte >> 4];
        out[2 * i + 1] = HEX[byte & 15];
    }
}

/* ---------------------------------------------------------------- a strict scanner for flat JSON objects */

typedef struct {
    const char *p;
    const char *end;
} Scan;

typedef struct {
    const char *s;
    Py_ssize_t n;
} Str;

static inline void skip_ws(Scan *sc) {
    while (sc->p < sc->end && (*sc->p == ' ' || *sc->p == '\t' || *sc->p == '\n' || *sc->p == '\r')) sc->p++;
}

/* A string of printable ASCII without escapes; 0 = not handled. */
static int scan_string(Scan *sc, Str *out) {
    if (sc->p >= sc->end || *sc->p != '"') return 0;
    const char *start = ++sc->p;
    while (sc->p < sc->end) {
        unsigned char c = (unsigned char)*sc->p;
        if (c == '"') {
            out->s = start;
            out->n = sc->p - start;
            sc->p++;
            return 1;
        }
        if (c < 0x20 || c >= 0x7f || c == '\\') return 0;
        sc->p++;
    }
    return 0;
}

/* A JSON number (RFC 8259 grammar); *integer = it has no fraction and no exponent. 0 = not handled. */
static int scan_number(Scan *sc, Str *out, int *integer) {
    const char *start = sc->p;
    const char *p = sc->p, *end = sc->end;
    *integer = 1;
    if (p < end && *p == '-') p++;
    if (p >= end) return 0;
    if (*p == '0') {
        p++;
    } else if (*p >= '1' && *p <= '9') {
        while (p < end && *p >= '0' && *p <= '9') p++;
    } else {
        return 0;
    }
    if (p < end && *p == '.') {
        *integer = 0;
        p++;
        if (p >= end || *p < '0' || *p > '9') return 0;
        while (p < end && *p >= '0' && *p <= '9') p++;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        *integer = 0;
        p++;
        if (p < end && (*p == '+' || *p == '-')) p++;
        if (p >= end || *p < '0' || *p > '9') return 0;
        while (p < end && *p >= '0' && *p <= '9') p++;
    }
    out->s = start;
    out->n = p - start;
    sc->p = p;
    return 1;
}

static int scan_literal(Scan *sc, const char *word) {
    size_t n = strlen(word);
    if ((size_t)(sc->end - sc->p) < n || memcmp(sc->p, word, n) != 0) return 0;
    sc->p += n;
    return 1;
}

enum { V_STRING, V_NUMBER, V_INTEGER, V_NULL, V_OTHER };

/* One scalar value; its kind in *kind, its text in *out (strings: without the quotes). 0 = not handled. */
static int scan_value(Scan *sc, Str *out, int *kind) {
    if (sc->p >= sc->end) return 0;
    char c = *sc->p;
    if (c == '"') {
        *kind = V_STRING;
        return scan_string(sc, out);
    }
    if (c == '-' || (c >= '0' && c <= '9')) {
        int integer;
        if (!scan_number(sc, out, &integer)) return 0;
        *kind = integer ? V_INTEGER : V_NUMBER;
        return 1;
    }
    *kind = c == 'n' ? V_NULL : V_OTHER;
    return scan_literal(sc, "null") || scan_literal(sc, "true") || scan_literal(sc, "false");
}

/* ---------------------------------------------------------------- decimals as keys.norm_decimal spells them */

/* Normalised text of a plain decimal string ``[-]digits[.digits]`` in out (cap >= its length + 2), or 0 when the
 * spelling is not that plain form, or is outside what keys.check_number and the field's bounds accept with room to
 * spare (price: 0 <= v <= 1, not negative; size: |v| < 1e15): those take the Python path. */
static Py_ssize_t norm_plain(Str s, int is_price, char *out) {
    const char *p = s.s, *end = s.s + s.n;
    int negative = 0;
    if (s.n == 0 || s.n > MAX_NUMBER_CHARS) return 0;
    if (*p == '-') {
        if (is_price) return 0;
        negative = 1;
        p++;
    }
    const char *int_start = p;
    while (p < end && *p >= '0' && *p <= '9') p++;
    const char *int_end = p;
    if (int_end == int_start) return 0;
    const char *frac_start = p, *frac_end = p;
    if (p < end) {
        if (*p != '.') return 0;
        p++;
        frac_start = p;
        while (p < end && *p >= '0' && *p <= '9') p++;
        frac_end = p;
        if (frac_end == frac_start || p != end) return 0;
        if (frac_end - frac_start > MAX_FRACTION) return 0;
    }
    while (int_start < int_end && *int_start == '0') int_start++; /* significant integer digits */
    while (frac_end > frac_start && frac_end[-1] == '0') frac_end--;
    Py_ssize_t int_digits = int_end - int_start, frac_digits = frac_end - frac_start;
    if (is_price) {
        if (int_digits > 1 || (int_digits == 1 && (*int_start != '1' || frac_digits > 0))) return 0; /* > 1 */
    } else if (int_digits > MAX_SIZE_DIGITS) {
        return 0;
    }
    Py_ssize_t n = 0;
    if (negative && (int_digits || frac_digits)) out[n++] = '-';
    if (int_digits) {
        memcpy(out + n, int_start, (size_t)int_digits);
        n += int_digits;
    } else {
        out[n++] = '0';
    }
    if (frac_digits) {
        out[n++] = '.';
        memcpy(out + n, frac_start, (size_t)frac_digits);
        n += frac_digits;
    }
    return n;
}

/* ---------------------------------------------------------------- delta_parts */

static int key_is(Str key, const char *name) {
    size_t n = strlen(name);
    return (size_t)key.n == n && memcmp(key.s, name, n) == 0;
}

enum { F_MARKET, F_PRICE, F_SIZE, F_SIDE, F_MARKET_ID, F_TS_MS, F_TS, F_COUNT };
static const char *FIELDS[F_COUNT] = {"market_ticker", "price_dollars", "delta_fp", "side", "market_id", "ts_ms", "ts"};

static PyObject *parts_of(const char *buf, Py_ssize_t len);

static PyObject *delta_parts(PyObject *self, PyObject *arg) {
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0) return NULL;
    PyObject *out = parts_of((const char *)view.buf, view.len);
    PyBuffer_Release(&view);
    return out;
}

/* Scan a flat JSON object whose values are scalars, from sc->p (leading whitespace skipped) to just after its closing
 * brace; the values of the ``count`` known ``fields`` land in value/kind/seen (seen[f] = 1 when present). 0 = not
 * handled (not such an object, bad JSON, a repeated field). */
static int scan_object_at(Scan *sc, const char *const *fields, int count, Str *value, int *kind, int *seen) {
    skip_ws(sc);
    if (sc->p >= sc->end || *sc->p != '{') return 0;
    sc->p++;
    skip_ws(sc);
    if (sc->p < sc->end && *sc->p == '}') return 0; /* empty: required fields missing */
    for (;;) {
        Str key, v;
        int k;
        skip_ws(sc);
        if (!scan_string(sc, &key)) return 0;
        skip_ws(sc);
        if (sc->p >= sc->end || *sc->p != ':') return 0;
        sc->p++;
        skip_ws(sc);
        if (!scan_value(sc, &v, &k)) return 0;
        for (int f = 0; f < count; f++) {
            if (key_is(key, fields[f])) {
                if (seen[f]) return 0; /* a repeated field: msgspec decides */
                seen[f] = 1;
                value[f] = v;
                kind[f] = k;
                break;
            }
        }
        skip_ws(sc);
        if (sc->p >= sc->end) return 0;
        if (*sc->p == ',') {
            sc->p++;
            continue;
        }
        if (*sc->p != '}') return 0;
        sc->p++;
        return 1;
    }
}

/* The same for a whole buffer: the object and nothing but whitespace after it. */
static int scan_object(const char *buf, Py_ssize_t len, const char *const *fields, int count, Str *value, int *kind,
                       int *seen) {
    Scan sc = {buf, buf + len};
    if (!scan_object_at(&sc, fields, count, value, kind, seen)) return 0;
    skip_ws(&sc);
    return sc.p == sc.end;
}

/* The decimal text of a JSON integer as Python's int() formats it ("-0" is 0), in *out; 0 when it is longer than
 * 18 digits (msgspec's int range is left to the Python path). */
static int int_text(Str v, Str *out) {
    if (v.n > 18) return 0;
    *out = v;
    if (v.n == 2 && v.s[0] == '-' && v.s[1] == '0') {
        out->s++;
        out->n = 1;
    }
    return 1;
}

static long long int_value(Str v) {
    long long x = 0;
    int negative = v.s[0] == '-';
    for (Py_ssize_t i = negative; i < v.n; i++) x = x * 10 + (v.s[i] - '0');
    return negative ? -x : x;
}

/* What a body's key needs: its market, the hex digest of its key text, its venue time. */
typedef struct {
    Str market;
    char hex[16];
    long long ts_ms;
} Parts;

/* (market, digest, ts_ms) */
static PyObject *parts_tuple(const Parts *parts) {
    PyObject *out = PyTuple_New(3);
    if (!out) return NULL;
    PyObject *market_obj = PyUnicode_FromStringAndSize(parts->market.s, parts->market.n);
    PyObject *digest_obj = PyUnicode_FromStringAndSize(parts->hex, 16);
    PyObject *ms_obj = PyLong_FromLongLong(parts->ts_ms);
    /* PyTuple_SET_ITEM of NULL is fine: the tuple's dealloc skips it */
    PyTuple_SET_ITEM(out, 0, market_obj);
    PyTuple_SET_ITEM(out, 1, digest_obj);
    PyTuple_SET_ITEM(out, 2, ms_obj);
    if (!market_obj || !digest_obj || !ms_obj) {
        Py_DECREF(out);
        return NULL;
    }
    return out;
}

/* The parts of a delta body from its scanned fields; 0 = not handled (the Python path decides). */
static int delta_fields(const Str *value, const int *kind, const int *seen, Parts *parts) {
    /* the required fields, typed as DeltaMsg/_DeltaText type them; the optional ones must be of their type too */
    if (!seen[F_MARKET] || kind[F_MARKET] != V_STRING || value[F_MARKET].n > MAX_MARKET) return 0;
    if (!seen[F_PRICE] || kind[F_PRICE] != V_STRING || !seen[F_SIZE] || kind[F_SIZE] != V_STRING) return 0;
    if (!seen[F_SIDE] || kind[F_SIDE] != V_STRING) return 0;
    if (seen[F_MARKET_ID] && kind[F_MARKET_ID] != V_STRING) return 0;
    if (seen[F_TS] && kind[F_TS] != V_STRING && kind[F_TS] != V_NULL) return 0;
    if (!seen[F_TS_MS] || kind[F_TS_MS] != V_INTEGER || value[F_TS_MS].n > 18) return 0; /* fits int64 */
    Str side = value[F_SIDE];
    if (!key_is(side, "yes") && !key_is(side, "no")) return 0;
    char price[MAX_NUMBER_CHARS + 2], size[MAX_NUMBER_CHARS + 2];
    Py_ssize_t price_n = norm_plain(value[F_PRICE], 1, price);
    Py_ssize_t size_n = norm_plain(value[F_SIZE], 0, size);
    if (!price_n || !size_n) return 0;
    Str market = value[F_MARKET], ts;
    if (!int_text(value[F_TS_MS], &ts)) return 0;
    char text[MAX_MARKET + 3 + 2 * (MAX_NUMBER_CHARS + 2) + 4 + 20];
    Py_ssize_t n = 0;
    memcpy(text + n, market.s, (size_t)market.n);
    n += market.n;
    text[n++] = '\x1f';
    memcpy(text + n, side.s, (size_t)side.n);
    n += side.n;
    text[n++] = '\x1f';
    memcpy(text + n, price, (size_t)price_n);
    n += price_n;
    text[n++] = '\x1f';
    memcpy(text + n, size, (size_t)size_n);
    n += size_n;
    text[n++] = '\x1f';
    memcpy(text + n, ts.s, (size_t)ts.n);
    n += ts.n;
    blake2b8_hex((const uint8_t *)text, (size_t)n, parts->hex);
    parts->market = market;
    parts->ts_ms = int_value(ts);
    return 1;
}

static PyObject *parts_of(const char *buf, Py_ssize_t len) {
    Str value[F_COUNT];
    int kind[F_COUNT];
    int seen[F_COUNT] = {0};
    Parts parts;
    if (!scan_object(buf, len, FIELDS, F_COUNT, value, kind, seen) || !delta_fields(value, kind, seen, &parts))
        Py_RETURN_NONE;
    return parts_tuple(&parts);
}

/* ---------------------------------------------------------------- ticker_parts */

/* messages.TickerMsg's fields in its order: the digest joins them with \x1f (keys.EventKeyer.ticker_body) */
enum { T_MARKET, T_MARKET_ID, T_PRICE0, T_PRICE_LAST = T_PRICE0 + 2, T_SIZE0, T_SIZE_LAST = T_SIZE0 + 4, T_INT0,
       T_TS = T_INT0 + 2, T_TS_MS, T_COUNT };
static const char *TICKER_FIELDS[T_COUNT] = {
    "market_ticker",   "market_id",          "price_dollars",   "yes_bid_dollars",  "yes_ask_dollars",
    "yes_bid_size_fp", "yes_ask_size_fp",    "last_trade_size_fp", "volume_fp",     "open_interest_fp",
    "dollar_volume",   "dollar_open_interest", "ts",            "ts_ms",
};

/* The parts of a ticker body from its scanned fields; 0 = not handled. */
static int ticker_fields(const Str *value, const int *kind, const int *seen, Parts *parts) {
    if (!seen[T_MARKET] || kind[T_MARKET] != V_STRING || value[T_MARKET].n > MAX_MARKET) return 0;
    if (seen[T_MARKET_ID] && kind[T_MARKET_ID] != V_STRING) return 0;
    if (!seen[T_TS_MS] || kind[T_TS_MS] != V_INTEGER) return 0; /* the venue time the key counts in */
    char text[MAX_MARKET * 2 + T_COUNT * (MAX_NUMBER_CHARS + 3)];
    Py_ssize_t n = 0;
    for (int f = 0; f < T_COUNT; f++) {
        if (f) text[n++] = '\x1f';
        if (!seen[f] || kind[f] == V_NULL) continue; /* absent or null: "" (the two str fields were checked above) */
        Str v = value[f];
        if (f <= T_MARKET_ID) {
            if (v.n > MAX_MARKET) return 0;
            memcpy(text + n, v.s, (size_t)v.n);
            n += v.n;
        } else if (f <= T_SIZE_LAST) {
            if (kind[f] != V_STRING) return 0; /* sent as a JSON number: the Decimal path */
            Py_ssize_t m = norm_plain(v, f <= T_PRICE_LAST, text + n);
            if (!m) return 0;
            n += m;
        } else {
            Str t;
            if (kind[f] != V_INTEGER || !int_text(v, &t)) return 0;
            memcpy(text + n, t.s, (size_t)t.n);
            n += t.n;
        }
    }
    Str ts_ms;
    if (!int_text(value[T_TS_MS], &ts_ms)) return 0;
    blake2b8_hex((const uint8_t *)text, (size_t)n, parts->hex);
    parts->market = value[T_MARKET];
    parts->ts_ms = int_value(ts_ms);
    return 1;
}

static PyObject *ticker_of(const char *buf, Py_ssize_t len) {
    Str value[T_COUNT];
    int kind[T_COUNT];
    int seen[T_COUNT] = {0};
    Parts parts;
    if (!scan_object(buf, len, TICKER_FIELDS, T_COUNT, value, kind, seen) || !ticker_fields(value, kind, seen, &parts))
        Py_RETURN_NONE;
    return parts_tuple(&parts);
}

static PyObject *ticker_parts(PyObject *self, PyObject *arg) {
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0) return NULL;
    PyObject *out = ticker_of((const char *)view.buf, view.len);
    PyBuffer_Release(&view);
    return out;
}

/* ---------------------------------------------------------------- message_parts: the envelope too */

static PyObject *KIND_DELTA, *KIND_TICKER; /* "delta", "ticker": messages.KIND_BY_TYPE's names */

/* A JSON integer that fits int64 with room to spare (at most 18 digits), as a Python int in *out; 0 = not handled. */
static int scan_int(Scan *sc, PyObject **out) {
    Str v, t;
    int integer;
    if (!scan_number(sc, &v, &integer) || !integer || !int_text(v, &t)) return 0;
    *out = PyLong_FromLongLong(int_value(t));
    return *out != NULL ? 1 : -1;
}

/* See message_parts' docstring. Returns a new reference, Py_None included; NULL with an exception set on a
 * failure of Python itself (out of memory). */
static PyObject *message_of(const char *buf, Py_ssize_t len) {
    Scan sc = {buf, buf + len};
    PyObject *kind_obj = NULL, *sid = NULL, *seq = NULL, *out = NULL;
    Str value[T_COUNT]; /* T_COUNT > F_COUNT: room for either body */
    int kind[T_COUNT];
    int seen[T_COUNT] = {0};
    int have_msg = 0, got;
    Parts parts;
    skip_ws(&sc);
    if (sc.p >= sc.end || *sc.p != '{') goto decline;
    sc.p++;
    for (;;) {
        Str key, type;
        skip_ws(&sc);
        if (!scan_string(&sc, &key)) goto decline;
        skip_ws(&sc);
        if (sc.p >= sc.end || *sc.p != ':') goto decline;
        sc.p++;
        skip_ws(&sc);
        if (key_is(key, "type")) {
            /* first, so that the body is scanned once, for its own fields (the venue and the emulator send it so) */
            if (kind_obj || sid || seq || have_msg || !scan_string(&sc, &type)) goto decline;
            if (key_is(type, "orderbook_delta"))
                kind_obj = KIND_DELTA;
            else if (key_is(type, "ticker"))
                kind_obj = KIND_TICKER;
            else
                goto decline; /* every other type: the Python path */
        } else if (key_is(key, "sid")) {
            if (!kind_obj || sid) goto decline;
            if ((got = scan_int(&sc, &sid)) <= 0) goto fail_or_decline;
        } else if (key_is(key, "seq")) {
            if (!kind_obj || seq) goto decline;
            if ((got = scan_int(&sc, &seq)) <= 0) goto fail_or_decline;
        } else if (key_is(key, "msg")) {
            if (!kind_obj || have_msg) goto decline;
            have_msg = 1;
            if (kind_obj == KIND_DELTA) {
                if (!scan_object_at(&sc, FIELDS, F_COUNT, value, kind, seen)) goto decline;
                if (!delta_fields(value, kind, seen, &parts)) goto decline;
            } else {
                if (!scan_object_at(&sc, TICKER_FIELDS, T_COUNT, value, kind, seen)) goto decline;
                if (!ticker_fields(value, kind, seen, &parts)) goto decline;
            }
        } else {
            goto decline; /* "id" or a field the envelope does not know: the Python path */
        }
        skip_ws(&sc);
        if (sc.p >= sc.end) goto decline;
        if (*sc.p == ',') {
            sc.p++;
            continue;
        }
        if (*sc.p != '}') goto decline;
        sc.p++;
        break;
    }
    skip_ws(&sc);
    if (sc.p != sc.end || !have_msg || !sid) goto decline;
    out = PyTuple_New(6);
    if (!out) goto fail;
    Py_INCREF(kind_obj);
    PyTuple_SET_ITEM(out, 0, kind_obj);
    PyTuple_SET_ITEM(out, 1, sid);
    if (!seq) {
        seq = Py_None;
        Py_INCREF(seq);
    }
    PyTuple_SET_ITEM(out, 2, seq);
    PyObject *market_obj = PyUnicode_FromStringAndSize(parts.market.s, parts.market.n);
    PyObject *digest_obj = PyUnicode_FromStringAndSize(parts.hex, 16);
    PyObject *ms_obj = PyLong_FromLongLong(parts.ts_ms);
    PyTuple_SET_ITEM(out, 3, market_obj);
    PyTuple_SET_ITEM(out, 4, digest_obj);
    PyTuple_SET_ITEM(out, 5, ms_obj);
    if (!market_obj || !digest_obj || !ms_obj) {
        Py_DECREF(out);
        return NULL;
    }
    return out;
fail_or_decline:
    if (got == 0) goto decline;
fail:
    Py_XDECREF(sid);
    Py_XDECREF(seq);
    return NULL;
decline:
    Py_XDECREF(sid);
    Py_XDECREF(seq);
    Py_RETURN_NONE;
}

static PyObject *message_parts(PyObject *self, PyObject *arg) {
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0) return NULL;
    PyObject *out = message_of((const char *)view.buf, view.len);
    PyBuffer_Release(&view);
    return out;
}

/* ---------------------------------------------------------------- snapshot_parts */

/* Skip one JSON value of any kind (nested arrays and objects too, strings without escapes); 0 = not handled. */
static int skip_value(Scan *sc, int depth) {
    skip_ws(sc);
    if (sc->p >= sc->end || depth > 32) return 0;
    char open = *sc->p;
    if (open != '[' && open != '{') {
        Str v;
        int k;
        return scan_value(sc, &v, &k);
    }
    char close = open == '[' ? ']' : '}';
    sc->p++;
    skip_ws(sc);
    if (sc->p < sc->end && *sc->p == close) {
        sc->p++;
        return 1;
    }
    for (;;) {
        if (open == '{') {
            Str key;
            skip_ws(sc);
            if (!scan_string(sc, &key)) return 0;
            skip_ws(sc);
            if (sc->p >= sc->end || *sc->p != ':') return 0;
            sc->p++;
        }
        if (!skip_value(sc, depth + 1)) return 0;
        skip_ws(sc);
        if (sc->p >= sc->end) return 0;
        if (*sc->p == ',') {
            sc->p++;
            continue;
        }
        if (*sc->p != close) return 0;
        sc->p++;
        return 1;
    }
}

/* One level's normalised texts, kept in a side's scratch buffer. */
typedef struct {
    const char *price;
    Py_ssize_t price_n;
    const char *size;
    Py_ssize_t size_n;
} Level;

/* Numeric order of two normalised decimals (keys.norm_decimal's spelling: no leading or trailing zeros, "0" for
 * zero, "-" only before a non-zero value). */
static int cmp_magnitude(const char *a, Py_ssize_t an, const char *b, Py_ssize_t bn) {
    const char *ad = memchr(a, '.', (size_t)an), *bd = memchr(b, '.', (size_t)bn);
    Py_ssize_t ai = ad ? ad - a : an, bi = bd ? bd - b : bn;
    if (ai != bi) return ai < bi ? -1 : 1;
    int c = memcmp(a, b, (size_t)ai);
    if (c) return c < 0 ? -1 : 1;
    Py_ssize_t af = ad ? an - ai - 1 : 0, bf = bd ? bn - bi - 1 : 0; /* fraction digits */
    Py_ssize_t common = af < bf ? af : bf;
    c = common ? memcmp(a + ai + 1, b + bi + 1, (size_t)common) : 0;
    if (c) return c < 0 ? -1 : 1;
    return af == bf ? 0 : (af < bf ? -1 : 1); /* no trailing zeros: the longer fraction is the larger */
}

static int cmp_decimal(const char *a, Py_ssize_t an, const char *b, Py_ssize_t bn) {
    int a_neg = an && a[0] == '-', b_neg = bn && b[0] == '-';
    if (a_neg != b_neg) return a_neg ? -1 : 1;
    int c = cmp_magnitude(a + a_neg, an - a_neg, b + b_neg, bn - b_neg);
    return a_neg ? -c : c;
}

static int cmp_level(const void *x, const void *y) {
    const Level *a = x, *b = y;
    int c = cmp_decimal(a->price, a->price_n, b->price, b->price_n);
    return c ? c : cmp_decimal(a->size, a->size_n, b->size, b->size_n);
}

/* A side's level list ``[["p","c"], ..]`` at sc->p: normalised into scratch (room for the list's own length),
 * sorted, then written as ``p,c;p,c`` at *text. 0 = not handled. */
static int side_text(Scan *sc, char *scratch, Level *levels, char **text) {
    Py_ssize_t count = 0;
    char *w = scratch;
    skip_ws(sc);
    if (sc->p >= sc->end || *sc->p != '[') return 0;
    sc->p++;
    skip_ws(sc);
    if (sc->p < sc->end && *sc->p == ']') {
        sc->p++;
    } else {
        for (;;) {
            Str price, size;
            skip_ws(sc);
            if (sc->p >= sc->end || *sc->p != '[') return 0;
            sc->p++;
            skip_ws(sc);
            if (!scan_string(sc, &price)) return 0;
            skip_ws(sc);
            if (sc->p >= sc->end || *sc->p != ',') return 0;
            sc->p++;
            skip_ws(sc);
            if (!scan_string(sc, &size)) return 0;
            skip_ws(sc);
            if (sc->p >= sc->end || *sc->p != ']') return 0;
            sc->p++;
            Level *level = &levels[count++];
            level->price = w;
            level->price_n = norm_plain(price, 1, w);
            if (!level->price_n) return 0;
            w += level->price_n;
            level->size = w;
            level->size_n = norm_plain(size, 0, w);
            if (!level->size_n) return 0;
            w += level->size_n;
            skip_ws(sc);
            if (sc->p >= sc->end) return 0;
            if (*sc->p == ',') {
                sc->p++;
                continue;
            }
            if (*sc->p != ']') return 0;
            sc->p++;
            break;
        }
    }
    qsort(levels, (size_t)count, sizeof(Level), cmp_level);
    char *t = *text;
    for (Py_ssize_t i = 0; i < count; i++) {
        if (i) *t++ = ';';
        memcpy(t, levels[i].price, (size_t)levels[i].price_n);
        t += levels[i].price_n;
        *t++ = ',';
        memcpy(t, levels[i].size, (size_t)levels[i].size_n);
        t += levels[i].size_n;
    }
    *text = t;
    return 1;
}

enum { S_MARKET, S_MARKET_ID, S_YES, S_NO, S_COUNT };
static const char *SNAPSHOT_FIELDS[S_COUNT] = {"market_ticker", "market_id", "yes_dollars_fp", "no_dollars_fp"};

/* The key text of a snapshot body into text (room for len + MAX_MARKET + 16), the market in *market; 0 = not
 * handled. */
static Py_ssize_t snapshot_text(const char *buf, Py_ssize_t len, char *text, char *scratch, Level *levels,
                                Str *market) {
    Scan sc = {buf, buf + len};
    Scan sides[2] = {{NULL, NULL}, {NULL, NULL}};
    int seen[S_COUNT] = {0};
    skip_ws(&sc);
    if (sc.p >= sc.end || *sc.p != '{') return 0;
    sc.p++;
    skip_ws(&sc);
    if (sc.p < sc.end && *sc.p == '}') return 0; /* market_ticker missing */
    for (;;) {
        Str key;
        skip_ws(&sc);
        if (!scan_string(&sc, &key)) return 0;
        skip_ws(&sc);
        if (sc.p >= sc.end || *sc.p != ':') return 0;
        sc.p++;
        skip_ws(&sc);
        int f = 0;
        while (f < S_COUNT && !key_is(key, SNAPSHOT_FIELDS[f])) f++;
        if (f < S_COUNT) {
            if (seen[f]) return 0; /* a repeated field: msgspec decides */
            seen[f] = 1;
        }
        if (f == S_MARKET || f == S_MARKET_ID) {
            Str v;
            if (!scan_string(&sc, &v)) return 0; /* not a string (or escaped): msgspec decides */
            if (f == S_MARKET) *market = v;
        } else {
            if (f == S_YES || f == S_NO) sides[f - S_YES] = sc; /* read after the object is known whole */
            if (!skip_value(&sc, 0)) return 0;
        }
        skip_ws(&sc);
        if (sc.p >= sc.end) return 0;
        if (*sc.p == ',') {
            sc.p++;
            continue;
        }
        if (*sc.p != '}') return 0;
        sc.p++;
        break;
    }
    skip_ws(&sc);
    if (sc.p != sc.end || !seen[S_MARKET] || market->n > MAX_MARKET) return 0;
    char *t = text;
    memcpy(t, market->s, (size_t)market->n);
    t += market->n;
    memcpy(t, "\x1fyes\x1f", 5);
    t += 5;
    for (int side = 0; side < 2; side++) {
        if (side) {
            memcpy(t, "\x1fno\x1f", 4);
            t += 4;
        }
        if (seen[S_YES + side]) {
            sides[side].end = buf + len;
            if (!side_text(&sides[side], scratch, levels, &t)) return 0;
        }
    }
    return t - text;
}

static PyObject *snapshot_parts(PyObject *self, PyObject *arg) {
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0) return NULL;
    Py_ssize_t len = view.len;
    /* a level is at least 9 bytes of the body (["0","0"]) and its normalised texts no longer than its strings */
    char *text = PyMem_Malloc((size_t)(2 * len + MAX_MARKET + 64));
    Level *levels = PyMem_Malloc(sizeof(Level) * (size_t)(len / 9 + 1));
    PyObject *out = NULL;
    if (!text || !levels) {
        PyErr_NoMemory();
    } else {
        Str market = {NULL, 0};
        Py_ssize_t n = snapshot_text((const char *)view.buf, len, text, text + len + MAX_MARKET + 32, levels, &market);
        if (!n) {
            out = Py_NewRef(Py_None);
        } else {
            char hex[16];
            blake2b8_hex((const uint8_t *)text, (size_t)n, hex);
            out = Py_BuildValue("(s#s#)", market.s, market.n, hex, (Py_ssize_t)16);
        }
    }
    PyMem_Free(text);
    PyMem_Free(levels);
    PyBuffer_Release(&view);
    return out;
}

static PyObject *py_blake2b8_hex(PyObject *self, PyObject *arg) {
    char *buf;
    Py_ssize_t len;
    if (PyBytes_AsStringAndSize(arg, &buf, &len) < 0) return NULL;
    char hex[16];
    blake2b8_hex((const uint8_t *)buf, (size_t)len, hex);
    return PyUnicode_FromStringAndSize(hex, 16);
}

static PyMethodDef METHODS[] = {
    {"delta_parts", delta_parts, METH_O, "(market_ticker, digest, ts_ms) of an orderbook_delta body, or None."},
    {"ticker_parts", ticker_parts, METH_O, "(market_ticker, digest, ts_ms) of a ticker body, or None."},
    {"message_parts", message_parts, METH_O,
     "(kind, sid, seq, market_ticker, digest, ts_ms) of a whole orderbook_delta or ticker message, or None."},
    {"snapshot_parts", snapshot_parts, METH_O, "(market_ticker, digest) of an orderbook_snapshot body, or None."},
    {"blake2b8_hex", py_blake2b8_hex, METH_O, "The first 8 bytes of BLAKE2b (digest_size=8) of bytes, in hex."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef MODULE = {PyModuleDef_HEAD_INIT, "_deltakey", NULL, -1, METHODS, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__deltakey(void) {
    KIND_DELTA = PyUnicode_InternFromString("delta");
    KIND_TICKER = PyUnicode_InternFromString("ticker");
    if (!KIND_DELTA || !KIND_TICKER) return NULL;
    return PyModule_Create(&MODULE);
}
