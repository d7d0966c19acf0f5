/*
 * ingest._bundle: the raw producer's release grouping (RawProducer._bundle) in C.
 *
 * An accelerator, not a second definition: ingest/bundling.py's ``bundle_py`` holds the rules (which frames share
 * a record, in which order records leave, when a lone frame stays plain) and tests/ingest/test_bundle_accel.py checks
 * this one against it on random batches, caches and limits. A gatherer groups every frame it releases (tens of
 * thousands a second), so the Python loop's per-frame lookups and tuples were a visible share of its CPU.
 *
 * bundle(batch, partition_of, partitions, limit, overhead, cache_max) -> (records, counts) | None
 *   batch: list of (topic, key, value) tuples; partition_of: topic -> {key: partition} (the producer's cache,
 *   updated here as the Python path does: cleared whole when it holds cache_max keys); partitions: topic -> its
 *   partition count. Returns None, having changed nothing, for anything but plain types: an item that is not a
 *   (str, bytes | None, bytes) tuple, a cache or count of another type (or a count above 2**24, a cached partition
 *   that is not an int in [0, 2**24)), a limit or overhead beyond 2**62, a frame of 4 GiB. Plain types
 *   run no Python code while the batch is read (no __eq__ or __hash__ of a subclass can change it under us).
 *   The caller then takes the Python path, which decides (errors included).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#include "../mdpipe/murmur2.h"

#define BUNDLE_TAG 0xC1
#define MAX_BUNDLE_FRAMES (1 << 20) /* schemas.raw_record.MAX_BUNDLE_FRAMES */
#define MAX_PARTITION (1L << 24)    /* partitions and counts this path takes (Kafka's are far below) */
#define MAX_FRAME_BYTES (1LL << 32) /* a frame this path takes is shorter (a msgpack bin32 length) */

typedef struct {
    PyObject *topic;  /* borrowed from the batch */
    PyObject *key;    /* borrowed */
    PyObject *values; /* a new list of the frames, owned */
    Py_ssize_t size;  /* bytes the record would take, as the Python path counts them */
} Group;

/* The msgpack of list[bytes] as msgspec writes it, after the bundle tag (schemas.raw_record.encode_bundle). */
static PyObject *encode_bundle(PyObject *values) {
    Py_ssize_t n = PyList_GET_SIZE(values);
    if (n > MAX_BUNDLE_FRAMES) {
        PyErr_Format(PyExc_ValueError, "a bundle holds 1 to %d frames, not %zd", MAX_BUNDLE_FRAMES, n);
        return NULL;
    }
    Py_ssize_t total = 1 + (n < 16 ? 1 : n < 65536 ? 3 : 5);
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_ssize_t len = PyBytes_GET_SIZE(PyList_GET_ITEM(values, i));
        total += (len < 256 ? 2 : len < 65536 ? 3 : 5) + len;
    }
    PyObject *out = PyBytes_FromStringAndSize(NULL, total);
    if (out == NULL)
        return NULL;
    uint8_t *p = (uint8_t *)PyBytes_AS_STRING(out);
    *p++ = BUNDLE_TAG;
    if (n < 16) {
        *p++ = (uint8_t)(0x90 | n);
    } else if (n < 65536) {
        *p++ = 0xdc;
        *p++ = (uint8_t)(n >> 8);
        *p++ = (uint8_t)n;
    } else {
        *p++ = 0xdd;
        for (int shift = 24; shift >= 0; shift -= 8)
            *p++ = (uint8_t)(n >> shift);
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *v = PyList_GET_ITEM(values, i);
        Py_ssize_t len = PyBytes_GET_SIZE(v);
        if (len < 256) {
            *p++ = 0xc4;
            *p++ = (uint8_t)len;
        } else if (len < 65536) {
            *p++ = 0xc5;
            *p++ = (uint8_t)(len >> 8);
            *p++ = (uint8_t)len;
        } else {
            *p++ = 0xc6;
            for (int shift = 24; shift >= 0; shift -= 8)
                *p++ = (uint8_t)((uint64_t)len >> shift);
        }
        memcpy(p, PyBytes_AS_STRING(v), (size_t)len);
        p += len;
    }
    return out;
}

static int append_record(PyObject *out, PyObject *counts, PyObject *topic, PyObject *key, PyObject *value,
                         Py_ssize_t frames) {
    PyObject *record = PyTuple_Pack(3, topic, key, value);
    if (record == NULL)
        return -1;
    int failed = PyList_Append(out, record);
    Py_DECREF(record);
    if (failed)
        return -1;
    PyObject *count = PyLong_FromSsize_t(frames);
    if (count == NULL)
        return -1;
    failed = PyList_Append(counts, count);
    Py_DECREF(count);
    return failed;
}

/* A closed group as a record: its frame alone when it has one, else a bundle. */
static int close_group(Group *g, PyObject *out, PyObject *counts) {
    Py_ssize_t n = PyList_GET_SIZE(g->values);
    if (n == 1)
        return append_record(out, counts, g->topic, g->key, PyList_GET_ITEM(g->values, 0), 1);
    PyObject *value = encode_bundle(g->values);
    if (value == NULL)
        return -1;
    int failed = append_record(out, counts, g->topic, g->key, value, n);
    Py_DECREF(value);
    return failed;
}

/* The partition of ``key`` in ``topic``: from the cache, else murmur2 (stored in the cache). New reference. */
static PyObject *partition_of_key(PyObject *parts, PyObject *key, PyObject *partitions, PyObject *topic,
                                  Py_ssize_t cache_max) {
    PyObject *partition = PyDict_GetItemWithError(parts, key);
    if (partition != NULL) {
        Py_INCREF(partition);
        return partition;
    }
    if (PyErr_Occurred())
        return NULL;
    if (PyDict_GET_SIZE(parts) >= cache_max)
        PyDict_Clear(parts);
    PyObject *count_obj = PyDict_GetItemWithError(partitions, topic);
    if (count_obj == NULL) {
        if (!PyErr_Occurred())
            PyErr_SetObject(PyExc_KeyError, topic);
        return NULL;
    }
    long count = PyLong_AsLong(count_obj);
    if (count == -1 && PyErr_Occurred())
        return NULL;
    if (count <= 0) {
        PyErr_Format(PyExc_ValueError, "partitions must be > 0, got %ld", count);
        return NULL;
    }
    uint32_t h = (uint32_t)murmur2((const uint8_t *)PyBytes_AS_STRING(key), PyBytes_GET_SIZE(key));
    partition = PyLong_FromLong((long)((h & 0x7fffffffu) % (uint32_t)count));
    if (partition == NULL)
        return NULL;
    if (PyDict_SetItem(parts, key, partition) < 0) {
        Py_DECREF(partition);
        return NULL;
    }
    return partition;
}

/* A topic's open bundles: open_at[partition] is the index of its open group, or -1. */
typedef struct {
    PyObject *topic; /* borrowed */
    Py_ssize_t size;
    Py_ssize_t *open_at;
} Slots;

/* The slots of ``topic`` (equal topics share them, as equal dict keys would), created on first use; NULL on error. */
static Slots *slots_of(Slots *topics, Py_ssize_t *ntopics, PyObject *topic) {
    for (Py_ssize_t i = 0; i < *ntopics; i++) /* a release holds one topic or a few */
        if (topics[i].topic == topic)
            return &topics[i];
    for (Py_ssize_t i = 0; i < *ntopics; i++) {
        int equal = PyObject_RichCompareBool(topics[i].topic, topic, Py_EQ);
        if (equal < 0)
            return NULL;
        if (equal)
            return &topics[i];
    }
    Slots *t = &topics[(*ntopics)++];
    t->topic = topic;
    t->size = 0;
    t->open_at = NULL;
    return t;
}

/* The open-group slot of ``partition`` in ``t``, grown as needed; NULL on error. */
static Py_ssize_t *slot_at(Slots *t, long partition) {
    if (partition < 0 || partition >= MAX_PARTITION) { /* only a damaged cache holds one: not a Kafka partition */
        PyErr_Format(PyExc_ValueError, "not a partition: %ld", partition);
        return NULL;
    }
    if (partition >= t->size) {
        Py_ssize_t size = partition + 1 > 2 * t->size ? partition + 1 : 2 * t->size;
        Py_ssize_t *grown = PyMem_Realloc(t->open_at, (size_t)size * sizeof(Py_ssize_t));
        if (grown == NULL) {
            PyErr_NoMemory();
            return NULL;
        }
        for (Py_ssize_t i = t->size; i < size; i++)
            grown[i] = -1;
        t->open_at = grown;
        t->size = size;
    }
    return &t->open_at[partition];
}

/* Is ``obj`` an int in [0, below)? */
static int plain_int_below(PyObject *obj, long below) {
    if (!PyLong_CheckExact(obj))
        return 0;
    int overflow = 0;
    long v = PyLong_AsLongAndOverflow(obj, &overflow);
    return overflow == 0 && v >= 0 && v < below;
}

/* Is ``obj`` an int of at most MAX_PARTITION, and no less than a long? (One <= 0 stays: the loop raises the
 * definition's ValueError for it.) */
static int plain_count(PyObject *obj) {
    if (!PyLong_CheckExact(obj))
        return 0;
    int overflow = 0;
    long v = PyLong_AsLongAndOverflow(obj, &overflow);
    return overflow == 0 && v <= MAX_PARTITION;
}

/* The batch and the caches hold plain types only (see the module comment): 1, else 0. */
static int plain_batch(PyObject *batch, PyObject *partition_of, PyObject *partitions) {
    Py_ssize_t n = PyList_GET_SIZE(batch);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PyList_GET_ITEM(batch, i);
        if (!PyTuple_CheckExact(item) || PyTuple_GET_SIZE(item) != 3)
            return 0;
        PyObject *topic = PyTuple_GET_ITEM(item, 0), *key = PyTuple_GET_ITEM(item, 1);
        PyObject *value = PyTuple_GET_ITEM(item, 2);
        if (!PyUnicode_CheckExact(topic) || (key != Py_None && !PyBytes_CheckExact(key)) ||
            !PyBytes_CheckExact(value) || PyBytes_GET_SIZE(value) >= MAX_FRAME_BYTES)
            return 0;
        PyObject *parts = PyDict_GetItemWithError(partition_of, topic); /* exact str keys: no Python code runs */
        if (parts == NULL) {
            if (PyErr_Occurred()) {
                PyErr_Clear();
                return 0;
            }
            continue;
        }
        if (!PyDict_CheckExact(parts))
            return 0;
        PyObject *count = PyDict_GetItemWithError(partitions, topic);
        if (count == NULL && PyErr_Occurred()) {
            PyErr_Clear();
            return 0;
        }
        if (count != NULL && !plain_count(count))
            return 0;
        if (key == Py_None || PyBytes_GET_SIZE(key) == 0)
            continue;
        PyObject *cached = PyDict_GetItemWithError(parts, key);
        if (cached == NULL && PyErr_Occurred()) {
            PyErr_Clear();
            return 0;
        }
        if (cached != NULL && !plain_int_below(cached, MAX_PARTITION))
            return 0;
    }
    return 1;
}

/* A size argument as a Py_ssize_t within +-2**62 (no overflow in the sums below): 1, else 0. */
static int plain_size(PyObject *obj, Py_ssize_t *out) {
    if (!PyLong_CheckExact(obj))
        return 0;
    int overflow = 0;
    long long v = PyLong_AsLongLongAndOverflow(obj, &overflow);
    if (overflow != 0 || v > (1LL << 62) || v < -(1LL << 62))
        return 0;
    *out = (Py_ssize_t)v;
    return 1;
}

static PyObject *py_bundle(PyObject *self, PyObject *args) {
    PyObject *batch, *partition_of, *partitions, *limit_obj, *overhead_obj, *cache_max_obj;
    Py_ssize_t limit, overhead, cache_max;
    if (!PyArg_ParseTuple(args, "OOOOOO:bundle", &batch, &partition_of, &partitions, &limit_obj, &overhead_obj,
                          &cache_max_obj))
        return NULL;
    if (!PyList_CheckExact(batch) || !PyDict_CheckExact(partition_of) || !PyDict_CheckExact(partitions) ||
        !plain_size(limit_obj, &limit) || !plain_size(overhead_obj, &overhead) || !plain_size(cache_max_obj, &cache_max) ||
        !plain_batch(batch, partition_of, partitions))
        Py_RETURN_NONE;
    Py_ssize_t n = PyList_GET_SIZE(batch);
    PyObject *out = PyList_New(0), *counts = PyList_New(0), *result = NULL;
    /* Groups in the order they opened: the open ones close at the end in that order, as the definition's dict
     * (a partition whose bundle closed mid-release and opened again moves behind the others, there and here). */
    Group *groups = PyMem_Calloc(n ? (size_t)n : 1, sizeof(Group));
    Slots *topics = PyMem_Calloc(n ? (size_t)n : 1, sizeof(Slots));
    Py_ssize_t ngroups = 0, ntopics = 0;
    if (out == NULL || counts == NULL || groups == NULL || topics == NULL) {
        if (groups == NULL || topics == NULL)
            PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PyList_GET_ITEM(batch, i);
        PyObject *topic = PyTuple_GET_ITEM(item, 0), *key = PyTuple_GET_ITEM(item, 1);
        PyObject *value = PyTuple_GET_ITEM(item, 2);
        PyObject *parts = PyDict_GetItemWithError(partition_of, topic);
        if (parts == NULL && PyErr_Occurred())
            goto done;
        if (parts == NULL || key == Py_None || PyBytes_GET_SIZE(key) == 0) {
            if (append_record(out, counts, topic, key, value, 1) < 0)
                goto done;
            continue;
        }
        if (!PyDict_Check(parts)) {
            PyErr_SetString(PyExc_TypeError, "a topic's partition cache must be a dict");
            goto done;
        }
        PyObject *partition_obj = partition_of_key(parts, key, partitions, topic, cache_max);
        if (partition_obj == NULL)
            goto done;
        long partition = PyLong_AsLong(partition_obj);
        Py_DECREF(partition_obj);
        if (partition == -1 && PyErr_Occurred())
            goto done;
        Slots *t = slots_of(topics, &ntopics, topic);
        Py_ssize_t *slot = t == NULL ? NULL : slot_at(t, partition);
        if (slot == NULL)
            goto done;
        Py_ssize_t size = PyBytes_GET_SIZE(value) + 5; /* with its msgpack bin header, at most */
        Group *g = *slot >= 0 ? &groups[*slot] : NULL;
        if (g != NULL && g->size + size > limit) {
            *slot = -1;
            if (close_group(g, out, counts) < 0)
                goto done;
            Py_CLEAR(g->values); /* closed: the final pass skips it */
            g = NULL;
        }
        if (g != NULL) {
            if (PyList_Append(g->values, value) < 0)
                goto done;
            g->size += size;
        } else if (size + 6 + PyBytes_GET_SIZE(key) + overhead > limit) { /* + the tag, array header, key, record */
            if (append_record(out, counts, topic, key, value, 1) < 0)
                goto done;
        } else {
            g = &groups[ngroups];
            g->values = PyList_New(1);
            if (g->values == NULL)
                goto done;
            Py_INCREF(value);
            PyList_SET_ITEM(g->values, 0, value);
            g->topic = topic;
            g->key = key;
            g->size = size + 6 + PyBytes_GET_SIZE(key) + overhead;
            *slot = ngroups++;
        }
    }
    for (Py_ssize_t i = 0; i < ngroups; i++) /* the open ones, in the order they opened */
        if (groups[i].values != NULL && close_group(&groups[i], out, counts) < 0)
            goto done;
    result = PyTuple_Pack(2, out, counts);
done:
    if (groups != NULL) {
        for (Py_ssize_t i = 0; i < ngroups; i++)
            Py_XDECREF(groups[i].values);
        PyMem_Free(groups);
    }
    if (topics != NULL) {
        for (Py_ssize_t i = 0; i < ntopics; i++)
            PyMem_Free(topics[i].open_at);
        PyMem_Free(topics);
    }
    Py_XDECREF(out);
    Py_XDECREF(counts);
    return result;
}

static PyMethodDef METHODS[] = {
    {"bundle", py_bundle, METH_VARARGS,
     "RawProducer._bundle's grouping: (records, frame counts), or None for a batch the Python path must take."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef MODULE = {PyModuleDef_HEAD_INIT, "_bundle", NULL, -1, METHODS, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__bundle(void) { return PyModule_Create(&MODULE); }
