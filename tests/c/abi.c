/* The glibc extensions of libengram_malloc.so, checked from C under LD_PRELOAD:
 * freed slabs go back past the decommit budget and malloc_trim returns memory for
 * real (RSS drops), mallinfo2/mallinfo report real
 * figures, mallopt refuses honestly. Exit 0 on success, 1 with a message otherwise. */
#define _GNU_SOURCE
#include <errno.h>
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static long rss_kib(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long v = -1;
    if (!f) return -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld", &v) == 1) break;
    fclose(f);
    return v;
}

static int fail(const char *what) {
    fprintf(stderr, "abi: %s\n", what);
    return 1;
}

/* A fragmented heap: ~100 MiB of blocks, every 64th kept. No slab empties,
 * yet most pages hold only free slots: malloc_trim gives those back (glibc's
 * does too), the kept blocks keep their contents, and the freed slots are
 * handed out again, zero for calloc. */
static int fragmented_trim(void) {
    enum { N = 200000, SIZE = 512, KEEP = 64 };
    static unsigned char *blocks[N];
    for (int i = 0; i < N; i++) {
        blocks[i] = malloc(SIZE);
        if (!blocks[i]) return fail("malloc failed");
        memset(blocks[i], (unsigned char)(i | 1), SIZE);
    }
    long rss_full = rss_kib();
    for (int i = 0; i < N; i++)
        if (i % KEEP != 0) free(blocks[i]);
    long rss_freed = rss_kib();
    if (malloc_trim(0) != 1) return fail("malloc_trim(0) released nothing from a fragmented heap");
    long rss_trimmed = rss_kib();
    fprintf(stderr, "abi: fragmented: rss %ld KiB -> %ld KiB after freeing 63 of 64 -> %ld KiB after trim\n",
            rss_full, rss_freed, rss_trimmed);
    if (rss_trimmed > rss_freed - 60 * 1024)
        return fail("malloc_trim kept the free pages of partly used slabs");
    for (int i = 0; i < N; i += KEEP)
        for (int k = 0; k < SIZE; k++)
            if (blocks[i][k] != (unsigned char)(i | 1)) return fail("a kept block lost its contents to malloc_trim");
    for (int i = 0; i < N; i++) {
        if (i % KEEP == 0) continue;
        blocks[i] = (i & 1) ? calloc(1, SIZE) : malloc(SIZE);
        if (!blocks[i]) return fail("malloc after trim failed");
        if (i & 1)
            for (int k = 0; k < SIZE; k++)
                if (blocks[i][k]) return fail("calloc after trim returned a non-zero byte");
        memset(blocks[i], 7, SIZE);
    }
    for (int i = 0; i < N; i++) free(blocks[i]);
    return 0;
}

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);
extern void *__libc_valloc(size_t);
extern void *__libc_pvalloc(size_t);
extern void __libc_free(void *);

/* glibc's internal names reach the same heap: a block from one family is
 * freed by the other (a glibc pointer in engram's free aborted as invalid,
 * an engram block in glibc's free crashed inside glibc). */
static int libc_names(void) {
    void *volatile a = __libc_malloc(100);
    if (!a || malloc_usable_size(a) < 100) return fail("__libc_malloc");
    memset(a, 1, 100);
    free(a);
    void *volatile b = malloc(100);
    if (!b) return fail("malloc failed");
    memset(b, 2, 100);
    b = __libc_realloc(b, 5000);
    if (!b || ((unsigned char *)b)[99] != 2) return fail("__libc_realloc lost the contents");
    __libc_free(b);
    unsigned char *volatile c = __libc_calloc(10, 10);
    if (!c || c[0] != 0 || c[99] != 0) return fail("__libc_calloc");
    __libc_free(c);
    void *volatile d = __libc_memalign(256, 100);
    void *volatile e = __libc_valloc(100);
    void *volatile f = __libc_pvalloc(100);
    if (!d || (uintptr_t)d % 256 || !e || (uintptr_t)e % 4096 || !f || (uintptr_t)f % 4096)
        return fail("__libc_memalign / valloc / pvalloc alignment");
    free(d);
    __libc_free(e);
    free(f);
    return 0;
}

/* malloc_stats and malloc_info report engram's heap (left to glibc they
 * reported glibc's own, unused arena: in use 0 whatever the program held). */
static int stats_and_info(void) {
    enum { N = 1000 };
    static void *held[N];
    for (int i = 0; i < N; i++) {
        held[i] = malloc(1000);
        if (!held[i]) return fail("malloc failed");
    }
    char *buf = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&buf, &len);
    if (!mem) return fail("open_memstream");
    if (malloc_info(0, mem) != 0) return fail("malloc_info(0) failed");
    fclose(mem);
    const char *inuse = buf ? strstr(buf, "<total type=\"inuse\" size=\"") : NULL;
    if (!inuse || !strstr(buf, "<malloc version=\"engram-1\">") || !strstr(buf, "</malloc>"))
        return fail("malloc_info: not engram's XML");
    if (strtoull(inuse + strlen("<total type=\"inuse\" size=\""), NULL, 10) < (unsigned long long)N * 1000)
        return fail("malloc_info: in-use size below what the program holds");
    free(buf);
    if (malloc_info(1, stdout) != -1 || errno != EINVAL) return fail("malloc_info(1) accepted");
    /* malloc_stats writes to stderr: catch it in a file. */
    FILE *tmp = tmpfile();
    if (!tmp) return fail("tmpfile");
    fflush(stderr);
    int saved = dup(2);
    dup2(fileno(tmp), 2);
    malloc_stats();
    dup2(saved, 2);
    close(saved);
    char text[1024] = {0};
    rewind(tmp);
    size_t got = fread(text, 1, sizeof text - 1, tmp);
    fclose(tmp);
    char *row = got ? strstr(text, "Total (incl. mmap):\nsystem bytes     = ") : NULL;
    if (!strstr(text, "Arena 0 (engram slabs):") || !row) return fail("malloc_stats: not engram's figures");
    char *used = strstr(row, "in use bytes     = ");
    if (!used || strtoull(used + strlen("in use bytes     = "), NULL, 10) < (unsigned long long)N * 1000)
        return fail("malloc_stats: in use below what the program holds");
    for (int i = 0; i < N; i++) free(held[i]);
    return 0;
}

int main(void) {
    if (libc_names()) return 1;
    if (stats_and_info()) return 1;
    enum { N = 200000, SIZE = 512 };
    static void *blocks[N];
    struct mallinfo2 before = mallinfo2();
    for (int i = 0; i < N; i++) {
        blocks[i] = malloc(SIZE);
        if (!blocks[i]) return fail("malloc failed");
        memset(blocks[i], 0x5a, SIZE);
    }
    struct mallinfo2 during = mallinfo2();
    /* ~100 MiB in use must show in uordblks and arena. */
    if (during.uordblks < before.uordblks + (size_t)N * SIZE)
        return fail("mallinfo2.uordblks did not grow by what was allocated");
    if (during.arena < during.uordblks) return fail("mallinfo2.arena < uordblks");
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
    struct mallinfo old = mallinfo(); /* still exported: old programs call it */
#pragma GCC diagnostic pop
    if (old.uordblks <= 0) return fail("mallinfo.uordblks not positive");
    long rss_full = rss_kib();
    for (int i = 0; i < N; i++) free(blocks[i]);
    /* Empty slabs past the `decommit` budget (2 per class) go back as they
     * empty, without a trim. */
    long rss_freed = rss_kib();
    fprintf(stderr, "abi: rss %ld KiB -> %ld KiB after free, before trim\n", rss_full, rss_freed);
    if (rss_freed > rss_full - 60 * 1024) return fail("freeing ~100 MiB of blocks gave nothing back before malloc_trim");
    if (malloc_trim(0) != 1) return fail("malloc_trim(0) released nothing");
    long rss_trimmed = rss_kib();
    struct mallinfo2 after = mallinfo2();
    fprintf(stderr, "abi: rss %ld KiB -> %ld KiB after free+trim; uordblks %zu -> %zu\n",
            rss_full, rss_trimmed, during.uordblks, after.uordblks);
    if (rss_trimmed > rss_full - 80 * 1024) return fail("malloc_trim did not return the freed memory");
    if (after.uordblks >= during.uordblks / 4) return fail("uordblks still high after free");
    /* The trimmed slabs leave arena too (it once only grew). */
    if (after.arena >= during.arena / 4) return fail("mallinfo2.arena still high after free+trim");
    /* A large block is glibc's mmapped chunk: in hblkhd, not in arena or uordblks. */
    void *big = malloc(10 << 20);
    if (!big) return fail("malloc(10 MiB) failed");
    memset(big, 1, 10 << 20);
    struct mallinfo2 with_big = mallinfo2();
    if (with_big.hblks < 1 || with_big.hblkhd < (size_t)10 << 20)
        return fail("a 10 MiB block is not in hblks/hblkhd");
    if (with_big.uordblks >= after.uordblks + (1 << 20) || with_big.arena >= after.arena + (1 << 20))
        return fail("a 10 MiB block is counted in uordblks or arena as well as hblkhd");
    free(big);
    if (mallopt(M_MMAP_THRESHOLD, 1 << 20) != 0) return fail("mallopt claimed to apply a glibc knob");
    return fragmented_trim();
}
