/*
 * rtpsend: the bench's native RTP sender (compiled at bench time with the system's C compiler).
 *
 * On loopback a datagram's delivery is charged to the sender (the receiver's queueing runs inside
 * the sender's sendto), so a Python sender tops out near 120k packets/s on one core; with
 * sendmmsg(2) and no interpreter this one sends well past what one srs worker takes.
 *
 * Input (stdin, text): a first line "streams start_ns end_ns" (CLOCK_MONOTONIC, the clock srs
 * places by), then one line per stream: "port ssrc phase_ns payload_hex", phase in [0, 20 ms).
 * Each stream sends one
 * packet every 20 ms from start_ns + phase_ns (so streams are spread over each 20 ms as a real
 * SBC's are) until end_ns, RTP sequence and timestamp counting from values derived from its SSRC.
 * Packets due together go out in one sendmmsg. At the end it prints "sent <stream> <packets>" per
 * stream and one line "lag <packets> <late_1ms> <late_5ms> <p50_us> <p99_us> <max_us>": how far
 * behind schedule packets left (a generator that falls behind measures itself, not srs).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define PTIME_NS 20000000LL
#define BATCH 512
#define MAX_PAYLOAD 1024
#define LAG_BUCKETS 100000 /* 10 us each: up to 1 s */

typedef struct {
    struct sockaddr_in to;
    uint32_t ssrc;
    uint16_t seq;
    uint32_t ts;
    int64_t due;
    long sent;
    long id;
    int size;
    unsigned char packet[12 + MAX_PAYLOAD];
} Stream;

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void sleep_until(int64_t when) {
    struct timespec ts = {(time_t)(when / 1000000000LL), (long)(when % 1000000000LL)};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {
    }
}

static int by_due(const void *a, const void *b) {
    const Stream *x = a, *y = b;
    return (x->due > y->due) - (x->due < y->due);
}

int main(void) {
    long count;
    long long start, end;
    if (scanf("%ld %lld %lld", &count, &start, &end) != 3 || count <= 0) {
        fprintf(stderr, "bad header\n");
        return 2;
    }
    Stream *streams = calloc((size_t)count, sizeof(Stream));
    static char hex[2 * MAX_PAYLOAD + 2];
    for (long i = 0; i < count; i++) {
        int port;
        unsigned long ssrc;
        long long phase;
        if (scanf("%d %lu %lld %2049s", &port, &ssrc, &phase, hex) != 4) {
            fprintf(stderr, "bad stream line %ld\n", i);
            return 2;
        }
        Stream *s = &streams[i];
        s->id = i;
        s->to.sin_family = AF_INET;
        s->to.sin_port = htons((uint16_t)port);
        s->to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        s->ssrc = (uint32_t)ssrc;
        s->seq = (uint16_t)(ssrc >> 8);
        s->ts = (uint32_t)(ssrc * 7);
        s->due = start + phase;
        s->size = (int)(strlen(hex) / 2);
        for (int k = 0; k < s->size; k++) {
            unsigned v;
            sscanf(hex + 2 * k, "%2x", &v);
            s->packet[12 + k] = (unsigned char)v;
        }
        s->packet[0] = 0x80;
        s->packet[1] = 0;
        uint32_t nssrc = htonl(s->ssrc);
        memcpy(s->packet + 8, &nssrc, 4);
    }
    /* streams sorted by phase: the due one is always next in a ring */
    Stream *sorted = malloc((size_t)count * sizeof(Stream));
    memcpy(sorted, streams, (size_t)count * sizeof(Stream));
    qsort(sorted, (size_t)count, sizeof(Stream), by_due);
    long *index_of = malloc((size_t)count * sizeof(long));
    for (long j = 0; j < count; j++)
        index_of[sorted[j].id] = j;
    int sock = socket(AF_INET, SOCK_DGRAM, 0);
    int big = 256 << 20;
    if (setsockopt(sock, SOL_SOCKET, SO_SNDBUFFORCE, &big, sizeof(big)) < 0)
        setsockopt(sock, SOL_SOCKET, SO_SNDBUF, &big, sizeof(big));
    struct mmsghdr msgs[BATCH];
    struct iovec iov[BATCH];
    static long lag_hist[LAG_BUCKETS + 1];
    long total = 0, late1 = 0, late5 = 0, errors = 0;
    int64_t worst = 0;
    long next = 0;
    for (;;) {
        Stream *s = &sorted[next];
        if (s->due >= end)
            break;
        int64_t now = now_ns();
        if (s->due > now + 20000) {
            sleep_until(s->due);
            now = now_ns();
        }
        int n = 0;
        while (n < BATCH && sorted[next].due <= now && sorted[next].due < end) {
            Stream *d = &sorted[next];
            uint16_t nseq = htons(d->seq);
            uint32_t nts = htonl(d->ts);
            memcpy(d->packet + 2, &nseq, 2);
            memcpy(d->packet + 4, &nts, 4);
            iov[n].iov_base = d->packet;
            iov[n].iov_len = (size_t)(12 + d->size);
            memset(&msgs[n].msg_hdr, 0, sizeof(struct msghdr));
            msgs[n].msg_hdr.msg_name = &d->to;
            msgs[n].msg_hdr.msg_namelen = sizeof(d->to);
            msgs[n].msg_hdr.msg_iov = &iov[n];
            msgs[n].msg_hdr.msg_iovlen = 1;
            int64_t lag = now - d->due;
            if (lag > worst)
                worst = lag;
            if (lag > 1000000)
                late1++;
            if (lag > 5000000)
                late5++;
            long bucket = lag / 10000;
            lag_hist[bucket > LAG_BUCKETS ? LAG_BUCKETS : bucket]++;
            d->seq++;
            d->ts += 160;
            d->sent++;
            d->due += PTIME_NS;
            total++;
            n++;
            next = (next + 1) % count;
        }
        int done = 0;
        while (done < n) {
            int r = sendmmsg(sock, msgs + done, (unsigned)(n - done), 0);
            if (r < 0) {
                if (errno == EINTR || errno == EAGAIN || errno == ENOBUFS)
                    continue;
                errors += n - done;
                break;
            }
            done += r;
        }
    }
    for (long i = 0; i < count; i++)
        printf("sent %ld %ld\n", i, sorted[index_of[i]].sent);
    long seen = 0, p50 = -1, p99 = -1;
    for (long b = 0; b <= LAG_BUCKETS; b++) {
        seen += lag_hist[b];
        if (p50 < 0 && seen * 2 >= total)
            p50 = b * 10;
        if (p99 < 0 && seen * 100 >= total * 99)
            p99 = b * 10;
    }
    printf("lag %ld %ld %ld %ld %ld %lld\n", total, late1, late5, p50, p99, (long long)(worst / 1000));
    printf("errors %ld\n", errors);
    free(streams);
    free(sorted);
    free(index_of);
    close(sock);
    return 0;
}
