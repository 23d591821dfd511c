/*
 * misuse.c: one allocator misuse (or one guarantee) per run.
 *
 * Usage: misuse <case>
 *
 * Driven by tests/tests/misuse.rs, which runs every case in its own child
 * process under LD_PRELOAD=libengram_malloc.so and checks how it ended:
 *
 *   - misuse cases must die of SIGABRT after engram-malloc printed
 *     "engram-malloc: fatal: <kind> in <op>() at 0x<addr>"
 *     (docs/ALLOC_CONTRACT.md). Before the misuse the program prints
 *     "misuse: ptr=0x<addr>" so the test can compare the reported address.
 *     If the allocator lets the misuse pass, the program says so and exits 3.
 *   - guard cases must die of SIGSEGV; surviving the bad access exits 3.
 *   - positive cases exit 0; a broken guarantee prints why and exits 1.
 *
 * Exit codes: 0 ok, 1 a checked guarantee failed, 2 usage, 3 a misuse or bad
 * access went unnoticed, 4 setup failed (a slot never came back, mmap
 * failed), 5 a symbol the case needs is not exported.
 *
 * Between a case's setup and its misuse the program only writes to stderr,
 * which is unbuffered and does not allocate, so the allocator's state is
 * what the case built.
 * Pointers pass through launder(), and frees that a later misuse follows go
 * through free_v(), to keep the compiler from proving the misuse
 * (-Wfree-nonheap-object, -Wuse-after-free, -Warray-bounds) or optimising it
 * away.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#define KIB ((size_t)1024)
#define MIB (KIB * KIB)

/* Enough live blocks of one size to fill several slabs. */
#define NBLOCKS 4096
/* Upper bound of allocations made while waiting for a freed slot to return. */
#define MAX_HOLD ((size_t)1 << 18)

static void *volatile launder_slot;
static volatile size_t size_slot;

/* Hides where a pointer came from, so the compiler can't reason about it. */
static void *launder(void *p) {
    launder_slot = p;
    return launder_slot;
}

/* Hides a size from the compiler (-Walloc-size-larger-than). */
static size_t opaque(size_t n) {
    size_slot = n;
    return size_slot;
}

/*
 * The allocator's functions called through volatile pointers: gcc's
 * -Wuse-after-free can't tell that a later use follows a free or realloc.
 */
static void (*volatile free_v)(void *) = free;
static void *(*volatile realloc_v)(void *, size_t) = realloc;
static void *(*volatile reallocarray_v)(void *, size_t, size_t) = reallocarray;

static void announce(const void *p) {
    fprintf(stderr, "misuse: ptr=0x%lx\n", (unsigned long)(uintptr_t)p);
}

static int fail(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("misuse: FAILED: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

static int survived(const char *what) {
    fprintf(stderr, "misuse: NOT DETECTED: %s\n", what);
    exit(3);
}

static int setup_failed(const char *what) {
    fprintf(stderr, "misuse: SETUP FAILED: %s\n", what);
    exit(4);
}

static void *xmalloc(size_t n) {
    void *p = malloc(n);
    if (p == NULL) {
        setup_failed("malloc returned NULL");
    }
    return p;
}

/* Memory the allocator never saw, for bookkeeping and "foreign" pointers. */
static void *map_foreign(size_t n) {
    void *m = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) {
        setup_failed("mmap");
    }
    return m;
}

static void *need_symbol(const char *name) {
    void *f = dlsym(RTLD_DEFAULT, name);
    if (f == NULL) {
        fprintf(stderr, "misuse: %s is not exported by the allocator in use\n", name);
        exit(5);
    }
    return f;
}

static int all_bytes(const unsigned char *p, size_t n, unsigned char v) {
    for (size_t i = 0; i < n; i++) {
        if (p[i] != v) {
            return 0;
        }
    }
    return 1;
}

/*
 * A heap of NBLOCKS live blocks of `size` bytes, each filled with 0xAA, and
 * `victim` = the block in the middle. Keeping every other block live later
 * on keeps the victim's slab from ever being empty, so it is never
 * decommitted (which would legitimately erase a write-after-free).
 */
struct heap {
    size_t size;
    void **blocks;
    unsigned char *victim;
};

static struct heap heap_new(size_t size) {
    struct heap h;
    h.size = size;
    h.blocks = map_foreign(NBLOCKS * sizeof(void *));
    for (size_t i = 0; i < NBLOCKS; i++) {
        h.blocks[i] = xmalloc(size);
        memset(h.blocks[i], 0xAA, size);
    }
    h.victim = h.blocks[NBLOCKS / 2];
    return h;
}

/* Frees the odd-indexed blocks: NBLOCKS/2 frees after the victim's, which
 * pushes it out of any quarantine holding fewer slots than that. */
static void heap_free_odd(struct heap *h) {
    for (size_t i = 1; i < NBLOCKS; i += 2) {
        if (i != NBLOCKS / 2) {
            free(h->blocks[i]);
            h->blocks[i] = NULL;
        }
    }
}

/*
 * Allocates (and keeps) blocks of `size` until `target` is handed out or
 * `limit` allocations were made. Returns the number of allocations it took,
 * or 0 if target never came back. If `check_zero`, every block handed out
 * must read as zero (zero-on-free: reused slots carry no old data).
 */
static size_t hold_until(const void *target, size_t size, size_t limit, int check_zero) {
    void **held = map_foreign(limit * sizeof(void *));
    size_t found = 0;
    for (size_t i = 0; i < limit; i++) {
        unsigned char *q = xmalloc(size);
        held[i] = q;
        if (check_zero && !all_bytes(q, size, 0)) {
            fail("malloc(%zu) #%zu returned %p holding old data", size, i, (void *)q);
        }
        if (q == target) {
            found = i + 1;
            break;
        }
    }
    /* The held blocks stay live: the process exits right after. */
    return found;
}


/* The mapping of /proc/self/maps that holds address `a`: its bounds and its
 * permissions ("rw-p", "---p", ...). Returns 0 if no mapping holds it. */
static int mapping_of(uintptr_t a, uintptr_t *lo, uintptr_t *hi, char perms[5]) {
    FILE *f = fopen("/proc/self/maps", "r");
    if (f == NULL) {
        setup_failed("opening /proc/self/maps");
    }
    char line[512];
    int found = 0;
    while (fgets(line, sizeof line, f) != NULL) {
        unsigned long l, h;
        char p[5];
        if (sscanf(line, "%lx-%lx %4s", &l, &h, p) == 3 && l <= a && a < h) {
            *lo = l;
            *hi = h;
            memcpy(perms, p, 5);
            found = 1;
            break;
        }
    }
    fclose(f);
    return found;
}

/* Blocks of this size sit in slabs of a few dozen slots (a 64 KiB class), so
 * SLAB_BLOCKS of them span several slabs. */
#define SLAB_SIZE 60000
#define SLAB_BLOCKS 100

/* Allocates SLAB_BLOCKS blocks of SLAB_SIZE and returns how many distinct
 * read-write mappings hold them; *low and *high get the lowest and highest
 * block. Every mapping must be followed by an inaccessible page when
 * `want_guard`. */
static size_t slab_mappings(int want_guard, unsigned char **low, unsigned char **high) {
    uintptr_t his[SLAB_BLOCKS];
    unsigned char *blocks[SLAB_BLOCKS];
    size_t n = 0;
    *low = NULL;
    *high = NULL;
    /* All allocated first: a mapping read while later slabs were still to be
     * committed would end short of where it ends once they are. */
    for (size_t i = 0; i < SLAB_BLOCKS; i++) {
        blocks[i] = xmalloc(SLAB_SIZE);
    }
    for (size_t i = 0; i < SLAB_BLOCKS; i++) {
        unsigned char *p = blocks[i];
        if (*low == NULL || p < *low) {
            *low = p;
        }
        if (*high == NULL || p > *high) {
            *high = p;
        }
        uintptr_t lo, hi;
        char perms[5];
        if (!mapping_of((uintptr_t)p, &lo, &hi, perms) || strncmp(perms, "rw", 2) != 0) {
            fail("block %p is in no read-write mapping", (void *)p);
        }
        size_t j = 0;
        while (j < n && his[j] != hi) {
            j++;
        }
        if (j == n) {
            his[n++] = hi;
            uintptr_t glo, ghi;
            char gperms[5];
            if (want_guard &&
                (!mapping_of(hi, &glo, &ghi, gperms) || strcmp(gperms, "---p") != 0)) {
                fail("the slab mapping ending at 0x%lx is not followed by a guard page",
                     (unsigned long)hi);
            }
        }
    }
    return n;
}

/* ---------------------------------------------------------------- misuse */

static int double_free_immediate(void) {
    char *p = xmalloc(32);
    memset(p, 1, 32);
    announce(p);
    free_v(p);
    free(launder(p));
    return survived("double free");
}

static int double_free_after_other_frees(void) {
    char *p = xmalloc(64);
    void *others[600];
    for (size_t i = 0; i < 600; i++) {
        size_t n = (i % 5 == 0) ? 64 + 16 * (i % 7) : 64;
        others[i] = xmalloc(n);
    }
    announce(p);
    free_v(p);
    for (size_t i = 0; i < 600; i++) {
        free(others[i]);
    }
    free(launder(p));
    return survived("double free after other frees");
}

static int double_free_full_tcache(void) {
    void *others[800];
    for (size_t i = 0; i < 800; i++) {
        others[i] = xmalloc(64);
    }
    char *p = xmalloc(64);
    /* Hundreds of same-size frees: thread cache and quarantine are full, so
     * the next frees take the overflow path. */
    for (size_t i = 0; i < 800; i++) {
        free(others[i]);
    }
    announce(p);
    free_v(p);
    free(launder(p));
    return survived("double free with a full thread cache");
}

static void *free_in_thread(void *p) {
    free(launder(p));
    return NULL;
}

static int double_free_cross_thread(void) {
    char *p = xmalloc(48);
    announce(p);
    free_v(p);
    pthread_t t;
    if (pthread_create(&t, NULL, free_in_thread, p) != 0) {
        setup_failed("pthread_create");
    }
    pthread_join(t, NULL);
    return survived("double free from another thread");
}

static int double_free_remote_then_owner(void) {
    char *p = xmalloc(48);
    announce(p);
    pthread_t t;
    if (pthread_create(&t, NULL, free_in_thread, p) != 0) {
        setup_failed("pthread_create");
    }
    pthread_join(t, NULL);
    free(launder(p));
    return survived("double free of a block another thread freed");
}

static int double_free_large(void) {
    char *p = xmalloc(MIB);
    memset(p, 1, MIB);
    announce(p);
    free_v(p);
    free(launder(p));
    return survived("double free of a large block");
}

/* free(p); q = malloc(same size); free(p), with the large cache still closed:
 * p's mapping is given back to the kernel, which would hand the same range to
 * the next mmap, and the second free(p) would free q unseen. The allocator
 * keeps a given-back range reserved for a while. */
/* realloc moves a large block (mremap): the old pointer is a freed one, and its
 * range is not handed to the next block at once. */
static int double_free_large_after_realloc_move(void) {
    char *p = xmalloc(MIB);
    memset(p, 1, MIB);
    announce(p);
    char *q = realloc_v(p, 4 * MIB);
    if (q == NULL) {
        return setup_failed("realloc to 4 MiB");
    }
    if (q == p) {
        return setup_failed("realloc grew the block in place: nothing moved");
    }
    char *r = xmalloc(MIB);
    memset(r, 7, MIB);
    if (r == p) {
        return survived("a large block's old range was handed out right after realloc moved it");
    }
    free(launder(p));
    return survived("free of a large block's old address after realloc moved it");
}

static int double_free_large_after_malloc(void) {
    char *p = xmalloc(MIB);
    memset(p, 1, MIB);
    announce(p);
    free_v(p);
    char *q = xmalloc(MIB);
    if (q == p) {
        return survived("a freed large block's range was handed straight back");
    }
    free(launder(p));
    return survived("double free of a large block after another malloc of its size");
}

/* The slab's pages are dropped between the two frees: the frontier it keeps
 * still says the slot was handed out, so the report says double free. */
static int double_free_after_trim(void) {
    char *p = xmalloc(3000);
    memset(p, 1, 3000);
    announce(p);
    free_v(p);
    malloc_trim(0);
    free(launder(p));
    return survived("double free after malloc_trim");
}

/* A freed big slot written to, then malloc_trim: trim's drain of this thread's
 * cache finds the write before dropping the slot's pages, and names itself. */
static int write_after_free_trim_big(void) {
    size_t n = 64 << 10;
    unsigned char *p = xmalloc(n);
    memset(p, 1, n);
    announce(p);
    free_v(p);
    ((volatile unsigned char *)launder(p))[5000] = 1;
    malloc_trim(0);
    return survived("write after free into a big slot, found by malloc_trim");
}

/* A freed small slot written to, in a slab that stays partly used: malloc_trim
 * drops the pages inside it that only free slots cover, and checks them first. */
static int write_after_free_trim_small(void) {
    enum { N = 256 };
    static unsigned char *b[N];
    for (int i = 0; i < N; i++) {
        b[i] = xmalloc(512);
        memset(b[i], 1, 512);
    }
    unsigned char *p = b[N / 2];
    announce(p);
    for (int i = 8; i < N - 8; i++) free_v(b[i]);
    ((volatile unsigned char *)launder(p))[100] = 1;
    malloc_trim(0);
    return survived("write after free into a small slot, found by malloc_trim");
}

/* A write after free into a cached large block, in the page that becomes the
 * guard when a smaller request is cut from the block: found at that malloc
 * (review finding: the cut page was made a guard unchecked). */
static int write_after_free_cut_page(void) {
    size_t n = 400 * 4096;
    free(xmalloc(n));
    free(xmalloc(n)); /* the large cache opens: a block of this size came back */
    unsigned char *p = xmalloc(n);
    memset(p, 1, n);
    announce(p);
    free_v(p);
    ((volatile unsigned char *)launder(p))[200 * 4096 + 5] = 0x77;
    void *q = malloc(200 * 4096);
    (void)q;
    return survived("write after free into the page cut off a cached large block");
}

/* Run with random=0: a thread cache hands out its slots from the highest
 * address down, so the slot below the second block sits in the cache, never
 * handed out. Freeing it is freeing a pointer never returned. */
static int free_cached_unused_slot(void) {
    uintptr_t a = (uintptr_t)xmalloc(1000);
    uintptr_t b = (uintptr_t)xmalloc(1000);
    if (b >= a) {
        return setup_failed("random=0 did not hand out descending slots");
    }
    char *q = (char *)(b - (a - b));
    announce(q);
    free(launder(q));
    return survived("free of a slot never handed out (in a thread cache)");
}

_Alignas(64) static char global_buf[256];

static int free_global(void) {
    announce(global_buf);
    free(launder(global_buf));
    return survived("free of a global");
}

static int free_stack(void) {
    _Alignas(64) char buf[256];
    memset(buf, 0, sizeof buf);
    announce(buf);
    free(launder(buf));
    return survived("free of a stack address");
}

static int free_foreign_mmap(void) {
    void *m = map_foreign(64 * KIB);
    announce(m);
    free(launder(m));
    return survived("free of a foreign mmap");
}

static int free_interior_small(void) {
    char *p = xmalloc(64);
    announce(p + 16);
    free(launder(p + 16));
    return survived("free of an interior pointer (small)");
}

static int free_interior_large(void) {
    char *p = xmalloc(MIB);
    announce(p + 4096 + 16);
    free(launder(p + 4096 + 16));
    return survived("free of an interior pointer (large)");
}

static int realloc_freed(void) {
    char *p = xmalloc(32);
    announce(p);
    free_v(p);
    void *q = realloc(launder(p), 64);
    (void)q;
    return survived("realloc of a freed pointer");
}

static int realloc_interior(void) {
    char *p = xmalloc(64);
    announce(p + 8);
    void *q = realloc(launder(p + 8), 128);
    (void)q;
    return survived("realloc of an interior pointer");
}

static int realloc_foreign(void) {
    void *m = map_foreign(64 * KIB);
    announce(m);
    void *q = realloc(launder(m), 128);
    (void)q;
    return survived("realloc of a foreign pointer");
}

/* A slot-aligned address in a slab of the block's class that was never
 * committed: 512 slab strides (1 MiB each for a 16-byte class) past a fresh
 * block. Nothing here commits that many slabs. The allocator may read the
 * slot's live byte (it reads 0) but must not touch the slot, which is still
 * PROT_NONE reservation: a report, not a SIGSEGV. */
static void *uncommitted_slot(void) {
    char *p = xmalloc(16);
    return (void *)((uintptr_t)p + 512 * MIB);
}

static int free_uncommitted_slab(void) {
    void *q = uncommitted_slot();
    announce(q);
    free(launder(q));
    return survived("free of a slot in a slab never committed");
}

/* The same, 40 bytes past the slot start: no block was ever there, so it is
 * no interior pointer either. */
static int free_uncommitted_slab_misaligned(void) {
    char *q = (char *)uncommitted_slot() + 40;
    announce(q);
    free(launder(q));
    return survived("free of a misaligned pointer into a slab never committed");
}

static int realloc_uncommitted_slab(void) {
    void *q = uncommitted_slot();
    announce(q);
    void *r = realloc(launder(q), 64);
    (void)r;
    return survived("realloc of a slot in a slab never committed");
}

static int usable_size_uncommitted_slab(void) {
    void *q = uncommitted_slot();
    announce(q);
    size_t n = malloc_usable_size(launder(q));
    fprintf(stderr, "misuse: malloc_usable_size returned %zu\n", n);
    return survived("malloc_usable_size of a slot in a slab never committed");
}

static int usable_size_freed(void) {
    char *p = xmalloc(32);
    announce(p);
    free_v(p);
    size_t n = malloc_usable_size(launder(p));
    fprintf(stderr, "misuse: malloc_usable_size returned %zu\n", n);
    return survived("malloc_usable_size of a freed pointer");
}

static int usable_size_interior(void) {
    char *p = xmalloc(64);
    announce(p + 8);
    size_t n = malloc_usable_size(launder(p + 8));
    fprintf(stderr, "misuse: malloc_usable_size returned %zu\n", n);
    return survived("malloc_usable_size of an interior pointer");
}

static int usable_size_foreign(void) {
    void *m = map_foreign(64 * KIB);
    announce(m);
    size_t n = malloc_usable_size(launder(m));
    fprintf(stderr, "misuse: malloc_usable_size returned %zu\n", n);
    return survived("malloc_usable_size of a foreign pointer");
}

/*
 * Frees the victim, writes one word into it, cycles any quarantine, then
 * allocates same-size blocks until the victim's slot is handed out again:
 * the allocator must find the write there (in malloc) and abort.
 */
static int write_after_free(void) {
    struct heap h = heap_new(64);
    unsigned char *p = h.victim;
    announce(p);
    free_v(p);
    uint64_t word = 0x4141414141414141ull;
    memcpy((unsigned char *)launder(p) + 16, &word, sizeof word);
    heap_free_odd(&h);
    if (hold_until(p, 64, MAX_HOLD, 0) != 0) {
        return survived("write after free (the slot was handed out again)");
    }
    return setup_failed("the freed slot never came back");
}

/* A slab emptied and decommitted (malloc_trim) keeps its pages writable: a stale
 * pointer's write faults a page back in with the data. The slot must still be
 * checked when it is handed out again, here by calloc, which would otherwise
 * return the data as "zeroed" memory. */
static int write_after_free_decommitted(void) {
    unsigned char *p = xmalloc(3000);
    memset(p, 1, 3000);
    announce(p);
    free_v(p);
    malloc_trim(0);
    memset(launder(p), 0x41, 3000);
    for (size_t i = 0; i < MAX_HOLD; i++) {
        unsigned char *q = calloc(1, 3000);
        if (!q) {
            fail("calloc(1, 3000) returned NULL");
        }
        if (q == p) {
            return survived(all_bytes(q, 3000, 0) ? "write after free into a decommitted slab"
                                                  : "calloc returned old data");
        }
    }
    return setup_failed("the freed slot never came back");
}

/* A write into a freed block whose slot goes back to its slab before anyone
 * allocates it again: the thread that freed it exits, its quarantine and cache
 * drain, and the allocator then drops the slot's pages (big slots, 32 KiB and
 * up) or the emptied slab's pages (decommit=0), which would wipe the write
 * unseen. It must check before it drops them. */
static void *write_after_free_then_exit(void *arg) {
    size_t n = *(size_t *)arg;
    unsigned char *p = xmalloc(n);
    memset(p, 1, n);
    announce(p);
    free_v(p);
    ((unsigned char *)launder(p))[n / 2] = 0x41;
    return NULL;
}

static int write_after_free_released(size_t n, const char *what) {
    pthread_t t;
    if (pthread_create(&t, NULL, write_after_free_then_exit, &n) != 0) {
        setup_failed("pthread_create");
    }
    pthread_join(t, NULL);
    return survived(what);
}

static int write_after_free_released_big(void) {
    return write_after_free_released(64 << 10, "write after free into a big slot whose pages were dropped");
}

static int write_after_free_released_slab(void) {
    return write_after_free_released(5000, "write after free into a slab that was decommitted");
}

static int heap_overflow_small(void) {
    unsigned char *p = xmalloc(24);
    memset(p, 1, 24);
    announce(p);
    ((unsigned char *)launder(p))[24] = 0x41;
    free(p);
    return survived("one byte written past malloc(24)");
}

/* A linear overflow that runs on into the next slot (40 bytes past a 24-byte
 * block): the canary between the two is damaged, so free reports it before the
 * neighbour is ever handed out or read. */
static int heap_overflow_into_neighbour(void) {
    unsigned char *p = xmalloc(24);
    memset(p, 1, 24);
    announce(p);
    memset((unsigned char *)launder(p) + 24, 0x41, 40);
    free(p);
    return survived("40 bytes written past malloc(24)");
}

/* realloc growing in place hands the overflowed slack bytes to the block: it must
 * check them first. */
static int heap_overflow_realloc_grow(void) {
    unsigned char *p = xmalloc(20);
    memset(p, 1, 20);
    announce(p);
    ((unsigned char *)launder(p))[20] = 0x41;
    p = realloc(p, 22);
    free(p);
    return survived("one byte written past malloc(20), then realloc to 22");
}

/* realloc shrinking in place moves the canary window: it checks the old one first. */
static int heap_overflow_realloc_shrink(void) {
    unsigned char *p = xmalloc(20);
    memset(p, 1, 20);
    announce(p);
    ((unsigned char *)launder(p))[21] = 0x41;
    p = realloc(p, 18);
    free(p);
    return survived("one byte written past malloc(20), then realloc to 18");
}

static int heap_overflow_large(void) {
    size_t n = 200 * KIB + 3;
    unsigned char *p = xmalloc(n);
    memset(p, 1, n);
    announce(p);
    ((unsigned char *)launder(p))[n] = 0x41;
    free(p);
    return survived("one byte written past malloc(200 KiB + 3)");
}

/* realloc of a large block resized where it lies (shrunk in place, or grown by
 * moving its pages with mremap) rewrites the canary: it must check it first. */
static int heap_overflow_realloc_large(size_t to) {
    size_t n = 200 * KIB + 3;
    unsigned char *p = xmalloc(n);
    memset(p, 1, n);
    announce(p);
    ((unsigned char *)launder(p))[n] = 0x41;
    p = realloc(p, to);
    free(p);
    return survived("one byte written past malloc(200 KiB + 3), then realloc");
}

static int heap_overflow_realloc_large_shrink(void) { return heap_overflow_realloc_large(180 * KIB); }

static int heap_overflow_realloc_large_grow(void) { return heap_overflow_realloc_large(400 * KIB); }

typedef void (*free_sized_fn)(void *, size_t);
typedef void (*free_aligned_sized_fn)(void *, size_t, size_t);

/* free_sized(malloc(n), told): must abort when `told` is not the size. */
static int free_sized_lie(size_t n, size_t told, const char *what) {
    free_sized_fn fs = (free_sized_fn)need_symbol("free_sized");
    char *p = xmalloc(n);
    announce(p);
    fs(launder(p), opaque(told));
    return survived(what);
}

static int free_sized_wrong_size(void) { return free_sized_lie(100, 5000, "free_sized with the wrong size"); }

static int free_sized_too_small(void) {
    return free_sized_lie(1000, 1, "free_sized with a size far below the block's");
}

static int free_aligned_sized_wrong_alignment(void) {
    free_aligned_sized_fn fas = (free_aligned_sized_fn)need_symbol("free_aligned_sized");
    char *p = aligned_alloc(64, 128);
    if (p == NULL) {
        setup_failed("aligned_alloc");
    }
    announce(p);
    fas(launder(p), opaque(4096), 128);
    return survived("free_aligned_sized with the wrong alignment");
}

/* ---------------------------------------------------- guarantees (SIGSEGV) */

static int malloc_zero_write(void) {
    char *p = malloc(0);
    if (p == NULL) {
        return fail("malloc(0) returned NULL");
    }
    announce(launder(p));
    ((volatile char *)launder(p))[0] = 1;
    return survived("a write into malloc(0)");
}

static int large_guard_page(void) {
    unsigned char *p = xmalloc(MIB);
    memset(p, 1, MIB);
    announce(p);
    ((volatile unsigned char *)launder(p))[MIB] = 1;
    return survived("a write one byte past a 1 MiB block");
}


/* A whole-pages block served from a bigger cached mapping has writable slack
 * pages before its guard page: the first word past its end is its canary, so a
 * linear overflow off its end is caught at free... */
static int large_canary_cached(void) {
    char *volatile a = xmalloc(MIB);
    a[0] = 1;
    free_v(a);
    a = xmalloc(MIB); /* the large cache opens: a block of this size came back */
    a[0] = 1;
    free_v(a);
    size_t n = 225 * 4096; /* 900 KiB from the cached 1 MiB mapping */
    unsigned char *p = xmalloc(n);
    memset(p, 1, n);
    announce(p);
    ((volatile unsigned char *)launder(p))[n] = 1;
    free_v(p);
    return survived("a write one byte past a whole-pages block served from the large cache");
}

/* ... or shrunk in place by realloc. */
static int large_canary_shrunk(void) {
    unsigned char *p = xmalloc(MIB);
    memset(p, 1, MIB);
    size_t n = 225 * 4096;
    p = realloc_v(p, n);
    if (p == NULL) {
        return setup_failed("realloc shrink");
    }
    announce(p);
    ((volatile unsigned char *)launder(p))[n] = 1;
    free_v(p);
    return survived("a write one byte past a whole-pages block shrunk by realloc");
}

/* A linear overflow off the last slot of a slab runs through the slab's slack
 * into the guard page after it. */
static int slab_guard_page(void) {
    unsigned char *low, *high;
    slab_mappings(1, &low, &high);
    uintptr_t lo, hi;
    char perms[5];
    mapping_of((uintptr_t)high, &lo, &hi, perms);
    announce(high);
    volatile unsigned char *q = launder(high);
    for (size_t i = 0; i <= hi - (uintptr_t)high; i++) {
        q[i] = 0x41;
    }
    return survived("a linear overflow off the end of a slab");
}

/* With guard pages on, the blocks of several slabs lie in as many separate
 * mappings, each followed by a guard page. */
static int slab_guard_split(void) {
    unsigned char *low, *high;
    size_t n = slab_mappings(1, &low, &high);
    if (n < 2) {
        return fail("%d blocks of %d bytes lie in %zu mapping(s): expected several slabs",
                    SLAB_BLOCKS, SLAB_SIZE, n);
    }
    return 0;
}

/* Run with guard=0,arenas=1: the slabs are adjacent with no guard page between
 * them, so the blocks of several slabs lie in one mapping and a write runs
 * from the lowest block to the end of the highest without a fault. */
static int slab_guard_off(void) {
    unsigned char *low, *high;
    size_t n = slab_mappings(0, &low, &high);
    if (n != 1) {
        return fail("%d blocks of %d bytes lie in %zu mappings: a guard page between slabs?",
                    SLAB_BLOCKS, SLAB_SIZE, n);
    }
    memset(launder(low), 0x41, (size_t)(high - low) + SLAB_SIZE);
    return 0;
}

/* ------------------------------------------------- guarantees (exit 0) */

/* After realloc moves a large block, its old addresses stay reserved for a
 * while: a new block must not land where a stale pointer still points
 * (review finding: when mremap put the block right below its old range, the
 * new guard page took the old range's first page and nothing was held). */
static int realloc_old_range_held(void) {
    for (int i = 0; i < 20; i++) {
        size_t a = 200000 + (size_t)i * 12288;
        unsigned char *p = xmalloc(a);
        memset(p, 1, a);
        uintptr_t old = (uintptr_t)p;
        unsigned char *q = realloc(p, 2 * a);
        if (q == NULL) {
            return fail("realloc(%zu) failed", 2 * a);
        }
        if ((uintptr_t)q != old) {
            unsigned char *r = xmalloc(a * 3 / 4);
            uintptr_t lo = (uintptr_t)r, hi = lo + a * 3 / 4;
            if (lo < old + a && hi > old) {
                return fail("a new block [%#lx, %#lx) lies in the range [%#lx, %#lx) realloc "
                            "just moved a block away from",
                            (unsigned long)lo, (unsigned long)hi, (unsigned long)old,
                            (unsigned long)(old + a));
            }
            free(r);
        }
        free(q);
    }
    return 0;
}

/* A large block grown by mremap (realloc, or malloc growing a cached block)
 * keeps a guard page after its new end (review finding: a plain
 * MREMAP_MAYMOVE put it right below another mapping, where no guard fit, and
 * a linear overflow off a whole-pages block ran into that mapping). */
static int grown_block_keeps_guard(void) {
    for (int via_cache = 0; via_cache < 2; via_cache++) {
        if (via_cache) {
            free(xmalloc(300 * 4096));
        }
        void *keep[32];
        for (int i = 0; i < 32; i++) {
            size_t a = (size_t)(300 + i) * 4096, b = a + 150 * 4096;
            unsigned char *x = xmalloc(a);
            memset(x, 1, a);
            keep[i] = xmalloc(200 * 4096);
            unsigned char *y;
            if (via_cache) {
                free(x);
                y = xmalloc(b);
            } else {
                y = realloc(x, b);
                if (y == NULL) {
                    return fail("realloc to %zu failed", b);
                }
            }
            uintptr_t lo, hi;
            char perms[5] = "none";
            if (!mapping_of((uintptr_t)y + b, &lo, &hi, perms) || strcmp(perms, "---p") != 0) {
                return fail("%s block %p of %zu bytes: the page after it is %s, not a guard",
                            via_cache ? "a grown cached" : "a realloc'd", (void *)y, b,
                            perms);
            }
            free(y);
        }
        for (int i = 0; i < 32; i++) {
            free(keep[i]);
        }
    }
    return 0;
}

static long vm_rss_kib(void) {
    FILE *f = fopen("/proc/self/status", "r");
    if (f == NULL) {
        setup_failed("opening /proc/self/status");
    }
    char line[256];
    long v = -1;
    while (fgets(line, sizeof line, f)) {
        if (sscanf(line, "VmRSS: %ld", &v) == 1) {
            break;
        }
    }
    fclose(f);
    return v;
}

/* Thousands of large blocks, all freed, then malloc_trim: the memory comes
 * back, the large-block record table's pages included (review finding: the
 * hash spread 6,000 records over the whole table and 17 MiB of it stayed). */
static int trim_after_many_large_blocks(void) {
    enum { N = 6000 };
    static void *blocks[N];
    malloc_trim(0);
    long start = vm_rss_kib();
    for (int i = 0; i < N; i++) {
        blocks[i] = xmalloc(200000);
        ((volatile char *)blocks[i])[0] = 1;
    }
    for (int i = 0; i < N; i++) {
        free(blocks[i]);
    }
    malloc_trim(0);
    long end = vm_rss_kib();
    if (end > start + 4096) {
        return fail("RSS %ld KiB before %d large blocks, %ld KiB after freeing them and "
                    "malloc_trim", start, N, end);
    }
    return 0;
}

/* A thread whose first call is a free (a consumer that only frees) puts the
 * slot in its quarantine like any other thread: it is not handed out again
 * at once (review finding: such a thread sent every free straight back to
 * the arena, and the next malloc of another thread got the slot back). */
static void *fq_victim;
static pthread_barrier_t fq_b1, fq_b2;

static void *free_only_consumer(void *arg) {
    (void)arg;
    free(fq_victim);
    pthread_barrier_wait(&fq_b1);
    pthread_barrier_wait(&fq_b2);
    return NULL;
}

static int free_only_thread_quarantines(void) {
    enum { N = 20000 };
    static void *hold[N];
    pthread_barrier_init(&fq_b1, NULL, 2);
    pthread_barrier_init(&fq_b2, NULL, 2);
    fq_victim = xmalloc(40);
    pthread_t t;
    if (pthread_create(&t, NULL, free_only_consumer, NULL) != 0) {
        return setup_failed("pthread_create");
    }
    pthread_barrier_wait(&fq_b1);
    int found = 0;
    for (int i = 0; i < N && !found; i++) {
        hold[i] = xmalloc(40);
        found = hold[i] == fq_victim ? i + 1 : 0;
    }
    pthread_barrier_wait(&fq_b2);
    pthread_join(t, NULL);
    if (found) {
        return fail("a slot freed by a thread that never called malloc came back at the "
                    "%d-th malloc of another thread",
                    found);
    }
    return 0;
}

/* The canary fill byte is keyed per block: reading the byte past one block
 * does not reveal another block's (review finding: one byte for the whole
 * process, so an overflow writing the value learnt from any block went unseen
 * in every block). Reads the first canary byte of 64 blocks (inside their
 * slots, in the allocator's own slack). */
static int canary_bytes_differ_per_block(void) {
    int seen[256] = {0};
    int distinct = 0;
    void *blocks[64];
    for (int i = 0; i < 64; i++) {
        unsigned char *p = xmalloc(20);
        blocks[i] = p;
        unsigned char b = ((volatile unsigned char *)launder(p))[20];
        if (b < 0x80 || b == 0xff) {
            return fail("canary byte %#x past a 20-byte block: ASCII, 0 or 0xff", b);
        }
        distinct += !seen[b]++;
    }
    for (int i = 0; i < 64; i++) {
        free(blocks[i]);
    }
    if (distinct < 8) {
        return fail("64 blocks show only %d distinct canary bytes", distinct);
    }
    return 0;
}

/* A call that succeeds leaves errno alone, as glibc's do (review finding: a
 * realloc that moved a large block left EEXIST from an internal mmap). */
static int errno_kept(void) {
    void *keep[40];
    for (int i = 0; i < 40; i++) {
        size_t n = i % 2 ? 24 + (size_t)i * 40 : 150000 + (size_t)i * 20000;
        errno = 0;
        unsigned char *p = malloc(n);
        if (p == NULL || errno != 0) {
            return fail("malloc(%zu) = %p, errno %d", n, (void *)p, errno);
        }
        memset(p, 2, n);
        keep[i] = malloc(100);
        unsigned char *q = realloc(p, 3 * n);
        if (q == NULL || errno != 0) {
            return fail("realloc(%zu -> %zu) = %p, errno %d", n, 3 * n, (void *)q, errno);
        }
        void *c = calloc(n, 2);
        void *m = NULL;
        int e = posix_memalign(&m, 4096, n);
        void *al = aligned_alloc(64, n);
        if (c == NULL || e != 0 || al == NULL || errno != 0) {
            return fail("calloc/posix_memalign/aligned_alloc of %zu: errno %d", n, errno);
        }
        free(c);
        free(m);
        free(al);
        free(q);
        if (errno != 0) {
            return fail("free of blocks of %zu bytes set errno %d", n, errno);
        }
    }
    for (int i = 0; i < 40; i++) {
        free(keep[i]);
    }
    malloc_trim(0);
    if (errno != 0) {
        return fail("malloc_trim set errno %d", errno);
    }
    return 0;
}

static int malloc_zero_distinct(void) {
    void *a = malloc(0);
    void *b = malloc(0);
    void *c = malloc(0);
    if (a == NULL || b == NULL || c == NULL) {
        return fail("malloc(0) returned NULL");
    }
    if (a == b || b == c || a == c) {
        return fail("malloc(0) returned the same pointer twice: %p %p %p", a, b, c);
    }
    free(a);
    free(b);
    free(c);
    free(NULL);
    return 0;
}

static void expect_enomem(const char *what, void *r) {
    if (r != NULL) {
        fail("%s returned %p, not NULL", what, r);
    }
    if (errno != ENOMEM) {
        fail("%s set errno %d, not ENOMEM", what, errno);
    }
    errno = 0;
}

static int impossible_sizes(void) {
    size_t max = opaque(SIZE_MAX);
    errno = 0;
    expect_enomem("malloc(SIZE_MAX)", malloc(max));
    expect_enomem("malloc(SIZE_MAX - 4095)", malloc(max - 4095));
    expect_enomem("malloc(PTRDIFF_MAX + 1)", malloc(opaque((size_t)PTRDIFF_MAX + 1)));
    expect_enomem("calloc(SIZE_MAX / 2 + 1, 2)", calloc(max / 2 + 1, opaque(2)));
    expect_enomem("calloc(SIZE_MAX, SIZE_MAX)", calloc(max, max));
    expect_enomem("calloc(1 << 32, 1 << 32)", calloc(opaque((size_t)1 << 32), opaque((size_t)1 << 32)));
    expect_enomem("aligned_alloc(64, SIZE_MAX)", aligned_alloc(64, max));
    expect_enomem("memalign(4096, SIZE_MAX - 100)", memalign(4096, max - 100));

    unsigned char *p = xmalloc(100);
    memset(p, 0x5C, 100);
    expect_enomem("realloc(p, SIZE_MAX)", realloc_v(p, max));
    expect_enomem("reallocarray(p, SIZE_MAX / 4, 8)", reallocarray_v(p, max / 4, opaque(8)));
    expect_enomem("reallocarray(NULL, SIZE_MAX, 2)", reallocarray_v(NULL, max, opaque(2)));
    if (!all_bytes(p, 100, 0x5C)) {
        return fail("a failed realloc damaged the original block");
    }
    unsigned char *q = reallocarray(p, 50, 4);
    if (q == NULL || !all_bytes(q, 100, 0x5C)) {
        return fail("reallocarray(p, 50, 4) lost the block's contents");
    }
    free(q);

    void *out = (void *)0x1234;
    errno = 777;
    int rc = posix_memalign(&out, 64, max);
    if (rc != ENOMEM) {
        return fail("posix_memalign(64, SIZE_MAX) returned %d, not ENOMEM", rc);
    }
    if (out != (void *)0x1234) {
        return fail("posix_memalign wrote *memptr on failure");
    }
    if (errno != 777) {
        return fail("posix_memalign set errno to %d: it returns its error", errno);
    }
    return 0;
}

static int posix_memalign_einval(void) {
    static const size_t bad[] = {0, 1, 2, 3, 4, 24, 48, 4097, (size_t)1 << 63 | 8};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        void *out = (void *)0x1234;
        int rc = posix_memalign(&out, opaque(bad[i]), 100);
        if (rc != EINVAL) {
            return fail("posix_memalign(alignment %zu) returned %d, not EINVAL", bad[i], rc);
        }
        if (out != (void *)0x1234) {
            return fail("posix_memalign(alignment %zu) wrote *memptr on failure", bad[i]);
        }
    }
    return 0;
}

static void check_aligned(const char *what, size_t align, size_t size, void *p) {
    if (p == NULL) {
        fail("%s(%zu, %zu) returned NULL", what, align, size);
    }
    if ((uintptr_t)p % align != 0) {
        fail("%s(%zu, %zu) returned %p, not aligned", what, align, size, p);
    }
    if (malloc_usable_size(p) < size) {
        fail("%s(%zu, %zu): usable size %zu", what, align, size, malloc_usable_size(p));
    }
    memset(p, 0x77, size);
}

static int aligned_allocs(void) {
    void *p = aligned_alloc(64, 100); /* size not a multiple of the alignment */
    check_aligned("aligned_alloc", 64, 100, p);
    free(p);
    static const size_t aligns[] = {8, 16, 32, 64, 256, 4096, 16384, 65536, 1 << 20};
    static const size_t sizes[] = {1, 24, 100, 4096, 5000, 140000, 1 << 20};
    for (size_t a = 0; a < sizeof aligns / sizeof aligns[0]; a++) {
        for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
            size_t al = aligns[a];
            size_t sz = sizes[s];
            void *m = memalign(al, sz);
            check_aligned("memalign", al, sz, m);
            void *out = NULL;
            int rc = posix_memalign(&out, al, sz);
            if (rc != 0) {
                return fail("posix_memalign(%zu, %zu) returned %d", al, sz, rc);
            }
            check_aligned("posix_memalign", al, sz, out);
            void *aa = aligned_alloc(al, sz);
            check_aligned("aligned_alloc", al, sz, aa);
            free(m);
            free(out);
            free(aa);
        }
    }
    void *v = valloc(10);
    check_aligned("valloc", 4096, 10, v);
    free(v);
    /* pvalloc: a page-aligned block rounded up to whole pages (one for 0). Called
     * through dlsym: glibc's header may no longer declare it. */
    void *(*pvalloc_f)(size_t) = (void *(*)(size_t))need_symbol("pvalloc");
    static const size_t pv[][2] = {{0, 4096}, {10, 4096}, {4096, 4096}, {4097, 8192}, {200000, 200704}};
    for (size_t i = 0; i < sizeof pv / sizeof pv[0]; i++) {
        void *m = pvalloc_f(opaque(pv[i][0]));
        check_aligned("pvalloc", 4096, pv[i][1], m);
        free(m);
    }
    errno = 0;
    if (pvalloc_f(opaque(SIZE_MAX - 100)) != NULL || errno != ENOMEM) {
        return fail("pvalloc(SIZE_MAX - 100) did not fail with ENOMEM");
    }
    /* memalign follows glibc: other alignments round up to a power of two. */
    static const size_t odd[][2] = {{0, 1}, {3, 4}, {24, 32}, {48, 64}, {100, 128}};
    for (size_t i = 0; i < sizeof odd / sizeof odd[0]; i++) {
        void *m = memalign(opaque(odd[i][0]), 100);
        check_aligned("memalign (odd alignment)", odd[i][1], 100, m);
        free(m);
    }
    errno = 0;
    if (memalign(opaque(SIZE_MAX), 100) != NULL || errno != EINVAL) {
        return fail("memalign(SIZE_MAX, 100) did not fail with EINVAL");
    }
    return 0;
}

static int realloc_preserves(void) {
    static const size_t steps[] = {1, 16, 17, 100, 4000, 70000, 140000, MIB, 3 * MIB, 5000, 20, 1};
    unsigned char *p = realloc(NULL, 1);
    if (p == NULL) {
        return fail("realloc(NULL, 1) returned NULL");
    }
    p[0] = 0;
    size_t have = 1;
    for (size_t s = 1; s < sizeof steps / sizeof steps[0]; s++) {
        size_t n = steps[s];
        unsigned char *q = realloc(p, n);
        if (q == NULL) {
            return fail("realloc(%zu -> %zu) returned NULL", have, n);
        }
        size_t keep = have < n ? have : n;
        for (size_t i = 0; i < keep; i++) {
            if (q[i] != (unsigned char)(i * 7)) {
                return fail("realloc(%zu -> %zu) changed byte %zu", have, n, i);
            }
        }
        for (size_t i = 0; i < n; i++) {
            q[i] = (unsigned char)(i * 7);
        }
        p = q;
        have = n;
    }
    free(p);
    return 0;
}

static int free_sized_ok(void) {
    free_sized_fn fs = (free_sized_fn)need_symbol("free_sized");
    free_aligned_sized_fn fas = (free_aligned_sized_fn)need_symbol("free_aligned_sized");
    static const size_t sizes[] = {1, 8, 100, 4096, 140000, MIB};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        void *p = xmalloc(sizes[i]);
        fs(p, sizes[i]);
        void *q = aligned_alloc(256, sizes[i]);
        if (q == NULL) {
            return fail("aligned_alloc(256, %zu) returned NULL", sizes[i]);
        }
        fas(q, 256, sizes[i]);
        /* 64-byte alignment moves 100 bytes up from the 112-byte class. */
        void *r = aligned_alloc(64, sizes[i]);
        if (r == NULL) {
            return fail("aligned_alloc(64, %zu) returned NULL", sizes[i]);
        }
        fas(r, 64, sizes[i]);
    }
    fs(NULL, 0);
    return 0;
}

static int calloc_zero(void) {
    /* Dirty memory of several sizes, free it, then calloc the same sizes:
     * whatever slot or pages come back must read as zero. */
    static const size_t sizes[] = {16, 64, 1000, 4096, 70000, 140000, MIB};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        void *dirty[64];
        for (size_t i = 0; i < 64; i++) {
            dirty[i] = xmalloc(sizes[s]);
            memset(dirty[i], 0xEE, sizes[s]);
        }
        for (size_t i = 0; i < 64; i++) {
            free(dirty[i]);
        }
        for (size_t i = 0; i < 64; i++) {
            unsigned char *c = calloc(1, sizes[s]);
            if (c == NULL || !all_bytes(c, sizes[s], 0)) {
                return fail("calloc(1, %zu) did not return zeroed memory", sizes[s]);
            }
            dirty[i] = c;
        }
        for (size_t i = 0; i < 64; i++) {
            free(dirty[i]);
        }
    }
    unsigned char *c = calloc(1000, 100);
    if (c == NULL || !all_bytes(c, 100000, 0)) {
        return fail("calloc(1000, 100) did not return zeroed memory");
    }
    free(c);
    return 0;
}

/* --------------------------------------------- hardening (exit 0) */

static int random_stride(void) {
    uintptr_t a[64];
    for (size_t i = 0; i < 64; i++) {
        a[i] = (uintptr_t)xmalloc(32);
    }
    /* Refill batches alone give a few distinct gaps (see ordered_stride, which
     * random=0 passes with at most 4): randomized slots give dozens. */
    intptr_t seen[63];
    size_t distinct = 0;
    for (size_t i = 1; i < 64; i++) {
        intptr_t d = (intptr_t)(a[i] - a[i - 1]);
        size_t j = 0;
        while (j < distinct && seen[j] != d) {
            j++;
        }
        if (j == distinct) {
            seen[distinct++] = d;
        }
    }
    if (distinct <= 4) {
        return fail("64 consecutive malloc(32) show only %zu distinct gaps: no randomization",
                    distinct);
    }
    return 0;
}

/* Run with random=0: slots come in address order within each refill batch, so
 * 64 consecutive malloc(32) show only a handful of distinct strides (with
 * random slot choice they show dozens). */
static int ordered_stride(void) {
    intptr_t seen[63];
    size_t distinct = 0;
    uintptr_t prev = (uintptr_t)xmalloc(32);
    for (size_t i = 0; i < 63; i++) {
        uintptr_t a = (uintptr_t)xmalloc(32);
        intptr_t d = (intptr_t)(a - prev);
        prev = a;
        size_t j = 0;
        while (j < distinct && seen[j] != d) {
            j++;
        }
        if (j == distinct) {
            seen[distinct++] = d;
        }
    }
    if (distinct > 4) {
        return fail("64 consecutive malloc(32) show %zu distinct strides: randomized?", distinct);
    }
    return 0;
}

/* With a quarantine, a freed slot stays out of reach while nothing else is
 * freed, however many blocks of its size are allocated. */
static int quarantine_holds(void) {
    struct heap h = heap_new(80);
    unsigned char *p = h.victim;
    free_v(p);
    size_t n = hold_until(p, 80, 2 * NBLOCKS, 0);
    if (n != 0) {
        return fail("a freed slot came back after %zu allocations with no other free", n);
    }
    return 0;
}

/* Same program with ENGRAM_MALLOC=quarantine=0: the slot must come back. */
static int quarantine_off_reuses(void) {
    struct heap h = heap_new(80);
    unsigned char *p = h.victim;
    free_v(p);
    size_t n = hold_until(p, 80, 2 * NBLOCKS, 0);
    if (n == 0) {
        return fail("a freed slot never came back in %d allocations: is quarantine=0 read?",
                    2 * NBLOCKS);
    }
    return 0;
}

/* Freed memory is wiped at once (no data or pointers left in it), and every
 * reused slot comes back zeroed. */
static int zero_on_free(void) {
    struct heap h = heap_new(64);
    unsigned char *p = h.victim;
    free_v(p);
    if (!all_bytes(launder(p), 64, 0)) {
        return fail("a freed block still holds data");
    }
    heap_free_odd(&h);
    size_t n = hold_until(p, 64, MAX_HOLD, 1);
    if (n == 0) {
        return setup_failed("the freed slot never came back");
    }
    return 0;
}

/* With ENGRAM_MALLOC=zero=0 nothing wipes a freed block. */
static int zero_off_keeps_data(void) {
    struct heap h = heap_new(64);
    unsigned char *p = h.victim;
    free_v(p);
    if (all_bytes(launder(p), 64, 0)) {
        return fail("a freed block was wiped although zero=0: is the option read?");
    }
    return 0;
}

struct named_case {
    const char *name;
    int (*run)(void);
};

static const struct named_case cases[] = {
    {"double_free_immediate", double_free_immediate},
    {"double_free_after_other_frees", double_free_after_other_frees},
    {"double_free_full_tcache", double_free_full_tcache},
    {"double_free_cross_thread", double_free_cross_thread},
    {"double_free_remote_then_owner", double_free_remote_then_owner},
    {"double_free_large", double_free_large},
    {"double_free_large_after_malloc", double_free_large_after_malloc},
    {"double_free_large_after_realloc_move", double_free_large_after_realloc_move},
    {"double_free_after_trim", double_free_after_trim},
    {"write_after_free_trim_big", write_after_free_trim_big},
    {"write_after_free_trim_small", write_after_free_trim_small},
    {"write_after_free_cut_page", write_after_free_cut_page},
    {"free_cached_unused_slot", free_cached_unused_slot},
    {"free_global", free_global},
    {"free_stack", free_stack},
    {"free_foreign_mmap", free_foreign_mmap},
    {"free_interior_small", free_interior_small},
    {"free_interior_large", free_interior_large},
    {"realloc_freed", realloc_freed},
    {"realloc_interior", realloc_interior},
    {"realloc_foreign", realloc_foreign},
    {"free_uncommitted_slab", free_uncommitted_slab},
    {"free_uncommitted_slab_misaligned", free_uncommitted_slab_misaligned},
    {"realloc_uncommitted_slab", realloc_uncommitted_slab},
    {"usable_size_uncommitted_slab", usable_size_uncommitted_slab},
    {"usable_size_freed", usable_size_freed},
    {"usable_size_interior", usable_size_interior},
    {"usable_size_foreign", usable_size_foreign},
    {"write_after_free", write_after_free},
    {"write_after_free_decommitted", write_after_free_decommitted},
    {"write_after_free_released_big", write_after_free_released_big},
    {"write_after_free_released_slab", write_after_free_released_slab},
    {"heap_overflow_small", heap_overflow_small},
    {"heap_overflow_into_neighbour", heap_overflow_into_neighbour},
    {"heap_overflow_large", heap_overflow_large},
    {"heap_overflow_realloc_large_shrink", heap_overflow_realloc_large_shrink},
    {"heap_overflow_realloc_large_grow", heap_overflow_realloc_large_grow},
    {"heap_overflow_realloc_grow", heap_overflow_realloc_grow},
    {"heap_overflow_realloc_shrink", heap_overflow_realloc_shrink},
    {"free_sized_wrong_size", free_sized_wrong_size},
    {"free_sized_too_small", free_sized_too_small},
    {"free_aligned_sized_wrong_alignment", free_aligned_sized_wrong_alignment},
    {"malloc_zero_write", malloc_zero_write},
    {"large_guard_page", large_guard_page},
    {"large_canary_cached", large_canary_cached},
    {"large_canary_shrunk", large_canary_shrunk},
    {"slab_guard_page", slab_guard_page},
    {"slab_guard_split", slab_guard_split},
    {"slab_guard_off", slab_guard_off},
    {"realloc_old_range_held", realloc_old_range_held},
    {"errno_kept", errno_kept},
    {"canary_bytes_differ_per_block", canary_bytes_differ_per_block},
    {"free_only_thread_quarantines", free_only_thread_quarantines},
    {"grown_block_keeps_guard", grown_block_keeps_guard},
    {"trim_after_many_large_blocks", trim_after_many_large_blocks},
    {"malloc_zero_distinct", malloc_zero_distinct},
    {"impossible_sizes", impossible_sizes},
    {"posix_memalign_einval", posix_memalign_einval},
    {"aligned_allocs", aligned_allocs},
    {"realloc_preserves", realloc_preserves},
    {"free_sized_ok", free_sized_ok},
    {"calloc_zero", calloc_zero},
    {"random_stride", random_stride},
    {"ordered_stride", ordered_stride},
    {"quarantine_holds", quarantine_holds},
    {"quarantine_off_reuses", quarantine_off_reuses},
    {"zero_on_free", zero_on_free},
    {"zero_off_keeps_data", zero_off_keeps_data},
};

int main(int argc, char **argv) {
    /* Expected crashes should not write core files. */
    struct rlimit no_core = {0, 0};
    setrlimit(RLIMIT_CORE, &no_core);
    /* A hang is a failure too: SIGALRM ends the run. */
    alarm(60);
    if (argc == 2) {
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
            if (strcmp(argv[1], cases[i].name) == 0) {
                return cases[i].run();
            }
        }
    }
    fprintf(stderr, "usage: misuse <case>; cases:");
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        fprintf(stderr, " %s", cases[i].name);
    }
    fputc('\n', stderr);
    return 2;
}
