/* The large-block cache turns on only once large blocks come back.
 *
 * Run under LD_PRELOAD=libengram_malloc.so (defaults). Prints one line:
 *   "first_unmapped=<0|1> reused=<0|1>"
 * first_unmapped: a 1.5 MiB block freed before the program ever asked for a
 *   second one is unmapped at once (no resident copy kept for a reuse that may
 *   never come: mincore on its range fails with ENOMEM);
 * reused: once blocks of that size keep coming back, a freed one is kept and
 *   handed out again (the same address comes back).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define BIG (3u << 19) /* 1.5 MiB: below the cache's 2 MiB floor */

/* Whether the page at address `a` is mapped (mincore fails with ENOMEM on an
 * unmapped range). Takes the address as an integer: the block is freed. */
static int mapped(uintptr_t a)
{
    long page = sysconf(_SC_PAGESIZE);
    unsigned char vec[1];
    void *start = (void *)(a & ~(uintptr_t)(page - 1));
    return mincore(start, (size_t)page, vec) == 0 || errno != ENOMEM;
}

int main(void)
{
    char *p = malloc(BIG);
    if (!p)
        abort();
    memset(p, 1, BIG);
    uintptr_t first = (uintptr_t)p;
    free(p);
    int first_unmapped = !mapped(first);
    int reused = 0;
    uintptr_t last = 0;
    for (int i = 0; i < 8 && !reused; i++) {
        char *q = malloc(BIG);
        if (!q)
            abort();
        reused = (uintptr_t)q == last;
        memset(q, 2, BIG);
        last = (uintptr_t)q;
        free(q);
    }
    printf("first_unmapped=%d reused=%d\n", first_unmapped, reused);
    return 0;
}
