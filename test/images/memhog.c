/*
 * memhog MIB [zero]: a stateful test workload. Fills MIB MiB of heap with a
 * pattern derived from a seed (with "zero": only the first word of each
 * 4 KiB page, the rest left zero, so every page is present but nearly
 * empty: mostly-zero memory), prints "ready MIB", then once a second
 * prints "tick N sum S" where S is a checksum of the whole heap. After a
 * checkpoint and restore the ticks must continue from N+1 with the same S:
 * the counter proves the process resumed, the sum that its memory did.
 * Built statically into the test image by scripts/build-test-image.sh.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
    size_t mib = argc > 1 ? strtoul(argv[1], NULL, 10) : 0;
    size_t words = mib * 1024 * 1024 / sizeof(uint64_t);
    size_t stride = argc > 2 && strcmp(argv[2], "zero") == 0 ? 4096 / sizeof(uint64_t) : 1;
    uint64_t *heap = words ? calloc(words, sizeof(uint64_t)) : NULL;
    if (words && !heap) {
        perror("calloc");
        return 1;
    }
    uint64_t x = (uint64_t)time(NULL) | 1;
    for (size_t i = 0; i < words; i += stride) {
        x ^= x << 13; x ^= x >> 7; x ^= x << 17;
        heap[i] = x;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    printf("ready %zu\n", mib);
    for (unsigned long n = 0;; n++) {
        uint64_t sum = 0;
        for (size_t i = 0; i < words; i++) sum += heap[i] * (i | 1);
        printf("tick %lu sum %016llx\n", n, (unsigned long long)sum);
        sleep(1);
    }
}
