/*
 * One cache handle used by 8 threads at once: each writes and reads its own
 * keys, all of them race on shared keys, each sees its own last error
 * message, and the final values are checked after every thread joined.
 */
#define _POSIX_C_SOURCE 200809L

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

#define THREADS 8
#define OWN_KEYS 100
#define SHARED_KEYS 40
#define ROUNDS 3

static tierstack_cache *cache;
static pthread_barrier_t barrier;

/* snprintf, returning the length written. */
static size_t format(char *buf, size_t size, const char *fmt, ...) {
    va_list args;
    va_start(args, fmt);
    int n = vsnprintf(buf, size, fmt, args);
    va_end(args);
    return n > 0 ? (size_t)n : 0;
}

static void *worker(void *arg) {
    int id = (int)(intptr_t)arg;
    char key[64], value[64];
    tierstack_value *got = NULL;

    /* Own keys: written, read back and half of them deleted, repeatedly. */
    for (int round = 0; round < ROUNDS; round++) {
        for (int i = 0; i < OWN_KEYS; i++) {
            size_t kn = format(key, sizeof key, "own:%d:%d", id, i);
            size_t vn = format(value, sizeof value, "value %d/%d", id, i * 1000 + round);
            CHECK_OK(tierstack_cache_set(cache, key, kn, (const uint8_t *)value, vn, 0));
            CHECK_OK(tierstack_cache_get(cache, key, kn, &got));
            CHECK_VALUE(got, value);
        }
        for (int i = 0; i < OWN_KEYS; i += 2) {
            size_t kn = format(key, sizeof key, "own:%d:%d", id, i);
            bool existed = false;
            CHECK_OK(tierstack_cache_delete(cache, key, kn, &existed));
            CHECK(existed);
        }
    }

    /* Shared keys: every thread writes and reads every one of them. */
    for (int round = 0; round < ROUNDS; round++) {
        for (int i = 0; i < SHARED_KEYS; i++) {
            size_t kn = format(key, sizeof key, "shared:%d", i);
            size_t vn = format(value, sizeof value, "writer %d round %d", id, round);
            CHECK_OK(tierstack_cache_set(cache, key, kn, (const uint8_t *)value, vn, 0));
            CHECK_OK(tierstack_cache_get(cache, key, kn, &got));
            /* Some thread's write: "writer <t> round <r>". */
            CHECK(got != NULL && tierstack_value_len(got) >= 16 &&
                  memcmp(tierstack_value_data(got), "writer ", 7) == 0);
            tierstack_value_free(got);
        }
    }

    /* Each thread fails differently; its message is its own. */
    char bad[300];
    size_t bad_len = 256 + (size_t)id;
    memset(bad, 'k', bad_len);
    CHECK_RESULT(tierstack_cache_get(cache, bad, bad_len, &got), TIERSTACK_RESULT_INVALID_KEY);
    pthread_barrier_wait(&barrier);
    char want[128];
    snprintf(want, sizeof want, "invalid_key: key is %zu bytes long; at most 255 are allowed",
             bad_len);
    CHECK(strcmp(last_error(), want) == 0);
    pthread_barrier_wait(&barrier);

    /* Final writes: shared key i belongs to thread i % THREADS. */
    for (int i = id; i < SHARED_KEYS; i += THREADS) {
        size_t kn = format(key, sizeof key, "shared:%d", i);
        size_t vn = format(value, sizeof value, "final %d by %d", i, id);
        CHECK_OK(tierstack_cache_set(cache, key, kn, (const uint8_t *)value, vn, 0));
    }
    return NULL;
}

static void check_final_values(void) {
    char key[64], value[64];
    tierstack_value *got = NULL;
    for (int id = 0; id < THREADS; id++) {
        for (int i = 0; i < OWN_KEYS; i++) {
            size_t kn = format(key, sizeof key, "own:%d:%d", id, i);
            CHECK_OK(tierstack_cache_get(cache, key, kn, &got));
            if (i % 2 == 0) {
                CHECK(got == NULL);
            } else {
                format(value, sizeof value, "value %d/%d", id, i * 1000 + ROUNDS - 1);
                CHECK_VALUE(got, value);
            }
        }
    }
    for (int i = 0; i < SHARED_KEYS; i++) {
        size_t kn = format(key, sizeof key, "shared:%d", i);
        format(value, sizeof value, "final %d by %d", i, i % THREADS);
        CHECK_OK(tierstack_cache_get(cache, key, kn, &got));
        CHECK_VALUE(got, value);
    }
    uint64_t n = 0;
    CHECK_OK(tierstack_cache_len(cache, &n));
    CHECK(n == THREADS * OWN_KEYS / 2 + SHARED_KEYS);
}

static char *dir;

static void test_eight_threads_one_handle(void) {
    dir = tmp_dir_new();
    cache = open_in(dir, "");
    pthread_barrier_init(&barrier, NULL, THREADS);
    pthread_t threads[THREADS];
    for (int id = 0; id < THREADS; id++) {
        CHECK(pthread_create(&threads[id], NULL, worker, (void *)(intptr_t)id) == 0);
    }
    for (int id = 0; id < THREADS; id++) {
        CHECK(pthread_join(threads[id], NULL) == 0);
    }
    pthread_barrier_destroy(&barrier);
    check_final_values();
}

static void test_final_values_survive_a_restart(void) {
    /* The same values from the file: L1 is empty after the reopen. */
    CHECK_OK(tierstack_cache_close(cache));
    tierstack_cache_free(cache);
    cache = open_in(dir, "");
    tierstack_value *got = NULL;
    CHECK_OK(tierstack_cache_lookup(cache, "shared:3", 8, &got));
    CHECK(got != NULL && strcmp(tierstack_value_tier(got), "sqlite") == 0);
    tierstack_value_free(got);
    check_final_values();
    tierstack_cache_free(cache);
    tmp_dir_remove(dir);
}

int main(void) {
    check_case("8 threads share one handle; final values checked", test_eight_threads_one_handle);
    check_case("the final values survive a restart", test_final_values_survive_a_restart);
    return check_summary();
}
