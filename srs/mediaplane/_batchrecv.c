/*
 * srs.mediaplane._batchrecv: the media worker's receive loop in C, so its Python cost is per batch.
 *
 * One Receiver owns an epoll set. ``wait(timeout_ms)`` waits for readiness, then drains every
 * ready datagram socket with recvmmsg(2) into caller-provided buffers (numpy arrays, given once to
 * the constructor through the buffer protocol), each datagram with
 *   - the slot number its socket was added with,
 *   - its kernel arrival (SO_TIMESTAMPNS, CLOCK_REALTIME) mapped onto CLOCK_MONOTONIC, in ns,
 *   - its offset in the byte buffer (a fixed stride per datagram) and its length,
 *   - a 64-bit key of its source address (IPv4: family, address and port, exact; IPv6: a hash
 *     of address, port and scope; ``source(i)`` gives the address tuple itself).
 * Watched descriptors (the command socket) are not read, only reported. One epoll_wait serves a
 * whole round: when the batch fills before every ready socket is drained, the next ``wait`` goes
 * on with the sockets left (``pending()``) instead of polling again, so each socket is drained
 * once per round, whole, and its datagrams stay together.
 *
 * The arrival mapping follows srs.wire_clock: offset = realtime - monotonic, taken after each
 * recvmmsg(2); a stamp later than that read, or older than 60 s, is replaced by the read time.
 * The pure-Python reference with the same interface is srs/mediaplane/batch_receiver.py.
 *
 * ``runs(count)`` cuts the batch into runs of in-order RTP (the per-run tuples the worker hands
 * to its tracks), while the rows are still in the cache.
 *
 * The module also writes a batch's datagrams into the recordings' crash journals (append_records
 * for one run, journal_runs for every journaled run of a batch, below): header and bytes of every
 * datagram straight from the receive buffer, so journaling costs a copy and a CRC per datagram
 * instead of Python calls.
 */
#define PY_SSIZE_T_CLEAN
#define _GNU_SOURCE
#include <Python.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "../batch_views.h"

#define WATCHED 0xFFFFFFFFu
#define REMOVED 0xFFFFFFFEu
#define MAX_QUEUE_AGE_NS (60LL * 1000000000LL)
#define CMSG_BYTES 64
#define PER_CALL 64

typedef struct {
    PyObject_HEAD
    int epfd;
    Py_ssize_t capacity;
    Py_ssize_t stride;
    Py_ssize_t per_socket;
    int max_events;
    Py_buffer buffer, slots, arrivals, offsets, lengths, sources;
    int have_buffers;
    struct epoll_event *events;
    int n_events;   /* events of the last epoll_wait ... */
    int next_event; /* ... and the first not yet drained: a round drains each once */
    struct sockaddr_storage *addrs;
    struct mmsghdr msgs[PER_CALL];
    struct iovec iov[PER_CALL];
    char cmsg[PER_CALL][CMSG_BYTES];
} Receiver;

static int64_t now_ns(clockid_t clock) {
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* CLOCK_REALTIME - CLOCK_MONOTONIC now, in ns, as srs.mediaplane.wire_clock.realtime_offset takes
 * it: the realtime read bracketed by two monotonic reads, the tightest of up to three tries, so a
 * preemption between two reads (a loaded machine) cannot shift a whole batch by its length. */
static int64_t realtime_offset(void) {
    int64_t best = 0, best_width = INT64_MAX;
    for (int i = 0; i < 3; i++) {
        int64_t before = now_ns(CLOCK_MONOTONIC);
        int64_t real = now_ns(CLOCK_REALTIME);
        int64_t after = now_ns(CLOCK_MONOTONIC);
        if (after - before < best_width) {
            best_width = after - before;
            best = real - before - (after - before) / 2;
        }
        if (best_width <= 20000)
            break;
    }
    return best;
}

static uint64_t source_key(const struct sockaddr_storage *ss) {
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)ss;
        return (4ULL << 56) | ((uint64_t)ntohl(in->sin_addr.s_addr) << 16) | ntohs(in->sin_port);
    }
    if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)ss;
        uint64_t h = 1469598103934665603ULL; /* FNV-1a */
        const unsigned char *p = in6->sin6_addr.s6_addr;
        for (int i = 0; i < 16; i++) {
            h ^= p[i];
            h *= 1099511628211ULL;
        }
        h ^= in6->sin6_port;
        h *= 1099511628211ULL;
        h ^= in6->sin6_scope_id;
        h *= 1099511628211ULL;
        return (6ULL << 56) | (h & 0x00FFFFFFFFFFFFFFULL);
    }
    return 0;
}

static int take_buffer(PyObject *obj, Py_buffer *view, Py_ssize_t itemsize, Py_ssize_t count, const char *name) {
    if (PyObject_GetBuffer(obj, view, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS) < 0)
        return -1;
    if (view->len < itemsize * count) {
        PyErr_Format(PyExc_ValueError, "%s holds %zd bytes, %zd needed", name, view->len, itemsize * count);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

static void release_buffers(Receiver *self) {
    if (!self->have_buffers)
        return;
    PyBuffer_Release(&self->buffer);
    PyBuffer_Release(&self->slots);
    PyBuffer_Release(&self->arrivals);
    PyBuffer_Release(&self->offsets);
    PyBuffer_Release(&self->lengths);
    PyBuffer_Release(&self->sources);
    self->have_buffers = 0;
}

static void Receiver_dealloc(Receiver *self) {
    if (self->epfd >= 0)
        close(self->epfd);
    release_buffers(self);
    PyMem_Free(self->events);
    PyMem_Free(self->addrs);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int Receiver_init(Receiver *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"buffer", "slots", "arrivals", "offsets", "lengths", "sources",
                             "stride", "per_socket", "max_events", NULL};
    PyObject *buffer, *slots, *arrivals, *offsets, *lengths, *sources;
    Py_ssize_t stride, per_socket = 256;
    int max_events = 4096;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOOOOOn|ni", kwlist, &buffer, &slots, &arrivals, &offsets,
                                     &lengths, &sources, &stride, &per_socket, &max_events))
        return -1;
    if (stride <= 0 || per_socket <= 0 || max_events <= 0) {
        PyErr_SetString(PyExc_ValueError, "stride, per_socket and max_events must be positive");
        return -1;
    }
    release_buffers(self);
    Py_buffer view;
    if (PyObject_GetBuffer(slots, &view, PyBUF_SIMPLE) < 0)
        return -1;
    Py_ssize_t capacity = view.len / 4;
    PyBuffer_Release(&view);
    if (capacity <= 0) {
        PyErr_SetString(PyExc_ValueError, "slots is empty");
        return -1;
    }
    if (take_buffer(buffer, &self->buffer, stride, capacity, "buffer") < 0)
        return -1;
    if (take_buffer(slots, &self->slots, 4, capacity, "slots") < 0)
        goto fail1;
    if (take_buffer(arrivals, &self->arrivals, 8, capacity, "arrivals") < 0)
        goto fail2;
    if (take_buffer(offsets, &self->offsets, 8, capacity, "offsets") < 0)
        goto fail3;
    if (take_buffer(lengths, &self->lengths, 4, capacity, "lengths") < 0)
        goto fail4;
    if (take_buffer(sources, &self->sources, 8, capacity, "sources") < 0)
        goto fail5;
    self->have_buffers = 1;
    self->capacity = capacity;
    self->stride = stride;
    self->per_socket = per_socket;
    self->max_events = max_events;
    PyMem_Free(self->events);
    PyMem_Free(self->addrs);
    self->events = PyMem_Calloc((size_t)max_events, sizeof(struct epoll_event));
    self->addrs = PyMem_Calloc((size_t)capacity, sizeof(struct sockaddr_storage));
    if (self->events == NULL || self->addrs == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    if (self->epfd < 0) {
        self->epfd = epoll_create1(EPOLL_CLOEXEC);
        if (self->epfd < 0) {
            PyErr_SetFromErrno(PyExc_OSError);
            return -1;
        }
    }
    return 0;
fail5:
    PyBuffer_Release(&self->lengths);
fail4:
    PyBuffer_Release(&self->offsets);
fail3:
    PyBuffer_Release(&self->arrivals);
fail2:
    PyBuffer_Release(&self->slots);
fail1:
    PyBuffer_Release(&self->buffer);
    return -1;
}

static PyObject *Receiver_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    Receiver *self = (Receiver *)type->tp_alloc(type, 0);
    if (self != NULL)
        self->epfd = -1;
    return (PyObject *)self;
}

static PyObject *ctl(Receiver *self, int op, int fd, uint32_t slot) {
    struct epoll_event ev;
    memset(&ev, 0, sizeof(ev));
    ev.events = EPOLLIN;
    ev.data.u64 = ((uint64_t)(uint32_t)fd << 32) | slot;
    if (epoll_ctl(self->epfd, op, fd, &ev) < 0)
        return PyErr_SetFromErrno(PyExc_OSError);
    Py_RETURN_NONE;
}

static PyObject *Receiver_add(Receiver *self, PyObject *args) {
    int fd;
    long slot;
    if (!PyArg_ParseTuple(args, "il", &fd, &slot))
        return NULL;
    if (slot < 0 || slot >= (long)WATCHED) {
        PyErr_SetString(PyExc_ValueError, "slot out of range");
        return NULL;
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_TIMESTAMPNS, &one, sizeof(one)); /* a socket not set up here too */
    return ctl(self, EPOLL_CTL_ADD, fd, (uint32_t)slot);
}

static PyObject *Receiver_watch(Receiver *self, PyObject *args) {
    int fd;
    if (!PyArg_ParseTuple(args, "i", &fd))
        return NULL;
    return ctl(self, EPOLL_CTL_ADD, fd, WATCHED);
}

static PyObject *Receiver_remove(Receiver *self, PyObject *args) {
    int fd;
    if (!PyArg_ParseTuple(args, "i", &fd))
        return NULL;
    /* a pending event of this descriptor must not be drained later (its number may be reused) */
    for (int i = self->next_event; i < self->n_events; i++)
        if ((int)(self->events[i].data.u64 >> 32) == fd)
            self->events[i].data.u64 = ((uint64_t)(uint32_t)fd << 32) | REMOVED;
    if (epoll_ctl(self->epfd, EPOLL_CTL_DEL, fd, NULL) < 0 && errno != ENOENT && errno != EBADF)
        return PyErr_SetFromErrno(PyExc_OSError);
    Py_RETURN_NONE;
}

/* Reads fd into entries [count, ...); returns the new count. Never raises: a failing socket is
   simply left (its error surfaces to the reader that owns it, or not at all for UDP). */
static Py_ssize_t drain_fd(Receiver *self, int fd, uint32_t slot, Py_ssize_t count) {
    char *base = (char *)self->buffer.buf;
    int32_t *slots = (int32_t *)self->slots.buf;
    int64_t *arrivals = (int64_t *)self->arrivals.buf;
    int64_t *offsets = (int64_t *)self->offsets.buf;
    int32_t *lengths = (int32_t *)self->lengths.buf;
    uint64_t *sources = (uint64_t *)self->sources.buf;
    Py_ssize_t taken = 0;
    while (count < self->capacity && taken < self->per_socket) {
        Py_ssize_t room = self->capacity - count;
        if (room > self->per_socket - taken)
            room = self->per_socket - taken;
        if (room > PER_CALL)
            room = PER_CALL;
        for (Py_ssize_t i = 0; i < room; i++) {
            struct msghdr *h = &self->msgs[i].msg_hdr;
            self->iov[i].iov_base = base + (count + i) * self->stride;
            self->iov[i].iov_len = (size_t)self->stride;
            h->msg_name = &self->addrs[count + i];
            h->msg_namelen = sizeof(struct sockaddr_storage);
            h->msg_iov = &self->iov[i];
            h->msg_iovlen = 1;
            h->msg_control = self->cmsg[i];
            h->msg_controllen = CMSG_BYTES;
            h->msg_flags = 0;
            self->msgs[i].msg_len = 0;
        }
        int got = recvmmsg(fd, self->msgs, (unsigned int)room, MSG_DONTWAIT, NULL);
        if (got <= 0)
            break;
        int64_t offset = realtime_offset();
        int64_t read_mono = now_ns(CLOCK_MONOTONIC);
        for (int i = 0; i < got; i++) {
            struct msghdr *h = &self->msgs[i].msg_hdr;
            int64_t arrival = read_mono;
            for (struct cmsghdr *c = CMSG_FIRSTHDR(h); c != NULL; c = CMSG_NXTHDR(h, c)) {
                if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SO_TIMESTAMPNS &&
                    c->cmsg_len >= CMSG_LEN(sizeof(struct timespec))) {
                    struct timespec ts;
                    memcpy(&ts, CMSG_DATA(c), sizeof(ts));
                    int64_t stamp = (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec - offset;
                    if (stamp <= read_mono && stamp >= read_mono - MAX_QUEUE_AGE_NS)
                        arrival = stamp;
                    break;
                }
            }
            Py_ssize_t at = count + i;
            slots[at] = (int32_t)slot;
            arrivals[at] = arrival;
            offsets[at] = at * self->stride;
            lengths[at] = (int32_t)(self->msgs[i].msg_len < (unsigned)self->stride ? self->msgs[i].msg_len
                                                                                     : self->stride);
            sources[at] = source_key(&self->addrs[at]);
        }
        count += got;
        taken += got;
        if (got < room)
            break; /* the queue is empty */
    }
    return count;
}

static PyObject *Receiver_wait(Receiver *self, PyObject *args) {
    int timeout_ms;
    if (!PyArg_ParseTuple(args, "i", &timeout_ms))
        return NULL;
    if (!self->have_buffers) {
        PyErr_SetString(PyExc_RuntimeError, "receiver not initialised");
        return NULL;
    }
    PyObject *watched = PyList_New(0);
    if (watched == NULL)
        return NULL;
    if (self->next_event >= self->n_events) {
        int n;
        Py_BEGIN_ALLOW_THREADS
        n = epoll_wait(self->epfd, self->events, self->max_events, timeout_ms);
        Py_END_ALLOW_THREADS
        if (n < 0) {
            if (errno != EINTR) {
                Py_DECREF(watched);
                return PyErr_SetFromErrno(PyExc_OSError);
            }
            if (PyErr_CheckSignals() < 0) {
                Py_DECREF(watched);
                return NULL;
            }
            n = 0;
        }
        self->n_events = n;
        self->next_event = 0;
        for (int i = 0; i < n; i++) {
            if ((uint32_t)(self->events[i].data.u64 & 0xFFFFFFFFu) != WATCHED)
                continue;
            PyObject *fd = PyLong_FromLong((long)(self->events[i].data.u64 >> 32));
            if (fd == NULL || PyList_Append(watched, fd) < 0) {
                Py_XDECREF(fd);
                Py_DECREF(watched);
                return NULL;
            }
            Py_DECREF(fd);
        }
    }
    Py_ssize_t count = 0;
    Py_BEGIN_ALLOW_THREADS
    while (self->next_event < self->n_events && count < self->capacity) {
        struct epoll_event *ev = &self->events[self->next_event];
        uint32_t slot = (uint32_t)(ev->data.u64 & 0xFFFFFFFFu);
        if (slot != WATCHED && slot != REMOVED) {
            count = drain_fd(self, (int)(ev->data.u64 >> 32), slot, count);
            if (count >= self->capacity)
                break; /* the batch is full: this socket may hold more, the next call goes on here */
        }
        self->next_event++;
    }
    Py_END_ALLOW_THREADS
    return Py_BuildValue("(nN)", count, watched);
}

static PyObject *Receiver_pending(Receiver *self, PyObject *unused) {
    (void)unused;
    return PyLong_FromLong(self->n_events - self->next_event);
}

static PyObject *Receiver_drain(Receiver *self, PyObject *args) {
    int fd;
    long slot;
    if (!PyArg_ParseTuple(args, "il", &fd, &slot))
        return NULL;
    if (!self->have_buffers) {
        PyErr_SetString(PyExc_RuntimeError, "receiver not initialised");
        return NULL;
    }
    Py_ssize_t count;
    Py_BEGIN_ALLOW_THREADS
    count = drain_fd(self, fd, (uint32_t)slot, 0);
    Py_END_ALLOW_THREADS
    return PyLong_FromSsize_t(count);
}

/* runs(count) -> list of (slot, start, end, clean, seq, ts, ssrc, b1, size, key):
 * the batch's datagrams 0..count-1 cut into runs, in the order received (the reference, with the
 * rules, is srs/mediaplane/batch_delivery.py:cut_runs_py; both give the same list). A datagram
 * continues the run when it is of the same slot, both it and the one before are plain (first byte
 * 0x80, payload not empty), and it has the same second byte, SSRC, IPv4 source and payload size,
 * the next sequence number and a timestamp one payload further. Per run: its first datagram's
 * fields (payloads and arrivals stay in the receiver's arrays: the track's fast path copies them
 * from there, the Python path takes them with batch_delivery.run_payload/run_arrivals). Cutting
 * here, while the rows are still in the cache, is what keeps the worker's per-batch Python short. */
static uint32_t be32(const unsigned char *p) {
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static int plain_at(const unsigned char *row, int32_t length) { return length > 12 && row[0] == 0x80; }

static PyObject *run_tuple(Receiver *self, Py_ssize_t a, Py_ssize_t b) {
    const char *base = (const char *)self->buffer.buf;
    const int32_t *slots = (const int32_t *)self->slots.buf;
    const int64_t *offsets = (const int64_t *)self->offsets.buf;
    const int32_t *lengths = (const int32_t *)self->lengths.buf;
    const uint64_t *sources = (const uint64_t *)self->sources.buf;
    const unsigned char *row = (const unsigned char *)base + offsets[a];
    int clean = plain_at(row, lengths[a]);
    PyObject *run = PyTuple_New(10);
    if (run == NULL)
        return NULL;
    /* built item by item: a format string parsed per run costs as much as the rest of it */
    PyTuple_SET_ITEM(run, 0, PyLong_FromLong(slots[a]));
    PyTuple_SET_ITEM(run, 1, PyLong_FromSsize_t(a));
    PyTuple_SET_ITEM(run, 2, PyLong_FromSsize_t(b));
    PyTuple_SET_ITEM(run, 3, Py_NewRef(clean ? Py_True : Py_False));
    PyTuple_SET_ITEM(run, 4, PyLong_FromLong((row[2] << 8) | row[3]));
    PyTuple_SET_ITEM(run, 5, PyLong_FromUnsignedLong(be32(row + 4)));
    PyTuple_SET_ITEM(run, 6, PyLong_FromUnsignedLong(be32(row + 8)));
    PyTuple_SET_ITEM(run, 7, PyLong_FromLong(row[1]));
    PyTuple_SET_ITEM(run, 8, PyLong_FromSsize_t((Py_ssize_t)lengths[a] - 12));
    PyTuple_SET_ITEM(run, 9, PyLong_FromUnsignedLongLong(sources[a]));
    for (int i = 0; i < 10; i++)
        if (PyTuple_GET_ITEM(run, i) == NULL) {
            Py_DECREF(run); /* the items made so far go with it */
            return NULL;
        }
    return run;
}

static PyObject *Receiver_runs(Receiver *self, PyObject *arg) {
    Py_ssize_t count = PyLong_AsSsize_t(arg);
    if (count == -1 && PyErr_Occurred())
        return NULL;
    if (!self->have_buffers || count < 0 || count > self->capacity) {
        PyErr_SetString(PyExc_ValueError, "runs: count out of range");
        return NULL;
    }
    const char *base = (const char *)self->buffer.buf;
    const int32_t *slots = (const int32_t *)self->slots.buf;
    const int64_t *offsets = (const int64_t *)self->offsets.buf;
    const int32_t *lengths = (const int32_t *)self->lengths.buf;
    const uint64_t *sources = (const uint64_t *)self->sources.buf;
    for (Py_ssize_t i = 0; i < count; i++)
        if (offsets[i] < 0 || lengths[i] < 0 || offsets[i] + (lengths[i] > 12 ? lengths[i] : 12) > self->buffer.len) {
            PyErr_SetString(PyExc_ValueError, "runs: datagram outside the buffer");
            return NULL;
        }
    PyObject *out = PyList_New(0);
    if (out == NULL)
        return NULL;
    Py_ssize_t a = 0;
    while (a < count) {
        Py_ssize_t b = a + 1;
        const unsigned char *first = (const unsigned char *)base + offsets[a];
        if (plain_at(first, lengths[a]) && (sources[a] >> 56) == 4) {
            const unsigned char *prev = first;
            while (b < count) {
                const unsigned char *row = (const unsigned char *)base + offsets[b];
                if (slots[b] != slots[a] || !plain_at(row, lengths[b]) || row[1] != first[1] ||
                    be32(row + 8) != be32(first + 8) || sources[b] != sources[a] || lengths[b] != lengths[a] ||
                    (uint16_t)(((row[2] << 8) | row[3]) - ((prev[2] << 8) | prev[3])) != 1 ||
                    (uint32_t)(be32(row + 4) - be32(prev + 4)) != (uint32_t)(lengths[a] - 12))
                    break;
                prev = row;
                b++;
            }
        }
        PyObject *run = run_tuple(self, a, b);
        if (run == NULL || PyList_Append(out, run) < 0) {
            Py_XDECREF(run);
            Py_DECREF(out);
            return NULL;
        }
        Py_DECREF(run);
        a = b;
    }
    return out;
}

static PyObject *Receiver_source(Receiver *self, PyObject *args) {
    Py_ssize_t i;
    if (!PyArg_ParseTuple(args, "n", &i))
        return NULL;
    if (i < 0 || i >= self->capacity) {
        PyErr_SetString(PyExc_IndexError, "datagram index out of range");
        return NULL;
    }
    const struct sockaddr_storage *ss = &self->addrs[i];
    char text[INET6_ADDRSTRLEN];
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)ss;
        inet_ntop(AF_INET, &in->sin_addr, text, sizeof(text));
        return Py_BuildValue("(si)", text, ntohs(in->sin_port));
    }
    if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)ss;
        inet_ntop(AF_INET6, &in6->sin6_addr, text, sizeof(text));
        return Py_BuildValue("(siII)", text, ntohs(in6->sin6_port), ntohl(in6->sin6_flowinfo),
                             in6->sin6_scope_id);
    }
    Py_RETURN_NONE;
}

static PyObject *Receiver_close(Receiver *self, PyObject *unused) {
    if (self->epfd >= 0) {
        close(self->epfd);
        self->epfd = -1;
    }
    Py_RETURN_NONE;
}

static PyObject *Receiver_fileno(Receiver *self, PyObject *unused) { return PyLong_FromLong(self->epfd); }

static PyMethodDef Receiver_methods[] = {
    {"add", (PyCFunction)Receiver_add, METH_VARARGS, "add(fd, slot): read fd's datagrams as slot"},
    {"watch", (PyCFunction)Receiver_watch, METH_VARARGS, "watch(fd): report fd's readiness, never read it"},
    {"remove", (PyCFunction)Receiver_remove, METH_VARARGS, "remove(fd)"},
    {"wait", (PyCFunction)Receiver_wait, METH_VARARGS,
     "wait(timeout_ms) -> (count, ready watched fds): drain every ready socket"},
    {"pending", (PyCFunction)Receiver_pending, METH_NOARGS,
     "pending() -> ready sockets of the last epoll_wait not yet drained (the next wait goes on with them)"},
    {"drain", (PyCFunction)Receiver_drain, METH_VARARGS, "drain(fd, slot) -> count: read one socket now"},
    {"source", (PyCFunction)Receiver_source, METH_VARARGS, "source(i) -> address tuple of datagram i"},
    {"runs", (PyCFunction)Receiver_runs, METH_O,
     "runs(count) -> the batch cut into runs: (slot, start, end, clean, seq, ts, ssrc, b1, size, key)"
     " each"},
    {"close", (PyCFunction)Receiver_close, METH_NOARGS, "close the epoll descriptor"},
    {"fileno", (PyCFunction)Receiver_fileno, METH_NOARGS, "the epoll descriptor"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject ReceiverType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "srs.mediaplane._batchrecv.Receiver",
    .tp_basicsize = sizeof(Receiver),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "epoll + recvmmsg into caller-provided arrays, with kernel arrival stamps",
    .tp_new = Receiver_new,
    .tp_init = (initproc)Receiver_init,
    .tp_dealloc = (destructor)Receiver_dealloc,
    .tp_methods = Receiver_methods,
};


/* ------------------------------------------------------------------ crash journal records
 * append_records(journal, tail, capacity, seq, port, buffer, offsets, lengths, arrivals, start, end)
 *   -> (tail, seq, next)
 * Writes datagrams start..end-1 of a batch (bytes at buffer[offsets[i]:offsets[i]+lengths[i]],
 * arrival ns arrivals[i]) as journal records (srs/mediaplane/journal.py: 24-byte header, the
 * bytes, zero padding to a multiple of 8) at journal[tail:], one after another, until one does
 * not fit below capacity; returns the new tail and sequence and the first datagram not written.
 * The CRC-32 is zlib's (reflected 0xEDB88320): folded by carry-less multiplication where the CPU
 * has it (x86-64 with PCLMULQDQ), the rest by zlib's own where its header was found at build time
 * (setup.py defines SRS_ZLIB), else with slice-by-8 tables. The pure-Python
 * reference is journal.append_records_py; both write the same bytes.
 */
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define SRS_CRC_FOLD 1
/* CRC-32 of len bytes (len >= 64, a multiple of 16) by carry-less multiplication: four 128-bit
 * lanes folded 64 bytes at a time, folded into one, reduced to 32 bits (Barrett). crc is the
 * running value in its inverted form (zlib's internal one); so is the result. The constants are
 * the powers of x modulo the reflected polynomial 0xEDB88320 the method needs (x^(4*128+-32),
 * x^(128+-32), x^64) and the polynomial with its Barrett quotient. About five times faster than
 * zlib's table-driven loop on a 172-byte G.711 datagram; a test holds it to zlib at every length
 * and alignment. */
__attribute__((target("pclmul,sse4.1")))
static uint32_t crc32_fold(const unsigned char *buf, size_t len, uint32_t crc) {
    /* len >= 64, multiple of 16 */
    const __m128i k1k2 = _mm_set_epi64x(0x01c6e41596LL, 0x0154442bd4LL);
    const __m128i k3k4 = _mm_set_epi64x(0x00ccaa009eLL, 0x01751997d0LL);
    const __m128i k5k0 = _mm_set_epi64x(0, 0x0163cd6124LL);
    const __m128i poly = _mm_set_epi64x(0x01f7011641LL, 0x01db710641LL);
    __m128i x0, x1, x2, x3, x4, x5, x6, x7, x8, y5, y6, y7, y8;
    x1 = _mm_loadu_si128((const __m128i *)(buf + 0x00));
    x2 = _mm_loadu_si128((const __m128i *)(buf + 0x10));
    x3 = _mm_loadu_si128((const __m128i *)(buf + 0x20));
    x4 = _mm_loadu_si128((const __m128i *)(buf + 0x30));
    x1 = _mm_xor_si128(x1, _mm_cvtsi32_si128((int)crc));
    x0 = k1k2;
    buf += 64; len -= 64;
    while (len >= 64) {
        x5 = _mm_clmulepi64_si128(x1, x0, 0x00); x6 = _mm_clmulepi64_si128(x2, x0, 0x00);
        x7 = _mm_clmulepi64_si128(x3, x0, 0x00); x8 = _mm_clmulepi64_si128(x4, x0, 0x00);
        x1 = _mm_clmulepi64_si128(x1, x0, 0x11); x2 = _mm_clmulepi64_si128(x2, x0, 0x11);
        x3 = _mm_clmulepi64_si128(x3, x0, 0x11); x4 = _mm_clmulepi64_si128(x4, x0, 0x11);
        y5 = _mm_loadu_si128((const __m128i *)(buf + 0x00)); y6 = _mm_loadu_si128((const __m128i *)(buf + 0x10));
        y7 = _mm_loadu_si128((const __m128i *)(buf + 0x20)); y8 = _mm_loadu_si128((const __m128i *)(buf + 0x30));
        x1 = _mm_xor_si128(_mm_xor_si128(x1, x5), y5); x2 = _mm_xor_si128(_mm_xor_si128(x2, x6), y6);
        x3 = _mm_xor_si128(_mm_xor_si128(x3, x7), y7); x4 = _mm_xor_si128(_mm_xor_si128(x4, x8), y8);
        buf += 64; len -= 64;
    }
    x0 = k3k4;
    x5 = _mm_clmulepi64_si128(x1, x0, 0x00); x1 = _mm_clmulepi64_si128(x1, x0, 0x11);
    x1 = _mm_xor_si128(_mm_xor_si128(x1, x2), x5);
    x5 = _mm_clmulepi64_si128(x1, x0, 0x00); x1 = _mm_clmulepi64_si128(x1, x0, 0x11);
    x1 = _mm_xor_si128(_mm_xor_si128(x1, x3), x5);
    x5 = _mm_clmulepi64_si128(x1, x0, 0x00); x1 = _mm_clmulepi64_si128(x1, x0, 0x11);
    x1 = _mm_xor_si128(_mm_xor_si128(x1, x4), x5);
    while (len >= 16) {
        x2 = _mm_loadu_si128((const __m128i *)buf);
        x5 = _mm_clmulepi64_si128(x1, x0, 0x00); x1 = _mm_clmulepi64_si128(x1, x0, 0x11);
        x1 = _mm_xor_si128(_mm_xor_si128(x1, x2), x5);
        buf += 16; len -= 16;
    }
    x2 = _mm_clmulepi64_si128(x1, x0, 0x10);
    x3 = _mm_setr_epi32(~0, 0, ~0, 0);
    x1 = _mm_srli_si128(x1, 8);
    x1 = _mm_xor_si128(x1, x2);
    x0 = k5k0;
    x2 = _mm_srli_si128(x1, 4);
    x1 = _mm_and_si128(x1, x3);
    x1 = _mm_clmulepi64_si128(x1, x0, 0x00);
    x1 = _mm_xor_si128(x1, x2);
    x0 = poly;
    x2 = _mm_and_si128(x1, x3);
    x2 = _mm_clmulepi64_si128(x2, x0, 0x10);
    x2 = _mm_and_si128(x2, x3);
    x2 = _mm_clmulepi64_si128(x2, x0, 0x00);
    x1 = _mm_xor_si128(x1, x2);
    return (uint32_t)_mm_extract_epi32(x1, 1);
}

static int crc_fold_ok; /* the CPU has PCLMULQDQ and SSE4.1 (checked once, at import) */
#endif

static uint32_t crc_byte_table[256];

/* a few bytes of a CRC-32 whose running value (inverted form) is c, a byte at a time (for the
 * tail after the fold, zlib's call and set-up cost more than the bytes) */
static uint32_t crc32_bytewise(uint32_t c, const unsigned char *p, size_t n) {
    while (n--)
        c = crc_byte_table[(c ^ *p++) & 0xFF] ^ (c >> 8);
    return c;
}

static void crc_byte_table_init(void) {
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t c = n;
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        crc_byte_table[n] = c;
    }
}

#ifdef SRS_ZLIB
#include <zlib.h>
static void crc_table_init(void) {}
/* the rest of a CRC-32 whose running value (inverted form) is c; returns the final value */
static uint32_t crc32_finish(uint32_t c, const unsigned char *p, size_t n) {
    if (n < 16)
        return crc32_bytewise(c, p, n) ^ 0xFFFFFFFFu;
    uLong z = c ^ 0xFFFFFFFFu;
    while (n > 0x40000000u) { /* zlib takes a uInt length */
        z = crc32(z, p, 0x40000000u);
        p += 0x40000000u;
        n -= 0x40000000u;
    }
    return (uint32_t)crc32(z, p, (uInt)n);
}
#else
static uint32_t crc_table[8][256];

static void crc_table_init(void) { /* after crc_byte_table_init */
    memcpy(crc_table[0], crc_byte_table, sizeof crc_byte_table);
    for (uint32_t n = 0; n < 256; n++)
        for (int t = 1; t < 8; t++)
            crc_table[t][n] = crc_table[0][crc_table[t - 1][n] & 0xFF] ^ (crc_table[t - 1][n] >> 8);
}

static uint32_t crc32_finish(uint32_t c, const unsigned char *p, size_t n) {
    while (n >= 8) {
        uint32_t lo, hi;
        memcpy(&lo, p, 4);
        memcpy(&hi, p + 4, 4);
        lo ^= c; /* little-endian hosts (Linux x86-64, arm64) */
        c = crc_table[7][lo & 0xFF] ^ crc_table[6][(lo >> 8) & 0xFF] ^ crc_table[5][(lo >> 16) & 0xFF] ^
            crc_table[4][lo >> 24] ^ crc_table[3][hi & 0xFF] ^ crc_table[2][(hi >> 8) & 0xFF] ^
            crc_table[1][(hi >> 16) & 0xFF] ^ crc_table[0][hi >> 24];
        p += 8;
        n -= 8;
    }
    return crc32_bytewise(c, p, n) ^ 0xFFFFFFFFu;
}
#endif

static void crc_init(void) {
    crc_byte_table_init();
    crc_table_init();
#ifdef SRS_CRC_FOLD
    __builtin_cpu_init();
    crc_fold_ok = __builtin_cpu_supports("pclmul") && __builtin_cpu_supports("sse4.1");
#endif
}

static uint32_t crc32_bytes(const unsigned char *p, size_t n) {
    uint32_t c = 0xFFFFFFFFu;
#ifdef SRS_CRC_FOLD
    if (n >= 64 && crc_fold_ok) {
        size_t folded = n & ~(size_t)15;
        c = crc32_fold(p, folded, c);
        p += folded;
        n -= folded;
    }
#endif
    return crc32_finish(c, p, n);
}

static void put16(unsigned char *p, uint16_t v) { p[0] = (unsigned char)v; p[1] = (unsigned char)(v >> 8); }
static void put32(unsigned char *p, uint32_t v) {
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}
static void put64(unsigned char *p, uint64_t v) {
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

#define RECORD_MAGIC 0x5352u
#define RECORD_HEADER 24

/* The records of datagrams start..end-1 of a batch at out[*tail:], one after another, until one
 * does not fit below capacity; advances *tail and *seq and returns the first datagram not
 * written, or -1 when a datagram lies outside the receive buffer (base, base_len). */
static Py_ssize_t write_records(unsigned char *out, Py_ssize_t *tail, Py_ssize_t capacity, uint32_t *seq,
                                uint16_t port, const Batch *batch, Py_ssize_t start, Py_ssize_t end) {
    Py_ssize_t i = start;
    for (; i < end; i++) {
        int64_t off = batch->offsets[i];
        int32_t length = batch->lengths[i];
        if (length < 0 || length > 0xFFFF || off < 0 || off + length > batch->base_len)
            return -1;
        Py_ssize_t padded = ((Py_ssize_t)length + 7) & ~(Py_ssize_t)7;
        if (*tail + RECORD_HEADER + padded > capacity)
            break;
        unsigned char *rec = out + *tail;
        const unsigned char *data = batch->base + off;
        memcpy(rec + RECORD_HEADER, data, (size_t)length);
        memset(rec + RECORD_HEADER + length, 0, (size_t)(padded - length));
        put16(rec, RECORD_MAGIC);
        put16(rec + 2, port);
        put16(rec + 4, (uint16_t)length);
        put16(rec + 6, 0);
        put32(rec + 8, *seq);
        put32(rec + 12, crc32_bytes(data, (size_t)length));
        put64(rec + 16, (uint64_t)batch->arrivals[i]);
        *seq += 1;
        *tail += RECORD_HEADER + padded;
    }
    return i;
}

static PyObject *append_records(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    if (nargs != 11) {
        PyErr_SetString(PyExc_TypeError, "append_records takes 11 arguments");
        return NULL;
    }
    Py_ssize_t tail = PyLong_AsSsize_t(args[1]);
    Py_ssize_t capacity = PyLong_AsSsize_t(args[2]);
    unsigned long seq = PyLong_AsUnsignedLongMask(args[3]);
    long port = PyLong_AsLong(args[4]);
    Py_ssize_t start = PyLong_AsSsize_t(args[9]);
    Py_ssize_t end = PyLong_AsSsize_t(args[10]);
    if (PyErr_Occurred())
        return NULL;
    if (port < 0 || port > 0xFFFF || tail < 0 || start < 0 || end < start) {
        PyErr_SetString(PyExc_ValueError, "append_records: argument out of range");
        return NULL;
    }
    Py_buffer jv;
    if (PyObject_GetBuffer(args[0], &jv, PyBUF_WRITABLE) < 0)
        return NULL;
    BatchViews held;
    if (take_batch(args + 5, &held) < 0) {
        PyBuffer_Release(&jv);
        return NULL;
    }
    if (capacity > jv.len)
        capacity = jv.len;
    PyObject *result = NULL;
    uint32_t seq32 = (uint32_t)seq;
    if (end > held.rows) {
        PyErr_SetString(PyExc_ValueError, "append_records: end past the batch arrays");
    } else {
        unsigned char *out = (unsigned char *)jv.buf;
        Py_ssize_t i = write_records(out, &tail, capacity, &seq32, (uint16_t)port, &held.batch, start, end);
        if (i < 0)
            PyErr_SetString(PyExc_ValueError, "append_records: datagram outside the buffer");
        else
            result = Py_BuildValue("(nkn)", tail, (unsigned long)seq32, i);
    }
    release_batch(&held);
    PyBuffer_Release(&jv);
    return result;
}

/* journal_runs(targets, runs, buffer, offsets, lengths, arrivals) -> list of (run index, next):
 * the datagrams of every run whose slot has a target written as append_records would, one call
 * for a whole batch. ``targets`` maps a slot to (journal mapping, cursor, RTP port): the cursor is
 * the journal's array('q') of (tail, sequence, capacity), updated here. A run that does not fit
 * is left at its first datagram not written, listed in the result for the caller to make room
 * (journal.Journal.append_batch). The reference is journal.journal_runs_py. */
static PyObject *journal_runs(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    if (nargs != 6) {
        PyErr_SetString(PyExc_TypeError, "journal_runs takes 6 arguments");
        return NULL;
    }
    PyObject *targets = args[0], *runs = args[1];
    if (!PyDict_Check(targets) || !PyList_Check(runs)) {
        PyErr_SetString(PyExc_TypeError, "journal_runs: targets must be a dict and runs a list");
        return NULL;
    }
    PyObject *left = PyList_New(0);
    if (left == NULL)
        return NULL;
    if (PyDict_GET_SIZE(targets) == 0)
        return left;
    BatchViews held;
    if (take_batch(args + 2, &held) < 0) {
        Py_DECREF(left);
        return NULL;
    }
    Py_ssize_t rows = held.rows;
    Py_ssize_t n_runs = PyList_GET_SIZE(runs);
    for (Py_ssize_t r = 0; r < n_runs; r++) {
        PyObject *run = PyList_GET_ITEM(runs, r);
        if (!PyTuple_Check(run) || PyTuple_GET_SIZE(run) < 3) {
            PyErr_SetString(PyExc_TypeError, "journal_runs: a run is a tuple (slot, start, end, ...)");
            goto fail;
        }
        PyObject *target = PyDict_GetItemWithError(targets, PyTuple_GET_ITEM(run, 0));
        if (target == NULL) {
            if (PyErr_Occurred())
                goto fail;
            continue;
        }
        Py_ssize_t start = PyLong_AsSsize_t(PyTuple_GET_ITEM(run, 1));
        Py_ssize_t end = PyLong_AsSsize_t(PyTuple_GET_ITEM(run, 2));
        if (PyErr_Occurred())
            goto fail;
        if (!PyTuple_Check(target) || PyTuple_GET_SIZE(target) != 3) {
            PyErr_SetString(PyExc_TypeError, "journal_runs: a target is (mapping, cursor, port)");
            goto fail;
        }
        long port = PyLong_AsLong(PyTuple_GET_ITEM(target, 2));
        if (PyErr_Occurred())
            goto fail;
        if (port < 0 || port > 0xFFFF || start < 0 || end < start || end > rows) {
            PyErr_SetString(PyExc_ValueError, "journal_runs: run or port out of range");
            goto fail;
        }
        Py_buffer jv, cv;
        if (PyObject_GetBuffer(PyTuple_GET_ITEM(target, 0), &jv, PyBUF_WRITABLE) < 0)
            goto fail;
        if (PyObject_GetBuffer(PyTuple_GET_ITEM(target, 1), &cv, PyBUF_WRITABLE) < 0) {
            PyBuffer_Release(&jv);
            goto fail;
        }
        if (cv.len < 24) {
            PyBuffer_Release(&cv);
            PyBuffer_Release(&jv);
            PyErr_SetString(PyExc_ValueError, "journal_runs: a cursor holds (tail, sequence, capacity)");
            goto fail;
        }
        int64_t *cursor = (int64_t *)cv.buf;
        Py_ssize_t tail = (Py_ssize_t)cursor[0];
        uint32_t seq = (uint32_t)cursor[1];
        Py_ssize_t capacity = (Py_ssize_t)cursor[2];
        if (capacity > jv.len)
            capacity = jv.len;
        unsigned char *out = (unsigned char *)jv.buf;
        Py_ssize_t i = -1;
        if (tail >= 0)
            i = write_records(out, &tail, capacity, &seq, (uint16_t)port, &held.batch, start, end);
        int bad = i < 0;
        cursor[0] = tail;
        cursor[1] = seq;
        PyBuffer_Release(&cv);
        PyBuffer_Release(&jv);
        if (bad) {
            PyErr_SetString(PyExc_ValueError, "journal_runs: datagram outside the buffer");
            goto fail;
        }
        if (i < end) {
            PyObject *item = Py_BuildValue("(nn)", r, i);
            if (item == NULL || PyList_Append(left, item) < 0) {
                Py_XDECREF(item);
                goto fail;
            }
            Py_DECREF(item);
        }
    }
    release_batch(&held);
    return left;
fail:
    release_batch(&held);
    Py_DECREF(left);
    return NULL;
}

/* skip_records(journal, offset, tail, cutoff_ns) -> (offset, count): from the record at offset,
   pass every record (up to tail) that arrived before cutoff_ns; where the scan stopped and how many
   it passed (journal.Journal.mark; the reference is journal.skip_records_py). */
static PyObject *skip_records(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "skip_records takes 4 arguments");
        return NULL;
    }
    Py_ssize_t offset = PyLong_AsSsize_t(args[1]);
    Py_ssize_t tail = PyLong_AsSsize_t(args[2]);
    long long cutoff = PyLong_AsLongLong(args[3]);
    if (PyErr_Occurred())
        return NULL;
    Py_buffer jv;
    if (PyObject_GetBuffer(args[0], &jv, PyBUF_SIMPLE) < 0)
        return NULL;
    if (tail > jv.len)
        tail = jv.len;
    const unsigned char *in = (const unsigned char *)jv.buf;
    Py_ssize_t count = 0;
    while (offset >= 0 && offset + RECORD_HEADER <= tail) {
        const unsigned char *rec = in + offset;
        uint64_t arrival = 0;
        for (int i = 7; i >= 0; i--)
            arrival = (arrival << 8) | rec[16 + i];
        if ((int64_t)arrival >= cutoff)
            break;
        Py_ssize_t length = (Py_ssize_t)rec[4] | ((Py_ssize_t)rec[5] << 8);
        offset += RECORD_HEADER + ((length + 7) & ~(Py_ssize_t)7);
        count++;
    }
    PyBuffer_Release(&jv);
    return Py_BuildValue("(nn)", offset, count);
}

static PyObject *crc32_py(PyObject *module, PyObject *arg) {
    (void)module;
    Py_buffer v;
    if (PyObject_GetBuffer(arg, &v, PyBUF_SIMPLE) < 0)
        return NULL;
    uint32_t c = crc32_bytes((const unsigned char *)v.buf, (size_t)v.len);
    PyBuffer_Release(&v);
    return PyLong_FromUnsignedLong(c);
}

static PyMethodDef module_methods[] = {
    {"append_records", (PyCFunction)(void (*)(void))append_records, METH_FASTCALL,
     "append_records(journal, tail, capacity, seq, port, buffer, offsets, lengths, arrivals, start, end)"
     " -> (tail, seq, next): a batch's datagrams as crash journal records"},
    {"journal_runs", (PyCFunction)(void (*)(void))journal_runs, METH_FASTCALL,
     "journal_runs(targets, runs, buffer, offsets, lengths, arrivals) -> [(run, next)]: the runs of"
     " journaled slots as crash journal records, one call a batch"},
    {"skip_records", (PyCFunction)(void (*)(void))skip_records, METH_FASTCALL,
     "skip_records(journal, offset, tail, cutoff_ns) -> (offset, count): pass the records that arrived"
     " before cutoff_ns"},
    {"crc32", (PyCFunction)crc32_py, METH_O, "crc32(bytes) -> zlib's CRC-32 (the journal's)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_batchrecv", "Batch datagram receive with kernel arrival stamps.", -1, module_methods,
};

PyMODINIT_FUNC PyInit__batchrecv(void) {
    crc_init();
    if (PyType_Ready(&ReceiverType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    Py_INCREF(&ReceiverType);
    if (PyModule_AddObject(m, "Receiver", (PyObject *)&ReceiverType) < 0) {
        Py_DECREF(&ReceiverType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
