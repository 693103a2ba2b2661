/*
 * The C conformance runner: runs the shared operation vectors
 * (tests/conformance/README.md) through the C API, reading them with
 * Jansson.
 *
 *   conformance FILE.json...   (the files of tests/conformance/vectors)
 *
 * Prints `ok <file>: <name>` or `FAIL <file>: <name>: step <i>: <what>` per
 * vector (steps counted from 0), then `conformance: <passed> passed,
 * <failed> failed`; exits 0 only when every vector passed. A vector whose
 * step this machine does not allow (`make_read_only` mounts: root only)
 * prints `skip <file>: <name>: <why>` and counts neither way.
 */
#define _POSIX_C_SOURCE 200809L

#include <math.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>

#include <jansson.h>

#include "check.h"

/* Strings may hold NUL bytes ("nul\u0000byte"); numbers may be any JSON. */
enum { LOAD_FLAGS = JSON_ALLOW_NUL | JSON_DECODE_ANY, DUMP_FLAGS = JSON_COMPACT | JSON_ENCODE_ANY };

/* A vector's scripted loader (tests/conformance/README.md, "Loading"):
 * the answers, used in order, one per loader call, from whichever thread
 * tierstack calls it on; and, for a "writable" vector, the source's
 * writes ("Writes: strategies, the outbox, tags"). */
typedef struct {
    const json_t *script;      /* the vector's "script" array, or NULL */
    atomic_size_t calls;       /* loader calls so far in the vector */
    atomic_int running;        /* loader, store and remove calls not yet returned */
    pthread_mutex_t lock;      /* guards loader_keys and writes */
    json_t *loader_keys;       /* the sorted keys of the last batch call, or NULL */
    json_t *writes;            /* the source's writes: [[key, value or null], ...] */
    atomic_size_t store_fail;  /* store / remove calls still to refuse */
} script;

/* One vector's state: its directory, its current config, its cache. */
typedef struct {
    char *dir;
    const json_t *config;
    script *loader;            /* shared by the threads of a `concurrent` step */
    bool read_through;         /* open with the scripted loader as the source */
    bool writable;             /* ... and with the scripted store and remove */
    tierstack_cache *cache;
    bool mounted;      /* make_read_only bind-mounted dir onto itself */
    bool skipped;      /* a step is not possible here; `what` says why */
    char what[1024];   /* why the current step failed (or was skipped) */
} run;

/* make_read_only: a read-only bind mount of the vector's directory onto
 * itself, detached when the vector ends. The kernel ignores the file system
 * type of a bind mount; "none" rather than NULL keeps valgrind quiet. */
static tierstack_result make_read_only(run *r) {
    if (mount(r->dir, r->dir, "none", MS_BIND, NULL) != 0) {
        r->skipped = true;
        snprintf(r->what, sizeof r->what,
                 "make_read_only: mounting %s read-only is not permitted here: %s", r->dir,
                 strerror(errno));
        return TIERSTACK_RESULT_OK;
    }
    r->mounted = true;
    if (mount("none", r->dir, "none", MS_REMOUNT | MS_BIND | MS_RDONLY, NULL) != 0) {
        r->skipped = true;
        snprintf(r->what, sizeof r->what, "make_read_only: remounting %s read-only failed: %s",
                 r->dir, strerror(errno));
    }
    return TIERSTACK_RESULT_OK;
}

static bool failed(run *r, const char *fmt, ...) {
    va_list args;
    va_start(args, fmt);
    vsnprintf(r->what, sizeof r->what, fmt, args);
    va_end(args);
    return false;
}

/* `value` as compact JSON for a message, malloc'd ("nothing" for NULL). */
static char *dump(const json_t *value) {
    char *text = value != NULL ? json_dumps(value, DUMP_FLAGS) : NULL;
    return text != NULL ? text : strdup("nothing");
}

/* A string as a JSON string, bytes as they are (keys and values may hold
 * NUL bytes). */
static json_t *bytes_string(const char *bytes, size_t len) {
    return json_stringn_nocheck(bytes != NULL ? bytes : "", len);
}

/* The vector's config as JSON, with sqlite.path = <dir>/cache.db unless
 * the config sets it or disables sqlite. malloc'd. */
static char *config_json(const json_t *config, const char *dir) {
    json_t *copy = json_is_object(config) ? json_deep_copy(config) : json_object();
    json_t *sqlite = json_object_get(copy, "sqlite");
    if (sqlite == NULL) {
        sqlite = json_object();
        json_object_set_new(copy, "sqlite", sqlite);
    }
    if (json_is_object(sqlite) && !json_is_false(json_object_get(sqlite, "enabled")) &&
        json_object_get(sqlite, "path") == NULL) {
        char *path = path_join(dir, "cache.db");
        json_object_set_new(sqlite, "path", json_string(path));
        free(path);
    }
    char *text = json_dumps(copy, DUMP_FLAGS);
    json_decref(copy);
    return text;
}

/* ---- the scripted loader ---- */

/* The answer of loader call number `calls` (counted), or NULL past the
 * end of the script ("script exhausted"). Waits out the answer's "delay". */
static const json_t *next_answer(script *s) {
    size_t i = atomic_fetch_add(&s->calls, 1);
    const json_t *answer = json_array_get(s->script, i);
    const json_t *delay = json_object_get(answer, "delay");
    if (json_is_number(delay)) {
        sleep_seconds(json_number_value(delay));
    }
    return answer;
}

static double answer_ttl(const json_t *answer) {
    const json_t *ttl = json_object_get(answer, "ttl");
    return json_is_number(ttl) ? json_number_value(ttl) : 0;
}

static tierstack_result script_loader(void *user_data, const char *key, size_t key_len,
                                      tierstack_load *load) {
    (void)key, (void)key_len;
    script *s = user_data;
    atomic_fetch_add(&s->running, 1);
    const json_t *answer = next_answer(s);
    const json_t *value = json_object_get(answer, "value");
    tierstack_result res = TIERSTACK_RESULT_SOURCE; /* an error, or the script is exhausted */
    if (json_is_string(value)) {
        res = tierstack_load_value(load, (const uint8_t *)json_string_value(value),
                                   json_string_length(value), answer_ttl(answer));
    } else if (json_object_get(answer, "not_found") != NULL) {
        res = tierstack_load_not_found(load);
    }
    atomic_fetch_sub(&s->running, 1);
    return res;
}

typedef struct {
    const char *bytes;
    size_t len;
} key_bytes;

static int compare_keys(const void *a, const void *b) {
    const key_bytes *x = a, *y = b;
    size_t n = x->len < y->len ? x->len : y->len;
    int c = n > 0 ? memcmp(x->bytes, y->bytes, n) : 0;
    return c != 0 ? c : (x->len > y->len) - (x->len < y->len);
}

static tierstack_result script_batch_loader(void *user_data, const char *const *keys,
                                            const size_t *key_lens, size_t n,
                                            tierstack_load_batch *batch) {
    script *s = user_data;
    atomic_fetch_add(&s->running, 1);
    key_bytes *sorted = calloc(n + 1, sizeof *sorted);
    for (size_t i = 0; i < n; i++) {
        sorted[i] = (key_bytes){keys[i], key_lens[i]};
    }
    qsort(sorted, n, sizeof *sorted, compare_keys);
    json_t *asked = json_array();
    for (size_t i = 0; i < n; i++) {
        json_array_append_new(asked, bytes_string(sorted[i].bytes, sorted[i].len));
    }
    free(sorted);
    pthread_mutex_lock(&s->lock);
    json_decref(s->loader_keys);
    s->loader_keys = asked;
    pthread_mutex_unlock(&s->lock);

    const json_t *answer = next_answer(s);
    json_t *values = json_object_get(answer, "values");
    tierstack_result res = TIERSTACK_RESULT_SOURCE;
    if (json_is_object(values)) {
        const char *key;
        size_t key_len;
        json_t *value;
        res = TIERSTACK_RESULT_OK;
        json_object_keylen_foreach(values, key, key_len, value) {
            if (res == TIERSTACK_RESULT_OK) {
                res = tierstack_load_batch_value(batch, key, key_len,
                                                 (const uint8_t *)json_string_value(value),
                                                 json_string_length(value), answer_ttl(answer));
            }
        }
    }
    atomic_fetch_sub(&s->running, 1);
    return res;
}

/* A source write: refused ("store refused") while store_fail lasts, else
 * recorded as [key, value] (value NULL: a remove). */
static tierstack_result script_write(script *s, const char *key, size_t key_len,
                                     const uint8_t *data, size_t len, bool remove,
                                     tierstack_write *write) {
    size_t left = atomic_load(&s->store_fail);
    while (left > 0 && !atomic_compare_exchange_weak(&s->store_fail, &left, left - 1)) {
    }
    if (left > 0) {
        tierstack_write_error(write, "store refused", strlen("store refused"));
        return TIERSTACK_RESULT_SOURCE;
    }
    json_t *entry = json_array();
    json_array_append_new(entry, bytes_string(key, key_len));
    json_array_append_new(entry, remove ? json_null() : bytes_string((const char *)data, len));
    pthread_mutex_lock(&s->lock);
    json_array_append_new(s->writes, entry);
    pthread_mutex_unlock(&s->lock);
    return TIERSTACK_RESULT_OK;
}

static tierstack_result script_store(void *user_data, const char *key, size_t key_len,
                                     const uint8_t *data, size_t len, const char *idempotency_key,
                                     size_t idempotency_key_len, tierstack_write *write) {
    (void)idempotency_key, (void)idempotency_key_len;
    script *s = user_data;
    atomic_fetch_add(&s->running, 1);
    tierstack_result res = script_write(s, key, key_len, data, len, false, write);
    atomic_fetch_sub(&s->running, 1);
    return res;
}

static tierstack_result script_remove(void *user_data, const char *key, size_t key_len,
                                      const char *idempotency_key, size_t idempotency_key_len,
                                      tierstack_write *write) {
    (void)idempotency_key, (void)idempotency_key_len;
    script *s = user_data;
    atomic_fetch_add(&s->running, 1);
    tierstack_result res = script_write(s, key, key_len, NULL, 0, true, write);
    atomic_fetch_sub(&s->running, 1);
    return res;
}

static tierstack_result open_cache(run *r, const json_t *config) {
    tierstack_cache_free(r->cache);
    r->cache = NULL;
    char *text = config_json(config, r->dir);
    tierstack_result result;
    if (r->read_through || r->writable) {
        tierstack_source source = {.load = script_loader, .store = NULL, .remove = NULL};
        if (r->writable) {
            source.store = script_store;
            source.remove = script_remove;
        }
        result = tierstack_cache_open_with_source(text, &source, r->loader, &r->cache);
    } else {
        result = tierstack_cache_open(text, &r->cache);
    }
    free(text);
    return result;
}

/* A string field of a step, as (bytes, length). */
static bool field(run *r, const json_t *step, const char *name, const char **bytes, size_t *len) {
    const json_t *v = json_object_get(step, name);
    if (!json_is_string(v)) {
        return failed(r, "the step has no string \"%s\"", name);
    }
    *bytes = json_string_value(v);
    *len = json_string_length(v);
    return true;
}

/* A step's number of seconds `name` ("ttl", "seconds"): 0 when absent, a
 * JSON number, or one of the strings "NaN", "inf", "-inf" for the values
 * JSON cannot hold. */
static bool seconds_of(run *r, const json_t *step, const char *name, double *seconds) {
    const json_t *v = json_object_get(step, name);
    const char *text = json_string_value(v);
    *seconds = 0;
    if (v == NULL) {
        return true;
    }
    if (json_is_number(v)) {
        *seconds = json_number_value(v);
    } else if (text != NULL && strcmp(text, "NaN") == 0) {
        *seconds = NAN;
    } else if (text != NULL && strcmp(text, "inf") == 0) {
        *seconds = INFINITY;
    } else if (text != NULL && strcmp(text, "-inf") == 0) {
        *seconds = -INFINITY;
    } else {
        return failed(r, "\"%s\" is neither a number nor \"NaN\", \"inf\" or \"-inf\"", name);
    }
    return true;
}

/* A value read by the API as a JSON string (its bytes), or null; frees it. */
static json_t *string_or_null(tierstack_value *value) {
    if (value == NULL) {
        return json_null();
    }
    json_t *s = bytes_string((const char *)tierstack_value_data(value), tierstack_value_len(value));
    tierstack_value_free(value);
    return s;
}

/* A JSON document returned by the API, parsed; frees `text`. NULL, with
 * the parser's message in `r`, when it is not JSON. */
static json_t *parse_owned(run *r, char *text, const char *what) {
    json_error_t error;
    json_t *doc = json_loads(text, LOAD_FLAGS, &error);
    tierstack_string_free(text);
    if (doc == NULL) {
        failed(r, "the %s is not JSON: %s", what, error.text);
    }
    return doc;
}

static bool step_passes(run *r, const json_t *step);

/* `breaker` and `outbox`: the fields of a report (a JSON object from
 * `report`) that `expect` names (the others are not compared), as an
 * object. A report that is JSON null (the outbox of a strategy without
 * one) gives null for every field. */
static tierstack_result report_fields(run *r, const json_t *step, json_t **actual,
                                      const char *what,
                                      tierstack_result (*report)(const tierstack_cache *,
                                                                 char **)) {
    char *text = NULL;
    tierstack_result res = report(r->cache, &text);
    if (res != TIERSTACK_RESULT_OK) {
        return res;
    }
    json_t *status = parse_owned(r, text, what);
    if (status == NULL) {
        return TIERSTACK_RESULT_INTERNAL;
    }
    if (!json_is_object(status) && !json_is_null(status)) {
        failed(r, "the %s is not a JSON object or null", what);
        json_decref(status);
        return TIERSTACK_RESULT_INTERNAL;
    }
    json_t *expect = json_object_get(step, "expect");
    const char *key;
    size_t key_len;
    json_t *wanted;
    *actual = json_object();
    json_object_keylen_foreach(expect, key, key_len, wanted) {
        json_t *got = json_object_getn(status, key, key_len);
        if (json_is_null(status)) {
            json_object_setn_new_nocheck(*actual, key, key_len, json_null());
        } else if (got != NULL) {
            json_object_setn_nocheck(*actual, key, key_len, got);
        }
    }
    json_decref(status);
    return res;
}

/* `dead_letters`: [{"key", "op", "attempts"}, ...], oldest first (the
 * other fields of the C list are not compared). */
static tierstack_result dead_letters(run *r, json_t **actual) {
    char *text = NULL;
    tierstack_result res = tierstack_cache_dead_letters_json(r->cache, &text);
    if (res != TIERSTACK_RESULT_OK) {
        return res;
    }
    json_t *list = parse_owned(r, text, "dead letter list");
    if (!json_is_array(list)) {
        if (list != NULL) {
            failed(r, "the dead letters are not a JSON array");
        }
        json_decref(list);
        return TIERSTACK_RESULT_INTERNAL;
    }
    static const char *const fields[] = {"key", "op", "attempts"};
    size_t i;
    json_t *item;
    *actual = json_array();
    json_array_foreach(list, i, item) {
        json_t *letter = json_object();
        for (size_t f = 0; f < sizeof fields / sizeof *fields; f++) {
            json_t *v = json_object_get(item, fields[f]);
            if (v == NULL) {
                failed(r, "a dead letter has no \"%s\"", fields[f]);
            } else {
                json_object_set(letter, fields[f], v);
            }
        }
        json_array_append_new(*actual, letter);
    }
    json_decref(list);
    return res;
}

/* The keys of an array of JSON strings as parallel (bytes, length) arrays
 * of `n + 1` (never NULL); free both. */
static void key_arrays(const json_t *list, const char ***keys, size_t **lens) {
    size_t n = json_array_size(list);
    *keys = calloc(n + 1, sizeof **keys);
    *lens = calloc(n + 1, sizeof **lens);
    for (size_t i = 0; i < n; i++) {
        (*keys)[i] = json_string_value(json_array_get(list, i));
        (*lens)[i] = json_string_length(json_array_get(list, i));
    }
}

/* The values found among `n` keys as an object key -> value; frees them. */
static json_t *found_values(const char **keys, const size_t *key_lens, size_t n,
                            tierstack_value **values) {
    json_t *found = json_object();
    for (size_t i = 0; i < n; i++) {
        if (values[i] != NULL) {
            json_object_setn_new_nocheck(found, keys[i], key_lens[i], string_or_null(values[i]));
        }
    }
    return found;
}

/* `get_or_load_many`: the found keys with their values; with
 * "loader_keys", also checks the keys the batch loader was handed. */
static tierstack_result get_or_load_many(run *r, const json_t *step, double ttl,
                                         json_t **actual) {
    const json_t *list = json_object_get(step, "keys");
    if (!json_is_array(list)) {
        failed(r, "the step has no \"keys\"");
        return TIERSTACK_RESULT_INTERNAL;
    }
    size_t n = json_array_size(list);
    const char **keys;
    size_t *key_lens;
    key_arrays(list, &keys, &key_lens);
    tierstack_value **values = calloc(n + 1, sizeof *values);
    pthread_mutex_lock(&r->loader->lock);
    json_decref(r->loader->loader_keys);
    r->loader->loader_keys = NULL;
    pthread_mutex_unlock(&r->loader->lock);
    tierstack_result res = tierstack_cache_get_or_load_many(
        r->cache, keys, key_lens, n, script_batch_loader, r->loader, ttl, values);
    if (res == TIERSTACK_RESULT_OK) {
        *actual = found_values(keys, key_lens, n, values);
        const json_t *want = json_object_get(step, "loader_keys");
        pthread_mutex_lock(&r->loader->lock);
        const json_t *got = r->loader->loader_keys;
        if (json_is_null(want) ? got != NULL : want != NULL && !json_equal(got, want)) {
            char *g = got != NULL ? dump(got) : strdup("nothing (not called)");
            char *w = dump(want);
            failed(r, "the batch loader was handed %s, expected %s", g, w);
            free(g), free(w);
        }
        pthread_mutex_unlock(&r->loader->lock);
    }
    free(keys), free(key_lens), free(values);
    return res;
}

typedef struct {
    run r;             /* a copy of the vector's run: its own `what` */
    const json_t *step;
    bool ok;
} concurrent_call;

static void *concurrent_thread(void *arg) {
    concurrent_call *c = arg;
    c->ok = step_passes(&c->r, c->step);
    return NULL;
}

/* `concurrent`: `times` threads run `step` at once; each result must match
 * the inner step's expect/error. */
static tierstack_result concurrent(run *r, const json_t *step) {
    const json_t *times = json_object_get(step, "times");
    const json_t *inner = json_object_get(step, "step");
    if (!json_is_number(times) || inner == NULL) {
        failed(r, "the step has no \"times\" or \"step\"");
        return TIERSTACK_RESULT_INTERNAL;
    }
    size_t n = (size_t)json_number_value(times);
    concurrent_call *calls = calloc(n + 1, sizeof *calls);
    pthread_t *threads = calloc(n + 1, sizeof *threads);
    size_t started = 0;
    for (; started < n; started++) {
        calls[started] = (concurrent_call){.r = *r, .step = inner};
        if (pthread_create(&threads[started], NULL, concurrent_thread, &calls[started]) != 0) {
            failed(r, "pthread_create failed after %zu threads", started);
            break;
        }
    }
    for (size_t i = 0; i < started; i++) {
        pthread_join(threads[i], NULL);
    }
    for (size_t i = 0; i < started && r->what[0] == '\0'; i++) {
        if (!calls[i].ok) {
            failed(r, "call %zu of %zu: %s", i, n, calls[i].r.what);
        }
    }
    free(calls), free(threads);
    return r->what[0] == '\0' ? TIERSTACK_RESULT_OK : TIERSTACK_RESULT_INTERNAL;
}

/* `mget` and `mset`. */
static tierstack_result many(run *r, const json_t *step, bool get, double ttl, json_t **actual) {
    const json_t *list = json_object_get(step, get ? "keys" : "entries");
    if (get ? !json_is_array(list) : !json_is_object(list)) {
        failed(r, "the step has no \"%s\"", get ? "keys" : "entries");
        return TIERSTACK_RESULT_INTERNAL;
    }
    tierstack_result res;
    if (get) {
        size_t n = json_array_size(list);
        const char **keys;
        size_t *key_lens;
        key_arrays(list, &keys, &key_lens);
        tierstack_value **values = calloc(n + 1, sizeof *values);
        res = tierstack_cache_mget(r->cache, keys, key_lens, n, values);
        if (res == TIERSTACK_RESULT_OK) {
            *actual = found_values(keys, key_lens, n, values);
        }
        free(keys), free(key_lens), free(values);
        return res;
    }
    size_t n = json_object_size(list);
    const char **keys = calloc(n + 1, sizeof *keys);
    size_t *key_lens = calloc(n + 1, sizeof *key_lens);
    const uint8_t **datas = calloc(n + 1, sizeof *datas);
    size_t *data_lens = calloc(n + 1, sizeof *data_lens);
    const char *key;
    size_t key_len, i = 0;
    json_t *value;
    json_object_keylen_foreach((json_t *)list, key, key_len, value) {
        keys[i] = key;
        key_lens[i] = key_len;
        datas[i] = (const uint8_t *)json_string_value(value);
        data_lens[i] = json_string_length(value);
        i++;
    }
    res = tierstack_cache_mset(r->cache, keys, key_lens, datas, data_lens, n, ttl);
    free(keys), free(key_lens), free(datas), free(data_lens);
    return res;
}

/* `set`, with or without `tags`. */
static tierstack_result set(run *r, const json_t *step, double ttl) {
    const char *key = NULL, *data = NULL;
    size_t key_len = 0, data_len = 0;
    if (!field(r, step, "key", &key, &key_len) || !field(r, step, "value", &data, &data_len)) {
        return TIERSTACK_RESULT_INTERNAL;
    }
    const json_t *tags = json_object_get(step, "tags");
    if (tags == NULL) {
        return tierstack_cache_set(r->cache, key, key_len, (const uint8_t *)data, data_len, ttl);
    }
    if (!json_is_array(tags)) {
        failed(r, "\"tags\" is not an array");
        return TIERSTACK_RESULT_INTERNAL;
    }
    const char **tag_ptrs;
    size_t *tag_lens;
    key_arrays(tags, &tag_ptrs, &tag_lens);
    tierstack_result res = tierstack_cache_set_with_tags(
        r->cache, key, key_len, (const uint8_t *)data, data_len, ttl, tag_ptrs, tag_lens,
        json_array_size(tags));
    free(tag_ptrs), free(tag_lens);
    return res;
}

/* Runs one step's call: the result code, and in *actual what it returned. */
static tierstack_result call(run *r, const json_t *step, const char *op, json_t **actual) {
    const char *key = NULL;
    size_t key_len = 0;
    tierstack_value *value = NULL;
    tierstack_result res;
    bool flag = false;
    double ttl = 0;

    if (!seconds_of(r, step, "ttl", &ttl)) {
        return TIERSTACK_RESULT_INTERNAL;
    }

    if (strcmp(op, "open") == 0) {
        const json_t *config = json_object_get(step, "config");
        res = open_cache(r, config != NULL ? config : r->config);
        if (res == TIERSTACK_RESULT_OK && config != NULL) {
            r->config = config;
        }
        return res;
    }
    if (strcmp(op, "reopen") == 0) {
        res = tierstack_cache_close(r->cache);
        return res != TIERSTACK_RESULT_OK ? res : open_cache(r, r->config);
    }
    if (strcmp(op, "close") == 0) {
        return tierstack_cache_close(r->cache);
    }
    if (strcmp(op, "make_read_only") == 0) {
        return make_read_only(r);
    }
    if (strcmp(op, "sleep") == 0) {
        const json_t *s = json_object_get(step, "seconds");
        sleep_seconds(json_is_number(s) ? json_number_value(s) : 0);
        return TIERSTACK_RESULT_OK;
    }
    if (strcmp(op, "advance") == 0) {
        double seconds = 0;
        if (json_object_get(step, "seconds") == NULL) {
            failed(r, "the step has no \"seconds\"");
            return TIERSTACK_RESULT_INTERNAL;
        }
        if (!seconds_of(r, step, "seconds", &seconds)) {
            return TIERSTACK_RESULT_INTERNAL;
        }
        return tierstack_advance_test_clock(seconds);
    }
    if (strcmp(op, "len") == 0) {
        uint64_t n = 0;
        res = tierstack_cache_len(r->cache, &n);
        *actual = json_integer((json_int_t)n);
        return res;
    }
    if (strcmp(op, "clear") == 0) {
        return tierstack_cache_clear(r->cache);
    }
    if (strcmp(op, "keys") == 0) {
        const char *pattern = NULL;
        size_t pattern_len = 0;
        if (json_object_get(step, "pattern") != NULL &&
            !field(r, step, "pattern", &pattern, &pattern_len)) {
            return TIERSTACK_RESULT_INTERNAL;
        }
        char *text = NULL;
        res = tierstack_cache_keys_json(r->cache, pattern, pattern_len, &text);
        if (res == TIERSTACK_RESULT_OK && (*actual = parse_owned(r, text, "key list")) == NULL) {
            return TIERSTACK_RESULT_INTERNAL;
        }
        return res;
    }
    if (strcmp(op, "mget") == 0 || strcmp(op, "mset") == 0) {
        return many(r, step, op[1] == 'g', ttl, actual);
    }
    if (strcmp(op, "loader_calls") == 0) {
        *actual = json_integer((json_int_t)atomic_load(&r->loader->calls));
        return TIERSTACK_RESULT_OK;
    }
    if (strcmp(op, "breaker_open") == 0) {
        return tierstack_cache_breaker_open(r->cache);
    }
    if (strcmp(op, "breaker_close") == 0) {
        return tierstack_cache_breaker_close(r->cache);
    }
    if (strcmp(op, "breaker") == 0) {
        return report_fields(r, step, actual, "breaker status", tierstack_cache_breaker_status_json);
    }
    if (strcmp(op, "outbox") == 0) {
        return report_fields(r, step, actual, "outbox stats", tierstack_cache_outbox_stats_json);
    }
    if (strcmp(op, "dead_letters") == 0) {
        return dead_letters(r, actual);
    }
    if (strcmp(op, "retry_dead_letters") == 0 || strcmp(op, "purge_dead_letters") == 0) {
        uint64_t n = 0;
        res = op[0] == 'r' ? tierstack_cache_retry_dead_letters(r->cache, &n)
                           : tierstack_cache_purge_dead_letters(r->cache, &n);
        *actual = json_integer((json_int_t)n);
        return res;
    }
    if (strcmp(op, "flush") == 0) {
        return tierstack_cache_flush(r->cache);
    }
    if (strcmp(op, "source_writes") == 0) {
        pthread_mutex_lock(&r->loader->lock);
        *actual = json_deep_copy(r->loader->writes);
        pthread_mutex_unlock(&r->loader->lock);
        return TIERSTACK_RESULT_OK;
    }
    if (strcmp(op, "invalidate_tag") == 0) {
        const char *tag = NULL;
        size_t tag_len = 0;
        uint64_t n = 0;
        if (!field(r, step, "tag", &tag, &tag_len)) {
            return TIERSTACK_RESULT_INTERNAL;
        }
        res = tierstack_cache_invalidate_tag(r->cache, tag, tag_len, &n);
        *actual = json_integer((json_int_t)n);
        return res;
    }
    if (strcmp(op, "concurrent") == 0) {
        return concurrent(r, step);
    }
    if (strcmp(op, "get_or_load_many") == 0) {
        return get_or_load_many(r, step, ttl, actual);
    }
    if (strcmp(op, "set") == 0) {
        return set(r, step, ttl);
    }

    /* Every other op names one key. */
    if (!field(r, step, "key", &key, &key_len)) {
        return TIERSTACK_RESULT_INTERNAL;
    }
    if (strcmp(op, "set_json") == 0) {
        const json_t *doc = json_object_get(step, "json");
        if (doc == NULL) {
            failed(r, "the step has no \"json\"");
            return TIERSTACK_RESULT_INTERNAL;
        }
        char *text = json_dumps(doc, DUMP_FLAGS);
        res = tierstack_cache_set(r->cache, key, key_len, (const uint8_t *)text, strlen(text),
                                  ttl);
        free(text);
        return res;
    }
    if (strcmp(op, "get") == 0 || strcmp(op, "get_json") == 0) {
        res = tierstack_cache_get(r->cache, key, key_len, &value);
        if (res != TIERSTACK_RESULT_OK) {
            return res;
        }
        if (op[3] == '\0' || value == NULL) {
            *actual = string_or_null(value);
            return res;
        }
        json_error_t error;
        *actual = json_loadb((const char *)tierstack_value_data(value), tierstack_value_len(value),
                             LOAD_FLAGS, &error);
        tierstack_value_free(value);
        if (*actual == NULL) {
            failed(r, "the stored value is not JSON: %s", error.text);
            return TIERSTACK_RESULT_INTERNAL;
        }
        return res;
    }
    if (strcmp(op, "get_or_load") == 0) {
        res = tierstack_cache_get_or_load(r->cache, key, key_len, script_loader, r->loader, ttl,
                                          &value);
        if (res == TIERSTACK_RESULT_OK) {
            *actual = string_or_null(value);
        }
        return res;
    }
    if (strcmp(op, "lookup") == 0) {
        res = tierstack_cache_lookup(r->cache, key, key_len, &value);
        if (res == TIERSTACK_RESULT_OK && value == NULL) {
            *actual = json_null();
        } else if (res == TIERSTACK_RESULT_OK) {
            *actual = json_object();
            json_object_set_new(*actual, "tier", json_string(tierstack_value_tier(value)));
            if (tierstack_value_is_stale(value)) {
                json_object_set_new(*actual, "stale", json_true());
            }
            json_object_set_new(*actual, "value", string_or_null(value));
        }
        return res;
    }
    if (strcmp(op, "has") == 0 || strcmp(op, "delete") == 0) {
        res = op[0] == 'h' ? tierstack_cache_has(r->cache, key, key_len, &flag)
                           : tierstack_cache_delete(r->cache, key, key_len, &flag);
        *actual = json_boolean(flag);
        return res;
    }
    failed(r, "unknown op \"%s\"", op);
    return TIERSTACK_RESULT_INTERNAL;
}

static bool step_passes(run *r, const json_t *step) {
    const char *op = json_string_value(json_object_get(step, "op"));
    if (op == NULL) {
        return failed(r, "the step has no \"op\"");
    }
    r->what[0] = '\0';
    json_t *actual = NULL;
    tierstack_result res = call(r, step, op, &actual);
    const json_t *error = json_object_get(step, "error");
    const json_t *expect = json_object_get(step, "expect");
    bool ok;
    if (r->skipped) {
        ok = false;
    } else if (r->what[0] != '\0') {
        ok = false;
    } else if (error != NULL) {
        const char *want = json_string_value(error);
        ok = (want != NULL && strcmp(tierstack_result_name(res), want) == 0) ||
             failed(r, "%s returned %s, expected error %s (%s)", op, tierstack_result_name(res),
                    want != NULL ? want : "(not a string)",
                    res == TIERSTACK_RESULT_OK ? "no error" : last_error());
    } else if (res != TIERSTACK_RESULT_OK) {
        ok = failed(r, "%s failed: %s", op, last_error());
    } else if (expect != NULL && !json_equal(actual, expect)) {
        char *got = dump(actual), *want = dump(expect);
        ok = failed(r, "%s gave %s, expected %s", op, got, want);
        free(got), free(want);
    } else {
        ok = true;
    }
    json_decref(actual);
    return ok;
}

typedef enum { PASSED, FAILED, SKIPPED } verdict;

/* Runs one vector; prints its line. */
static verdict run_vector(const char *file, const json_t *vector) {
    const char *title = json_string_value(json_object_get(vector, "name"));
    const json_t *steps = json_object_get(vector, "steps");
    const json_t *store_fail = json_object_get(vector, "store_fail");
    script loader = {.script = json_object_get(vector, "script"), .writes = json_array()};
    atomic_init(&loader.store_fail,
                json_is_number(store_fail) ? (size_t)json_number_value(store_fail) : 0);
    pthread_mutex_init(&loader.lock, NULL);
    run r = {.dir = tmp_dir_new(),
             .config = json_object_get(vector, "config"),
             .loader = &loader,
             .read_through = json_is_true(json_object_get(vector, "read_through")),
             .writable = json_is_true(json_object_get(vector, "writable"))};
    bool ok = true;
    size_t i = 0;
    if (!json_is_array(steps)) {
        ok = failed(&r, "no steps");
    } else if (open_cache(&r, r.config) != TIERSTACK_RESULT_OK) {
        ok = failed(&r, "open failed: %s", last_error());
    }
    for (; ok && i < json_array_size(steps); i++) {
        ok = step_passes(&r, json_array_get(steps, i));
    }
    if (title == NULL) {
        title = "(unnamed)";
    }
    if (ok) {
        printf("ok %s: %s\n", file, title);
    } else if (r.skipped) {
        printf("skip %s: %s: %s\n", file, title, r.what);
    } else {
        printf("FAIL %s: %s: step %zu: %s\n", file, title, i > 0 ? i - 1 : 0, r.what);
    }
    tierstack_cache_free(r.cache);
    /* A load abandoned at the hard timeout, or finishing in the background
     * after the soft one, may still run: the script outlives it. */
    for (int waited = 0; atomic_load(&loader.running) > 0 && waited < 1000; waited++) {
        sleep_seconds(0.01);
    }
    json_decref(loader.loader_keys);
    json_decref(loader.writes);
    pthread_mutex_destroy(&loader.lock);
    if (r.mounted) {
        umount2(r.dir, MNT_DETACH);
    }
    tmp_dir_remove(r.dir);
    return ok ? PASSED : r.skipped ? SKIPPED : FAILED;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s VECTOR_FILE...\n", argv[0]);
        return 2;
    }
    int passed = 0, failures = 0;
    for (int a = 1; a < argc; a++) {
        json_error_t error;
        json_t *doc = json_load_file(argv[a], JSON_ALLOW_NUL, &error);
        const json_t *vectors = json_object_get(doc, "vectors");
        if (!json_is_array(vectors)) {
            printf("FAIL %s: (file): step 0: %s\n", argv[a],
                   doc != NULL ? "no \"vectors\" array" : error.text);
            failures++;
        }
        for (size_t i = 0; i < json_array_size(vectors); i++) {
            verdict v = run_vector(argv[a], json_array_get(vectors, i));
            passed += v == PASSED;
            failures += v == FAILED;
        }
        json_decref(doc);
    }
    printf("conformance: %d passed, %d failed\n", passed, failures);
    return failures == 0 && passed > 0 ? 0 : 1;
}
