/* measure: run a command, report its wall time and peak RSS.
 *
 *   measure OUTFILE PRELOAD TIMEOUT_S -- CMD [ARGS...]
 *
 * Forks, sets LD_PRELOAD=PRELOAD in the child only (an empty PRELOAD leaves
 * LD_PRELOAD unset: the system allocator), execs CMD in its own process group
 * and waits for it with wait4(). Writes one line "SECONDS MAXRSS_KIB STATUS"
 * to OUTFILE: SECONDS is CLOCK_MONOTONIC wall time, MAXRSS_KIB is ru_maxrss
 * (the peak RSS of the largest process in the child's tree that was waited
 * for, as /usr/bin/time -f %M reports it) and STATUS is the exit code, or
 * 128+signal when the child was killed. After TIMEOUT_S seconds (0: never)
 * the whole process group is killed with SIGKILL. The measurer itself never
 * runs under the preloaded allocator.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t g_timed_out;
static pid_t g_child;

static void on_alarm(int sig) {
    (void)sig;
    g_timed_out = 1;
    kill(-g_child, SIGKILL);
}

/* Interrupted (Ctrl-C on compare.sh): take the command's group down too. */
static void on_interrupt(int sig) {
    kill(-g_child, SIGKILL);
    signal(sig, SIG_DFL);
    raise(sig);
}

int main(int argc, char **argv) {
    if (argc < 6 || strcmp(argv[4], "--") != 0) {
        fprintf(stderr, "usage: measure OUTFILE PRELOAD TIMEOUT_S -- CMD [ARGS...]\n");
        return 2;
    }
    const char *out = argv[1];
    const char *preload = argv[2];
    unsigned timeout = (unsigned)strtoul(argv[3], NULL, 10);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    pid_t pid = fork();
    if (pid < 0) {
        perror("measure: fork");
        return 2;
    }
    if (pid == 0) {
        setpgid(0, 0);
        if (preload[0] != '\0') {
            setenv("LD_PRELOAD", preload, 1);
        } else {
            unsetenv("LD_PRELOAD");
        }
        execvp(argv[5], &argv[5]);
        fprintf(stderr, "measure: exec %s: %s\n", argv[5], strerror(errno));
        _exit(127);
    }
    setpgid(pid, pid);
    g_child = pid;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_interrupt;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    if (timeout > 0) {
        sa.sa_handler = on_alarm;
        sigaction(SIGALRM, &sa, NULL);
        alarm(timeout);
    }
    int status = 0;
    struct rusage ru;
    memset(&ru, 0, sizeof ru);
    while (wait4(pid, &status, 0, &ru) < 0) {
        if (errno != EINTR) {
            perror("measure: wait4");
            return 2;
        }
    }
    alarm(0);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    /* Anything the command left behind in its group (a daemon) goes too. */
    kill(-pid, SIGKILL);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    if (g_timed_out) code = 124;
    FILE *f = fopen(out, "w");
    if (!f) {
        perror("measure: open output");
        return 2;
    }
    fprintf(f, "%.6f %ld %d\n", secs, ru.ru_maxrss, code);
    fclose(f);
    return 0;
}
