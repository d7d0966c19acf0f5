/*
 * Kafka's murmur2 (``Utils.murmur2``) over a buffer's bytes, shared by the C accelerators that place keys on
 * partitions: mdpipe/_murmur2.c (mdpipe.partitioner) and ingest/_bundle.c (the raw producer's bundles). The
 * definition and its rules are mdpipe/partitioner.py's pure-Python function; tests check both against it.
 */
#ifndef MDPIPE_MURMUR2_H
#define MDPIPE_MURMUR2_H

#include <stdint.h>
#include <Python.h>

static inline int32_t murmur2(const uint8_t *data, Py_ssize_t length) {
    const uint32_t m = 0x5bd1e995u;
    uint32_t h = 0x9747b28cu ^ (uint32_t)length;
    Py_ssize_t tail = length & ~(Py_ssize_t)3;
    for (Py_ssize_t i = 0; i < tail; i += 4) {
        uint32_t k = (uint32_t)data[i] | ((uint32_t)data[i + 1] << 8) | ((uint32_t)data[i + 2] << 16) |
                     ((uint32_t)data[i + 3] << 24);
        k *= m;
        k ^= k >> 24;
        k *= m;
        h *= m;
        h ^= k;
    }
    switch (length & 3) {
    case 3:
        h ^= (uint32_t)data[tail + 2] << 16;
        /* fall through */
    case 2:
        h ^= (uint32_t)data[tail + 1] << 8;
        /* fall through */
    case 1:
        h ^= (uint32_t)data[tail];
        h *= m;
    }
    h ^= h >> 13;
    h *= m;
    h ^= h >> 15;
    return (int32_t)h;
}

#endif
