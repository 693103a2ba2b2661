/*
 * The C conformance runner: runs the shared operation vectors
 * (tests/conformance/README.md) through the C API.
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

#include "check.h"
#include "json.h"

/* A vector's scripted loader (tests/conformance/README.md, "Loading"):
 * the answers, used in order, one per loader call, from whichever thread
 * tierstack calls it on; and, for a "writable" vector, the source's
 * writes ("Writes: strategies, the outbox, tags"). */
typedef struct {
    const json *script;        /* the vector's "script" array, or NULL */
    atomic_size_t calls;       /* loader calls so far in the vector */
    atomic_int running;        /* loader, store and remove calls not yet returned */
    pthread_mutex_t lock;      /* guards loader_keys and writes */
    json *loader_keys;         /* the sorted keys of the last batch call, or NULL */
    json *writes;              /* the source's writes: [[key, value or null], ...] */
    atomic_size_t store_fail;  /* store / remove calls still to refuse */
} script;

/* One vector's state: its directory, its current config, its cache. */
typedef struct {
    char *dir;
    const json *config;
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

/* Writes a comma unless this is the first member of an object. */
static void separator(json_buf *out, bool *first) {
    json_buf_append(out, ",", !*first);
    *first = false;
}

static void write_member(json_buf *out, bool *first, const char *key, size_t key_len,
                         const json *value) {
    separator(out, first);
    json_write_string(out, key, key_len);
    json_buf_append(out, ":", 1);
    json_write(out, value);
}

/* The `sqlite` object of a config (or NULL), with `path` added unless it is
 * set or sqlite is disabled. */
static void write_sqlite(json_buf *out, const json *sqlite, const char *path) {
    const json *enabled = json_get(sqlite, "enabled");
    bool off = enabled != NULL && enabled->type == JSON_BOOL && !enabled->boolean;
    bool first = true;
    json_buf_append(out, "{", 1);
    for (size_t i = 0; sqlite != NULL && i < sqlite->n; i++) {
        const json_member *m = &sqlite->members[i];
        write_member(out, &first, m->key, m->key_len, m->value);
    }
    if (!off && json_get(sqlite, "path") == NULL) {
        separator(out, &first);
        json_buf_append(out, "\"path\":", 7);
        json_write_string(out, path, strlen(path));
    }
    json_buf_append(out, "}", 1);
}

/* The vector's config as JSON, with sqlite.path = <dir>/cache.db unless
 * the config sets it or disables sqlite. */
static char *config_json(const json *config, const char *dir) {
    json_buf out = {0};
    char *path = path_join(dir, "cache.db");
    bool first = true, sqlite_seen = false;
    json_buf_append(&out, "{", 1);
    for (size_t i = 0; config != NULL && config->type == JSON_OBJECT && i < config->n; i++) {
        const json_member *m = &config->members[i];
        if (strcmp(m->key, "sqlite") == 0 && m->value->type == JSON_OBJECT) {
            separator(&out, &first);
            json_buf_append(&out, "\"sqlite\":", 9);
            write_sqlite(&out, m->value, path);
            sqlite_seen = true;
        } else {
            write_member(&out, &first, m->key, m->key_len, m->value);
        }
    }
    if (!sqlite_seen) {
        separator(&out, &first);
        json_buf_append(&out, "\"sqlite\":", 9);
        write_sqlite(&out, NULL, path);
    }
    json_buf_append(&out, "}", 1);
    free(path);
    return out.data;
}

/* ---- the scripted loader ---- */

/* The answer of loader call number `calls` (counted), or NULL past the
 * end of the script ("script exhausted"). Waits out the answer's "delay". */
static const json *next_answer(script *s) {
    size_t i = atomic_fetch_add(&s->calls, 1);
    const json *answer = s->script != NULL && i < s->script->n ? s->script->items[i] : NULL;
    const json *delay = json_get(answer, "delay");
    if (delay != NULL && delay->type == JSON_NUMBER) {
        sleep_seconds(delay->number);
    }
    return answer;
}

static double answer_ttl(const json *answer) {
    const json *ttl = json_get(answer, "ttl");
    return ttl != NULL && ttl->type == JSON_NUMBER ? ttl->number : 0;
}

static tierstack_result script_loader(void *user_data, const char *key, size_t key_len,
                                      tierstack_load *load) {
    (void)key, (void)key_len;
    script *s = user_data;
    atomic_fetch_add(&s->running, 1);
    const json *answer = next_answer(s);
    const json *value = json_get(answer, "value");
    tierstack_result res = TIERSTACK_RESULT_SOURCE; /* an error, or the script is exhausted */
    if (value != NULL && value->type == JSON_STRING) {
        res = tierstack_load_value(load, (const uint8_t *)value->text, value->len,
                                   answer_ttl(answer));
    } else if (json_get(answer, "not_found") != NULL) {
        res = tierstack_load_not_found(load);
    }
    atomic_fetch_sub(&s->running, 1);
    return res;
}

static int compare_strings(const void *a, const void *b) {
    const json *x = *(json *const *)a, *y = *(json *const *)b;
    size_t n = x->len < y->len ? x->len : y->len;
    int c = memcmp(x->text, y->text, n);
    return c != 0 ? c : (x->len > y->len) - (x->len < y->len);
}

static tierstack_result script_batch_loader(void *user_data, const char *const *keys,
                                            const size_t *key_lens, size_t n,
                                            tierstack_load_batch *batch) {
    script *s = user_data;
    atomic_fetch_add(&s->running, 1);
    json *asked = json_new(JSON_ARRAY);
    for (size_t i = 0; i < n; i++) {
        json_push(asked, json_new_string(keys[i], key_lens[i]));
    }
    qsort(asked->items, asked->n, sizeof *asked->items, compare_strings);
    pthread_mutex_lock(&s->lock);
    json_free(s->loader_keys);
    s->loader_keys = asked;
    pthread_mutex_unlock(&s->lock);

    const json *answer = next_answer(s);
    const json *values = json_get(answer, "values");
    tierstack_result res = TIERSTACK_RESULT_SOURCE;
    if (values != NULL && values->type == JSON_OBJECT) {
        res = TIERSTACK_RESULT_OK;
        for (size_t i = 0; res == TIERSTACK_RESULT_OK && i < values->n; i++) {
            const json_member *m = &values->members[i];
            res = tierstack_load_batch_value(batch, m->key, m->key_len,
                                             (const uint8_t *)m->value->text, m->value->len,
                                             answer_ttl(answer));
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
    json *entry = json_new(JSON_ARRAY);
    json_push(entry, json_new_string(key, key_len));
    json_push(entry, remove ? json_new(JSON_NULL) : json_new_string((const char *)data, len));
    pthread_mutex_lock(&s->lock);
    json_push(s->writes, entry);
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

static tierstack_result open_cache(run *r, const json *config) {
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
static bool field(run *r, const json *step, const char *name, const char **bytes, size_t *len) {
    const json *v = json_get(step, name);
    if (v == NULL || v->type != JSON_STRING) {
        return failed(r, "the step has no string \"%s\"", name);
    }
    *bytes = v->text;
    *len = v->len;
    return true;
}

/* The step's "ttl" in seconds: 0 when absent, a JSON number, or one of the
 * strings "NaN", "inf", "-inf" for the values JSON cannot hold. */
static bool ttl_of(run *r, const json *step, double *ttl) {
    const json *v = json_get(step, "ttl");
    *ttl = 0;
    if (v == NULL) {
        return true;
    }
    if (v->type == JSON_NUMBER) {
        *ttl = v->number;
    } else if (v->type == JSON_STRING && strcmp(v->text, "NaN") == 0) {
        *ttl = NAN;
    } else if (v->type == JSON_STRING && strcmp(v->text, "inf") == 0) {
        *ttl = INFINITY;
    } else if (v->type == JSON_STRING && strcmp(v->text, "-inf") == 0) {
        *ttl = -INFINITY;
    } else {
        return failed(r, "\"ttl\" is neither a number nor \"NaN\", \"inf\" or \"-inf\"");
    }
    return true;
}

/* A value read by the API as a JSON string (its bytes), or null; frees it. */
static json *string_or_null(tierstack_value *value) {
    if (value == NULL) {
        return json_new(JSON_NULL);
    }
    json *s = json_new_string((const char *)tierstack_value_data(value), tierstack_value_len(value));
    tierstack_value_free(value);
    return s;
}

static bool step_passes(run *r, const json *step);

/* `breaker` and `outbox`: the fields of a report (a JSON object from
 * `report`) that `expect` names (the others are not compared), as an
 * object. A report that is JSON null (the outbox of a strategy without
 * one) gives null for every field. */
static tierstack_result report_fields(run *r, const json *step, json **actual, const char *what,
                                      tierstack_result (*report)(const tierstack_cache *,
                                                                 char **)) {
    char *text = NULL;
    tierstack_result res = report(r->cache, &text);
    if (res != TIERSTACK_RESULT_OK) {
        return res;
    }
    char err[128];
    json *status = json_parse(text, strlen(text), err, sizeof err);
    tierstack_string_free(text);
    const json *expect = json_get(step, "expect");
    if (status == NULL || (status->type != JSON_OBJECT && status->type != JSON_NULL)) {
        failed(r, "the %s is not a JSON object or null: %s", what, status ? "" : err);
        json_free(status);
        return TIERSTACK_RESULT_INTERNAL;
    }
    json_buf out = {0};
    bool first = true;
    json_buf_append(&out, "{", 1);
    for (size_t i = 0; expect != NULL && expect->type == JSON_OBJECT && i < expect->n; i++) {
        const json_member *m = &expect->members[i];
        const json *got = json_get(status, m->key);
        if (status->type == JSON_NULL) {
            separator(&out, &first);
            json_write_string(&out, m->key, m->key_len);
            json_buf_append(&out, ":null", 5);
        } else if (got != NULL) {
            write_member(&out, &first, m->key, m->key_len, got);
        }
    }
    json_buf_append(&out, "}", 1);
    *actual = json_parse(out.data, out.len, err, sizeof err);
    json_buf_free(&out);
    json_free(status);
    return res;
}

/* `dead_letters`: [{"key", "op", "attempts"}, ...], oldest first (the
 * other fields of the C list are not compared). */
static tierstack_result dead_letters(run *r, json **actual) {
    char *text = NULL;
    tierstack_result res = tierstack_cache_dead_letters_json(r->cache, &text);
    if (res != TIERSTACK_RESULT_OK) {
        return res;
    }
    char err[128];
    json *list = json_parse(text, strlen(text), err, sizeof err);
    tierstack_string_free(text);
    if (list == NULL || list->type != JSON_ARRAY) {
        failed(r, "the dead letters are not a JSON array: %s", list ? "" : err);
        json_free(list);
        return TIERSTACK_RESULT_INTERNAL;
    }
    *actual = json_new(JSON_ARRAY);
    for (size_t i = 0; i < list->n; i++) {
        json *letter = json_new(JSON_OBJECT);
        static const char *const fields[] = {"key", "op", "attempts"};
        for (size_t f = 0; f < sizeof fields / sizeof *fields; f++) {
            const json *v = json_get(list->items[i], fields[f]);
            if (v == NULL) {
                failed(r, "a dead letter has no \"%s\"", fields[f]);
            } else if (v->type == JSON_NUMBER) {
                json_set(letter, fields[f], strlen(fields[f]), json_new_number(v->number));
            } else {
                json_set(letter, fields[f], strlen(fields[f]), json_new_string(v->text, v->len));
            }
        }
        json_push(*actual, letter);
    }
    json_free(list);
    return res;
}

/* `get_or_load_many`: the found keys with their values; with
 * "loader_keys", also checks the keys the batch loader was handed. */
static tierstack_result get_or_load_many(run *r, const json *step, double ttl, json **actual) {
    const json *list = json_get(step, "keys");
    if (list == NULL || list->type != JSON_ARRAY) {
        failed(r, "the step has no \"keys\"");
        return TIERSTACK_RESULT_INTERNAL;
    }
    size_t n = list->n;
    const char **keys = calloc(n + 1, sizeof *keys);
    size_t *key_lens = calloc(n + 1, sizeof *key_lens);
    tierstack_value **values = calloc(n + 1, sizeof *values);
    for (size_t i = 0; i < n; i++) {
        keys[i] = list->items[i]->text;
        key_lens[i] = list->items[i]->len;
    }
    pthread_mutex_lock(&r->loader->lock);
    json_free(r->loader->loader_keys);
    r->loader->loader_keys = NULL;
    pthread_mutex_unlock(&r->loader->lock);
    tierstack_result res = tierstack_cache_get_or_load_many(
        r->cache, keys, key_lens, n, script_batch_loader, r->loader, ttl, values);
    if (res == TIERSTACK_RESULT_OK) {
        *actual = json_new(JSON_OBJECT);
        for (size_t i = 0; i < n; i++) {
            if (values[i] != NULL) {
                json_set(*actual, keys[i], key_lens[i], string_or_null(values[i]));
            }
        }
        const json *want = json_get(step, "loader_keys");
        pthread_mutex_lock(&r->loader->lock);
        const json *got = r->loader->loader_keys;
        if (want != NULL && want->type == JSON_NULL ? got != NULL
                                                    : want != NULL && !json_equal(got, want)) {
            json_buf g = {0}, w = {0};
            if (got != NULL) {
                json_write(&g, got);
            }
            json_write(&w, want);
            failed(r, "the batch loader was handed %s, expected %s",
                   got != NULL ? g.data : "nothing (not called)", w.data);
            json_buf_free(&g), json_buf_free(&w);
        }
        pthread_mutex_unlock(&r->loader->lock);
    }
    free(keys), free(key_lens), free(values);
    return res;
}

typedef struct {
    run r;             /* a copy of the vector's run: its own `what` */
    const json *step;
    bool ok;
} concurrent_call;

static void *concurrent_thread(void *arg) {
    concurrent_call *c = arg;
    c->ok = step_passes(&c->r, c->step);
    return NULL;
}

/* `concurrent`: `times` threads run `step` at once; each result must match
 * the inner step's expect/error. */
static tierstack_result concurrent(run *r, const json *step) {
    const json *times = json_get(step, "times");
    const json *inner = json_get(step, "step");
    if (times == NULL || times->type != JSON_NUMBER || inner == NULL) {
        failed(r, "the step has no \"times\" or \"step\"");
        return TIERSTACK_RESULT_INTERNAL;
    }
    size_t n = (size_t)times->number;
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

/* Runs one step's call: the result code, and in *actual what it returned. */
static tierstack_result call(run *r, const json *step, const char *op, json **actual) {
    const char *key = NULL, *data = NULL;
    size_t key_len = 0, data_len = 0;
    tierstack_value *value = NULL;
    tierstack_result res;
    bool flag = false;
    double ttl = 0;

    if (!ttl_of(r, step, &ttl)) {
        return TIERSTACK_RESULT_INTERNAL;
    }

    if (strcmp(op, "open") == 0) {
        const json *config = json_get(step, "config");
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
        const json *s = json_get(step, "seconds");
        sleep_seconds(s != NULL && s->type == JSON_NUMBER ? s->number : 0);
        return TIERSTACK_RESULT_OK;
    }
    if (strcmp(op, "len") == 0) {
        uint64_t n = 0;
        res = tierstack_cache_len(r->cache, &n);
        *actual = json_new_number((double)n);
        return res;
    }
    if (strcmp(op, "clear") == 0) {
        return tierstack_cache_clear(r->cache);
    }
    if (strcmp(op, "keys") == 0) {
        const json *pattern = json_get(step, "pattern");
        char *text = NULL;
        res = pattern != NULL && pattern->type == JSON_STRING
                  ? tierstack_cache_keys_json(r->cache, pattern->text, pattern->len, &text)
                  : tierstack_cache_keys_json(r->cache, NULL, 0, &text);
        if (res == TIERSTACK_RESULT_OK) {
            char err[128];
            *actual = json_parse(text, strlen(text), err, sizeof err);
            tierstack_string_free(text);
        }
        return res;
    }
    if (strcmp(op, "mget") == 0 || strcmp(op, "mset") == 0) {
        bool get = op[1] == 'g';
        const json *list = json_get(step, get ? "keys" : "entries");
        if (list == NULL || list->type != (get ? JSON_ARRAY : JSON_OBJECT)) {
            failed(r, "the step has no \"%s\"", get ? "keys" : "entries");
            return TIERSTACK_RESULT_INTERNAL;
        }
        size_t n = list->n;
        const char **keys = calloc(n + 1, sizeof *keys);
        size_t *key_lens = calloc(n + 1, sizeof *key_lens);
        const uint8_t **datas = calloc(n + 1, sizeof *datas);
        size_t *data_lens = calloc(n + 1, sizeof *data_lens);
        tierstack_value **values = calloc(n + 1, sizeof *values);
        for (size_t i = 0; i < n; i++) {
            const json *k = get ? list->items[i] : NULL;
            keys[i] = get ? k->text : list->members[i].key;
            key_lens[i] = get ? k->len : list->members[i].key_len;
            if (!get) {
                datas[i] = (const uint8_t *)list->members[i].value->text;
                data_lens[i] = list->members[i].value->len;
            }
        }
        if (get) {
            res = tierstack_cache_mget(r->cache, keys, key_lens, n, values);
            if (res == TIERSTACK_RESULT_OK) {
                *actual = json_new(JSON_OBJECT);
                for (size_t i = 0; i < n; i++) {
                    if (values[i] != NULL) {
                        json_set(*actual, keys[i], key_lens[i], string_or_null(values[i]));
                    }
                }
            }
        } else {
            res = tierstack_cache_mset(r->cache, keys, key_lens, datas, data_lens, n,
                                       ttl);
        }
        free(keys), free(key_lens), free(datas), free(data_lens), free(values);
        return res;
    }

    if (strcmp(op, "loader_calls") == 0) {
        *actual = json_new_number((double)atomic_load(&r->loader->calls));
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
        *actual = json_new_number((double)n);
        return res;
    }
    if (strcmp(op, "flush") == 0) {
        return tierstack_cache_flush(r->cache);
    }
    if (strcmp(op, "source_writes") == 0) {
        char err[128];
        json_buf text = {0};
        pthread_mutex_lock(&r->loader->lock);
        json_write(&text, r->loader->writes);
        pthread_mutex_unlock(&r->loader->lock);
        *actual = json_parse(text.data, text.len, err, sizeof err);
        json_buf_free(&text);
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
        *actual = json_new_number((double)n);
        return res;
    }
    if (strcmp(op, "concurrent") == 0) {
        return concurrent(r, step);
    }
    if (strcmp(op, "get_or_load_many") == 0) {
        return get_or_load_many(r, step, ttl, actual);
    }

    /* Every other op names one key. */
    if (!field(r, step, "key", &key, &key_len)) {
        return TIERSTACK_RESULT_INTERNAL;
    }
    if (strcmp(op, "set") == 0) {
        if (!field(r, step, "value", &data, &data_len)) {
            return TIERSTACK_RESULT_INTERNAL;
        }
        const json *tags = json_get(step, "tags");
        if (tags == NULL) {
            return tierstack_cache_set(r->cache, key, key_len, (const uint8_t *)data, data_len,
                                       ttl);
        }
        if (tags->type != JSON_ARRAY) {
            failed(r, "\"tags\" is not an array");
            return TIERSTACK_RESULT_INTERNAL;
        }
        const char **tag_ptrs = calloc(tags->n + 1, sizeof *tag_ptrs);
        size_t *tag_lens = calloc(tags->n + 1, sizeof *tag_lens);
        for (size_t i = 0; i < tags->n; i++) {
            tag_ptrs[i] = tags->items[i]->text;
            tag_lens[i] = tags->items[i]->len;
        }
        res = tierstack_cache_set_with_tags(r->cache, key, key_len, (const uint8_t *)data,
                                            data_len, ttl, tag_ptrs, tag_lens, tags->n);
        free(tag_ptrs), free(tag_lens);
        return res;
    }
    if (strcmp(op, "set_json") == 0) {
        const json *doc = json_get(step, "json");
        if (doc == NULL) {
            failed(r, "the step has no \"json\"");
            return TIERSTACK_RESULT_INTERNAL;
        }
        json_buf text = {0};
        json_write(&text, doc);
        res = tierstack_cache_set(r->cache, key, key_len, (const uint8_t *)text.data, text.len,
                                  ttl);
        json_buf_free(&text);
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
        char err[128];
        *actual = json_parse((const char *)tierstack_value_data(value), tierstack_value_len(value),
                             err, sizeof err);
        tierstack_value_free(value);
        if (*actual == NULL) {
            failed(r, "the stored value is not JSON: %s", err);
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
            *actual = json_new(JSON_NULL);
        } else if (res == TIERSTACK_RESULT_OK) {
            const char *tier = tierstack_value_tier(value);
            *actual = json_new(JSON_OBJECT);
            json_set(*actual, "tier", 4, json_new_string(tier, strlen(tier)));
            if (tierstack_value_is_stale(value)) {
                json_set(*actual, "stale", 5, json_new_bool(true));
            }
            json_set(*actual, "value", 5, string_or_null(value));
        }
        return res;
    }
    if (strcmp(op, "has") == 0 || strcmp(op, "delete") == 0) {
        res = op[0] == 'h' ? tierstack_cache_has(r->cache, key, key_len, &flag)
                           : tierstack_cache_delete(r->cache, key, key_len, &flag);
        *actual = json_new_bool(flag);
        return res;
    }
    failed(r, "unknown op \"%s\"", op);
    return TIERSTACK_RESULT_INTERNAL;
}

static bool step_passes(run *r, const json *step) {
    const json *op = json_get(step, "op");
    if (op == NULL || op->type != JSON_STRING) {
        return failed(r, "the step has no \"op\"");
    }
    r->what[0] = '\0';
    json *actual = NULL;
    tierstack_result res = call(r, step, op->text, &actual);
    const json *error = json_get(step, "error");
    const json *expect = json_get(step, "expect");
    bool ok;
    if (r->skipped) {
        ok = false;
    } else if (r->what[0] != '\0') {
        ok = false;
    } else if (error != NULL) {
        ok = strcmp(tierstack_result_name(res), error->text) == 0 ||
             failed(r, "%s returned %s, expected error %s (%s)", op->text,
                    tierstack_result_name(res), error->text,
                    res == TIERSTACK_RESULT_OK ? "no error" : last_error());
    } else if (res != TIERSTACK_RESULT_OK) {
        ok = failed(r, "%s failed: %s", op->text, last_error());
    } else if (expect != NULL && !json_equal(actual, expect)) {
        json_buf got = {0}, want = {0};
        if (actual != NULL) {
            json_write(&got, actual);
        }
        json_write(&want, expect);
        ok = failed(r, "%s gave %s, expected %s", op->text, got.data ? got.data : "nothing",
                    want.data);
        json_buf_free(&got);
        json_buf_free(&want);
    } else {
        ok = true;
    }
    json_free(actual);
    return ok;
}

typedef enum { PASSED, FAILED, SKIPPED } verdict;

/* Runs one vector; prints its line. */
static verdict run_vector(const char *file, const json *vector) {
    const json *name = json_get(vector, "name");
    const json *steps = json_get(vector, "steps");
    const char *title = name != NULL && name->type == JSON_STRING ? name->text : "(unnamed)";
    const json *read_through = json_get(vector, "read_through");
    const json *writable = json_get(vector, "writable");
    const json *store_fail = json_get(vector, "store_fail");
    script loader = {.script = json_get(vector, "script"), .writes = json_new(JSON_ARRAY)};
    atomic_init(&loader.store_fail, store_fail != NULL && store_fail->type == JSON_NUMBER
                                        ? (size_t)store_fail->number
                                        : 0);
    pthread_mutex_init(&loader.lock, NULL);
    run r = {.dir = tmp_dir_new(),
             .config = json_get(vector, "config"),
             .loader = &loader,
             .read_through = read_through != NULL && read_through->type == JSON_BOOL &&
                             read_through->boolean,
             .writable = writable != NULL && writable->type == JSON_BOOL && writable->boolean};
    bool ok = true;
    size_t i = 0;
    if (steps == NULL || steps->type != JSON_ARRAY) {
        ok = failed(&r, "no steps");
    } else if (open_cache(&r, r.config) != TIERSTACK_RESULT_OK) {
        ok = failed(&r, "open failed: %s", last_error());
    }
    for (; ok && i < steps->n; i++) {
        ok = step_passes(&r, steps->items[i]);
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
    json_free(loader.loader_keys);
    json_free(loader.writes);
    pthread_mutex_destroy(&loader.lock);
    if (r.mounted) {
        umount2(r.dir, MNT_DETACH);
    }
    tmp_dir_remove(r.dir);
    return ok ? PASSED : r.skipped ? SKIPPED : FAILED;
}

static char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        return NULL;
    }
    json_buf buf = {0};
    char chunk[8192];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) {
        json_buf_append(&buf, chunk, n);
    }
    fclose(f);
    *len = buf.len;
    return buf.data != NULL ? buf.data : calloc(1, 1);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s VECTOR_FILE...\n", argv[0]);
        return 2;
    }
    int passed = 0, failures = 0;
    for (int a = 1; a < argc; a++) {
        size_t len = 0;
        char *text = read_file(argv[a], &len);
        char err[256] = "cannot read the file";
        json *doc = text != NULL ? json_parse(text, len, err, sizeof err) : NULL;
        const json *vectors = json_get(doc, "vectors");
        if (vectors == NULL || vectors->type != JSON_ARRAY) {
            printf("FAIL %s: (file): step 0: %s\n", argv[a], doc ? "no \"vectors\" array" : err);
            failures++;
        }
        for (size_t i = 0; vectors != NULL && vectors->type == JSON_ARRAY && i < vectors->n; i++) {
            verdict v = run_vector(argv[a], vectors->items[i]);
            passed += v == PASSED;
            failures += v == FAILED;
        }
        json_free(doc);
        free(text);
    }
    printf("conformance: %d passed, %d failed\n", passed, failures);
    return failures == 0 && passed > 0 ? 0 : 1;
}
