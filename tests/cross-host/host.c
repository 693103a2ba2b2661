/* The C participant of the cross-host test (see run.py):
 *   host FILE write KEY HEX    stores the bytes HEX under KEY
 *   host FILE read KEY         prints the value as hex, or MISS
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tierstack.h"

static int fail(const char *what, tierstack_result r) {
    char buf[512];
    size_t n = 0;
    tierstack_last_error_message(buf, sizeof buf, &n);
    fprintf(stderr, "%s: %s: %s\n", what, tierstack_result_name(r), buf);
    return 1;
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: host FILE (write KEY HEX | read KEY)\n");
        return 2;
    }
    char config[4096];
    snprintf(config, sizeof config, "{\"sqlite\": {\"path\": \"%s\"}}", argv[1]);
    tierstack_cache *cache = NULL;
    tierstack_result r = tierstack_cache_open(config, &cache);
    if (r != TIERSTACK_RESULT_OK) return fail("open", r);
    const char *key = argv[3];
    int status = 0;
    if (strcmp(argv[2], "write") == 0 && argc == 5) {
        size_t n = strlen(argv[4]) / 2;
        unsigned char *data = malloc(n + 1);
        for (size_t i = 0; i < n; i++) {
            unsigned int byte = 0;
            sscanf(argv[4] + 2 * i, "%2x", &byte);
            data[i] = (unsigned char)byte;
        }
        r = tierstack_cache_set(cache, key, strlen(key), data, n, 0);
        free(data);
        if (r != TIERSTACK_RESULT_OK) status = fail("set", r);
    } else if (strcmp(argv[2], "read") == 0 && argc == 4) {
        tierstack_value *value = NULL;
        r = tierstack_cache_get(cache, key, strlen(key), &value);
        if (r != TIERSTACK_RESULT_OK) {
            status = fail("get", r);
        } else if (value == NULL) {
            printf("MISS\n");
        } else {
            const uint8_t *data = tierstack_value_data(value);
            for (size_t i = 0; i < tierstack_value_len(value); i++) printf("%02x", data[i]);
            printf("\n");
            tierstack_value_free(value);
        }
    } else {
        fprintf(stderr, "usage: host FILE (write KEY HEX | read KEY)\n");
        status = 2;
    }
    r = tierstack_cache_close(cache);
    if (r != TIERSTACK_RESULT_OK && status == 0) status = fail("close", r);
    tierstack_cache_free(cache);
    return status;
}
