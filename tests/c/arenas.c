/* Remote frees go back to the arena that owns the slab.
 *
 * Run under LD_PRELOAD=libengram_malloc.so with ENGRAM_MALLOC=arenas=N. A cache
 * refills from the arena of the CPU it runs on (CPU number modulo N), so the
 * two threads are pinned to CPUs of different parity: different arenas for any
 * N >= 2. The main thread allocates N blocks; a second thread frees every one of
 * them (remote frees), flushes its cache with malloc_trim(0), then allocates N
 * blocks of the same size itself. Then the main thread allocates N blocks again.
 *
 * Prints "skip: ..." when the affinity mask has no two such CPUs.
 *
 * Prints one line: "overlap=<k> home=<k> disjoint=<0|1>":
 *   overlap  - blocks the second thread got that the main thread had freed
 *              (0 when the freed slots went home to the main thread's arena and
 *              the second thread allocates from its own);
 *   home     - of the main thread's second batch, how many reuse its freed slots;
 *   disjoint - 1 if the two threads' blocks lie in disjoint address ranges.
 */
#define _GNU_SOURCE
#include <malloc.h>
#include <sched.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define N 512
#define SZ 48

static void *mine[N], *theirs[N], *again[N];

static int in(void *p, void **set)
{
    for (int i = 0; i < N; i++)
        if (set[i] == p)
            return 1;
    return 0;
}

static void range(void **set, long n, uintptr_t *lo, uintptr_t *hi)
{
    *lo = UINTPTR_MAX;
    *hi = 0;
    for (long i = 0; i < n; i++) {
        uintptr_t a = (uintptr_t)set[i];
        if (a < *lo)
            *lo = a;
        if (a > *hi)
            *hi = a;
    }
}

static int cpu_a = -1, cpu_b = -1;

static void pin(int cpu)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    if (sched_setaffinity(0, sizeof set, &set) != 0)
        abort();
}

static void *remote(void *arg)
{
    (void)arg;
    pin(cpu_b);
    for (int i = 0; i < N; i++)
        free(mine[i]);
    malloc_trim(0);
    for (int i = 0; i < N; i++) {
        theirs[i] = malloc(SZ);
        if (!theirs[i])
            abort();
        memset(theirs[i], 0x5a, SZ);
    }
    return NULL;
}

/* Mode "fill N": N blocks of 40 bytes (one size class), each filled with its
 * index, checked and freed, twice. Under a small address-space limit each
 * arena owns only a couple of slabs of the class, so the blocks must spill
 * into the other arenas of the class (not into other classes or large
 * blocks). Prints "span_kib=<address span of the blocks>" and "filled=N". */
static int fill(long n)
{
    unsigned **v = malloc((size_t)n * sizeof *v);
    if (!v)
        abort();
    for (int round = 0; round < 2; round++) {
        for (long i = 0; i < n; i++) {
            v[i] = malloc(40);
            if (!v[i]) {
                printf("malloc failed at %ld\n", i);
                return 1;
            }
            for (int k = 0; k < 10; k++)
                v[i][k] = (unsigned)i;
        }
        for (long i = 0; i < n; i++) {
            for (int k = 0; k < 10; k++)
                if (v[i][k] != (unsigned)i) {
                    printf("block %ld damaged\n", i);
                    return 1;
                }
        }
        uintptr_t lo, hi;
        range((void **)v, n, &lo, &hi);
        for (long i = 0; i < n; i++)
            free(v[i]);
        if (round == 1)
            printf("span_kib=%lu\n", (unsigned long)((hi - lo) >> 10));
    }
    free(v);
    printf("filled=%ld\n", n);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc > 2 && strcmp(argv[1], "fill") == 0)
        return fill(atol(argv[2]));
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) != 0)
        abort();
    for (int c = 0; c < CPU_SETSIZE && cpu_b < 0; c++) {
        if (!CPU_ISSET(c, &set))
            continue;
        if (cpu_a < 0)
            cpu_a = c;
        else if ((c - cpu_a) % 2 != 0)
            cpu_b = c;
    }
    if (cpu_b < 0) {
        printf("skip: no two CPUs of different parity in the affinity mask\n");
        return 0;
    }
    pin(cpu_a);
    for (int i = 0; i < N; i++) {
        mine[i] = malloc(SZ);
        if (!mine[i])
            abort();
        memset(mine[i], 0xa5, SZ);
    }
    uintptr_t mlo, mhi, tlo, thi;
    range(mine, N, &mlo, &mhi);
    pthread_t t;
    if (pthread_create(&t, NULL, remote, NULL) != 0 || pthread_join(t, NULL) != 0)
        abort();
    range(theirs, N, &tlo, &thi);
    int overlap = 0, home = 0;
    for (int i = 0; i < N; i++)
        overlap += in(theirs[i], mine);
    for (int i = 0; i < N; i++) {
        again[i] = malloc(SZ);
        if (!again[i])
            abort();
        home += in(again[i], mine);
    }
    int disjoint = thi < mlo || tlo > mhi;
    printf("overlap=%d home=%d disjoint=%d\n", overlap, home, disjoint);
    for (int i = 0; i < N; i++) {
        free(theirs[i]);
        free(again[i]);
    }
    return 0;
}
