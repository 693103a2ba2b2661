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
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>

#include "check.h"
#include "json.h"

/* One vector's state: its directory, its current config, its cache. */
typedef struct {
    char *dir;
    const json *config;
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

static tierstack_result open_cache(run *r, const json *config) {
    tierstack_cache_free(r->cache);
    r->cache = NULL;
    char *text = config_json(config, r->dir);
    tierstack_result result = tierstack_cache_open(text, &r->cache);
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

    /* Every other op names one key. */
    if (!field(r, step, "key", &key, &key_len)) {
        return TIERSTACK_RESULT_INTERNAL;
    }
    if (strcmp(op, "set") == 0) {
        if (!field(r, step, "value", &data, &data_len)) {
            return TIERSTACK_RESULT_INTERNAL;
        }
        return tierstack_cache_set(r->cache, key, key_len, (const uint8_t *)data, data_len,
                                   ttl);
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
    if (strcmp(op, "lookup") == 0) {
        res = tierstack_cache_lookup(r->cache, key, key_len, &value);
        if (res == TIERSTACK_RESULT_OK && value == NULL) {
            *actual = json_new(JSON_NULL);
        } else if (res == TIERSTACK_RESULT_OK) {
            const char *tier = tierstack_value_tier(value);
            *actual = json_new(JSON_OBJECT);
            json_set(*actual, "tier", 4, json_new_string(tier, strlen(tier)));
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
    run r = {.dir = tmp_dir_new(), .config = json_get(vector, "config")};
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
