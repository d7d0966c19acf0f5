/*
 * sink._rowcodec: the sink's hot loop in C -- ``events`` records (msgpack, array-like, see sink/records.py)
 * straight to binary COPY rows (see sink/rows.py), without building Python objects per field.
 *
 * It is an accelerator, not a second implementation of the rules: it handles the well-formed, common shapes
 * (book snapshots, deltas, trades and tickers whose strings are ASCII and whose decimals are plain
 * ``[+-]digits[.digits]``) and stops at the first record it is not sure about, which the caller then passes
 * through the Python path (sink.batch), where msgspec and sink.rows decide: a row, a skip or a dead letter.
 * So the bytes it writes must be exactly the bytes sink.rows writes for the same record;
 * tests/sink/test_rowcodec.py checks that on every shape and on randomised input.
 *
 * build(payloads, start, rows, version, from_ms, to_ms[, stamps]) -> (stop, skipped)
 *   payloads: list of bytes; rows: dict table name -> list of row bytes (a list is created on its first row);
 *   from_ms/to_ms: int or None (keep from_ms <= ts_ms < to_ms). Returns the index of the first record it did
 *   not handle (len(payloads) when it handled all) and how many records it skipped by time.
 *   stamps: a bytearray (or None) that gets, per row built, its origin time (native int64, Unix ms): the venue's
 *   ts_ms for deltas, trades and tickers, the gatherer's receive time for snapshots (see sink.latency).
 *
 * ROW_LAYOUT: the version of the rows' layout (2: the common columns with venue; 3: deltas with replaces and ordinal;
 *   4: delta records with alias, the rows as 3), checked against sink.rowcodec.ROW_LAYOUT so that a build from older
 *   sources is never used.
 *
 * ages(stamps, now_ms, bounds_ms) -> (counts, sum_ms): the rows of ``stamps`` per latency bucket (now_ms - stamp
 *   <= bounds_ms[i], counts[len(bounds)] = above the last bound; not cumulative) and the sum of the latencies.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define PG_EPOCH_US 946684800000000LL /* 2000-01-01T00:00:00Z in Unix microseconds */
#define NUMERIC_OID 1700
#define TEXT_OID 25
#define MAX_DIGITS 64 /* longer decimal spellings take the Python path */
#define ROW_LAYOUT 4 /* the rows' layout; sink.rowcodec refuses a build of another one */

typedef struct {
    const unsigned char *p;
    const unsigned char *end;
} Reader;

typedef struct {
    const char *s;
    Py_ssize_t n;
} Str;

typedef struct {
    unsigned char *data;
    size_t len;
    size_t cap;
} Buf;

static PyObject *TABLE_SNAPSHOTS, *TABLE_DELTAS, *TABLE_TRADES, *TABLE_TICKERS;

/* ---------------------------------------------------------------- msgpack reading (0 = not handled) */

static int rd_array(Reader *r, uint32_t *n) {
    if (r->p >= r->end) return 0;
    unsigned char c = *r->p;
    if ((c & 0xf0) == 0x90) {
        *n = c & 0x0f;
        r->p += 1;
        return 1;
    }
    if (c == 0xdc && r->end - r->p >= 3) {
        *n = ((uint32_t)r->p[1] << 8) | r->p[2];
        r->p += 3;
        return 1;
    }
    if (c == 0xdd && r->end - r->p >= 5) {
        *n = ((uint32_t)r->p[1] << 24) | ((uint32_t)r->p[2] << 16) | ((uint32_t)r->p[3] << 8) | r->p[4];
        r->p += 5;
        return 1;
    }
    return 0;
}

/* a msgpack str whose bytes are all ASCII (anything else: the Python path checks the UTF-8) */
static int rd_str(Reader *r, Str *out) {
    if (r->p >= r->end) return 0;
    unsigned char c = *r->p;
    size_t n, head;
    if ((c & 0xe0) == 0xa0) {
        n = c & 0x1f;
        head = 1;
    } else if (c == 0xd9 && r->end - r->p >= 2) {
        n = r->p[1];
        head = 2;
    } else if (c == 0xda && r->end - r->p >= 3) {
        n = ((size_t)r->p[1] << 8) | r->p[2];
        head = 3;
    } else if (c == 0xdb && r->end - r->p >= 5) {
        n = ((size_t)r->p[1] << 24) | ((size_t)r->p[2] << 16) | ((size_t)r->p[3] << 8) | r->p[4];
        head = 5;
    } else {
        return 0;
    }
    if ((size_t)(r->end - r->p) - head < n) return 0;
    const unsigned char *s = r->p + head;
    for (size_t i = 0; i < n; i++) {
        if (s[i] & 0x80) return 0;
    }
    out->s = (const char *)s;
    out->n = (Py_ssize_t)n;
    r->p += head + n;
    return 1;
}

static int rd_nil(Reader *r) {
    if (r->p < r->end && *r->p == 0xc0) {
        r->p += 1;
        return 1;
    }
    return 0;
}

/* a msgpack integer that fits int64 */
static int rd_int(Reader *r, int64_t *out) {
    if (r->p >= r->end) return 0;
    const unsigned char *p = r->p;
    unsigned char c = *p;
    Py_ssize_t left = r->end - p;
    if (c <= 0x7f) {
        *out = c;
        r->p += 1;
        return 1;
    }
    if (c >= 0xe0) {
        *out = (int8_t)c;
        r->p += 1;
        return 1;
    }
    uint64_t u = 0;
    int size;
    switch (c) {
        case 0xcc: case 0xd0: size = 1; break;
        case 0xcd: case 0xd1: size = 2; break;
        case 0xce: case 0xd2: size = 4; break;
        case 0xcf: case 0xd3: size = 8; break;
        default: return 0;
    }
    if (left < 1 + size) return 0;
    for (int i = 1; i <= size; i++) u = (u << 8) | p[i];
    if (c >= 0xd0) { /* signed: sign-extend */
        if (size < 8 && (u >> (size * 8 - 1)) & 1) u |= ~(uint64_t)0 << (size * 8);
        *out = (int64_t)u;
    } else {
        if (u > (uint64_t)INT64_MAX) return 0;
        *out = (int64_t)u;
    }
    r->p += 1 + size;
    return 1;
}

static int rd_bool(Reader *r, int *out) {
    if (r->p < r->end && (*r->p == 0xc2 || *r->p == 0xc3)) {
        *out = *r->p == 0xc3;
        r->p += 1;
        return 1;
    }
    return 0;
}

/* ---------------------------------------------------------------- output buffer */

static int buf_reserve(Buf *b, size_t more) {
    if (b->len + more <= b->cap) return 1;
    size_t cap = b->cap ? b->cap : 1024;
    while (cap < b->len + more) cap *= 2;
    unsigned char *d = PyMem_Realloc(b->data, cap);
    if (d == NULL) {
        PyErr_NoMemory();
        return 0;
    }
    b->data = d;
    b->cap = cap;
    return 1;
}

static inline void put16(unsigned char *p, uint16_t v) {
    p[0] = (unsigned char)(v >> 8);
    p[1] = (unsigned char)v;
}

static inline void put32(unsigned char *p, uint32_t v) {
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

static inline void put64(unsigned char *p, uint64_t v) {
    put32(p, (uint32_t)(v >> 32));
    put32(p + 4, (uint32_t)v);
}

static int w_text(Buf *b, const Str *s) {
    if (s->n > INT32_MAX) return 0; /* longer than a COPY field: the Python path rejects it */
    if (!buf_reserve(b, 4 + (size_t)s->n)) return -1;
    put32(b->data + b->len, (uint32_t)s->n);
    memcpy(b->data + b->len + 4, s->s, (size_t)s->n);
    b->len += 4 + (size_t)s->n;
    return 1;
}

static int w_i8(Buf *b, int64_t v) {
    if (!buf_reserve(b, 12)) return -1;
    put32(b->data + b->len, 8);
    put64(b->data + b->len + 4, (uint64_t)v);
    b->len += 12;
    return 1;
}

static int w_null(Buf *b) {
    if (!buf_reserve(b, 4)) return -1;
    put32(b->data + b->len, 0xffffffffu);
    b->len += 4;
    return 1;
}

static int w_bool(Buf *b, int v) {
    if (!buf_reserve(b, 5)) return -1;
    put32(b->data + b->len, 1);
    b->data[b->len + 4] = v ? 1 : 0;
    b->len += 5;
    return 1;
}

/* numeric from plain decimal text [+-]digits[.digits] (at least one digit), in PostgreSQL's binary form:
   ndigits, weight, sign, dscale, base-10000 digits without leading or trailing zero digits (as
   sink.pgbinary). 1 = written, 0 = not a spelling handled here, -1 = error set. */
static int w_numeric(Buf *b, const Str *s) {
    const char *p = s->s, *end = s->s + s->n;
    int neg = 0;
    if (p < end && (*p == '-' || *p == '+')) {
        neg = *p == '-';
        p++;
    }
    const char *ip = p;
    while (p < end && *p >= '0' && *p <= '9') p++;
    const char *ip_end = p;
    const char *fp = p, *fp_end = p;
    if (p < end && *p == '.') {
        fp = ++p;
        while (p < end && *p >= '0' && *p <= '9') p++;
        fp_end = p;
    }
    if (p != end) return 0;
    if (ip_end == ip && fp_end == fp) return 0; /* no digit at all */
    while (ip < ip_end && *ip == '0') ip++;
    Py_ssize_t n_int = ip_end - ip, n_frac = fp_end - fp;
    if (n_int > MAX_DIGITS || n_frac > MAX_DIGITS) return 0;
    uint16_t groups[2 * (MAX_DIGITS / 4 + 1)];
    int ng = 0;
    /* integer part: groups of 4 digits aligned on the decimal point */
    Py_ssize_t first = n_int % 4;
    const char *q = ip;
    if (first) {
        int g = 0;
        for (Py_ssize_t i = 0; i < first; i++) g = g * 10 + (*q++ - '0');
        groups[ng++] = (uint16_t)g;
    }
    while (q < ip_end) {
        groups[ng++] = (uint16_t)((q[0] - '0') * 1000 + (q[1] - '0') * 100 + (q[2] - '0') * 10 + (q[3] - '0'));
        q += 4;
    }
    int weight = ng - 1;
    /* fraction part: groups of 4 digits, the last one padded with zeros */
    for (Py_ssize_t k = 0; k < n_frac; k += 4) {
        int g = 0;
        for (Py_ssize_t i = k; i < k + 4; i++) g = g * 10 + (i < n_frac ? fp[i] - '0' : 0);
        groups[ng++] = (uint16_t)g;
    }
    int lo = 0, hi = ng;
    while (lo < hi && groups[lo] == 0) {
        lo++;
        weight--;
    }
    while (hi > lo && groups[hi - 1] == 0) hi--;
    int nd = hi - lo;
    if (nd == 0) {
        weight = 0;
        neg = 0;
    }
    if (!buf_reserve(b, 12 + 2 * (size_t)nd)) return -1;
    unsigned char *o = b->data + b->len;
    put32(o, (uint32_t)(8 + 2 * nd));
    put16(o + 4, (uint16_t)nd);
    put16(o + 6, (uint16_t)(int16_t)weight);
    put16(o + 8, neg ? 0x4000 : 0);
    put16(o + 10, (uint16_t)n_frac);
    for (int i = 0; i < nd; i++) put16(o + 12 + 2 * i, groups[lo + i]);
    b->len += 12 + 2 * (size_t)nd;
    return 1;
}

/* a nullable numeric: nil -> NULL */
static int w_opt_numeric(Buf *b, Reader *r) {
    if (rd_nil(r)) return w_null(b);
    Str s;
    if (!rd_str(r, &s)) return 0;
    return w_numeric(b, &s);
}

static int w_numeric_field(Buf *b, Reader *r) {
    Str s;
    if (!rd_str(r, &s)) return 0;
    return w_numeric(b, &s);
}

/* numeric[] of the levels' prices (which = 0) or counts (which = 1): levels are [price, count] pairs */
static int w_level_array(Buf *b, const Str *levels, uint32_t n, int which) {
    if (n == 0) {
        if (!buf_reserve(b, 16)) return -1;
        unsigned char *o = b->data + b->len;
        put32(o, 12);
        put32(o + 4, 0);
        put32(o + 8, 0);
        put32(o + 12, NUMERIC_OID);
        b->len += 16;
        return 1;
    }
    if (!buf_reserve(b, 24)) return -1;
    size_t at = b->len;
    b->len += 24;
    for (uint32_t i = 0; i < n; i++) {
        int rc = w_numeric(b, &levels[2 * i + which]);
        if (rc <= 0) return rc;
    }
    unsigned char *o = b->data + at;
    size_t body = b->len - at - 24;
    if (body > INT32_MAX - 20) return 0;
    put32(o, (uint32_t)(20 + body));
    put32(o + 4, 1);
    put32(o + 8, 0);
    put32(o + 12, NUMERIC_OID);
    put32(o + 16, n);
    put32(o + 20, 1);
    return 1;
}

/* ---------------------------------------------------------------- records */

typedef struct {
    int64_t ts_ms;
    int64_t recv_ns;
    Str key, venue, market, gatherer;
} Common;

/* the common head: tag, v, venue, market, event_key, ts_ms, recv_ns, gatherer (tag already read) */
static int rd_common(Reader *r, long version, Common *c) {
    int64_t v;
    if (!rd_int(r, &v) || v != version) return 0;
    if (!rd_str(r, &c->venue) || !rd_str(r, &c->market) || !rd_str(r, &c->key)) return 0;
    if (!rd_int(r, &c->ts_ms) || !rd_int(r, &c->recv_ns) || !rd_str(r, &c->gatherer)) return 0;
    return 1;
}

/* ts, received_at, event_key, venue, market, gatherer (as sink.rows' _head + key + three texts) */
static int w_common(Buf *b, const Common *c) {
    int64_t ts_us, ts, recv_us, recv;
    if (__builtin_mul_overflow(c->ts_ms, (int64_t)1000, &ts_us) || __builtin_sub_overflow(ts_us, PG_EPOCH_US, &ts))
        return 0;
    recv_us = c->recv_ns / 1000;
    if (c->recv_ns % 1000 < 0) recv_us -= 1; /* floor division, as Python's // */
    if (__builtin_sub_overflow(recv_us, PG_EPOCH_US, &recv)) return 0;
    if (!buf_reserve(b, 28)) return -1;
    unsigned char *o = b->data + b->len;
    put32(o, 8);
    put64(o + 4, (uint64_t)ts);
    put32(o + 12, 8);
    put64(o + 16, (uint64_t)recv);
    b->len += 24;
    if (w_text(b, &c->key) < 0 || w_text(b, &c->venue) < 0 || w_text(b, &c->market) < 0 || w_text(b, &c->gatherer) < 0)
        return -1;
    return 1;
}

#define STEP(expr)              \
    do {                        \
        int rc_ = (expr);       \
        if (rc_ <= 0) return rc_; \
    } while (0)

static int w_i4(Buf *b, int64_t v) {
    if (v < INT32_MIN || v > INT32_MAX) return 0; /* the Python path rejects it */
    if (!buf_reserve(b, 8)) return -1;
    put32(b->data + b->len, 4);
    put32(b->data + b->len + 4, (uint32_t)(int32_t)v);
    b->len += 8;
    return 1;
}

/* n = the record's array length: 12 (no hop stamps), 14 (stamps), 16 (stamps, replaces, ordinal), 17 (and alias:
   an alias record is no row, the Python path applies it) */
static int rec_delta(Buf *b, Reader *r, const Common *c, uint32_t n) {
    Str market_id, side;
    int replaces = 0, alias = 0;
    int64_t ordinal = 0;
    STEP(w_common(b, c));
    if (!rd_str(r, &market_id) || !rd_str(r, &side)) return 0;
    STEP(w_text(b, &market_id));
    STEP(w_text(b, &side));
    STEP(w_numeric_field(b, r)); /* price */
    STEP(w_numeric_field(b, r)); /* delta */
    if (n >= 14) {
        int64_t raw_ts_ms, dedup_ns; /* the hop stamps: read past, never loaded */
        if (!rd_int(r, &raw_ts_ms) || !rd_int(r, &dedup_ns)) return 0;
    }
    if (n >= 16 && (!rd_bool(r, &replaces) || !rd_int(r, &ordinal))) return 0;
    if (n == 17 && (!rd_bool(r, &alias) || alias)) return 0;
    STEP(w_bool(b, replaces));
    STEP(w_i4(b, ordinal));
    return 1;
}

static int rec_trade(Buf *b, Reader *r, const Common *c) {
    Str trade_id, taker_side, taker_book_side;
    int block;
    STEP(w_common(b, c));
    if (!rd_str(r, &trade_id)) return 0;
    STEP(w_text(b, &trade_id));
    STEP(w_numeric_field(b, r)); /* yes_price */
    STEP(w_numeric_field(b, r)); /* no_price */
    STEP(w_numeric_field(b, r)); /* count */
    if (!rd_str(r, &taker_side) || !rd_str(r, &taker_book_side) || !rd_bool(r, &block)) return 0;
    STEP(w_text(b, &taker_side));
    STEP(w_text(b, &taker_book_side));
    STEP(w_bool(b, block));
    return 1;
}

static int rec_ticker(Buf *b, Reader *r, const Common *c) {
    Str market_id;
    STEP(w_common(b, c));
    if (!rd_str(r, &market_id)) return 0;
    STEP(w_text(b, &market_id));
    for (int i = 0; i < 8; i++) STEP(w_opt_numeric(b, r)); /* price .. open_interest */
    for (int i = 0; i < 2; i++) { /* dollar_volume, dollar_open_interest */
        int64_t n;
        if (rd_nil(r)) {
            STEP(w_null(b));
        } else if (rd_int(r, &n)) {
            STEP(w_i8(b, n));
        } else {
            return 0;
        }
    }
    return 1;
}

/* levels: [[price, count], ...] read into pairs of Str (grown as needed) */
static int rd_levels(Reader *r, Str **pairs, size_t *cap, uint32_t *n) {
    if (!rd_array(r, n)) return 0;
    if ((size_t)*n > (size_t)(r->end - r->p)) return 0; /* each level takes at least one byte */
    if (2 * (size_t)*n > *cap) {
        size_t want = 2 * (size_t)*n;
        Str *p = PyMem_Realloc(*pairs, want * sizeof(Str));
        if (p == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        *pairs = p;
        *cap = want;
    }
    for (uint32_t i = 0; i < *n; i++) {
        uint32_t two;
        if (!rd_array(r, &two) || two != 2) return 0;
        if (!rd_str(r, &(*pairs)[2 * i]) || !rd_str(r, &(*pairs)[2 * i + 1])) return 0;
    }
    return 1;
}

typedef struct {
    Str *yes, *no;
    size_t yes_cap, no_cap;
} Scratch;

/* text[] of an array of strings (a snapshot's after_keys); an absent field (older records) is an empty array */
static int w_text_array(Buf *b, Reader *r, int present) {
    uint32_t n = 0;
    if (present && !rd_array(r, &n)) return 0;
    if (n == 0) {
        if (!buf_reserve(b, 16)) return -1;
        unsigned char *o = b->data + b->len;
        put32(o, 12);
        put32(o + 4, 0);
        put32(o + 8, 0);
        put32(o + 12, TEXT_OID);
        b->len += 16;
        return 1;
    }
    if (!buf_reserve(b, 24)) return -1;
    size_t at = b->len;
    b->len += 24;
    for (uint32_t i = 0; i < n; i++) {
        Str item;
        if (!rd_str(r, &item)) return 0;
        STEP(w_text(b, &item));
    }
    unsigned char *o = b->data + at;
    size_t body = b->len - at - 24;
    if (body > INT32_MAX - 20) return 0;
    put32(o, (uint32_t)(20 + body));
    put32(o + 4, 1);
    put32(o + 8, 0);
    put32(o + 12, TEXT_OID);
    put32(o + 16, n);
    put32(o + 20, 1);
    return 1;
}

static int rec_snapshot(Buf *b, Reader *r, const Common *c, Scratch *sc, int has_after) {
    Str market_id;
    uint32_t n_yes, n_no;
    STEP(w_common(b, c));
    if (!rd_str(r, &market_id)) return 0;
    STEP(w_text(b, &market_id));
    STEP(rd_levels(r, &sc->yes, &sc->yes_cap, &n_yes));
    STEP(rd_levels(r, &sc->no, &sc->no_cap, &n_no));
    STEP(w_level_array(b, sc->yes, n_yes, 0));
    STEP(w_level_array(b, sc->yes, n_yes, 1));
    STEP(w_level_array(b, sc->no, n_no, 0));
    STEP(w_level_array(b, sc->no, n_no, 1));
    STEP(w_text_array(b, r, has_after));
    return 1;
}

/* one record: 1 = row built in b and *table set, 2 = skipped by time (b holds garbage), 0 = not handled, -1 = error set */
static int one_record(Buf *b, const unsigned char *data, Py_ssize_t len, long version, int has_from,
                      int64_t from_ms, int has_to, int64_t to_ms, PyObject **table, Scratch *sc, int64_t *origin) {
    Reader r = {data, data + len};
    uint32_t n;
    Str tag;
    Common c;
    int rc;
    if (!rd_array(&r, &n) || !rd_str(&r, &tag)) return 0;
    if (!rd_common(&r, version, &c)) return 0;
    int skip = (has_from && c.ts_ms < from_ms) || (has_to && c.ts_ms >= to_ms);
    int stamped; /* the two hop stamps (raw_ts_ms, dedup_ns) follow the type's fields: read past, never loaded */
    *origin = c.ts_ms;
    if (tag.n == 5 && memcmp(tag.s, "delta", 5) == 0 && (n == 12 || n == 14 || n == 16 || n == 17)) {
        stamped = 0; /* rec_delta reads its stamps (the book rule follows them) */
        rc = rec_delta(b, &r, &c, n);
        *table = TABLE_DELTAS;
    } else if (tag.n == 5 && memcmp(tag.s, "trade", 5) == 0 && (n == 15 || n == 17)) {
        stamped = n == 17;
        rc = rec_trade(b, &r, &c);
        *table = TABLE_TRADES;
    } else if (tag.n == 6 && memcmp(tag.s, "ticker", 6) == 0 && (n == 19 || n == 21)) {
        stamped = n == 21;
        rc = rec_ticker(b, &r, &c);
        *table = TABLE_TICKERS;
    } else if (tag.n == 8 && memcmp(tag.s, "snapshot", 8) == 0 && (n == 11 || n == 12 || n == 14)) {
        stamped = n == 14;
        rc = rec_snapshot(b, &r, &c, sc, n >= 12);
        *table = TABLE_SNAPSHOTS;
        /* a snapshot's ts_ms is its position in the delta stream (possibly long ago): its receive time instead */
        *origin = c.recv_ns / 1000000 - (c.recv_ns % 1000000 < 0);
    } else {
        return 0; /* lifecycle, unknown tags, other lengths: the Python path */
    }
    if (rc <= 0) return rc;
    if (stamped) {
        int64_t raw_ts_ms, dedup_ns;
        if (!rd_int(&r, &raw_ts_ms) || !rd_int(&r, &dedup_ns)) return 0;
    }
    if (r.p != r.end) return 0; /* trailing bytes: msgspec rejects them */
    /* a record outside [from_ms, to_ms) is skipped once it is known to decode (the Python path decodes first);
       the row built meanwhile is dropped */
    return skip ? 2 : 1;
}

static int parse_bound(PyObject *obj, int *has, int64_t *value) {
    if (obj == Py_None) {
        *has = 0;
        *value = 0;
        return 1;
    }
    int overflow = 0;
    long long v = PyLong_AsLongLongAndOverflow(obj, &overflow);
    if (v == -1 && PyErr_Occurred()) return 0;
    if (overflow) {
        PyErr_SetString(PyExc_OverflowError, "time bound out of the int64 range");
        return 0;
    }
    *has = 1;
    *value = v;
    return 1;
}

static PyObject *build(PyObject *self, PyObject *args) {
    PyObject *payloads, *rows, *from_obj, *to_obj, *stamps_obj = Py_None;
    Py_ssize_t start;
    long version;
    if (!PyArg_ParseTuple(args, "O!nO!lOO|O:build", &PyList_Type, &payloads, &start, &PyDict_Type, &rows, &version,
                          &from_obj, &to_obj, &stamps_obj))
        return NULL;
    if (stamps_obj != Py_None && !PyByteArray_Check(stamps_obj)) {
        PyErr_SetString(PyExc_TypeError, "stamps must be a bytearray or None");
        return NULL;
    }
    int64_t *stamps = NULL; /* this call's stamps, appended to stamps_obj once at the end */
    Py_ssize_t n_stamps = 0;
    int has_from, has_to;
    int64_t from_ms, to_ms;
    if (!parse_bound(from_obj, &has_from, &from_ms) || !parse_bound(to_obj, &has_to, &to_ms)) return NULL;
    Py_ssize_t n = PyList_GET_SIZE(payloads);
    if (start < 0) start = 0;
    Buf b = {0};
    Scratch sc = {0};
    Py_ssize_t skipped = 0, i;
    PyObject *lists[4] = {NULL, NULL, NULL, NULL}; /* borrowed from rows, by table */
    PyObject *tables[4] = {TABLE_SNAPSHOTS, TABLE_DELTAS, TABLE_TRADES, TABLE_TICKERS};
    int failed = 0;
    if (stamps_obj != Py_None && n > start) {
        stamps = PyMem_Malloc(sizeof(int64_t) * (size_t)(n - start));
        if (stamps == NULL) return PyErr_NoMemory();
    }
    for (i = start; i < n; i++) {
        PyObject *item = PyList_GET_ITEM(payloads, i);
        if (!PyBytes_Check(item)) break;
        PyObject *table = NULL;
        int64_t origin = 0;
        b.len = 0;
        int rc = one_record(&b, (const unsigned char *)PyBytes_AS_STRING(item), PyBytes_GET_SIZE(item), version,
                            has_from, from_ms, has_to, to_ms, &table, &sc, &origin);
        if (rc < 0) {
            failed = 1;
            break;
        }
        if (rc == 0) break;
        if (rc == 2) {
            skipped++;
            continue;
        }
        int t = table == TABLE_SNAPSHOTS ? 0 : table == TABLE_DELTAS ? 1 : table == TABLE_TRADES ? 2 : 3;
        if (lists[t] == NULL) {
            PyObject *list = PyDict_GetItemWithError(rows, tables[t]);
            if (list == NULL) {
                if (PyErr_Occurred()) {
                    failed = 1;
                    break;
                }
                list = PyList_New(0);
                if (list == NULL || PyDict_SetItem(rows, tables[t], list) < 0) {
                    Py_XDECREF(list);
                    failed = 1;
                    break;
                }
                Py_DECREF(list); /* the dict holds it */
            } else if (!PyList_Check(list)) {
                PyErr_Format(PyExc_TypeError, "rows[%R] is not a list", tables[t]);
                failed = 1;
                break;
            }
            lists[t] = list;
        }
        PyObject *row = PyBytes_FromStringAndSize((const char *)b.data, (Py_ssize_t)b.len);
        if (row == NULL || PyList_Append(lists[t], row) < 0) {
            Py_XDECREF(row);
            failed = 1;
            break;
        }
        Py_DECREF(row);
        if (stamps != NULL) stamps[n_stamps++] = origin;
    }
    if (!failed && n_stamps > 0) {
        Py_ssize_t old = PyByteArray_GET_SIZE(stamps_obj);
        Py_ssize_t add = n_stamps * (Py_ssize_t)sizeof(int64_t);
        if (PyByteArray_Resize(stamps_obj, old + add) < 0)
            failed = 1;
        else
            memcpy(PyByteArray_AS_STRING(stamps_obj) + old, stamps, (size_t)add);
    }
    PyMem_Free(stamps);
    PyMem_Free(b.data);
    PyMem_Free(sc.yes);
    PyMem_Free(sc.no);
    if (failed) return NULL;
    return Py_BuildValue("nn", i, skipped);
}

static PyObject *ages(PyObject *self, PyObject *args) {
    Py_buffer view;
    long long now_ms;
    PyObject *bounds_obj;
    if (!PyArg_ParseTuple(args, "y*LO!:ages", &view, &now_ms, &PyTuple_Type, &bounds_obj)) return NULL;
    Py_ssize_t nb = PyTuple_GET_SIZE(bounds_obj);
    if (nb < 1 || nb > 64 || view.len % (Py_ssize_t)sizeof(int64_t) != 0) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "ages: 1..64 bounds and whole int64 stamps");
        return NULL;
    }
    int64_t bounds[64];
    Py_ssize_t counts[65] = {0};
    for (Py_ssize_t k = 0; k < nb; k++) {
        bounds[k] = PyLong_AsLongLong(PyTuple_GET_ITEM(bounds_obj, k));
        if (bounds[k] == -1 && PyErr_Occurred()) {
            PyBuffer_Release(&view);
            return NULL;
        }
    }
    const int64_t *st = (const int64_t *)view.buf;
    Py_ssize_t n = view.len / (Py_ssize_t)sizeof(int64_t);
    long long sum_ms = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        int64_t age = (int64_t)now_ms - st[i];
        if (age < 0) age = 0; /* clocks apart by a little: counted as no delay */
        sum_ms += age;
        Py_ssize_t lo = 0, hi = nb; /* first bound >= age (nb: above the last) */
        while (lo < hi) {
            Py_ssize_t mid = (lo + hi) / 2;
            if (bounds[mid] >= age)
                hi = mid;
            else
                lo = mid + 1;
        }
        counts[lo]++;
    }
    PyBuffer_Release(&view);
    PyObject *list = PyList_New(nb + 1);
    if (list == NULL) return NULL;
    for (Py_ssize_t k = 0; k <= nb; k++) {
        PyObject *v = PyLong_FromSsize_t(counts[k]);
        if (v == NULL) {
            Py_DECREF(list);
            return NULL;
        }
        PyList_SET_ITEM(list, k, v);
    }
    return Py_BuildValue("NL", list, sum_ms);
}

static PyMethodDef methods[] = {
    {"build", build, METH_VARARGS,
     "build(payloads, start, rows, version, from_ms, to_ms[, stamps]) -> (stop, skipped): COPY rows of the "
     "records from payloads[start:] appended to rows[table], up to the first record left to the Python path; "
     "each row's origin time (Unix ms, native int64) appended to the bytearray stamps."},
    {"ages", ages, METH_VARARGS,
     "ages(stamps, now_ms, bounds_ms) -> (counts, sum_ms): the stamps' ages per bucket (le bounds_ms[i]; the last "
     "count is above every bound) and their sum."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_rowcodec", "The sink's events -> binary COPY rows hot loop in C (see sink.rows).", -1,
    methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__rowcodec(void) {
    TABLE_SNAPSHOTS = PyUnicode_InternFromString("orderbook_snapshots");
    TABLE_DELTAS = PyUnicode_InternFromString("orderbook_deltas");
    TABLE_TRADES = PyUnicode_InternFromString("trades");
    TABLE_TICKERS = PyUnicode_InternFromString("tickers");
    if (!TABLE_SNAPSHOTS || !TABLE_DELTAS || !TABLE_TRADES || !TABLE_TICKERS) return NULL;
    PyObject *mod = PyModule_Create(&module);
    if (mod == NULL) return NULL;
    if (PyModule_AddIntConstant(mod, "ROW_LAYOUT", ROW_LAYOUT) < 0) {
        Py_DECREF(mod);
        return NULL;
    }
    return mod;
}
