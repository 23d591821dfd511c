/*
 * stress.c: multi-threaded allocator stress, one mode per run.
 *
 * Usage: stress <mode>     modes: ring churn fork realloc late
 *
 * Driven by tests/tests/stress.rs under LD_PRELOAD=libengram_malloc.so; every
 * mode must pass with any correct malloc (glibc, jemalloc, ...).
 *
 *   ring     4 producers and 4 consumers pass blocks of 16 B .. 256 KiB through
 *            a lock-protected ring buffer; consumers verify each block's
 *            pattern, sometimes realloc it, and free it (cross-thread frees).
 *   churn    hundreds of short-lived threads allocate, publish part of their
 *            blocks in a shared pool and exit; reaper threads and later
 *            threads verify and free what the dead threads left.
 *   fork     worker threads allocate and free without pause while the main
 *            thread forks 20 times; each child allocates, frees, starts a
 *            thread and exits 0. alarm() turns a deadlock into a failure.
 *   realloc  8 threads grow and shrink blocks through realloc chains across
 *            the small, 128 KiB and large ranges, checking the kept prefix.
 *   late     5,000 threads, one after another, each allocating and freeing
 *            in a pthread key destructor that runs after the allocator's
 *            own (its thread-cache flush); the heap (mallinfo2's arena)
 *            must not grow with the number of threads.
 *
 * Every block carries a pattern derived from a per-block seed; a mismatch, a
 * NULL from malloc or a failed child prints why and exits 2.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#define KIB ((size_t)1024)

static void die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("stress: FAILED: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    _exit(2);
}

/* ------------------------------------------------------------- helpers */

static uint64_t rng_next(uint64_t *s) {
    /* xorshift64* */
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545F4914F6CDD1Dull;
}

static uint64_t rng_seed(uint64_t a, uint64_t b) {
    uint64_t s = (a + 1) * 0x9E3779B97F4A7C15ull ^ (b + 7) * 0xC2B2AE3D27D4EB4Full;
    return s ? s : 1;
}

/* 60% 16..256 B, 25% ..4 KiB, 10% ..64 KiB, 5% ..256 KiB (past the 128 KiB
 * small-class limit). */
static size_t pick_size(uint64_t *s) {
    uint64_t r = rng_next(s);
    unsigned pct = (unsigned)(r % 100);
    uint64_t v = r >> 8;
    if (pct < 60) {
        return 16 + v % 241;
    } else if (pct < 85) {
        return 257 + v % (4 * KIB - 256);
    } else if (pct < 95) {
        return 4 * KIB + 1 + v % (60 * KIB);
    }
    return 64 * KIB + 1 + v % (192 * KIB);
}

static unsigned char pattern_byte(uint64_t seed, size_t i) {
    return (unsigned char)((unsigned char)seed ^ (unsigned char)(i * 13) ^ (unsigned char)(i >> 8) ^
                           (unsigned char)(seed >> 8));
}

static void fill_range(unsigned char *p, size_t from, size_t to, uint64_t seed) {
    for (size_t i = from; i < to; i++) {
        p[i] = pattern_byte(seed, i);
    }
}

static void check_range(const unsigned char *p, size_t from, size_t to, uint64_t seed,
                        const char *where) {
    for (size_t i = from; i < to; i++) {
        if (p[i] != pattern_byte(seed, i)) {
            die("%s: block %p byte %zu is 0x%02x, expected 0x%02x", where, (const void *)p, i, p[i],
                pattern_byte(seed, i));
        }
    }
}

static unsigned char *alloc_filled(size_t n, uint64_t seed) {
    unsigned char *p = malloc(n);
    if (p == NULL) {
        die("malloc(%zu) returned NULL", n);
    }
    fill_range(p, 0, n, seed);
    return p;
}

struct block {
    unsigned char *p;
    size_t n;
    uint64_t seed;
};

static void start(pthread_t *t, void *(*f)(void *), void *arg) {
    int rc = pthread_create(t, NULL, f, arg);
    if (rc != 0) {
        die("pthread_create: %s", strerror(rc));
    }
}

/* ---------------------------------------------------------------- ring */

#define RING_CAP 512
#define PRODUCERS 4
#define CONSUMERS 4
#define ITEMS_PER_PRODUCER 20000

static struct {
    pthread_mutex_t lock;
    pthread_cond_t not_full;
    pthread_cond_t not_empty;
    struct block items[RING_CAP];
    size_t head;
    size_t len;
    int producers_left;
} ring = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, PTHREAD_COND_INITIALIZER, {{0}}, 0, 0,
          PRODUCERS};

static void ring_push(struct block b) {
    pthread_mutex_lock(&ring.lock);
    while (ring.len == RING_CAP) {
        pthread_cond_wait(&ring.not_full, &ring.lock);
    }
    ring.items[(ring.head + ring.len) % RING_CAP] = b;
    ring.len++;
    pthread_cond_signal(&ring.not_empty);
    pthread_mutex_unlock(&ring.lock);
}

/* Returns 0 once every producer is done and the ring is empty. */
static int ring_pop(struct block *out) {
    pthread_mutex_lock(&ring.lock);
    while (ring.len == 0 && ring.producers_left > 0) {
        pthread_cond_wait(&ring.not_empty, &ring.lock);
    }
    if (ring.len == 0) {
        pthread_mutex_unlock(&ring.lock);
        return 0;
    }
    *out = ring.items[ring.head];
    ring.head = (ring.head + 1) % RING_CAP;
    ring.len--;
    pthread_cond_signal(&ring.not_full);
    pthread_mutex_unlock(&ring.lock);
    return 1;
}

static void *producer(void *arg) {
    uint64_t id = (uint64_t)(uintptr_t)arg;
    uint64_t s = rng_seed(id, 1);
    struct block local[16] = {{0}};
    for (int i = 0; i < ITEMS_PER_PRODUCER; i++) {
        size_t n = pick_size(&s);
        uint64_t seed = rng_next(&s);
        struct block b = {alloc_filled(n, seed), n, seed};
        if (rng_next(&s) % 4 == 0) {
            /* Some blocks stay with their owner for a while: local frees mixed
             * with the remote ones. */
            struct block *slot = &local[rng_next(&s) % 16];
            if (slot->p != NULL) {
                check_range(slot->p, 0, slot->n, slot->seed, "producer");
                free(slot->p);
            }
            *slot = b;
        } else {
            ring_push(b);
        }
    }
    for (int i = 0; i < 16; i++) {
        if (local[i].p != NULL) {
            check_range(local[i].p, 0, local[i].n, local[i].seed, "producer");
            free(local[i].p);
        }
    }
    pthread_mutex_lock(&ring.lock);
    ring.producers_left--;
    pthread_cond_broadcast(&ring.not_empty);
    pthread_mutex_unlock(&ring.lock);
    return NULL;
}

static void *consumer(void *arg) {
    uint64_t s = rng_seed((uint64_t)(uintptr_t)arg, 2);
    struct block b;
    while (ring_pop(&b)) {
        check_range(b.p, 0, b.n, b.seed, "consumer");
        if (rng_next(&s) % 8 == 0) {
            /* realloc a block another thread allocated */
            size_t m = pick_size(&s);
            unsigned char *q = realloc(b.p, m);
            if (q == NULL) {
                die("realloc(%zu -> %zu) returned NULL", b.n, m);
            }
            size_t keep = b.n < m ? b.n : m;
            check_range(q, 0, keep, b.seed, "consumer realloc");
            fill_range(q, keep, m, b.seed);
            check_range(q, 0, m, b.seed, "consumer realloc tail");
            b.p = q;
            b.n = m;
        }
        free(b.p);
    }
    return NULL;
}

static int mode_ring(void) {
    pthread_t p[PRODUCERS], c[CONSUMERS];
    for (uintptr_t i = 0; i < CONSUMERS; i++) {
        start(&c[i], consumer, (void *)i);
    }
    for (uintptr_t i = 0; i < PRODUCERS; i++) {
        start(&p[i], producer, (void *)i);
    }
    for (int i = 0; i < PRODUCERS; i++) {
        pthread_join(p[i], NULL);
    }
    for (int i = 0; i < CONSUMERS; i++) {
        pthread_join(c[i], NULL);
    }
    if (ring.len != 0) {
        die("ring not drained: %zu left", ring.len);
    }
    return 0;
}

/* --------------------------------------------------------------- churn */

#define POOL_CAP 4096
#define WAVES 40
#define WAVE_THREADS 12
#define REAPERS 2

static struct {
    pthread_mutex_t lock;
    struct block items[POOL_CAP];
    size_t len;
    atomic_int stop;
} pool = {PTHREAD_MUTEX_INITIALIZER, {{0}}, 0, 0};

/* Takes a random block out of the pool; 0 if it is empty. */
static int pool_take(uint64_t *s, struct block *out) {
    pthread_mutex_lock(&pool.lock);
    if (pool.len == 0) {
        pthread_mutex_unlock(&pool.lock);
        return 0;
    }
    size_t i = (size_t)(rng_next(s) % pool.len);
    *out = pool.items[i];
    pool.items[i] = pool.items[--pool.len];
    pthread_mutex_unlock(&pool.lock);
    return 1;
}

/* Puts a block in the pool; 0 if it is full (the caller keeps the block). */
static int pool_put(struct block b) {
    pthread_mutex_lock(&pool.lock);
    int ok = pool.len < POOL_CAP;
    if (ok) {
        pool.items[pool.len++] = b;
    }
    pthread_mutex_unlock(&pool.lock);
    return ok;
}

static void release(struct block b, const char *who) {
    check_range(b.p, 0, b.n, b.seed, who);
    free(b.p);
}

static void *short_lived(void *arg) {
    uint64_t s = rng_seed((uint64_t)(uintptr_t)arg, 3);
    struct block mine[32];
    for (int i = 0; i < 32; i++) {
        size_t n = pick_size(&s);
        uint64_t seed = rng_next(&s);
        mine[i] = (struct block){alloc_filled(n, seed), n, seed};
    }
    /* Free some of what dead threads left behind. */
    for (int i = 0; i < 12; i++) {
        struct block b;
        if (pool_take(&s, &b)) {
            release(b, "short-lived thread");
        }
    }
    /* Publish three quarters, free the rest here, then exit: the published
     * blocks outlive the thread that allocated them. */
    for (int i = 0; i < 32; i++) {
        if (i % 4 == 0 || !pool_put(mine[i])) {
            release(mine[i], "short-lived thread (own)");
        }
    }
    return NULL;
}

static void *reaper(void *arg) {
    uint64_t s = rng_seed((uint64_t)(uintptr_t)arg, 4);
    while (!atomic_load(&pool.stop)) {
        struct block b;
        if (pool_take(&s, &b)) {
            release(b, "reaper");
        } else {
            sched_yield();
        }
    }
    return NULL;
}

static int mode_churn(void) {
    pthread_t r[REAPERS];
    for (uintptr_t i = 0; i < REAPERS; i++) {
        start(&r[i], reaper, (void *)i);
    }
    uintptr_t id = 0;
    for (int w = 0; w < WAVES; w++) {
        pthread_t t[WAVE_THREADS];
        for (int i = 0; i < WAVE_THREADS; i++) {
            start(&t[i], short_lived, (void *)id++);
        }
        /* Every other wave is detached: those threads exit on their own,
         * with nobody joining them, while the next wave runs. */
        for (int i = 0; i < WAVE_THREADS; i++) {
            if (w % 2 == 0) {
                pthread_join(t[i], NULL);
            } else {
                pthread_detach(t[i]);
            }
        }
    }
    /* A last joined wave after the detached ones. */
    pthread_t t[WAVE_THREADS];
    for (int i = 0; i < WAVE_THREADS; i++) {
        start(&t[i], short_lived, (void *)id++);
    }
    for (int i = 0; i < WAVE_THREADS; i++) {
        pthread_join(t[i], NULL);
    }
    atomic_store(&pool.stop, 1);
    for (int i = 0; i < REAPERS; i++) {
        pthread_join(r[i], NULL);
    }
    /* Give detached threads of the last detached wave time to finish, then
     * drain: what is left was allocated by threads that are gone. */
    usleep(100 * 1000);
    uint64_t s = 5;
    struct block b;
    while (pool_take(&s, &b)) {
        release(b, "main");
    }
    return 0;
}

/* ---------------------------------------------------------------- fork */

#define FORKS 20
#define FORK_WORKERS 6

static atomic_int fork_stop;

static void *fork_worker(void *arg) {
    uint64_t s = rng_seed((uint64_t)(uintptr_t)arg, 6);
    struct block held[64] = {{0}};
    while (!atomic_load(&fork_stop)) {
        struct block *b = &held[rng_next(&s) % 64];
        if (b->p != NULL) {
            release(*b, "fork worker");
            b->p = NULL;
        } else {
            size_t n = pick_size(&s);
            if (rng_next(&s) % 64 == 0) {
                n = 512 * KIB + rng_next(&s) % (512 * KIB); /* large blocks too */
            }
            uint64_t seed = rng_next(&s);
            *b = (struct block){alloc_filled(n, seed), n, seed};
        }
    }
    for (int i = 0; i < 64; i++) {
        if (held[i].p != NULL) {
            release(held[i], "fork worker");
        }
    }
    return NULL;
}

static void *child_thread(void *arg) {
    uint64_t s = rng_seed((uint64_t)(uintptr_t)arg, 7);
    for (int i = 0; i < 500; i++) {
        size_t n = pick_size(&s);
        uint64_t seed = rng_next(&s);
        release((struct block){alloc_filled(n, seed), n, seed}, "child thread");
    }
    return NULL;
}

static void child_body(int round) {
    alarm(20);
    uint64_t s = rng_seed((uint64_t)round, 8);
    struct block held[128];
    for (int i = 0; i < 128; i++) {
        size_t n = pick_size(&s);
        uint64_t seed = rng_next(&s);
        held[i] = (struct block){alloc_filled(n, seed), n, seed};
    }
    pthread_t t;
    start(&t, child_thread, (void *)(uintptr_t)round);
    for (int i = 0; i < 128; i++) {
        release(held[i], "child");
    }
    pthread_join(t, NULL);
    exit(0);
}

static int mode_fork(void) {
    pthread_t w[FORK_WORKERS];
    for (uintptr_t i = 0; i < FORK_WORKERS; i++) {
        start(&w[i], fork_worker, (void *)i);
    }
    for (int round = 0; round < FORKS; round++) {
        usleep(3000);
        pid_t pid = fork();
        if (pid < 0) {
            die("fork: %s", strerror(errno));
        }
        if (pid == 0) {
            child_body(round);
        }
        int status = 0;
        pid_t r;
        do {
            r = waitpid(pid, &status, 0);
        } while (r < 0 && errno == EINTR);
        if (r != pid) {
            die("waitpid: %s", strerror(errno));
        }
        if (WIFSIGNALED(status)) {
            die("fork round %d: child died of signal %d%s", round, WTERMSIG(status),
                WTERMSIG(status) == SIGALRM ? " (deadlock: alarm fired)" : "");
        }
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            die("fork round %d: child exited with %d", round, WEXITSTATUS(status));
        }
    }
    atomic_store(&fork_stop, 1);
    for (int i = 0; i < FORK_WORKERS; i++) {
        pthread_join(w[i], NULL);
    }
    return 0;
}

/* ------------------------------------------------------------- realloc */

#define REALLOC_THREADS 8
#define REALLOC_OPS 4000
#define REALLOC_SLOTS 32

static size_t next_size(uint64_t *s, size_t cur) {
    uint64_t r = rng_next(s) % 10;
    size_t n;
    if (r < 3) {
        n = cur * 2 + 1; /* grow */
    } else if (r < 6) {
        n = cur / 2 + 1; /* shrink */
    } else if (r < 7) {
        n = 128 * KIB - 8 + rng_next(s) % 16; /* the small/large boundary */
    } else if (r < 8) {
        n = cur; /* same size */
    } else {
        n = pick_size(s);
    }
    return n > 2048 * KIB ? 1 + rng_next(s) % 64 : n;
}

static void *realloc_worker(void *arg) {
    uint64_t s = rng_seed((uint64_t)(uintptr_t)arg, 9);
    struct block b[REALLOC_SLOTS] = {{0}};
    for (int op = 0; op < REALLOC_OPS; op++) {
        struct block *x = &b[rng_next(&s) % REALLOC_SLOTS];
        if (x->p == NULL) {
            size_t n = pick_size(&s);
            uint64_t seed = rng_next(&s);
            /* realloc(NULL, n) starts a chain */
            unsigned char *p = realloc(NULL, n);
            if (p == NULL) {
                die("realloc(NULL, %zu) returned NULL", n);
            }
            fill_range(p, 0, n, seed);
            *x = (struct block){p, n, seed};
        } else if (rng_next(&s) % 16 == 0) {
            release(*x, "realloc chain end");
            x->p = NULL;
        } else {
            size_t m = next_size(&s, x->n);
            unsigned char *q = realloc(x->p, m);
            if (q == NULL) {
                die("realloc(%zu -> %zu) returned NULL", x->n, m);
            }
            size_t keep = x->n < m ? x->n : m;
            check_range(q, 0, keep, x->seed, "realloc prefix");
            fill_range(q, keep, m, x->seed);
            x->p = q;
            x->n = m;
        }
    }
    for (int i = 0; i < REALLOC_SLOTS; i++) {
        if (b[i].p != NULL) {
            release(b[i], "realloc final");
        }
    }
    return NULL;
}

static int mode_realloc(void) {
    pthread_t t[REALLOC_THREADS];
    for (uintptr_t i = 0; i < REALLOC_THREADS; i++) {
        start(&t[i], realloc_worker, (void *)i);
    }
    for (int i = 0; i < REALLOC_THREADS; i++) {
        pthread_join(t[i], NULL);
    }
    return 0;
}

/* ---------------------------------------------------------------- late */

#define LATE_THREADS 5000

static pthread_key_t late_key;

/* Runs after the allocator's thread-exit flush: keys' destructors run in key
 * order, and the allocator's key is made before this one. */
static void late_destructor(void *v) {
    (void)v;
    void *volatile p[64];
    for (int r = 0; r < 8; r++) {
        for (int i = 0; i < 64; i++) {
            p[i] = malloc(16 + (size_t)(i % 8) * 48);
            if (!p[i]) {
                die("late: malloc failed");
            }
        }
        for (int i = 0; i < 64; i++) {
            free(p[i]);
        }
    }
}

static void *late_thread(void *a) {
    (void)a;
    /* The thread's first allocation, before the key is set, so the
     * allocator's destructor is armed first (volatile: a compiler may drop a
     * malloc whose block is only freed). */
    void *volatile q = malloc(100);
    free(q);
    pthread_setspecific(late_key, (void *)1);
    return NULL;
}

static int mode_late(void) {
    void *volatile q = malloc(1);
    free(q);
    if (pthread_key_create(&late_key, late_destructor) != 0) {
        die("late: pthread_key_create failed");
    }
    size_t base = 0;
    for (int i = 0; i < LATE_THREADS; i++) {
        pthread_t t;
        start(&t, late_thread, NULL);
        pthread_join(t, NULL);
        if (i == 200) {
            base = mallinfo2().arena;
        }
    }
    size_t end = mallinfo2().arena;
    if (end > base + (4u << 20)) {
        die("late: heap grew from %zu to %zu bytes over %d threads", base, end,
            LATE_THREADS - 200);
    }
    return 0;
}

int main(int argc, char **argv) {
    struct rlimit no_core = {0, 0};
    setrlimit(RLIMIT_CORE, &no_core);
    /* A deadlock fails the run instead of hanging the test suite. */
    alarm(100);
    const char *mode = argc == 2 ? argv[1] : "";
    int rc;
    if (strcmp(mode, "ring") == 0) {
        rc = mode_ring();
    } else if (strcmp(mode, "churn") == 0) {
        rc = mode_churn();
    } else if (strcmp(mode, "fork") == 0) {
        rc = mode_fork();
    } else if (strcmp(mode, "realloc") == 0) {
        rc = mode_realloc();
    } else if (strcmp(mode, "late") == 0) {
        rc = mode_late();
    } else {
        fprintf(stderr, "usage: stress ring|churn|fork|realloc|late\n");
        return 2;
    }
    if (rc == 0) {
        fprintf(stderr, "stress: %s ok\n", mode);
    }
    return rc;
}
