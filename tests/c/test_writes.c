/*
 * Write strategies and the write-behind outbox through the C API, with a
 * real source: the loopback origin's writable store (`tierstack-origin`,
 * whose path is in $TIERSTACK_ORIGIN_BIN). The source below is C function
 * pointers doing HTTP: `PUT <api>/store/<key>` (the value as the body),
 * `DELETE <api>/store/<key>`, each with the `Idempotency-Key` tierstack
 * hands it, and `GET <api>/store/<key>` to load. Every case asserts the
 * origin's own counts (`GET /_origin/deliveries`: writes applied,
 * attempts, duplicates) exactly.
 *
 * The crash case runs this binary again (`--crash-writer <config>`): it
 * opens a write-behind cache on the same file, sets one key while the
 * origin refuses every write, and exits without closing the cache.
 */
#define _POSIX_C_SOURCE 200809L

#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "check.h"
#include "origin.h"

#define K(s) (s), (sizeof(s) - 1)
#define V(s) (const uint8_t *)(s), (sizeof(s) - 1)

/* Short retries, so that giving up takes milliseconds. */
#define QUICK_OUTBOX "\"outbox\": {\"retry_base\": 0.01, \"retry_max\": 0.05, \"max_attempts\": 3}"
#define WRITE_BEHIND "\"strategy\": \"write-behind\", " QUICK_OUTBOX
#define WRITE_THROUGH "\"strategy\": \"write-through\", " QUICK_OUTBOX

static const char *self_path; /* argv[0], for the crash case */

/* ---- the origin's control API ---- */

/* POSTs a control action with a JSON payload; true on a 200. */
static bool control(const char *action, const char *payload) {
    char path[128];
    snprintf(path, sizeof path, "/_origin/%s", action);
    return origin_http("POST", path, "Content-Type: application/json\r\n", payload,
                       payload != NULL ? strlen(payload) : 0, NULL) == 200;
}

/* GET /_origin/deliveries, parsed (free with json_decref); NULL on a failed
 * check. */
static json_t *deliveries(void) {
    char *body = NULL;
    int status = origin_http("GET", "/_origin/deliveries", NULL, NULL, 0, &body);
    json_t *doc = NULL;
    if (CHECK(status == 200 && body != NULL)) {
        doc = json_loads(body, JSON_DECODE_ANY, NULL);
        CHECK(doc != NULL && json_object_get(doc, "deliveries") != NULL);
    }
    free(body);
    return doc;
}

static double number(const json_t *object, const char *key) {
    const json_t *v = json_object_get(object, key);
    return json_is_number(v) ? json_number_value(v) : -1;
}

static bool is_string(const json_t *v, const char *want) {
    return json_is_string(v) && strlen(want) == json_string_length(v) &&
           memcmp(json_string_value(v), want, json_string_length(v)) == 0;
}

/* Checks the origin's counts: writes applied, attempts, duplicates. */
#define CHECK_DELIVERIES(count, attempts, duplicates)                                       \
    do {                                                                                    \
        json_t *d_ = deliveries();                                                            \
        CHECK(number(d_, "count") == (count) && number(d_, "attempts") == (attempts) &&     \
              number(d_, "duplicates") == (duplicates));                                    \
        if (number(d_, "count") != (count) || number(d_, "attempts") != (attempts)) {       \
            fprintf(stderr, "  deliveries: count %g attempts %g duplicates %g\n",           \
                    number(d_, "count"), number(d_, "attempts"), number(d_, "duplicates")); \
        }                                                                                   \
        json_decref(d_);                                                                      \
    } while (0)

/* What the origin's store holds for `key`: its bytes (malloc'd,
 * NUL-terminated), or NULL for a 404 (or a failed exchange, -1 in *status). */
static char *stored(const char *key, int *status) {
    char path[256];
    snprintf(path, sizeof path, "/store/%s", key);
    char *body = NULL;
    *status = origin_http("GET", path, NULL, NULL, 0, &body);
    if (*status != 200) {
        free(body);
        return NULL;
    }
    return body;
}

/* Whether the origin's store holds `want` for `key` (NULL: nothing). */
static bool stored_is(const char *key, const char *want) {
    int status = 0;
    char *got = stored(key, &status);
    bool same = want == NULL ? status == 404 && got == NULL
                             : status == 200 && got != NULL && strcmp(got, want) == 0;
    if (!same) {
        fprintf(stderr, "  /store/%s: %d %s\n", key, status, got != NULL ? got : "(no body)");
    }
    free(got);
    return same;
}

#define CHECK_STORED(key, want) CHECK(stored_is((key), (want)))

/* ---- the source: C function pointers over HTTP ---- */

#define MAX_ATTEMPTS_LOGGED 64

/* What the source saw: each store/remove attempt's key and idempotency
 * key, in order (from tierstack's threads, hence the lock). */
typedef struct {
    pthread_mutex_t lock;
    size_t n;
    char keys[MAX_ATTEMPTS_LOGGED][64];
    char ids[MAX_ATTEMPTS_LOGGED][128];
    atomic_int loads;
} http_source;

static void log_attempt(http_source *s, const char *key, size_t key_len, const char *id,
                        size_t id_len) {
    pthread_mutex_lock(&s->lock);
    if (s->n < MAX_ATTEMPTS_LOGGED && key_len < 64 && id_len < 128) {
        memcpy(s->keys[s->n], key, key_len + 1);
        memcpy(s->ids[s->n], id, id_len + 1);
        s->n++;
    }
    pthread_mutex_unlock(&s->lock);
}

/* `/store/<key>` with every byte outside [A-Za-z0-9._~-] percent-encoded. */
static void store_path(char *out, size_t len, const char *key, size_t key_len) {
    size_t n = (size_t)snprintf(out, len, "/store/");
    for (size_t i = 0; i < key_len && n + 4 < len; i++) {
        unsigned char c = (unsigned char)key[i];
        bool plain = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                     (c >= '0' && c <= '9') || strchr("._~-", c) != NULL;
        n += (size_t)snprintf(out + n, len - n, plain ? "%c" : "%%%02X", c);
    }
}

/* One write's HTTP exchange; a status other than 204 fails the write with
 * "<METHOD> /store/<key> answered <status>". */
static tierstack_result http_write(const char *method, const char *key, size_t key_len,
                                   const uint8_t *data, size_t len, const char *id,
                                   tierstack_write *write) {
    char path[512], headers[256], message[640];
    store_path(path, sizeof path, key, key_len);
    snprintf(headers, sizeof headers,
             "Content-Type: application/octet-stream\r\nIdempotency-Key: %s\r\n", id);
    int status = origin_http(method, path, headers, data, len, NULL);
    if (status == 204) {
        return TIERSTACK_RESULT_OK;
    }
    int n = status < 0 ? snprintf(message, sizeof message, "%s %s: no answer", method, path)
                       : snprintf(message, sizeof message, "%s %s answered %d", method, path,
                                  status);
    tierstack_write_error(write, message, (size_t)n);
    return TIERSTACK_RESULT_SOURCE;
}

static tierstack_result http_store(void *user_data, const char *key, size_t key_len,
                                   const uint8_t *data, size_t len, const char *idempotency_key,
                                   size_t idempotency_key_len, tierstack_write *write) {
    log_attempt(user_data, key, key_len, idempotency_key, idempotency_key_len);
    return http_write("PUT", key, key_len, data, len, idempotency_key, write);
}

static tierstack_result http_remove(void *user_data, const char *key, size_t key_len,
                                    const char *idempotency_key, size_t idempotency_key_len,
                                    tierstack_write *write) {
    log_attempt(user_data, key, key_len, idempotency_key, idempotency_key_len);
    return http_write("DELETE", key, key_len, NULL, 0, idempotency_key, write);
}

static tierstack_result http_load(void *user_data, const char *key, size_t key_len,
                                  tierstack_load *load) {
    http_source *s = user_data;
    atomic_fetch_add(&s->loads, 1);
    char path[512];
    store_path(path, sizeof path, key, key_len);
    char *body = NULL;
    int status = origin_http("GET", path, NULL, NULL, 0, &body);
    tierstack_result res = TIERSTACK_RESULT_SOURCE;
    if (status == 200 && body != NULL) {
        res = tierstack_load_value(load, (const uint8_t *)body, strlen(body), 0);
    } else if (status == 404) {
        res = tierstack_load_not_found(load);
    }
    free(body);
    return res;
}

/* ---- helpers ---- */

static char *dir;
static tierstack_cache *cache;
static http_source source_state;

/* Resets the origin and the source's log, and makes a directory. */
static void fresh_dir(void) {
    CHECK(control("reset", NULL));
    pthread_mutex_lock(&source_state.lock);
    source_state.n = 0;
    pthread_mutex_unlock(&source_state.lock);
    atomic_store(&source_state.loads, 0);
    dir = tmp_dir_new();
}

/* fresh_dir, then opens a cache on the directory with the HTTP source and
 * `extra` config members. */
static bool fresh(const char *extra) {
    fresh_dir();
    char *config = config_in(dir, extra);
    tierstack_source source = {.load = http_load, .store = http_store, .remove = http_remove};
    cache = NULL;
    bool ok = CHECK_OK(tierstack_cache_open_with_source(config, &source, &source_state, &cache));
    free(config);
    return ok;
}

static void done(void) {
    tierstack_cache_free(cache);
    cache = NULL;
    tmp_dir_remove(dir);
    dir = NULL;
}

/* Parses a string tierstack handed over and frees it. */
static json_t *parse_owned(char *text) {
    json_t *doc = text != NULL ? json_loads(text, JSON_DECODE_ANY, NULL) : NULL;
    tierstack_string_free(text);
    CHECK(doc != NULL);
    return doc;
}

static json_t *outbox_stats(tierstack_cache *c) {
    char *text = NULL;
    CHECK_OK(tierstack_cache_outbox_stats_json(c, &text));
    return parse_owned(text);
}

static json_t *dead_letters(void) {
    char *text = NULL;
    CHECK_OK(tierstack_cache_dead_letters_json(cache, &text));
    return parse_owned(text);
}

static bool is_true(const json_t *object, const char *key) {
    const json_t *v = json_object_get(object, key);
    return json_is_true(v);
}

static bool is_null(const json_t *object, const char *key) {
    const json_t *v = json_object_get(object, key);
    return json_is_null(v);
}

static int64_t now_epoch_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Every attempt the source saw for `key` carried one idempotency key;
 * returns how many attempts there were. */
static size_t attempts_with_one_id(const char *key) {
    size_t n = 0;
    const char *first = NULL;
    pthread_mutex_lock(&source_state.lock);
    for (size_t i = 0; i < source_state.n; i++) {
        if (strcmp(source_state.keys[i], key) != 0) {
            continue;
        }
        n++;
        if (first == NULL) {
            first = source_state.ids[i];
        } else {
            CHECK(strcmp(first, source_state.ids[i]) == 0);
        }
    }
    pthread_mutex_unlock(&source_state.lock);
    return n;
}

/* ---- cases ---- */

static void test_write_behind_delivers_each_write_once(void) {
    if (!fresh(WRITE_BEHIND)) {
        done();
        return;
    }
    static const char *const keys[] = {"user:1", "user:2", "user/3", "user 4", "user:5"};
    static const char *const values[] = {"one", "two", "three", "four", "five"};
    for (size_t i = 0; i < 5; i++) {
        CHECK_OK(tierstack_cache_set(cache, keys[i], strlen(keys[i]), (const uint8_t *)values[i],
                                     strlen(values[i]), 0));
    }
    /* Answered from memory at once, before the source has it. */
    tierstack_value *value = NULL;
    CHECK_OK(tierstack_cache_lookup(cache, K("user:1"), &value));
    CHECK(value != NULL && strcmp(tierstack_value_tier(value), "memory") == 0);
    CHECK_VALUE(value, "one");
    CHECK_OK(tierstack_cache_flush(cache));
    bool existed = false;
    CHECK_OK(tierstack_cache_delete(cache, K("user:2"), &existed));
    CHECK(existed);
    CHECK_OK(tierstack_cache_flush(cache));

    CHECK_DELIVERIES(6, 6, 0);
    CHECK_STORED("user%3A1", "one");
    CHECK_STORED("user%3A2", NULL);
    CHECK_STORED("user%2F3", "three");
    CHECK_STORED("user%204", "four");
    CHECK_STORED("user%3A5", "five");

    /* Each write once, with its own idempotency key, as the origin logged it. */
    json_t *d = deliveries();
    const json_t *list = json_object_get(d, "deliveries");
    CHECK(json_is_array(list) && json_array_size(list) == 6);
    for (size_t i = 0; list != NULL && i < json_array_size(list); i++) {
        const json_t *id = json_object_get(json_array_get(list, i), "idempotency_key");
        CHECK(json_is_string(id) && json_string_length(id) > 0);
        for (size_t j = 0; id != NULL && j < i; j++) {
            CHECK(!is_string(json_object_get(json_array_get(list, j), "idempotency_key"), json_string_value(id)));
        }
    }
    const json_t *last = list != NULL && json_array_size(list) == 6 ? json_array_get(list, 5) : NULL;
    CHECK(is_string(json_object_get(last, "key"), "user:2") && is_null(last, "value"));
    json_decref(d);

    json_t *stats = outbox_stats(cache);
    CHECK(is_true(stats, "durable") && number(stats, "pending") == 0 &&
          is_null(stats, "oldest_age_ms") && number(stats, "retrying") == 0 &&
          number(stats, "retries") == 0 && number(stats, "delivered") == 6 &&
          number(stats, "dead") == 0);
    json_decref(stats);

    /* The same figures are the `outbox` member of the stats. */
    char *text = NULL;
    CHECK_OK(tierstack_cache_stats_json(cache, &text));
    json_t *all = parse_owned(text);
    const json_t *outbox = json_object_get(all, "outbox");
    CHECK(number(outbox, "delivered") == 6 && number(outbox, "pending") == 0);
    json_decref(all);
    CHECK(atomic_load(&source_state.loads) == 0);
    done();
}

static void test_write_through_failure_keeps_the_old_value(void) {
    if (!fresh(WRITE_THROUGH)) {
        done();
        return;
    }
    CHECK_OK(tierstack_cache_set(cache, K("k"), V("v1"), 0));
    CHECK_STORED("k", "v1");
    CHECK(control("fail_writes", "{\"count\": 1, \"status\": 500}"));
    CHECK_RESULT(tierstack_cache_set(cache, K("k"), V("v2"), 0), TIERSTACK_RESULT_SOURCE);
    CHECK(strcmp(last_error(),
                 "source: the store returned source: PUT /store/k answered 500") == 0);
    /* The tiers were left as they were: the old value is read, in this
     * process and from the file. */
    tierstack_value *value = NULL;
    CHECK_OK(tierstack_cache_get(cache, K("k"), &value));
    CHECK_VALUE(value, "v1");
    CHECK_STORED("k", "v1");

    CHECK_OK(tierstack_cache_set(cache, K("k"), V("v3"), 0));
    CHECK_STORED("k", "v3");
    CHECK_OK(tierstack_cache_get(cache, K("k"), &value));
    CHECK_VALUE(value, "v3");
    bool existed = false;
    CHECK_OK(tierstack_cache_delete(cache, K("k"), &existed));
    CHECK(existed);
    CHECK_STORED("k", NULL);
    CHECK_DELIVERIES(3, 4, 0);

    /* No outbox with write-through. */
    json_t *stats = outbox_stats(cache);
    CHECK(json_is_null(stats));
    json_decref(stats);
    CHECK(atomic_load(&source_state.loads) == 0);
    done();
}

static void test_failing_then_recovering_source_gets_each_write_once(void) {
    if (!fresh(WRITE_BEHIND)) {
        done();
        return;
    }
    /* Two failures among three writes: no write fails more than twice, so
     * none reaches max_attempts (3). */
    CHECK(control("fail_writes", "{\"count\": 2, \"status\": 503}"));
    CHECK_OK(tierstack_cache_set(cache, K("a"), V("1"), 0));
    CHECK_OK(tierstack_cache_set(cache, K("b"), V("2"), 0));
    CHECK_OK(tierstack_cache_set(cache, K("c"), V("3"), 0));
    CHECK_OK(tierstack_cache_flush(cache));
    CHECK_DELIVERIES(3, 5, 0);
    CHECK_STORED("a", "1");
    CHECK_STORED("b", "2");
    CHECK_STORED("c", "3");
    /* A retry carries the idempotency key of the write's first attempt. */
    CHECK(attempts_with_one_id("a") + attempts_with_one_id("b") + attempts_with_one_id("c") == 5);
    json_t *stats = outbox_stats(cache);
    CHECK(number(stats, "pending") == 0 && number(stats, "retries") == 2 &&
          number(stats, "delivered") == 3 && number(stats, "dead") == 0);
    json_decref(stats);
    done();
}

/* Checks one dead letter of the always-failing origin. */
static void check_dead_letter(const json_t *letter, const char *key, int64_t start_ms) {
    char want[128];
    snprintf(want, sizeof want, "source: the store returned source: PUT /store/%s answered 500",
             key);
    CHECK(is_string(json_object_get(letter, "key"), key));
    CHECK(is_string(json_object_get(letter, "op"), "store"));
    CHECK(number(letter, "attempts") == 3);
    CHECK(is_string(json_object_get(letter, "last_error"), want));
    double created = number(letter, "created_ms"), failed = number(letter, "failed_ms");
    CHECK(created >= (double)start_ms && created <= failed && failed <= (double)now_epoch_ms());
}

static void test_always_failing_source_ends_in_dead_letters(void) {
    int64_t start_ms = now_epoch_ms();
    if (!fresh(WRITE_BEHIND)) {
        done();
        return;
    }
    CHECK(control("fail_writes", "{\"status\": 500}"));
    CHECK_OK(tierstack_cache_set(cache, K("a"), V("1"), 0));
    CHECK_OK(tierstack_cache_set(cache, K("b"), V("2"), 0));
    /* flush returns once nothing is pending: dead letters do not count. */
    CHECK_OK(tierstack_cache_flush(cache));
    json_t *dead = dead_letters();
    CHECK(json_is_array(dead) && json_array_size(dead) == 2);
    if (dead != NULL && json_array_size(dead) == 2) {
        check_dead_letter(json_array_get(dead, 0), "a", start_ms);
        check_dead_letter(json_array_get(dead, 1), "b", start_ms);
    }
    json_decref(dead);
    json_t *stats = outbox_stats(cache);
    CHECK(number(stats, "pending") == 0 && number(stats, "retrying") == 0 &&
          number(stats, "retries") == 6 && number(stats, "delivered") == 0 &&
          number(stats, "dead") == 2);
    json_decref(stats);
    CHECK_DELIVERIES(0, 6, 0);
    CHECK(attempts_with_one_id("a") == 3 && attempts_with_one_id("b") == 3);
    /* The cache still reads its own writes. */
    tierstack_value *value = NULL;
    CHECK_OK(tierstack_cache_get(cache, K("a"), &value));
    CHECK_VALUE(value, "1");

    /* The origin recovers; the dead letters are queued again and delivered. */
    CHECK(control("clear_write_faults", NULL));
    uint64_t queued = 0;
    CHECK_OK(tierstack_cache_retry_dead_letters(cache, &queued));
    CHECK(queued == 2);
    CHECK_OK(tierstack_cache_flush(cache));
    CHECK_DELIVERIES(2, 8, 0);
    CHECK_STORED("a", "1");
    CHECK_STORED("b", "2");
    dead = dead_letters();
    CHECK(json_is_array(dead) && json_array_size(dead) == 0);
    json_decref(dead);
    stats = outbox_stats(cache);
    CHECK(number(stats, "delivered") == 2 && number(stats, "dead") == 0 &&
          number(stats, "retries") == 6);
    json_decref(stats);

    /* One more that gives up, then purged: it never reaches the origin. */
    CHECK(control("fail_writes", "{\"status\": 500}"));
    CHECK_OK(tierstack_cache_set(cache, K("c"), V("3"), 0));
    CHECK_OK(tierstack_cache_flush(cache));
    uint64_t purged = 0;
    CHECK_OK(tierstack_cache_purge_dead_letters(cache, &purged));
    CHECK(purged == 1);
    CHECK_OK(tierstack_cache_purge_dead_letters(cache, NULL));
    CHECK_OK(tierstack_cache_retry_dead_letters(cache, &queued));
    CHECK(queued == 0);
    CHECK(control("clear_write_faults", NULL));
    CHECK_OK(tierstack_cache_flush(cache));
    CHECK_DELIVERIES(2, 11, 0);
    CHECK_STORED("c", NULL);
    done();
}

static void test_pending_writes_are_listed(void) {
    /* Retries far apart: the write stays pending while the test looks. */
    if (!fresh("\"strategy\": \"write-behind\", \"outbox\": {\"retry_base\": 60, "
               "\"retry_max\": 60, \"flush_timeout\": 0.2, \"close_timeout\": 0.1}")) {
        done();
        return;
    }
    CHECK(control("fail_writes", "{\"status\": 500}"));
    CHECK_OK(tierstack_cache_set(cache, K("p"), V("1"), 0));
    /* Polled with a deadline: the first attempt is the worker's. */
    json_t *stats = NULL;
    for (int i = 0; i < 1000; i++) {
        json_decref(stats);
        stats = outbox_stats(cache);
        if (number(stats, "retrying") == 1) {
            break;
        }
        sleep_seconds(0.005);
    }
    CHECK(number(stats, "pending") == 1 && number(stats, "retrying") == 1 &&
          number(stats, "retries") == 1 && number(stats, "oldest_age_ms") >= 0);
    json_decref(stats);
    char *text = NULL;
    CHECK_OK(tierstack_cache_pending_writes_json(cache, &text));
    json_t *pending = parse_owned(text);
    CHECK(json_is_array(pending) && json_array_size(pending) == 1);
    const json_t *p = pending != NULL && json_array_size(pending) == 1 ? json_array_get(pending, 0) : NULL;
    CHECK(is_string(json_object_get(p, "key"), "p") && is_string(json_object_get(p, "op"), "store") &&
          number(p, "attempts") == 1 &&
          is_string(json_object_get(p, "last_error"),
                    "source: the store returned source: PUT /store/p answered 500"));
    json_decref(pending);
    /* flush gives up at outbox.flush_timeout. */
    CHECK_RESULT(tierstack_cache_flush(cache), TIERSTACK_RESULT_TIMEOUT);
    CHECK(control("clear_write_faults", NULL));
    /* Closing delivers for close_timeout only; what is left stays in the
     * file, and the cache reports no outbox any more. */
    CHECK_OK(tierstack_cache_close(cache));
    CHECK_RESULT(tierstack_cache_pending_writes_json(cache, &text), TIERSTACK_RESULT_CLOSED);
    CHECK_RESULT(tierstack_cache_dead_letters_json(cache, &text), TIERSTACK_RESULT_CLOSED);
    CHECK_RESULT(tierstack_cache_retry_dead_letters(cache, NULL), TIERSTACK_RESULT_CLOSED);
    CHECK_RESULT(tierstack_cache_purge_dead_letters(cache, NULL), TIERSTACK_RESULT_CLOSED);
    CHECK_DELIVERIES(0, 1, 0);
    done();
}

static void test_read_only_source_refused_at_open(void) {
    dir = tmp_dir_new();
    tierstack_source read_only = {.load = http_load, .store = NULL, .remove = NULL};
    static const char *const strategies[] = {"\"strategy\": \"write-behind\"",
                                             "\"strategy\": \"write-through\""};
    for (size_t i = 0; i < 2; i++) {
        char *config = config_in(dir, strategies[i]);
        tierstack_cache *other = NULL;
        CHECK_RESULT(tierstack_cache_open_with_source(config, &read_only, &source_state, &other),
                     TIERSTACK_RESULT_INVALID_CONFIG);
        CHECK(strstr(last_error(), "is read-only: it has no store and remove") != NULL);
        CHECK(other == NULL);
        /* Without any source too. */
        CHECK_RESULT(tierstack_cache_open(config, &other), TIERSTACK_RESULT_INVALID_CONFIG);
        CHECK(strstr(last_error(), "no source is configured") != NULL);
        CHECK(other == NULL);
        free(config);
    }
    /* Read-through with the same source opens, and has no outbox. */
    char *config = config_in(dir, "\"strategy\": \"read-through\"");
    tierstack_cache *other = NULL;
    CHECK_OK(tierstack_cache_open_with_source(config, &read_only, &source_state, &other));
    json_t *stats = outbox_stats(other);
    CHECK(json_is_null(stats));
    json_decref(stats);
    tierstack_cache_free(other);
    free(config);
    tmp_dir_remove(dir);
}

/* ---- callbacks that fail in the C way ---- */

typedef struct {
    atomic_int calls;
    tierstack_write *kept;           /* a handle kept past its call */
    atomic_int second_error;         /* what a second tierstack_write_error returned */
    tierstack_result returns;        /* what the callback returns */
    const char *message;             /* NULL: no tierstack_write_error */
} failing_source;

static tierstack_result failing_store(void *user_data, const char *key, size_t key_len,
                                      const uint8_t *data, size_t len, const char *idempotency_key,
                                      size_t idempotency_key_len, tierstack_write *write) {
    (void)key, (void)key_len, (void)data, (void)len, (void)idempotency_key;
    (void)idempotency_key_len;
    failing_source *s = user_data;
    atomic_fetch_add(&s->calls, 1);
    s->kept = write;
    if (s->message != NULL) {
        tierstack_write_error(write, s->message, strlen(s->message));
        atomic_store(&s->second_error,
                     (int)tierstack_write_error(write, s->message, strlen(s->message)));
    }
    return s->returns;
}

static tierstack_result failing_remove(void *user_data, const char *key, size_t key_len,
                                       const char *idempotency_key, size_t idempotency_key_len,
                                       tierstack_write *write) {
    return failing_store(user_data, key, key_len, NULL, 0, idempotency_key, idempotency_key_len,
                         write);
}

static tierstack_result no_load(void *user_data, const char *key, size_t key_len,
                                tierstack_load *load) {
    (void)user_data, (void)key, (void)key_len;
    return tierstack_load_not_found(load);
}

/* Opens a write-behind cache over `s`, writes `k` (a store, or a remove
 * when `remove`), lets it give up and returns its dead letter's last_error
 * (malloc'd) after checking the attempts. */
static char *dead_letter_error(failing_source *s, bool remove) {
    dir = tmp_dir_new();
    char *config = config_in(dir, WRITE_BEHIND);
    tierstack_source source = {.load = no_load, .store = failing_store, .remove = failing_remove};
    cache = NULL;
    char *error = NULL;
    if (CHECK_OK(tierstack_cache_open_with_source(config, &source, s, &cache))) {
        if (remove) {
            CHECK_OK(tierstack_cache_delete(cache, K("k"), NULL));
        } else {
            CHECK_OK(tierstack_cache_set(cache, K("k"), V("v"), 0));
        }
        CHECK_OK(tierstack_cache_flush(cache));
        json_t *dead = dead_letters();
        const json_t *letter = dead != NULL && json_array_size(dead) == 1 ? json_array_get(dead, 0) : NULL;
        CHECK(letter != NULL && number(letter, "attempts") == 3 &&
              is_string(json_object_get(letter, "op"), remove ? "remove" : "store"));
        const json_t *last = json_object_get(letter, "last_error");
        if (CHECK(json_is_string(last))) {
            error = strdup(json_string_value(last));
        }
        json_decref(dead);
    }
    CHECK(atomic_load(&s->calls) == 3);
    free(config);
    done();
    return error;
}

static void test_failing_callbacks_end_in_dead_letters_with_their_message(void) {
    failing_source s = {.returns = TIERSTACK_RESULT_IO, .message = "disk on fire"};
    char *error = dead_letter_error(&s, false);
    CHECK(error != NULL && strcmp(error, "source: the store returned io: disk on fire") == 0);
    free(error);
    /* A second message for one call is refused; the handle dies with it. */
    CHECK(atomic_load(&s.second_error) == TIERSTACK_RESULT_INVALID_ARGUMENT);
    CHECK_RESULT(tierstack_write_error(s.kept, K("late")), TIERSTACK_RESULT_INVALID_ARGUMENT);
    CHECK(strcmp(last_error(), "invalid_argument: write is not a live handle: it is valid only "
                               "while its store or remove call runs") == 0);
    CHECK_RESULT(tierstack_write_error(NULL, K("x")), TIERSTACK_RESULT_INVALID_ARGUMENT);

    /* A message and OK is still a failure. */
    failing_source ok = {.returns = TIERSTACK_RESULT_OK, .message = "half written"};
    error = dead_letter_error(&ok, false);
    CHECK(error != NULL && strcmp(error, "source: the store failed: half written") == 0);
    free(error);

    /* A bare non-zero result, from a remove. */
    failing_source bare = {.returns = TIERSTACK_RESULT_SOURCE, .message = NULL};
    error = dead_letter_error(&bare, true);
    CHECK(error != NULL && strcmp(error, "source: the remove returned source") == 0);
    free(error);

    /* A number that is no result code. */
    failing_source odd = {.returns = unknown_result_code(), .message = NULL};
    error = dead_letter_error(&odd, false);
    char want[64];
    snprintf(want, sizeof want, "source: the store returned unknown result %u",
             (unsigned)unknown_result_code());
    CHECK(error != NULL && strcmp(error, want) == 0);
    free(error);
}

/* ---- a crash: the outbox survives the process ---- */

/* The crashing process: sets one key while the origin refuses every
 * write, waits for the first attempt to have failed (so the origin counts
 * exactly one), then exits without closing the cache. */
static int crash_writer_main(const char *config, const char *api_url) {
    if (!origin_attach(api_url)) {
        return 2;
    }
    tierstack_source source = {.load = http_load, .store = http_store, .remove = http_remove};
    tierstack_cache *c = NULL;
    if (tierstack_cache_open_with_source(config, &source, &source_state, &c) !=
            TIERSTACK_RESULT_OK ||
        tierstack_cache_set(c, K("survivor"), V("kept"), 0) != TIERSTACK_RESULT_OK) {
        return 3;
    }
    for (int i = 0; i < 2000; i++) {
        char *text = NULL;
        if (tierstack_cache_outbox_stats_json(c, &text) != TIERSTACK_RESULT_OK) {
            return 4;
        }
        bool failed_once = strstr(text, "\"retrying\":1") != NULL;
        tierstack_string_free(text);
        if (failed_once) {
            /* Acknowledged and pending: die without closing. */
            _exit(0);
        }
        sleep_seconds(0.005);
    }
    return 5;
}

static void test_outbox_survives_a_crash(void) {
    /* No cache of this process is open on the file while the other one
     * writes it. */
    fresh_dir();
    CHECK(control("fail_writes", "{\"status\": 500}"));
    char *config = config_in(dir, "\"strategy\": \"write-behind\", \"outbox\": "
                                  "{\"retry_base\": 60, \"retry_max\": 60}");
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        execl(self_path, self_path, "--crash-writer", config, origin_api, (char *)NULL);
        _exit(127);
    }
    int status = -1;
    CHECK(pid > 0 && waitpid(pid, &status, 0) == pid && WIFEXITED(status) &&
          WEXITSTATUS(status) == 0);
    CHECK_DELIVERIES(0, 1, 0);

    /* The next cache on the file delivers what the dead process left. */
    CHECK(control("clear_write_faults", NULL));
    char *quick = config_in(dir, WRITE_BEHIND);
    tierstack_source source = {.load = http_load, .store = http_store, .remove = http_remove};
    CHECK_OK(tierstack_cache_open_with_source(quick, &source, &source_state, &cache));
    CHECK_OK(tierstack_cache_flush(cache));
    CHECK_DELIVERIES(1, 2, 0);
    CHECK_STORED("survivor", "kept");
    json_t *stats = outbox_stats(cache);
    CHECK(number(stats, "pending") == 0 && number(stats, "delivered") == 1);
    json_decref(stats);
    free(config);
    free(quick);
    done();
}

int main(int argc, char **argv) {
    pthread_mutex_init(&source_state.lock, NULL);
    signal(SIGPIPE, SIG_IGN);
    if (argc == 4 && strcmp(argv[1], "--crash-writer") == 0) {
        return crash_writer_main(argv[2], argv[3]);
    }
    self_path = argv[0];
    if (!origin_start()) {
        origin_stop();
        printf("FAIL the origin starts\n");
        printf("cases: 0 passed, 1 failed\n");
        return 1;
    }
    check_case("write-behind: 5 sets and a delete, flush: each write reaches the origin once",
               test_write_behind_delivers_each_write_once);
    check_case("write-through: a 500 fails the set with SOURCE and the old value stays",
               test_write_through_failure_keeps_the_old_value);
    check_case("an origin failing twice then working gets each write once (attempts 3 + 2)",
               test_failing_then_recovering_source_gets_each_write_once);
    check_case("an origin always failing: dead letters, retried after recovery, purged",
               test_always_failing_source_ends_in_dead_letters);
    check_case("pending writes are listed; flush times out; close leaves them in the file",
               test_pending_writes_are_listed);
    check_case("write-behind and write-through refuse a read-only source at open",
               test_read_only_source_refused_at_open);
    check_case("store/remove returning an error: retried, then a dead letter with its message",
               test_failing_callbacks_end_in_dead_letters_with_their_message);
    check_case("a write acknowledged by a process that crashes is delivered by the next one",
               test_outbox_survives_a_crash);
    origin_stop();
    return check_summary();
}
