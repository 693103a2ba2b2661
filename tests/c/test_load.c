/*
 * Loading through the C API, in one process, on real SQLite files: one
 * loader call for 100 threads, not-found and its negative cache, stale
 * copies when the loader fails, the breaker is open or the soft timeout
 * passes, the error codes without a stale copy, how a loader's answers and
 * failures are read, a loader's tags and its own error messages, batches,
 * read-through, the breaker status and stats.
 * The cross-process cases are in test_processes.c.
 */
#define _POSIX_C_SOURCE 200809L

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "check.h"

#define K(s) (s), (sizeof(s) - 1)

/* What a test loader does, and what it saw. Used from tierstack's threads. */
typedef struct {
    const char *value;      /* the value to answer; NULL: see below */
    bool not_found;         /* answer "not found" */
    tierstack_result fail;  /* return this without answering (when not OK) */
    bool answer_twice;      /* answer `value` twice; the second result kept */
    double sleep;           /* seconds to sleep before answering */
    double ttl;             /* the loader's TTL */
    atomic_int calls;
    atomic_bool finished;   /* the last call returned */
    tierstack_result second_answer;
    tierstack_load *kept;   /* the handle of the last call, kept past it */
} loader_state;

static tierstack_result test_loader(void *user_data, const char *key, size_t key_len,
                                    tierstack_load *load) {
    loader_state *s = user_data;
    atomic_fetch_add(&s->calls, 1);
    atomic_store(&s->finished, false);
    /* The key arrives with its length and a NUL after it. */
    tierstack_result res = key[key_len] == '\0' ? TIERSTACK_RESULT_OK : TIERSTACK_RESULT_INTERNAL;
    s->kept = load;
    if (s->sleep > 0) {
        sleep_seconds(s->sleep);
    }
    if (res != TIERSTACK_RESULT_OK) {
        /* a key without its NUL: fail the load */
    } else if (s->fail != TIERSTACK_RESULT_OK) {
        res = s->fail;
    } else if (s->not_found) {
        res = tierstack_load_not_found(load);
    } else if (s->value != NULL) {
        res = tierstack_load_value(load, (const uint8_t *)s->value, strlen(s->value), s->ttl);
        if (s->answer_twice) {
            s->second_answer = tierstack_load_value(load, (const uint8_t *)"again", 5, 0);
        }
    }
    atomic_store(&s->finished, true);
    return res;
}

/* Waits (at most 10 s) until the loader's last call returned: its state
 * must outlive it. */
static void wait_finished(loader_state *s) {
    for (int i = 0; i < 1000 && !atomic_load(&s->finished); i++) {
        sleep_seconds(0.01);
    }
    CHECK(atomic_load(&s->finished));
}

static char *dir;
static tierstack_cache *cache;

static void fresh(const char *extra) {
    dir = tmp_dir_new();
    cache = open_in(dir, extra);
}

static void done(void) {
    tierstack_cache_free(cache);
    cache = NULL;
    tmp_dir_remove(dir);
    dir = NULL;
}

static double now_seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* get_or_load of `key` with `s`; the result, and the value in *out. */
static tierstack_result load(const char *key, loader_state *s, tierstack_value **out) {
    return tierstack_cache_get_or_load(cache, key, strlen(key), test_loader, s, 0, out);
}

/* Checks that a value is `want`, served by `tier`, stale or not; frees it. */
#define CHECK_SERVED(value, want, tier, stale)                                               \
    do {                                                                                     \
        tierstack_value *v_ = (value);                                                       \
        CHECK(v_ != NULL && strcmp(tierstack_value_tier(v_), (tier)) == 0);                  \
        CHECK(tierstack_value_is_stale(v_) == (stale));                                      \
        CHECK_VALUE(v_, want);                                                               \
    } while (0)

/* ---- one loader call for many threads ---- */

static pthread_barrier_t barrier;
static loader_state shared_loader;
static atomic_int shared_ok;

static void *miss_together(void *arg) {
    (void)arg;
    tierstack_value *value = NULL;
    pthread_barrier_wait(&barrier);
    if (CHECK_OK(load("hot", &shared_loader, &value)) && value != NULL &&
        tierstack_value_len(value) == 6 && memcmp(tierstack_value_data(value), "shared", 6) == 0) {
        atomic_fetch_add(&shared_ok, 1);
    }
    tierstack_value_free(value);
    return NULL;
}

static void test_hundred_threads_one_call(void) {
    fresh("");
    shared_loader = (loader_state){.value = "shared", .sleep = 0.2};
    atomic_store(&shared_ok, 0);
    enum { THREADS = 100 };
    pthread_t threads[THREADS];
    pthread_barrier_init(&barrier, NULL, THREADS);
    for (int i = 0; i < THREADS; i++) {
        CHECK(pthread_create(&threads[i], NULL, miss_together, NULL) == 0);
    }
    for (int i = 0; i < THREADS; i++) {
        pthread_join(threads[i], NULL);
    }
    pthread_barrier_destroy(&barrier);
    CHECK(atomic_load(&shared_loader.calls) == 1);
    CHECK(atomic_load(&shared_ok) == THREADS);
    tierstack_value *value = NULL;
    CHECK_OK(tierstack_cache_lookup(cache, K("hot"), &value));
    CHECK_SERVED(value, "shared", "memory", false);
    done();
}

/* ---- answers ---- */

static void test_loaded_value_reports_source_then_memory(void) {
    fresh("");
    loader_state s = {.value = "v1"};
    tierstack_value *value = NULL;
    CHECK_OK(load("k", &s, &value));
    CHECK_SERVED(value, "v1", "source", false);
    CHECK_OK(load("k", &s, &value));
    CHECK_SERVED(value, "v1", "memory", false);
    CHECK(atomic_load(&s.calls) == 1);
    CHECK_OK(tierstack_cache_get(cache, K("k"), &value));
    CHECK_VALUE(value, "v1");
    done();
}

static void test_not_found_is_negatively_cached(void) {
    fresh("\"negative_ttl\": 60");
    loader_state s = {.not_found = true};
    tierstack_value *value = (tierstack_value *)&s;
    CHECK_OK(load("gone", &s, &value));
    CHECK(value == NULL);
    value = (tierstack_value *)&s;
    CHECK_OK(load("gone", &s, &value));
    CHECK(value == NULL);
    CHECK(atomic_load(&s.calls) == 1);
    value = (tierstack_value *)&s;
    CHECK_OK(tierstack_cache_get(cache, K("gone"), &value));
    CHECK(value == NULL);
    uint64_t n = 99;
    CHECK_OK(tierstack_cache_len(cache, &n));
    CHECK(n == 0);
    bool has = true;
    CHECK_OK(tierstack_cache_has(cache, K("gone"), &has));
    CHECK(!has);
    done();
}

static void test_loader_ttl_and_call_ttl(void) {
    fresh("\"ttl_jitter\": 0, \"refresh_ahead\": 0, \"test_clock\": true");
    loader_state s = {.value = "short", .ttl = 0.2};
    tierstack_value *value = NULL;
    CHECK_OK(tierstack_cache_get_or_load(cache, K("k"), test_loader, &s, 60, &value));
    CHECK_VALUE(value, "short");
    /* The loader's 0.2 s, not the call's 60 s, to the millisecond. */
    CHECK_OK(tierstack_advance_test_clock(0.199));
    CHECK_OK(load("k", &s, &value));
    CHECK_SERVED(value, "short", "memory", false);
    CHECK(atomic_load(&s.calls) == 1);
    CHECK_OK(tierstack_advance_test_clock(0.001));
    s.value = "again";
    s.ttl = 0;
    CHECK_OK(load("k", &s, &value));
    CHECK_SERVED(value, "again", "source", false);
    CHECK(atomic_load(&s.calls) == 2);
    /* A bad call TTL is refused before anything is read or loaded. */
    value = (tierstack_value *)&s;
    CHECK_RESULT(tierstack_cache_get_or_load(cache, K("x"), test_loader, &s, -1, &value),
                 TIERSTACK_RESULT_INVALID_ARGUMENT);
    CHECK_RESULT(tierstack_cache_get_or_load(cache, K("x"), test_loader, &s, NAN, &value),
                 TIERSTACK_RESULT_INVALID_ARGUMENT);
    CHECK(value == (tierstack_value *)&s);
    CHECK(atomic_load(&s.calls) == 2);
    /* A bad loader TTL is refused by tierstack_load_value, and the loader
     * returning that result fails the load with its message. */
    s.ttl = -5;
    CHECK_RESULT(load("y", &s, &value), TIERSTACK_RESULT_SOURCE);
    CHECK(strncmp(last_error(),
                  "source: the loader returned invalid_argument: invalid_argument: ttl -5.0 is "
                  "negative",
                  82) == 0);
    done();
}

static void test_loader_failures_without_stale(void) {
    fresh("");
    tierstack_value *value = (tierstack_value *)&dir;
    loader_state s = {.fail = TIERSTACK_RESULT_SOURCE};
    CHECK_RESULT(load("a", &s, &value), TIERSTACK_RESULT_SOURCE);
    CHECK(strcmp(last_error(), "source: the loader returned source") == 0);
    CHECK(value == (tierstack_value *)&dir);

    s = (loader_state){.fail = unknown_result_code()};
    CHECK_RESULT(load("b", &s, &value), TIERSTACK_RESULT_SOURCE);
    char want[64];
    snprintf(want, sizeof want, "source: the loader returned unknown result %u",
             (unsigned)unknown_result_code());
    CHECK(strcmp(last_error(), want) == 0);

    s = (loader_state){0}; /* returns OK, answers nothing */
    CHECK_RESULT(load("c", &s, &value), TIERSTACK_RESULT_SOURCE);
    CHECK(strcmp(last_error(), "source: the loader answered nothing") == 0);
    bool has = true;
    CHECK_OK(tierstack_cache_has(cache, K("c"), &has));
    CHECK(!has);
    CHECK(value == (tierstack_value *)&dir);
    done();
}

static void test_second_answer_and_use_after_the_call(void) {
    fresh("");
    loader_state s = {.value = "first", .answer_twice = true};
    tierstack_value *value = NULL;
    CHECK_OK(load("k", &s, &value));
    CHECK_VALUE(value, "first");
    CHECK(s.second_answer == TIERSTACK_RESULT_INVALID_ARGUMENT);
    /* The handle died with the call. */
    CHECK_RESULT(tierstack_load_value(s.kept, (const uint8_t *)"late", 4, 0),
                 TIERSTACK_RESULT_INVALID_ARGUMENT);
    CHECK(strcmp(last_error(), "invalid_argument: load is not a live handle: it is valid only "
                               "while its loader call runs") == 0);
    CHECK_RESULT(tierstack_load_not_found(s.kept), TIERSTACK_RESULT_INVALID_ARGUMENT);
    CHECK_RESULT(tierstack_load_not_found(NULL), TIERSTACK_RESULT_INVALID_ARGUMENT);
    CHECK(strcmp(last_error(), "invalid_argument: load is a NULL pointer") == 0);
    CHECK_RESULT(tierstack_load_batch_not_found(NULL, K("k")), TIERSTACK_RESULT_INVALID_ARGUMENT);
    done();
}

static void test_null_arguments(void) {
    fresh("");
    loader_state s = {.value = "v"};
    tierstack_value *value = NULL;
    CHECK_RESULT(tierstack_cache_get_or_load(cache, K("k"), NULL, &s, 0, &value),
                 TIERSTACK_RESULT_INVALID_ARGUMENT);
    CHECK(strcmp(last_error(), "invalid_argument: loader is a NULL pointer") == 0);
    CHECK_RESULT(tierstack_cache_get_or_load(cache, K("k"), test_loader, &s, 0, NULL),
                 TIERSTACK_RESULT_INVALID_ARGUMENT);
    CHECK_RESULT(tierstack_cache_get_or_load(NULL, K("k"), test_loader, &s, 0, &value),
                 TIERSTACK_RESULT_INVALID_ARGUMENT);
    CHECK_RESULT(tierstack_cache_get_or_load(cache, K(""), test_loader, &s, 0, &value),
                 TIERSTACK_RESULT_INVALID_KEY);
    CHECK(atomic_load(&s.calls) == 0);

    char *config = config_in(dir, "");
    tierstack_cache *other = NULL;
    CHECK_RESULT(tierstack_cache_open_with_source(config, NULL, NULL, &other),
                 TIERSTACK_RESULT_INVALID_ARGUMENT);
    tierstack_source source = {.load = NULL, .store = NULL, .remove = NULL};
    CHECK_RESULT(tierstack_cache_open_with_source(config, &source, NULL, &other),
                 TIERSTACK_RESULT_INVALID_ARGUMENT);
    CHECK(strcmp(last_error(), "invalid_argument: source->load is a NULL pointer") == 0);
    CHECK(other == NULL);
    free(config);

    char *text = NULL;
    CHECK_RESULT(tierstack_cache_breaker_status_json(NULL, &text), TIERSTACK_RESULT_INVALID_ARGUMENT);
    CHECK_RESULT(tierstack_cache_breaker_status_json(cache, NULL), TIERSTACK_RESULT_INVALID_ARGUMENT);
    CHECK_RESULT(tierstack_cache_breaker_open(NULL), TIERSTACK_RESULT_INVALID_ARGUMENT);
    CHECK_RESULT(tierstack_cache_breaker_close(NULL), TIERSTACK_RESULT_INVALID_ARGUMENT);
    done();
}

static tierstack_result store_fn(void *user_data, const char *key, size_t key_len,
                                 const uint8_t *data, size_t len, const char *idempotency_key,
                                 size_t idempotency_key_len, tierstack_write *write) {
    (void)user_data, (void)key, (void)key_len, (void)data, (void)len;
    (void)idempotency_key, (void)idempotency_key_len, (void)write;
    return TIERSTACK_RESULT_OK;
}

static tierstack_result remove_fn(void *user_data, const char *key, size_t key_len,
                                  const char *idempotency_key, size_t idempotency_key_len,
                                  tierstack_write *write) {
    (void)user_data, (void)key, (void)key_len;
    (void)idempotency_key, (void)idempotency_key_len, (void)write;
    return TIERSTACK_RESULT_OK;
}

static void test_store_and_remove_go_together(void) {
    dir = tmp_dir_new();
    char *config = config_in(dir, "");
    tierstack_cache *other = NULL;
    tierstack_source source = {.load = test_loader, .store = store_fn, .remove = NULL};
    CHECK_RESULT(tierstack_cache_open_with_source(config, &source, NULL, &other),
                 TIERSTACK_RESULT_INVALID_ARGUMENT);
    CHECK(strcmp(last_error(), "invalid_argument: source->remove is NULL but source->store is "
                               "not: a writable source gives both, a read-only one neither") == 0);
    source = (tierstack_source){.load = test_loader, .store = NULL, .remove = remove_fn};
    CHECK_RESULT(tierstack_cache_open_with_source(config, &source, NULL, &other),
                 TIERSTACK_RESULT_INVALID_ARGUMENT);
    CHECK(strcmp(last_error(), "invalid_argument: source->store is NULL but source->remove is "
                               "not: a writable source gives both, a read-only one neither") == 0);
    CHECK(other == NULL);
    /* Both: a writable source, which any strategy accepts. */
    source = (tierstack_source){.load = test_loader, .store = store_fn, .remove = remove_fn};
    CHECK_OK(tierstack_cache_open_with_source(config, &source, NULL, &other));
    tierstack_cache_free(other);
    free(config);
    tmp_dir_remove(dir);
}

/* ---- stale copies ---- */

#define STALE_CONFIG "\"sqlite\": {\"path\": \"%s/cache.db\", \"ttl\": 0.2}, " \
                     "\"refresh_ahead\": 0, \"ttl_jitter\": 0, \"test_clock\": true"

/* A cache whose "k" holds "old", expired (stale) in the file. */
static void fresh_with_stale(const char *fail_safe, loader_state *first) {
    dir = tmp_dir_new();
    char config[1024];
    snprintf(config, sizeof config, "{" STALE_CONFIG "%s%s}", dir, *fail_safe ? ", " : "",
             fail_safe);
    CHECK_OK(tierstack_cache_open(config, &cache));
    *first = (loader_state){.value = "old"};
    tierstack_value *value = NULL;
    CHECK_OK(load("k", first, &value));
    CHECK_VALUE(value, "old");
    CHECK_OK(tierstack_advance_test_clock(0.2));
}

static void test_failing_loader_serves_stale(void) {
    loader_state first;
    fresh_with_stale("", &first);
    loader_state failing = {.fail = TIERSTACK_RESULT_SOURCE};
    tierstack_value *value = NULL;
    CHECK_OK(load("k", &failing, &value));
    CHECK_SERVED(value, "old", "sqlite", true);
    CHECK(atomic_load(&failing.calls) == 1);
    done();
}

static void test_open_breaker_serves_stale(void) {
    loader_state first;
    fresh_with_stale("", &first);
    CHECK_OK(tierstack_cache_breaker_open(cache));
    loader_state s = {.value = "new"};
    tierstack_value *value = NULL;
    CHECK_OK(load("k", &s, &value));
    CHECK_SERVED(value, "old", "sqlite", true);
    /* Without a stale copy: source_unavailable. */
    value = (tierstack_value *)&s;
    CHECK_RESULT(load("other", &s, &value), TIERSTACK_RESULT_SOURCE_UNAVAILABLE);
    CHECK(value == (tierstack_value *)&s);
    CHECK(atomic_load(&s.calls) == 0);
    CHECK_OK(tierstack_cache_breaker_close(cache));
    CHECK_OK(load("k", &s, &value));
    CHECK_SERVED(value, "new", "source", false);
    CHECK(atomic_load(&s.calls) == 1);
    done();
}

static void test_soft_timeout_serves_stale_then_fills(void) {
    loader_state first;
    fresh_with_stale("\"fail_safe\": {\"soft_timeout\": 0.2, \"hard_timeout\": 5}", &first);
    loader_state slow = {.value = "new", .sleep = 1.0, .ttl = 60};
    tierstack_value *value = NULL;
    double started = now_seconds();
    CHECK_OK(load("k", &slow, &value));
    double elapsed = now_seconds() - started;
    CHECK_SERVED(value, "old", "sqlite", true);
    /* Answered before the loader finished; within soft_timeout + 50 ms
     * (not asserted under valgrind or ASan, which slow everything). */
    CHECK(!atomic_load(&slow.finished));
    if (getenv("TIERSTACK_TEST_SLOW") == NULL) {
        CHECK(elapsed < 0.25);
    }
    wait_finished(&slow);
    /* The background load fills the tiers: poll until it has stored. */
    bool filled = false;
    for (int i = 0; i < 500 && !filled; i++) {
        CHECK_OK(tierstack_cache_lookup(cache, K("k"), &value));
        filled = value != NULL && !tierstack_value_is_stale(value);
        if (!filled) {
            tierstack_value_free(value);
            sleep_seconds(0.01);
        }
    }
    CHECK(filled);
    if (filled) {
        /* Seen in the file (perhaps before L1, as the store writes the file
         * first): the next read is from memory. */
        tierstack_value_free(value);
        CHECK_OK(tierstack_cache_lookup(cache, K("k"), &value));
        CHECK_SERVED(value, "new", "memory", false);
    }
    CHECK(atomic_load(&slow.calls) == 1);
    done();
}

static void test_hard_timeout_without_stale(void) {
    fresh("\"fail_safe\": {\"soft_timeout\": 0.1, \"hard_timeout\": 0.2}");
    loader_state slow = {.value = "late", .sleep = 0.5};
    tierstack_value *value = NULL;
    CHECK_RESULT(load("k", &slow, &value), TIERSTACK_RESULT_TIMEOUT);
    wait_finished(&slow);
    bool has = true;
    CHECK_OK(tierstack_cache_has(cache, K("k"), &has));
    CHECK(!has);
    done();
}

/* ---- the breaker ---- */

static void test_breaker_status_after_failures(void) {
    fresh("\"circuit_breaker\": {\"threshold\": 2, \"timeout\": 60}");
    char *text = NULL;
    CHECK_OK(tierstack_cache_breaker_status_json(cache, &text));
    CHECK(text != NULL && strcmp(text, "{\"state\":\"closed\",\"failure_count\":0,"
                                       "\"allows_request\":true,\"last_failure_at\":null,"
                                       "\"next_attempt_at\":null,\"trips\":0}") == 0);
    tierstack_string_free(text);

    loader_state s = {.fail = TIERSTACK_RESULT_SOURCE};
    tierstack_value *value = NULL;
    CHECK_RESULT(load("a", &s, &value), TIERSTACK_RESULT_SOURCE);
    CHECK_RESULT(load("b", &s, &value), TIERSTACK_RESULT_SOURCE);
    CHECK_RESULT(load("c", &s, &value), TIERSTACK_RESULT_SOURCE_UNAVAILABLE);
    CHECK(atomic_load(&s.calls) == 2);

    CHECK_OK(tierstack_cache_breaker_status_json(cache, &text));
    json_t *status = json_loads(text, 0, NULL);
    tierstack_string_free(text);
    const json_t *state = json_object_get(status, "state");
    const json_t *count = json_object_get(status, "failure_count");
    const json_t *allows = json_object_get(status, "allows_request");
    const json_t *last = json_object_get(status, "last_failure_at");
    const json_t *next = json_object_get(status, "next_attempt_at");
    const json_t *trips = json_object_get(status, "trips");
    CHECK(json_is_string(state) && strcmp(json_string_value(state), "open") == 0);
    CHECK(json_is_number(count) && json_number_value(count) == 2);
    CHECK(json_is_false(allows));
    CHECK(json_is_number(last) && json_number_value(last) > 1.6e12);
    /* Open for `timeout` (60 s) plus a jitter of up to 10% after the last
     * failure. */
    CHECK(json_is_number(next) && json_is_number(last) &&
          json_number_value(next) >= json_number_value(last) + 60000 &&
          json_number_value(next) <= json_number_value(last) + 66000);
    CHECK(json_is_number(trips) && json_number_value(trips) == 1);
    json_decref(status);

    /* Stats carry the loading counters and the same breaker. */
    CHECK_OK(tierstack_cache_stats_json(cache, &text));
    json_t *stats = json_loads(text, 0, NULL);
    tierstack_string_free(text);
    const json_t *source = json_object_get(stats, "source");
    const json_t *requests = json_object_get(source, "requests");
    const json_t *failures = json_object_get(source, "failures");
    const json_t *rejected = json_object_get(source, "rejected");
    const json_t *breaker = json_object_get(json_object_get(stats, "breaker"), "state");
    CHECK(requests != NULL && json_number_value(requests) == 2);
    CHECK(failures != NULL && json_number_value(failures) == 2);
    CHECK(rejected != NULL && json_number_value(rejected) == 1);
    CHECK(json_is_string(breaker) && strcmp(json_string_value(breaker), "open") == 0);
    json_decref(stats);
    done();
}

/* ---- batches ---- */

typedef struct {
    atomic_int calls;
    char asked[256];               /* the keys handed over, sorted, comma-separated */
    tierstack_result unasked;      /* answering a key not asked for */
    tierstack_result twice;        /* answering a key again */
} batch_state;

static int compare_keys(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static tierstack_result test_batch_loader(void *user_data, const char *const *keys,
                                          const size_t *key_lens, size_t n,
                                          tierstack_load_batch *batch) {
    batch_state *s = user_data;
    atomic_fetch_add(&s->calls, 1);
    const char *sorted[16];
    for (size_t i = 0; i < n && i < 16; i++) {
        sorted[i] = keys[i]; /* NUL-terminated too */
    }
    qsort(sorted, n < 16 ? n : 16, sizeof *sorted, compare_keys);
    s->asked[0] = '\0';
    for (size_t i = 0; i < n && i < 16; i++) {
        strcat(s->asked, i ? "," : "");
        strcat(s->asked, sorted[i]);
    }
    for (size_t i = 0; i < n; i++) {
        char value[64];
        int len = snprintf(value, sizeof value, "loaded %s", keys[i]);
        if (strcmp(keys[i], "none") == 0) {
            tierstack_load_batch_not_found(batch, keys[i], key_lens[i]);
        } else if (strcmp(keys[i], "silent") != 0) {
            tierstack_load_batch_value(batch, keys[i], key_lens[i], (const uint8_t *)value,
                                       (size_t)len, 0);
        }
    }
    if (n > 0) {
        s->twice = tierstack_load_batch_not_found(batch, keys[0], key_lens[0]);
    }
    s->unasked = tierstack_load_batch_value(batch, K("cached"), (const uint8_t *)"x", 1, 0);
    return TIERSTACK_RESULT_OK;
}

static void test_get_or_load_many_hands_over_the_missing_keys(void) {
    fresh("");
    CHECK_OK(tierstack_cache_set(cache, K("cached"), (const uint8_t *)"c0", 2, 0));
    const char *keys[] = {"cached", "miss", "none", "silent", "also"};
    size_t lens[] = {6, 4, 4, 6, 4};
    tierstack_value *values[5] = {0};
    batch_state s = {0};
    CHECK_OK(tierstack_cache_get_or_load_many(cache, keys, lens, 5, test_batch_loader, &s, 0,
                                              values));
    CHECK(atomic_load(&s.calls) == 1);
    CHECK(strcmp(s.asked, "also,miss,none,silent") == 0);
    CHECK(s.unasked == TIERSTACK_RESULT_INVALID_ARGUMENT);
    CHECK(s.twice == TIERSTACK_RESULT_INVALID_ARGUMENT);
    CHECK_SERVED(values[0], "c0", "memory", false);
    CHECK_SERVED(values[1], "loaded miss", "source", false);
    CHECK(values[2] == NULL);
    CHECK(values[3] == NULL);
    CHECK_SERVED(values[4], "loaded also", "source", false);

    /* Everything is now cached or negatively cached: no call. */
    CHECK_OK(tierstack_cache_get_or_load_many(cache, keys, lens, 5, test_batch_loader, &s, 0,
                                              values));
    CHECK(atomic_load(&s.calls) == 1);
    CHECK_VALUE(values[0], "c0");
    CHECK_VALUE(values[1], "loaded miss");
    CHECK(values[2] == NULL && values[3] == NULL);
    CHECK_VALUE(values[4], "loaded also");

    /* A bad key fails the call before the loader runs; nothing is written. */
    const char *bad[] = {"fine", ""};
    size_t bad_lens[] = {4, 0};
    values[0] = (tierstack_value *)&s;
    CHECK_RESULT(tierstack_cache_get_or_load_many(cache, bad, bad_lens, 2, test_batch_loader, &s,
                                                  0, values),
                 TIERSTACK_RESULT_INVALID_KEY);
    CHECK_RESULT(tierstack_cache_get_or_load_many(cache, keys, lens, 5, NULL, &s, 0, values),
                 TIERSTACK_RESULT_INVALID_ARGUMENT);
    CHECK(values[0] == (tierstack_value *)&s);
    CHECK(atomic_load(&s.calls) == 1);
    CHECK_OK(tierstack_cache_get_or_load_many(cache, NULL, NULL, 0, test_batch_loader, &s, 0,
                                              NULL));
    CHECK(atomic_load(&s.calls) == 1);
    done();
}

/* ---- a loader's tags and its own error message ---- */

/* What a tagging or failing loader does, and what its calls returned. */
typedef struct {
    const char *value;            /* answer this value (NULL: answer nothing) */
    bool not_found;               /* answer "not found" instead */
    const char *tags[3];          /* then tag it with these (NULL-ended) */
    const char *error;            /* then fail with this message (NULL: don't) */
    tierstack_result returns;     /* and return this */
    atomic_int calls;
    tierstack_result tag_before;  /* tierstack_load_tag before any answer */
    char tag_before_error[160];   /* and its last error message */
    tierstack_result tagged[3];   /* each tierstack_load_tag */
    tierstack_result bad_utf8;    /* tierstack_load_tag of a non-UTF-8 tag */
    char bad_utf8_error[160];
    tierstack_result failed;      /* tierstack_load_error */
    tierstack_result after_error; /* tierstack_load_value after the error */
    char after_error_error[160];
} answer_state;

static tierstack_result answering_loader(void *user_data, const char *key, size_t key_len,
                                         tierstack_load *load) {
    answer_state *s = user_data;
    (void)key, (void)key_len;
    atomic_fetch_add(&s->calls, 1);
    s->tag_before = tierstack_load_tag(load, K("early"));
    snprintf(s->tag_before_error, sizeof s->tag_before_error, "%s", last_error());
    if (s->not_found) {
        tierstack_load_not_found(load);
    } else if (s->value != NULL) {
        tierstack_load_value(load, (const uint8_t *)s->value, strlen(s->value), 0);
    }
    for (int i = 0; i < 3 && s->tags[i] != NULL; i++) {
        s->tagged[i] = tierstack_load_tag(load, s->tags[i], strlen(s->tags[i]));
    }
    s->bad_utf8 = tierstack_load_tag(load, K("caf\xc3"));
    snprintf(s->bad_utf8_error, sizeof s->bad_utf8_error, "%s", last_error());
    if (s->error != NULL) {
        s->failed = tierstack_load_error(load, s->error, strlen(s->error));
        s->after_error = tierstack_load_value(load, (const uint8_t *)"late", 4, 0);
        snprintf(s->after_error_error, sizeof s->after_error_error, "%s", last_error());
    }
    return s->returns;
}

static tierstack_result get_answered(const char *key, answer_state *s, tierstack_value **out) {
    return tierstack_cache_get_or_load(cache, key, strlen(key), answering_loader, s, 0, out);
}

static void test_loader_tags_its_value(void) {
    fresh("");
    answer_state a = {.value = "button", .tags = {"team:ui", "all"}};
    answer_state b = {.value = "card", .tags = {"all"}};
    tierstack_value *value = NULL;
    CHECK_OK(get_answered("button", &a, &value));
    CHECK_SERVED(value, "button", "source", false);
    CHECK_OK(get_answered("card", &b, &value));
    CHECK_SERVED(value, "card", "source", false);
    CHECK(a.tagged[0] == TIERSTACK_RESULT_OK && a.tagged[1] == TIERSTACK_RESULT_OK);
    CHECK(b.tagged[0] == TIERSTACK_RESULT_OK);
    /* Tagging before answering, or with a tag that is not UTF-8, is refused. */
    CHECK(a.tag_before == TIERSTACK_RESULT_INVALID_ARGUMENT);
    CHECK(strcmp(a.tag_before_error, "invalid_argument: the load has no value to tag yet: "
                                     "answer the value first, then its tags") == 0);
    CHECK(a.bad_utf8 == TIERSTACK_RESULT_INVALID_ARGUMENT);
    CHECK(strcmp(a.bad_utf8_error, "invalid_argument: tag is not UTF-8 (bad byte at 3)") == 0);

    uint64_t removed = 99;
    CHECK_OK(tierstack_cache_invalidate_tag(cache, K("team:ui"), &removed));
    CHECK(removed == 1);
    bool has = true;
    CHECK_OK(tierstack_cache_has(cache, K("button"), &has));
    CHECK(!has);
    CHECK_OK(tierstack_cache_has(cache, K("card"), &has));
    CHECK(has);

    /* The tags are in the file: a second handle, whose L1 is empty,
     * removes "card" by its tag. */
    tierstack_cache *other = open_in(dir, "");
    removed = 99;
    CHECK_OK(tierstack_cache_invalidate_tag(other, K("all"), &removed));
    CHECK(removed == 1);
    CHECK_OK(tierstack_cache_has(other, K("card"), &has));
    CHECK(!has);
    tierstack_cache_free(other);
    CHECK(atomic_load(&a.calls) == 1 && atomic_load(&b.calls) == 1);

    /* Tags on "not found" are refused; the answer stands. */
    answer_state gone = {.not_found = true, .tags = {"all"}};
    value = (tierstack_value *)&gone;
    CHECK_OK(get_answered("gone", &gone, &value));
    CHECK(value == NULL);
    CHECK(gone.tagged[0] == TIERSTACK_RESULT_INVALID_ARGUMENT);
    /* The handle died with the call. */
    CHECK_RESULT(tierstack_load_tag(NULL, K("x")), TIERSTACK_RESULT_INVALID_ARGUMENT);
    CHECK(strcmp(last_error(), "invalid_argument: load is a NULL pointer") == 0);
    done();
}

static void test_bad_loader_tag_fails_the_caller(void) {
    fresh("");
    answer_state empty = {.value = "v", .tags = {""}};
    tierstack_value *value = (tierstack_value *)&empty;
    CHECK_RESULT(get_answered("k", &empty, &value), TIERSTACK_RESULT_INVALID_ARGUMENT);
    CHECK(strcmp(last_error(), "invalid_argument: tag \"\" must be 1-255 bytes without control "
                               "characters") == 0);
    CHECK(empty.tagged[0] == TIERSTACK_RESULT_OK);
    answer_state control = {.value = "v", .tags = {"ok", "a\tb"}};
    CHECK_RESULT(get_answered("k", &control, &value), TIERSTACK_RESULT_INVALID_ARGUMENT);
    CHECK(strcmp(last_error(), "invalid_argument: tag \"a\\tb\" must be 1-255 bytes without "
                               "control characters") == 0);
    CHECK(value == (tierstack_value *)&empty);
    bool has = true;
    CHECK_OK(tierstack_cache_has(cache, K("k"), &has));
    CHECK(!has);
    done();
}

static void test_loader_error_message_reaches_the_caller(void) {
    fresh("");
    answer_state s = {.error = "GitHub answered 503", .returns = TIERSTACK_RESULT_IO};
    tierstack_value *value = (tierstack_value *)&s;
    CHECK_RESULT(get_answered("repo", &s, &value), TIERSTACK_RESULT_SOURCE);
    CHECK(strcmp(last_error(), "source: the loader returned io: GitHub answered 503") == 0);
    CHECK(s.failed == TIERSTACK_RESULT_OK);
    /* An error is the load's answer: no value after it. */
    CHECK(s.after_error == TIERSTACK_RESULT_INVALID_ARGUMENT);
    CHECK(strcmp(s.after_error_error,
                 "invalid_argument: the load was already answered: a loader answers once") == 0);

    /* Returning OK after the error is still a failure, with the message. */
    s = (answer_state){.error = "GitHub answered 503"};
    CHECK_RESULT(get_answered("repo", &s, &value), TIERSTACK_RESULT_SOURCE);
    CHECK(strcmp(last_error(), "source: the loader failed: GitHub answered 503") == 0);
    CHECK(value == (tierstack_value *)&s);
    bool has = true;
    CHECK_OK(tierstack_cache_has(cache, K("repo"), &has));
    CHECK(!has);

    /* An error after a value is refused (a load answers once): the value
     * stands and the loader's OK is a success. */
    s = (answer_state){.value = "v", .error = "too late"};
    CHECK_OK(get_answered("answered", &s, &value));
    CHECK_SERVED(value, "v", "source", false);
    CHECK(s.failed == TIERSTACK_RESULT_INVALID_ARGUMENT);

    /* An empty message is refused; the loader's own result then fails the
     * load with that refusal as the detail. */
    s = (answer_state){.error = "", .returns = TIERSTACK_RESULT_SOURCE};
    CHECK_RESULT(get_answered("empty", &s, &value), TIERSTACK_RESULT_SOURCE);
    CHECK(s.failed == TIERSTACK_RESULT_INVALID_ARGUMENT);
    CHECK(strcmp(last_error(), "source: the loader returned source: invalid_argument: message "
                               "is empty: say what failed") == 0);
    CHECK_RESULT(tierstack_load_error(NULL, K("x")), TIERSTACK_RESULT_INVALID_ARGUMENT);
    CHECK(strcmp(last_error(), "invalid_argument: load is a NULL pointer") == 0);
    done();
}

/* A batch loader that tags, fails, and records what its calls returned. */
typedef struct {
    const char *tag;             /* the tag of "a" (NULL: "blue") */
    const char *error;           /* fail the batch with this message (NULL: don't) */
    tierstack_result returns;
    atomic_int calls;
    tierstack_result tagged;     /* tag "blue" on the value of "a" */
    tierstack_result tag_early;  /* tag "b" before answering it */
    char tag_early_error[160];
    tierstack_result tag_none;   /* tag "none", answered "not found" */
    tierstack_result tag_unasked;
    tierstack_result failed;     /* tierstack_load_batch_error */
    tierstack_result after;      /* answering "b" after the error */
    char after_error[160];
    tierstack_result again;      /* a second tierstack_load_batch_error */
} tag_batch_state;

static tierstack_result tagging_batch_loader(void *user_data, const char *const *keys,
                                             const size_t *key_lens, size_t n,
                                             tierstack_load_batch *batch) {
    tag_batch_state *s = user_data;
    (void)keys, (void)key_lens, (void)n;
    atomic_fetch_add(&s->calls, 1);
    tierstack_load_batch_value(batch, K("a"), (const uint8_t *)"A", 1, 0);
    const char *tag = s->tag != NULL ? s->tag : "blue";
    s->tagged = tierstack_load_batch_tag(batch, K("a"), tag, strlen(tag));
    s->tag_early = tierstack_load_batch_tag(batch, K("b"), K("blue"));
    snprintf(s->tag_early_error, sizeof s->tag_early_error, "%s", last_error());
    tierstack_load_batch_not_found(batch, K("none"));
    s->tag_none = tierstack_load_batch_tag(batch, K("none"), K("blue"));
    s->tag_unasked = tierstack_load_batch_tag(batch, K("other"), K("blue"));
    if (s->error != NULL) {
        s->failed = tierstack_load_batch_error(batch, s->error, strlen(s->error));
        s->after = tierstack_load_batch_value(batch, K("b"), (const uint8_t *)"B", 1, 0);
        snprintf(s->after_error, sizeof s->after_error, "%s", last_error());
        s->again = tierstack_load_batch_error(batch, K("twice"));
    } else {
        tierstack_load_batch_value(batch, K("b"), (const uint8_t *)"B", 1, 0);
    }
    return s->returns;
}

static const char *batch_keys[] = {"a", "b", "none"};
static const size_t batch_lens[] = {1, 1, 4};

static void test_batch_loader_tags_its_values(void) {
    fresh("");
    tag_batch_state s = {0};
    tierstack_value *values[3] = {0};
    CHECK_OK(tierstack_cache_get_or_load_many(cache, batch_keys, batch_lens, 3,
                                              tagging_batch_loader, &s, 0, values));
    CHECK(atomic_load(&s.calls) == 1);
    CHECK_SERVED(values[0], "A", "source", false);
    CHECK_SERVED(values[1], "B", "source", false);
    CHECK(values[2] == NULL);
    CHECK(s.tagged == TIERSTACK_RESULT_OK);
    CHECK(s.tag_early == TIERSTACK_RESULT_INVALID_ARGUMENT);
    CHECK(strcmp(s.tag_early_error, "invalid_argument: \"b\" has no value to tag yet: answer "
                                    "the value first, then its tags") == 0);
    CHECK(s.tag_none == TIERSTACK_RESULT_INVALID_ARGUMENT);
    CHECK(s.tag_unasked == TIERSTACK_RESULT_INVALID_ARGUMENT);

    uint64_t removed = 99;
    CHECK_OK(tierstack_cache_invalidate_tag(cache, K("blue"), &removed));
    CHECK(removed == 1);
    bool has = true;
    CHECK_OK(tierstack_cache_has(cache, K("a"), &has));
    CHECK(!has);
    CHECK_OK(tierstack_cache_has(cache, K("b"), &has));
    CHECK(has);
    CHECK_RESULT(tierstack_load_batch_tag(NULL, K("a"), K("blue")),
                 TIERSTACK_RESULT_INVALID_ARGUMENT);
    CHECK(strcmp(last_error(), "invalid_argument: batch is a NULL pointer") == 0);

    /* A bad tag is refused when "a" is stored: the call fails, "a" is not
     * stored, the batch's other value is. */
    CHECK_OK(tierstack_cache_clear(cache));
    s = (tag_batch_state){.tag = "bad\ntag"};
    values[0] = (tierstack_value *)&s;
    CHECK_RESULT(tierstack_cache_get_or_load_many(cache, batch_keys, batch_lens, 3,
                                                  tagging_batch_loader, &s, 0, values),
                 TIERSTACK_RESULT_INVALID_ARGUMENT);
    CHECK(strcmp(last_error(), "invalid_argument: tag \"bad\\ntag\" must be 1-255 bytes "
                               "without control characters") == 0);
    CHECK(s.tagged == TIERSTACK_RESULT_OK);
    CHECK(values[0] == (tierstack_value *)&s);
    CHECK_OK(tierstack_cache_has(cache, K("a"), &has));
    CHECK(!has);
    uint64_t n = 99;
    CHECK_OK(tierstack_cache_len(cache, &n));
    CHECK(n == 1);
    CHECK_OK(tierstack_cache_has(cache, K("b"), &has));
    CHECK(has);
    done();
}

static void test_batch_loader_error_fails_the_batch(void) {
    fresh("");
    tag_batch_state s = {.error = "db down", .returns = TIERSTACK_RESULT_STORAGE};
    tierstack_value *values[3] = {(tierstack_value *)&s, NULL, NULL};
    CHECK_RESULT(tierstack_cache_get_or_load_many(cache, batch_keys, batch_lens, 3,
                                                  tagging_batch_loader, &s, 0, values),
                 TIERSTACK_RESULT_SOURCE);
    CHECK(strcmp(last_error(), "source: the loader returned storage: db down") == 0);
    CHECK(values[0] == (tierstack_value *)&s);
    CHECK(s.failed == TIERSTACK_RESULT_OK);
    CHECK(s.after == TIERSTACK_RESULT_INVALID_ARGUMENT);
    CHECK(strcmp(s.after_error, "invalid_argument: the batch already failed "
                                "(tierstack_load_batch_error): it takes no more answers") == 0);
    CHECK(s.again == TIERSTACK_RESULT_INVALID_ARGUMENT);
    /* What was answered before the error is not stored. */
    uint64_t n = 99;
    CHECK_OK(tierstack_cache_len(cache, &n));
    CHECK(n == 0);

    /* Returning OK after the error is still a failure, with the message;
     * the failed batch's flights all ended before it landed, so the whole
     * batch goes to the loader again, in one call. */
    s = (tag_batch_state){.error = "db down"};
    CHECK_RESULT(tierstack_cache_get_or_load_many(cache, batch_keys, batch_lens, 3,
                                                  tagging_batch_loader, &s, 0, values),
                 TIERSTACK_RESULT_SOURCE);
    CHECK(strcmp(last_error(), "source: the loader failed: db down") == 0);
    CHECK(atomic_load(&s.calls) == 1);
    CHECK(values[0] == (tierstack_value *)&s);
    CHECK_OK(tierstack_cache_len(cache, &n));
    CHECK(n == 0);
    CHECK_RESULT(tierstack_load_batch_error(NULL, K("x")), TIERSTACK_RESULT_INVALID_ARGUMENT);
    done();
}

/* ---- read-through ---- */

static void test_read_through_source(void) {
    dir = tmp_dir_new();
    char *config = config_in(dir, "");
    loader_state s = {.value = "through"};
    tierstack_source source = {.load = test_loader, .store = NULL, .remove = NULL};
    CHECK_OK(tierstack_cache_open_with_source(config, &source, &s, &cache));
    free(config);
    tierstack_value *value = NULL;
    CHECK_OK(tierstack_cache_get(cache, K("x"), &value));
    CHECK_VALUE(value, "through");
    CHECK_OK(tierstack_cache_lookup(cache, K("x"), &value));
    CHECK_SERVED(value, "through", "memory", false);
    const char *keys[] = {"x", "y"};
    size_t lens[] = {1, 1};
    tierstack_value *values[2] = {0};
    CHECK_OK(tierstack_cache_mget(cache, keys, lens, 2, values));
    CHECK_VALUE(values[0], "through");
    CHECK_VALUE(values[1], "through");
    CHECK(atomic_load(&s.calls) == 2);
    done();
}

int main(void) {
    check_case("100 threads missing one key share one loader call",
               test_hundred_threads_one_call);
    check_case("a loaded value reports tier source, then memory",
               test_loaded_value_reports_source_then_memory);
    check_case("not found: *out NULL, negatively cached, never stored",
               test_not_found_is_negatively_cached);
    check_case("the loader's TTL, the call's TTL, and bad TTLs", test_loader_ttl_and_call_ttl);
    check_case("a failing, unknown-coded or silent loader is a source error",
               test_loader_failures_without_stale);
    check_case("a second answer and a load handle used after its call are refused",
               test_second_answer_and_use_after_the_call);
    check_case("NULL loaders, sources and handles", test_null_arguments);
    check_case("a source's store and remove go together: one alone is INVALID_ARGUMENT",
               test_store_and_remove_go_together);
    check_case("fail-safe: a failing loader serves the stale copy, marked stale",
               test_failing_loader_serves_stale);
    check_case("fail-safe: an open breaker serves stale, else source_unavailable",
               test_open_breaker_serves_stale);
    check_case("fail-safe: past the soft timeout the stale copy, then the tiers are filled",
               test_soft_timeout_serves_stale_then_fills);
    check_case("past the hard timeout without a stale copy: timeout",
               test_hard_timeout_without_stale);
    check_case("breaker status JSON after failures, and the loading stats",
               test_breaker_status_after_failures);
    check_case("get_or_load_many hands the loader exactly the missing keys",
               test_get_or_load_many_hands_over_the_missing_keys);
    check_case("a loader tags its value; invalidate_tag removes it, in L2 too",
               test_loader_tags_its_value);
    check_case("a loader's bad tag fails the caller with invalid_argument, nothing stored",
               test_bad_loader_tag_fails_the_caller);
    check_case("a loader's own error message reaches the caller exactly",
               test_loader_error_message_reaches_the_caller);
    check_case("a batch loader tags its values", test_batch_loader_tags_its_values);
    check_case("a batch loader's error fails the whole batch with its message",
               test_batch_loader_error_fails_the_batch);
    check_case("read-through: get, lookup and mget load through the source",
               test_read_through_source);
    return check_summary();
}
