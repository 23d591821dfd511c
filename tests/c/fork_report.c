/* Report lines under ENGRAM_MALLOC=stats=1 across vfork and fork.
 *
 * A vfork child whose exec fails leaves through _exit before the parent's first
 * malloc: it shares the parent's memory and must write no line. Then the parent
 * makes PARENT_ALLOCS allocations and forks CHILDREN children before any of its
 * own output; each child makes CHILD_ALLOCS allocations and leaves through
 * _exit. Expected: one line per process, the children counting only their own
 * allocations. Prints the parent's pid on stdout.
 */
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#define PARENT_ALLOCS 1000
#define CHILDREN 3
#define CHILD_ALLOCS 10

static void *volatile keep[PARENT_ALLOCS];

int main(void) {
    pid_t v = vfork();
    if (v == 0) {
        execl("/nonexistent/engram-fork-report", "x", (char *)0);
        _exit(127);
    }
    waitpid(v, NULL, 0);
    for (int i = 0; i < PARENT_ALLOCS; i++) {
        keep[i] = malloc(64);
    }
    for (int k = 0; k < CHILDREN; k++) {
        if (fork() == 0) {
            for (int i = 0; i < CHILD_ALLOCS; i++) {
                keep[i] = malloc(32);
            }
            _exit(0);
        }
    }
    while (wait(NULL) > 0) {
    }
    printf("%d\n", (int)getpid());
    return 0;
}
