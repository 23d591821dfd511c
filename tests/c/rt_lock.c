/* rt_lock: two SCHED_FIFO threads of different priority share CPU 0 and the
 * allocator's locks.
 *
 * The low-priority thread allocates and frees in bursts that overflow its
 * thread cache (the arena lock, taken to flush and refill) and calls
 * malloc_trim (every lock). The high-priority thread sleeps 100 us at a time
 * and, each time it wakes, preempts the low one, wherever it is, and does the
 * same. When it preempts the low thread inside a lock and then needs that
 * lock, a waiter that only spins and calls sched_yield never lets the holder
 * run again (sched_yield gives the CPU to threads of equal priority only): the
 * program hangs. A waiter that sleeps in the kernel lets the holder finish.
 *
 * The main thread (normal priority, not pinned) watches: it prints
 * "done wakes=N" once the high thread has woken ITERS times, or "hung" and
 * exits 1 after 30 s. Where SCHED_FIFO or CPU 0 is not available it prints
 * "skip: <why>" and exits 0.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define ITERS 2000
#define BURST 300

static atomic_int stop;
static atomic_int wakes;
static atomic_int low_ready;

static void burst(int n, size_t size) {
    void *p[BURST];
    for (int i = 0; i < n; i++) {
        p[i] = malloc(size + (size_t)(i % 7) * 8);
        if (!p[i]) {
            fprintf(stderr, "rt_lock: out of memory\n");
            exit(2);
        }
        memset(p[i], i, 8);
    }
    for (int i = 0; i < n; i++) {
        free(p[i]);
    }
}

/* Pin the calling thread to CPU 0 and make it SCHED_FIFO at `prio`; 0 on
 * success, else an errno. */
static int realtime(int prio) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(0, &set);
    int e = pthread_setaffinity_np(pthread_self(), sizeof set, &set);
    if (e) {
        return e;
    }
    struct sched_param sp = {.sched_priority = prio};
    return pthread_setschedparam(pthread_self(), SCHED_FIFO, &sp);
}

/* realtime(prio), or the whole program ends with a skip line. */
static void realtime_or_skip(int prio) {
    int e = realtime(prio);
    if (e) {
        printf("skip: SCHED_FIFO on CPU 0: %s\n", strerror(e));
        fflush(stdout);
        _exit(0);
    }
}

static void *low(void *arg) {
    (void)arg;
    realtime_or_skip(10);
    atomic_store(&low_ready, 1);
    unsigned n = 0;
    while (!atomic_load(&stop)) {
        burst(BURST, 48);
        burst(BURST, 200);
        if (++n % 8 == 0) {
            malloc_trim(0);
        }
    }
    return NULL;
}

static void *high(void *arg) {
    (void)arg;
    realtime_or_skip(20);
    struct timespec nap = {0, 100 * 1000};
    for (int i = 0; i < ITERS; i++) {
        nanosleep(&nap, NULL);
        burst(BURST, 48);
        burst(BURST, 200);
        if (i % 4 == 0) {
            malloc_trim(0);
        }
        atomic_fetch_add(&wakes, 1);
    }
    atomic_store(&stop, 1);
    return NULL;
}

int main(void) {
    if (sysconf(_SC_NPROCESSORS_ONLN) < 2) {
        /* The watcher needs a CPU the two real-time threads do not hold. */
        printf("skip: one CPU\n");
        return 0;
    }
    pthread_t lo, hi;
    if (pthread_create(&lo, NULL, low, NULL) != 0) {
        perror("pthread_create");
        return 2;
    }
    while (!atomic_load(&low_ready)) {
        usleep(1000);
    }
    if (pthread_create(&hi, NULL, high, NULL) != 0) {
        perror("pthread_create");
        return 2;
    }
    for (int t = 0; t < 3000 && !atomic_load(&stop); t++) {
        usleep(10 * 1000);
    }
    if (!atomic_load(&stop)) {
        printf("hung wakes=%d\n", atomic_load(&wakes));
        fflush(stdout);
        _exit(1);
    }
    pthread_join(hi, NULL);
    pthread_join(lo, NULL);
    printf("done wakes=%d\n", atomic_load(&wakes));
    return 0;
}
