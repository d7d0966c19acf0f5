/*
 * schemas._rawframe: a live frame's RawFrame msgpack in one call, for the gatherers' per-message hot path.
 *
 * An accelerator, not a second definition: schemas/raw_encode.py's ``encode_live_py`` holds the rule (the bytes
 * msgspec writes for the RawFrame array: a head the session encodes once, seven fields, a tail of the defaults) and
 * tests/schemas/test_raw_encode.py checks this one against it and against ``encode_raw`` on random values at every
 * msgpack size boundary. A gatherer encodes every frame it receives (tens of thousands a second).
 *
 * encode_live(head, sid, seq, recv_ns, kind, market, event_key, payload, tail) -> bytes | None
 *   head, tail: bytes (written as they are); sid, seq: int or None; recv_ns: int; kind, market, event_key: str;
 *   payload: bytes. Returns None for any other type, an int outside 64 bits or a str or payload of 4 GiB: the
 *   caller then takes the Python path, which decides (errors included).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define MAX_LENGTH (1LL << 32) /* a str or bin this path writes is shorter (msgpack's 32-bit lengths) */

typedef struct {
    int kind; /* 0 nil, 1 signed, 2 unsigned beyond int64 */
    long long value;
    unsigned long long uvalue;
} Int;

/* -1: not an int this path writes (the Python path decides). */
static int read_int(PyObject *obj, int nil_ok, Int *out) {
    if (obj == Py_None && nil_ok) {
        out->kind = 0;
        return 0;
    }
    if (!PyLong_CheckExact(obj))
        return -1;
    int overflow = 0;
    out->value = PyLong_AsLongLongAndOverflow(obj, &overflow);
    if (overflow == 0) {
        if (out->value == -1 && PyErr_Occurred())
            return -1;
        out->kind = 1;
        return 0;
    }
    if (overflow < 0)
        return -1;
    out->uvalue = PyLong_AsUnsignedLongLong(obj);
    if (out->uvalue == (unsigned long long)-1 && PyErr_Occurred()) {
        PyErr_Clear();
        return -1;
    }
    out->kind = 2;
    return 0;
}

static Py_ssize_t int_size(const Int *i) {
    if (i->kind == 0)
        return 1;
    if (i->kind == 2)
        return 9;
    long long v = i->value;
    if (v >= 0)
        return v < 128 ? 1 : v <= 0xff ? 2 : v <= 0xffff ? 3 : v <= 0xffffffffLL ? 5 : 9;
    return v >= -32 ? 1 : v >= -128 ? 2 : v >= -32768 ? 3 : v >= -2147483648LL ? 5 : 9;
}

static uint8_t *put_be(uint8_t *p, unsigned long long v, int bytes) {
    for (int shift = (bytes - 1) * 8; shift >= 0; shift -= 8)
        *p++ = (uint8_t)(v >> shift);
    return p;
}

static uint8_t *put_int(uint8_t *p, const Int *i) {
    if (i->kind == 0) {
        *p++ = 0xc0;
        return p;
    }
    if (i->kind == 2) {
        *p++ = 0xcf;
        return put_be(p, i->uvalue, 8);
    }
    long long v = i->value;
    if (v >= 0) {
        if (v < 128) {
            *p++ = (uint8_t)v;
        } else if (v <= 0xff) {
            *p++ = 0xcc;
            p = put_be(p, (unsigned long long)v, 1);
        } else if (v <= 0xffff) {
            *p++ = 0xcd;
            p = put_be(p, (unsigned long long)v, 2);
        } else if (v <= 0xffffffffLL) {
            *p++ = 0xce;
            p = put_be(p, (unsigned long long)v, 4);
        } else {
            *p++ = 0xcf;
            p = put_be(p, (unsigned long long)v, 8);
        }
        return p;
    }
    if (v >= -32) {
        *p++ = (uint8_t)(int8_t)v;
    } else if (v >= -128) {
        *p++ = 0xd0;
        p = put_be(p, (unsigned long long)v, 1);
    } else if (v >= -32768) {
        *p++ = 0xd1;
        p = put_be(p, (unsigned long long)v, 2);
    } else if (v >= -2147483648LL) {
        *p++ = 0xd2;
        p = put_be(p, (unsigned long long)v, 4);
    } else {
        *p++ = 0xd3;
        p = put_be(p, (unsigned long long)v, 8);
    }
    return p;
}

static Py_ssize_t str_header(Py_ssize_t len) { return len < 32 ? 1 : len < 256 ? 2 : len < 65536 ? 3 : 5; }

/* ``len`` bytes of ``s`` after a header of the smallest of three sizes: the marker ``codes[0]`` and a 1-byte
 * length below 256, ``codes[1]`` and 2 bytes below 65,536, ``codes[2]`` and 4 bytes (str8/16/32 or bin8/16/32). */
static uint8_t *put_sized(uint8_t *p, const char *s, Py_ssize_t len, const uint8_t codes[3]) {
    int width = len < 256 ? 1 : len < 65536 ? 2 : 4;
    *p++ = codes[width == 1 ? 0 : width == 2 ? 1 : 2];
    p = put_be(p, (unsigned long long)len, width);
    memcpy(p, s, (size_t)len);
    return p + len;
}

static const uint8_t STR_CODES[3] = {0xd9, 0xda, 0xdb}, BIN_CODES[3] = {0xc4, 0xc5, 0xc6};

static uint8_t *put_str(uint8_t *p, const char *s, Py_ssize_t len) {
    if (len >= 32)
        return put_sized(p, s, len, STR_CODES);
    *p++ = (uint8_t)(0xa0 | len); /* fixstr */
    memcpy(p, s, (size_t)len);
    return p + len;
}

static Py_ssize_t bin_header(Py_ssize_t len) { return len < 256 ? 2 : len < 65536 ? 3 : 5; }

static uint8_t *put_bin(uint8_t *p, const char *s, Py_ssize_t len) { return put_sized(p, s, len, BIN_CODES); }

static PyObject *py_encode_live(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 9) {
        PyErr_Format(PyExc_TypeError, "encode_live takes 9 arguments, not %zd", nargs);
        return NULL;
    }
    PyObject *head = args[0], *payload = args[7], *tail = args[8];
    if (!PyBytes_CheckExact(head) || !PyBytes_CheckExact(payload) || !PyBytes_CheckExact(tail))
        Py_RETURN_NONE;
    Int ints[3];
    if (read_int(args[1], 1, &ints[0]) < 0 || read_int(args[2], 1, &ints[1]) < 0 || read_int(args[3], 0, &ints[2]) < 0)
        Py_RETURN_NONE;
    const char *text[3];
    Py_ssize_t text_len[3];
    for (int i = 0; i < 3; i++) {
        PyObject *s = args[4 + i];
        if (!PyUnicode_CheckExact(s))
            Py_RETURN_NONE;
        text[i] = PyUnicode_AsUTF8AndSize(s, &text_len[i]);
        if (text[i] == NULL) { /* e.g. a lone surrogate: msgspec's error, on the Python path */
            PyErr_Clear();
            Py_RETURN_NONE;
        }
        if ((long long)text_len[i] >= MAX_LENGTH)
            Py_RETURN_NONE;
    }
    if ((long long)PyBytes_GET_SIZE(payload) >= MAX_LENGTH)
        Py_RETURN_NONE;
    Py_ssize_t size = PyBytes_GET_SIZE(head) + PyBytes_GET_SIZE(tail);
    for (int i = 0; i < 3; i++)
        size += int_size(&ints[i]) + str_header(text_len[i]) + text_len[i];
    size += bin_header(PyBytes_GET_SIZE(payload)) + PyBytes_GET_SIZE(payload);
    PyObject *out = PyBytes_FromStringAndSize(NULL, size);
    if (out == NULL)
        return NULL;
    uint8_t *p = (uint8_t *)PyBytes_AS_STRING(out);
    memcpy(p, PyBytes_AS_STRING(head), (size_t)PyBytes_GET_SIZE(head));
    p += PyBytes_GET_SIZE(head);
    for (int i = 0; i < 3; i++)
        p = put_int(p, &ints[i]);
    for (int i = 0; i < 3; i++)
        p = put_str(p, text[i], text_len[i]);
    p = put_bin(p, PyBytes_AS_STRING(payload), PyBytes_GET_SIZE(payload));
    memcpy(p, PyBytes_AS_STRING(tail), (size_t)PyBytes_GET_SIZE(tail));
    return out;
}

static PyMethodDef METHODS[] = {
    {"encode_live", (PyCFunction)(void (*)(void))py_encode_live, METH_FASTCALL,
     "A live frame's RawFrame msgpack: head, sid, seq, recv_ns, kind, market, event_key, payload, tail (or None)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef MODULE = {PyModuleDef_HEAD_INIT, "_rawframe", NULL, -1, METHODS, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__rawframe(void) { return PyModule_Create(&MODULE); }
