/* large_blocks: repeated malloc / touch / free of large blocks.
 *
 *   large_blocks [THREADS=2] [ITERATIONS=1500] [LIVE=4] [SEED=42]
 *
 * Each thread, ITERATIONS times, allocates a block of 256 KiB .. 8 MiB
 * (log-uniform), fills it (memset, then a distinct byte per 4 KiB page), and
 * keeps it in a ring of LIVE blocks; the block it replaces is read back (one
 * byte per page) and freed. An allocator that unmaps every freed large block
 * pays a page fault per page on every iteration; one that keeps large
 * mappings for reuse does not. Deterministic per thread; the checksum
 * combines threads in order.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"

#define PAGE 4096

struct block {
    unsigned char *p;
    size_t size;
};

static long g_iters;
static int g_live;
static uint64_t g_seed;

static uint64_t splitmix(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static uint64_t release(struct block *b) {
    uint64_t sum = b->size;
    if (!b->p) return 0;
    for (size_t off = 0; off < b->size; off += PAGE) sum += b->p[off];
    sum += b->p[b->size - 1];
    free(b->p);
    b->p = NULL;
    return sum;
}

static void *worker(void *arg) {
    uint64_t *out = arg;
    uint64_t rng = g_seed + *out * 0x9e3779b97f4a7c15ULL;
    struct block *ring = calloc((size_t)g_live, sizeof *ring);
    uint64_t sum = 0;
    for (long i = 0; i < g_iters; i++) {
        uint64_t r = splitmix(&rng);
        /* 256 KiB << 0..4, plus up to the same again: 256 KiB .. 8 MiB */
        size_t base = (size_t)256 * 1024 << (r % 5);
        size_t size = base + (size_t)((r >> 8) % base);
        struct block *b = &ring[i % g_live];
        sum = sum * 31 + release(b);
        b->p = malloc(size);
        if (!b->p) {
            fprintf(stderr, "large_blocks: out of memory\n");
            exit(1);
        }
        b->size = size;
        unsigned char v = (unsigned char)(r >> 40);
        memset(b->p, v, size);
        for (size_t off = 0; off < size; off += PAGE) b->p[off] = v++;
        b->p[size - 1] = v;
    }
    for (int k = 0; k < g_live; k++) sum = sum * 31 + release(&ring[k]);
    free(ring);
    *out = sum;
    return NULL;
}

int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : 2;
    g_iters = argc > 2 ? atol(argv[2]) : 1500;
    g_live = argc > 3 ? atoi(argv[3]) : 4;
    g_seed = argc > 4 ? strtoull(argv[4], NULL, 10) : 42;
    if (threads < 1 || g_iters < 1 || g_live < 1) {
        fprintf(stderr, "usage: large_blocks [THREADS] [ITERATIONS] [LIVE] [SEED]\n");
        return 2;
    }
    return run_workers("large_blocks", threads, worker);
}
