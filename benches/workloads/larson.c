/* larson: a Larson/Krishnan-style server workload.
 *
 *   larson [THREADS=2] [ROUNDS=20] [OPS_PER_ROUND=500000] [SLOTS=1000] [SEED=42]
 *
 * Every thread owns an array of SLOTS blocks. Each operation frees a random
 * slot and allocates a new block of a random size in 16..1000 bytes, touching
 * its first, middle and last byte. The arrays are first filled by the main
 * thread; in round r a fresh set of threads is started and thread i takes over
 * array (i + r) % THREADS, so most frees are of blocks allocated by a thread
 * that has already exited (cross-thread frees, thread churn). Deterministic:
 * each array is worked by one thread per round with a PRNG seeded from
 * (SEED, round, array), so the checksum does not depend on scheduling.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define MIN_SIZE 16
#define MAX_SIZE 1000

struct slot {
    unsigned char *p;
    uint32_t size;
};

struct arena {
    struct slot *slots;
    uint64_t sum;
};

static long g_slots;
static long g_ops;
static uint64_t g_seed;
static struct arena *g_arenas;

struct job {
    int arena;
    int round;
};

static uint64_t splitmix(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static unsigned char *fill(uint32_t size, uint64_t tag) {
    unsigned char *p = malloc(size);
    if (!p) {
        fprintf(stderr, "larson: out of memory\n");
        exit(1);
    }
    unsigned char t = (unsigned char)tag;
    p[0] = t;
    p[size / 2] = (unsigned char)(t + 1);
    p[size - 1] = (unsigned char)(t + 2);
    return p;
}

static uint64_t drain(struct slot *s) {
    uint64_t v = (uint64_t)s->p[0] + s->p[s->size / 2] + s->p[s->size - 1] + s->size;
    free(s->p);
    return v;
}

static void *worker(void *arg) {
    struct job *j = arg;
    struct arena *a = &g_arenas[j->arena];
    uint64_t rng = g_seed ^ ((uint64_t)j->round << 32) ^ (uint64_t)j->arena * 0x5851f42d4c957f2dULL;
    uint64_t sum = 0;
    for (long i = 0; i < g_ops; i++) {
        uint64_t r = splitmix(&rng);
        struct slot *s = &a->slots[r % (uint64_t)g_slots];
        sum += drain(s);
        uint32_t size = MIN_SIZE + (uint32_t)((r >> 32) % (MAX_SIZE - MIN_SIZE + 1));
        s->p = fill(size, r >> 16);
        s->size = size;
    }
    a->sum = a->sum * 31 + sum;
    return NULL;
}

int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : 2;
    int rounds = argc > 2 ? atoi(argv[2]) : 20;
    g_ops = argc > 3 ? atol(argv[3]) : 500000;
    g_slots = argc > 4 ? atol(argv[4]) : 1000;
    g_seed = argc > 5 ? strtoull(argv[5], NULL, 10) : 42;
    if (threads < 1 || rounds < 1 || g_ops < 1 || g_slots < 1) {
        fprintf(stderr, "usage: larson [THREADS] [ROUNDS] [OPS_PER_ROUND] [SLOTS] [SEED]\n");
        return 2;
    }
    g_arenas = calloc((size_t)threads, sizeof *g_arenas);
    uint64_t rng = g_seed;
    for (int t = 0; t < threads; t++) {
        g_arenas[t].slots = calloc((size_t)g_slots, sizeof(struct slot));
        for (long i = 0; i < g_slots; i++) {
            uint64_t r = splitmix(&rng);
            uint32_t size = MIN_SIZE + (uint32_t)(r % (MAX_SIZE - MIN_SIZE + 1));
            g_arenas[t].slots[i].p = fill(size, r >> 16);
            g_arenas[t].slots[i].size = size;
        }
    }
    pthread_t *tids = calloc((size_t)threads, sizeof *tids);
    struct job *jobs = calloc((size_t)threads, sizeof *jobs);
    for (int r = 0; r < rounds; r++) {
        for (int t = 0; t < threads; t++) {
            jobs[t].arena = (t + r) % threads;
            jobs[t].round = r;
            if (pthread_create(&tids[t], NULL, worker, &jobs[t]) != 0) {
                fprintf(stderr, "larson: pthread_create failed\n");
                return 1;
            }
        }
        for (int t = 0; t < threads; t++) pthread_join(tids[t], NULL);
    }
    uint64_t sum = 0;
    for (int t = 0; t < threads; t++) {
        for (long i = 0; i < g_slots; i++) sum += drain(&g_arenas[t].slots[i]);
        sum = sum * 1000003 + g_arenas[t].sum;
        free(g_arenas[t].slots);
    }
    free(tids);
    free(jobs);
    free(g_arenas);
    printf("larson checksum %016llx\n", (unsigned long long)sum);
    return 0;
}
