/* A library whose constructor registers a fork prepare handler that allocates.
 * Its constructor runs before the preloaded allocator's, so its handler is
 * registered first and runs last: after engram's prepare handler has taken
 * every allocator lock (glibc's own malloc takes its locks after all handlers). */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

int atfork_lib_ran;

static void prepare(void) {
    char *small = malloc(3000);
    char *large = malloc(1 << 20);
    if (small != NULL && large != NULL) {
        memset(small, 1, 3000);
        memset(large, 2, 1 << 20);
        atfork_lib_ran++;
    }
    free(small);
    free(large);
}

__attribute__((constructor)) static void init(void) {
    pthread_atfork(prepare, NULL, NULL);
}
