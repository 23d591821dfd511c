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

static void range(void **set, uintptr_t *lo, uintptr_t *hi)
{
    *lo = UINTPTR_MAX;
    *hi = 0;
    for (int i = 0; i < N; i++) {
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

int main(void)
{
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
    range(mine, &mlo, &mhi);
    pthread_t t;
    if (pthread_create(&t, NULL, remote, NULL) != 0 || pthread_join(t, NULL) != 0)
        abort();
    range(theirs, &tlo, &thi);
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
