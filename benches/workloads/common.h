/* Shared by the workload programs: run N worker threads and combine their
 * checksums in thread order, so the result does not depend on scheduling. */
#ifndef ENGRAM_WORKLOAD_COMMON_H
#define ENGRAM_WORKLOAD_COMMON_H

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

/* Each worker gets a uint64_t* that holds its index + 1 on entry and its checksum
 * on return. Prints "<name> checksum <hex>" and returns the process exit code. */
static int run_workers(const char *name, int threads, void *(*worker)(void *)) {
    pthread_t *tids = calloc((size_t)threads, sizeof *tids);
    uint64_t *sums = calloc((size_t)threads, sizeof *sums);
    if (!tids || !sums) {
        fprintf(stderr, "%s: out of memory\n", name);
        return 1;
    }
    for (int t = 0; t < threads; t++) {
        sums[t] = (uint64_t)t + 1;
        if (pthread_create(&tids[t], NULL, worker, &sums[t]) != 0) {
            fprintf(stderr, "%s: pthread_create failed\n", name);
            return 1;
        }
    }
    uint64_t sum = 0;
    for (int t = 0; t < threads; t++) {
        pthread_join(tids[t], NULL);
        sum = sum * 1000003 + sums[t];
    }
    free(tids);
    free(sums);
    printf("%s checksum %016llx\n", name, (unsigned long long)sum);
    return 0;
}

#endif
