/*
 * A small JSON reader and compact writer for the conformance runner.
 *
 * Strings keep their byte length, so "\u0000" inside a string survives
 * (cJSON, which ends strings at the first NUL, cannot carry the vectors'
 * "nul\u0000byte" key). Numbers keep their source text, so writing a parsed
 * document back gives the same numbers.
 */
#ifndef TIERSTACK_TEST_JSON_H
#define TIERSTACK_TEST_JSON_H

#include <stdbool.h>
#include <stddef.h>

typedef enum { JSON_NULL, JSON_BOOL, JSON_NUMBER, JSON_STRING, JSON_ARRAY, JSON_OBJECT } json_type;

typedef struct json json;

typedef struct {
    char *key;
    size_t key_len;
    json *value;
} json_member;

struct json {
    json_type type;
    bool boolean;         /* JSON_BOOL */
    double number;        /* JSON_NUMBER */
    char *text;           /* JSON_STRING: the bytes (NUL-terminated too); JSON_NUMBER: source */
    size_t len;           /* length of text */
    json **items;         /* JSON_ARRAY */
    json_member *members; /* JSON_OBJECT, in document order */
    size_t n;             /* number of items or members */
};

/* Parses `len` bytes; NULL on an error, described in `err`. */
json *json_parse(const char *text, size_t len, char *err, size_t err_len);
void json_free(json *value);

/* The member `key` of an object, or NULL. */
const json *json_get(const json *object, const char *key);
/* Structural equality: objects compare as sets of members, numbers by value. */
bool json_equal(const json *a, const json *b);

json *json_new(json_type type);
json *json_new_string(const char *bytes, size_t len);
json *json_new_number(double number);
json *json_new_bool(bool value);
void json_push(json *array, json *item);
void json_set(json *object, const char *key, size_t key_len, json *value);

/* A growable byte buffer, NUL-terminated. */
typedef struct {
    char *data;
    size_t len, cap;
} json_buf;

void json_buf_append(json_buf *buf, const char *bytes, size_t len);
void json_buf_free(json_buf *buf);
/* Appends `value` as compact JSON (no spaces, non-ASCII kept as UTF-8). */
void json_write(json_buf *out, const json *value);
void json_write_string(json_buf *out, const char *bytes, size_t len);

#endif
