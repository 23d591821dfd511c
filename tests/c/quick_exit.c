/* Leaves through quick_exit(3), which skips destructors and calls glibc's
 * internal _exit: the report line must still be written. */
#include <stdlib.h>

static void *volatile keep;

int main(void) {
    keep = malloc(10);
    quick_exit(0);
}
