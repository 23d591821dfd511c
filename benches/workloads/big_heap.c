/* big_heap: how far a heap of small blocks grows, and with how many mappings.
 *
 *   big_heap [SIZE=40000] [GIB=30]
 *
 * Allocates SIZE-byte blocks, writing one byte of each, until malloc returns
 * NULL or GIB GiB are allocated; prints how far it got and the number of
 * lines in /proc/self/maps (kernel mappings; the default vm.max_map_count is
 * 65,530). With SIZE = 40000 only one or two pages of each block are
 * resident, so 30 GiB of heap needs about 6 GiB of memory. Not part of
 * compare.sh: it is the check behind alloc/README.md, "Mappings".
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int mappings(void) {
    FILE *f = fopen("/proc/self/maps", "r");
    int n = 0, c;
    if (!f) return -1;
    while ((c = fgetc(f)) != EOF)
        if (c == '\n') n++;
    fclose(f);
    return n;
}

int main(int argc, char **argv) {
    size_t size = argc > 1 ? strtoull(argv[1], NULL, 10) : 40000;
    size_t cap = (argc > 2 ? strtoull(argv[2], NULL, 10) : 30) << 30;
    size_t total = 0, n = 0;
    if (size == 0) {
        fprintf(stderr, "usage: big_heap [SIZE>0] [GIB]\n");
        return 2;
    }
    while (total < cap) {
        char *p = malloc(size);
        if (!p) {
            printf("NULL after %zu blocks, %.2f GiB (%s), %d mappings\n", n,
                   total / 1073741824.0, strerror(errno), mappings());
            return 1;
        }
        p[0] = 1;
        total += size;
        if (++n % 100000 == 0)
            fprintf(stderr, "%.2f GiB, %d mappings\n", total / 1073741824.0, mappings());
    }
    printf("reached %.2f GiB in %zu blocks, %d mappings\n", total / 1073741824.0, n, mappings());
    return 0;
}
