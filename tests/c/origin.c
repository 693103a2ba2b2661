/*
 * The loopback origin (`tierstack-origin`, whose path is in
 * $TIERSTACK_ORIGIN_BIN) as a child process of a test, and a small
 * HTTP/1.1 client for its api listener (the control API under /_origin/
 * and the writable store under /store/). See origin.h.
 */
#define _POSIX_C_SOURCE 200809L

#include "origin.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jansson.h>

#include "check.h"

char origin_api[128], origin_raw[128], origin_other[128];

static pid_t origin_pid = -1;
static int origin_stdin = -1; /* the origin exits when this is closed */
static struct sockaddr_in api_addr;

/* Copies the string member `key` of `object` into `out`. */
static bool copy_member(const json_t *object, const char *key, char *out, size_t len) {
    const json_t *v = json_object_get(object, key);
    if (!json_is_string(v) || json_string_length(v) >= len) {
        return false;
    }
    memcpy(out, json_string_value(v), json_string_length(v) + 1);
    return true;
}

/* Parses "http://127.0.0.1:PORT" into an IPv4 address. */
static bool parse_url(const char *url, struct sockaddr_in *addr) {
    const char *prefix = "http://";
    if (strncmp(url, prefix, strlen(prefix)) != 0) {
        return false;
    }
    char host[64];
    const char *hp = url + strlen(prefix);
    const char *colon = strchr(hp, ':');
    if (colon == NULL || (size_t)(colon - hp) >= sizeof host) {
        return false;
    }
    memcpy(host, hp, (size_t)(colon - hp));
    host[colon - hp] = '\0';
    long port = strtol(colon + 1, NULL, 10);
    memset(addr, 0, sizeof *addr);
    addr->sin_family = AF_INET;
    addr->sin_port = htons((uint16_t)port);
    return port > 0 && port < 65536 && inet_pton(AF_INET, host, &addr->sin_addr) == 1;
}

bool origin_start(void) {
    const char *bin = getenv("TIERSTACK_ORIGIN_BIN");
    if (bin == NULL || *bin == '\0') {
        fprintf(stderr, "TIERSTACK_ORIGIN_BIN is not set (tests/run-c sets it)\n");
        return false;
    }
    int in[2], out[2];
    if (pipe(in) != 0 || pipe(out) != 0) {
        perror("pipe");
        return false;
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        return false;
    }
    if (pid == 0) {
        dup2(in[0], STDIN_FILENO);
        dup2(out[1], STDOUT_FILENO);
        close(in[0]), close(in[1]), close(out[0]), close(out[1]);
        execl(bin, bin, (char *)NULL);
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    fcntl(in[1], F_SETFD, FD_CLOEXEC);
    origin_pid = pid;
    origin_stdin = in[1];

    char line[1024];
    FILE *urls = fdopen(out[0], "r");
    bool ok = urls != NULL && fgets(line, sizeof line, urls) != NULL;
    if (urls != NULL) {
        fclose(urls);
    }
    if (!ok) {
        fprintf(stderr, "%s printed no line of URLs\n", bin);
        return false;
    }
    json_t *doc = json_loads(line, 0, NULL);
    ok = doc != NULL && copy_member(doc, "api", origin_api, sizeof origin_api) &&
         copy_member(doc, "raw", origin_raw, sizeof origin_raw) &&
         copy_member(doc, "other", origin_other, sizeof origin_other) &&
         parse_url(origin_api, &api_addr);
    json_decref(doc);
    if (!ok) {
        fprintf(stderr, "cannot read the origin's URLs from: %s\n", line);
    }
    return ok;
}

bool origin_attach(const char *api_url) {
    size_t len = strlen(api_url);
    if (len >= sizeof origin_api) {
        return false;
    }
    memcpy(origin_api, api_url, len + 1);
    return parse_url(origin_api, &api_addr);
}

void origin_stop(void) {
    if (origin_stdin >= 0) {
        close(origin_stdin);
        origin_stdin = -1;
    }
    if (origin_pid > 0) {
        int status;
        for (int i = 0; i < 500; i++) {
            if (waitpid(origin_pid, &status, WNOHANG) == origin_pid) {
                origin_pid = -1;
                return;
            }
            sleep_seconds(0.01);
        }
        kill(origin_pid, SIGKILL);
        waitpid(origin_pid, &status, 0);
        origin_pid = -1;
    }
}


int origin_http(const char *method, const char *path, const char *headers, const void *payload,
                size_t payload_len, char **body) {
    if (body != NULL) {
        *body = NULL;
    }
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) {
        return -1;
    }
    if (connect(fd, (const struct sockaddr *)&api_addr, sizeof api_addr) != 0) {
        close(fd);
        return -1;
    }
    char head[1024];
    int n = snprintf(head, sizeof head,
                     "%s %s HTTP/1.1\r\nHost: %s\r\n%sContent-Length: %zu\r\n"
                     "Connection: close\r\n\r\n",
                     method, path, origin_api + strlen("http://"), headers != NULL ? headers : "",
                     payload_len);
    if (n < 0 || (size_t)n >= sizeof head) {
        close(fd);
        return -1;
    }
    char *req = NULL;
    size_t req_len = 0;
    FILE *out = open_memstream(&req, &req_len);
    fwrite(head, 1, (size_t)n, out);
    if (payload_len > 0) {
        fwrite(payload, 1, payload_len, out);
    }
    fclose(out);
    size_t sent = 0;
    while (sent < req_len) {
        ssize_t w = send(fd, req + sent, req_len - sent, 0);
        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w <= 0) {
            free(req);
            close(fd);
            return -1;
        }
        sent += (size_t)w;
    }
    free(req);

    /* The answer: read to EOF (the server closes after it). */
    char *resp = NULL;
    size_t resp_len = 0;
    FILE *in = open_memstream(&resp, &resp_len);
    char chunk[4096];
    for (;;) {
        ssize_t r = recv(fd, chunk, sizeof chunk, 0);
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r <= 0) {
            break;
        }
        fwrite(chunk, 1, (size_t)r, in);
    }
    close(fd);
    fclose(in);

    int status = -1;
    const char *end = strstr(resp, "\r\n\r\n");
    if (end != NULL && sscanf(resp, "HTTP/1.1 %d", &status) == 1) {
        const char *start = end + 4;
        size_t len = resp_len - (size_t)(start - resp);
        /* The head's Content-Length must match what arrived; a 204 has
         * neither. */
        const char *cl = strstr(resp, "Content-Length: ");
        bool no_content = status == 204 && len == 0 && (cl == NULL || cl > end);
        if (!no_content && (cl == NULL || cl > end || strtoul(cl + 16, NULL, 10) != len)) {
            status = -1;
        } else if (body != NULL) {
            *body = malloc(len + 1);
            if (*body == NULL) {
                abort();
            }
            memcpy(*body, start, len);
            (*body)[len] = '\0';
        }
    }
    free(resp);
    return status;
}
