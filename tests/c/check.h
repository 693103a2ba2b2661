/*
 * A small test harness for the C and C++ tests: named cases, checks that
 * report file:line, and temporary directories for cache files.
 */
#ifndef TIERSTACK_TEST_CHECK_H
#define TIERSTACK_TEST_CHECK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tierstack.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Counts a check; on failure prints file:line, the expression and this
 * thread's last tierstack error message. Safe to call from any thread. */
bool check_at(bool ok, const char *expr, const char *file, int line);

/* Checks that a call returned `want`; prints both names on a mismatch. */
bool check_result_at(tierstack_result got, tierstack_result want, const char *expr,
                     const char *file, int line);

/* Checks that `len` bytes at `data` equal the NUL-terminated `want`. */
bool check_bytes_at(const void *data, size_t len, const char *want, const char *expr,
                    const char *file, int line);

#define CHECK(cond) check_at((cond), #cond, __FILE__, __LINE__)
#define CHECK_RESULT(call, want) check_result_at((call), (want), #call, __FILE__, __LINE__)
#define CHECK_OK(call) CHECK_RESULT(call, TIERSTACK_RESULT_OK)
#define CHECK_BYTES(data, len, want) check_bytes_at((data), (len), (want), #data, __FILE__, __LINE__)
/* Checks the bytes of a value (NULL fails) and frees it. */
#define CHECK_VALUE(value, want) check_value_at((value), (want), #value, __FILE__, __LINE__)
bool check_value_at(tierstack_value *value, const char *want, const char *expr, const char *file,
                    int line);

/* Runs one named case: prints `ok <name>` or `FAIL <name>` (a case fails when
 * any of its checks fails). */
void check_case(const char *name, void (*run)(void));

/* Prints `cases: <passed> passed, <failed> failed`; the exit status (0 when
 * every case passed and at least one ran). */
int check_summary(void);

/* A new empty directory under $TMPDIR (or /tmp); free with tmp_dir_remove. */
char *tmp_dir_new(void);
/* Removes the directory's files, the directory, and frees `dir`. */
void tmp_dir_remove(char *dir);
/* `<dir>/<name>`, malloc'd. */
char *path_join(const char *dir, const char *name);
/* A config JSON with `sqlite.path` = `<dir>/cache.db` and `extra` (members
 * of the top-level object, or "" for none), malloc'd. */
char *config_in(const char *dir, const char *extra);
/* Opens a cache with `config_in(dir, extra)`; NULL (a failed check) if it
 * cannot. */
tierstack_cache *open_in(const char *dir, const char *extra);

/* Every result constant of tierstack.h, with its name as spelled there
 * (TIERSTACK_RESULT_<constant>). */
typedef struct {
    tierstack_result code;
    const char *constant;
} result_constant;
extern const result_constant every_result[];
extern const size_t every_result_count;
/* A code that is no result: one more than the largest constant. */
tierstack_result unknown_result_code(void);

/* Sleeps `seconds` (fractions allowed). */
void sleep_seconds(double seconds);

/* The calling thread's last error message, in a static per-thread buffer. */
const char *last_error(void);

#ifdef __cplusplus
}
#endif

#endif
