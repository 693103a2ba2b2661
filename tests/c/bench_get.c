/*
 * Times L1 hits through the C API: tierstack_cache_get + tierstack_value_free
 * of one 1,536-byte value (the size of a UI component), on a cache with the
 * default config in a temporary directory.
 *
 *   bench_get ITERATIONS   ->   ns_per_get <float>
 *
 * Built with -O2 against the release libtierstack.a by `tests/run-c --bench`.
 */
#define _POSIX_C_SOURCE 200809L

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "check.h"

static double now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

int main(int argc, char **argv) {
    long iterations = argc > 1 ? strtol(argv[1], NULL, 10) : 0;
    if (iterations <= 0) {
        fprintf(stderr, "usage: %s ITERATIONS\n", argv[0]);
        return 2;
    }
    char *dir = tmp_dir_new();
    tierstack_cache *cache = open_in(dir, "");
    if (cache == NULL) {
        return 1;
    }
    static const char key[] = "component:button";
    uint8_t data[1536];
    for (size_t i = 0; i < sizeof data; i++) {
        data[i] = (uint8_t)('a' + i % 26);
    }
    if (tierstack_cache_set(cache, key, sizeof key - 1, data, sizeof data, 0) !=
        TIERSTACK_RESULT_OK) {
        fprintf(stderr, "set failed: %s\n", last_error());
        return 1;
    }

    /* Warm up, checking each read is a hit of the stored bytes. */
    size_t checked = 0;
    for (long i = 0; i < iterations / 10 + 1000; i++) {
        tierstack_value *value = NULL;
        tierstack_cache_get(cache, key, sizeof key - 1, &value);
        checked += tierstack_value_len(value) == sizeof data &&
                   memcmp(tierstack_value_data(value), data, sizeof data) == 0;
        tierstack_value_free(value);
    }

    size_t hits = 0;
    double start = now_ns();
    for (long i = 0; i < iterations; i++) {
        tierstack_value *value = NULL;
        tierstack_result r = tierstack_cache_get(cache, key, sizeof key - 1, &value);
        hits += r == TIERSTACK_RESULT_OK && tierstack_value_len(value) == sizeof data;
        tierstack_value_free(value);
    }
    double elapsed = now_ns() - start;

    tierstack_cache_free(cache);
    tmp_dir_remove(dir);
    if (hits != (size_t)iterations || checked != (size_t)(iterations / 10 + 1000)) {
        fprintf(stderr, "only %zu of %ld timed reads were hits\n", hits, iterations);
        return 1;
    }
    printf("ns_per_get %.2f\n", elapsed / (double)iterations);
    return 0;
}
