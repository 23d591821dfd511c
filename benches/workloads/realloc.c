/* realloc: grow many buffers by realloc, the way string builders and
 * dynamic arrays do.
 *
 *   realloc [THREADS=2] [OPS=4000000] [BUFFERS=500] [SEED=42]
 *
 * Each thread keeps BUFFERS buffers and, OPS times, appends 1..64 random
 * bytes to a random one. Half the buffers are reallocated to the exact new
 * length on every append (limit 64 B .. 32 KiB), a quarter grow their
 * capacity by 1.5x when full (limit up to 256 KiB) and a quarter double it
 * (limit up to 1 MiB); limits are log-uniform. Once past its limit,
 * the buffer's contents are checked against a running sum and it is freed
 * and started again from NULL. Buffers are interleaved so growth in place is
 * not free. Deterministic per thread; the checksum combines threads in order.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"

struct buf {
    unsigned char *p;
    size_t len, cap, limit;
    uint64_t check;
    int growth;
};

static long g_ops;
static long g_buffers;
static uint64_t g_seed;

static uint64_t splitmix(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static uint64_t sum_bytes(const unsigned char *p, size_t n) {
    uint64_t s = 0;
    for (size_t i = 0; i < n; i++) s += p[i];
    return s;
}

static void reset(struct buf *b, uint64_t *rng) {
    uint64_t r = splitmix(rng);
    b->p = NULL;
    b->len = b->cap = 0;
    b->check = 0;
    b->growth = (int)(r & 3); /* 0, 1: exact; 2: x1.5; 3: x2 */
    int steps = b->growth < 2 ? 9 : b->growth == 2 ? 12 : 14;
    b->limit = (size_t)64 << ((r >> 8) % (uint64_t)steps); /* 64 B .. 16 KiB / 128 KiB / 512 KiB, */
    b->limit += (size_t)((r >> 16) % b->limit); /* then up to twice that */
}

static uint64_t retire(struct buf *b) {
    if (sum_bytes(b->p, b->len) != b->check) {
        fprintf(stderr, "realloc: buffer contents lost\n");
        exit(1);
    }
    uint64_t v = b->check ^ b->len;
    free(b->p);
    return v;
}

static void *worker(void *arg) {
    uint64_t *out = arg;
    uint64_t rng = g_seed + *out * 0x9e3779b97f4a7c15ULL;
    struct buf *bufs = calloc((size_t)g_buffers, sizeof *bufs);
    unsigned char chunk[64];
    uint64_t sum = 0;
    for (long i = 0; i < g_buffers; i++) reset(&bufs[i], &rng);
    for (long op = 0; op < g_ops; op++) {
        uint64_t r = splitmix(&rng);
        struct buf *b = &bufs[r % (uint64_t)g_buffers];
        size_t n = 1 + (size_t)((r >> 32) % 64);
        unsigned char fillc = (unsigned char)(r >> 48), first = (unsigned char)(r >> 40);
        memset(chunk, fillc, n);
        chunk[0] = first;
        size_t need = b->len + n;
        if (need > b->cap) {
            size_t cap = need;
            if (b->growth >= 2) {
                cap = b->cap ? b->cap : 64;
                while (cap < need) cap = b->growth == 2 ? cap + cap / 2 : cap * 2;
            }
            unsigned char *p = realloc(b->p, cap);
            if (!p) {
                fprintf(stderr, "realloc: out of memory\n");
                exit(1);
            }
            b->p = p;
            b->cap = cap;
        }
        memcpy(b->p + b->len, chunk, n);
        b->check += (uint64_t)first + (uint64_t)fillc * (n - 1);
        b->len = need;
        if (b->len >= b->limit) {
            sum = sum * 31 + retire(b);
            reset(b, &rng);
        }
    }
    for (long i = 0; i < g_buffers; i++) sum = sum * 31 + retire(&bufs[i]);
    free(bufs);
    *out = sum;
    return NULL;
}

int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : 2;
    g_ops = argc > 2 ? atol(argv[2]) : 4000000;
    g_buffers = argc > 3 ? atol(argv[3]) : 500;
    g_seed = argc > 4 ? strtoull(argv[4], NULL, 10) : 42;
    if (threads < 1 || g_ops < 1 || g_buffers < 1) {
        fprintf(stderr, "usage: realloc [THREADS] [OPS] [BUFFERS] [SEED]\n");
        return 2;
    }
    return run_workers("realloc", threads, worker);
}
