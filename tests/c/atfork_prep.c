/* fork() in a program whose library's prepare handler allocates (atfork_lib.c):
 * must not hang, and parent and child go on allocating. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern int atfork_lib_ran;

int main(void) {
    for (int round = 0; round < 3; round++) {
        char *p = malloc(3000);
        memset(p, 3, 3000);
        pid_t c = fork();
        if (c < 0) {
            perror("fork");
            return 1;
        }
        if (c == 0) {
            char *q = malloc(5000);
            memset(q, 4, 5000);
            free(q);
            free(p);
            _exit(0);
        }
        int st = 0;
        if (waitpid(c, &st, 0) != c || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
            fprintf(stderr, "atfork_prep: child failed (status %d)\n", st);
            return 1;
        }
        free(p);
    }
    if (atfork_lib_ran != 3) {
        fprintf(stderr, "atfork_prep: the prepare handler ran %d times, not 3\n", atfork_lib_ran);
        return 1;
    }
    puts("fork ok");
    return 0;
}
