/* Linked against libengram_malloc.a (tests/tests/abi.rs): four threads
 * allocate and free 400k blocks of 16 B .. 5 KiB through the archive's
 * malloc, which reaches each thread's cache through initial-exec TLS. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

static int token;

static void *work(void *arg) {
    for (int i = 0; i < 100000; i++) {
        char *volatile p = malloc(16 + i % 5000);
        if (!p) return NULL;
        p[0] = 1;
        free(p);
    }
    return arg;
}

int main(void) {
    pthread_t t[4];
    void *r;
    int ok = 1;
    for (int i = 0; i < 4; i++)
        if (pthread_create(&t[i], NULL, work, &token) != 0) return 2;
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], &r);
        ok &= r != NULL;
    }
    puts(ok ? "ok" : "malloc failed");
    return ok ? 0 : 1;
}
