/* The large-block cache turns on only once large blocks come back.
 *
 * Run under LD_PRELOAD=libengram_malloc.so (defaults). Prints one line:
 *   "first_unmapped=<0|1> cached=<0|1>"
 * first_unmapped: a 1.5 MiB block freed before the program ever asked for a
 *   second one is given back at once (no resident copy kept for a reuse that
 *   may never come: its first page is not resident, whether the range was
 *   unmapped or is kept reserved without memory, as engram keeps the last
 *   given-back ranges to catch a double free);
 * cached: once blocks of that size keep coming back, a freed one stays
 *   resident (mapped) for reuse.
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

/* Whether the page at address `a` is resident (mincore fails with ENOMEM on
 * an unmapped range, and reports a reserved range's pages as not resident).
 * Takes the address as an integer: the block is freed. */
static int resident(uintptr_t a)
{
    long page = sysconf(_SC_PAGESIZE);
    unsigned char vec[1] = {0};
    void *start = (void *)(a & ~(uintptr_t)(page - 1));
    if (mincore(start, (size_t)page, vec) != 0)
        return errno != ENOMEM;
    return vec[0] & 1;
}

/* A BIG block, every page written. */
static char *big_block(int fill)
{
    char *p = malloc(BIG);
    if (!p)
        abort();
    memset(p, fill, BIG);
    return p;
}

int main(void)
{
    char *p = big_block(1);
    uintptr_t first = (uintptr_t)p;
    free(p);
    int first_unmapped = !resident(first);
    /* Blocks of that size keep coming: from the next one on, a freed block must
     * stay resident (cached for reuse). Address equality would prove nothing: a
     * fresh mmap of the same length often lands where the last munmap was. */
    int cached = 0;
    for (int i = 0; i < 8 && !cached; i++) {
        char *q = big_block(2);
        uintptr_t a = (uintptr_t)q;
        free(q);
        cached = resident(a);
    }
    printf("first_unmapped=%d cached=%d\n", first_unmapped, cached);
    return 0;
}
