/*
 * A received batch as the native modules take it from Python: the receive buffer and the
 * per-datagram arrays (buffer, offsets, lengths, arrivals: srs.mediaplane.batch_receiver's own,
 * passed in that order). Datagram i is lengths[i] bytes at buffer[offsets[i]:], received at
 * arrivals[i] ns. Shared by srs/mediaplane/_batchrecv.c (the journal's writers) and
 * srs/media/_trackstate.c (the tracks' fast path), which include it by relative path; include
 * Python.h and stdint.h first.
 */
#ifndef SRS_BATCH_VIEWS_H
#define SRS_BATCH_VIEWS_H

typedef struct {
    const unsigned char *base;
    Py_ssize_t base_len;
    const int64_t *offsets;
    const int32_t *lengths;
    const int64_t *arrivals;
} Batch;

/* The four arrays held for one call; rows is how many datagrams all three per-datagram arrays
 * cover. take_batch holds all four or none. */
typedef struct {
    Py_buffer views[4];
    Batch batch;
    Py_ssize_t rows;
} BatchViews;

static int take_batch(PyObject *const *arrays, BatchViews *held) {
    for (int i = 0; i < 4; i++)
        if (PyObject_GetBuffer(arrays[i], &held->views[i], PyBUF_SIMPLE) < 0) {
            while (i--)
                PyBuffer_Release(&held->views[i]);
            return -1;
        }
    Py_buffer *v = held->views;
    held->batch = (Batch){(const unsigned char *)v[0].buf, v[0].len, (const int64_t *)v[1].buf,
                          (const int32_t *)v[2].buf, (const int64_t *)v[3].buf};
    held->rows = v[1].len / 8;
    if (v[2].len / 4 < held->rows)
        held->rows = v[2].len / 4;
    if (v[3].len / 8 < held->rows)
        held->rows = v[3].len / 8;
    return 0;
}

static void release_batch(BatchViews *held) {
    for (int i = 0; i < 4; i++)
        PyBuffer_Release(&held->views[i]);
}

#endif
