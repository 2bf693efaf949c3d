/*
 * srs.media._trackstate: the values a track's receive fast path reads and writes, in one small C
 * object, and that fast path for a whole batch of runs.
 *
 * At a thousand calls a worker hands its tracks about 16,000 runs a second. Kept in the track's
 * parts (sequence, placement, renderer, latch), each as a Python object of its own, the dozen
 * values a run touches lie in as many places of a heap of hundreds of megabytes: a run cost the
 * worker several microseconds of cache misses, in Python or in C alike. Here they lie together,
 * as plain C numbers, in a FastState the track and its parts share (they read and write these
 * fields as their own attributes); push_runs reads one of them per run.
 *
 * FastState fields: ssrc, max_seq, last_ts, unique, offset, rendered_until, audio_pt, run_pt
 * (integers); rate, drift_hi, best_drift, last_arrival (floats); source (the latched address or
 * None), pending (the renderer's waiting entries, a list), run_sizes (a dict); open_entry,
 * open_ext, open_pos, open_size (the entry a run may extend: add_entry). The pure-Python
 * class of the same fields, for where this module is not built, is srs/media/fast_state.py.
 *
 * push_runs(states, names, runs, buffer, offsets, lengths, arrivals) -> [index]:
 * StreamTrack.push_run for every run of a batch, on the runs' slots' states; the indices of the
 * runs not taken whole, which the caller gives to the Python path in order (with every later run
 * of their slot). The reference is push_run itself (srs/mediaplane/batch_delivery.py:
 * push_runs_py); a property test holds both to datagram-by-datagram delivery.
 *   states {slot: FastState}
 *   names  {source key: (host, port)}: the IPv4 sources already named
 *   runs   Receiver.runs' tuples (slot, start, end, clean, seq, ts, ssrc, b1, size, key)
 *   buffer, offsets, lengths, arrivals: the receiver's arrays; a taken run's payloads are copied
 *          from the buffer straight into its waiting entry, its arrivals read where they lie (no
 *          Python object is made for a run that extends the entry before it)
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "../batch_views.h"

typedef struct {
    PyObject_HEAD
    long long ssrc, max_seq, last_ts, unique, offset, rendered_until, audio_pt, run_pt;
    double rate, drift_hi, best_drift, last_arrival;
    PyObject *source, *pending, *run_sizes;
    /* the waiting entry the next in-order run may extend (see extend_open), and where that run
     * must begin for it to: its sequence number, position and packet size */
    PyObject *open_entry;
    long long open_ext, open_pos, open_size;
} FastState;

static PyObject *FastState_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    (void)args;
    (void)kwds;
    FastState *self = (FastState *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    self->ssrc = self->audio_pt = self->run_pt = -1;
    self->rate = 8000.0;
    self->best_drift = -INFINITY;
    self->source = Py_NewRef(Py_None);
    self->open_entry = Py_NewRef(Py_None);
    self->pending = PyList_New(0);
    self->run_sizes = PyDict_New();
    if (self->pending == NULL || self->run_sizes == NULL) {
        Py_DECREF(self);
        return NULL;
    }
    return (PyObject *)self;
}

static void FastState_dealloc(FastState *self) {
    Py_XDECREF(self->source);
    Py_XDECREF(self->pending);
    Py_XDECREF(self->run_sizes);
    Py_XDECREF(self->open_entry);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

#define FIELD(name, kind) {#name, kind, offsetof(FastState, name), 0, NULL}
static PyMemberDef FastState_members[] = {
    FIELD(ssrc, T_LONGLONG), FIELD(max_seq, T_LONGLONG), FIELD(last_ts, T_LONGLONG), FIELD(unique, T_LONGLONG),
    FIELD(offset, T_LONGLONG), FIELD(rendered_until, T_LONGLONG), FIELD(audio_pt, T_LONGLONG),
    FIELD(run_pt, T_LONGLONG), FIELD(rate, T_DOUBLE), FIELD(drift_hi, T_DOUBLE), FIELD(best_drift, T_DOUBLE),
    FIELD(last_arrival, T_DOUBLE), FIELD(source, T_OBJECT), FIELD(pending, T_OBJECT_EX),
    FIELD(run_sizes, T_OBJECT_EX), FIELD(open_entry, T_OBJECT), FIELD(open_ext, T_LONGLONG),
    FIELD(open_pos, T_LONGLONG), FIELD(open_size, T_LONGLONG), {NULL, 0, 0, 0, NULL},
};

static PyTypeObject FastStateType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "srs.media._trackstate.FastState",
    .tp_basicsize = sizeof(FastState),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "The values of one track's receive fast path (see srs.media.fast_state).",
    .tp_new = FastState_new,
    .tp_dealloc = (destructor)FastState_dealloc,
    .tp_members = FastState_members,
};

/* The payloads of datagrams a..b-1 (each ``size`` bytes after a 12-byte header) end to end at out. */
static void copy_payloads(const Batch *batch, Py_ssize_t a, Py_ssize_t b, long long size, char *out) {
    for (Py_ssize_t i = a; i < b; i++, out += size)
        memcpy(out, batch->base + batch->offsets[i] + 12, (size_t)size);
}

/* Extend the open entry (the last waiting one, made by a run) with the run (ext, pos, payload) of
 * packets of ``size`` bytes when the run begins exactly where it ends, in sequence and position:
 * a call's in-order runs then wait as one entry of equal packets end to end (run_sizes says so),
 * which renders to the same samples as the runs apart, and a render touches one entry instead of
 * one a receive round (cold objects, read seconds after they were made). The first extension
 * turns the entry's bytes into a bytearray (a new entry in the same place); later ones append.
 * 1: extended; 0: not the open entry's continuation; -1: an error. */
static int extend_open(FastState *st, long long ext, long long pos, PyObject *pt_obj, const Batch *batch,
                       Py_ssize_t a, Py_ssize_t b, long long size) {
    PyObject *open = st->open_entry, *pending = st->pending;
    Py_ssize_t n = PyList_GET_SIZE(pending);
    if (open == NULL || n == 0 || PyList_GET_ITEM(pending, n - 1) != open || ext != st->open_ext ||
        pos != st->open_pos || size != st->open_size || !PyTuple_CheckExact(open) || PyTuple_GET_SIZE(open) != 4)
        return 0;
    int same_pt = PyObject_RichCompareBool(PyTuple_GET_ITEM(open, 2), pt_obj, Py_EQ);
    if (same_pt <= 0)
        return same_pt;
    PyObject *buf = PyTuple_GET_ITEM(open, 3);
    Py_ssize_t added = (Py_ssize_t)((b - a) * size);
    if (PyByteArray_CheckExact(buf)) {
        Py_ssize_t had = PyByteArray_GET_SIZE(buf), need = had + added;
        /* grown by doubling: resizing up more than an eighth allocates exactly that, and resizing
         * down to at least half keeps the allocation (bytearray's own growth, an eighth at a time,
         * moved the whole entry every few runs) */
        if (need >= ((PyByteArrayObject *)buf)->ob_alloc && PyByteArray_Resize(buf, 2 * need) < 0)
            return -1;
        if (PyByteArray_Resize(buf, need) < 0)
            return -1;
        copy_payloads(batch, a, b, size, PyByteArray_AS_STRING(buf) + had);
        return 1;
    }
    if (!PyBytes_CheckExact(buf))
        return 0;
    Py_ssize_t had = PyBytes_GET_SIZE(buf);
    PyObject *grown = PyByteArray_FromStringAndSize(NULL, had + added);
    PyObject *entry = grown == NULL ? NULL : PyTuple_New(4);
    PyObject *size_obj = entry == NULL ? NULL : PyLong_FromLongLong(size);
    if (size_obj == NULL) {
        Py_XDECREF(grown);
        Py_XDECREF(entry);
        return -1;
    }
    memcpy(PyByteArray_AS_STRING(grown), PyBytes_AS_STRING(buf), (size_t)had);
    copy_payloads(batch, a, b, size, PyByteArray_AS_STRING(grown) + had);
    for (int i = 0; i < 3; i++)
        PyTuple_SET_ITEM(entry, i, Py_NewRef(PyTuple_GET_ITEM(open, i)));
    PyTuple_SET_ITEM(entry, 3, grown);
    /* the entry now holds packets of ``size`` end to end, whatever it held before */
    if (PyObject_SetItem(st->run_sizes, PyTuple_GET_ITEM(entry, 0), size_obj) < 0) {
        Py_DECREF(size_obj);
        Py_DECREF(entry);
        return -1;
    }
    Py_DECREF(size_obj);
    Py_SETREF(st->open_entry, Py_NewRef(entry));
    return PyList_SetItem(pending, n - 1, entry) < 0 ? -1 : 1; /* the list takes the reference */
}

/* The run (ext, pos, pt, payload) of ``count`` packets of ``size`` bytes joins the waiting entries:
 * extending the open one, or as a new open entry. 0, or -1 on an error. */
static int add_entry(FastState *st, long long ext, long long pos, PyObject *pt_obj, const Batch *batch,
                     Py_ssize_t a, Py_ssize_t b, long long size) {
    long long count = b - a;
    int extended = extend_open(st, ext, pos, pt_obj, batch, a, b, size);
    if (extended < 0)
        return -1;
    if (!extended) {
        /* the entry (ext, pos, pt, payload), built item by item: a format string parsed per run
         * costs as much as the rest of the run */
        PyObject *ext_obj = PyLong_FromLongLong(ext), *entry = PyTuple_New(4);
        PyObject *payload = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)(count * size));
        if (ext_obj == NULL || entry == NULL || payload == NULL) {
            Py_XDECREF(ext_obj);
            Py_XDECREF(entry);
            Py_XDECREF(payload);
            return -1;
        }
        copy_payloads(batch, a, b, size, PyBytes_AS_STRING(payload));
        PyTuple_SET_ITEM(entry, 0, Py_NewRef(ext_obj));
        PyTuple_SET_ITEM(entry, 1, PyLong_FromLongLong(pos));
        PyTuple_SET_ITEM(entry, 2, Py_NewRef(pt_obj));
        PyTuple_SET_ITEM(entry, 3, payload);
        int appended = PyTuple_GET_ITEM(entry, 1) == NULL ? -1 : PyList_Append(st->pending, entry);
        if (appended == 0)
            Py_SETREF(st->open_entry, Py_NewRef(entry));
        Py_DECREF(entry);
        if (appended == 0 && count > 1) {
            PyObject *value = PyLong_FromLongLong(size);
            appended = value == NULL ? -1 : PyObject_SetItem(st->run_sizes, ext_obj, value);
            Py_XDECREF(value);
        }
        Py_DECREF(ext_obj);
        if (appended < 0)
            return -1;
    }
    st->open_ext = ext + count;
    st->open_pos = pos + count * size;
    st->open_size = size;
    return 0;
}

/* StreamTrack.push_run for one run on its state. 1: taken whole; 0: declined, nothing changed;
 * -1: an error. */
static int push_one(FastState *st, PyObject *run, PyObject *source, const BatchViews *held) {
    const Batch *batch = &held->batch;
    PyObject *pt_obj = PyTuple_GET_ITEM(run, 7);
    long long seq = PyLong_AsLongLong(PyTuple_GET_ITEM(run, 4)), ts = PyLong_AsLongLong(PyTuple_GET_ITEM(run, 5));
    long long ssrc = PyLong_AsLongLong(PyTuple_GET_ITEM(run, 6)), pt = PyLong_AsLongLong(pt_obj);
    Py_ssize_t a = PyLong_AsSsize_t(PyTuple_GET_ITEM(run, 1)), b = PyLong_AsSsize_t(PyTuple_GET_ITEM(run, 2));
    long long size = PyLong_AsLongLong(PyTuple_GET_ITEM(run, 8));
    if (PyErr_Occurred())
        return -1;
    if (st->source == NULL || st->pending == NULL || !PyList_Check(st->pending) || st->run_sizes == NULL)
        return 0; /* deleted by someone: the Python path says what is wrong */
    if (a < 0 || b <= a || b > held->rows || size < 1)
        return 0;
    /* pt is the second header byte: a marker bit or another type never equals run_pt, which is
     * the current audio type when it is one whose runs are taken whole, else -1 */
    if (ssrc != st->ssrc || pt != st->run_pt || ((seq - st->max_seq) & 0xFFFF) != 1)
        return 0;
    for (Py_ssize_t i = a; i < b; i++) /* what the cut promised, checked: each inside the buffer */
        if (batch->lengths[i] != size + 12 || batch->offsets[i] < 0 ||
            batch->offsets[i] > batch->base_len - 12 - size)
            return 0;
    if (source != st->source) {
        int same = PyObject_RichCompareBool(source, st->source, Py_EQ);
        if (same <= 0)
            return same;
    }
    long long count = b - a;
    long long t = (long long)(uint32_t)((uint64_t)ts - (uint64_t)st->last_ts);
    if (t >= 0x80000000LL)
        t -= 0x100000000LL;
    long long ext_ts = st->last_ts + t;
    long long pos = ext_ts + st->offset;
    if (pos < st->rendered_until)
        return 0;
    double best = -INFINITY;
    long long at = pos;
    for (Py_ssize_t i = a; i < b; i++, at += size) {
        double drift = (double)at - (double)batch->arrivals[i] * 1e-9 * st->rate;
        if (drift > best)
            best = drift;
    }
    if (best > st->drift_hi)
        return 0; /* one of them re-anchors: the per-packet path does that */
    long long ext = st->max_seq + 1;
    if (add_entry(st, ext, pos, pt_obj, batch, a, b, size) < 0)
        return -1;
    if (best > st->best_drift)
        st->best_drift = best;
    st->last_arrival = (double)batch->arrivals[b - 1] * 1e-9;
    st->max_seq = ext + count - 1;
    st->last_ts = ext_ts + (count - 1) * size;
    st->unique += count;
    return 1;
}

static PyObject *push_runs(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    if (nargs != 7 || !PyDict_Check(args[0]) || !PyDict_Check(args[1]) || !PyList_Check(args[2])) {
        PyErr_SetString(PyExc_TypeError,
                        "push_runs(states: dict, names: dict, runs: list, buffer, offsets, lengths, arrivals)");
        return NULL;
    }
    PyObject *states = args[0], *names = args[1], *runs = args[2];
    BatchViews views;
    if (take_batch(args + 3, &views) < 0)
        return NULL;
    PyObject *rest = PyList_New(0), *held = PySet_New(NULL);
    if (rest == NULL || held == NULL)
        goto failed;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(runs); i++) {
        PyObject *run = PyList_GET_ITEM(runs, i);
        int taken = 0;
        if (!PyTuple_CheckExact(run) || PyTuple_GET_SIZE(run) != 10) {
            PyErr_SetString(PyExc_TypeError, "push_runs: a run is a 10-tuple");
            goto failed;
        }
        PyObject *slot = PyTuple_GET_ITEM(run, 0);
        /* a slot with a run left to the Python path keeps its later runs behind it, in order */
        int waiting = PySet_GET_SIZE(held) ? PySet_Contains(held, slot) : 0;
        if (waiting < 0)
            goto failed;
        if (!waiting && PyTuple_GET_ITEM(run, 3) == Py_True) { /* clean */
            PyObject *state = PyDict_GetItemWithError(states, slot);
            PyObject *source = state == NULL ? NULL : PyDict_GetItemWithError(names, PyTuple_GET_ITEM(run, 9));
            if (source != NULL) {
                if (Py_TYPE(state) != &FastStateType) {
                    PyErr_SetString(PyExc_TypeError, "push_runs: states maps slots to FastState");
                    goto failed;
                }
                if ((taken = push_one((FastState *)state, run, source, &views)) < 0)
                    goto failed;
            }
            if (PyErr_Occurred())
                goto failed;
        }
        if (!taken) {
            PyObject *index = PyLong_FromSsize_t(i);
            if (index == NULL || PyList_Append(rest, index) < 0 || PySet_Add(held, slot) < 0) {
                Py_XDECREF(index);
                goto failed;
            }
            Py_DECREF(index);
        }
    }
    Py_DECREF(held);
    release_batch(&views);
    return rest;
failed:
    Py_XDECREF(rest);
    Py_XDECREF(held);
    release_batch(&views);
    return NULL;
}

static PyMethodDef module_methods[] = {
    {"push_runs", (PyCFunction)(void (*)(void))push_runs, METH_FASTCALL,
     "push_runs(states, names, runs, buffer, offsets, lengths, arrivals) -> [index]: the runs"
     " StreamTrack.push_run takes whole, taken; the indices of the others"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_trackstate", "A track's receive fast path state, and that path for a batch.", -1,
    module_methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__trackstate(void) {
    if (PyType_Ready(&FastStateType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    Py_INCREF(&FastStateType);
    if (PyModule_AddObject(m, "FastState", (PyObject *)&FastStateType) < 0) {
        Py_DECREF(&FastStateType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
