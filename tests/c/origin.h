/*
 * The loopback origin for the C tests: `tierstack-origin` (its path in
 * $TIERSTACK_ORIGIN_BIN, set by tests/run-c) run as a child process, and
 * a small HTTP/1.1 client for its api listener: the control API under
 * /_origin/ and the writable store under /store/ (tests/origin/src/lib.rs).
 */
#ifndef TIERSTACK_TEST_ORIGIN_H
#define TIERSTACK_TEST_ORIGIN_H

#include <stdbool.h>
#include <stddef.h>

/* The origin's URLs ("http://127.0.0.1:PORT"), set by origin_start. */
extern char origin_api[128], origin_raw[128], origin_other[128];

/* Starts $TIERSTACK_ORIGIN_BIN with a pipe on its stdin and reads the JSON
 * line of its URLs. Call it before any cache is opened (and so before
 * tierstack starts any thread): it forks. */
bool origin_start(void);

/* Uses the api listener at `api_url` (an origin another process started,
 * e.g. a test's parent) for origin_http; false if the URL does not parse. */
bool origin_attach(const char *api_url);

/* Closes the origin's stdin (it exits at EOF) and reaps it. */
void origin_stop(void);

/* One HTTP/1.1 exchange with the api listener (`Connection: close`):
 * `method` on `path`, with `headers` (NULL, or lines each ending in
 * "\r\n") and `payload_len` bytes of `payload`. Returns the status, and the
 * body in *body (malloc'd, NUL-terminated; may be NULL); -1 when the
 * exchange itself failed. Any thread may call it. */
int origin_http(const char *method, const char *path, const char *headers, const void *payload,
                size_t payload_len, char **body);

#endif
