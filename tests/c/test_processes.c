/*
 * Loading across processes sharing one L2 file: forked children, each
 * opening its own cache, count their loader calls in shared memory. The
 * parent never opens a cache, so each child starts clean.
 */
#define _DEFAULT_SOURCE /* MAP_ANONYMOUS */
#define _POSIX_C_SOURCE 200809L

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"

/* Shared between the parent and its children (an anonymous shared map). */
typedef struct {
    atomic_int loader_calls;
    atomic_int entered;      /* threads about to call get_or_load */
    atomic_bool go;          /* children start their calls together */
    atomic_bool holding;     /* the lease holder's loader is running */
} shared;

static shared *sh;
static char *config;

/* A failed expectation in a child: printed, and the child exits non-zero. */
static atomic_int child_failures;
#define EXPECT(cond)                                                                  \
    do {                                                                              \
        if (!(cond)) {                                                                \
            atomic_fetch_add(&child_failures, 1);                                     \
            fprintf(stderr, "child %d: %s:%d: %s (%s)\n", (int)getpid(), __FILE__,     \
                    __LINE__, #cond, last_error());                                   \
        }                                                                             \
    } while (0)

static tierstack_result counting_loader(void *user_data, const char *key, size_t key_len,
                                        tierstack_load *load) {
    (void)key, (void)key_len;
    atomic_fetch_add(&sh->loader_calls, 1);
    sleep_seconds(*(double *)user_data);
    return tierstack_load_value(load, (const uint8_t *)"loaded", 6, 0);
}

/* The lease holder's loader: announces itself, then never answers. */
static tierstack_result blocking_loader(void *user_data, const char *key, size_t key_len,
                                        tierstack_load *load) {
    (void)user_data, (void)key, (void)key_len, (void)load;
    atomic_fetch_add(&sh->loader_calls, 1);
    atomic_store(&sh->holding, true);
    for (;;) {
        pause();
    }
    return TIERSTACK_RESULT_OK;
}

static tierstack_cache *child_cache;
static double loader_sleep;

static void *child_thread(void *arg) {
    (void)arg;
    atomic_fetch_add(&sh->entered, 1);
    while (!atomic_load(&sh->go)) {
        sleep_seconds(0.001);
    }
    tierstack_value *value = NULL;
    tierstack_result res = tierstack_cache_get_or_load(child_cache, "hot", 3, counting_loader,
                                                       &loader_sleep, 0, &value);
    EXPECT(res == TIERSTACK_RESULT_OK);
    EXPECT(value != NULL && tierstack_value_len(value) == 6 &&
           memcmp(tierstack_value_data(value), "loaded", 6) == 0);
    tierstack_value_free(value);
    return NULL;
}

/* A child: opens its cache, runs `threads` get_or_load calls of "hot" at
 * once, exits with the number of failed expectations. */
static pid_t spawn_loaders(int threads, double sleep) {
    fflush(NULL);
    pid_t pid = fork();
    if (pid != 0) {
        return pid;
    }
    loader_sleep = sleep;
    EXPECT(tierstack_cache_open(config, &child_cache) == TIERSTACK_RESULT_OK);
    pthread_t tids[16];
    for (int i = 0; i < threads && i < 16; i++) {
        EXPECT(pthread_create(&tids[i], NULL, child_thread, NULL) == 0);
    }
    for (int i = 0; i < threads && i < 16; i++) {
        pthread_join(tids[i], NULL);
    }
    tierstack_cache_free(child_cache);
    exit(atomic_load(&child_failures) == 0 ? 0 : 1);
}

/* Waits for `pid` at most `seconds`; kills it past that. Its exit status,
 * or -1 if it had to be killed or did not exit normally. */
static int reap(pid_t pid, double seconds) {
    int status = 0;
    for (double waited = 0; waited < seconds; waited += 0.01) {
        pid_t done = waitpid(pid, &status, WNOHANG);
        if (done == pid) {
            return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
        }
        sleep_seconds(0.01);
    }
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    return -1;
}

static void reset(const char *dir, const char *extra) {
    memset(sh, 0, sizeof *sh);
    free(config);
    config = config_in(dir, extra);
}

static void test_four_processes_one_loader_call(void) {
    char *dir = tmp_dir_new();
    reset(dir, "");
    enum { PROCESSES = 4, THREADS = 10 };
    pid_t pids[PROCESSES];
    for (int i = 0; i < PROCESSES; i++) {
        pids[i] = spawn_loaders(THREADS, 0.3);
    }
    for (int i = 0; i < 3000 && atomic_load(&sh->entered) < PROCESSES * THREADS; i++) {
        sleep_seconds(0.01);
    }
    CHECK(atomic_load(&sh->entered) == PROCESSES * THREADS);
    atomic_store(&sh->go, true);
    for (int i = 0; i < PROCESSES; i++) {
        CHECK(reap(pids[i], 120) == 0);
    }
    CHECK(atomic_load(&sh->loader_calls) == 1);
    tmp_dir_remove(dir);
}

static void test_killed_lease_holder_is_taken_over(void) {
    char *dir = tmp_dir_new();
    reset(dir, "\"fail_safe\": {\"hard_timeout\": 1}");
    /* The holder: takes the lease, its loader blocks for ever. Its hard
     * timeout (and so its lease) is long: only its death frees the key. */
    char *holder_config = config_in(dir, "\"fail_safe\": {\"hard_timeout\": 600}");
    fflush(NULL);
    pid_t holder = fork();
    if (holder == 0) {
        tierstack_cache *cache = NULL;
        tierstack_value *value = NULL;
        if (tierstack_cache_open(holder_config, &cache) == TIERSTACK_RESULT_OK) {
            tierstack_cache_get_or_load(cache, "hot", 3, blocking_loader, NULL, 0, &value);
        }
        for (;;) {
            pause(); /* until the parent kills it */
        }
    }
    for (int i = 0; i < 3000 && !atomic_load(&sh->holding); i++) {
        sleep_seconds(0.01);
    }
    CHECK(atomic_load(&sh->holding));

    /* Two more processes miss the key and wait on the holder's lease. */
    enum { THREADS = 5 };
    atomic_store(&sh->go, true);
    pid_t waiters[2] = {spawn_loaders(THREADS, 0), spawn_loaders(THREADS, 0)};
    for (int i = 0; i < 3000 && atomic_load(&sh->entered) < 2 * THREADS; i++) {
        sleep_seconds(0.01);
    }
    /* Longer than the waiters' own hard timeout, which bounds their
     * fetch once they take over, not their wait. */
    sleep_seconds(1.3);
    CHECK(atomic_load(&sh->loader_calls) == 1);

    kill(holder, SIGKILL);
    int status = 0;
    CHECK(waitpid(holder, &status, 0) == holder && WIFSIGNALED(status));
    for (int i = 0; i < 2; i++) {
        CHECK(reap(waiters[i], 60) == 0);
    }
    /* The holder's call, then exactly one load by a waiter. */
    CHECK(atomic_load(&sh->loader_calls) == 2);
    free(holder_config);
    tmp_dir_remove(dir);
}

int main(void) {
    sh = mmap(NULL, sizeof *sh, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (sh == MAP_FAILED) {
        perror("mmap");
        return 1;
    }
    check_case("4 processes x 10 threads missing one key: one loader call",
               test_four_processes_one_loader_call);
    check_case("a SIGKILLed lease holder: another process loads, every caller gets the value",
               test_killed_lease_holder_is_taken_over);
    free(config);
    munmap(sh, sizeof *sh);
    return check_summary();
}
