/* small_objects: build and tear down millions of 16..64-byte objects.
 *
 *   small_objects [THREADS=2] [ITERATIONS=3] [NODES=500000] [SEED=42]
 *
 * Each thread, ITERATIONS times:
 *  1. builds a singly linked list of NODES nodes (16..64 bytes each), walks it
 *     and frees it front to back;
 *  2. builds an unbalanced binary search tree of NODES/2 nodes (32..64 bytes)
 *     with random keys, walks it in order and frees it in post-order;
 *  3. allocates NODES/2 objects (16..64 bytes) into an array and frees them
 *     in a random order.
 * Threads work independently; the checksum combines per-thread sums in thread
 * order, so it is deterministic.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"

struct lnode {
    struct lnode *next;
    uint32_t val;
    uint32_t size;
};

struct tnode {
    struct tnode *left, *right;
    uint64_t key;
};

static int g_iters;
static long g_nodes;
static uint64_t g_seed;

static uint64_t splitmix(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static void *xmalloc(size_t n) {
    void *p = malloc(n);
    if (!p) {
        fprintf(stderr, "small_objects: out of memory\n");
        exit(1);
    }
    return p;
}

static uint64_t list_phase(uint64_t *rng) {
    struct lnode *head = NULL, **tail = &head;
    for (long i = 0; i < g_nodes; i++) {
        uint64_t r = splitmix(rng);
        uint32_t size = 16 + (uint32_t)(r % 49);
        struct lnode *n = xmalloc(size);
        n->next = NULL;
        n->val = (uint32_t)(r >> 32);
        n->size = size;
        *tail = n;
        tail = &n->next;
    }
    uint64_t sum = 0;
    for (struct lnode *n = head; n; n = n->next) sum += n->val ^ n->size;
    while (head) {
        struct lnode *next = head->next;
        free(head);
        head = next;
    }
    return sum;
}

static uint64_t tree_walk(const struct tnode *t, uint64_t acc) {
    while (t) {
        acc = tree_walk(t->left, acc);
        acc = acc * 0x100000001b3ULL ^ t->key;
        t = t->right;
    }
    return acc;
}

static void tree_free(struct tnode *t) {
    while (t) {
        tree_free(t->left);
        struct tnode *right = t->right;
        free(t);
        t = right;
    }
}

static uint64_t tree_phase(uint64_t *rng) {
    struct tnode *root = NULL;
    long n = g_nodes / 2;
    for (long i = 0; i < n; i++) {
        uint64_t r = splitmix(rng);
        struct tnode **link = &root;
        while (*link) link = r < (*link)->key ? &(*link)->left : &(*link)->right;
        struct tnode *t = xmalloc(32 + (size_t)(r % 33));
        t->left = t->right = NULL;
        t->key = r;
        *link = t;
    }
    uint64_t sum = tree_walk(root, 0);
    tree_free(root);
    return sum;
}

static uint64_t shuffle_phase(uint64_t *rng) {
    long n = g_nodes / 2;
    unsigned char **v = xmalloc((size_t)n * sizeof *v);
    for (long i = 0; i < n; i++) {
        uint64_t r = splitmix(rng);
        size_t size = 16 + (size_t)(r % 49);
        v[i] = xmalloc(size);
        memset(v[i], (int)(r >> 56), size);
    }
    uint64_t sum = 0;
    for (long i = n - 1; i > 0; i--) {
        long j = (long)(splitmix(rng) % (uint64_t)(i + 1));
        unsigned char *t = v[i];
        v[i] = v[j];
        v[j] = t;
    }
    for (long i = 0; i < n; i++) {
        sum += v[i][0] + (uint64_t)i;
        free(v[i]);
    }
    free(v);
    return sum;
}

static void *worker(void *arg) {
    uint64_t *out = arg;
    uint64_t rng = g_seed + *out * 0x9e3779b97f4a7c15ULL;
    uint64_t sum = 0;
    for (int it = 0; it < g_iters; it++) {
        sum = sum * 31 + list_phase(&rng);
        sum = sum * 31 + tree_phase(&rng);
        sum = sum * 31 + shuffle_phase(&rng);
    }
    *out = sum;
    return NULL;
}

int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : 2;
    g_iters = argc > 2 ? atoi(argv[2]) : 3;
    g_nodes = argc > 3 ? atol(argv[3]) : 500000;
    g_seed = argc > 4 ? strtoull(argv[4], NULL, 10) : 42;
    if (threads < 1 || g_iters < 1 || g_nodes < 2) {
        fprintf(stderr, "usage: small_objects [THREADS] [ITERATIONS] [NODES] [SEED]\n");
        return 2;
    }
    return run_workers("small_objects", threads, worker);
}
