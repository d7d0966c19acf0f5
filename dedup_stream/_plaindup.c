/*
 * dedup_stream._plaindup: the dedup stage's commonest decision in one call: a later copy of an event whose winner
 * is in the store's in-memory caches (two of every three raw frames the worker reads).
 *
 * An accelerator, not a second definition: dedup_stream/logic.py's ``Deduper.decide_at`` holds the rule, and
 * tests/dedup_stream/test_plain_duplicate.py checks this one against it (the same verdicts, counters, store and
 * singles state over random streams, and every malformed or unusual frame handed back untouched).
 *
 * plain_duplicate(value, topic, partition, offset, caches, stats, waiting) -> bool
 *   value: a raw frame's bytes; topic, partition, offset: where it was read; caches: a list of dicts (store key ->
 *   winner bytes) consulted in order, as the store's ``get`` consults them; stats: the Deduper's ``Stats``;
 *   waiting: the singles tracker's dict of events waiting for a copy.
 *
 * True when the frame is a plain duplicate and every update ``decide_at`` makes for one is made: the gatherer's
 * ``frames_in``, ``last_recv_ns``, ``duplicates``, ``copy_lag_s`` and ``copy_lag_max_s``, the stats'
 * ``last_recv_ns`` and ``match_age_max_s``, the event removed from ``waiting``. False, with nothing changed, for
 * anything else: a frame not in the exact layout the gatherers write (an 18-element array; every field of the type
 * msgspec requires, strings valid UTF-8, nothing after the array), a gap report, a copy with alternate keys, a weak
 * key or an ordinal, a key none of the caches holds (the store's database decides), a winner that is not a 5-8
 * element array of its types, a re-read of the winner itself, a gatherer the stats do not know yet, numbers beyond
 * what this path computes exactly. The caller then takes the Python path from the start, which decides (invalid
 * frames and errors included).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

typedef struct {
    const unsigned char *p;
    const unsigned char *end;
} Reader;

typedef struct {
    const char *data;
    Py_ssize_t size;
} Str;

static int need(Reader *r, Py_ssize_t n) { return r->end - r->p >= n ? 0 : -1; }

static uint64_t be(const unsigned char *p, int n) {
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v = (v << 8) | p[i];
    return v;
}

/* Strict UTF-8, as Python's decoder: no overlong forms, no surrogates, nothing above U+10FFFF. */
static int valid_utf8(const unsigned char *s, Py_ssize_t n) {
    Py_ssize_t i = 0;
    while (i < n) {
        unsigned char c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        int len;
        uint32_t cp;
        if (c >= 0xc2 && c <= 0xdf) {
            len = 2;
            cp = c & 0x1f;
        } else if (c >= 0xe0 && c <= 0xef) {
            len = 3;
            cp = c & 0x0f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            len = 4;
            cp = c & 0x07;
        } else {
            return -1;
        }
        if (n - i < len)
            return -1;
        for (int k = 1; k < len; k++) {
            unsigned char cc = s[i + k];
            if ((cc & 0xc0) != 0x80)
                return -1;
            cp = (cp << 6) | (cc & 0x3f);
        }
        if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
            (cp >= 0xd800 && cp <= 0xdfff))
            return -1;
        i += len;
    }
    return 0;
}

static int read_str(Reader *r, Str *out) {
    if (need(r, 1))
        return -1;
    unsigned char t = *r->p++;
    uint64_t n;
    if (t >= 0xa0 && t <= 0xbf) {
        n = t & 0x1f;
    } else if (t == 0xd9 || t == 0xda || t == 0xdb) {
        int w = t == 0xd9 ? 1 : (t == 0xda ? 2 : 4);
        if (need(r, w))
            return -1;
        n = be(r->p, w);
        r->p += w;
    } else {
        return -1;
    }
    if ((uint64_t)(r->end - r->p) < n)
        return -1;
    if (valid_utf8(r->p, (Py_ssize_t)n))
        return -1;
    out->data = (const char *)r->p;
    out->size = (Py_ssize_t)n;
    r->p += n;
    return 0;
}

/* An int within int64 (any msgpack int form); *nil = 1 for nil when nil_ok. */
static int read_int(Reader *r, int nil_ok, int64_t *out, int *nil) {
    if (need(r, 1))
        return -1;
    unsigned char t = *r->p++;
    if (nil)
        *nil = 0;
    if (t <= 0x7f) {
        *out = t;
        return 0;
    }
    if (t >= 0xe0) {
        *out = (int8_t)t;
        return 0;
    }
    if (t == 0xc0 && nil_ok) {
        *nil = 1;
        *out = 0;
        return 0;
    }
    int w;
    int is_signed;
    switch (t) {
    case 0xcc: w = 1; is_signed = 0; break;
    case 0xcd: w = 2; is_signed = 0; break;
    case 0xce: w = 4; is_signed = 0; break;
    case 0xcf: w = 8; is_signed = 0; break;
    case 0xd0: w = 1; is_signed = 1; break;
    case 0xd1: w = 2; is_signed = 1; break;
    case 0xd2: w = 4; is_signed = 1; break;
    case 0xd3: w = 8; is_signed = 1; break;
    default: return -1;
    }
    if (need(r, w))
        return -1;
    uint64_t v = be(r->p, w);
    r->p += w;
    if (!is_signed) {
        if (v > (uint64_t)INT64_MAX)
            return -1;
        *out = (int64_t)v;
    } else if (w == 1) {
        *out = (int8_t)v;
    } else if (w == 2) {
        *out = (int16_t)v;
    } else if (w == 4) {
        *out = (int32_t)v;
    } else {
        *out = (int64_t)v;
    }
    return 0;
}

static int read_bin(Reader *r) {
    if (need(r, 1))
        return -1;
    unsigned char t = *r->p++;
    int w = t == 0xc4 ? 1 : (t == 0xc5 ? 2 : (t == 0xc6 ? 4 : 0));
    if (!w || need(r, w))
        return -1;
    uint64_t n = be(r->p, w);
    r->p += w;
    if ((uint64_t)(r->end - r->p) < n)
        return -1;
    r->p += n;
    return 0;
}

/* An array header: its element count. */
static int read_array(Reader *r, uint64_t *count) {
    if (need(r, 1))
        return -1;
    unsigned char t = *r->p++;
    if (t >= 0x90 && t <= 0x9f) {
        *count = t & 0x0f;
        return 0;
    }
    int w = t == 0xdc ? 2 : (t == 0xdd ? 4 : 0);
    if (!w || need(r, w))
        return -1;
    *count = be(r->p, w);
    r->p += w;
    return 0;
}

/* A list[str]: *count its length. */
static int read_str_list(Reader *r, uint64_t *count) {
    if (read_array(r, count))
        return -1;
    Str s;
    for (uint64_t i = 0; i < *count; i++)
        if (read_str(r, &s))
            return -1;
    return 0;
}

static int str_is(const Str *s, const char *lit) {
    size_t n = strlen(lit);
    return (size_t)s->size == n && memcmp(s->data, lit, n) == 0;
}

typedef struct {
    Str gatherer;
    Str market;
    Str event_key;
    int64_t recv_ns;
} Frame;

/* 0: a plain copy (no gap report, alternate keys, weak key or ordinal) in the gatherers' exact layout. */
static int parse_frame(const unsigned char *data, Py_ssize_t size, Frame *f) {
    Reader r = {data, data + size};
    int64_t v;
    int nil;
    uint64_t n;
    Str s;
    /* RawFrame: v, venue, gatherer, conn, sid, seq, recv_ns, kind, market, event_key, payload, venue_ms, after_keys,
       alt_keys, weak_key, weak_refs, weak_sub, ordinal (schemas/raw.py) */
    if (need(&r, 3) || r.p[0] != 0xdc || r.p[1] != 0x00 || r.p[2] != 18)
        return -1;
    r.p += 3;
    if (read_int(&r, 0, &v, NULL) || v != 1) /* the schema version */
        return -1;
    if (read_str(&r, &s) || read_str(&r, &f->gatherer))
        return -1;
    if (read_int(&r, 0, &v, NULL) || read_int(&r, 1, &v, &nil) || read_int(&r, 1, &v, &nil))
        return -1;
    if (read_int(&r, 0, &f->recv_ns, NULL))
        return -1;
    if (read_str(&r, &s))
        return -1;
    if (!(str_is(&s, "delta") || str_is(&s, "ticker") || str_is(&s, "trade") || str_is(&s, "snapshot") ||
          str_is(&s, "lifecycle")))
        return -1; /* a gap report, or not a kind at all */
    if (read_str(&r, &f->market) || read_str(&r, &f->event_key) || read_bin(&r))
        return -1;
    if (read_int(&r, 1, &v, &nil) || read_str_list(&r, &n))
        return -1;
    if (read_str_list(&r, &n) || n != 0) /* alternate keys */
        return -1;
    if (read_str(&r, &s) || s.size != 0) /* a weak key */
        return -1;
    if (read_str_list(&r, &n) || read_str(&r, &s))
        return -1;
    if (read_int(&r, 0, &v, NULL) || v != 0) /* an ordinal */
        return -1;
    return r.p == r.end ? 0 : -1;
}

typedef struct {
    Str topic;
    int64_t partition;
    int64_t offset;
    int64_t recv_ns;
} Winner;

/* Winner (dedup_stream/logic.py): topic, partition, offset, recv_ns, gatherer[, ordinal[, by_topic[, by_offset]]]. */
static int parse_winner(const unsigned char *data, Py_ssize_t size, Winner *w) {
    Reader r = {data, data + size};
    uint64_t n;
    int64_t v;
    Str s;
    if (read_array(&r, &n) || n < 5 || n > 8)
        return -1;
    if (read_str(&r, &w->topic) || read_int(&r, 0, &w->partition, NULL) || read_int(&r, 0, &w->offset, NULL) ||
        read_int(&r, 0, &w->recv_ns, NULL) || read_str(&r, &s))
        return -1;
    if (n >= 6 && read_int(&r, 0, &v, NULL))
        return -1;
    if (n >= 7 && read_str(&r, &s))
        return -1;
    if (n >= 8 && read_int(&r, 0, &v, NULL))
        return -1;
    return r.p == r.end ? 0 : -1;
}

static PyObject *s_gatherers, *s_frames_in, *s_last_recv_ns, *s_duplicates, *s_copy_lag_s, *s_copy_lag_max_s,
    *s_match_age_max_s;

static int add_one(PyObject *obj, PyObject *name) {
    PyObject *value = PyObject_GetAttr(obj, name);
    if (value == NULL)
        return -1;
    PyObject *one = PyLong_FromLong(1);
    PyObject *sum = one ? PyNumber_Add(value, one) : NULL;
    Py_DECREF(value);
    Py_XDECREF(one);
    if (sum == NULL)
        return -1;
    int rc = PyObject_SetAttr(obj, name, sum);
    Py_DECREF(sum);
    return rc;
}

/* obj.name = value if value > obj.name (Python's comparison). */
static int raise_to(PyObject *obj, PyObject *name, PyObject *value) {
    PyObject *current = PyObject_GetAttr(obj, name);
    if (current == NULL)
        return -1;
    int greater = PyObject_RichCompareBool(value, current, Py_GT);
    Py_DECREF(current);
    if (greater < 0)
        return -1;
    return greater ? PyObject_SetAttr(obj, name, value) : 0;
}

static PyObject *plain_duplicate(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 7) {
        PyErr_SetString(PyExc_TypeError, "plain_duplicate() takes 7 arguments");
        return NULL;
    }
    PyObject *value = args[0], *topic = args[1], *caches = args[4], *stats = args[5], *waiting = args[6];
    if (!PyBytes_CheckExact(value) || !PyUnicode_CheckExact(topic) || !PyLong_CheckExact(args[2]) ||
        !PyLong_CheckExact(args[3]) || !PyList_CheckExact(caches) || !PyDict_CheckExact(waiting))
        Py_RETURN_FALSE;
    int overflow = 0;
    long long partition = PyLong_AsLongLongAndOverflow(args[2], &overflow);
    if (overflow || (partition == -1 && PyErr_Occurred()))
        goto fallback;
    long long offset = PyLong_AsLongLongAndOverflow(args[3], &overflow);
    if (overflow || (offset == -1 && PyErr_Occurred()))
        goto fallback;

    Frame f;
    if (parse_frame((const unsigned char *)PyBytes_AS_STRING(value), PyBytes_GET_SIZE(value), &f))
        Py_RETURN_FALSE;
    /* the store key: f"{market}\x1f{event_key}".encode() (valid UTF-8 in, the same bytes out) */
    PyObject *key = PyBytes_FromStringAndSize(NULL, f.market.size + 1 + f.event_key.size);
    if (key == NULL)
        return NULL;
    char *k = PyBytes_AS_STRING(key);
    memcpy(k, f.market.data, (size_t)f.market.size);
    k[f.market.size] = 0x1f;
    memcpy(k + f.market.size + 1, f.event_key.data, (size_t)f.event_key.size);

    PyObject *stored = NULL; /* borrowed */
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(caches) && stored == NULL; i++) {
        PyObject *cache = PyList_GET_ITEM(caches, i);
        if (!PyDict_CheckExact(cache))
            goto key_fallback;
        stored = PyDict_GetItemWithError(cache, key);
        if (stored == NULL && PyErr_Occurred())
            goto error;
    }
    if (stored == NULL || !PyBytes_CheckExact(stored))
        goto key_fallback;
    Winner w;
    if (parse_winner((const unsigned char *)PyBytes_AS_STRING(stored), PyBytes_GET_SIZE(stored), &w))
        goto key_fallback;
    Py_ssize_t topic_size;
    const char *topic_utf8 = PyUnicode_AsUTF8AndSize(topic, &topic_size);
    if (topic_utf8 == NULL) {
        PyErr_Clear();
        goto key_fallback;
    }
    if (w.offset == offset && w.partition == partition && w.topic.size == topic_size &&
        memcmp(w.topic.data, topic_utf8, (size_t)topic_size) == 0)
        goto key_fallback; /* the winner read again: a re-emit */
    int64_t diff;
    if (__builtin_sub_overflow(f.recv_ns, w.recv_ns, &diff) || diff > (1LL << 53) || diff < -(1LL << 53))
        goto key_fallback;

    PyObject *gatherers = PyObject_GetAttr(stats, s_gatherers);
    if (gatherers == NULL)
        goto error;
    if (!PyDict_CheckExact(gatherers)) {
        Py_DECREF(gatherers);
        goto key_fallback;
    }
    PyObject *gid = PyUnicode_DecodeUTF8(f.gatherer.data, f.gatherer.size, NULL);
    if (gid == NULL) {
        Py_DECREF(gatherers);
        goto error;
    }
    PyObject *gstats = PyDict_GetItemWithError(gatherers, gid); /* borrowed */
    Py_DECREF(gid);
    Py_XINCREF(gstats);
    Py_DECREF(gatherers);
    if (gstats == NULL) {
        if (PyErr_Occurred())
            goto error;
        goto key_fallback; /* a gatherer not seen yet: the Python path adds it */
    }

    /* from here on, decide_at's updates for a plain duplicate, in its order */
    PyObject *recv = PyLong_FromLongLong(f.recv_ns);
    PyObject *age = recv ? PyFloat_FromDouble((double)diff / 1e9) : NULL;
    int rc = -1;
    if (age != NULL && add_one(gstats, s_frames_in) == 0) {
        PyObject *last = PyObject_GetAttr(gstats, s_last_recv_ns);
        int newer = last ? PyObject_RichCompareBool(recv, last, Py_GT) : -1;
        Py_XDECREF(last);
        if (newer >= 0 && (!newer || (PyObject_SetAttr(gstats, s_last_recv_ns, recv) == 0 &&
                                      raise_to(stats, s_last_recv_ns, recv) == 0))) {
            double a = PyFloat_AS_DOUBLE(age);
            PyObject *lag = a > 0.0 ? age : NULL;
            if (lag == NULL)
                lag = PyFloat_FromDouble(0.0);
            else
                Py_INCREF(lag);
            if (lag != NULL && add_one(gstats, s_duplicates) == 0 && PyObject_SetAttr(gstats, s_copy_lag_s, lag) == 0 &&
                raise_to(gstats, s_copy_lag_max_s, age) == 0 && raise_to(stats, s_match_age_max_s, age) == 0) {
                int has = PyDict_Contains(waiting, key); /* waiting.pop(key, None) */
                if (has == 0 || (has > 0 && PyDict_DelItem(waiting, key) == 0))
                    rc = 0;
            }
            Py_XDECREF(lag);
        }
    }
    Py_XDECREF(recv);
    Py_XDECREF(age);
    Py_DECREF(gstats);
    Py_DECREF(key);
    if (rc)
        return NULL;
    Py_RETURN_TRUE;

key_fallback:
    Py_DECREF(key);
    Py_RETURN_FALSE;
error:
    Py_DECREF(key);
    return NULL;
fallback:
    PyErr_Clear();
    Py_RETURN_FALSE;
}

static PyMethodDef methods[] = {
    {"plain_duplicate", (PyCFunction)(void (*)(void))plain_duplicate, METH_FASTCALL,
     "plain_duplicate(value, topic, partition, offset, caches, stats, waiting) -> bool: decide_at for a plain "
     "later copy whose winner a cache holds (see the module source); False, nothing changed, for anything else."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_plaindup", NULL, -1, methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__plaindup(void) {
    s_gatherers = PyUnicode_InternFromString("gatherers");
    s_frames_in = PyUnicode_InternFromString("frames_in");
    s_last_recv_ns = PyUnicode_InternFromString("last_recv_ns");
    s_duplicates = PyUnicode_InternFromString("duplicates");
    s_copy_lag_s = PyUnicode_InternFromString("copy_lag_s");
    s_copy_lag_max_s = PyUnicode_InternFromString("copy_lag_max_s");
    s_match_age_max_s = PyUnicode_InternFromString("match_age_max_s");
    if (!s_gatherers || !s_frames_in || !s_last_recv_ns || !s_duplicates || !s_copy_lag_s || !s_copy_lag_max_s ||
        !s_match_age_max_s)
        return NULL;
    return PyModule_Create(&module);
}
