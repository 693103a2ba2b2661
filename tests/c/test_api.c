/*
 * The C API, call by call, on real SQLite files in temporary directories:
 * every operation, misses, NULL arguments, invalid UTF-8, closed handles,
 * bad configs, the message buffers, and a restart.
 */
#define _POSIX_C_SOURCE 200809L

#include <ctype.h>
#include <float.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <dirent.h>

#include "check.h"

/* A string literal as (pointer, length) for keys, and as bytes for values. */
#define K(s) (s), (sizeof(s) - 1)
#define D(s) (const uint8_t *)(s), (sizeof(s) - 1)

/* A pointer no call may write: out-params must stay untouched on failure. */
static int sentinel_target;
#define SENTINEL ((tierstack_value *)&sentinel_target)
#define NO_CACHE ((tierstack_cache *)&sentinel_target)

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

static void test_names_and_version(void) {
    /* Each constant's name is the constant's own, in lower case. */
    for (size_t i = 0; i < every_result_count; i++) {
        char want[64] = {0};
        for (size_t c = 0; every_result[i].constant[c] != '\0' && c + 1 < sizeof want; c++) {
            want[c] = (char)tolower((unsigned char)every_result[i].constant[c]);
        }
        const char *name = tierstack_result_name(every_result[i].code);
        if (!CHECK(strcmp(name, want) == 0)) {
            fprintf(stderr, "    TIERSTACK_RESULT_%s is named %s\n", every_result[i].constant, name);
        }
        for (size_t j = 0; j < i; j++) {
            CHECK(every_result[i].code != every_result[j].code);
        }
    }
    CHECK(TIERSTACK_RESULT_OK == 0);
    CHECK(strcmp(tierstack_result_name(unknown_result_code()), "unknown") == 0);
    CHECK(strcmp(tierstack_result_name(UINT32_MAX), "unknown") == 0);
    CHECK(strcmp(tierstack_version(), "0.1.0") == 0);
}

static void test_result_message_buffers(void) {
    const char *want = "the cache is closed";
    size_t full = strlen(want);
    char buf[64];
    size_t n = 0;

    /* Asking for the length only: len 0, NULL buffer. */
    CHECK_OK(tierstack_result_message(TIERSTACK_RESULT_CLOSED, NULL, 0, &n));
    CHECK(n == full);
    /* A buffer large enough. */
    n = 0;
    CHECK_OK(tierstack_result_message(TIERSTACK_RESULT_CLOSED, buf, sizeof buf, &n));
    CHECK(n == full && strcmp(buf, want) == 0);
    /* Exactly the length plus the NUL. */
    memset(buf, 'x', sizeof buf);
    CHECK_OK(tierstack_result_message(TIERSTACK_RESULT_CLOSED, buf, full + 1, &n));
    CHECK(strcmp(buf, want) == 0);
    /* One byte short: truncated, NUL-terminated, full length reported. */
    memset(buf, 'x', sizeof buf);
    CHECK_OK(tierstack_result_message(TIERSTACK_RESULT_CLOSED, buf, full, &n));
    CHECK(n == full && strlen(buf) == full - 1 && strncmp(buf, want, full - 1) == 0);
    /* len 1: only the NUL. */
    memset(buf, 'x', sizeof buf);
    CHECK_OK(tierstack_result_message(TIERSTACK_RESULT_CLOSED, buf, 1, &n));
    CHECK(buf[0] == '\0' && buf[1] == 'x' && n == full);
    /* len 0 with a buffer: nothing written. */
    memset(buf, 'x', sizeof buf);
    CHECK_OK(tierstack_result_message(TIERSTACK_RESULT_CLOSED, buf, 0, &n));
    CHECK(buf[0] == 'x');
    /* out_n may be NULL. */
    CHECK_OK(tierstack_result_message(TIERSTACK_RESULT_OK, buf, sizeof buf, NULL));
    CHECK(strcmp(buf, "success") == 0);
    /* A NULL buffer with a length is refused, and out_n is left alone. */
    n = 12345;
    CHECK_RESULT(tierstack_result_message(TIERSTACK_RESULT_OK, NULL, 8, &n),
                 TIERSTACK_RESULT_INVALID_ARGUMENT);
    CHECK(n == 12345);
    /* Unknown codes are described, not refused. */
    tierstack_result unknown = unknown_result_code();
    char want_unknown[64];
    snprintf(want_unknown, sizeof want_unknown, "unknown result code %u", (unsigned)unknown);
    CHECK_OK(tierstack_result_message(unknown, buf, sizeof buf, &n));
    CHECK(strcmp(buf, want_unknown) == 0);
    /* Every known code has its own message. */
    for (size_t i = 0; i < every_result_count; i++) {
        CHECK_OK(tierstack_result_message(every_result[i].code, buf, sizeof buf, &n));
        CHECK(n > 0 && strncmp(buf, "unknown result code", 19) != 0);
    }
}

static void *first_message_in_new_thread(void *arg) {
    size_t *n = arg;
    char buf[8] = "x";
    if (tierstack_last_error_message(buf, sizeof buf, n) != TIERSTACK_RESULT_OK || buf[0] != '\0') {
        *n = 9999;
    }
    return NULL;
}

static void test_last_error_message(void) {
    fresh("");
    /* A thread that never failed has an empty message. */
    pthread_t thread;
    size_t n = 7;
    CHECK(pthread_create(&thread, NULL, first_message_in_new_thread, &n) == 0);
    CHECK(pthread_join(thread, NULL) == 0);
    CHECK(n == 0);

    tierstack_value *value = NULL;
    CHECK_RESULT(tierstack_cache_get(cache, "", 0, &value), TIERSTACK_RESULT_INVALID_KEY);
    const char *want = "invalid_key: key is empty";
    char buf[64];
    CHECK_OK(tierstack_last_error_message(buf, sizeof buf, &n));
    CHECK(n == strlen(want) && strcmp(buf, want) == 0);
    CHECK_OK(tierstack_last_error_message(NULL, 0, &n));
    CHECK(n == strlen(want));
    CHECK_OK(tierstack_last_error_message(buf, 8, &n));
    CHECK(strcmp(buf, "invalid") == 0 && n == strlen(want));
    CHECK_RESULT(tierstack_last_error_message(NULL, 4, &n), TIERSTACK_RESULT_INVALID_ARGUMENT);
    /* That failure is now the latest one. */
    CHECK_OK(tierstack_last_error_message(buf, sizeof buf, NULL));
    CHECK(strstr(buf, "invalid_argument: buf") == buf);
    /* A success leaves the message as it was. */
    CHECK_OK(tierstack_cache_set(cache, K("k"), D("v"), 0));
    CHECK_OK(tierstack_last_error_message(buf, sizeof buf, NULL));
    CHECK(strstr(buf, "invalid_argument: buf") == buf);
    done();
}

static void test_open_close_free(void) {
    fresh("");
    CHECK(cache != NULL);
    CHECK_OK(tierstack_cache_close(cache));
    CHECK_OK(tierstack_cache_close(cache)); /* a double close is harmless */
    done();

    /* Free without close closes. */
    fresh("");
    CHECK_OK(tierstack_cache_set(cache, K("k"), D("v"), 0));
    done();

    /* Freeing NULL does nothing. */
    tierstack_cache_free(NULL);
    tierstack_value_free(NULL);
    tierstack_string_free(NULL);
}

static void test_bad_configs(void) {
    static const char *bad[] = {
        "{",                                     /* syntax error */
        "",                                      /* no JSON at all */
        "{\"memroy\": {}}",                      /* unknown key */
        "{\"memory\": {\"max_size\": 1}}",       /* unknown nested key */
        "{\"memory\": {\"max_bytes\": -1}}",     /* out of range */
        "{\"memory\": {\"ttl\": 0}}",            /* zero TTL */
        "{\"namespace\": \"../etc\"}",           /* bad namespace */
        "{\"memory\": {\"enabled\": false}, \"sqlite\": {\"enabled\": false}}",
        "{\"memory\": {\"max_bytes\": \"big\"}}", /* wrong type */
        "{\"namespace\": \"\xff\"}",             /* not UTF-8 */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        tierstack_cache *c = NO_CACHE;
        if (!CHECK_RESULT(tierstack_cache_open(bad[i], &c), TIERSTACK_RESULT_INVALID_CONFIG)) {
            fprintf(stderr, "    config: %s\n", bad[i]);
        }
        CHECK(c == NO_CACHE);
    }
    /* The message names the offending key. */
    tierstack_cache *c = NULL;
    CHECK_RESULT(tierstack_cache_open("{\"memroy\": {}}", &c), TIERSTACK_RESULT_INVALID_CONFIG);
    CHECK(strstr(last_error(), "unknown field `memroy`") != NULL);
    CHECK_RESULT(tierstack_cache_open("{}", NULL), TIERSTACK_RESULT_INVALID_ARGUMENT);
}

static void test_default_config_and_env_path(void) {
    /* NULL config: every default, the file from $TIERSTACK_DB_PATH. */
    dir = tmp_dir_new();
    char *path = path_join(dir, "from-env.db");
    CHECK(setenv("TIERSTACK_DB_PATH", path, 1) == 0);
    CHECK_OK(tierstack_cache_open(NULL, &cache));
    CHECK_OK(tierstack_cache_set(cache, K("k"), D("v"), 0));
    CHECK_OK(tierstack_cache_close(cache));
    struct stat st;
    CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == 0600);
    CHECK(unsetenv("TIERSTACK_DB_PATH") == 0);
    free(path);
    done();
}

static void test_set_get_miss(void) {
    fresh("");
    tierstack_value *value = SENTINEL;
    CHECK_OK(tierstack_cache_get(cache, K("component:button"), &value));
    CHECK(value == NULL); /* a miss writes NULL */

    CHECK_OK(tierstack_cache_set(cache, K("component:button"), D("export const Button = 1;"), 0));
    CHECK_OK(tierstack_cache_get(cache, K("component:button"), &value));
    CHECK(!tierstack_value_is_stale(value));
    CHECK(tierstack_value_tier(value) == NULL); /* only lookup reports the tier */
    CHECK(tierstack_value_age(value) == -1.0);
    CHECK_VALUE(value, "export const Button = 1;");

    /* Binary values with NUL and high bytes round-trip exactly. */
    const uint8_t binary[] = {0, 1, 2, 0xff, 0xfe, 0, 'x'};
    CHECK_OK(tierstack_cache_set(cache, K("bin"), binary, sizeof binary, 0));
    CHECK_OK(tierstack_cache_get(cache, K("bin"), &value));
    CHECK(tierstack_value_len(value) == sizeof binary &&
          memcmp(tierstack_value_data(value), binary, sizeof binary) == 0);
    tierstack_value_free(value);

    /* NULL data with length 0 is the empty value. */
    CHECK_OK(tierstack_cache_set(cache, K("empty"), NULL, 0, 0));
    CHECK_OK(tierstack_cache_get(cache, K("empty"), &value));
    CHECK(value != NULL && tierstack_value_len(value) == 0 && tierstack_value_data(value) != NULL);
    tierstack_value_free(value);

    /* An overwrite replaces the value; a key with a length ignores what follows. */
    CHECK_OK(tierstack_cache_set(cache, K("k"), D("one"), 0));
    CHECK_OK(tierstack_cache_set(cache, "k-and-more", 1, D("two"), 0));
    CHECK_OK(tierstack_cache_get(cache, K("k"), &value));
    CHECK_VALUE(value, "two");

    /* A value outlives its cache. */
    CHECK_OK(tierstack_cache_get(cache, K("component:button"), &value));
    done();
    CHECK_VALUE(value, "export const Button = 1;");
}

static void test_lookup_and_restart(void) {
    fresh("");
    tierstack_value *value = SENTINEL;
    CHECK_OK(tierstack_cache_lookup(cache, K("missing"), &value));
    CHECK(value == NULL);
    CHECK_OK(tierstack_cache_set(cache, K("k"), D("v"), 0));
    CHECK_OK(tierstack_cache_lookup(cache, K("k"), &value));
    CHECK(value != NULL && strcmp(tierstack_value_tier(value), "memory") == 0);
    CHECK(tierstack_value_age(value) >= 0.0 && tierstack_value_age(value) < 5.0);
    CHECK(!tierstack_value_is_stale(value));
    CHECK_VALUE(value, "v");

    /* A restart: close, reopen on the same file; L2 serves, then L1. */
    CHECK_OK(tierstack_cache_close(cache));
    tierstack_cache_free(cache);
    cache = open_in(dir, "");
    CHECK_OK(tierstack_cache_lookup(cache, K("k"), &value));
    CHECK(value != NULL && strcmp(tierstack_value_tier(value), "sqlite") == 0);
    CHECK_VALUE(value, "v");
    CHECK_OK(tierstack_cache_lookup(cache, K("k"), &value));
    CHECK(value != NULL && strcmp(tierstack_value_tier(value), "memory") == 0);
    CHECK_VALUE(value, "v");
    done();
}

static void test_tier_configs(void) {
    tierstack_value *value = NULL;
    /* Memory only: nothing survives a reopen. */
    dir = tmp_dir_new();
    CHECK_OK(tierstack_cache_open("{\"sqlite\": {\"enabled\": false}}", &cache));
    CHECK_OK(tierstack_cache_set(cache, K("k"), D("v"), 0));
    CHECK_OK(tierstack_cache_lookup(cache, K("k"), &value));
    CHECK(value != NULL && strcmp(tierstack_value_tier(value), "memory") == 0);
    CHECK_VALUE(value, "v");
    tierstack_cache_free(cache);
    CHECK_OK(tierstack_cache_open("{\"sqlite\": {\"enabled\": false}}", &cache));
    CHECK_OK(tierstack_cache_get(cache, K("k"), &value));
    CHECK(value == NULL);
    tierstack_cache_free(cache);
    cache = NULL;

    /* SQLite only: every hit is served by sqlite. */
    cache = open_in(dir, "\"memory\": {\"enabled\": false}");
    CHECK_OK(tierstack_cache_set(cache, K("k"), D("v"), 0));
    for (int i = 0; i < 2; i++) {
        CHECK_OK(tierstack_cache_lookup(cache, K("k"), &value));
        CHECK(value != NULL && strcmp(tierstack_value_tier(value), "sqlite") == 0);
        CHECK_VALUE(value, "v");
    }
    done();
}

static void test_has_and_delete(void) {
    fresh("");
    bool flag = true;
    CHECK_OK(tierstack_cache_has(cache, K("k"), &flag));
    CHECK(!flag);
    CHECK_OK(tierstack_cache_set(cache, K("k"), D("v"), 0));
    CHECK_OK(tierstack_cache_has(cache, K("k"), &flag));
    CHECK(flag);
    CHECK_OK(tierstack_cache_delete(cache, K("k"), &flag));
    CHECK(flag);
    CHECK_OK(tierstack_cache_delete(cache, K("k"), &flag));
    CHECK(!flag);
    CHECK_OK(tierstack_cache_has(cache, K("k"), &flag));
    CHECK(!flag);
    /* existed may be NULL. */
    CHECK_OK(tierstack_cache_set(cache, K("k"), D("v"), 0));
    CHECK_OK(tierstack_cache_delete(cache, K("k"), NULL));
    tierstack_value *value = SENTINEL;
    CHECK_OK(tierstack_cache_get(cache, K("k"), &value));
    CHECK(value == NULL);
    done();
}

static void test_mget_mset(void) {
    fresh("\"test_clock\": true");
    const char *keys[] = {"a", "b", "c"};
    const size_t key_lens[] = {1, 1, 1};
    const uint8_t *datas[] = {(const uint8_t *)"1", (const uint8_t *)"22", NULL};
    const size_t data_lens[] = {1, 2, 0};
    CHECK_OK(tierstack_cache_mset(cache, keys, key_lens, datas, data_lens, 3, 0));

    const char *want_keys[] = {"c", "missing", "a", "b"};
    const size_t want_lens[] = {1, 7, 1, 1};
    tierstack_value *values[4] = {SENTINEL, SENTINEL, SENTINEL, SENTINEL};
    CHECK_OK(tierstack_cache_mget(cache, want_keys, want_lens, 4, values));
    CHECK_VALUE(values[0], "");
    CHECK(values[1] == NULL);
    CHECK_VALUE(values[2], "1");
    CHECK_VALUE(values[3], "22");

    /* n == 0 with NULL arrays. */
    CHECK_OK(tierstack_cache_mget(cache, NULL, NULL, 0, NULL));
    CHECK_OK(tierstack_cache_mset(cache, NULL, NULL, NULL, NULL, 0, 0));

    /* One bad key fails the whole call: nothing read, nothing written. */
    const char *bad_keys[] = {"a", ""};
    const size_t bad_lens[] = {1, 0};
    values[0] = values[1] = SENTINEL;
    CHECK_RESULT(tierstack_cache_mget(cache, bad_keys, bad_lens, 2, values),
                 TIERSTACK_RESULT_INVALID_KEY);
    CHECK(values[0] == SENTINEL && values[1] == SENTINEL);
    const char *mixed_keys[] = {"fine", "bad\x01"};
    const size_t mixed_lens[] = {4, 4};
    const uint8_t *mixed_datas[] = {(const uint8_t *)"1", (const uint8_t *)"2"};
    const size_t mixed_data_lens[] = {1, 1};
    CHECK_RESULT(tierstack_cache_mset(cache, mixed_keys, mixed_lens, mixed_datas, mixed_data_lens,
                                      2, 0),
                 TIERSTACK_RESULT_INVALID_KEY);
    bool found = true;
    CHECK_OK(tierstack_cache_has(cache, K("fine"), &found));
    CHECK(!found);

    /* mset with a TTL: fresh until the TTL has passed, to the millisecond. */
    CHECK_OK(tierstack_cache_mset(cache, keys, key_lens, datas, data_lens, 2, 0.2));
    CHECK_OK(tierstack_advance_test_clock(0.199));
    CHECK_OK(tierstack_cache_mget(cache, keys, key_lens, 2, values));
    CHECK_VALUE(values[0], "1");
    CHECK_VALUE(values[1], "22");
    CHECK_OK(tierstack_advance_test_clock(0.001));
    CHECK_OK(tierstack_cache_mget(cache, keys, key_lens, 3, values));
    CHECK(values[0] == NULL && values[1] == NULL);
    CHECK_VALUE(values[2], "");
    done();
}

static void check_keys(const char *pattern, size_t len, const char *want) {
    char *json = (char *)SENTINEL;
    if (CHECK_OK(tierstack_cache_keys_json(cache, pattern, len, &json))) {
        if (!CHECK(strcmp(json, want) == 0)) {
            fprintf(stderr, "    keys %.*s: %s, expected %s\n", (int)len, pattern ? pattern : "",
                    json, want);
        }
        tierstack_string_free(json);
    }
}

static void test_keys_len_clear(void) {
    fresh("");
    const char *keys[] = {"component:button", "component:card", "docs:intro", "q\"uote"};
    const size_t key_lens[] = {16, 14, 10, 6};
    const uint8_t *values[] = {(const uint8_t *)"b", (const uint8_t *)"c", (const uint8_t *)"d",
                               (const uint8_t *)"q"};
    const size_t value_lens[] = {1, 1, 1, 1};
    CHECK_OK(tierstack_cache_mset(cache, keys, key_lens, values, value_lens, 4, 0));
    check_keys(K("component:*"), "[\"component:button\",\"component:card\"]");
    check_keys(K("*:intro"), "[\"docs:intro\"]");
    check_keys(K("nothing*"), "[]");
    check_keys(K(""), "[]");
    check_keys(NULL, 0, "[\"component:button\",\"component:card\",\"docs:intro\",\"q\\\"uote\"]");
    uint64_t n = 0;
    CHECK_OK(tierstack_cache_len(cache, &n));
    CHECK(n == 4);
    CHECK_OK(tierstack_cache_clear(cache));
    CHECK_OK(tierstack_cache_len(cache, &n));
    CHECK(n == 0);
    check_keys(NULL, 0, "[]");
    /* A pattern with a control character is an invalid argument. */
    char *json = NULL;
    CHECK_RESULT(tierstack_cache_keys_json(cache, K("a\tb"), &json),
                 TIERSTACK_RESULT_INVALID_ARGUMENT);
    CHECK(json == NULL);
    done();
}

static void test_ttls(void) {
    fresh("\"test_clock\": true");
    CHECK_OK(tierstack_cache_set(cache, K("short"), D("s"), 0.2));
    CHECK_OK(tierstack_cache_set(cache, K("long"), D("l"), 60));
    CHECK_OK(tierstack_cache_set(cache, K("zero"), D("z"), 0));
    CHECK_OK(tierstack_cache_set(cache, K("minus-zero"), D("m"), -0.0));
    CHECK_OK(tierstack_cache_set(cache, K("century"), D("c"), 3153600000.0)); /* 100 years */
    tierstack_value *value = NULL;
    CHECK_OK(tierstack_cache_get(cache, K("short"), &value));
    CHECK_VALUE(value, "s");
    CHECK_OK(tierstack_advance_test_clock(0.199));
    CHECK_OK(tierstack_cache_get(cache, K("short"), &value));
    CHECK_VALUE(value, "s");
    CHECK_OK(tierstack_advance_test_clock(0.001));
    CHECK_OK(tierstack_cache_get(cache, K("short"), &value));
    CHECK(value == NULL);
    CHECK_OK(tierstack_cache_get(cache, K("long"), &value));
    CHECK_VALUE(value, "l");
    CHECK_OK(tierstack_cache_get(cache, K("zero"), &value));
    CHECK_VALUE(value, "z");
    CHECK_OK(tierstack_cache_get(cache, K("minus-zero"), &value));
    CHECK_VALUE(value, "m");
    CHECK_OK(tierstack_cache_get(cache, K("century"), &value));
    CHECK_VALUE(value, "c");

    /* Negative TTLs and TTLs that are not usable numbers change nothing. */
    const double unusable[] = {-5, -1e-9, -INFINITY, NAN, INFINITY, 1e12, 1e20, 3153600001.0, DBL_MAX};
    const char *keys[] = {"t"};
    const size_t lens[] = {1};
    const uint8_t *datas[] = {(const uint8_t *)"v"};
    for (size_t i = 0; i < sizeof unusable / sizeof unusable[0]; i++) {
        CHECK_RESULT(tierstack_cache_set(cache, K("t"), D("v"), unusable[i]),
                     TIERSTACK_RESULT_INVALID_ARGUMENT);
        CHECK_RESULT(tierstack_cache_set(cache, K("zero"), D("new"), unusable[i]),
                     TIERSTACK_RESULT_INVALID_ARGUMENT);
        CHECK_RESULT(tierstack_cache_mset(cache, keys, lens, datas, lens, 1, unusable[i]),
                     TIERSTACK_RESULT_INVALID_ARGUMENT);
    }
    char message[256];
    CHECK_OK(tierstack_last_error_message(message, sizeof message, NULL));
    CHECK(strstr(message, "invalid_argument: ttl 1.7976931348623157e308 seconds is longer than 100 years") ==
          message);
    bool found = true;
    CHECK_OK(tierstack_cache_has(cache, K("t"), &found));
    CHECK(!found);
    CHECK_OK(tierstack_cache_get(cache, K("zero"), &value));
    CHECK_VALUE(value, "z");
    done();
}

/* The test clock moves only test-clock caches, and refuses unusable
 * seconds without moving. */
static void test_advance_test_clock(void) {
    fresh("\"test_clock\": true");
    char *wall_dir = tmp_dir_new();
    tierstack_cache *wall = open_in(wall_dir, "");
    CHECK_OK(tierstack_cache_set(cache, K("k"), D("v"), 5));
    CHECK_OK(tierstack_cache_set(wall, K("k"), D("v"), 5));
    const double unusable[] = {-1, -1e-9, NAN, INFINITY, -INFINITY, DBL_MAX};
    for (size_t i = 0; i < sizeof unusable / sizeof unusable[0]; i++) {
        CHECK_RESULT(tierstack_advance_test_clock(unusable[i]), TIERSTACK_RESULT_INVALID_ARGUMENT);
        CHECK(strstr(last_error(), "tierstack_advance_test_clock: seconds must be a finite "
                                   "number >= 0") != NULL);
    }
    CHECK_OK(tierstack_advance_test_clock(0));
    CHECK_OK(tierstack_advance_test_clock(-0.0));
    CHECK_OK(tierstack_advance_test_clock(4.999));
    tierstack_value *value = NULL;
    CHECK_OK(tierstack_cache_get(cache, K("k"), &value));
    CHECK_VALUE(value, "v");
    CHECK_OK(tierstack_advance_test_clock(0.001));
    CHECK_OK(tierstack_cache_get(cache, K("k"), &value));
    CHECK(value == NULL);
    /* A cache on the wall clock is not moved. */
    CHECK_OK(tierstack_advance_test_clock(3600));
    CHECK_OK(tierstack_cache_get(wall, K("k"), &value));
    CHECK_VALUE(value, "v");
    tierstack_cache_free(wall);
    tmp_dir_remove(wall_dir);
    done();
}

static void test_huge_key_messages(void) {
    fresh("");
    size_t len = (size_t)1 << 20;
    char *key = malloc(len);
    CHECK(key != NULL);
    memset(key, 'k', len);
    const char *keys[] = {"fine", key};
    const size_t key_lens[] = {4, len};
    const uint8_t *datas[] = {(const uint8_t *)"1", (const uint8_t *)"2"};
    const size_t data_lens[] = {1, 1};
    char message[512];
    size_t n = 0;
    CHECK_RESULT(tierstack_cache_set(cache, key, len, D("v"), 0), TIERSTACK_RESULT_INVALID_KEY);
    CHECK_OK(tierstack_last_error_message(message, sizeof message, &n));
    CHECK(n < 400);
    CHECK(strstr(message, "invalid_key: key \"kkkk") == message);
    CHECK(strstr(message, "\xe2\x80\xa6\" (1048576 bytes): ") != NULL);
    CHECK_RESULT(tierstack_cache_mset(cache, keys, key_lens, datas, data_lens, 2, 0),
                 TIERSTACK_RESULT_INVALID_KEY);
    CHECK_OK(tierstack_last_error_message(message, sizeof message, &n));
    CHECK(n < 400);
    tierstack_value *value = NULL;
    CHECK_RESULT(tierstack_cache_get(cache, key, len, &value), TIERSTACK_RESULT_INVALID_KEY);
    CHECK_OK(tierstack_last_error_message(message, sizeof message, &n));
    CHECK(n < 400);
    CHECK_OK(tierstack_cache_get(cache, K("fine"), &value));
    CHECK(value == NULL);
    free(key);
    done();
}

static void test_tags(void) {
    fresh("");
    const char *tags[] = {"group:a", "all"};
    const size_t tag_lens[] = {7, 3};
    CHECK_OK(tierstack_cache_set_with_tags(cache, K("a1"), D("1"), 0, tags, tag_lens, 2));
    CHECK_OK(tierstack_cache_set_with_tags(cache, K("a2"), D("2"), 60, tags, tag_lens, 1));
    CHECK_OK(tierstack_cache_set_with_tags(cache, K("b1"), D("3"), 0, tags + 1, tag_lens + 1, 1));
    CHECK_OK(tierstack_cache_set_with_tags(cache, K("plain"), D("4"), 0, NULL, NULL, 0));
    uint64_t removed = 99;
    CHECK_OK(tierstack_cache_invalidate_tag(cache, K("group:a"), &removed));
    CHECK(removed == 2);
    tierstack_value *value = SENTINEL;
    CHECK_OK(tierstack_cache_get(cache, K("a1"), &value));
    CHECK(value == NULL);
    CHECK_OK(tierstack_cache_get(cache, K("b1"), &value));
    CHECK_VALUE(value, "3");
    CHECK_OK(tierstack_cache_invalidate_tag(cache, K("group:a"), &removed));
    CHECK(removed == 0);
    CHECK_OK(tierstack_cache_invalidate_tag(cache, K("all"), NULL));
    uint64_t n = 0;
    CHECK_OK(tierstack_cache_len(cache, &n));
    CHECK(n == 1);

    /* Tags that are empty, not UTF-8, or hold a control character. */
    const char *bad[] = {"", "\xff", "a\nb"};
    const size_t bad_lens[] = {0, 1, 3};
    for (size_t i = 0; i < 3; i++) {
        CHECK_RESULT(tierstack_cache_set_with_tags(cache, K("x"), D("v"), 0, bad + i, bad_lens + i,
                                                   1),
                     TIERSTACK_RESULT_INVALID_ARGUMENT);
    }
    CHECK_RESULT(tierstack_cache_invalidate_tag(cache, "\xff", 1, &removed),
                 TIERSTACK_RESULT_INVALID_ARGUMENT);
    CHECK_RESULT(tierstack_cache_set_with_tags(cache, K("x"), D("v"), 0, NULL, tag_lens, 1),
                 TIERSTACK_RESULT_INVALID_ARGUMENT);
    bool found = true;
    CHECK_OK(tierstack_cache_has(cache, K("x"), &found));
    CHECK(!found);
    done();
}

/* Whether the file at `path` holds `len` bytes equal to `needle`. */
static bool file_contains(const char *path, const uint8_t *needle, size_t len) {
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        return false;
    }
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *bytes = malloc((size_t)size + 1);
    bool found = false;
    if (bytes != NULL && fread(bytes, 1, (size_t)size, f) == (size_t)size) {
        for (long i = 0; !found && i + (long)len <= size; i++) {
            found = memcmp(bytes + i, needle, len) == 0;
        }
    }
    free(bytes);
    fclose(f);
    return found;
}

static void test_flush_reaches_the_main_file(void) {
    fresh("");
    /* Small enough to sit in one page (larger values span overflow pages). */
    uint8_t value[2048];
    for (size_t i = 0; i < sizeof value; i++) {
        value[i] = (uint8_t)('A' + (i * 7 + i / 26) % 26);
    }
    CHECK_OK(tierstack_cache_set(cache, K("durable"), value, sizeof value, 0));
    CHECK_OK(tierstack_cache_flush(cache));
    char *db = path_join(dir, "cache.db");
    CHECK(file_contains(db, value, sizeof value));
    free(db);
    done();
}

static void test_stats_json(void) {
    fresh("");
    tierstack_value *value = NULL;
    CHECK_OK(tierstack_cache_set(cache, K("k"), D("v"), 0));
    CHECK_OK(tierstack_cache_get(cache, K("k"), &value));
    tierstack_value_free(value);
    CHECK_OK(tierstack_cache_get(cache, K("missing"), &value));
    char *json = NULL;
    CHECK_OK(tierstack_cache_stats_json(cache, &json));
    const char *prefix =
        "{\"hits\":1,\"misses\":1,\"hit_rate\":0.5,\"sets\":1,\"deletes\":0,\"invalidations\":0,"
        "\"resyncs\":0,\"tiers\":[{\"tier\":\"memory\",\"hits\":1,\"misses\":1,";
    CHECK(json != NULL && strncmp(json, prefix, strlen(prefix)) == 0);
    CHECK(json != NULL && strstr(json, "{\"tier\":\"sqlite\",\"hits\":0,\"misses\":1,") != NULL);
    tierstack_string_free(json);
    CHECK_OK(tierstack_cache_reset_stats(cache));
    CHECK_OK(tierstack_cache_stats_json(cache, &json));
    const char *zero = "{\"hits\":0,\"misses\":0,\"hit_rate\":0.0,\"sets\":0,\"deletes\":0,"
                       "\"invalidations\":0,\"resyncs\":0,";
    CHECK(json != NULL && strncmp(json, zero, strlen(zero)) == 0);
    tierstack_string_free(json);
    done();
}

/* Two caches on one file (each with its own L1, as two processes have),
 * checking the file on every access: the reader's L1 drops the entry the
 * writer replaces (an invalidation) and empties itself on the writer's clear
 * (a resync). */
static void test_stats_count_other_caches_changes(void) {
    dir = tmp_dir_new();
    char config[512];
    snprintf(config, sizeof config,
             "{\"sqlite\": {\"path\": \"%s/cache.db\", \"coherence_interval\": 0}}", dir);
    tierstack_cache *writer = NULL;
    CHECK_OK(tierstack_cache_open(config, &writer));
    CHECK_OK(tierstack_cache_set(writer, K("k"), D("v1"), 0));
    CHECK_OK(tierstack_cache_open(config, &cache));
    tierstack_value *value = NULL;
    CHECK_OK(tierstack_cache_get(cache, K("k"), &value)); /* from the file, into L1 */
    CHECK_VALUE(value, "v1");
    CHECK_OK(tierstack_cache_set(writer, K("k"), D("v2"), 0));
    CHECK_OK(tierstack_cache_get(cache, K("k"), &value));
    CHECK_VALUE(value, "v2");
    CHECK_OK(tierstack_cache_clear(writer));
    CHECK_OK(tierstack_cache_get(cache, K("k"), &value));
    CHECK(value == NULL);
    char *json = NULL;
    CHECK_OK(tierstack_cache_stats_json(cache, &json));
    CHECK(json != NULL && strstr(json, "\"invalidations\":1,\"resyncs\":1,") != NULL);
    tierstack_string_free(json);
    tierstack_cache_free(writer);
    done();
}

/* A damaged file (whole pages in the middle overwritten) is set aside as
 * cache.db.corrupt-<unix time>, a fresh one serves, and stats count it. */
static void test_damaged_file_is_rebuilt(void) {
    fresh("");
    uint8_t value[1500];
    memset(value, 'v', sizeof value);
    for (int i = 0; i < 2000; i++) {
        char key[16];
        int n = snprintf(key, sizeof key, "k%05d", i);
        CHECK_OK(tierstack_cache_set(cache, key, (size_t)n, value, sizeof value, 0));
    }
    CHECK_OK(tierstack_cache_close(cache));
    tierstack_cache_free(cache);

    char *path = path_join(dir, "cache.db");
    FILE *f = fopen(path, "r+b");
    CHECK(f != NULL);
    if (f != NULL) {
        CHECK(fseek(f, 0, SEEK_END) == 0);
        long middle = ftell(f) / 2 / 4096 * 4096;
        CHECK(fseek(f, middle, SEEK_SET) == 0);
        uint8_t junk[8 * 4096];
        memset(junk, 0xA5, sizeof junk);
        CHECK(fwrite(junk, 1, sizeof junk, f) == sizeof junk);
        fclose(f);
    }

    cache = open_in(dir, "");
    char *json = NULL;
    CHECK_OK(tierstack_cache_keys_json(cache, K("*"), &json));
    CHECK(json != NULL && strcmp(json, "[]") == 0);
    tierstack_string_free(json);
    json = NULL;
    CHECK_OK(tierstack_cache_stats_json(cache, &json));
    CHECK(json != NULL && strstr(json, "\"sqlite_rebuilds\":1,\"sqlite_reopens\":0") != NULL);
    tierstack_string_free(json);
    CHECK_OK(tierstack_cache_set(cache, K("k"), D("v"), 0));

    int aside = 0;
    DIR *d = opendir(dir);
    for (struct dirent *e = d != NULL ? readdir(d) : NULL; e != NULL; e = readdir(d)) {
        size_t n = strlen(e->d_name);
        aside += strncmp(e->d_name, "cache.db.corrupt-", 17) == 0 &&
                 !(n > 4 && strcmp(e->d_name + n - 4, "-wal") == 0);
    }
    if (d != NULL) {
        closedir(d);
    }
    CHECK(aside == 1);
    free(path);
    done();
}

static void test_null_arguments(void) {
    fresh("");
    tierstack_value *value = SENTINEL;
    tierstack_value *values[1] = {SENTINEL};
    bool flag = false;
    uint64_t n = 0;
    char *json = NULL;
    const char *keys[] = {"k"};
    const char *null_keys[] = {NULL};
    const size_t lens[] = {1};
    const uint8_t *datas[] = {(const uint8_t *)"v"};
    const uint8_t *null_datas[] = {NULL};
    const tierstack_result A = TIERSTACK_RESULT_INVALID_ARGUMENT;

    /* A NULL cache. */
    CHECK_RESULT(tierstack_cache_close(NULL), A);
    CHECK_RESULT(tierstack_cache_get(NULL, K("k"), &value), A);
    CHECK_RESULT(tierstack_cache_lookup(NULL, K("k"), &value), A);
    CHECK_RESULT(tierstack_cache_has(NULL, K("k"), &flag), A);
    CHECK_RESULT(tierstack_cache_mget(NULL, keys, lens, 1, values), A);
    CHECK_RESULT(tierstack_cache_set(NULL, K("k"), D("v"), 0), A);
    CHECK_RESULT(tierstack_cache_set_with_tags(NULL, K("k"), D("v"), 0, NULL, NULL, 0), A);
    CHECK_RESULT(tierstack_cache_mset(NULL, keys, lens, datas, lens, 1, 0), A);
    CHECK_RESULT(tierstack_cache_delete(NULL, K("k"), &flag), A);
    CHECK_RESULT(tierstack_cache_keys_json(NULL, K("*"), &json), A);
    CHECK_RESULT(tierstack_cache_len(NULL, &n), A);
    CHECK_RESULT(tierstack_cache_clear(NULL), A);
    CHECK_RESULT(tierstack_cache_flush(NULL), A);
    CHECK_RESULT(tierstack_cache_invalidate_tag(NULL, K("t"), &n), A);
    CHECK_RESULT(tierstack_cache_stats_json(NULL, &json), A);
    CHECK_RESULT(tierstack_cache_reset_stats(NULL), A);
    CHECK(strstr(last_error(), "cache is a NULL pointer") != NULL);

    /* NULL out-parameters: refused before anything happens. */
    CHECK_RESULT(tierstack_cache_get(cache, K("k"), NULL), A);
    CHECK_RESULT(tierstack_cache_lookup(cache, K("k"), NULL), A);
    CHECK_RESULT(tierstack_cache_has(cache, K("k"), NULL), A);
    CHECK_RESULT(tierstack_cache_mget(cache, keys, lens, 1, NULL), A);
    CHECK_RESULT(tierstack_cache_keys_json(cache, K("*"), NULL), A);
    CHECK_RESULT(tierstack_cache_len(cache, NULL), A);
    CHECK_RESULT(tierstack_cache_stats_json(cache, NULL), A);

    /* NULL keys and data with a length; NULL arrays with n > 0. */
    CHECK_RESULT(tierstack_cache_get(cache, NULL, 3, &value), A);
    CHECK_RESULT(tierstack_cache_set(cache, NULL, 3, D("v"), 0), A);
    CHECK_RESULT(tierstack_cache_set(cache, K("k"), NULL, 3, 0), A);
    CHECK_RESULT(tierstack_cache_keys_json(cache, NULL, 3, &json), TIERSTACK_RESULT_OK);
    tierstack_string_free(json);
    CHECK_RESULT(tierstack_cache_mget(cache, NULL, lens, 1, values), A);
    CHECK_RESULT(tierstack_cache_mget(cache, keys, NULL, 1, values), A);
    CHECK_RESULT(tierstack_cache_mget(cache, null_keys, lens, 1, values), A);
    CHECK_RESULT(tierstack_cache_mset(cache, keys, lens, NULL, lens, 1, 0), A);
    CHECK_RESULT(tierstack_cache_mset(cache, keys, lens, datas, NULL, 1, 0), A);
    CHECK_RESULT(tierstack_cache_mset(cache, keys, lens, null_datas, lens, 1, 0), A);
    CHECK_RESULT(tierstack_cache_invalidate_tag(cache, NULL, 1, &n), A);
    CHECK(value == SENTINEL && values[0] == SENTINEL);

    /* A NULL key with length 0 is the empty key. */
    CHECK_RESULT(tierstack_cache_get(cache, NULL, 0, &value), TIERSTACK_RESULT_INVALID_KEY);
    CHECK_RESULT(tierstack_cache_set(cache, NULL, 0, D("v"), 0), TIERSTACK_RESULT_INVALID_KEY);
    CHECK_RESULT(tierstack_cache_delete(cache, NULL, 0, NULL), TIERSTACK_RESULT_INVALID_KEY);

    /* Nothing was written by any of these. */
    CHECK_OK(tierstack_cache_len(cache, &n));
    CHECK(n == 0);

    /* Value accessors on NULL. */
    CHECK(tierstack_value_data(NULL) == NULL);
    CHECK(tierstack_value_len(NULL) == 0);
    CHECK(!tierstack_value_is_stale(NULL));
    CHECK(tierstack_value_tier(NULL) == NULL);
    CHECK(tierstack_value_age(NULL) == -1.0);
    done();
}

static void test_invalid_keys(void) {
    fresh("");
    const tierstack_result K_ = TIERSTACK_RESULT_INVALID_KEY;
    static const char *not_utf8[] = {"\xff\xfe", "ab\xc3", "\xc0\xaf", "\xed\xa0\x80",
                                     "ok\x80"};
    tierstack_value *value = SENTINEL;
    bool flag = false;
    char *json = NULL;
    for (size_t i = 0; i < sizeof not_utf8 / sizeof not_utf8[0]; i++) {
        const char *key = not_utf8[i];
        size_t len = strlen(key);
        const char *keys[] = {"good", key};
        const size_t lens[] = {4, len};
        const uint8_t *datas[] = {(const uint8_t *)"1", (const uint8_t *)"2"};
        const size_t data_lens[] = {1, 1};
        tierstack_value *values[2] = {SENTINEL, SENTINEL};
        CHECK_RESULT(tierstack_cache_get(cache, key, len, &value), K_);
        CHECK_RESULT(tierstack_cache_lookup(cache, key, len, &value), K_);
        CHECK_RESULT(tierstack_cache_has(cache, key, len, &flag), K_);
        CHECK_RESULT(tierstack_cache_set(cache, key, len, D("v"), 0), K_);
        CHECK_RESULT(tierstack_cache_delete(cache, key, len, &flag), K_);
        CHECK_RESULT(tierstack_cache_mget(cache, keys, lens, 2, values), K_);
        CHECK_RESULT(tierstack_cache_mset(cache, keys, lens, datas, data_lens, 2, 0), K_);
        CHECK_RESULT(tierstack_cache_keys_json(cache, key, len, &json), K_);
        CHECK(strstr(last_error(), "not UTF-8") != NULL);
        CHECK(value == SENTINEL && values[0] == SENTINEL && json == NULL);
    }

    /* The engine's rules: length, control characters (an embedded NUL too). */
    char long_key[257];
    memset(long_key, 'k', sizeof long_key);
    CHECK_OK(tierstack_cache_set(cache, long_key, 255, D("255 bytes is the limit"), 0));
    CHECK_RESULT(tierstack_cache_set(cache, long_key, 256, D("v"), 0), K_);
    CHECK_RESULT(tierstack_cache_set(cache, K("nul\0byte"), D("v"), 0), K_);
    CHECK_RESULT(tierstack_cache_has(cache, K("tab\there"), &flag), K_);
    CHECK_RESULT(tierstack_cache_get(cache, K("next\xc2\x85line"), &value), K_);
    CHECK_RESULT(tierstack_cache_get(cache, K(""), &value), K_);

    /* Unicode keys are fine. */
    CHECK_OK(tierstack_cache_set(cache, K("cl\xc3\xa9:\xe6\x97\xa5\xe6\x9c\xac"), D("v"), 0));
    CHECK_OK(tierstack_cache_get(cache, K("cl\xc3\xa9:\xe6\x97\xa5\xe6\x9c\xac"), &value));
    CHECK_VALUE(value, "v");
    uint64_t n = 0;
    CHECK_OK(tierstack_cache_len(cache, &n));
    CHECK(n == 2);
    done();
}

static void test_use_after_close(void) {
    fresh("");
    CHECK_OK(tierstack_cache_set(cache, K("k"), D("v"), 0));
    CHECK_OK(tierstack_cache_close(cache));
    const tierstack_result C = TIERSTACK_RESULT_CLOSED;
    tierstack_value *value = SENTINEL;
    tierstack_value *values[1] = {SENTINEL};
    bool flag = false;
    uint64_t n = 7;
    char *json = NULL;
    const char *keys[] = {"k"};
    const size_t lens[] = {1};
    const uint8_t *datas[] = {(const uint8_t *)"v"};
    CHECK_RESULT(tierstack_cache_get(cache, K("k"), &value), C);
    CHECK_RESULT(tierstack_cache_lookup(cache, K("k"), &value), C);
    CHECK_RESULT(tierstack_cache_has(cache, K("k"), &flag), C);
    CHECK_RESULT(tierstack_cache_mget(cache, keys, lens, 1, values), C);
    CHECK_RESULT(tierstack_cache_set(cache, K("k"), D("w"), 0), C);
    CHECK_RESULT(tierstack_cache_mset(cache, keys, lens, datas, lens, 1, 0), C);
    CHECK_RESULT(tierstack_cache_delete(cache, K("k"), &flag), C);
    CHECK_RESULT(tierstack_cache_keys_json(cache, K("*"), &json), C);
    CHECK_RESULT(tierstack_cache_len(cache, &n), C);
    CHECK_RESULT(tierstack_cache_clear(cache), C);
    CHECK_RESULT(tierstack_cache_flush(cache), C);
    CHECK_RESULT(tierstack_cache_invalidate_tag(cache, K("t"), &n), C);
    CHECK(value == SENTINEL && values[0] == SENTINEL && json == NULL && n == 7);
    CHECK(strcmp(last_error(), "closed: the cache is closed") == 0);
    /* Stats still answer; closing again is OK. */
    CHECK_OK(tierstack_cache_stats_json(cache, &json));
    tierstack_string_free(json);
    CHECK_OK(tierstack_cache_close(cache));

    /* The value survived in the file. */
    tierstack_cache_free(cache);
    cache = open_in(dir, "");
    CHECK_OK(tierstack_cache_get(cache, K("k"), &value));
    CHECK_VALUE(value, "v");
    done();
}

static void test_storage_errors(void) {
    dir = tmp_dir_new();
    /* A value larger than the L2 budget. */
    char *config = config_in(dir, "");
    char small_budget[512];
    snprintf(small_budget, sizeof small_budget,
             "{\"sqlite\": {\"path\": \"%s/small.db\", \"max_bytes\": 1000}}", dir);
    CHECK_OK(tierstack_cache_open(small_budget, &cache));
    static uint8_t big[2000];
    CHECK_RESULT(tierstack_cache_set(cache, K("big"), big, sizeof big, 0),
                 TIERSTACK_RESULT_INVALID_ARGUMENT);
    tierstack_cache_free(cache);
    cache = NULL;

    /* Memory only: a value larger than the L1 budget has no tier to go to. The
     * refused write changes nothing. */
    CHECK_OK(tierstack_cache_open(
        "{\"memory\": {\"max_bytes\": 1000}, \"sqlite\": {\"enabled\": false}}", &cache));
    CHECK_OK(tierstack_cache_set(cache, K("big"), D("old"), 0));
    CHECK_RESULT(tierstack_cache_set(cache, K("big"), big, sizeof big, 0),
                 TIERSTACK_RESULT_INVALID_ARGUMENT);
    CHECK(strstr(last_error(), "value for \"big\" needs 2099 bytes in L1") != NULL);
    CHECK(strstr(last_error(), "memory.max_bytes is 1000") != NULL);
    CHECK(strstr(last_error(), "sqlite is disabled, so no tier can hold it") != NULL);
    tierstack_value *value = NULL;
    CHECK_OK(tierstack_cache_get(cache, K("big"), &value));
    CHECK_VALUE(value, "old");
    tierstack_cache_free(cache);
    cache = NULL;

    /* A file that is not a database is refused and left untouched. */
    char *path = path_join(dir, "cache.db");
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    for (int i = 0; f != NULL && i < 256; i++) {
        fputs("this is not a sqlite database. ", f);
    }
    if (f != NULL) {
        fclose(f);
    }
    tierstack_cache *c = NO_CACHE;
    CHECK_RESULT(tierstack_cache_open(config, &c), TIERSTACK_RESULT_CORRUPT);
    CHECK(c == NO_CACHE);
    CHECK(file_contains(path, (const uint8_t *)"this is not a sqlite database. ", 31));

    /* A path whose directory cannot be created (its parent is a file). */
    char bad[512];
    snprintf(bad, sizeof bad, "{\"sqlite\": {\"path\": \"%s/cache.db/sub/c.db\"}}", dir);
    CHECK_RESULT(tierstack_cache_open(bad, &c), TIERSTACK_RESULT_IO);
    CHECK(c == NO_CACHE);
    free(path);
    free(config);
    done();
}

int main(void) {
    check_case("result names and version", test_names_and_version);
    check_case("result message buffer protocol", test_result_message_buffers);
    check_case("last error message is per thread, with the buffer protocol",
               test_last_error_message);
    check_case("open, close twice, free, free NULL", test_open_close_free);
    check_case("bad configs are invalid_config", test_bad_configs);
    check_case("NULL config takes defaults and TIERSTACK_DB_PATH", test_default_config_and_env_path);
    check_case("set, get, miss, binary and empty values", test_set_get_miss);
    check_case("lookup reports the tier; a restart serves from sqlite", test_lookup_and_restart);
    check_case("memory-only and sqlite-only configs", test_tier_configs);
    check_case("has and delete", test_has_and_delete);
    check_case("mget and mset", test_mget_mset);
    check_case("keys_json, len and clear", test_keys_len_clear);
    check_case("a damaged file is set aside, rebuilt and counted in stats",
               test_damaged_file_is_rebuilt);
    check_case("TTLs: expiry, defaults, unusable numbers", test_ttls);
    check_case("the test clock moves test-clock caches only; unusable seconds are refused",
               test_advance_test_clock);
    check_case("a 1 MiB key gives a short message", test_huge_key_messages);
    check_case("tags and invalidate_tag", test_tags);
    check_case("flush makes writes durable in the main file", test_flush_reaches_the_main_file);
    check_case("stats_json and reset_stats", test_stats_json);
    check_case("stats_json counts other caches' changes", test_stats_count_other_caches_changes);
    check_case("NULL arguments everywhere", test_null_arguments);
    check_case("invalid and non-UTF-8 keys", test_invalid_keys);
    check_case("use after close", test_use_after_close);
    check_case("storage errors: too large for L2 or for L1 alone, corrupt file, unusable path", test_storage_errors);
    return check_summary();
}
