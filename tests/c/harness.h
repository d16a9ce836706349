/*
 * The test harness shared by the C test programs (tests/c/test_*.c), in plain C99 + pthreads.
 *
 * - CHECK(cond), CHECKF(cond, fmt, ...): count a check; a failure prints "FAIL file:line: ...".
 *   Thread-safe: worker threads may check too.
 * - g_err is the error slot of calls whose status is checked on the main thread:
 *   CHECK_STATUS(expr, status) and CHECK_ERR(expr, status, needle) expect `expr` (which passes
 *   &g_err) to return that status with an error object of the same code whose message contains
 *   `needle`; they free it.
 * - CHECK_OK(expr): `expr` succeeds and stores no error. It declares a local error slot `e_`
 *   for `expr` to pass (&e_, usable from any thread); `expr` may pass &g_err instead.
 * - RUN(test): run one test function, print its name, outcome and time on stderr.
 * - harness_begin() reads SPECDEC_TEST_QUICK into g_quick (1: trim the slow repetitions, used
 *   under valgrind); harness_end() prints the last line, "N passed, M failed", and returns the
 *   exit status.
 * - A scratch folder (harness_tmpdir, tmp_path, harness_remove_tmpdir) and file helpers.
 *
 * Every function is static and marked unused-tolerant, so a program includes this header and
 * uses what it needs under -Wall -Wextra -Werror.
 */
#ifndef SPECDEC_TEST_HARNESS_H
#define SPECDEC_TEST_HARNESS_H

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "specdec.h"

#if defined(__GNUC__)
#define HARNESS_FN static __attribute__((unused))
#else
#define HARNESS_FN static
#endif

static int g_passed, g_failed, g_quick;
static specdec_error *g_err;
static pthread_mutex_t g_report = PTHREAD_MUTEX_INITIALIZER;

HARNESS_FN void record(int ok, const char *file, int line, const char *fmt, ...) {
    va_list ap;
    pthread_mutex_lock(&g_report);
    if (ok) {
        g_passed++;
    } else {
        g_failed++;
        fprintf(stderr, "FAIL %s:%d: ", file, line);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
    }
    pthread_mutex_unlock(&g_report);
}

/* A condition. */
#define CHECK(cond) record(!!(cond), __FILE__, __LINE__, "%s", #cond)
/* A condition with a printf-style explanation on failure. */
#define CHECKF(cond, ...) record(!!(cond), __FILE__, __LINE__, __VA_ARGS__)

/* `expr` returned `got`, expected `expected`; on failure g_err must hold an error with that code
 * and a non-empty message containing `needle` (when not NULL); on success g_err stays NULL. */
HARNESS_FN void check_status(specdec_status got, specdec_status expected, const char *needle, const char *expr, const char *file,
                             int line) {
    const char *msg = specdec_error_message(g_err);
    int ok = got == expected;
    if (expected == SPECDEC_STATUS_OK) {
        ok = ok && g_err == NULL;
    } else {
        ok = ok && g_err != NULL && specdec_error_code(g_err) == expected && msg[0] != '\0' &&
             (needle == NULL || strstr(msg, needle) != NULL);
    }
    record(ok, file, line, "%s: got %s (err code %s, message \"%s\"), expected %s%s%s%s", expr, specdec_status_name(got),
           g_err ? specdec_status_name(specdec_error_code(g_err)) : "none", msg, specdec_status_name(expected),
           needle ? " with a message containing \"" : "", needle ? needle : "", needle ? "\"" : "");
    specdec_error_free(g_err);
    g_err = NULL;
}

#define CHECK_STATUS(expr, expected) check_status((expr), (expected), NULL, #expr, __FILE__, __LINE__)
#define CHECK_ERR(expr, expected, needle) check_status((expr), (expected), (needle), #expr, __FILE__, __LINE__)

/* A call expected to succeed, its error in `local` (the macro's e_) or in g_err; either is
 * printed and freed. g_err is only written when it holds an error, so worker threads that
 * pass &e_ never touch it. */
HARNESS_FN void check_ok(specdec_status s, specdec_error *local, const char *expr, const char *file, int line) {
    specdec_error *err = local ? local : g_err;
    record(s == SPECDEC_STATUS_OK && err == NULL, file, line, "%s: %s: %s", expr, specdec_status_name(s),
           specdec_error_message(err));
    specdec_error_free(local);
    if (g_err) {
        specdec_error_free(g_err);
        g_err = NULL;
    }
}

#define CHECK_OK(expr)                                                                                               \
    do {                                                                                                             \
        specdec_error *e_ = NULL;                                                                                    \
        specdec_status s_ = (expr);                                                                                  \
        check_ok(s_, e_, #expr, __FILE__, __LINE__);                                                                 \
    } while (0)

HARNESS_FN double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

HARNESS_FN void sleep_us(long us) {
    struct timespec ts;
    ts.tv_sec = us / 1000000;
    ts.tv_nsec = (us % 1000000) * 1000;
    nanosleep(&ts, NULL);
}

#define RUN(test)                                                                                                   \
    do {                                                                                                            \
        double t0_ = now_s();                                                                                       \
        int failed0_ = g_failed;                                                                                    \
        test();                                                                                                     \
        fprintf(stderr, "%-32s %s (%.2f s)\n", #test, g_failed == failed0_ ? "ok" : "FAILED", now_s() - t0_);       \
    } while (0)

HARNESS_FN void harness_begin(void) {
    const char *quick = getenv("SPECDEC_TEST_QUICK");
    g_quick = quick != NULL && quick[0] != '\0' && strcmp(quick, "0") != 0;
}

/* The last line of every program; the exit status. */
HARNESS_FN int harness_end(void) {
    printf("%d passed, %d failed\n", g_passed, g_failed);
    return g_failed == 0 ? 0 : 1;
}

/* ---------------------------------------------------------------------------------------------
 * Scratch folder and files
 * ------------------------------------------------------------------------------------------- */

static char g_tmp[64]; /* the scratch folder, made by harness_tmpdir */

/* Make the scratch folder /tmp/specdec-<name>-XXXXXX; 0 (with a message) on failure. */
HARNESS_FN int harness_tmpdir(const char *name) {
    snprintf(g_tmp, sizeof g_tmp, "/tmp/specdec-%s-XXXXXX", name);
    if (!mkdtemp(g_tmp)) {
        fprintf(stderr, "mkdtemp: %s\n", strerror(errno));
        g_tmp[0] = '\0';
        return 0;
    }
    return 1;
}

/* `name` inside the scratch folder (one of 8 rotating static buffers). */
HARNESS_FN const char *tmp_path(const char *name) {
    static char paths[8][192];
    static int next;
    char *p = paths[next++ % 8];
    snprintf(p, sizeof paths[0], "%s/%s", g_tmp, name);
    return p;
}

/* Remove the scratch folder and everything in it. */
HARNESS_FN void harness_remove_tmpdir(void) {
    char cmd[256];
    if (!g_tmp[0]) return;
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_tmp);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", g_tmp);
}

/* write_file and read_file: test_files.h (shared with test_embedder.c, which keeps its own checks). */
#include "test_files.h"

#endif
