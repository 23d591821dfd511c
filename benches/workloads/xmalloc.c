/* xmalloc: an xmalloc-test-style producer/consumer workload.
 *
 *   xmalloc [PRODUCERS=1] [CONSUMERS=1] [BLOCKS_PER_PRODUCER=8000000] [SEED=42]
 *
 * Producer threads allocate blocks (mostly 8..256 bytes, one in 64 up to
 * 4 KiB), write a tag into each and hand them in batches of 256 through a
 * bounded shared queue to consumer threads, which check the tags and free the
 * blocks: every free is a cross-thread free. The batch records themselves are
 * malloc'd by the producer and freed by the consumer too. The checksum is a
 * sum over all blocks, so it does not depend on which consumer freed what.
 * One producer and one consumer by default: on a 2-core machine, 2 + 2
 * threads make the run time swing 2-3x with scheduling alone; `xmalloc 2 2
 * 3000000` is the oversubscribed variant.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BATCH 256
#define QUEUE_CAP 64

struct batch {
    int n;
    unsigned char *p[BATCH];
    uint32_t size[BATCH];
};

static struct batch *g_queue[QUEUE_CAP];
static int g_head, g_count, g_producers_left;
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_not_full = PTHREAD_COND_INITIALIZER;
static pthread_cond_t g_not_empty = PTHREAD_COND_INITIALIZER;
static long g_blocks;
static uint64_t g_seed;

static uint64_t splitmix(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static void push(struct batch *b) {
    pthread_mutex_lock(&g_lock);
    while (g_count == QUEUE_CAP) pthread_cond_wait(&g_not_full, &g_lock);
    g_queue[(g_head + g_count) % QUEUE_CAP] = b;
    g_count++;
    pthread_cond_signal(&g_not_empty);
    pthread_mutex_unlock(&g_lock);
}

/* NULL once every producer is done and the queue is empty. */
static struct batch *pop(void) {
    pthread_mutex_lock(&g_lock);
    while (g_count == 0 && g_producers_left > 0) pthread_cond_wait(&g_not_empty, &g_lock);
    struct batch *b = NULL;
    if (g_count > 0) {
        b = g_queue[g_head];
        g_head = (g_head + 1) % QUEUE_CAP;
        g_count--;
        pthread_cond_signal(&g_not_full);
    }
    pthread_mutex_unlock(&g_lock);
    return b;
}

static void *producer(void *arg) {
    uint64_t rng = g_seed * 0x2545f4914f6cdd1dULL + (uint64_t)(uintptr_t)arg;
    struct batch *b = NULL;
    for (long i = 0; i < g_blocks; i++) {
        if (!b) {
            b = malloc(sizeof *b);
            if (!b) abort();
            b->n = 0;
        }
        uint64_t r = splitmix(&rng);
        uint32_t size = (r & 63) == 0 ? 8 + (uint32_t)((r >> 8) % 4089) : 8 + (uint32_t)((r >> 8) % 249);
        unsigned char *p = malloc(size);
        if (!p) {
            fprintf(stderr, "xmalloc: out of memory\n");
            exit(1);
        }
        memset(p, (int)(r >> 40), size < 64 ? size : 64);
        p[size - 1] = (unsigned char)(r >> 48);
        b->p[b->n] = p;
        b->size[b->n] = size;
        if (++b->n == BATCH) {
            push(b);
            b = NULL;
        }
    }
    if (b) push(b);
    pthread_mutex_lock(&g_lock);
    g_producers_left--;
    pthread_cond_broadcast(&g_not_empty);
    pthread_mutex_unlock(&g_lock);
    return NULL;
}

static void *consumer(void *arg) {
    uint64_t *sum = arg;
    struct batch *b;
    while ((b = pop()) != NULL) {
        for (int i = 0; i < b->n; i++) {
            unsigned char *p = b->p[i];
            uint32_t size = b->size[i];
            *sum += (uint64_t)p[0] * 257 + p[size - 1] + size;
            free(p);
        }
        free(b);
    }
    return NULL;
}

int main(int argc, char **argv) {
    int producers = argc > 1 ? atoi(argv[1]) : 1;
    int consumers = argc > 2 ? atoi(argv[2]) : 1;
    g_blocks = argc > 3 ? atol(argv[3]) : 8000000;
    g_seed = argc > 4 ? strtoull(argv[4], NULL, 10) : 42;
    if (producers < 1 || consumers < 1 || g_blocks < 1) {
        fprintf(stderr, "usage: xmalloc [PRODUCERS] [CONSUMERS] [BLOCKS_PER_PRODUCER] [SEED]\n");
        return 2;
    }
    g_producers_left = producers;
    pthread_t *tids = calloc((size_t)(producers + consumers), sizeof *tids);
    uint64_t *sums = calloc((size_t)consumers, sizeof *sums);
    for (int c = 0; c < consumers; c++) pthread_create(&tids[producers + c], NULL, consumer, &sums[c]);
    for (int p = 0; p < producers; p++) pthread_create(&tids[p], NULL, producer, (void *)(uintptr_t)(p + 1));
    for (int t = 0; t < producers + consumers; t++) pthread_join(tids[t], NULL);
    uint64_t sum = 0;
    for (int c = 0; c < consumers; c++) sum += sums[c];
    free(tids);
    free(sums);
    printf("xmalloc checksum %016llx\n", (unsigned long long)sum);
    return 0;
}
