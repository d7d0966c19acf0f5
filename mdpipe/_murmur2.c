/*
 * mdpipe._murmur2: Kafka's murmur2 (``Utils.murmur2``) in C, for mdpipe.partitioner.
 *
 * An accelerator, not a second definition: mdpipe/partitioner.py holds the pure-Python function and the rules
 * (the seed, the mixing, the signed 32-bit result Java returns); tests/mdpipe/test_partitioner.py checks this one
 * against it on random input and against the Java client's known values. A gatherer computes the partition of
 * every market it sees for the first time (ingest.producer's bundles), 20,000 or more at start-up.
 *
 * murmur2(data: bytes-like) -> int: the signed 32-bit hash of the buffer's bytes (a contiguous buffer: bytes,
 *   bytearray, a memoryview of bytes), equal to the Java client's.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

#include "murmur2.h"

static PyObject *py_murmur2(PyObject *self, PyObject *arg) {
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    int32_t h = murmur2((const uint8_t *)view.buf, view.len);
    PyBuffer_Release(&view);
    return PyLong_FromLong((long)h);
}

static PyMethodDef METHODS[] = {
    {"murmur2", py_murmur2, METH_O, "Kafka's Utils.murmur2 of bytes: a signed 32-bit int."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef MODULE = {PyModuleDef_HEAD_INIT, "_murmur2", NULL, -1, METHODS, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__murmur2(void) { return PyModule_Create(&MODULE); }
