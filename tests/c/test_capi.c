/*
 * Tests of the specdec C ABI (include/specdec.h), in plain C99.
 *
 * Every function of the header is called, with good arguments and with each documented kind of
 * bad one; each failure must return the documented status, fill `*err` with the same code and a
 * message naming the cause, and leave the handles usable. Generation is checked for exactness
 * (speculative greedy == target-only greedy), reproducibility, finish reasons, streaming,
 * cancellation from another thread and sharing models between threads.
 *
 * Run from the repository root (fixtures are read from models/fixtures/). The last line is
 * "N passed, M failed"; the exit status is non-zero if anything failed. One test forks a child
 * before ONNX Runtime is loaded (a bad $ORT_DYLIB_PATH must give SPECDEC_STATUS_RUNTIME_LOAD, and
 * the runtime is loaded once per process); scratch files go to a mkdtemp folder under /tmp.
 *
 * SPECDEC_TEST_QUICK=1 (used under valgrind) trims the slow repetitions: fewer gamma values,
 * one target architecture, two sharing threads. Error paths and cancellation always run.
 */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "specdec.h"
#include "test_files.h"

/* ---------------------------------------------------------------------------------------------
 * Check macros. Calls whose error is checked pass &g_err; the check frees it.
 * ------------------------------------------------------------------------------------------- */

static int g_passed, g_failed;
static specdec_error *g_err;
static int g_quick;

static void record(int ok, const char *file, int line, const char *fmt, ...) {
    va_list ap;
    if (ok) {
        g_passed++;
        return;
    }
    g_failed++;
    fprintf(stderr, "FAIL %s:%d: ", file, line);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

/* A condition. */
#define CHECK(cond) record(!!(cond), __FILE__, __LINE__, "%s", #cond)
/* A condition with a printf-style explanation on failure. */
#define CHECKF(cond, ...) record(!!(cond), __FILE__, __LINE__, __VA_ARGS__)

/* `expr` returns `expected`; on failure g_err holds an error with that code and a non-empty
 * message containing `needle` (when not NULL); on success g_err stays NULL. */
static void check_status(specdec_status got, specdec_status expected, const char *needle, const char *expr,
                         const char *file, int line) {
    const char *msg = specdec_error_message(g_err);
    int ok = got == expected;
    if (expected == SPECDEC_STATUS_OK) {
        ok = ok && g_err == NULL;
    } else {
        ok = ok && g_err != NULL && specdec_error_code(g_err) == expected && msg[0] != '\0' &&
             (needle == NULL || strstr(msg, needle) != NULL);
    }
    record(ok, file, line, "%s: got %s (err code %s, message \"%s\"), expected %s%s%s%s", expr,
           specdec_status_name(got), g_err ? specdec_status_name(specdec_error_code(g_err)) : "none", msg,
           specdec_status_name(expected), needle ? " with a message containing \"" : "", needle ? needle : "",
           needle ? "\"" : "");
    specdec_error_free(g_err);
    g_err = NULL;
}

#define CHECK_STATUS(expr, expected) check_status((expr), (expected), NULL, #expr, __FILE__, __LINE__)
#define CHECK_ERR(expr, expected, needle) check_status((expr), (expected), (needle), #expr, __FILE__, __LINE__)
#define CHECK_OK(expr) CHECK_STATUS(expr, SPECDEC_STATUS_OK)

/* ---------------------------------------------------------------------------------------------
 * Fixtures and helpers
 * ------------------------------------------------------------------------------------------- */

#define FIX "models/fixtures/"
#define MAX_TOKENS 1024

static specdec_model *g_target; /* llama, vocab 512, context 512 */
static specdec_model *g_draft;  /* the small draft */
static specdec_tokenizer *g_tok;
static char g_tmp[64]; /* scratch folder */

static const char *const PROMPT_TEXTS[4] = {
    "def __init__(self, name, value=None):\n        self.name = name\n",
    "import os\nimport sys\n\n\nclass Config:\n    \"\"\"",
    "    for i in range(len(items)):\n        if items[i] is None:\n            ",
    "The quick brown fox jumps over the lazy dog. 1234567890",
};
/* Each prompt's first (up to) 10 tokens. */
static uint32_t g_prompts[4][10];
static size_t g_prompt_len[4];

typedef struct {
    uint32_t ids[MAX_TOKENS];
    size_t n;
} tokbuf;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int same_tokens(const tokbuf *a, const tokbuf *b) {
    return a->n == b->n && (a->n == 0 || memcmp(a->ids, b->ids, a->n * sizeof a->ids[0]) == 0);
}

static void print_tokens(const char *label, const tokbuf *t) {
    size_t i;
    fprintf(stderr, "  %s (%zu):", label, t->n);
    for (i = 0; i < t->n; i++) fprintf(stderr, " %u", (unsigned)t->ids[i]);
    fputc('\n', stderr);
}

static specdec_model *load_model(const char *path) {
    specdec_model_options *o = specdec_model_options_new();
    specdec_model *m = NULL;
    CHECK(o != NULL);
    /* One ONNX Runtime thread: the fixtures are tiny and the machine may be busy. */
    CHECK_OK(specdec_model_options_set_intra_threads(o, 1, &g_err));
    CHECK_OK(specdec_model_load(path, o, &m, &g_err));
    CHECK(m != NULL);
    specdec_model_options_free(o);
    return m;
}

/* Settings: greedy unless temperature > 0; no EOS when no_eos. */
static specdec_gen_config *make_config(uint32_t gamma, uint32_t max_new, float temperature, uint64_t seed, int no_eos) {
    specdec_gen_config *c = specdec_gen_config_new();
    static const uint32_t none[1] = {0};
    CHECK(c != NULL);
    CHECK_OK(specdec_gen_config_set_gamma(c, gamma, &g_err));
    CHECK_OK(specdec_gen_config_set_max_new_tokens(c, max_new, &g_err));
    CHECK_OK(specdec_gen_config_set_temperature(c, temperature, &g_err));
    CHECK_OK(specdec_gen_config_set_seed(c, seed, &g_err));
    if (no_eos) CHECK_OK(specdec_gen_config_set_eos_ids(c, none, 0, &g_err)); /* empty: no EOS */
    return c;
}

typedef struct {
    uint32_t ids[MAX_TOKENS];
    size_t n;
    size_t calls;
    size_t stop_after_calls; /* 0: never stop */
} collector;

static int32_t collect_cb(void *user_data, const uint32_t *tokens, size_t n_tokens) {
    collector *c = user_data;
    size_t i;
    for (i = 0; i < n_tokens && c->n < MAX_TOKENS; i++) c->ids[c->n++] = tokens[i];
    c->calls++;
    return c->stop_after_calls != 0 && c->calls >= c->stop_after_calls;
}

/* The tokens after the first `skip` of the generator's sequence. */
static specdec_status tail_tokens(const specdec_generator *g, size_t skip, tokbuf *out, specdec_error **err) {
    const uint32_t *all = NULL;
    size_t n = 0;
    specdec_status s = specdec_generator_tokens(g, &all, &n, err);
    out->n = 0;
    if (s != SPECDEC_STATUS_OK) return s;
    for (; skip < n && out->n < MAX_TOKENS; skip++) out->ids[out->n++] = all[skip];
    return s;
}

/* One generation on a fresh generator; `out` receives the new tokens. Thread-safe (err local). */
static specdec_status generate_once(const specdec_model *target, const specdec_model *draft, const specdec_gen_config *cfg,
                                    const uint32_t *prompt, size_t n_prompt, tokbuf *out, specdec_finish_reason *reason,
                                    specdec_error **err) {
    specdec_generator *g = NULL;
    specdec_status s = specdec_generator_new(target, draft, cfg, &g, err);
    out->n = 0;
    if (s == SPECDEC_STATUS_OK) s = specdec_generator_append_tokens(g, prompt, n_prompt, err);
    if (s == SPECDEC_STATUS_OK) s = specdec_generator_generate(g, NULL, NULL, reason, err);
    if (s == SPECDEC_STATUS_OK) s = tail_tokens(g, n_prompt, out, err);
    specdec_generator_free(g);
    return s;
}

/* Greedy generation of `max_new` tokens without EOS, checked. */
static void greedy(const specdec_model *target, const specdec_model *draft, uint32_t gamma, int prompt, uint32_t max_new,
                   tokbuf *out) {
    specdec_gen_config *c = make_config(gamma, max_new, 0.0f, 0, 1);
    specdec_finish_reason r = SPECDEC_FINISH_REASON_NONE;
    CHECK_OK(generate_once(target, draft, c, g_prompts[prompt], g_prompt_len[prompt], out, &r, &g_err));
    CHECK(r == SPECDEC_FINISH_REASON_MAX_TOKENS);
    CHECK(out->n == max_new);
    specdec_gen_config_free(c);
}

static const char *tmp_path(const char *name) {
    static char paths[8][128];
    static int next;
    char *p = paths[next++ % 8];
    snprintf(p, sizeof paths[0], "%s/%s", g_tmp, name);
    return p;
}

/* Whether `s` (n bytes) is complete, valid UTF-8. */
static int valid_utf8(const char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        unsigned char c = (unsigned char)s[i];
        size_t len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        size_t k;
        if (len == 0 || i + len > n) return 0;
        for (k = 1; k < len; k++)
            if (((unsigned char)s[i + k] >> 6) != 2) return 0;
        i += len;
    }
    return 1;
}

/* Decode ids into a malloc'd string (checked). */
static char *decode_all(const uint32_t *ids, size_t n) {
    size_t len = 0;
    char *buf;
    CHECK_STATUS(specdec_tokenizer_decode(g_tok, ids, n, NULL, 0, &len, &g_err), SPECDEC_STATUS_BUFFER_TOO_SMALL);
    buf = malloc(len + 1);
    buf[0] = '\0';
    CHECK_OK(specdec_tokenizer_decode(g_tok, ids, n, buf, len + 1, &len, &g_err));
    return buf;
}

/* ---------------------------------------------------------------------------------------------
 * Versions, status names, error objects
 * ------------------------------------------------------------------------------------------- */

static void test_versions(void) {
    char expected[64];
    snprintf(expected, sizeof expected, "%d.%d.%d", SPECDEC_VERSION_MAJOR, SPECDEC_VERSION_MINOR, SPECDEC_VERSION_PATCH);
    CHECK(specdec_version() != NULL);
    CHECKF(strcmp(specdec_version(), expected) == 0, "specdec_version() = %s, header says %s", specdec_version(), expected);
    CHECK(specdec_version() == specdec_version()); /* static storage */
    CHECK(specdec_abi_version() == SPECDEC_ABI_VERSION);
    CHECK(SPECDEC_MAX_GAMMA == 64);
}

static void test_status_names(void) {
    static const struct {
        uint32_t code;
        const char *name;
    } all[] = {
        {SPECDEC_STATUS_OK, "SPECDEC_STATUS_OK"},
        {SPECDEC_STATUS_NULL_PARAMETER, "SPECDEC_STATUS_NULL_PARAMETER"},
        {SPECDEC_STATUS_INVALID_ARGUMENT, "SPECDEC_STATUS_INVALID_ARGUMENT"},
        {SPECDEC_STATUS_RUNTIME_LOAD, "SPECDEC_STATUS_RUNTIME_LOAD"},
        {SPECDEC_STATUS_IO, "SPECDEC_STATUS_IO"},
        {SPECDEC_STATUS_INVALID_MODEL, "SPECDEC_STATUS_INVALID_MODEL"},
        {SPECDEC_STATUS_UNSUPPORTED_LAYOUT, "SPECDEC_STATUS_UNSUPPORTED_LAYOUT"},
        {SPECDEC_STATUS_VOCAB_MISMATCH, "SPECDEC_STATUS_VOCAB_MISMATCH"},
        {SPECDEC_STATUS_TOKEN_OUT_OF_RANGE, "SPECDEC_STATUS_TOKEN_OUT_OF_RANGE"},
        {SPECDEC_STATUS_CONTEXT_LIMIT, "SPECDEC_STATUS_CONTEXT_LIMIT"},
        {SPECDEC_STATUS_TOKENIZER, "SPECDEC_STATUS_TOKENIZER"},
        {SPECDEC_STATUS_CANCELLED, "SPECDEC_STATUS_CANCELLED"},
        {SPECDEC_STATUS_INFERENCE, "SPECDEC_STATUS_INFERENCE"},
        {SPECDEC_STATUS_UNAVAILABLE, "SPECDEC_STATUS_UNAVAILABLE"},
        {SPECDEC_STATUS_BUFFER_TOO_SMALL, "SPECDEC_STATUS_BUFFER_TOO_SMALL"},
        {SPECDEC_STATUS_INVALID_UTF8, "SPECDEC_STATUS_INVALID_UTF8"},
        {SPECDEC_STATUS_BUSY, "SPECDEC_STATUS_BUSY"},
        {SPECDEC_STATUS_MEMORY_BUDGET, "SPECDEC_STATUS_MEMORY_BUDGET"},
        {SPECDEC_STATUS_CALLBACK, "SPECDEC_STATUS_CALLBACK"},
        {SPECDEC_STATUS_PANIC, "SPECDEC_STATUS_PANIC"},
    };
    size_t i;
    for (i = 0; i < sizeof all / sizeof all[0]; i++)
        CHECKF(strcmp(specdec_status_name(all[i].code), all[i].name) == 0, "specdec_status_name(%u) = %s", (unsigned)all[i].code,
               specdec_status_name(all[i].code));
    CHECK(strcmp(specdec_status_name(1), "SPECDEC_STATUS_UNKNOWN") == 0);
    CHECK(strcmp(specdec_status_name(7017), "SPECDEC_STATUS_UNKNOWN") == 0);
    CHECK(strcmp(specdec_status_name(UINT32_MAX), "SPECDEC_STATUS_UNKNOWN") == 0);
    /* Errors are values: NULL has a code and an empty message. */
    CHECK(specdec_error_code(NULL) == SPECDEC_STATUS_NULL_PARAMETER);
    CHECK(specdec_error_message(NULL) != NULL && specdec_error_message(NULL)[0] == '\0');
}

/* ---------------------------------------------------------------------------------------------
 * ONNX Runtime loading (runs first: the runtime is loaded once per process)
 * ------------------------------------------------------------------------------------------- */

/* Loading a model initialises ONNX Runtime from the default location; a bad $ORT_DYLIB_PATH then
 * gives SPECDEC_STATUS_RUNTIME_LOAD, and a later load with a good path works. Runs in a child
 * process forked before this process loads the runtime (it is loaded once per process). */
static void test_model_load_without_runtime(void) {
    pid_t pid;
    int wstatus = 0;
    fflush(stdout);
    fflush(stderr);
    pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        const char *saved = getenv("ORT_DYLIB_PATH");
        char good[512];
        specdec_model *m = NULL;
        g_failed = 0; /* the exit status reports the child's own checks, not the parent's so far */
        snprintf(good, sizeof good, "%s", saved ? saved : "");
        setenv("ORT_DYLIB_PATH", "/no/such/onnxruntime/libonnxruntime.so", 1);
        CHECK_ERR(specdec_model_load(FIX "draft", NULL, &m, &g_err), SPECDEC_STATUS_RUNTIME_LOAD,
                  "/no/such/onnxruntime/libonnxruntime.so");
        CHECK(m == NULL);
        if (good[0]) setenv("ORT_DYLIB_PATH", good, 1);
        else unsetenv("ORT_DYLIB_PATH");
        CHECK_OK(specdec_model_load(FIX "draft", NULL, &m, &g_err));
        CHECK(specdec_model_vocab_size(m) == 512);
        specdec_model_free(m);
        exit(g_failed == 0 ? 0 : 1); /* stdio was flushed before the fork */
    }
    CHECK(waitpid(pid, &wstatus, 0) == pid);
    CHECKF(WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 0, "the child process failed (status %d)", wstatus);
}

static void test_runtime_init(void) {
    const char *ort = getenv("ORT_DYLIB_PATH");
    const char *not_a_lib = tmp_path("libnot-a-library.so");
    if (!ort || !*ort) ort = ".deps/onnxruntime/libonnxruntime.so";
    CHECK(write_file(not_a_lib, "plain text, not ELF\n", 20));

    CHECK_ERR(specdec_runtime_init("/no/such/dir/libonnxruntime.so", &g_err), SPECDEC_STATUS_RUNTIME_LOAD,
              "/no/such/dir/libonnxruntime.so");
    CHECK_ERR(specdec_runtime_init(not_a_lib, &g_err), SPECDEC_STATUS_RUNTIME_LOAD, "libnot-a-library.so");
    CHECK_ERR(specdec_runtime_init("bad\xff\xfe.so", &g_err), SPECDEC_STATUS_INVALID_UTF8, "ort_library_path");
    /* NULL err: the status alone. */
    CHECK(specdec_runtime_init("/no/such/dir/libonnxruntime.so", NULL) == SPECDEC_STATUS_RUNTIME_LOAD);
    /* A failed attempt does not poison the process: the default location loads. */
    CHECK_OK(specdec_runtime_init(NULL, &g_err));
    CHECK_OK(specdec_runtime_init(NULL, &g_err));
    CHECK_OK(specdec_runtime_init(ort, &g_err));
    CHECK_ERR(specdec_runtime_init(not_a_lib, &g_err), SPECDEC_STATUS_RUNTIME_LOAD, "already loaded");
    CHECK(specdec_runtime_init(not_a_lib, NULL) == SPECDEC_STATUS_RUNTIME_LOAD);
}

/* ---------------------------------------------------------------------------------------------
 * NULL everywhere
 * ------------------------------------------------------------------------------------------- */

static void test_free_null(void) {
    /* Each must be a no-op. */
    specdec_gen_config_free(NULL);
    specdec_error_free(NULL);
    specdec_generator_free(NULL);
    specdec_model_options_free(NULL);
    specdec_model_free(NULL);
    specdec_tokenizer_free(NULL);
    specdec_stream_decoder_free(NULL);
    specdec_generator_cancel(NULL);
    CHECK(1); /* survived */
}

static void test_null_parameters(void) {
    const specdec_status NP = SPECDEC_STATUS_NULL_PARAMETER;
    specdec_gen_config *cfg = specdec_gen_config_new();
    specdec_model_options *opt = specdec_model_options_new();
    specdec_generator *gen = NULL;
    specdec_stream_decoder *dec = NULL;
    specdec_model *m = NULL;
    specdec_tokenizer *t = NULL;
    specdec_generator *g = NULL;
    specdec_stream_decoder *d = NULL;
    const uint32_t *toks = NULL;
    const char *text = NULL;
    size_t n = 0, len = 0;
    uint32_t ids[8];
    char buf[64];
    specdec_stats st;
    specdec_finish_reason r;

    CHECK(cfg != NULL && opt != NULL);
    CHECK_OK(specdec_generator_new(g_target, g_draft, NULL, &gen, &g_err));
    CHECK_OK(specdec_stream_decoder_new(g_tok, &dec, &g_err));

    /* Settings. */
    CHECK_ERR(specdec_gen_config_set_gamma(NULL, 4, &g_err), NP, "config");
    CHECK_ERR(specdec_gen_config_set_temperature(NULL, 1.0f, &g_err), NP, "config");
    CHECK_ERR(specdec_gen_config_set_top_k(NULL, 5, &g_err), NP, "config");
    CHECK_ERR(specdec_gen_config_set_top_p(NULL, 0.5f, &g_err), NP, "config");
    CHECK_ERR(specdec_gen_config_set_min_p(NULL, 0.1f, &g_err), NP, "config");
    CHECK_ERR(specdec_gen_config_set_repetition_penalty(NULL, 1.1f, &g_err), NP, "config");
    CHECK_ERR(specdec_gen_config_set_seed(NULL, 1, &g_err), NP, "config");
    CHECK_ERR(specdec_gen_config_set_max_new_tokens(NULL, 4, &g_err), NP, "config");
    CHECK_ERR(specdec_gen_config_set_eos_ids(NULL, NULL, 0, &g_err), NP, "config");
    CHECK_ERR(specdec_gen_config_set_eos_ids(cfg, NULL, 2, &g_err), NP, "ids");
    CHECK_ERR(specdec_gen_config_use_model_eos_ids(NULL, &g_err), NP, "config");
    CHECK_ERR(specdec_gen_config_add_stop_tokens(NULL, ids, 1, &g_err), NP, "config");
    CHECK_ERR(specdec_gen_config_add_stop_tokens(cfg, NULL, 2, &g_err), NP, "ids");
    CHECK_ERR(specdec_gen_config_add_stop_text(NULL, "x", &g_err), NP, "config");
    CHECK_ERR(specdec_gen_config_add_stop_text(cfg, NULL, &g_err), NP, "text");
    CHECK_ERR(specdec_gen_config_clear_stops(NULL, &g_err), NP, "config");

    /* Model options and loading. */
    CHECK_ERR(specdec_model_options_set_device(NULL, "cpu", &g_err), NP, "options");
    CHECK_ERR(specdec_model_options_set_device(opt, NULL, &g_err), NP, "device");
    CHECK_ERR(specdec_model_options_set_intra_threads(NULL, 1, &g_err), NP, "options");
    CHECK_ERR(specdec_model_options_set_cuda_fallback(NULL, true, &g_err), NP, "options");
    CHECK_ERR(specdec_model_options_set_io_binding(NULL, true, &g_err), NP, "options");
    CHECK(specdec_model_cuda_device(NULL) == -1);
    m = (specdec_model *)(void *)buf; /* must be reset to NULL */
    CHECK_ERR(specdec_model_load(NULL, NULL, &m, &g_err), NP, "path");
    CHECK(m == NULL);
    CHECK_ERR(specdec_model_load(FIX "llama", NULL, NULL, &g_err), NP, "out");

    /* Tokenizer. */
    t = (specdec_tokenizer *)(void *)buf;
    CHECK_ERR(specdec_tokenizer_load(NULL, &t, &g_err), NP, "path");
    CHECK(t == NULL);
    CHECK_ERR(specdec_tokenizer_load(FIX "llama", NULL, &g_err), NP, "out");
    CHECK_ERR(specdec_tokenizer_encode(NULL, "abc", 3, ids, 8, &n, &g_err), NP, "tokenizer");
    CHECK_ERR(specdec_tokenizer_encode(g_tok, NULL, 3, ids, 8, &n, &g_err), NP, "text");
    CHECK_ERR(specdec_tokenizer_encode(g_tok, "abc", 3, NULL, 8, &n, &g_err), NP, "ids");
    CHECK_ERR(specdec_tokenizer_encode(g_tok, "abc", 3, ids, 8, NULL, &g_err), NP, "n_ids");
    ids[0] = 5;
    CHECK_ERR(specdec_tokenizer_decode(NULL, ids, 1, buf, sizeof buf, &len, &g_err), NP, "tokenizer");
    CHECK_ERR(specdec_tokenizer_decode(g_tok, NULL, 1, buf, sizeof buf, &len, &g_err), NP, "ids");
    CHECK_ERR(specdec_tokenizer_decode(g_tok, ids, 1, NULL, sizeof buf, &len, &g_err), NP, "buf");
    CHECK_ERR(specdec_tokenizer_decode(g_tok, ids, 1, buf, sizeof buf, NULL, &g_err), NP, "len");
    CHECK(specdec_tokenizer_vocab_size(NULL) == 0);

    /* Stream decoder. */
    d = (specdec_stream_decoder *)(void *)buf;
    CHECK_ERR(specdec_stream_decoder_new(NULL, &d, &g_err), NP, "tokenizer");
    CHECK(d == NULL);
    CHECK_ERR(specdec_stream_decoder_new(g_tok, NULL, &g_err), NP, "out");
    CHECK_ERR(specdec_stream_decoder_push(NULL, ids, 1, &text, &len, &g_err), NP, "decoder");
    CHECK_ERR(specdec_stream_decoder_push(dec, NULL, 1, &text, &len, &g_err), NP, "ids");
    CHECK_ERR(specdec_stream_decoder_push(dec, ids, 1, NULL, &len, &g_err), NP, "text");
    CHECK_ERR(specdec_stream_decoder_push(dec, ids, 1, &text, NULL, &g_err), NP, "len");
    CHECK_ERR(specdec_stream_decoder_flush(NULL, &text, &len, &g_err), NP, "decoder");
    CHECK_ERR(specdec_stream_decoder_flush(dec, NULL, &len, &g_err), NP, "text");
    CHECK_ERR(specdec_stream_decoder_flush(dec, &text, NULL, &g_err), NP, "len");

    /* Model getters. */
    CHECK(specdec_model_vocab_size(NULL) == 0);
    CHECK(specdec_model_context_limit(NULL) == 0);

    /* Generator. */
    CHECK_ERR(specdec_generator_new(NULL, g_draft, cfg, &g, &g_err), NP, "target");
    CHECK(g == NULL);
    CHECK_ERR(specdec_generator_new(g_target, g_draft, cfg, NULL, &g_err), NP, "out");
    CHECK_ERR(specdec_generator_set_tokenizer(NULL, g_tok, &g_err), NP, "generator");
    CHECK_ERR(specdec_generator_set_tokenizer(gen, NULL, &g_err), NP, "tokenizer");
    CHECK_ERR(specdec_generator_append_tokens(NULL, ids, 1, &g_err), NP, "generator");
    CHECK_ERR(specdec_generator_append_tokens(gen, NULL, 3, &g_err), NP, "ids");
    CHECK_ERR(specdec_generator_step(NULL, &toks, &n, &g_err), NP, "generator");
    CHECK_ERR(specdec_generator_step(gen, NULL, &n, &g_err), NP, "tokens");
    CHECK_ERR(specdec_generator_step(gen, &toks, NULL, &g_err), NP, "n_tokens");
    CHECK_ERR(specdec_generator_generate(NULL, NULL, NULL, &r, &g_err), NP, "generator");
    CHECK_ERR(specdec_generator_tokens(NULL, &toks, &n, &g_err), NP, "generator");
    CHECK_ERR(specdec_generator_tokens(gen, NULL, &n, &g_err), NP, "tokens");
    CHECK_ERR(specdec_generator_tokens(gen, &toks, NULL, &g_err), NP, "n_tokens");
    st.struct_size = sizeof st;
    CHECK_ERR(specdec_generator_stats(NULL, &st, &g_err), NP, "generator");
    CHECK_ERR(specdec_generator_stats(gen, NULL, &g_err), NP, "stats");
    CHECK(specdec_generator_finish_reason(NULL) == SPECDEC_FINISH_REASON_NONE);

    /* NULL err: the status is still returned. */
    CHECK(specdec_gen_config_set_gamma(NULL, 4, NULL) == NP);
    CHECK(specdec_generator_step(NULL, &toks, &n, NULL) == NP);
    CHECK(specdec_tokenizer_encode(g_tok, "abc", 3, ids, 8, NULL, NULL) == NP);

    /* Arrays of length 0 may be NULL. */
    CHECK_ERR(specdec_gen_config_add_stop_tokens(cfg, NULL, 0, &g_err), SPECDEC_STATUS_INVALID_ARGUMENT, "empty");
    n = 99;
    CHECK_OK(specdec_tokenizer_encode(g_tok, NULL, 0, NULL, 0, &n, &g_err));
    CHECK(n == 0);
    CHECK_OK(specdec_tokenizer_decode(g_tok, NULL, 0, buf, sizeof buf, &len, &g_err));
    CHECK(len == 0 && buf[0] == '\0');
    CHECK_OK(specdec_stream_decoder_push(dec, NULL, 0, &text, &len, &g_err));
    CHECK(len == 0 && text != NULL && text[0] == '\0');

    /* The handles are still usable after all of that. */
    CHECK_OK(specdec_generator_append_tokens(gen, g_prompts[0], g_prompt_len[0], &g_err));
    CHECK_OK(specdec_generator_step(gen, &toks, &n, &g_err));
    CHECK(n >= 1 && toks != NULL);

    specdec_stream_decoder_free(dec);
    specdec_generator_free(gen);
    specdec_model_options_free(opt);
    specdec_gen_config_free(cfg);
}

/* ---------------------------------------------------------------------------------------------
 * Loading failures
 * ------------------------------------------------------------------------------------------- */

/* A valid ONNX model that is not a decoder: y = Identity(x), x float[4]; IR 8, opset 13. */
static const unsigned char IDENTITY_ONNX[] =
    "\x08\x08\x3a\x37\x0a\x10\x0a\x01\x78\x12\x01\x79\x22\x08\x49\x64\x65\x6e\x74\x69\x74\x79\x12\x01"
    "\x67\x5a\x0f\x0a\x01\x78\x12\x0a\x0a\x08\x08\x01\x12\x04\x0a\x02\x08\x04\x62\x0f\x0a\x01\x79\x12"
    "\x0a\x0a\x08\x08\x01\x12\x04\x0a\x02\x08\x04\x42\x04\x0a\x00\x10\x0d";

static void test_load_failures(void) {
    specdec_model *m = NULL;
    specdec_tokenizer *t = NULL;
    specdec_model_options *opt = specdec_model_options_new();
    unsigned char *onnx;
    size_t onnx_len = 0;

    /* Missing path; a folder without model.onnx; invalid UTF-8. */
    CHECK_ERR(specdec_model_load("/no/such/model", NULL, &m, &g_err), SPECDEC_STATUS_IO, "/no/such/model");
    CHECK(m == NULL);
    CHECK_ERR(specdec_model_load(g_tmp, NULL, &m, &g_err), SPECDEC_STATUS_IO, "no model.onnx");
    CHECK(m == NULL);
    CHECK_ERR(specdec_model_load("models/\xc3\x28/model", NULL, &m, &g_err), SPECDEC_STATUS_INVALID_UTF8, "path");
    CHECK(specdec_model_load("/no/such/model", NULL, &m, NULL) == SPECDEC_STATUS_IO);

    /* Files that are not ONNX, given as a file and as a folder. */
    CHECK(mkdir(tmp_path("not-onnx"), 0700) == 0);
    CHECK(write_file(tmp_path("not-onnx/model.onnx"), "this is not a protobuf", 22));
    CHECK_ERR(specdec_model_load(tmp_path("not-onnx/model.onnx"), opt, &m, &g_err), SPECDEC_STATUS_INVALID_MODEL, "model.onnx");
    CHECK(m == NULL);
    CHECK_ERR(specdec_model_load(tmp_path("not-onnx"), NULL, &m, &g_err), SPECDEC_STATUS_INVALID_MODEL, "not a loadable ONNX model");
    CHECK(m == NULL);

    /* A truncated model, and a good model beside an unreadable config.json. */
    onnx = read_file(FIX "llama/model.onnx", &onnx_len);
    CHECK(onnx != NULL && onnx_len > 1000);
    if (onnx) {
        CHECK(mkdir(tmp_path("truncated"), 0700) == 0);
        CHECK(write_file(tmp_path("truncated/model.onnx"), onnx, onnx_len / 3));
        CHECK_ERR(specdec_model_load(tmp_path("truncated/model.onnx"), NULL, &m, &g_err), SPECDEC_STATUS_INVALID_MODEL,
                  "truncated/model.onnx");
        CHECK(mkdir(tmp_path("bad-config"), 0700) == 0);
        CHECK(write_file(tmp_path("bad-config/model.onnx"), onnx, onnx_len));
        CHECK(write_file(tmp_path("bad-config/config.json"), "{\"vocab_size\": ", 15));
        CHECK_ERR(specdec_model_load(tmp_path("bad-config"), NULL, &m, &g_err), SPECDEC_STATUS_IO, "config.json");
        CHECK(m == NULL);
        free(onnx);
    }

    /* Valid ONNX, but not a decoder. */
    CHECK(write_file(tmp_path("identity.onnx"), IDENTITY_ONNX, sizeof IDENTITY_ONNX - 1));
    CHECK_ERR(specdec_model_load(tmp_path("identity.onnx"), NULL, &m, &g_err), SPECDEC_STATUS_UNSUPPORTED_LAYOUT, "input_ids");
    CHECK(m == NULL);

    /* Devices: cuda is accepted by the option, refused at load where it cannot run (no GPU
     * build of ONNX Runtime, no driver here), with a message naming the missing library. */
    CHECK_ERR(specdec_model_options_set_device(opt, "tpu", &g_err), SPECDEC_STATUS_INVALID_ARGUMENT, "tpu");
    CHECK_ERR(specdec_model_options_set_device(opt, "cuda:x", &g_err), SPECDEC_STATUS_INVALID_ARGUMENT, "cuda:x");
    CHECK_ERR(specdec_model_options_set_device(opt, "cu\xff", &g_err), SPECDEC_STATUS_INVALID_UTF8, "device");
    CHECK_OK(specdec_model_options_set_device(opt, "cuda:1", &g_err));
    CHECK_OK(specdec_model_options_set_device(opt, "cuda", &g_err));
    CHECK_ERR(specdec_model_load(FIX "llama", opt, &m, &g_err), SPECDEC_STATUS_UNAVAILABLE, "CUDA");
    CHECK(m == NULL);
    /* Falling back to the CPU only when asked to. */
    CHECK_OK(specdec_model_options_set_cuda_fallback(opt, true, &g_err));
    CHECK_OK(specdec_model_options_set_intra_threads(opt, 1, &g_err));
    CHECK_OK(specdec_model_load(FIX "llama", opt, &m, &g_err));
    CHECK(specdec_model_cuda_device(m) == -1);
    specdec_model_free(m);
    m = NULL;
    CHECK_OK(specdec_model_options_set_cuda_fallback(opt, false, &g_err));
    /* The options stay usable: back to cpu, and a real load (an .onnx file path), through the
     * IoBinding path (the one CUDA uses) and without it: the same logits, so the same greedy output. */
    CHECK_OK(specdec_model_options_set_device(opt, "cpu", &g_err));
    CHECK_OK(specdec_model_options_set_io_binding(opt, true, &g_err));
    CHECK_OK(specdec_model_load(FIX "llama/model.onnx", opt, &m, &g_err));
    CHECK(specdec_model_vocab_size(m) == 512 && specdec_model_context_limit(m) == 512);
    CHECK(specdec_model_cuda_device(m) == -1);
    {
        specdec_model *plain = NULL;
        specdec_gen_config *gc = specdec_gen_config_new();
        specdec_generator *a = NULL, *b = NULL;
        const uint32_t prompt[3] = {100, 200, 300};
        CHECK_OK(specdec_model_options_set_io_binding(opt, false, &g_err));
        CHECK_OK(specdec_model_load(FIX "llama", opt, &plain, &g_err));
        CHECK_OK(specdec_gen_config_set_max_new_tokens(gc, 24, &g_err));
        CHECK_OK(specdec_generator_new(m, NULL, gc, &a, &g_err));
        CHECK_OK(specdec_generator_new(plain, NULL, gc, &b, &g_err));
        CHECK_OK(specdec_generator_append_tokens(a, prompt, 3, &g_err));
        CHECK_OK(specdec_generator_append_tokens(b, prompt, 3, &g_err));
        CHECK_OK(specdec_generator_generate(a, NULL, NULL, NULL, &g_err));
        CHECK_OK(specdec_generator_generate(b, NULL, NULL, NULL, &g_err));
        {
            const uint32_t *ta = NULL, *tb = NULL;
            size_t na = 0, nb = 0;
            CHECK_OK(specdec_generator_tokens(a, &ta, &na, &g_err));
            CHECK_OK(specdec_generator_tokens(b, &tb, &nb, &g_err));
            CHECK(na > 3 && na == nb && memcmp(ta, tb, na * sizeof ta[0]) == 0);
        }
        specdec_generator_free(a);
        specdec_generator_free(b);
        specdec_gen_config_free(gc);
        specdec_model_free(plain);
    }
    specdec_model_free(m);
    m = NULL;

    /* Tokenizers. */
    CHECK_ERR(specdec_tokenizer_load("/no/such/tokenizer.json", &t, &g_err), SPECDEC_STATUS_IO, "/no/such/tokenizer.json");
    CHECK(t == NULL);
    CHECK_ERR(specdec_tokenizer_load(g_tmp, &t, &g_err), SPECDEC_STATUS_IO, "tokenizer.json");
    CHECK(write_file(tmp_path("tokenizer.json"), "{\"model\": 42", 12));
    CHECK_ERR(specdec_tokenizer_load(tmp_path("tokenizer.json"), &t, &g_err), SPECDEC_STATUS_TOKENIZER, "tokenizer.json");
    CHECK(t == NULL);
    CHECK_ERR(specdec_tokenizer_load("\xe2\x82", &t, &g_err), SPECDEC_STATUS_INVALID_UTF8, "path");
    CHECK_OK(specdec_tokenizer_load(FIX "llama/tokenizer.json", &t, &g_err));
    CHECK(specdec_tokenizer_vocab_size(t) == 512);
    specdec_tokenizer_free(t);

    specdec_model_options_free(opt);
}

/* ---------------------------------------------------------------------------------------------
 * Settings
 * ------------------------------------------------------------------------------------------- */

static void test_config_setters(void) {
    const specdec_status IA = SPECDEC_STATUS_INVALID_ARGUMENT;
    specdec_gen_config *c = specdec_gen_config_new();
    static const uint32_t eos_bad[2] = {3, 600};
    static const uint32_t stop[2] = {1, 2};
    specdec_generator *g = NULL;
    specdec_stats st;
    tokbuf out;
    specdec_finish_reason r;

    CHECK(c != NULL);
    CHECK_OK(specdec_gen_config_set_gamma(c, 1, &g_err));
    CHECK_OK(specdec_gen_config_set_gamma(c, SPECDEC_MAX_GAMMA, &g_err));
    CHECK_ERR(specdec_gen_config_set_gamma(c, 0, &g_err), IA, "gamma");
    CHECK_ERR(specdec_gen_config_set_gamma(c, SPECDEC_MAX_GAMMA + 1, &g_err), IA, "gamma");
    CHECK(specdec_gen_config_set_gamma(c, 0, NULL) == IA);

    CHECK_OK(specdec_gen_config_set_temperature(c, 0.0f, &g_err));
    CHECK_OK(specdec_gen_config_set_temperature(c, 2.5f, &g_err));
    CHECK_ERR(specdec_gen_config_set_temperature(c, -1.0f, &g_err), IA, "temperature");
    CHECK_ERR(specdec_gen_config_set_temperature(c, NAN, &g_err), IA, "temperature");
    CHECK_ERR(specdec_gen_config_set_temperature(c, INFINITY, &g_err), IA, "temperature");

    CHECK_OK(specdec_gen_config_set_top_k(c, 0, &g_err));
    CHECK_OK(specdec_gen_config_set_top_k(c, 40, &g_err));
    CHECK_OK(specdec_gen_config_set_top_k(c, UINT32_MAX, &g_err));

    CHECK_OK(specdec_gen_config_set_top_p(c, 1.0f, &g_err));
    CHECK_OK(specdec_gen_config_set_top_p(c, 0.9f, &g_err));
    CHECK_ERR(specdec_gen_config_set_top_p(c, 0.0f, &g_err), IA, "top_p");
    CHECK_ERR(specdec_gen_config_set_top_p(c, 1.5f, &g_err), IA, "top_p");
    CHECK_ERR(specdec_gen_config_set_top_p(c, NAN, &g_err), IA, "top_p");

    CHECK_OK(specdec_gen_config_set_min_p(c, 0.0f, &g_err));
    CHECK_OK(specdec_gen_config_set_min_p(c, 1.0f, &g_err));
    CHECK_OK(specdec_gen_config_set_min_p(c, 0.05f, &g_err));
    CHECK_ERR(specdec_gen_config_set_min_p(c, -0.1f, &g_err), IA, "min_p");
    CHECK_ERR(specdec_gen_config_set_min_p(c, 1.1f, &g_err), IA, "min_p");

    CHECK_OK(specdec_gen_config_set_repetition_penalty(c, 1.0f, &g_err));
    CHECK_OK(specdec_gen_config_set_repetition_penalty(c, 1.3f, &g_err));
    CHECK_ERR(specdec_gen_config_set_repetition_penalty(c, 0.0f, &g_err), IA, "repetition_penalty");
    CHECK_ERR(specdec_gen_config_set_repetition_penalty(c, -1.0f, &g_err), IA, "repetition_penalty");
    CHECK_ERR(specdec_gen_config_set_repetition_penalty(c, INFINITY, &g_err), IA, "repetition_penalty");

    CHECK_OK(specdec_gen_config_set_seed(c, 0, &g_err));
    CHECK_OK(specdec_gen_config_set_seed(c, UINT64_MAX, &g_err));
    CHECK_OK(specdec_gen_config_set_max_new_tokens(c, 0, &g_err));
    CHECK_OK(specdec_gen_config_set_max_new_tokens(c, 100000, &g_err));

    CHECK_OK(specdec_gen_config_set_eos_ids(c, NULL, 0, &g_err)); /* no EOS */
    CHECK_OK(specdec_gen_config_set_eos_ids(c, stop, 0, &g_err)); /* no EOS */
    CHECK_OK(specdec_gen_config_set_eos_ids(c, stop, 2, &g_err));
    CHECK_OK(specdec_gen_config_use_model_eos_ids(c, &g_err)); /* generation_config.json's */
    CHECK(specdec_gen_config_use_model_eos_ids(c, NULL) == SPECDEC_STATUS_OK);

    CHECK_OK(specdec_gen_config_add_stop_tokens(c, stop, 2, &g_err));
    CHECK_ERR(specdec_gen_config_add_stop_tokens(c, stop, 0, &g_err), IA, "empty");
    CHECK_OK(specdec_gen_config_add_stop_text(c, "\n\n", &g_err));
    CHECK_ERR(specdec_gen_config_add_stop_text(c, "", &g_err), IA, "empty");
    CHECK_ERR(specdec_gen_config_add_stop_text(c, "stop\xff", &g_err), SPECDEC_STATUS_INVALID_UTF8, "text");
    CHECK_OK(specdec_gen_config_clear_stops(c, &g_err));
    specdec_gen_config_free(c);

    /* A refused value keeps the previous one: gamma stays 2 after trying 0 and 65. */
    c = make_config(2, 16, 0.0f, 0, 1);
    CHECK_ERR(specdec_gen_config_set_gamma(c, 0, &g_err), IA, "gamma");
    CHECK_ERR(specdec_gen_config_set_gamma(c, 65, &g_err), IA, "gamma");
    CHECK_ERR(specdec_gen_config_set_temperature(c, NAN, &g_err), IA, "temperature");
    CHECK_OK(specdec_generator_new(g_target, g_draft, c, &g, &g_err));
    CHECK_OK(specdec_generator_append_tokens(g, g_prompts[0], g_prompt_len[0], &g_err));
    CHECK_OK(specdec_generator_generate(g, NULL, NULL, &r, &g_err));
    memset(&st, 0, sizeof st);
    st.struct_size = sizeof st;
    CHECK_OK(specdec_generator_stats(g, &st, &g_err));
    /* Each round drafts min(gamma, remaining - 1): 2 except in the last two rounds at most. */
    CHECKF(st.drafted <= 2 * st.rounds && st.drafted + 3 >= 2 * st.rounds, "drafted %llu in %llu rounds with gamma 2",
           (unsigned long long)st.drafted, (unsigned long long)st.rounds);
    CHECK(st.new_tokens == 16 && r == SPECDEC_FINISH_REASON_MAX_TOKENS);
    specdec_generator_free(g);

    /* The config is copied: freeing it does not affect a generator made from it. */
    CHECK_OK(specdec_generator_new(g_target, g_draft, c, &g, &g_err));
    specdec_gen_config_free(c);
    CHECK_OK(specdec_generator_append_tokens(g, g_prompts[0], g_prompt_len[0], &g_err));
    CHECK_OK(specdec_generator_generate(g, NULL, NULL, &r, &g_err));
    CHECK_OK(tail_tokens(g, g_prompt_len[0], &out, &g_err));
    CHECK(out.n == 16 && r == SPECDEC_FINISH_REASON_MAX_TOKENS);
    specdec_generator_free(g);

    /* max_new_tokens 0 generates nothing. */
    c = make_config(4, 0, 0.0f, 0, 1);
    CHECK_OK(generate_once(g_target, g_draft, c, g_prompts[0], g_prompt_len[0], &out, &r, &g_err));
    CHECK(out.n == 0 && r == SPECDEC_FINISH_REASON_MAX_TOKENS);
    specdec_gen_config_free(c);

    /* EOS ids are checked against the vocabulary when the generator is made. */
    c = specdec_gen_config_new();
    CHECK_OK(specdec_gen_config_set_eos_ids(c, eos_bad, 2, &g_err));
    g = (specdec_generator *)(void *)&st;
    CHECK_ERR(specdec_generator_new(g_target, g_draft, c, &g, &g_err), SPECDEC_STATUS_TOKEN_OUT_OF_RANGE, "600");
    CHECK(g == NULL);
    specdec_gen_config_free(c);

    /* Defaults (NULL config, no draft) work. */
    CHECK_OK(specdec_generator_new(g_target, NULL, NULL, &g, &g_err));
    CHECK(g != NULL);
    specdec_generator_free(g);
}

/* ---------------------------------------------------------------------------------------------
 * Tokenizer and stream decoder
 * ------------------------------------------------------------------------------------------- */

static void test_tokenizer(void) {
    const char *text = PROMPT_TEXTS[0];
    size_t text_len = strlen(text), n = 0, n2 = 0, len = 0, len2 = 0;
    uint32_t ids[256], sentinel_ids[4] = {77, 77, 77, 77};
    uint32_t bad[3];
    char buf[512];
    char *round_trip;

    CHECK(specdec_tokenizer_vocab_size(g_tok) == 512);

    /* Capacity 0 asks for the size, then a retry with it succeeds. */
    CHECK_ERR(specdec_tokenizer_encode(g_tok, text, text_len, NULL, 0, &n, &g_err), SPECDEC_STATUS_BUFFER_TOO_SMALL, "capacity");
    CHECK(n > 1 && n < 256);
    CHECK_ERR(specdec_tokenizer_encode(g_tok, text, text_len, sentinel_ids, 2, &n2, &g_err), SPECDEC_STATUS_BUFFER_TOO_SMALL,
              "needs");
    CHECK(n2 == n && sentinel_ids[0] == 77 && sentinel_ids[1] == 77); /* nothing written */
    CHECK_OK(specdec_tokenizer_encode(g_tok, text, text_len, ids, n, &n2, &g_err));
    CHECK(n2 == n);
    /* text_len counts bytes; no terminator needed. */
    CHECK_OK(specdec_tokenizer_encode(g_tok, "abcdef", 3, ids + 200, 50, &n2, &g_err));
    CHECK(n2 >= 1);
    CHECK_ERR(specdec_tokenizer_encode(g_tok, "ab\xff", 3, ids + 200, 50, &n2, &g_err), SPECDEC_STATUS_INVALID_UTF8, "text");
    CHECK_ERR(specdec_tokenizer_encode(g_tok, "\xe2\x82\xac", 2, ids + 200, 50, &n2, &g_err), SPECDEC_STATUS_INVALID_UTF8,
              "text"); /* a character cut by text_len */

    /* Decode: capacity 0 gives the length; capacity == length is still too small (the NUL). */
    CHECK_ERR(specdec_tokenizer_decode(g_tok, ids, n, NULL, 0, &len, &g_err), SPECDEC_STATUS_BUFFER_TOO_SMALL, "capacity");
    CHECK(len == text_len);
    buf[0] = 'Z';
    CHECK_ERR(specdec_tokenizer_decode(g_tok, ids, n, buf, len, &len2, &g_err), SPECDEC_STATUS_BUFFER_TOO_SMALL, "NUL");
    CHECK(len2 == len && buf[0] == 'Z');
    CHECK_OK(specdec_tokenizer_decode(g_tok, ids, n, buf, len + 1, &len2, &g_err));
    CHECK(len2 == len && buf[len] == '\0');
    CHECKF(strcmp(buf, text) == 0, "round trip gave \"%s\"", buf);
    CHECK_ERR(specdec_tokenizer_decode(g_tok, ids, 0, buf, 0, &len, &g_err), SPECDEC_STATUS_BUFFER_TOO_SMALL, "capacity");
    CHECK(len == 0);

    /* Out-of-range ids. */
    bad[0] = 5;
    bad[1] = 512;
    bad[2] = 6;
    CHECK_ERR(specdec_tokenizer_decode(g_tok, bad, 3, buf, sizeof buf, &len, &g_err), SPECDEC_STATUS_TOKEN_OUT_OF_RANGE, "512");
    bad[1] = UINT32_MAX;
    CHECK_ERR(specdec_tokenizer_decode(g_tok, bad, 3, buf, sizeof buf, &len, &g_err), SPECDEC_STATUS_TOKEN_OUT_OF_RANGE,
              "4294967295");
    bad[1] = 511;
    CHECK_OK(specdec_tokenizer_decode(g_tok, bad, 3, buf, sizeof buf, &len, &g_err));
    /* Special tokens are skipped: id 0 is <|endoftext|>. */
    bad[0] = 0;
    CHECK_OK(specdec_tokenizer_decode(g_tok, bad, 1, buf, sizeof buf, &len, &g_err));
    CHECK(len == 0 && buf[0] == '\0');

    /* Non-ASCII text round-trips. */
    text = "na\xc3\xafve caf\xc3\xa9 \xe2\x80\x94 \xe2\x9c\x93 \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x99\x82";
    CHECK_OK(specdec_tokenizer_encode(g_tok, text, strlen(text), ids, 256, &n, &g_err));
    round_trip = decode_all(ids, n);
    CHECKF(strcmp(round_trip, text) == 0, "round trip gave \"%s\"", round_trip);
    free(round_trip);
}

/* Push `ids` through a fresh stream decoder, `chunk` at a time; returns the malloc'd text. */
static char *stream_decode(specdec_stream_decoder *d, const uint32_t *ids, size_t n, size_t chunk, int *pieces_valid) {
    size_t cap = 64, used = 0, i, len = 0;
    char *out = malloc(cap);
    const char *text = NULL;
    *pieces_valid = 1;
    for (i = 0; i <= n; i += chunk) {
        size_t k = i + chunk <= n ? chunk : n - i;
        specdec_status s = i < n ? specdec_stream_decoder_push(d, ids + i, k, &text, &len, &g_err)
                                 : specdec_stream_decoder_flush(d, &text, &len, &g_err);
        CHECK_OK(s);
        if (s != SPECDEC_STATUS_OK) break;
        CHECK(text != NULL && strlen(text) == len);
        if (!valid_utf8(text, len)) *pieces_valid = 0;
        while (used + len + 1 > cap) out = realloc(out, cap *= 2);
        memcpy(out + used, text, len);
        used += len;
        if (i >= n) break;
    }
    out[used] = '\0';
    return out;
}

static void test_stream_decoder(void) {
    specdec_stream_decoder *d = NULL;
    specdec_tokenizer *t = NULL;
    const char *utf8 = "caf\xc3\xa9 \xe2\x9c\x93 \xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e \xf0\x9f\x99\x82!";
    uint32_t ids[128], bad[2] = {5, 512};
    size_t n = 0, len = 0;
    const char *text = NULL;
    tokbuf gen;
    char *one_shot, *streamed;
    int valid;
    size_t chunk;

    /* Generated tokens: streamed text (one token at a time, then in chunks) == one-shot decode. */
    greedy(g_target, g_draft, 4, 1, 32, &gen);
    one_shot = decode_all(gen.ids, gen.n);
    for (chunk = 1; chunk <= 5; chunk += 4) {
        CHECK_OK(specdec_stream_decoder_new(g_tok, &d, &g_err));
        streamed = stream_decode(d, gen.ids, gen.n, chunk, &valid);
        CHECKF(strcmp(streamed, one_shot) == 0, "streamed \"%s\" != decoded \"%s\"", streamed, one_shot);
        CHECK(valid);
        free(streamed);
        specdec_stream_decoder_free(d);
    }
    free(one_shot);

    /* Multi-byte characters split across tokens are held back until complete. */
    CHECK_OK(specdec_tokenizer_encode(g_tok, utf8, strlen(utf8), ids, 128, &n, &g_err));
    CHECKF(n > 10, "%zu tokens", n);
    CHECK_OK(specdec_stream_decoder_new(g_tok, &d, &g_err));
    streamed = stream_decode(d, ids, n, 1, &valid);
    CHECKF(strcmp(streamed, utf8) == 0, "streamed \"%s\"", streamed);
    CHECK(valid);
    free(streamed);
    specdec_stream_decoder_free(d);

    /* An incomplete character at the very end comes out of flush (as U+FFFD). */
    CHECK_OK(specdec_stream_decoder_new(g_tok, &d, &g_err));
    CHECK_OK(specdec_tokenizer_encode(g_tok, "\xf0\x9f\x99\x82", 4, ids, 128, &n, &g_err));
    if (n >= 2) {
        CHECK_OK(specdec_stream_decoder_push(d, ids, n - 1, &text, &len, &g_err));
        CHECK(len == 0 && text[0] == '\0');
        CHECK_OK(specdec_stream_decoder_flush(d, &text, &len, &g_err));
        CHECK(len > 0);
    }
    specdec_stream_decoder_free(d);

    /* Out-of-range ids: an error, and the decoder stays usable. */
    CHECK_OK(specdec_stream_decoder_new(g_tok, &d, &g_err));
    CHECK_ERR(specdec_stream_decoder_push(d, bad, 2, &text, &len, &g_err), SPECDEC_STATUS_TOKEN_OUT_OF_RANGE, "512");
    CHECK_ERR(specdec_stream_decoder_push(d, bad + 1, 1, &text, &len, &g_err), SPECDEC_STATUS_TOKEN_OUT_OF_RANGE, "512");
    CHECK_OK(specdec_tokenizer_encode(g_tok, "hello world", 11, ids, 128, &n, &g_err));
    streamed = stream_decode(d, ids, n, 1, &valid);
    CHECKF(strcmp(streamed, "hello world") == 0, "after a failed push the decoder streamed \"%s\"", streamed);
    free(streamed);
    specdec_stream_decoder_free(d);

    /* A token that decodes to U+0000 (byte-level token 189, "\u0100"): the stream gives the same
     * bytes as decode, NUL included, with the exact length (found by the tokenizer fuzz target:
     * the stream used to turn it into a space). */
    {
        const uint32_t nul_ids[3] = {72, 189, 73};
        char buf[16];
        CHECK_OK(specdec_tokenizer_decode(g_tok, nul_ids, 3, buf, sizeof buf, &len, &g_err));
        CHECK(len == 3 && buf[1] == '\0');
        CHECK_OK(specdec_stream_decoder_new(g_tok, &d, &g_err));
        CHECK_OK(specdec_stream_decoder_push(d, nul_ids, 3, &text, &len, &g_err));
        CHECKF(len == 3 && memcmp(text, buf, 4) == 0, "streamed %zu bytes", len);
        specdec_stream_decoder_free(d);
    }

    /* The decoder keeps its tokenizer alive. */
    CHECK_OK(specdec_tokenizer_load(FIX "llama", &t, &g_err));
    CHECK_OK(specdec_stream_decoder_new(t, &d, &g_err));
    specdec_tokenizer_free(t);
    streamed = stream_decode(d, ids, n, 2, &valid);
    CHECK(strcmp(streamed, "hello world") == 0);
    free(streamed);
    specdec_stream_decoder_free(d);
}

/* ---------------------------------------------------------------------------------------------
 * Generator errors and limits
 * ------------------------------------------------------------------------------------------- */

static void test_generator_errors(void) {
    specdec_model *other = load_model(FIX "vocab600");
    specdec_generator *g = NULL;
    specdec_gen_config *c = make_config(4, 16, 0.0f, 0, 1);
    const uint32_t *toks = NULL;
    size_t n = 7;
    uint32_t bad[4];
    tokbuf ref, out;
    specdec_finish_reason r;

    CHECK(specdec_model_vocab_size(g_target) == 512);
    CHECK(specdec_model_context_limit(g_target) == 512);
    CHECK(specdec_model_vocab_size(other) == 600);

    /* A draft with another vocabulary. */
    g = (specdec_generator *)(void *)&n;
    CHECK_ERR(specdec_generator_new(g_target, other, c, &g, &g_err), SPECDEC_STATUS_VOCAB_MISMATCH, "600");
    CHECK(g == NULL);
    CHECK(specdec_generator_new(other, g_draft, NULL, &g, NULL) == SPECDEC_STATUS_VOCAB_MISMATCH);
    specdec_model_free(other);

    greedy(g_target, NULL, 1, 0, 16, &ref);

    CHECK_OK(specdec_generator_new(g_target, g_draft, c, &g, &g_err));
    CHECK(specdec_generator_finish_reason(g) == SPECDEC_FINISH_REASON_NONE);
    /* Before any prompt. */
    CHECK_ERR(specdec_generator_step(g, &toks, &n, &g_err), SPECDEC_STATUS_INVALID_ARGUMENT, "prompt");
    CHECK(n == 0);
    CHECK_ERR(specdec_generator_generate(g, NULL, NULL, &r, &g_err), SPECDEC_STATUS_INVALID_ARGUMENT, "prompt");
    CHECK_OK(specdec_generator_append_tokens(g, NULL, 0, &g_err)); /* an empty prompt is still no prompt */
    CHECK_ERR(specdec_generator_step(g, &toks, &n, &g_err), SPECDEC_STATUS_INVALID_ARGUMENT, "prompt");
    CHECK_OK(specdec_generator_tokens(g, &toks, &n, &g_err));
    CHECK(n == 0);

    /* Out-of-range ids: all or nothing. */
    bad[0] = 1;
    bad[1] = 2;
    bad[2] = 512;
    bad[3] = 3;
    CHECK_ERR(specdec_generator_append_tokens(g, bad, 4, &g_err), SPECDEC_STATUS_TOKEN_OUT_OF_RANGE, "512");
    bad[2] = 100000;
    CHECK_ERR(specdec_generator_append_tokens(g, bad, 4, &g_err), SPECDEC_STATUS_TOKEN_OUT_OF_RANGE, "100000");
    CHECK_OK(specdec_generator_tokens(g, &toks, &n, &g_err));
    CHECK(n == 0);
    /* ... and the same generator then generates exactly the reference. */
    CHECK_OK(specdec_generator_append_tokens(g, g_prompts[0], g_prompt_len[0], &g_err));
    CHECK_OK(specdec_generator_generate(g, NULL, NULL, &r, &g_err));
    CHECK_OK(tail_tokens(g, g_prompt_len[0], &out, &g_err));
    CHECK(same_tokens(&out, &ref) && r == SPECDEC_FINISH_REASON_MAX_TOKENS);
    /* A failed follow-up leaves the finished generation as it was. */
    bad[2] = 512;
    CHECK_ERR(specdec_generator_append_tokens(g, bad, 4, &g_err), SPECDEC_STATUS_TOKEN_OUT_OF_RANGE, "512");
    CHECK(specdec_generator_finish_reason(g) == SPECDEC_FINISH_REASON_MAX_TOKENS);
    CHECK_OK(specdec_generator_tokens(g, &toks, &n, &g_err));
    CHECK(n == g_prompt_len[0] + 16);
    specdec_generator_free(g);
    specdec_gen_config_free(c);
}

static void test_context_limit(void) {
    specdec_gen_config *c = make_config(4, 16, 0.0f, 0, 1);
    specdec_generator *g = NULL;
    uint32_t *many = malloc(600 * sizeof *many);
    const uint32_t *toks = NULL;
    size_t i, n = 0;
    tokbuf ref, out;
    specdec_finish_reason r = SPECDEC_FINISH_REASON_NONE;

    for (i = 0; i < 600; i++) many[i] = (uint32_t)((i * 7 + 3) % 512);
    greedy(g_target, NULL, 1, 0, 16, &ref);

    CHECK_OK(specdec_generator_new(g_target, g_draft, c, &g, &g_err));
    CHECK_ERR(specdec_generator_append_tokens(g, many, 600, &g_err), SPECDEC_STATUS_CONTEXT_LIMIT, "512");
    CHECK_ERR(specdec_generator_append_tokens(g, many, 512, &g_err), SPECDEC_STATUS_CONTEXT_LIMIT, "513");
    CHECK_OK(specdec_generator_tokens(g, &toks, &n, &g_err));
    CHECK(n == 0);
    /* Still usable with a short prompt. */
    CHECK_OK(specdec_generator_append_tokens(g, g_prompts[0], g_prompt_len[0], &g_err));
    CHECK_OK(specdec_generator_generate(g, NULL, NULL, &r, &g_err));
    CHECK_OK(tail_tokens(g, g_prompt_len[0], &out, &g_err));
    CHECK(same_tokens(&out, &ref));
    specdec_generator_free(g);

    /* 511 tokens fit with room for one more; the second iteration hits the limit. */
    CHECK_OK(specdec_generator_new(g_target, g_draft, c, &g, &g_err));
    CHECK_OK(specdec_generator_append_tokens(g, many, 511, &g_err));
    CHECK_ERR(specdec_generator_generate(g, NULL, NULL, &r, &g_err), SPECDEC_STATUS_CONTEXT_LIMIT, "512");
    CHECK_OK(specdec_generator_tokens(g, &toks, &n, &g_err));
    CHECK(n == 512);
    CHECK_ERR(specdec_generator_step(g, &toks, &n, &g_err), SPECDEC_STATUS_CONTEXT_LIMIT, "512");
    CHECK_ERR(specdec_generator_append_tokens(g, many, 1, &g_err), SPECDEC_STATUS_CONTEXT_LIMIT, "512");
    CHECK_ERR(specdec_generator_append_tokens(g, NULL, 0, &g_err), SPECDEC_STATUS_CONTEXT_LIMIT, "512");
    specdec_generator_free(g);

    specdec_gen_config_free(c);
    free(many);
}

/* ---------------------------------------------------------------------------------------------
 * Stats
 * ------------------------------------------------------------------------------------------- */

static void test_stats(void) {
    specdec_gen_config *c = make_config(4, 24, 0.0f, 0, 1);
    specdec_generator *g = NULL;
    specdec_stats st;
    struct {
        specdec_stats s;
        unsigned char tail[16];
    } bigger;
    size_t i;
    int tail_ok = 1;

    CHECK_OK(specdec_generator_new(g_target, g_draft, c, &g, &g_err));
    /* Before anything ran: all zero. */
    memset(&st, 0xab, sizeof st);
    st.struct_size = sizeof st;
    CHECK_OK(specdec_generator_stats(g, &st, &g_err));
    CHECK(st.struct_size == sizeof st && st.rounds == 0 && st.new_tokens == 0 && st.acceptance_rate == 0.0 &&
          st.tokens_per_target_call == 0.0);

    CHECK_OK(specdec_generator_append_tokens(g, g_prompts[1], g_prompt_len[1], &g_err));
    CHECK_OK(specdec_generator_generate(g, NULL, NULL, NULL, &g_err)); /* reason may be NULL */

    st.struct_size = 0;
    CHECK_ERR(specdec_generator_stats(g, &st, &g_err), SPECDEC_STATUS_INVALID_ARGUMENT, "struct_size");
    st.struct_size = SPECDEC_STATS_V1_SIZE - 1;
    CHECK_ERR(specdec_generator_stats(g, &st, &g_err), SPECDEC_STATUS_INVALID_ARGUMENT, "struct_size");
    CHECK(sizeof(specdec_stats) >= SPECDEC_STATS_V1_SIZE);
    st.struct_size = sizeof(size_t);
    CHECK(specdec_generator_stats(g, &st, NULL) == SPECDEC_STATUS_INVALID_ARGUMENT);

    /* The first version's size is enough. */
    memset(&st, 0, sizeof st);
    st.struct_size = SPECDEC_STATS_V1_SIZE;
    CHECK_OK(specdec_generator_stats(g, &st, &g_err));
    CHECK(st.struct_size == SPECDEC_STATS_V1_SIZE && st.new_tokens == 24);
    memset(&st, 0, sizeof st);
    st.struct_size = sizeof st;
    CHECK_OK(specdec_generator_stats(g, &st, &g_err));
    CHECK(st.struct_size == sizeof st);
    CHECK(st.new_tokens == 24);
    CHECK(st.rounds >= 1 && st.rounds <= 24);
    CHECK(st.target_calls >= st.rounds);
    CHECK(st.draft_calls >= 1);
    CHECK(st.drafted >= st.accepted);
    CHECK(st.drafted + 1 >= st.rounds); /* gamma 4: at least one proposal per round but a last one */
    CHECK(st.acceptance_rate >= 0.0 && st.acceptance_rate <= 1.0);
    CHECK(fabs(st.acceptance_rate - (double)st.accepted / (double)st.drafted) < 1e-9);
    CHECK(fabs(st.tokens_per_target_call - (double)st.new_tokens / (double)st.rounds) < 1e-9);
    CHECK(st.tokens_per_target_call >= 1.0 && st.tokens_per_target_call <= 5.0);
    CHECK(st.draft_seconds >= 0.0 && st.target_seconds > 0.0 && st.other_seconds >= 0.0);
    CHECK(st.total_seconds >= st.draft_seconds + st.target_seconds - 1e-6);
    CHECK(st.total_seconds < 600.0);

    /* A caller built against a newer, larger struct keeps its extra bytes and learns how many
     * were written. */
    memset(&bigger, 0x5a, sizeof bigger);
    bigger.s.struct_size = sizeof bigger;
    CHECK_OK(specdec_generator_stats(g, &bigger.s, &g_err));
    for (i = 0; i < sizeof bigger.tail; i++) tail_ok = tail_ok && bigger.tail[i] == 0x5a;
    CHECK(tail_ok && bigger.s.struct_size == sizeof(specdec_stats) && bigger.s.new_tokens == 24);
    specdec_generator_free(g);

    /* Target-only: nothing drafted. */
    CHECK_OK(specdec_generator_new(g_target, NULL, c, &g, &g_err));
    CHECK_OK(specdec_generator_append_tokens(g, g_prompts[1], g_prompt_len[1], &g_err));
    CHECK_OK(specdec_generator_generate(g, NULL, NULL, NULL, &g_err));
    st.struct_size = sizeof st;
    CHECK_OK(specdec_generator_stats(g, &st, &g_err));
    CHECK(st.drafted == 0 && st.accepted == 0 && st.draft_calls == 0 && st.acceptance_rate == 0.0);
    CHECK(st.rounds == 24 && st.new_tokens == 24 && st.tokens_per_target_call == 1.0);
    specdec_generator_free(g);
    specdec_gen_config_free(c);
}

/* ---------------------------------------------------------------------------------------------
 * Finish reasons, step API, turns
 * ------------------------------------------------------------------------------------------- */

static void test_finish_reasons(void) {
    tokbuf ref64, ref, out;
    specdec_gen_config *c;
    specdec_generator *g = NULL;
    specdec_finish_reason r;
    collector col;
    const uint32_t *toks;
    size_t i, n, eos_at, stop_at, pos;
    uint32_t eos, stop[2];
    char *text, stop_text[4];
    char *gen_text, *shorter;

    greedy(g_target, g_draft, 4, 2, 64, &ref64);
    ref = ref64;
    ref.n = 32; /* the first 32 tokens are what a 32-token generation gives */

    /* EOS: a token the reference produces; the output stops right after its first occurrence. */
    eos = ref.ids[5];
    for (eos_at = 0; ref.ids[eos_at] != eos; eos_at++) continue;
    c = make_config(4, 32, 0.0f, 0, 0);
    CHECK_OK(specdec_gen_config_set_eos_ids(c, &eos, 1, &g_err));
    CHECK_OK(specdec_generator_new(g_target, g_draft, c, &g, &g_err));
    CHECK_OK(specdec_generator_append_tokens(g, g_prompts[2], g_prompt_len[2], &g_err));
    CHECK_OK(specdec_generator_generate(g, NULL, NULL, &r, &g_err));
    CHECK_OK(tail_tokens(g, g_prompt_len[2], &out, &g_err));
    CHECKF(r == SPECDEC_FINISH_REASON_EOS && specdec_generator_finish_reason(g) == SPECDEC_FINISH_REASON_EOS, "reason %u",
           (unsigned)r);
    CHECKF(out.n == eos_at + 1 && memcmp(out.ids, ref.ids, out.n * sizeof out.ids[0]) == 0, "EOS %u expected at %zu",
           (unsigned)eos, eos_at);
    /* Appending zero tokens continues after the EOS with a fresh allowance of 32: up to the next
     * EOS or 32 more tokens, still the greedy continuation. */
    CHECK_OK(specdec_generator_append_tokens(g, NULL, 0, &g_err));
    CHECK(specdec_generator_finish_reason(g) == SPECDEC_FINISH_REASON_NONE);
    CHECK_OK(specdec_generator_generate(g, NULL, NULL, &r, &g_err));
    CHECK_OK(tail_tokens(g, g_prompt_len[2], &out, &g_err));
    for (i = eos_at + 1; i < eos_at + 1 + 32 && ref64.ids[i] != eos; i++) continue;
    n = i < eos_at + 1 + 32 ? i + 1 : i; /* expected total after the prompt */
    CHECKF(out.n == n && memcmp(out.ids, ref64.ids, n * sizeof out.ids[0]) == 0, "%zu tokens after two turns, expected %zu",
           out.n, n);
    CHECK(r == (n < eos_at + 1 + 32 ? SPECDEC_FINISH_REASON_EOS : SPECDEC_FINISH_REASON_MAX_TOKENS));
    specdec_generator_free(g);

    /* set_eos_ids(NULL, 0) means no EOS: the same output as without the EOS id. */
    CHECK_OK(specdec_gen_config_set_eos_ids(c, NULL, 0, &g_err));
    CHECK_OK(generate_once(g_target, g_draft, c, g_prompts[2], g_prompt_len[2], &out, &r, &g_err));
    CHECK(r == SPECDEC_FINISH_REASON_MAX_TOKENS && same_tokens(&out, &ref));

    /* use_model_eos_ids: back to generation_config.json's EOS (id 0), which ends generation only
     * where the reference produces it. */
    CHECK_OK(specdec_gen_config_set_eos_ids(c, &eos, 1, &g_err));
    CHECK_OK(specdec_gen_config_use_model_eos_ids(c, &g_err));
    CHECK_OK(generate_once(g_target, g_draft, c, g_prompts[2], g_prompt_len[2], &out, &r, &g_err));
    for (i = 0; i < ref.n && ref.ids[i] != 0; i++) continue;
    CHECK(r == (i < ref.n ? SPECDEC_FINISH_REASON_EOS : SPECDEC_FINISH_REASON_MAX_TOKENS));
    CHECK(out.n == (i < ref.n ? i + 1 : ref.n) && memcmp(out.ids, ref.ids, out.n * sizeof out.ids[0]) == 0);
    specdec_gen_config_free(c);

    /* Stop tokens: the first place where the output ends with (ref[6], ref[7]). */
    stop[0] = ref.ids[6];
    stop[1] = ref.ids[7];
    for (stop_at = 1; !(ref.ids[stop_at - 1] == stop[0] && ref.ids[stop_at] == stop[1]); stop_at++) continue;
    c = make_config(4, 32, 0.0f, 0, 1);
    CHECK_OK(specdec_gen_config_add_stop_tokens(c, stop, 2, &g_err));
    CHECK_OK(generate_once(g_target, g_draft, c, g_prompts[2], g_prompt_len[2], &out, &r, &g_err));
    CHECKF(r == SPECDEC_FINISH_REASON_STOP_SEQUENCE, "reason %u", (unsigned)r);
    CHECK(out.n == stop_at + 1 && memcmp(out.ids, ref.ids, out.n * sizeof out.ids[0]) == 0);
    /* Cleared stops: back to MAX_TOKENS and the full reference. */
    CHECK_OK(specdec_gen_config_clear_stops(c, &g_err));
    CHECK_OK(generate_once(g_target, g_draft, c, g_prompts[2], g_prompt_len[2], &out, &r, &g_err));
    CHECK(r == SPECDEC_FINISH_REASON_MAX_TOKENS && same_tokens(&out, &ref));

    /* Stop text: three ASCII bytes from the middle of the reference text. */
    text = decode_all(ref.ids, ref.n);
    for (pos = strlen(text) / 2; pos + 3 < strlen(text); pos++)
        if ((unsigned char)text[pos] < 0x80 && (unsigned char)text[pos + 1] < 0x80 && (unsigned char)text[pos + 2] < 0x80) break;
    memcpy(stop_text, text + pos, 3);
    stop_text[3] = '\0';
    free(text);
    CHECK_OK(specdec_gen_config_add_stop_text(c, stop_text, &g_err));
    CHECK_OK(specdec_generator_new(g_target, g_draft, c, &g, &g_err));
    CHECK_OK(specdec_generator_append_tokens(g, g_prompts[2], g_prompt_len[2], &g_err));
    /* Text stops need a tokenizer. */
    CHECK_ERR(specdec_generator_generate(g, NULL, NULL, &r, &g_err), SPECDEC_STATUS_INVALID_ARGUMENT, "tokenizer");
    CHECK_OK(specdec_generator_set_tokenizer(g, g_tok, &g_err));
    CHECK_OK(specdec_generator_generate(g, NULL, NULL, &r, &g_err));
    CHECKF(r == SPECDEC_FINISH_REASON_STOP_SEQUENCE, "reason %u for stop text \"%s\"", (unsigned)r, stop_text);
    CHECK(specdec_generator_finish_reason(g) == SPECDEC_FINISH_REASON_STOP_SEQUENCE);
    CHECK_OK(tail_tokens(g, g_prompt_len[2], &out, &g_err));
    CHECK(out.n >= 1 && out.n <= ref.n && memcmp(out.ids, ref.ids, out.n * sizeof out.ids[0]) == 0);
    gen_text = decode_all(out.ids, out.n);
    shorter = decode_all(out.ids, out.n - 1);
    CHECKF(strstr(gen_text, stop_text) != NULL && strstr(shorter, stop_text) == NULL, "stop text \"%s\" in \"%s\"", stop_text,
           gen_text);
    free(gen_text);
    free(shorter);
    specdec_generator_free(g);
    specdec_gen_config_free(c);

    /* STOPPED: the callback returns non-zero on its second call. */
    c = make_config(2, 32, 0.0f, 0, 1);
    CHECK_OK(specdec_generator_new(g_target, g_draft, c, &g, &g_err));
    CHECK_OK(specdec_generator_append_tokens(g, g_prompts[2], g_prompt_len[2], &g_err));
    memset(&col, 0, sizeof col);
    col.stop_after_calls = 2;
    r = SPECDEC_FINISH_REASON_NONE;
    CHECK_OK(specdec_generator_generate(g, collect_cb, &col, &r, &g_err));
    CHECK(r == SPECDEC_FINISH_REASON_STOPPED && specdec_generator_finish_reason(g) == SPECDEC_FINISH_REASON_STOPPED);
    CHECK(col.calls == 2 && col.n >= 2 && col.n <= 6);
    CHECK_OK(tail_tokens(g, g_prompt_len[2], &out, &g_err));
    CHECK(out.n == col.n && memcmp(out.ids, ref.ids, out.n * sizeof out.ids[0]) == 0);
    /* Finished: step adds nothing, generate returns the same reason. */
    CHECK_OK(specdec_generator_step(g, &toks, &n, &g_err));
    CHECK(n == 0);
    CHECK_OK(specdec_generator_generate(g, collect_cb, &col, &r, &g_err));
    CHECK(r == SPECDEC_FINISH_REASON_STOPPED && col.calls == 2);
    /* Appending zero tokens resumes a stopped generation where it was. */
    CHECK_OK(specdec_generator_append_tokens(g, NULL, 0, &g_err));
    col.stop_after_calls = 0;
    CHECK_OK(specdec_generator_generate(g, collect_cb, &col, &r, &g_err));
    CHECK(r == SPECDEC_FINISH_REASON_MAX_TOKENS);
    CHECK_OK(tail_tokens(g, g_prompt_len[2], &out, &g_err));
    CHECK(out.n == col.n && col.n <= 6 + 32 && out.n >= 32 && memcmp(out.ids, ref64.ids, out.n * sizeof out.ids[0]) == 0);
    specdec_generator_free(g);
    specdec_gen_config_free(c);
}

static void test_step_and_turns(void) {
    specdec_gen_config *c = make_config(3, 16, 0.0f, 0, 1);
    specdec_generator *spec = NULL, *plain = NULL;
    const uint32_t *toks = NULL;
    size_t n = 0, iterations = 0;
    tokbuf ref, out, a, b;
    collector col;
    specdec_finish_reason r;
    static const uint32_t follow_up[3] = {10, 20, 30};

    greedy(g_target, NULL, 1, 3, 16, &ref);

    /* Driving step() by hand gives the same tokens as generate(). */
    CHECK_OK(specdec_generator_new(g_target, g_draft, c, &spec, &g_err));
    CHECK_OK(specdec_generator_append_tokens(spec, g_prompts[3], g_prompt_len[3], &g_err));
    out.n = 0;
    while (specdec_generator_finish_reason(spec) == SPECDEC_FINISH_REASON_NONE && iterations++ < 64) {
        size_t i;
        CHECK_OK(specdec_generator_step(spec, &toks, &n, &g_err));
        CHECK(n >= 1 && n <= 4);
        for (i = 0; i < n; i++) out.ids[out.n++] = toks[i];
    }
    CHECK(specdec_generator_finish_reason(spec) == SPECDEC_FINISH_REASON_MAX_TOKENS);
    CHECK(same_tokens(&out, &ref));
    CHECK_OK(specdec_generator_step(spec, &toks, &n, &g_err));
    CHECK(n == 0);

    /* A follow-up turn: the finish reason resets, 16 more tokens follow; speculative and
     * target-only agree across turns (the caches survive the turn boundary). */
    CHECK_OK(specdec_generator_new(g_target, NULL, c, &plain, &g_err));
    CHECK_OK(specdec_generator_append_tokens(plain, g_prompts[3], g_prompt_len[3], &g_err));
    CHECK_OK(specdec_generator_generate(plain, NULL, NULL, &r, &g_err));
    CHECK_OK(specdec_generator_append_tokens(spec, follow_up, 3, &g_err));
    CHECK_OK(specdec_generator_append_tokens(plain, follow_up, 3, &g_err));
    CHECK(specdec_generator_finish_reason(spec) == SPECDEC_FINISH_REASON_NONE);
    memset(&col, 0, sizeof col);
    CHECK_OK(specdec_generator_generate(spec, collect_cb, &col, &r, &g_err));
    CHECK(r == SPECDEC_FINISH_REASON_MAX_TOKENS && col.n == 16);
    CHECK_OK(specdec_generator_generate(plain, NULL, NULL, &r, &g_err));
    CHECK_OK(tail_tokens(spec, 0, &a, &g_err));
    CHECK_OK(tail_tokens(plain, 0, &b, &g_err));
    CHECK(a.n == g_prompt_len[3] + 16 + 3 + 16 && same_tokens(&a, &b));
    CHECK(memcmp(a.ids + a.n - 16, col.ids, 16 * sizeof col.ids[0]) == 0);
    specdec_generator_free(spec);
    specdec_generator_free(plain);
    specdec_gen_config_free(c);
}

/* Generators and decoders keep their models and tokenizers alive. */
static void test_lifetimes(void) {
    specdec_model *m = load_model(FIX "llama");
    specdec_model *d = load_model(FIX "draft");
    specdec_gen_config *c = make_config(4, 16, 0.0f, 0, 1);
    specdec_generator *g = NULL;
    tokbuf ref, out;
    specdec_finish_reason r;

    greedy(g_target, NULL, 1, 0, 16, &ref);
    CHECK_OK(specdec_generator_new(m, d, c, &g, &g_err));
    specdec_model_free(m);
    specdec_model_free(d);
    specdec_gen_config_free(c);
    CHECK_OK(specdec_generator_append_tokens(g, g_prompts[0], g_prompt_len[0], &g_err));
    CHECK_OK(specdec_generator_generate(g, NULL, NULL, &r, &g_err));
    CHECK_OK(tail_tokens(g, g_prompt_len[0], &out, &g_err));
    CHECK(same_tokens(&out, &ref));
    specdec_generator_free(g);
}

/* ---------------------------------------------------------------------------------------------
 * Exactness and reproducibility
 * ------------------------------------------------------------------------------------------- */

static void test_greedy_exactness(void) {
    static const char *const archs[3] = {"llama", "qwen2", "gpt2"};
    size_t a, p;
    uint32_t gamma;
    for (a = 0; a < (g_quick ? 1u : 3u); a++) {
        char path[64];
        specdec_model *target;
        snprintf(path, sizeof path, FIX "%s", archs[a]);
        target = a == 0 ? g_target : load_model(path);
        for (p = 0; p < (g_quick ? 1u : 4u); p++) {
            tokbuf ref, out;
            greedy(target, NULL, 1, (int)p, 24, &ref);
            for (gamma = 1; gamma <= SPECDEC_MAX_GAMMA; gamma = gamma < 8 ? gamma + 1 : gamma * 2) {
                if (g_quick && gamma != 1 && gamma != 4 && gamma != 8) continue;
                greedy(target, g_draft, gamma, (int)p, 24, &out);
                CHECKF(same_tokens(&out, &ref), "%s, prompt %zu, gamma %u: speculative != target-only", archs[a], p,
                       (unsigned)gamma);
                if (!same_tokens(&out, &ref)) {
                    print_tokens("target-only", &ref);
                    print_tokens("speculative", &out);
                }
            }
        }
        if (a > 0) specdec_model_free(target);
    }
}

static void test_sampling_reproducible(void) {
    specdec_gen_config *c = make_config(4, 24, 1.0f, 1234, 1);
    tokbuf a, b, greedy_out;
    specdec_finish_reason r;

    CHECK_OK(generate_once(g_target, g_draft, c, g_prompts[0], g_prompt_len[0], &a, &r, &g_err));
    CHECK_OK(generate_once(g_target, g_draft, c, g_prompts[0], g_prompt_len[0], &b, &r, &g_err));
    CHECK(a.n == 24 && same_tokens(&a, &b));
    /* All transforms at once, and target-only. */
    CHECK_OK(specdec_gen_config_set_top_k(c, 50, &g_err));
    CHECK_OK(specdec_gen_config_set_top_p(c, 0.9f, &g_err));
    CHECK_OK(specdec_gen_config_set_min_p(c, 0.02f, &g_err));
    CHECK_OK(specdec_gen_config_set_repetition_penalty(c, 1.2f, &g_err));
    CHECK_OK(specdec_gen_config_set_seed(c, 99, &g_err));
    CHECK_OK(generate_once(g_target, g_draft, c, g_prompts[1], g_prompt_len[1], &a, &r, &g_err));
    CHECK_OK(generate_once(g_target, g_draft, c, g_prompts[1], g_prompt_len[1], &b, &r, &g_err));
    CHECK(a.n == 24 && same_tokens(&a, &b));
    CHECK_OK(generate_once(g_target, NULL, c, g_prompts[1], g_prompt_len[1], &a, &r, &g_err));
    CHECK_OK(generate_once(g_target, NULL, c, g_prompts[1], g_prompt_len[1], &b, &r, &g_err));
    CHECK(a.n == 24 && same_tokens(&a, &b));
    /* Sampling differs from greedy somewhere over a few seeds (temperature 1 is not greedy). */
    greedy(g_target, g_draft, 4, 1, 24, &greedy_out);
    {
        int differs = 0;
        uint64_t seed;
        for (seed = 1; seed <= 3 && !differs; seed++) {
            CHECK_OK(specdec_gen_config_set_seed(c, seed, &g_err));
            CHECK_OK(generate_once(g_target, g_draft, c, g_prompts[1], g_prompt_len[1], &a, &r, &g_err));
            differs = !same_tokens(&a, &greedy_out);
        }
        CHECK(differs);
    }
    specdec_gen_config_free(c);
}

/* ---------------------------------------------------------------------------------------------
 * Cancellation
 * ------------------------------------------------------------------------------------------- */

typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    specdec_generator *gen;
    size_t produced;   /* tokens seen by the callback */
    int started;       /* the callback ran once */
    int cancel_sent;   /* the canceller called specdec_generator_cancel */
    int wait_for_sent; /* the callback blocks until the cancel was sent (deterministic variant) */
    size_t produced_at_cancel;
    double t_cancel;
} cancel_ctx;

static int32_t cancel_cb(void *user_data, const uint32_t *tokens, size_t n_tokens) {
    cancel_ctx *ctx = user_data;
    (void)tokens;
    pthread_mutex_lock(&ctx->mu);
    ctx->produced += n_tokens;
    if (!ctx->started && ctx->produced >= 8) {
        ctx->started = 1;
        pthread_cond_broadcast(&ctx->cv);
        while (ctx->wait_for_sent && !ctx->cancel_sent) pthread_cond_wait(&ctx->cv, &ctx->mu);
    }
    pthread_mutex_unlock(&ctx->mu);
    /* Give the canceller a chance to run between iterations even where threads are scheduled
     * one at a time (valgrind); the request may still land anywhere inside an iteration. */
    sched_yield();
    return 0;
}

static void *canceller(void *arg) {
    cancel_ctx *ctx = arg;
    pthread_mutex_lock(&ctx->mu);
    while (!ctx->started) pthread_cond_wait(&ctx->cv, &ctx->mu);
    pthread_mutex_unlock(&ctx->mu);
    if (!ctx->wait_for_sent) {
        /* Let the generation run on: the request lands somewhere inside an iteration. */
        struct timespec ts = {0, 3 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    pthread_mutex_lock(&ctx->mu);
    ctx->t_cancel = now_s();
    ctx->produced_at_cancel = ctx->produced;
    specdec_generator_cancel(ctx->gen);
    ctx->cancel_sent = 1;
    pthread_cond_broadcast(&ctx->cv);
    pthread_mutex_unlock(&ctx->mu);
    return NULL;
}

/* Calls on a generator from inside its own callback fail with BUSY instead of deadlocking;
 * cancel is the one call allowed there. */
typedef struct {
    specdec_generator *gen;
    specdec_status tokens_status, stats_status;
    specdec_finish_reason reason;
} busy_ctx;

static int32_t busy_cb(void *user_data, const uint32_t *tokens, size_t n_tokens) {
    busy_ctx *ctx = user_data;
    const uint32_t *t;
    size_t n;
    specdec_stats st;
    (void)tokens;
    (void)n_tokens;
    ctx->tokens_status = specdec_generator_tokens(ctx->gen, &t, &n, NULL);
    st.struct_size = sizeof st;
    ctx->stats_status = specdec_generator_stats(ctx->gen, &st, NULL);
    ctx->reason = specdec_generator_finish_reason(ctx->gen);
    specdec_generator_cancel(ctx->gen);
    return 0;
}

static void test_busy(void) {
    specdec_gen_config *c = make_config(4, 16, 0.0f, 0, 1);
    specdec_generator *g = NULL;
    busy_ctx ctx;
    specdec_finish_reason r = SPECDEC_FINISH_REASON_NONE;
    CHECK_OK(specdec_generator_new(g_target, g_draft, c, &g, &g_err));
    CHECK_OK(specdec_generator_append_tokens(g, g_prompts[0], g_prompt_len[0], &g_err));
    ctx.gen = g;
    ctx.tokens_status = ctx.stats_status = SPECDEC_STATUS_OK;
    ctx.reason = SPECDEC_FINISH_REASON_EOS;
    CHECK_ERR(specdec_generator_generate(g, busy_cb, &ctx, &r, &g_err), SPECDEC_STATUS_CANCELLED, "cancel");
    CHECK(ctx.tokens_status == SPECDEC_STATUS_BUSY);
    CHECK(ctx.stats_status == SPECDEC_STATUS_BUSY);
    CHECK(ctx.reason == SPECDEC_FINISH_REASON_NONE);
    CHECK(strcmp(specdec_status_name(SPECDEC_STATUS_BUSY), "SPECDEC_STATUS_BUSY") == 0);
    CHECK_OK(specdec_generator_generate(g, NULL, NULL, &r, &g_err));
    CHECK(r == SPECDEC_FINISH_REASON_MAX_TOKENS);
    specdec_generator_free(g);
    specdec_gen_config_free(c);
}

static void test_cancel(void) {
    specdec_gen_config *c = make_config(4, 400, 0.0f, 0, 1);
    specdec_gen_config *short_cfg = make_config(4, 16, 0.0f, 0, 1);
    const double prompt_limit = g_quick ? 30.0 : 2.0; /* seconds from cancel to return */
    int variant;
    tokbuf ref16;

    greedy(g_target, NULL, 1, 0, 16, &ref16);

    for (variant = 0; variant < 2; variant++) {
        cancel_ctx ctx;
        pthread_t th;
        specdec_generator *g = NULL;
        specdec_finish_reason r = SPECDEC_FINISH_REASON_NONE;
        specdec_status s;
        double t_done;
        tokbuf seq, ref;
        const uint32_t *toks;
        size_t n, steps;

        memset(&ctx, 0, sizeof ctx);
        pthread_mutex_init(&ctx.mu, NULL);
        pthread_cond_init(&ctx.cv, NULL);
        ctx.wait_for_sent = variant == 0;
        CHECK_OK(specdec_generator_new(g_target, g_draft, c, &g, &g_err));
        ctx.gen = g;
        CHECK_OK(specdec_generator_append_tokens(g, g_prompts[0], g_prompt_len[0], &g_err));
        CHECK(pthread_create(&th, NULL, canceller, &ctx) == 0);
        s = specdec_generator_generate(g, cancel_cb, &ctx, &r, &g_err);
        t_done = now_s();
        CHECK(pthread_join(th, NULL) == 0);
        CHECK_ERR(s, SPECDEC_STATUS_CANCELLED, "cancel");
        CHECK(ctx.cancel_sent);
        CHECKF(t_done - ctx.t_cancel < prompt_limit, "cancel took %.3f s", t_done - ctx.t_cancel);
        CHECK(specdec_generator_finish_reason(g) == SPECDEC_FINISH_REASON_NONE);
        CHECK_OK(tail_tokens(g, g_prompt_len[0], &seq, &g_err));
        CHECKF(seq.n == ctx.produced && seq.n < 400, "%zu tokens after cancel, callback saw %zu", seq.n, ctx.produced);
        if (variant == 0) /* cancelled inside the callback: no further iteration ran */
            CHECKF(seq.n == ctx.produced_at_cancel, "%zu tokens, %zu at cancel", seq.n, ctx.produced_at_cancel);
        else /* at most one iteration (gamma 4 + 1 tokens) after the request */
            CHECKF(seq.n <= ctx.produced_at_cancel + 5, "%zu tokens, %zu at cancel", seq.n, ctx.produced_at_cancel);

        /* The request was consumed: the same generator goes on, and its whole output equals the
         * uninterrupted target-only greedy output. */
        for (steps = 0; steps < 3; steps++) {
            CHECK_OK(specdec_generator_step(g, &toks, &n, &g_err));
            CHECK(n >= 1);
        }
        CHECK_OK(tail_tokens(g, g_prompt_len[0], &seq, &g_err));
        greedy(g_target, NULL, 1, 0, (uint32_t)seq.n, &ref);
        CHECK(same_tokens(&seq, &ref));
        specdec_generator_free(g);
        pthread_cond_destroy(&ctx.cv);
        pthread_mutex_destroy(&ctx.mu);
    }

    /* Cancel before start: the first generate is cancelled (no tokens), the next one runs. */
    {
        specdec_generator *g = NULL;
        specdec_finish_reason r = SPECDEC_FINISH_REASON_NONE;
        const uint32_t *toks;
        size_t n;
        tokbuf out;

        CHECK_OK(specdec_generator_new(g_target, g_draft, short_cfg, &g, &g_err));
        CHECK_OK(specdec_generator_append_tokens(g, g_prompts[0], g_prompt_len[0], &g_err));
        specdec_generator_cancel(g);
        specdec_generator_cancel(g); /* twice is one request */
        CHECK_ERR(specdec_generator_generate(g, NULL, NULL, &r, &g_err), SPECDEC_STATUS_CANCELLED, "cancel");
        CHECK_OK(specdec_generator_tokens(g, &toks, &n, &g_err));
        CHECK(n == g_prompt_len[0]);
        CHECK_OK(specdec_generator_generate(g, NULL, NULL, &r, &g_err));
        CHECK_OK(tail_tokens(g, g_prompt_len[0], &out, &g_err));
        CHECK(r == SPECDEC_FINISH_REASON_MAX_TOKENS && same_tokens(&out, &ref16));

        /* Cancel after the end: harmless (the finished generation reports its reason), and the
         * next turn's append clears the pending request. */
        specdec_generator_cancel(g);
        CHECK_OK(specdec_generator_generate(g, NULL, NULL, &r, &g_err));
        CHECK(r == SPECDEC_FINISH_REASON_MAX_TOKENS);
        CHECK_OK(specdec_generator_step(g, &toks, &n, &g_err));
        CHECK(n == 0);
        CHECK_OK(specdec_generator_append_tokens(g, g_prompts[1], 3, &g_err));
        CHECK_OK(specdec_generator_generate(g, NULL, NULL, &r, &g_err));
        CHECK(r == SPECDEC_FINISH_REASON_MAX_TOKENS);
        specdec_generator_free(g);

        /* Cancel, then append: the append clears the request. */
        CHECK_OK(specdec_generator_new(g_target, g_draft, short_cfg, &g, &g_err));
        specdec_generator_cancel(g);
        CHECK_OK(specdec_generator_append_tokens(g, g_prompts[0], g_prompt_len[0], &g_err));
        CHECK_OK(specdec_generator_generate(g, NULL, NULL, &r, &g_err));
        CHECK_OK(tail_tokens(g, g_prompt_len[0], &out, &g_err));
        CHECK(same_tokens(&out, &ref16));
        /* A request withdrawn with clear_cancel cancels nothing. */
        CHECK_OK(specdec_generator_append_tokens(g, g_prompts[1], 3, &g_err));
        specdec_generator_cancel(g);
        specdec_generator_clear_cancel(g);
        specdec_generator_clear_cancel(NULL);
        CHECK_OK(specdec_generator_step(g, &toks, &n, &g_err));
        CHECK(n >= 1);
        /* A cancelled step, then steps resume. */
        CHECK_OK(specdec_generator_append_tokens(g, g_prompts[1], 3, &g_err));
        specdec_generator_cancel(g);
        CHECK_ERR(specdec_generator_step(g, &toks, &n, &g_err), SPECDEC_STATUS_CANCELLED, "cancel");
        CHECK(n == 0);
        CHECK_OK(specdec_generator_step(g, &toks, &n, &g_err));
        CHECK(n >= 1);
        specdec_generator_free(g);
    }

    /* The models are fine after all of it. */
    {
        tokbuf out;
        greedy(g_target, g_draft, 4, 0, 16, &out);
        CHECK(same_tokens(&out, &ref16));
    }
    specdec_gen_config_free(short_cfg);
    specdec_gen_config_free(c);
}

/* ---------------------------------------------------------------------------------------------
 * Sharing models across threads
 * ------------------------------------------------------------------------------------------- */

typedef struct {
    const specdec_gen_config *cfg;
    int prompt;
    int rounds;
    tokbuf out[2];
    char text[2][512];
    specdec_status status;
    char message[256];
} share_job;

/* One thread: its own generator over the shared models; the shared tokenizer encodes the prompt
 * and decodes the output. */
static void *share_worker(void *arg) {
    share_job *job = arg;
    const char *prompt_text = PROMPT_TEXTS[job->prompt];
    int i;
    job->status = SPECDEC_STATUS_OK;
    for (i = 0; i < job->rounds && job->status == SPECDEC_STATUS_OK; i++) {
        specdec_error *err = NULL;
        specdec_finish_reason r;
        uint32_t ids[128];
        size_t n = 0, len = 0;
        job->status = specdec_tokenizer_encode(g_tok, prompt_text, strlen(prompt_text), ids, 128, &n, &err);
        if (job->status == SPECDEC_STATUS_OK)
            job->status = generate_once(g_target, g_draft, job->cfg, ids, n < 10 ? n : 10, &job->out[i], &r, &err);
        if (job->status == SPECDEC_STATUS_OK)
            job->status = specdec_tokenizer_decode(g_tok, job->out[i].ids, job->out[i].n, job->text[i], sizeof job->text[i],
                                                   &len, &err);
        if (err) snprintf(job->message, sizeof job->message, "%s", specdec_error_message(err));
        specdec_error_free(err);
    }
    return NULL;
}

static void test_sharing(void) {
    enum { THREADS = 4 };
    const int threads = g_quick ? 2 : THREADS;
    const int rounds = g_quick ? 1 : 2;
    specdec_gen_config *c = make_config(4, 24, 0.0f, 0, 1);
    pthread_t th[THREADS];
    static share_job jobs[THREADS];
    tokbuf refs[4];
    char *ref_texts[4];
    int i, k;

    /* Single-threaded references. */
    for (i = 0; i < 4; i++) {
        specdec_finish_reason r;
        CHECK_OK(generate_once(g_target, g_draft, c, g_prompts[i], g_prompt_len[i], &refs[i], &r, &g_err));
        ref_texts[i] = decode_all(refs[i].ids, refs[i].n);
    }
    for (i = 0; i < threads; i++) {
        memset(&jobs[i], 0, sizeof jobs[i]);
        jobs[i].cfg = c;
        jobs[i].prompt = i % 4;
        jobs[i].rounds = rounds;
        CHECK(pthread_create(&th[i], NULL, share_worker, &jobs[i]) == 0);
    }
    for (i = 0; i < threads; i++) {
        CHECK(pthread_join(th[i], NULL) == 0);
        CHECKF(jobs[i].status == SPECDEC_STATUS_OK, "thread %d: %s: %s", i, specdec_status_name(jobs[i].status), jobs[i].message);
        for (k = 0; k < rounds; k++) {
            CHECKF(same_tokens(&jobs[i].out[k], &refs[jobs[i].prompt]), "thread %d round %d differs from the reference", i, k);
            CHECK(strcmp(jobs[i].text[k], ref_texts[jobs[i].prompt]) == 0);
        }
    }
    for (i = 0; i < 4; i++) free(ref_texts[i]);
    specdec_gen_config_free(c);
}

/* ---------------------------------------------------------------------------------------------
 * Main
 * ------------------------------------------------------------------------------------------- */

static void remove_tmp(void) {
    static const char *const files[] = {"libnot-a-library.so", "not-onnx/model.onnx", "not-onnx", "truncated/model.onnx",
                                        "truncated", "bad-config/model.onnx", "bad-config/config.json", "bad-config",
                                        "identity.onnx", "tokenizer.json"};
    size_t i;
    for (i = 0; i < sizeof files / sizeof files[0]; i++) remove(tmp_path(files[i]));
    rmdir(g_tmp);
}

static void load_fixtures(void) {
    size_t i;
    g_target = load_model(FIX "llama");
    g_draft = load_model(FIX "draft");
    CHECK_OK(specdec_tokenizer_load(FIX "llama", &g_tok, &g_err));
    for (i = 0; i < 4; i++) {
        uint32_t ids[128];
        size_t n = 0;
        CHECK_OK(specdec_tokenizer_encode(g_tok, PROMPT_TEXTS[i], strlen(PROMPT_TEXTS[i]), ids, 128, &n, &g_err));
        g_prompt_len[i] = n < 10 ? n : 10;
        memcpy(g_prompts[i], ids, g_prompt_len[i] * sizeof ids[0]);
        CHECK(g_prompt_len[i] >= 5);
    }
}

#define RUN(test)                                                                                                   \
    do {                                                                                                            \
        double t0_ = now_s();                                                                                       \
        int failed0_ = g_failed;                                                                                    \
        test();                                                                                                     \
        fprintf(stderr, "%-32s %s (%.2f s)\n", #test, g_failed == failed0_ ? "ok" : "FAILED", now_s() - t0_);       \
    } while (0)

int main(void) {
    const char *quick = getenv("SPECDEC_TEST_QUICK");
    struct stat sb;
    g_quick = quick != NULL && quick[0] != '\0' && strcmp(quick, "0") != 0;
    if (stat(FIX "llama/model.onnx", &sb) != 0) {
        fprintf(stderr, "run from the repository root (%s not found)\n", FIX "llama/model.onnx");
        return 2;
    }
    snprintf(g_tmp, sizeof g_tmp, "/tmp/specdec-capi-XXXXXX");
    if (!mkdtemp(g_tmp)) {
        fprintf(stderr, "mkdtemp: %s\n", strerror(errno));
        return 2;
    }

    RUN(test_versions);
    RUN(test_status_names);
    RUN(test_model_load_without_runtime);
    RUN(test_runtime_init);
    RUN(test_free_null);
    RUN(load_fixtures);
    if (!g_target || !g_draft || !g_tok) {
        fprintf(stderr, "cannot load the fixtures\n");
        printf("%d passed, %d failed\n", g_passed, g_failed + 1);
        remove_tmp();
        return 1;
    }
    RUN(test_null_parameters);
    RUN(test_load_failures);
    RUN(test_config_setters);
    RUN(test_tokenizer);
    RUN(test_stream_decoder);
    RUN(test_generator_errors);
    RUN(test_context_limit);
    RUN(test_stats);
    RUN(test_finish_reasons);
    RUN(test_step_and_turns);
    RUN(test_lifetimes);
    RUN(test_greedy_exactness);
    RUN(test_sampling_reproducible);
    RUN(test_cancel);
    RUN(test_busy);
    RUN(test_sharing);

    specdec_tokenizer_free(g_tok);
    specdec_model_free(g_draft);
    specdec_model_free(g_target);
    remove_tmp();
    printf("%d passed, %d failed\n", g_passed, g_failed);
    return g_failed == 0 ? 0 : 1;
}
