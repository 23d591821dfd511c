/* A thread's first malloc after the program dlopen'ed libraries with TLS
 * variables: the thread's DTV is stale, so a __tls_get_addr on the way
 * would grow it with malloc. Run by tests/tests/abi.rs with the directory
 * holding libm1.so .. libm8.so as argv[1]; prints "first malloc: ok". */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int pfd[2];

static void *thread_main(void *arg) {
    char c;
    (void)arg;
    /* No allocator call in this thread before the libraries are loaded. */
    if (read(pfd[0], &c, 1) != 1) return NULL;
    char *volatile p = malloc(100);
    if (!p) return NULL;
    memset(p, 1, 100);
    free(p);
    char *volatile q = malloc(200000); /* a large block too */
    if (!q) return NULL;
    free(q);
    return (void *)1;
}

int main(int argc, char **argv) {
    if (argc < 2 || pipe(pfd) != 0) return 2;
    pthread_t t;
    if (pthread_create(&t, NULL, thread_main, NULL) != 0) return 3;
    for (int i = 1; i <= 8; i++) {
        char name[4096];
        snprintf(name, sizeof name, "%s/libm%d.so", argv[1], i);
        if (!dlopen(name, RTLD_NOW)) {
            fprintf(stderr, "dlopen: %s\n", dlerror());
            return 4;
        }
    }
    if (write(pfd[1], "x", 1) != 1) return 5;
    void *r;
    pthread_join(t, &r);
    printf("first malloc: %s\n", r ? "ok" : "failed");
    return r ? 0 : 1;
}
