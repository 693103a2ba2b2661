/* The test harness of check.h. */
#define _POSIX_C_SOURCE 200809L

#include "check.h"

#include <dirent.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define RESULT(name) {TIERSTACK_RESULT_##name, #name}
const result_constant every_result[] = {
    RESULT(OK),           RESULT(INVALID_KEY), RESULT(INVALID_CONFIG), RESULT(INVALID_ARGUMENT),
    RESULT(CLOSED),       RESULT(STORAGE),     RESULT(IO),             RESULT(CORRUPT),
    RESULT(INCOMPATIBLE), RESULT(INTERNAL),    RESULT(INVALID_VALUE),  RESULT(READ_ONLY),
    RESULT(SOURCE),       RESULT(SOURCE_UNAVAILABLE), RESULT(TIMEOUT)};
#undef RESULT
const size_t every_result_count = sizeof every_result / sizeof every_result[0];

tierstack_result unknown_result_code(void) {
    tierstack_result next = 0;
    for (size_t i = 0; i < every_result_count; i++) {
        if (every_result[i].code >= next) {
            next = every_result[i].code + 1;
        }
    }
    return next;
}

static atomic_int failed_checks;
static int cases_passed, cases_failed;

const char *last_error(void) {
    static _Thread_local char buf[512];
    size_t n = 0;
    if (tierstack_last_error_message(buf, sizeof buf, &n) != TIERSTACK_RESULT_OK) {
        snprintf(buf, sizeof buf, "(tierstack_last_error_message failed)");
    }
    return buf;
}

bool check_at(bool ok, const char *expr, const char *file, int line) {
    if (!ok) {
        atomic_fetch_add(&failed_checks, 1);
        fprintf(stderr, "  %s:%d: check failed: %s (last error: %s)\n", file, line, expr,
                last_error());
    }
    return ok;
}

bool check_result_at(tierstack_result got, tierstack_result want, const char *expr,
                     const char *file, int line) {
    if (got == want) {
        return true;
    }
    atomic_fetch_add(&failed_checks, 1);
    fprintf(stderr, "  %s:%d: %s returned %s, expected %s (last error: %s)\n", file, line, expr,
            tierstack_result_name(got), tierstack_result_name(want), last_error());
    return false;
}

bool check_bytes_at(const void *data, size_t len, const char *want, const char *expr,
                    const char *file, int line) {
    size_t want_len = strlen(want);
    if (data != NULL && len == want_len && memcmp(data, want, len) == 0) {
        return true;
    }
    atomic_fetch_add(&failed_checks, 1);
    fprintf(stderr, "  %s:%d: %s is \"%.*s\" (%zu bytes), expected \"%s\"\n", file, line, expr,
            data ? (int)len : 0, data ? (const char *)data : "", len, want);
    return false;
}

bool check_value_at(tierstack_value *value, const char *want, const char *expr, const char *file,
                    int line) {
    bool ok = check_at(value != NULL, expr, file, line) &&
              check_bytes_at(tierstack_value_data(value), tierstack_value_len(value), want, expr,
                             file, line);
    tierstack_value_free(value);
    return ok;
}

void check_case(const char *name, void (*run)(void)) {
    int before = atomic_load(&failed_checks);
    run();
    if (atomic_load(&failed_checks) == before) {
        cases_passed++;
        printf("ok %s\n", name);
    } else {
        cases_failed++;
        printf("FAIL %s\n", name);
    }
    fflush(stdout);
}

int check_summary(void) {
    printf("cases: %d passed, %d failed\n", cases_passed, cases_failed);
    return cases_failed == 0 && cases_passed > 0 ? 0 : 1;
}

char *tmp_dir_new(void) {
    const char *base = getenv("TMPDIR");
    char *dir = path_join(base && *base ? base : "/tmp", "tierstack-c-XXXXXX");
    if (mkdtemp(dir) == NULL) {
        fprintf(stderr, "mkdtemp %s: %s\n", dir, strerror(errno));
        abort();
    }
    return dir;
}

void tmp_dir_remove(char *dir) {
    DIR *d = opendir(dir);
    if (d != NULL) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) {
                char *path = path_join(dir, e->d_name);
                unlink(path);
                free(path);
            }
        }
        closedir(d);
    }
    rmdir(dir);
    free(dir);
}

char *path_join(const char *dir, const char *name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *path = malloc(n);
    if (path == NULL) {
        abort();
    }
    snprintf(path, n, "%s/%s", dir, name);
    return path;
}

char *config_in(const char *dir, const char *extra) {
    /* mkdtemp names need no JSON escaping; $TMPDIR is checked here. */
    if (strpbrk(dir, "\"\\") != NULL) {
        fprintf(stderr, "TMPDIR %s needs JSON escaping, which these tests do not do\n", dir);
        abort();
    }
    size_t n = strlen(dir) + strlen(extra) + 64;
    char *json = malloc(n);
    if (json == NULL) {
        abort();
    }
    snprintf(json, n, "{\"sqlite\": {\"path\": \"%s/cache.db\"}%s%s}", dir, *extra ? ", " : "",
             extra);
    return json;
}

tierstack_cache *open_in(const char *dir, const char *extra) {
    char *config = config_in(dir, extra);
    tierstack_cache *cache = NULL;
    tierstack_result r = tierstack_cache_open(config, &cache);
    check_result_at(r, TIERSTACK_RESULT_OK, config, __FILE__, __LINE__);
    free(config);
    return r == TIERSTACK_RESULT_OK ? cache : NULL;
}

void sleep_seconds(double seconds) {
    struct timespec ts;
    ts.tv_sec = (time_t)seconds;
    ts.tv_nsec = (long)((seconds - (double)ts.tv_sec) * 1e9);
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}
