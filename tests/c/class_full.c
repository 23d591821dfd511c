/* Run with canary=0 under a small address-space limit (the class regions
 * shrink with it): malloc(8) until its class's region is full and a bigger
 * class serves it; free_sized(p, 8) of that block is a correct call. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>

int main(void) {
    void (*fs)(void *, size_t) = (void (*)(void *, size_t))dlsym(RTLD_DEFAULT, "free_sized");
    if (fs == NULL) {
        fputs("class_full: free_sized is not exported\n", stderr);
        return 2;
    }
    for (size_t n = 0; n < 64u << 20; n++) {
        void *p = malloc(8);
        if (p == NULL) {
            fputs("class_full: out of memory before the class filled\n", stderr);
            return 1;
        }
        if (malloc_usable_size(p) > 16) {
            fs(p, 8);
            printf("spilled after %zu blocks; free_sized ok\n", n);
            return 0;
        }
    }
    fputs("class_full: the class never filled\n", stderr);
    return 1;
}
