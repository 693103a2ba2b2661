/* The JSON reader and writer of json.h. */
#include "json.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void *xrealloc(void *p, size_t n) {
    void *q = realloc(p, n ? n : 1);
    if (q == NULL) {
        abort();
    }
    return q;
}

/* ---- building ---- */

json *json_new(json_type type) {
    json *v = xrealloc(NULL, sizeof *v);
    memset(v, 0, sizeof *v);
    v->type = type;
    return v;
}

json *json_new_string(const char *bytes, size_t len) {
    json *v = json_new(JSON_STRING);
    v->text = xrealloc(NULL, len + 1);
    if (len > 0) {
        memcpy(v->text, bytes, len);
    }
    v->text[len] = '\0';
    v->len = len;
    return v;
}

json *json_new_number(double number) {
    json *v = json_new(JSON_NUMBER);
    char text[64];
    int n = snprintf(text, sizeof text, "%.17g", number);
    v->number = number;
    v->text = xrealloc(NULL, (size_t)n + 1);
    memcpy(v->text, text, (size_t)n + 1);
    v->len = (size_t)n;
    return v;
}

json *json_new_bool(bool value) {
    json *v = json_new(JSON_BOOL);
    v->boolean = value;
    return v;
}

void json_push(json *array, json *item) {
    array->items = xrealloc(array->items, (array->n + 1) * sizeof *array->items);
    array->items[array->n++] = item;
}

void json_set(json *object, const char *key, size_t key_len, json *value) {
    object->members = xrealloc(object->members, (object->n + 1) * sizeof *object->members);
    json_member *m = &object->members[object->n++];
    m->key = xrealloc(NULL, key_len + 1);
    memcpy(m->key, key, key_len);
    m->key[key_len] = '\0';
    m->key_len = key_len;
    m->value = value;
}

void json_free(json *v) {
    if (v == NULL) {
        return;
    }
    for (size_t i = 0; v->type == JSON_ARRAY && i < v->n; i++) {
        json_free(v->items[i]);
    }
    for (size_t i = 0; v->type == JSON_OBJECT && i < v->n; i++) {
        free(v->members[i].key);
        json_free(v->members[i].value);
    }
    free(v->items);
    free(v->members);
    free(v->text);
    free(v);
}

/* ---- reading ---- */

typedef struct {
    const char *s;
    size_t len, at;
    char *err;
    size_t err_len;
    bool failed;
} parser;

static json *fail(parser *p, const char *what) {
    if (!p->failed) {
        snprintf(p->err, p->err_len, "%s at byte %zu", what, p->at);
        p->failed = true;
    }
    return NULL;
}

static void skip_space(parser *p) {
    while (p->at < p->len && strchr(" \t\r\n", p->s[p->at]) != NULL && p->s[p->at] != '\0') {
        p->at++;
    }
}

static bool literal(parser *p, const char *word) {
    size_t n = strlen(word);
    if (p->len - p->at >= n && memcmp(p->s + p->at, word, n) == 0) {
        p->at += n;
        return true;
    }
    return false;
}

static int hex4(parser *p) {
    if (p->len - p->at < 4) {
        return -1;
    }
    int code = 0;
    for (int i = 0; i < 4; i++) {
        char c = p->s[p->at++];
        int d = c >= '0' && c <= '9'   ? c - '0'
                : c >= 'a' && c <= 'f' ? c - 'a' + 10
                : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                       : -1;
        if (d < 0) {
            return -1;
        }
        code = code * 16 + d;
    }
    return code;
}

static void put_utf8(json_buf *b, uint32_t c) {
    char u[4];
    size_t n;
    if (c < 0x80) {
        u[0] = (char)c, n = 1;
    } else if (c < 0x800) {
        u[0] = (char)(0xc0 | c >> 6), u[1] = (char)(0x80 | (c & 0x3f)), n = 2;
    } else if (c < 0x10000) {
        u[0] = (char)(0xe0 | c >> 12), u[1] = (char)(0x80 | ((c >> 6) & 0x3f));
        u[2] = (char)(0x80 | (c & 0x3f)), n = 3;
    } else {
        u[0] = (char)(0xf0 | c >> 18), u[1] = (char)(0x80 | ((c >> 12) & 0x3f));
        u[2] = (char)(0x80 | ((c >> 6) & 0x3f)), u[3] = (char)(0x80 | (c & 0x3f)), n = 4;
    }
    json_buf_append(b, u, n);
}

/* A string after its opening quote, into `out`. */
static bool string_body(parser *p, json_buf *out) {
    while (p->at < p->len) {
        unsigned char c = (unsigned char)p->s[p->at++];
        if (c == '"') {
            return true;
        }
        if (c < 0x20) {
            fail(p, "control character in a string");
            return false;
        }
        if (c != '\\') {
            json_buf_append(out, (const char *)&c, 1);
            continue;
        }
        if (p->at >= p->len) {
            break;
        }
        char e = p->s[p->at++];
        const char *plain = strchr("\"\\/bfnrt", e);
        if (plain != NULL && e != '\0') {
            const char *decoded = "\"\\/\b\f\n\r\t";
            json_buf_append(out, decoded + (plain - "\"\\/bfnrt"), 1);
            continue;
        }
        if (e != 'u') {
            fail(p, "bad escape");
            return false;
        }
        int code = hex4(p);
        if (code >= 0xd800 && code < 0xdc00) {
            int low = literal(p, "\\u") ? hex4(p) : -1;
            if (low < 0xdc00 || low >= 0xe000) {
                fail(p, "unpaired surrogate");
                return false;
            }
            code = 0x10000 + ((code - 0xd800) << 10) + (low - 0xdc00);
        } else if (code < 0 || (code >= 0xdc00 && code < 0xe000)) {
            fail(p, "bad \\u escape");
            return false;
        }
        put_utf8(out, (uint32_t)code);
    }
    fail(p, "unterminated string");
    return false;
}

static json *value(parser *p, int depth);

static json *string_value(parser *p) {
    json_buf b = {0};
    json *v = NULL;
    if (string_body(p, &b)) {
        v = json_new_string(b.data, b.len);
    }
    json_buf_free(&b);
    return v;
}

static json *number(parser *p) {
    size_t start = p->at;
    if (p->at < p->len && p->s[p->at] == '-') {
        p->at++;
    }
    while (p->at < p->len && strchr("0123456789+-.eE", p->s[p->at]) != NULL && p->s[p->at]) {
        p->at++;
    }
    size_t n = p->at - start;
    char *text = xrealloc(NULL, n + 1);
    memcpy(text, p->s + start, n);
    text[n] = '\0';
    char *end = NULL;
    double d = strtod(text, &end);
    if (n == 0 || end != text + n || !isfinite(d)) {
        free(text);
        return fail(p, "bad number");
    }
    json *v = json_new(JSON_NUMBER);
    v->number = d;
    v->text = text;
    v->len = n;
    return v;
}

static json *array(parser *p, int depth) {
    json *a = json_new(JSON_ARRAY);
    skip_space(p);
    if (literal(p, "]")) {
        return a;
    }
    for (;;) {
        json *item = value(p, depth + 1);
        if (item == NULL) {
            break;
        }
        json_push(a, item);
        skip_space(p);
        if (literal(p, ",")) {
            continue;
        }
        if (literal(p, "]")) {
            return a;
        }
        fail(p, "expected , or ]");
        break;
    }
    json_free(a);
    return NULL;
}

static json *object(parser *p, int depth) {
    json *o = json_new(JSON_OBJECT);
    skip_space(p);
    if (literal(p, "}")) {
        return o;
    }
    for (;;) {
        skip_space(p);
        if (!literal(p, "\"")) {
            fail(p, "expected a member name");
            break;
        }
        json *key = string_value(p);
        skip_space(p);
        json *item = key != NULL && literal(p, ":") ? value(p, depth + 1) : NULL;
        if (item == NULL) {
            fail(p, "expected : and a value");
            json_free(key);
            break;
        }
        json_set(o, key->text, key->len, item);
        json_free(key);
        skip_space(p);
        if (literal(p, ",")) {
            continue;
        }
        if (literal(p, "}")) {
            return o;
        }
        fail(p, "expected , or }");
        break;
    }
    json_free(o);
    return NULL;
}

static json *value(parser *p, int depth) {
    if (depth > 64) {
        return fail(p, "nested too deeply");
    }
    skip_space(p);
    if (p->at >= p->len) {
        return fail(p, "unexpected end");
    }
    char c = p->s[p->at];
    if (literal(p, "null")) {
        return json_new(JSON_NULL);
    }
    if (literal(p, "true") || literal(p, "false")) {
        return json_new_bool(c == 't');
    }
    p->at++;
    switch (c) {
    case '"':
        return string_value(p);
    case '[':
        return array(p, depth);
    case '{':
        return object(p, depth);
    default:
        p->at--;
        return (c == '-' || (c >= '0' && c <= '9')) ? number(p) : fail(p, "unexpected character");
    }
}

json *json_parse(const char *text, size_t len, char *err, size_t err_len) {
    parser p = {text, len, 0, err, err_len, false};
    json *v = value(&p, 0);
    skip_space(&p);
    if (v != NULL && p.at != len) {
        json_free(v);
        v = fail(&p, "trailing characters");
    }
    return v;
}

/* ---- comparing ---- */

const json *json_get(const json *object, const char *key) {
    size_t n = strlen(key);
    for (size_t i = 0; object != NULL && object->type == JSON_OBJECT && i < object->n; i++) {
        if (object->members[i].key_len == n && memcmp(object->members[i].key, key, n) == 0) {
            return object->members[i].value;
        }
    }
    return NULL;
}

static const json *member(const json *object, const char *key, size_t len) {
    for (size_t i = 0; i < object->n; i++) {
        if (object->members[i].key_len == len && memcmp(object->members[i].key, key, len) == 0) {
            return object->members[i].value;
        }
    }
    return NULL;
}

bool json_equal(const json *a, const json *b) {
    if (a == NULL || b == NULL || a->type != b->type) {
        return a == b;
    }
    switch (a->type) {
    case JSON_NULL:
        return true;
    case JSON_BOOL:
        return a->boolean == b->boolean;
    case JSON_NUMBER:
        return a->number == b->number;
    case JSON_STRING:
        return a->len == b->len && memcmp(a->text, b->text, a->len) == 0;
    case JSON_ARRAY:
        if (a->n != b->n) {
            return false;
        }
        for (size_t i = 0; i < a->n; i++) {
            if (!json_equal(a->items[i], b->items[i])) {
                return false;
            }
        }
        return true;
    case JSON_OBJECT:
        if (a->n != b->n) {
            return false;
        }
        for (size_t i = 0; i < a->n; i++) {
            const json_member *m = &a->members[i];
            if (!json_equal(m->value, member(b, m->key, m->key_len))) {
                return false;
            }
        }
        return true;
    }
    return false;
}

/* ---- writing ---- */

void json_buf_append(json_buf *buf, const char *bytes, size_t len) {
    if (buf->len + len + 1 > buf->cap) {
        buf->cap = (buf->len + len + 1) * 2;
        buf->data = xrealloc(buf->data, buf->cap);
    }
    if (len > 0) {
        memcpy(buf->data + buf->len, bytes, len);
    }
    buf->len += len;
    buf->data[buf->len] = '\0';
}

void json_buf_free(json_buf *buf) {
    free(buf->data);
    buf->data = NULL;
    buf->len = buf->cap = 0;
}

void json_write_string(json_buf *out, const char *bytes, size_t len) {
    json_buf_append(out, "\"", 1);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)bytes[i];
        const char *short_escape = c == '"'    ? "\\\""
                                   : c == '\\' ? "\\\\"
                                   : c == '\n' ? "\\n"
                                   : c == '\r' ? "\\r"
                                   : c == '\t' ? "\\t"
                                   : c == '\b' ? "\\b"
                                   : c == '\f' ? "\\f"
                                               : NULL;
        if (short_escape != NULL) {
            json_buf_append(out, short_escape, 2);
        } else if (c < 0x20) {
            char u[8];
            snprintf(u, sizeof u, "\\u%04x", c);
            json_buf_append(out, u, 6);
        } else {
            json_buf_append(out, (const char *)&c, 1);
        }
    }
    json_buf_append(out, "\"", 1);
}

void json_write(json_buf *out, const json *v) {
    switch (v->type) {
    case JSON_NULL:
        json_buf_append(out, "null", 4);
        break;
    case JSON_BOOL:
        json_buf_append(out, v->boolean ? "true" : "false", v->boolean ? 4 : 5);
        break;
    case JSON_NUMBER:
        json_buf_append(out, v->text, v->len);
        break;
    case JSON_STRING:
        json_write_string(out, v->text, v->len);
        break;
    case JSON_ARRAY:
        json_buf_append(out, "[", 1);
        for (size_t i = 0; i < v->n; i++) {
            json_buf_append(out, ",", i > 0);
            json_write(out, v->items[i]);
        }
        json_buf_append(out, "]", 1);
        break;
    case JSON_OBJECT:
        json_buf_append(out, "{", 1);
        for (size_t i = 0; i < v->n; i++) {
            json_buf_append(out, ",", i > 0);
            json_write_string(out, v->members[i].key, v->members[i].key_len);
            json_buf_append(out, ":", 1);
            json_write(out, v->members[i].value);
        }
        json_buf_append(out, "}", 1);
        break;
    }
}
