/*
 * GitHub as the source of truth, through the C API's JSON config, against
 * the loopback origin (`tierstack-origin`, whose path is in
 * $TIERSTACK_ORIGIN_BIN): a real HTTP server that counts its requests and
 * injects faults. The test talks to its control API (under /_origin/ on the
 * api URL) with the small HTTP/1.1 client of origin.c. Every case asserts the
 * origin's request count exactly.
 *
 * The second-process case runs this binary again (`--second-process
 * <config>`): it opens its own cache on the same file, reads one key and
 * prints the result's name and the breaker status.
 */
#define _POSIX_C_SOURCE 200809L

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "check.h"
#include "origin.h"

#define K(s) (s), (sizeof(s) - 1)

#define BASE "apps/v4/registry/new-york-v4"
#define BUTTON "component:react:button"

/* ---- the origin's control API (the process: origin.c) ---- */

static const char *self_path; /* argv[0], for the second process */

/* One JSON exchange with the api listener; see origin_http. */
static int http(const char *method, const char *path, const char *payload, char **body) {
    return origin_http(method, path, "Content-Type: application/json\r\n", payload,
                       payload != NULL ? strlen(payload) : 0, body);
}

/* POSTs a control action; checks that the origin answered 200. */
#define ORIGIN_POST(action, payload) \
    CHECK(http("POST", "/_origin/" action, (payload), NULL) == 200)

/* The origin's request log, parsed (free with json_decref); NULL on a
 * failed check. */
static json_t *origin_log(void) {
    char *body = NULL;
    int status = http("GET", "/_origin/requests", NULL, &body);
    json_t *doc = NULL;
    if (CHECK(status == 200 && body != NULL)) {
        doc = json_loads(body, JSON_DECODE_ANY, NULL);
        CHECK(doc != NULL && json_object_get(doc, "requests") != NULL);
    }
    free(body);
    return doc;
}

/* How many requests the origin has logged; -1 on a failed check. */
static int origin_count(void) {
    json_t *doc = origin_log();
    const json_t *count = doc != NULL ? json_object_get(doc, "count") : NULL;
    int n = json_is_number(count) ? (int)json_number_value(count) : -1;
    CHECK(n >= 0);
    json_decref(doc);
    return n;
}

/* The member `key` of the i-th logged request. */
static const json_t *request_field(const json_t *log, size_t i, const char *key) {
    return json_object_get(json_array_get(json_object_get(log, "requests"), i), key);
}

static bool string_is(const json_t *v, const char *want) {
    return json_is_string(v) && strcmp(json_string_value(v), want) == 0;
}

static bool number_is(const json_t *v, double want) {
    return json_is_number(v) && json_number_value(v) == want;
}

/* ---- helpers ---- */

static char *dir;
static tierstack_cache *cache;

/* What a case adds to the config: members of the `sqlite` and `github`
 * objects and of the top level (each NULL or ""), and a raw URL other than
 * the origin's. */
typedef struct {
    const char *sqlite;
    const char *github;
    const char *more;
    const char *raw_url;
} options;

static const char *or_empty(const char *s) { return s != NULL ? s : ""; }

/* The whole config JSON: the cache file in `dir`, GitHub pointed at the
 * origin (timeout 5 s), no TTL jitter, and `o`. malloc'd. */
static char *github_config(options o) {
    /* mkdtemp names need no JSON escaping; $TMPDIR is checked here. */
    if (strpbrk(dir, "\"\\") != NULL) {
        fprintf(stderr, "TMPDIR %s needs JSON escaping, which these tests do not do\n", dir);
        abort();
    }
    const char *sqlite = or_empty(o.sqlite), *github = or_empty(o.github), *more = or_empty(o.more);
    const char *raw = o.raw_url != NULL ? o.raw_url : origin_raw;
    char *config = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&config, &len);
    const char *parts[] = {"{\"sqlite\": {\"path\": \"", dir, "/cache.db\"", *sqlite ? ", " : "",
                           sqlite, "}, \"ttl_jitter\": 0.0, \"github\": {\"api_url\": \"",
                           origin_api, "\", \"raw_url\": \"", raw, "\", \"timeout\": 5",
                           *github ? ", " : "", github, "}", *more ? ", " : "", more, "}"};
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) {
        fputs(parts[i], out);
    }
    fclose(out);
    return config;
}

static tierstack_cache *open_github(options o) {
    char *config = github_config(o);
    tierstack_cache *c = NULL;
    tierstack_result r = tierstack_cache_open(config, &c);
    if (!CHECK_OK(r)) {
        fprintf(stderr, "  config: %s\n", config);
    }
    free(config);
    return r == TIERSTACK_RESULT_OK ? c : NULL;
}

/* A fresh origin (seed content, no faults, empty log) and a cache in a new
 * directory; false (a failed check) if either is not there. */
static bool fresh(options o) {
    bool reset = ORIGIN_POST("reset", NULL);
    dir = tmp_dir_new();
    cache = open_github(o);
    return reset && cache != NULL;
}

static void done(void) {
    tierstack_cache_free(cache);
    cache = NULL;
    tmp_dir_remove(dir);
    dir = NULL;
}

static double now_monotonic(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static int64_t now_epoch_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* Under ASan and valgrind every call is slow: wall-clock bounds are not
 * checked there (the outcomes are). */
static bool slow(void) {
    const char *v = getenv("TIERSTACK_TEST_SLOW");
    return v != NULL && *v != '\0';
}

/* Whether a value, a file stored as a JSON string of its text, begins
 * with the line `// <path>`: `"// <path>\n` in JSON. */
static bool first_line_is(const tierstack_value *value, const char *path) {
    if (value == NULL) {
        return false;
    }
    const char *data = (const char *)tierstack_value_data(value);
    size_t len = tierstack_value_len(value);
    size_t plen = strlen(path);
    return len >= plen + 6 && memcmp(data, "\"// ", 4) == 0 &&
           memcmp(data + 4, path, plen) == 0 && memcmp(data + 4 + plen, "\\n", 2) == 0;
}

static bool same_bytes(const tierstack_value *a, const tierstack_value *b) {
    return a != NULL && b != NULL && tierstack_value_len(a) == tierstack_value_len(b) &&
           memcmp(tierstack_value_data(a), tierstack_value_data(b), tierstack_value_len(a)) == 0;
}

static bool served_by(const tierstack_value *value, const char *tier) {
    const char *t = tierstack_value_tier(value);
    return t != NULL && strcmp(t, tier) == 0;
}

/* Whether the calling thread's last error message contains `needle`. */
static bool error_mentions(const char *needle) {
    return strstr(last_error(), needle) != NULL;
}

/* A JSON document returned by the cache, parsed (free with json_decref). */
static json_t *parse_owned(char *text) {
    json_t *doc = NULL;
    if (CHECK(text != NULL)) {
        doc = json_loads(text, JSON_DECODE_ANY, NULL);
        CHECK(doc != NULL);
    }
    tierstack_string_free(text);
    return doc;
}

static json_t *stats(void) {
    char *text = NULL;
    CHECK_OK(tierstack_cache_stats_json(cache, &text));
    return parse_owned(text);
}

static json_t *breaker_status(tierstack_cache *c) {
    char *text = NULL;
    CHECK_OK(tierstack_cache_breaker_status_json(c, &text));
    return parse_owned(text);
}

/* stats.source.<key> as a number; -1 when missing. */
static double source_stat(const char *key) {
    json_t *s = stats();
    const json_t *source = s != NULL ? json_object_get(s, "source") : NULL;
    const json_t *v = source != NULL ? json_object_get(source, key) : NULL;
    double n = json_is_number(v) ? json_number_value(v) : -1;
    json_decref(s);
    return n;
}

static bool breaker_state_is(const char *state) {
    json_t *status = breaker_status(cache);
    bool ok = status != NULL && string_is(json_object_get(status, "state"), state);
    json_decref(status);
    return ok;
}

/* A port nothing listens on: bound, noted, closed. */
static int refused_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in addr = {0};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    int port = -1;
    if (fd >= 0 && bind(fd, (struct sockaddr *)&addr, sizeof addr) == 0 &&
        getsockname(fd, (struct sockaddr *)&addr, &len) == 0) {
        port = ntohs(addr.sin_port);
    }
    if (fd >= 0) {
        close(fd);
    }
    return port;
}

/* A 403 rate limit answer for the next request, its window ending at
 * `reset` (epoch seconds). */
static void fault_rate_limited(long long reset) {
    char fault[512];
    snprintf(fault, sizeof fault,
             "{\"status\": 403, \"times\": 1, \"headers\": [[\"X-RateLimit-Remaining\", \"0\"], "
             "[\"X-RateLimit-Reset\", \"%lld\"]], "
             "\"body\": \"{\\\"message\\\":\\\"API rate limit exceeded\\\"}\"}",
             reset);
    ORIGIN_POST("fault", fault);
}

/* ---- a component: once from the origin, then memory, then the file ---- */

static void test_component_fetched_once(void) {
    if (!fresh((options){0})) {
        done();
        return;
    }
    tierstack_value *first = NULL;
    CHECK_OK(tierstack_cache_lookup(cache, K(BUTTON), &first));
    CHECK(served_by(first, "source"));
    CHECK(!tierstack_value_is_stale(first));
    CHECK(first_line_is(first, BASE "/ui/button.tsx"));
    json_t *log = origin_log();
    CHECK(number_is(json_object_get(log, "count"), 1));
    CHECK(string_is(request_field(log, 0, "host"), "raw"));
    CHECK(string_is(request_field(log, 0, "method"), "GET"));
    CHECK(string_is(request_field(log, 0, "path"),
                         "/shadcn-ui/ui/main/" BASE "/ui/button.tsx"));
    CHECK(number_is(request_field(log, 0, "status"), 200));
    json_decref(log);

    for (int i = 0; i < 3; i++) {
        tierstack_value *again = NULL;
        CHECK_OK(tierstack_cache_lookup(cache, K(BUTTON), &again));
        CHECK(served_by(again, "memory"));
        CHECK(same_bytes(again, first));
        tierstack_value_free(again);
    }
    CHECK(origin_count() == 1);

    /* A second cache on the same file reads it from the file. */
    tierstack_cache *second = open_github((options){0});
    tierstack_value *from_file = NULL;
    CHECK_OK(tierstack_cache_lookup(second, K(BUTTON), &from_file));
    CHECK(served_by(from_file, "sqlite"));
    CHECK(same_bytes(from_file, first));
    tierstack_value_free(from_file);
    tierstack_cache_free(second);
    CHECK(origin_count() == 1);

    /* So does a restart. */
    tierstack_cache_free(cache);
    cache = open_github((options){0});
    tierstack_value *restarted = NULL;
    CHECK_OK(tierstack_cache_lookup(cache, K(BUTTON), &restarted));
    CHECK(served_by(restarted, "sqlite"));
    CHECK(same_bytes(restarted, first));
    tierstack_value_free(restarted);
    tierstack_value_free(first);
    CHECK(origin_count() == 1);
    done();
}

/* ---- the preset's routes; unrouted keys ---- */

/* The origin's seeded components (the listing's names, once sorted). */
static const char *const seeded_components[] = {
    "accordion", "alert", "alert-dialog", "aspect-ratio", "avatar", "badge", "breadcrumb",
    "button", "calendar", "card", "carousel", "chart", "checkbox", "collapsible", "command",
    "context-menu", "dialog", "drawer", "dropdown-menu", "form", "hover-card", "input",
    "input-otp", "label", "menubar", "navigation-menu", "pagination", "popover", "progress",
    "radio-group", "resizable", "scroll-area", "select", "separator", "sheet", "sidebar",
    "skeleton", "slider", "sonner", "switch", "table", "tabs", "textarea", "toggle",
    "toggle-group", "tooltip",
};

static int compare_names(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static void test_listing_demos_blocks_and_unrouted_keys(void) {
    if (!fresh((options){0})) {
        done();
        return;
    }
    tierstack_value *value = NULL;
    CHECK_OK(tierstack_cache_get(cache, K("components:react"), &value));
    json_t *names = value != NULL ? json_loadb((const char *)tierstack_value_data(value),
                                               tierstack_value_len(value), JSON_DECODE_ANY, NULL)
                                  : NULL;
    enum { N = sizeof seeded_components / sizeof seeded_components[0] };
    const char *sorted[N];
    memcpy(sorted, seeded_components, sizeof sorted);
    qsort(sorted, N, sizeof sorted[0], compare_names);
    if (CHECK(json_is_array(names) && json_array_size(names) == N)) {
        bool has_button = false;
        for (size_t i = 0; i < N; i++) {
            CHECK(string_is(json_array_get(names, i), sorted[i]));
            has_button = has_button || string_is(json_array_get(names, i), "button");
        }
        CHECK(has_button);
    }
    json_decref(names);
    tierstack_value_free(value);

    CHECK_OK(tierstack_cache_get(cache, K("component-demo:react:dialog"), &value));
    CHECK(first_line_is(value, BASE "/examples/dialog-demo.tsx"));
    tierstack_value_free(value);
    CHECK_OK(tierstack_cache_get(cache, K("block:react:login-01"), &value));
    CHECK(first_line_is(value, BASE "/blocks/login-01.tsx"));
    tierstack_value_free(value);

    json_t *log = origin_log();
    CHECK(number_is(json_object_get(log, "count"), 3));
    CHECK(string_is(request_field(log, 0, "host"), "api"));
    CHECK(string_is(request_field(log, 0, "path"),
                         "/repos/shadcn-ui/ui/contents/" BASE "/ui"));
    CHECK(string_is(request_field(log, 0, "query"), "ref=main"));
    json_decref(log);

    /* Keys no route serves: a plain miss, no request, through get and mget. */
    const char *unrouted[] = {"session:1", "component:vue:button"};
    for (size_t i = 0; i < 2; i++) {
        value = (tierstack_value *)&value; /* must be overwritten with NULL */
        CHECK_OK(tierstack_cache_get(cache, unrouted[i], strlen(unrouted[i]), &value));
        CHECK(value == NULL);
    }
    size_t lens[2] = {strlen(unrouted[0]), strlen(unrouted[1])};
    tierstack_value *values[2] = {(tierstack_value *)&value, (tierstack_value *)&value};
    CHECK_OK(tierstack_cache_mget(cache, unrouted, lens, 2, values));
    CHECK(values[0] == NULL && values[1] == NULL);
    CHECK(origin_count() == 3);
    done();
}

/* ---- revalidation with If-None-Match ---- */

static void test_expired_copy_revalidated_with_304(void) {
    if (!fresh((options){.sqlite = "\"ttl\": 1",
                         .more = "\"memory\": {\"ttl\": 1}, \"test_clock\": true"})) {
        done();
        return;
    }
    tierstack_value *first = NULL;
    CHECK_OK(tierstack_cache_get(cache, K(BUTTON), &first));
    CHECK(first_line_is(first, BASE "/ui/button.tsx"));
    CHECK_OK(tierstack_advance_test_clock(1));

    tierstack_value *renewed = NULL;
    CHECK_OK(tierstack_cache_lookup(cache, K(BUTTON), &renewed));
    CHECK(same_bytes(renewed, first));
    CHECK(!tierstack_value_is_stale(renewed));
    tierstack_value_free(renewed);
    json_t *log = origin_log();
    CHECK(number_is(json_object_get(log, "count"), 2));
    CHECK(number_is(request_field(log, 0, "status"), 200));
    CHECK(number_is(request_field(log, 1, "status"), 304));
    const json_t *etag = request_field(log, 1, "if_none_match");
    CHECK(json_is_string(etag) && json_string_length(etag) > 0);
    json_decref(log);

    /* Renewed: fresh again, from memory, with no request. */
    CHECK_OK(tierstack_cache_lookup(cache, K(BUTTON), &renewed));
    CHECK(served_by(renewed, "memory"));
    CHECK(!tierstack_value_is_stale(renewed));
    tierstack_value_free(renewed);
    CHECK(origin_count() == 2);

    /* Changed content comes back whole. */
    ORIGIN_POST("file", "{\"owner\": \"shadcn-ui\", \"repo\": \"ui\", \"ref\": \"main\", "
                        "\"path\": \"" BASE "/ui/button.tsx\", \"content\": \"// changed\"}");
    CHECK_OK(tierstack_advance_test_clock(1));
    tierstack_value *changed = NULL;
    CHECK_OK(tierstack_cache_get(cache, K(BUTTON), &changed));
    CHECK_VALUE(changed, "\"// changed\"");
    log = origin_log();
    CHECK(number_is(json_object_get(log, "count"), 3));
    CHECK(number_is(request_field(log, 2, "status"), 200));
    json_decref(log);
    tierstack_value_free(first);
    done();
}

/* ---- not found ---- */

static void test_missing_component_remembered(void) {
    if (!fresh((options){0})) {
        done();
        return;
    }
    for (int i = 0; i < 2; i++) {
        tierstack_value *value = (tierstack_value *)&value;
        CHECK_OK(tierstack_cache_get(cache, K("component:react:no-such-thing"), &value));
        CHECK(value == NULL);
    }
    json_t *log = origin_log();
    CHECK(number_is(json_object_get(log, "count"), 1));
    CHECK(number_is(request_field(log, 0, "status"), 404));
    json_decref(log);
    CHECK(source_stat("not_found") == 1);
    CHECK(source_stat("negative_hits") == 1);
    done();
}

/* ---- 100 threads, one request ---- */

static pthread_barrier_t barrier;
static atomic_int card_ok;

static void *get_card(void *arg) {
    (void)arg;
    pthread_barrier_wait(&barrier);
    tierstack_value *value = NULL;
    if (CHECK_OK(tierstack_cache_get(cache, K("component:react:card"), &value)) &&
        CHECK(first_line_is(value, BASE "/ui/card.tsx"))) {
        atomic_fetch_add(&card_ok, 1);
    }
    tierstack_value_free(value);
    return NULL;
}

static void test_hundred_threads_one_request(void) {
    if (!fresh((options){0})) {
        done();
        return;
    }
    ORIGIN_POST("fault", "{\"delay_ms\": 200, \"times\": 1}");
    enum { THREADS = 100 };
    pthread_t threads[THREADS];
    atomic_store(&card_ok, 0);
    pthread_barrier_init(&barrier, NULL, THREADS);
    for (int i = 0; i < THREADS; i++) {
        CHECK(pthread_create(&threads[i], NULL, get_card, NULL) == 0);
    }
    for (int i = 0; i < THREADS; i++) {
        pthread_join(threads[i], NULL);
    }
    pthread_barrier_destroy(&barrier);
    CHECK(atomic_load(&card_ok) == THREADS);
    CHECK(origin_count() == 1);
    done();
}

/* ---- server errors: the stale copy, then the breaker ---- */

static void test_server_errors_serve_stale_then_open_breaker(void) {
    if (!fresh((options){.sqlite = "\"ttl\": 1",
                         .more = "\"memory\": {\"ttl\": 1}, \"test_clock\": true, "
                                 "\"circuit_breaker\": {\"threshold\": 3, \"timeout\": 60}"})) {
        done();
        return;
    }
    tierstack_value *original = NULL;
    CHECK_OK(tierstack_cache_get(cache, K(BUTTON), &original));
    CHECK(first_line_is(original, BASE "/ui/button.tsx"));
    CHECK_OK(tierstack_advance_test_clock(1));
    const int statuses[] = {500, 502, 503};
    for (int i = 0; i < 3; i++) {
        char fault[64];
        snprintf(fault, sizeof fault, "{\"status\": %d, \"times\": 1}", statuses[i]);
        ORIGIN_POST("fault", fault);
        tierstack_value *served = NULL;
        CHECK_OK(tierstack_cache_lookup(cache, K(BUTTON), &served));
        CHECK(tierstack_value_is_stale(served));
        CHECK(same_bytes(served, original));
        tierstack_value_free(served);
    }
    CHECK(origin_count() == 4);
    CHECK(breaker_state_is("open"));

    /* Open: no request; the stale copy still; without one, the error. */
    tierstack_value *served = NULL;
    CHECK_OK(tierstack_cache_lookup(cache, K(BUTTON), &served));
    CHECK(tierstack_value_is_stale(served));
    CHECK(same_bytes(served, original));
    tierstack_value_free(served);
    served = NULL;
    CHECK_RESULT(tierstack_cache_get(cache, K("component:react:card"), &served),
                 TIERSTACK_RESULT_SOURCE_UNAVAILABLE);
    CHECK(served == NULL);
    CHECK(origin_count() == 4);
    CHECK(source_stat("rejected") == 2);
    tierstack_value_free(original);
    done();
}

static void test_server_error_without_stale_copy(void) {
    if (!fresh((options){0})) {
        done();
        return;
    }
    ORIGIN_POST("fault", "{\"status\": 503, \"times\": 1}");
    tierstack_value *value = NULL;
    CHECK_RESULT(tierstack_cache_get(cache, K(BUTTON), &value), TIERSTACK_RESULT_SOURCE);
    CHECK(error_mentions("503"));
    CHECK(value == NULL);
    /* Nothing was stored: the next read asks again. */
    CHECK_OK(tierstack_cache_get(cache, K(BUTTON), &value));
    CHECK(first_line_is(value, BASE "/ui/button.tsx"));
    tierstack_value_free(value);
    CHECK(origin_count() == 2);
    done();
}

/* ---- a slow origin ---- */

static void test_slow_origin_soft_and_hard_timeouts(void) {
    options o = {.sqlite = "\"ttl\": 1",
                 .more = "\"memory\": {\"ttl\": 1}, \"test_clock\": true, "
                         "\"fail_safe\": {\"soft_timeout\": 0.2, \"hard_timeout\": 0.6}"};
    if (!fresh(o)) {
        done();
        return;
    }
    tierstack_value *original = NULL;
    CHECK_OK(tierstack_cache_get(cache, K(BUTTON), &original));
    CHECK_OK(tierstack_advance_test_clock(1));
    ORIGIN_POST("fault", "{\"delay_ms\": 400, \"times\": 1}");
    double started = now_monotonic();
    tierstack_value *served = NULL;
    CHECK_OK(tierstack_cache_lookup(cache, K(BUTTON), &served));
    double took = now_monotonic() - started;
    CHECK(tierstack_value_is_stale(served));
    CHECK(same_bytes(served, original));
    tierstack_value_free(served);
    if (!slow()) {
        if (!CHECK(took >= 0.2 && took < 0.25)) {
            fprintf(stderr, "  the stale copy came after %.3f s\n", took);
        }
    }
    /* The background fetch lands and fills the tiers (waited for, not
     * slept on: its answer comes 400 ms after the request). */
    bool filled = false;
    for (int i = 0; i < 1000 && !filled; i++) {
        CHECK_OK(tierstack_cache_has(cache, K(BUTTON), &filled));
        if (!filled) {
            sleep_seconds(0.01);
        }
    }
    CHECK(filled);
    CHECK_OK(tierstack_cache_lookup(cache, K(BUTTON), &served));
    CHECK(!tierstack_value_is_stale(served));
    CHECK(served_by(served, "memory"));
    CHECK(same_bytes(served, original));
    tierstack_value_free(served);
    CHECK(origin_count() == 2);

    /* Past the hard timeout, with no stale copy: a timeout. */
    ORIGIN_POST("fault", "{\"delay_ms\": 1500, \"times\": 1}");
    served = NULL;
    started = now_monotonic();
    CHECK_RESULT(tierstack_cache_get(cache, K("component:react:card"), &served),
                 TIERSTACK_RESULT_TIMEOUT);
    took = now_monotonic() - started;
    CHECK(served == NULL);
    if (!slow()) {
        CHECK(took >= 0.6 && took < 1.0);
    }
    CHECK(source_stat("timeouts") == 1);
    CHECK(origin_count() == 3);
    tierstack_value_free(original);
    done();
}

/* ---- transport failures ---- */

static void test_refused_connection(void) {
    int port = refused_port();
    CHECK(port > 0);
    char raw_url[64];
    snprintf(raw_url, sizeof raw_url, "http://127.0.0.1:%d", port);
    if (!fresh((options){.raw_url = raw_url})) {
        done();
        return;
    }
    tierstack_value *value = NULL;
    CHECK_RESULT(tierstack_cache_get(cache, K(BUTTON), &value), TIERSTACK_RESULT_SOURCE);
    CHECK(error_mentions("could not connect"));
    CHECK(value == NULL);
    CHECK(source_stat("failures") == 1);
    CHECK(origin_count() == 0);
    done();
}

static void test_truncated_and_oversized_bodies(void) {
    if (!fresh((options){.github = "\"max_body_bytes\": 100000"})) {
        done();
        return;
    }
    ORIGIN_POST("fault", "{\"truncate\": true, \"times\": 1}");
    tierstack_value *value = NULL;
    CHECK_RESULT(tierstack_cache_get(cache, K(BUTTON), &value), TIERSTACK_RESULT_SOURCE);
    CHECK(error_mentions("broke off"));

    ORIGIN_POST("fault", "{\"oversize\": 200000, \"times\": 1}");
    CHECK_RESULT(tierstack_cache_get(cache, K(BUTTON), &value), TIERSTACK_RESULT_SOURCE);
    CHECK(error_mentions("max_body_bytes"));
    CHECK(value == NULL);
    CHECK(source_stat("failures") == 2);

    /* Nothing was stored. */
    bool has = true;
    CHECK_OK(tierstack_cache_has(cache, K(BUTTON), &has));
    CHECK(!has);
    uint64_t n = 99;
    CHECK_OK(tierstack_cache_len(cache, &n));
    CHECK(n == 0);
    CHECK(origin_count() == 2);
    done();
}

/* ---- keys that would leave the route's folder ---- */

static void test_traversal_keys_invalid_without_request(void) {
    if (!fresh((options){0})) {
        done();
        return;
    }
    const char *keys[] = {
        "component:react:../x",   "component:react:a/b",    "component:react:%2e%2e",
        "component:react:a\\b",   "component:react:..",     "component:react:../../../etc/passwd",
        "component:react:%2fetc", "component-demo:react:%41", "block:react:.git",
    };
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        size_t len = strlen(keys[i]);
        tierstack_value *value = NULL;
        if (!CHECK_RESULT(tierstack_cache_get(cache, keys[i], len, &value),
                          TIERSTACK_RESULT_INVALID_KEY)) {
            fprintf(stderr, "  key: %s\n", keys[i]);
        }
        CHECK(value == NULL);
        CHECK_RESULT(tierstack_cache_lookup(cache, keys[i], len, &value),
                     TIERSTACK_RESULT_INVALID_KEY);
        tierstack_value *values[2] = {NULL, NULL};
        const char *pair[2] = {BUTTON, keys[i]};
        size_t lens[2] = {strlen(BUTTON), len};
        CHECK_RESULT(tierstack_cache_mget(cache, pair, lens, 2, values),
                     TIERSTACK_RESULT_INVALID_KEY);
        CHECK(values[0] == NULL && values[1] == NULL);
    }
    CHECK(origin_count() == 0);
    CHECK(source_stat("requests") == 0);
    done();
}

/* ---- rate limits ---- */

static void test_rate_limit_opens_breaker_until_reset(void) {
    if (!fresh((options){.more = "\"test_clock\": true"})) {
        done();
        return;
    }
    /* An hour ahead: the test clock, which earlier cases moved on, is still
     * before it until this case moves it there. */
    long long reset = (long long)(now_epoch_ms() / 1000) + 3600;
    fault_rate_limited(reset);
    tierstack_value *value = NULL;
    CHECK_RESULT(tierstack_cache_get(cache, K(BUTTON), &value), TIERSTACK_RESULT_SOURCE);
    CHECK(error_mentions("rate limit"));
    json_t *status = breaker_status(cache);
    CHECK(string_is(json_object_get(status, "state"), "open"));
    CHECK(number_is(json_object_get(status, "next_attempt_at"), (double)reset * 1000));
    /* The failure's time on the test clock: the reset is this far ahead. */
    const json_t *failed_at = json_object_get(status, "last_failure_at");
    CHECK(json_is_integer(failed_at) && json_integer_value(failed_at) < reset * 1000);
    double to_reset = json_is_integer(failed_at)
                          ? (double)(reset * 1000 - json_integer_value(failed_at)) / 1000
                          : 0;
    json_decref(status);

    /* Until the reset, to its last millisecond: no request at all. */
    CHECK_OK(tierstack_advance_test_clock(to_reset - 0.001));
    const char *keys[] = {BUTTON, "component:react:card", "components:react"};
    for (size_t i = 0; i < 3; i++) {
        CHECK_RESULT(tierstack_cache_get(cache, keys[i], strlen(keys[i]), &value),
                     TIERSTACK_RESULT_SOURCE_UNAVAILABLE);
        CHECK(value == NULL);
    }
    CHECK(origin_count() == 1);

    /* At it: one probe (half-open), then a second success closes it
     * (success_threshold 2). */
    CHECK_OK(tierstack_advance_test_clock(0.001));
    CHECK_OK(tierstack_cache_get(cache, K(BUTTON), &value));
    CHECK(first_line_is(value, BASE "/ui/button.tsx"));
    tierstack_value_free(value);
    CHECK(origin_count() == 2);
    CHECK(breaker_state_is("half-open"));
    CHECK_OK(tierstack_cache_get(cache, K("component:react:card"), &value));
    CHECK(first_line_is(value, BASE "/ui/card.tsx"));
    tierstack_value_free(value);
    CHECK(breaker_state_is("closed"));
    CHECK(origin_count() == 3);
    done();
}

static void test_429_retry_after(void) {
    if (!fresh((options){.more = "\"test_clock\": true"})) {
        done();
        return;
    }
    /* A minute on: the test clock (the wall-clock time of its first use,
     * moved only by hand) is then well away from the system clock, so a
     * Retry-After counted from the system clock would give another time. */
    CHECK_OK(tierstack_advance_test_clock(60));
    ORIGIN_POST("fault",
                "{\"status\": 429, \"times\": 1, \"headers\": [[\"Retry-After\", \"30\"]]}");
    tierstack_value *value = NULL;
    CHECK_RESULT(tierstack_cache_get(cache, K(BUTTON), &value), TIERSTACK_RESULT_SOURCE);
    CHECK(error_mentions("rate limit"));
    /* The failure's time on the test clock: 30 s from it, exactly. */
    json_t *status = breaker_status(cache);
    const json_t *failed_at = json_object_get(status, "last_failure_at");
    CHECK(string_is(json_object_get(status, "state"), "open"));
    CHECK(json_is_integer(failed_at) &&
          number_is(json_object_get(status, "next_attempt_at"),
                    (double)(json_integer_value(failed_at) + 30000)));
    json_decref(status);

    /* Until then, to its last millisecond: no request. */
    CHECK_RESULT(tierstack_cache_get(cache, K(BUTTON), &value),
                 TIERSTACK_RESULT_SOURCE_UNAVAILABLE);
    CHECK_OK(tierstack_advance_test_clock(29.999));
    CHECK_RESULT(tierstack_cache_get(cache, K(BUTTON), &value),
                 TIERSTACK_RESULT_SOURCE_UNAVAILABLE);
    CHECK(value == NULL);
    CHECK(origin_count() == 1);

    /* At it: one probe. */
    CHECK_OK(tierstack_advance_test_clock(0.001));
    CHECK_OK(tierstack_cache_get(cache, K(BUTTON), &value));
    CHECK(first_line_is(value, BASE "/ui/button.tsx"));
    tierstack_value_free(value);
    CHECK(origin_count() == 2);
    CHECK(breaker_state_is("half-open"));
    done();
}

/* The second process: opens a cache with `config`, reads the card, prints
 * the result's name and the breaker status JSON, one line each. */
static int second_process_main(const char *config) {
    tierstack_cache *c = NULL;
    tierstack_result r = tierstack_cache_open(config, &c);
    if (r != TIERSTACK_RESULT_OK) {
        fprintf(stderr, "second process: open: %s\n", last_error());
        return 1;
    }
    tierstack_value *value = NULL;
    r = tierstack_cache_get(c, K("component:react:card"), &value);
    tierstack_value_free(value);
    char *status = NULL;
    tierstack_result s = tierstack_cache_breaker_status_json(c, &status);
    printf("%s\n%s\n", tierstack_result_name(r), s == TIERSTACK_RESULT_OK ? status : "null");
    tierstack_string_free(status);
    tierstack_cache_free(c);
    return 0;
}

/* Runs this binary as the second process on `config`; its two lines in
 * `result` and `status` (parsed; free with json_decref). */
static bool run_second_process(const char *config, char *result, size_t result_len,
                               json_t **status) {
    *status = NULL;
    int out[2];
    if (pipe(out) != 0) {
        return false;
    }
    /* Everything the child needs is ready before the fork: it only execs. */
    char *const argv[] = {(char *)self_path, (char *)"--second-process", (char *)config, NULL};
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(out[1], STDOUT_FILENO);
        close(out[0]);
        close(out[1]);
        execv(self_path, argv);
        _exit(127);
    }
    close(out[1]);
    if (pid < 0) {
        close(out[0]);
        return false;
    }
    char *text = NULL;
    size_t text_len = 0;
    FILE *out_text = open_memstream(&text, &text_len);
    char chunk[1024];
    for (;;) {
        ssize_t r = read(out[0], chunk, sizeof chunk);
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r <= 0) {
            break;
        }
        fwrite(chunk, 1, (size_t)r, out_text);
    }
    close(out[0]);
    fclose(out_text);
    int wstatus = 0;
    bool exited = waitpid(pid, &wstatus, 0) == pid && WIFEXITED(wstatus) &&
                  WEXITSTATUS(wstatus) == 0;
    bool ok = false;
    char *newline = strchr(text, '\n');
    if (exited && newline != NULL && (size_t)(newline - text) < result_len) {
        memcpy(result, text, (size_t)(newline - text));
        result[newline - text] = '\0';
        *status = json_loads(newline + 1, JSON_DECODE_ANY, NULL);
        ok = *status != NULL;
    }
    if (!ok) {
        fprintf(stderr, "  the second process printed: %s\n", text);
    }
    free(text);
    return ok;
}

static void test_second_process_honours_rate_limit(void) {
    if (!fresh((options){0})) {
        done();
        return;
    }
    long long reset = (long long)(now_epoch_ms() / 1000) + 60;
    fault_rate_limited(reset);
    tierstack_value *value = NULL;
    CHECK_RESULT(tierstack_cache_get(cache, K(BUTTON), &value), TIERSTACK_RESULT_SOURCE);
    CHECK(origin_count() == 1);

    char *config = github_config((options){0});
    char result[64];
    json_t *status = NULL;
    if (CHECK(run_second_process(config, result, sizeof result, &status))) {
        CHECK(strcmp(result, tierstack_result_name(TIERSTACK_RESULT_SOURCE_UNAVAILABLE)) == 0);
        CHECK(string_is(json_object_get(status, "state"), "open"));
        CHECK(number_is(json_object_get(status, "next_attempt_at"), (double)reset * 1000));
    }
    json_decref(status);
    CHECK(origin_count() == 1);

    /* A hand close lifts the bar for every process. */
    CHECK_OK(tierstack_cache_breaker_close(cache));
    if (CHECK(run_second_process(config, result, sizeof result, &status))) {
        CHECK(strcmp(result, tierstack_result_name(TIERSTACK_RESULT_OK)) == 0);
        CHECK(string_is(json_object_get(status, "state"), "closed"));
    }
    json_decref(status);
    CHECK(origin_count() == 2);
    free(config);
    done();
}

static void test_rate_limit_remaining_in_stats(void) {
    long long reset = (long long)(now_epoch_ms() / 1000) + 3600;
    char limit[128];
    snprintf(limit, sizeof limit, "{\"limit\": 60, \"remaining\": 42, \"reset\": %lld}",
             reset);
    if (!fresh((options){0}) || !ORIGIN_POST("rate_limit", limit)) {
        done();
        return;
    }

    json_t *s = stats();
    const json_t *source = s != NULL ? json_object_get(s, "source") : NULL;
    const json_t *rate = source != NULL ? json_object_get(source, "rate_limit") : NULL;
    CHECK(json_is_null(rate));
    json_decref(s);

    tierstack_value *value = NULL;
    CHECK_OK(tierstack_cache_get(cache, K("components:react"), &value));
    CHECK(value != NULL);
    tierstack_value_free(value);
    s = stats();
    source = s != NULL ? json_object_get(s, "source") : NULL;
    rate = source != NULL ? json_object_get(source, "rate_limit") : NULL;
    if (CHECK(json_is_object(rate))) {
        CHECK(number_is(json_object_get(rate, "limit"), 60));
        CHECK(number_is(json_object_get(rate, "remaining"), 41));
        CHECK(number_is(json_object_get(rate, "reset_at_ms"), (double)reset * 1000));
    }
    json_decref(s);
    CHECK(origin_count() == 1);
    done();
}

/* ---- the token and redirects ---- */

static void test_redirect_drops_token(void) {
    const char *token = "ghp_redirect_test_token_0123456789";
    char github_more[128];
    snprintf(github_more, sizeof github_more, "\"token\": \"%s\"", token);
    if (!fresh((options){.github = github_more})) {
        done();
        return;
    }
    char fault[256];
    snprintf(fault, sizeof fault, "{\"host\": \"api\", \"redirect\": \"%s\", \"times\": 1}",
             origin_other);
    ORIGIN_POST("fault", fault);
    /* The listing's request goes to the API with the token and is sent on to
     * the other host, which must not see it; that host serves the raw
     * layout, so the listing's path is not found there. */
    tierstack_value *value = (tierstack_value *)&value;
    CHECK_OK(tierstack_cache_get(cache, K("components:react"), &value));
    CHECK(value == NULL);
    CHECK_OK(tierstack_cache_get(cache, K(BUTTON), &value));
    CHECK(first_line_is(value, BASE "/ui/button.tsx"));
    tierstack_value_free(value);

    char bearer[128];
    snprintf(bearer, sizeof bearer, "Bearer %s", token);
    json_t *log = origin_log();
    const json_t *requests = log != NULL ? json_object_get(log, "requests") : NULL;
    int api = 0, elsewhere = 0, other = 0;
    for (size_t i = 0; requests != NULL && i < json_array_size(requests); i++) {
        const json_t *r = json_array_get(requests, i);
        const json_t *auth = json_object_get(r, "authorization");
        if (string_is(json_object_get(r, "host"), "api")) {
            api++;
            CHECK(string_is(auth, bearer));
        } else {
            elsewhere++;
            other += string_is(json_object_get(r, "host"), "other");
            CHECK(json_is_null(auth));
        }
    }
    CHECK(api == 1 && elsewhere == 2 && other == 1);
    json_decref(log);

    /* The token is nowhere in the stats or the breaker status. */
    char *text = NULL;
    CHECK_OK(tierstack_cache_stats_json(cache, &text));
    CHECK(text != NULL && strstr(text, token) == NULL);
    tierstack_string_free(text);
    done();
}

int main(int argc, char **argv) {
    if (argc == 3 && strcmp(argv[1], "--second-process") == 0) {
        return second_process_main(argv[2]);
    }
    self_path = argv[0];
    signal(SIGPIPE, SIG_IGN);
    if (!origin_start()) {
        origin_stop();
        printf("FAIL the origin starts\n");
        printf("cases: 0 passed, 1 failed\n");
        return 1;
    }
    check_case("a component: 1 request, then memory, then the file (a second cache, a restart)",
               test_component_fetched_once);
    check_case("the listing, demos and blocks follow the preset; unrouted keys are plain misses",
               test_listing_demos_blocks_and_unrouted_keys);
    check_case("an expired copy is revalidated with If-None-Match: a 304, fresh again",
               test_expired_copy_revalidated_with_304);
    check_case("a 404 is not found (NULL) and remembered: 1 request for 2 reads",
               test_missing_component_remembered);
    check_case("100 threads missing a slow component: 1 request",
               test_hundred_threads_one_request);
    check_case("5xx serve the stale copy; 3 open the breaker; then 0 requests",
               test_server_errors_serve_stale_then_open_breaker);
    check_case("a 503 without a stale copy is SOURCE, and nothing is stored",
               test_server_error_without_stale_copy);
    check_case("a slow origin: the stale copy at the soft timeout, TIMEOUT at the hard one",
               test_slow_origin_soft_and_hard_timeouts);
    check_case("a refused connection is SOURCE", test_refused_connection);
    check_case("truncated and oversized bodies are SOURCE, nothing stored",
               test_truncated_and_oversized_bodies);
    check_case("traversal keys are INVALID_KEY before any request (get, lookup, mget)",
               test_traversal_keys_invalid_without_request);
    check_case("a 403 rate limit opens the breaker until the reset, then a probe",
               test_rate_limit_opens_breaker_until_reset);
    check_case("a 429 with Retry-After opens the breaker for that long", test_429_retry_after);
    check_case("a second process honours the first one's rate limit: 0 requests",
               test_second_process_honours_rate_limit);
    check_case("stats: source.rate_limit from the API's headers",
               test_rate_limit_remaining_in_stats);
    check_case("a redirect to another host is followed without the token",
               test_redirect_drops_token);
    origin_stop();
    return check_summary();
}
