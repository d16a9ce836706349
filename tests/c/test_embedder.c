/*
 * Tests of what the C ABI gives an embedder beyond generation, in plain C99: the LENGTH finish
 * reason and the room check, log-probabilities, rewinding, settings between turns, forks that
 * reuse a prefix's KV, model and config metadata, loading a model from memory, time to first
 * token and per-round timings, the log level and the log callback. Each with its bad input.
 *
 * Run from the repository root (fixtures are read from models/fixtures/). The last line is
 * "N passed, M failed"; the exit status is non-zero if anything failed. Scratch files go to a
 * mkdtemp folder under /tmp. SPECDEC_TEST_QUICK=1 (under valgrind) shortens the generations.
 */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "specdec.h"
#include "test_files.h"

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

#define CHECK(cond) record(!!(cond), __FILE__, __LINE__, "%s", #cond)
#define CHECKF(cond, ...) record(!!(cond), __FILE__, __LINE__, __VA_ARGS__)

/* `expr` returns `expected`; on failure g_err holds an error with that code and a message
 * containing `needle` (when not NULL). The check frees g_err. */
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
    record(ok, file, line, "%s: got %s (message \"%s\"), expected %s%s%s", expr, specdec_status_name(got), msg,
           specdec_status_name(expected), needle ? " mentioning " : "", needle ? needle : "");
    specdec_error_free(g_err);
    g_err = NULL;
}

#define CHECK_ERR(expr, expected, needle) check_status((expr), (expected), (needle), #expr, __FILE__, __LINE__)
#define CHECK_OK(expr) check_status((expr), SPECDEC_STATUS_OK, NULL, #expr, __FILE__, __LINE__)

#define FIX "models/fixtures/"
#define MAX_TOKENS 1024

static specdec_model *g_target; /* llama: vocabulary 512, context 512 */
static specdec_model *g_draft;
static char g_tmp[64];
static const uint32_t PROMPT[12] = {68, 101, 102, 32, 95, 95, 105, 110, 105, 116, 95, 95};

typedef struct {
    uint32_t ids[MAX_TOKENS];
    size_t n;
} tokbuf;

static int mkdir_p(const char *path) {
    return mkdir(path, 0700) == 0 || errno == EEXIST;
}

static specdec_model *load_with(const char *path, size_t context_limit) {
    specdec_model_options *o = specdec_model_options_new();
    specdec_model *m = NULL;
    CHECK_OK(specdec_model_options_set_intra_threads(o, 1, &g_err));
    if (context_limit) CHECK_OK(specdec_model_options_set_context_limit(o, context_limit, &g_err));
    CHECK_OK(specdec_model_load(path, o, &m, &g_err));
    specdec_model_options_free(o);
    return m;
}

/* Greedy settings with no EOS, so every run has the full length. */
static specdec_gen_config *config(uint32_t max_new, float temperature, uint64_t seed) {
    specdec_gen_config *c = specdec_gen_config_new();
    CHECK_OK(specdec_gen_config_set_max_new_tokens(c, max_new, &g_err));
    CHECK_OK(specdec_gen_config_set_eos_ids(c, NULL, 0, &g_err));
    CHECK_OK(specdec_gen_config_set_temperature(c, temperature, &g_err));
    CHECK_OK(specdec_gen_config_set_seed(c, seed, &g_err));
    return c;
}

static void copy_tokens(const specdec_generator *g, size_t from, tokbuf *out) {
    const uint32_t *ids = NULL;
    size_t n = 0;
    CHECK_OK(specdec_generator_tokens(g, &ids, &n, &g_err));
    out->n = n > from ? n - from : 0;
    if (out->n > MAX_TOKENS) out->n = MAX_TOKENS;
    if (out->n) memcpy(out->ids, ids + from, out->n * sizeof ids[0]);
}

static int same(const tokbuf *a, const tokbuf *b) {
    return a->n == b->n && (a->n == 0 || memcmp(a->ids, b->ids, a->n * sizeof a->ids[0]) == 0);
}

/* A new generator over the fixtures that generated after PROMPT; its new tokens in `out`. */
static specdec_generator *generated(const specdec_model *draft, const specdec_gen_config *c, tokbuf *out) {
    specdec_generator *g = NULL;
    specdec_finish_reason r = SPECDEC_FINISH_REASON_NONE;
    CHECK_OK(specdec_generator_new(g_target, draft, c, &g, &g_err));
    CHECK_OK(specdec_generator_append_tokens(g, PROMPT, 12, &g_err));
    CHECK_OK(specdec_generator_generate(g, NULL, NULL, &r, &g_err));
    copy_tokens(g, 12, out);
    return g;
}

/* ------------------------------------------------------------------------------------------- */

static void test_length_and_room(void) {
    uint32_t filler[600];
    size_t i, n = 0;
    const uint32_t *toks = NULL;
    specdec_generator *g = NULL;
    specdec_finish_reason r = SPECDEC_FINISH_REASON_NONE;
    specdec_gen_config *c = config(100, 0.0f, 0);
    for (i = 0; i < 600; i++) filler[i] = (uint32_t)(i * 7 % 500 + 1);

    /* The default stays the error of ABI 1; asked for, the generation ends with LENGTH. */
    CHECK_OK(specdec_generator_new(g_target, g_draft, c, &g, &g_err));
    CHECK_OK(specdec_generator_append_tokens(g, filler, 492, &g_err));
    CHECK(specdec_generator_context_room(g) == 20);
    CHECK_ERR(specdec_generator_generate(g, NULL, NULL, &r, &g_err), SPECDEC_STATUS_CONTEXT_LIMIT, "512");
    CHECK(specdec_generator_finish_reason(g) == SPECDEC_FINISH_REASON_NONE);
    specdec_generator_free(g);
    CHECK_OK(specdec_gen_config_set_finish_at_context_limit(c, true, &g_err));
    CHECK(specdec_gen_config_get_finish_at_context_limit(c));
    CHECK_OK(specdec_generator_new(g_target, g_draft, c, &g, &g_err));
    CHECK_OK(specdec_generator_append_tokens(g, filler, 492, &g_err));
    CHECK_OK(specdec_generator_generate(g, NULL, NULL, &r, &g_err));
    CHECK(r == SPECDEC_FINISH_REASON_LENGTH && specdec_generator_finish_reason(g) == SPECDEC_FINISH_REASON_LENGTH);
    CHECK_OK(specdec_generator_tokens(g, &toks, &n, &g_err));
    CHECK(n == 512 && specdec_generator_context_room(g) == 0);
    CHECK_OK(specdec_generator_step(g, &toks, &n, &g_err));
    CHECK(n == 0);
    /* No room for even one more token: appending is refused as before. */
    CHECK_ERR(specdec_generator_append_tokens(g, filler, 1, &g_err), SPECDEC_STATUS_CONTEXT_LIMIT, "514");
    specdec_generator_free(g);

    /* The room check for max_new_tokens is opt-in and says what fits. */
    CHECK_OK(specdec_gen_config_set_reserve_max_new_tokens(c, true, &g_err));
    CHECK(specdec_gen_config_get_reserve_max_new_tokens(c));
    CHECK_OK(specdec_generator_new(g_target, NULL, c, &g, &g_err));
    CHECK_ERR(specdec_generator_append_tokens(g, filler, 492, &g_err), SPECDEC_STATUS_CONTEXT_LIMIT, "20 new tokens fit");
    CHECK_OK(specdec_generator_tokens(g, &toks, &n, &g_err));
    CHECK(n == 0 && specdec_generator_context_room(g) == 512);
    CHECK_OK(specdec_generator_append_tokens(g, filler, 412, &g_err));
    specdec_generator_free(g);
    CHECK(specdec_generator_context_room(NULL) == 0);
    CHECK(strcmp(specdec_status_name(SPECDEC_STATUS_CONTEXT_LIMIT), "SPECDEC_STATUS_CONTEXT_LIMIT") == 0);
    specdec_gen_config_free(c);
}

static void check_logprob_arrays(const specdec_generator *g, size_t n_expected, size_t top_expected, int greedy) {
    const specdec_logprob *chosen = NULL, *top = NULL;
    size_t n = 0, top_n = 0, i, j;
    CHECK_OK(specdec_generator_logprobs(g, &chosen, &n, &top, &top_n, &g_err));
    CHECKF(n == n_expected && top_n == top_expected, "%zu records of %zu alternatives", n, top_n);
    for (i = 0; i < n; i++) {
        CHECK(chosen[i].raw_logprob < 0.0f && chosen[i].logprob <= 0.0f);
        if (greedy) CHECK(chosen[i].logprob == 0.0f && top[i * top_n].token == chosen[i].token);
        for (j = 1; j < top_n; j++) {
            const specdec_logprob *a = &top[i * top_n + j - 1], *b = &top[i * top_n + j];
            CHECK(a->logprob >= b->logprob);
            if (greedy && j > 1) CHECK(a->raw_logprob >= b->raw_logprob);
            if (greedy) CHECK(isinf(b->logprob) && b->logprob < 0);
        }
    }
}

static void test_logprobs(void) {
    uint32_t max_new = g_quick ? 8 : 24;
    tokbuf want, got, off;
    const specdec_logprob *ref = NULL, *lp = NULL, *top = NULL;
    size_t n_ref = 0, n = 0, top_n = 0, i;
    specdec_gen_config *c = config(max_new, 0.0f, 0);
    specdec_generator *base, *spec, *g;

    CHECK_OK(specdec_gen_config_set_logprobs(c, 5, &g_err));
    CHECK(specdec_gen_config_get_logprobs(c) == 5);
    CHECK_ERR(specdec_gen_config_set_logprobs(c, SPECDEC_MAX_LOGPROBS + 1, &g_err), SPECDEC_STATUS_INVALID_ARGUMENT, "logprobs");
    CHECK(specdec_gen_config_get_logprobs(c) == 5);
    /* Greedy: speculative decoding reports target-only decoding's log-probabilities. */
    base = generated(NULL, c, &want);
    spec = generated(g_draft, c, &got);
    CHECK(same(&want, &got));
    check_logprob_arrays(base, max_new, 5, 1);
    check_logprob_arrays(spec, max_new, 5, 1);
    CHECK_OK(specdec_generator_logprobs(base, &ref, &n_ref, NULL, NULL, &g_err));
    CHECK_OK(specdec_generator_logprobs(spec, &lp, &n, &top, &top_n, &g_err));
    for (i = 0; i < n && i < n_ref; i++) {
        CHECKF(lp[i].token == ref[i].token && fabsf(lp[i].raw_logprob - ref[i].raw_logprob) < 2e-3f,
               "token %zu: %u %.5f vs target-only %u %.5f", i, (unsigned)lp[i].token, lp[i].raw_logprob,
               (unsigned)ref[i].token, ref[i].raw_logprob);
    }
    specdec_generator_free(base);
    specdec_generator_free(spec);

    /* Sampled: turning them on changes no token. */
    CHECK_OK(specdec_gen_config_set_temperature(c, 0.9f, &g_err));
    CHECK_OK(specdec_gen_config_set_seed(c, 77, &g_err));
    g = generated(g_draft, c, &got);
    check_logprob_arrays(g, max_new, 5, 0);
    specdec_generator_free(g);
    CHECK_OK(specdec_gen_config_set_logprobs(c, 0, &g_err));
    g = generated(g_draft, c, &off);
    CHECK(same(&got, &off));
    /* Off: none, and the outputs say so. */
    CHECK_OK(specdec_generator_logprobs(g, &lp, &n, &top, &top_n, &g_err));
    CHECK(n == 0 && top_n == 0);
    /* Bad input. */
    CHECK_ERR(specdec_generator_logprobs(NULL, &lp, &n, NULL, NULL, &g_err), SPECDEC_STATUS_NULL_PARAMETER, "generator");
    CHECK_ERR(specdec_generator_logprobs(g, NULL, &n, NULL, NULL, &g_err), SPECDEC_STATUS_NULL_PARAMETER, "chosen");
    CHECK_ERR(specdec_generator_logprobs(g, &lp, &n, &top, NULL, &g_err), SPECDEC_STATUS_NULL_PARAMETER, "top_n");
    specdec_generator_free(g);
    specdec_gen_config_free(c);
}

static void test_rewind_and_settings(void) {
    uint32_t max_new = g_quick ? 10 : 24;
    tokbuf want, got, first;
    specdec_finish_reason r = SPECDEC_FINISH_REASON_NONE;
    specdec_gen_config *c = config(max_new, 0.0f, 0), *s = NULL, *back = NULL;
    specdec_generator *g = generated(g_draft, c, &want);
    const uint32_t *ids = NULL;
    size_t n = 0;
    uint32_t bad_eos = 512;

    /* Into the generation: it goes on to the same output. */
    CHECK_OK(specdec_generator_rewind(g, 12 + 5, &g_err));
    CHECK(specdec_generator_finish_reason(g) == SPECDEC_FINISH_REASON_NONE);
    CHECK_OK(specdec_generator_generate(g, NULL, NULL, &r, &g_err));
    copy_tokens(g, 12, &got);
    CHECK(r == SPECDEC_FINISH_REASON_MAX_TOKENS && same(&got, &want));
    /* Past the end, or without a generator: refused, nothing changed. */
    CHECK_ERR(specdec_generator_rewind(g, 12 + max_new + 1, &g_err), SPECDEC_STATUS_INVALID_ARGUMENT, "rewind");
    CHECK_ERR(specdec_generator_rewind(NULL, 0, &g_err), SPECDEC_STATUS_NULL_PARAMETER, "generator");
    CHECK_OK(specdec_generator_tokens(g, &ids, &n, &g_err));
    CHECK(n == 12 + max_new);

    /* New settings for a retry: sampled with a seed; setting them again replays the retry. */
    s = config(max_new, 0.8f, 21);
    CHECK_OK(specdec_gen_config_set_top_k(s, 40, &g_err));
    CHECK_OK(specdec_generator_rewind(g, 12, &g_err));
    CHECK_OK(specdec_generator_set_config(g, s, &g_err));
    CHECK_OK(specdec_generator_generate(g, NULL, NULL, &r, &g_err));
    copy_tokens(g, 12, &first);
    CHECK(first.n == max_new);
    CHECK_OK(specdec_generator_rewind(g, 12, &g_err));
    CHECK_OK(specdec_generator_set_config(g, s, &g_err));
    CHECK_OK(specdec_generator_generate(g, NULL, NULL, &r, &g_err));
    copy_tokens(g, 12, &got);
    CHECK(same(&got, &first));
    /* The generator's settings read back. */
    CHECK_OK(specdec_generator_get_config(g, &back, &g_err));
    CHECK(specdec_gen_config_get_temperature(back) == 0.8f && specdec_gen_config_get_seed(back) == 21);
    CHECK(specdec_gen_config_get_top_k(back) == 40 && specdec_gen_config_get_max_new_tokens(back) == max_new);
    specdec_gen_config_free(back);
    /* Refused settings leave the old ones. */
    CHECK_OK(specdec_gen_config_set_eos_ids(s, &bad_eos, 1, &g_err));
    CHECK_ERR(specdec_generator_set_config(g, s, &g_err), SPECDEC_STATUS_TOKEN_OUT_OF_RANGE, "512");
    CHECK_ERR(specdec_generator_set_config(g, NULL, &g_err), SPECDEC_STATUS_NULL_PARAMETER, "config");
    CHECK_ERR(specdec_generator_get_config(NULL, &back, &g_err), SPECDEC_STATUS_NULL_PARAMETER, "generator");
    CHECK(back == NULL);
    CHECK_OK(specdec_generator_get_config(g, &back, &g_err));
    CHECK(specdec_gen_config_get_seed(back) == 21);
    specdec_gen_config_free(back);
    specdec_generator_free(g);
    specdec_gen_config_free(s);
    specdec_gen_config_free(c);
}

typedef struct {
    specdec_generator *self;
    specdec_status fork_status;
} fork_ctx;

static int fork_in_callback(void *user_data, const uint32_t *tokens, size_t n_tokens) {
    fork_ctx *ctx = user_data;
    specdec_generator *f = NULL;
    specdec_error *e = NULL;
    (void)tokens;
    (void)n_tokens;
    ctx->fork_status = specdec_generator_fork(ctx->self, 1, NULL, &f, &e);
    specdec_error_free(e);
    specdec_generator_free(f);
    return 1;
}

static void test_fork(void) {
    uint32_t max_new = g_quick ? 10 : 24;
    tokbuf want, got;
    specdec_gen_config *c = config(max_new, 0.0f, 0), *short_cfg = config(3, 0.0f, 0);
    specdec_generator *src = NULL, *f = NULL, *done;
    specdec_finish_reason r = SPECDEC_FINISH_REASON_NONE;
    specdec_stats st;
    fork_ctx ctx;
    const uint32_t *ids = NULL;
    size_t n = 0;

    specdec_generator_free(generated(g_draft, c, &want));
    /* A prefilled prefix, forked: the fork generates what a fresh generator does, without a
     * prefill of its own. */
    CHECK_OK(specdec_generator_new(g_target, g_draft, c, &src, &g_err));
    CHECK_OK(specdec_generator_append_tokens(src, PROMPT, 12, &g_err));
    CHECK_OK(specdec_generator_prefill(src, &g_err));
    CHECK_OK(specdec_generator_fork(src, 12, NULL, &f, &g_err));
    CHECK_OK(specdec_generator_generate(f, NULL, NULL, &r, &g_err));
    copy_tokens(f, 12, &got);
    CHECK(same(&got, &want));
    memset(&st, 0, sizeof st);
    st.struct_size = sizeof st;
    CHECK_OK(specdec_generator_stats(f, &st, &g_err));
    CHECKF(st.target_calls == st.rounds, "the fork made %llu target calls in %llu rounds", (unsigned long long)st.target_calls,
           (unsigned long long)st.rounds);
    specdec_generator_free(f);
    /* A fork with its own settings. */
    CHECK_OK(specdec_generator_fork(src, 12, short_cfg, &f, &g_err));
    CHECK_OK(specdec_generator_generate(f, NULL, NULL, &r, &g_err));
    copy_tokens(f, 12, &got);
    CHECK(got.n == 3 && memcmp(got.ids, want.ids, 3 * sizeof got.ids[0]) == 0);
    specdec_generator_free(f);

    /* A finished generator forks, at any length; the fork is not finished. */
    done = generated(g_draft, c, &got);
    CHECK(specdec_generator_finish_reason(done) == SPECDEC_FINISH_REASON_MAX_TOKENS);
    CHECK_OK(specdec_generator_fork(done, 12 + max_new, NULL, &f, &g_err));
    CHECK(specdec_generator_finish_reason(f) == SPECDEC_FINISH_REASON_NONE);
    CHECK_OK(specdec_generator_tokens(f, &ids, &n, &g_err));
    CHECK(n == 12 + max_new);
    CHECK_OK(specdec_generator_step(f, &ids, &n, &g_err));
    CHECK(n > 0);
    specdec_generator_free(f);

    /* Bad input: past the end, NULLs, from inside the source's own callback. */
    f = (specdec_generator *)&ctx; /* must be reset to NULL on failure */
    CHECK_ERR(specdec_generator_fork(done, 12 + max_new + 1, NULL, &f, &g_err), SPECDEC_STATUS_INVALID_ARGUMENT, "fork");
    CHECK(f == NULL);
    CHECK_ERR(specdec_generator_fork(NULL, 0, NULL, &f, &g_err), SPECDEC_STATUS_NULL_PARAMETER, "source");
    CHECK_ERR(specdec_generator_fork(done, 0, NULL, NULL, &g_err), SPECDEC_STATUS_NULL_PARAMETER, "out");
    CHECK_ERR(specdec_generator_prefill(NULL, &g_err), SPECDEC_STATUS_NULL_PARAMETER, "generator");
    ctx.self = src;
    ctx.fork_status = SPECDEC_STATUS_OK;
    CHECK_OK(specdec_generator_generate(src, fork_in_callback, &ctx, &r, &g_err));
    CHECK(ctx.fork_status == SPECDEC_STATUS_BUSY && r == SPECDEC_FINISH_REASON_STOPPED);
    specdec_generator_free(done);
    specdec_generator_free(src);
    specdec_gen_config_free(short_cfg);
    specdec_gen_config_free(c);
}

static void test_metadata(void) {
    const uint32_t *ids = NULL;
    size_t n = 99;
    bool from_model = false;
    uint32_t stop[2] = {5, 6};
    char path[128];
    specdec_model *bare;
    specdec_gen_config *c = specdec_gen_config_new();

    CHECK(specdec_model_bos_id(g_target) == 0 && specdec_model_pad_id(g_target) == -1);
    CHECK(strcmp(specdec_model_architecture(g_target), "LlamaForCausalLM") == 0);
    CHECK(specdec_model_layer_count(g_target) == 2 && specdec_model_kv_head_count(g_target) == 2);
    CHECK(specdec_model_head_size(g_target) == 16);
    CHECK(specdec_model_kv_bytes_per_token(g_target) == 2 * 2 * 2 * 16 * 4);
    CHECK(strcmp(specdec_model_kv_dtype(g_target), "float32") == 0);
    CHECK(strcmp(specdec_model_device(g_target), "cpu") == 0);
    CHECK(specdec_model_context_limit_source(g_target) == SPECDEC_CONTEXT_LIMIT_SOURCE_CONFIG);
    CHECK_OK(specdec_model_eos_ids(g_target, &ids, &n, &g_err));
    CHECK(n == 1 && ids[0] == 0);
    /* NULL model: neutral values, never a crash. */
    CHECK(specdec_model_bos_id(NULL) == -1 && specdec_model_pad_id(NULL) == -1);
    CHECK(strcmp(specdec_model_architecture(NULL), "") == 0 && strcmp(specdec_model_kv_dtype(NULL), "") == 0);
    CHECK(strcmp(specdec_model_device(NULL), "") == 0 && specdec_model_layer_count(NULL) == 0);
    CHECK(specdec_model_kv_head_count(NULL) == 0 && specdec_model_head_size(NULL) == 0);
    CHECK(specdec_model_kv_bytes_per_token(NULL) == 0);
    CHECK(specdec_model_context_limit_source(NULL) == SPECDEC_CONTEXT_LIMIT_SOURCE_DEFAULT);
    CHECK_ERR(specdec_model_eos_ids(NULL, &ids, &n, &g_err), SPECDEC_STATUS_NULL_PARAMETER, "model");
    CHECK_ERR(specdec_model_eos_ids(g_target, NULL, &n, &g_err), SPECDEC_STATUS_NULL_PARAMETER, "ids");

    /* Without config.json: GPT-2's position table gives 512; the caller's value wins. */
    snprintf(path, sizeof path, "%s/gpt2", g_tmp);
    {
        size_t size = 0;
        unsigned char *bytes = read_file(FIX "gpt2/model.onnx", &size);
        char file[160];
        CHECK(bytes != NULL && mkdir_p(path));
        snprintf(file, sizeof file, "%s/model.onnx", path);
        CHECK(write_file(file, bytes, size));
        free(bytes);
    }
    bare = load_with(path, 0);
    CHECK(specdec_model_context_limit(bare) == 512);
    CHECK(specdec_model_context_limit_source(bare) == SPECDEC_CONTEXT_LIMIT_SOURCE_GRAPH);
    CHECK(strcmp(specdec_model_architecture(bare), "") == 0 && specdec_model_bos_id(bare) == -1);
    specdec_model_free(bare);
    bare = load_with(path, 300);
    CHECK(specdec_model_context_limit(bare) == 300);
    CHECK(specdec_model_context_limit_source(bare) == SPECDEC_CONTEXT_LIMIT_SOURCE_OPTIONS);
    specdec_model_free(bare);
    CHECK_ERR(specdec_model_options_set_context_limit(NULL, 5, &g_err), SPECDEC_STATUS_NULL_PARAMETER, "options");

    /* Config getters: the defaults, then what was set. */
    CHECK(specdec_gen_config_get_gamma(c) == 4 && specdec_gen_config_get_temperature(c) == 0.0f);
    CHECK(specdec_gen_config_get_top_k(c) == 0 && specdec_gen_config_get_top_p(c) == 1.0f);
    CHECK(specdec_gen_config_get_min_p(c) == 0.0f && specdec_gen_config_get_repetition_penalty(c) == 1.0f);
    CHECK(specdec_gen_config_get_seed(c) == 0 && specdec_gen_config_get_max_new_tokens(c) == 128);
    CHECK(specdec_gen_config_get_draft_policy(c) == SPECDEC_DRAFT_POLICY_FIXED);
    CHECK(specdec_gen_config_get_confidence_stop(c) == 0.0f && specdec_gen_config_get_kv_memory_limit(c) == 0);
    CHECK(specdec_gen_config_get_logprobs(c) == 0 && !specdec_gen_config_get_reserve_max_new_tokens(c));
    CHECK(!specdec_gen_config_get_finish_at_context_limit(c));
    CHECK_OK(specdec_gen_config_get_eos_ids(c, &ids, &n, &from_model, &g_err));
    CHECK(n == 0 && from_model);
    CHECK_OK(specdec_gen_config_set_gamma(c, 7, &g_err));
    CHECK_OK(specdec_gen_config_set_top_p(c, 0.9f, &g_err));
    CHECK_OK(specdec_gen_config_set_min_p(c, 0.05f, &g_err));
    CHECK_OK(specdec_gen_config_set_repetition_penalty(c, 1.2f, &g_err));
    CHECK_OK(specdec_gen_config_set_draft_policy(c, SPECDEC_DRAFT_POLICY_AUTO, &g_err));
    CHECK_OK(specdec_gen_config_set_confidence_stop(c, 0.25f, &g_err));
    CHECK_OK(specdec_gen_config_set_kv_memory_limit(c, 1u << 20, &g_err));
    CHECK_OK(specdec_gen_config_set_eos_ids(c, stop, 2, &g_err));
    CHECK_OK(specdec_gen_config_add_stop_tokens(c, stop, 2, &g_err));
    CHECK_OK(specdec_gen_config_add_stop_text(c, "\n\n", &g_err));
    CHECK_OK(specdec_gen_config_add_stop_text(c, "return", &g_err));
    CHECK(specdec_gen_config_get_gamma(c) == 7 && specdec_gen_config_get_top_p(c) == 0.9f);
    CHECK(specdec_gen_config_get_min_p(c) == 0.05f && specdec_gen_config_get_repetition_penalty(c) == 1.2f);
    CHECK(specdec_gen_config_get_draft_policy(c) == SPECDEC_DRAFT_POLICY_AUTO);
    CHECK(specdec_gen_config_get_confidence_stop(c) == 0.25f && specdec_gen_config_get_kv_memory_limit(c) == 1u << 20);
    CHECK_OK(specdec_gen_config_get_eos_ids(c, &ids, &n, &from_model, &g_err));
    CHECK(n == 2 && ids[1] == 6 && !from_model);
    CHECK(specdec_gen_config_get_stop_token_count(c) == 1 && specdec_gen_config_get_stop_text_count(c) == 2);
    CHECK_OK(specdec_gen_config_get_stop_tokens(c, 0, &ids, &n, &g_err));
    CHECK(n == 2 && ids[0] == 5);
    CHECK(strcmp(specdec_gen_config_get_stop_text(c, 1), "return") == 0);
    CHECK(specdec_gen_config_get_stop_text(c, 2) == NULL && specdec_gen_config_get_stop_text(NULL, 0) == NULL);
    CHECK_ERR(specdec_gen_config_get_stop_tokens(c, 1, &ids, &n, &g_err), SPECDEC_STATUS_INVALID_ARGUMENT, "1");
    CHECK_ERR(specdec_gen_config_get_eos_ids(NULL, &ids, &n, NULL, &g_err), SPECDEC_STATUS_NULL_PARAMETER, "config");
    CHECK_OK(specdec_gen_config_clear_stops(c, &g_err));
    CHECK(specdec_gen_config_get_stop_token_count(c) == 0 && specdec_gen_config_get_stop_text_count(c) == 0);
    CHECK_OK(specdec_gen_config_use_model_eos_ids(c, &g_err));
    CHECK_OK(specdec_gen_config_get_eos_ids(c, &ids, &n, NULL, &g_err));
    CHECK(n == 0);
    CHECK(specdec_gen_config_get_gamma(NULL) == 0 && specdec_gen_config_get_seed(NULL) == 0);
    CHECK(!specdec_gen_config_get_finish_at_context_limit(NULL) && specdec_gen_config_get_stop_text_count(NULL) == 0);
    specdec_gen_config_free(c);
}

static void test_load_from_memory(void) {
    size_t size = 0, csize = 0;
    unsigned char *bytes = read_file(FIX "llama/model.onnx", &size);
    unsigned char *cfg_raw = read_file(FIX "llama/config.json", &csize);
    char *cfg_text = malloc(csize + 1);
    specdec_model *m = NULL;
    specdec_model_options *o = specdec_model_options_new();
    specdec_gen_config *c = config(g_quick ? 8 : 16, 0.0f, 0);
    specdec_generator *g = NULL;
    tokbuf want, got;
    specdec_finish_reason r;

    CHECK(bytes != NULL && cfg_raw != NULL && cfg_text != NULL);
    memcpy(cfg_text, cfg_raw, csize);
    cfg_text[csize] = '\0';
    CHECK_OK(specdec_model_options_set_intra_threads(o, 1, &g_err));
    CHECK_OK(specdec_model_load_from_memory(bytes, size, cfg_text, NULL, o, &m, &g_err));
    free(bytes); /* ONNX Runtime copied what it needs */
    CHECK(specdec_model_context_limit(m) == 512 && specdec_model_vocab_size(m) == 512);
    CHECK(strcmp(specdec_model_architecture(m), "LlamaForCausalLM") == 0);
    specdec_generator_free(generated(NULL, c, &want));
    CHECK_OK(specdec_generator_new(m, g_draft, c, &g, &g_err));
    CHECK_OK(specdec_generator_append_tokens(g, PROMPT, 12, &g_err));
    CHECK_OK(specdec_generator_generate(g, NULL, NULL, &r, &g_err));
    copy_tokens(g, 12, &got);
    CHECK(same(&got, &want));
    specdec_generator_free(g);
    specdec_model_free(m);

    m = (specdec_model *)&want; /* must be reset to NULL on failure */
    CHECK_ERR(specdec_model_load_from_memory(NULL, 10, NULL, NULL, NULL, &m, &g_err), SPECDEC_STATUS_NULL_PARAMETER, "data");
    CHECK(m == NULL);
    CHECK_ERR(specdec_model_load_from_memory(cfg_text, 0, NULL, NULL, NULL, &m, &g_err), SPECDEC_STATUS_INVALID_ARGUMENT, "empty");
    CHECK_ERR(specdec_model_load_from_memory(cfg_text, csize, NULL, NULL, NULL, &m, &g_err), SPECDEC_STATUS_INVALID_MODEL, "memory");
    CHECK_ERR(specdec_model_load_from_memory(cfg_text, csize, "{", NULL, NULL, &m, &g_err), SPECDEC_STATUS_IO, "JSON");
    CHECK_ERR(specdec_model_load_from_memory(cfg_text, csize, NULL, NULL, NULL, NULL, &g_err), SPECDEC_STATUS_NULL_PARAMETER, "out");
    free(cfg_raw);
    free(cfg_text);
    specdec_model_options_free(o);
    specdec_gen_config_free(c);
}

static void test_timing(void) {
    tokbuf got;
    specdec_gen_config *c = config(g_quick ? 8 : 24, 0.0f, 0);
    specdec_generator *g = generated(g_draft, c, &got);
    specdec_stats st;
    specdec_round rd;
    union {
        specdec_stats s;
        unsigned char bytes[sizeof(specdec_stats) + 8];
    } old;
    size_t i, count = specdec_generator_round_count(g);
    uint64_t emitted = 0;
    double last_end = 0.0;

    memset(&st, 0, sizeof st);
    st.struct_size = sizeof st;
    CHECK_OK(specdec_generator_stats(g, &st, &g_err));
    CHECK(st.struct_size == sizeof st);
    CHECK(st.time_to_first_token_seconds > 0.0 && st.time_to_first_token_seconds <= st.total_seconds);
    CHECK(count == st.rounds && count > 0);
    for (i = 0; i < count; i++) {
        memset(&rd, 0, sizeof rd);
        rd.struct_size = sizeof rd;
        CHECK_OK(specdec_generator_round(g, i, &rd, &g_err));
        CHECK(rd.start_seconds >= last_end && rd.end_seconds >= rd.start_seconds);
        CHECK(rd.accepted <= rd.proposed && rd.emitted >= 1 && rd.target_seconds <= rd.end_seconds - rd.start_seconds + 1e-9);
        if (i == 0) CHECK(fabs(rd.end_seconds - st.time_to_first_token_seconds) < 1e-9);
        last_end = rd.end_seconds;
        emitted += rd.emitted;
    }
    CHECK(emitted == got.n);
    /* A caller built against 0.2's header: its 120 bytes are filled, nothing after them. */
    memset(&old, 0xab, sizeof old);
    old.s.struct_size = SPECDEC_STATS_V2_SIZE;
    CHECK_OK(specdec_generator_stats(g, &old.s, &g_err));
    CHECK(old.s.struct_size == SPECDEC_STATS_V2_SIZE && old.s.alpha >= 0.0 && old.bytes[SPECDEC_STATS_V2_SIZE] == 0xab);
    /* Bad input. */
    rd.struct_size = sizeof rd;
    CHECK_ERR(specdec_generator_round(g, count, &rd, &g_err), SPECDEC_STATUS_INVALID_ARGUMENT, "round");
    rd.struct_size = 8;
    CHECK_ERR(specdec_generator_round(g, 0, &rd, &g_err), SPECDEC_STATUS_INVALID_ARGUMENT, "struct_size");
    CHECK_ERR(specdec_generator_round(NULL, 0, &rd, &g_err), SPECDEC_STATUS_NULL_PARAMETER, "generator");
    CHECK_ERR(specdec_generator_round(g, 0, NULL, &g_err), SPECDEC_STATUS_NULL_PARAMETER, "round");
    CHECK(specdec_generator_round_count(NULL) == 0);
    /* A new prompt starts a new timeline. */
    CHECK_OK(specdec_generator_append_tokens(g, PROMPT, 1, &g_err));
    CHECK(specdec_generator_round_count(g) == 0);
    specdec_generator_free(g);
    specdec_gen_config_free(c);
}

/* The log callback: counts per source, the last specdec message, and what re-entering gave. */
typedef struct {
    int specdec, onnxruntime, below_warning;
    char last[512];
    int reenter;
    specdec_status reenter_status;
} log_ctx;

static void on_log(void *user_data, specdec_log_level level, const char *source, const char *message) {
    log_ctx *ctx = user_data;
    if (strcmp(source, "specdec") == 0) {
        ctx->specdec++;
        snprintf(ctx->last, sizeof ctx->last, "%s", message);
    } else if (strcmp(source, "onnxruntime") == 0) {
        ctx->onnxruntime++;
    }
    if (level < SPECDEC_LOG_LEVEL_WARNING) ctx->below_warning++;
    if (ctx->reenter) {
        specdec_error *e = NULL;
        specdec_model *m = NULL;
        ctx->reenter_status = specdec_set_log_callback(NULL, NULL, &e);
        specdec_error_free(e);
        /* Other calls are allowed; what they log on this thread is dropped, not recursed into. */
        specdec_set_log_level(SPECDEC_LOG_LEVEL_WARNING, NULL);
        specdec_model_load(g_tmp, NULL, &m, NULL); /* a folder without model.onnx: an error, no crash */
        specdec_model_free(m);
    }
}

static void test_logging(void) {
    log_ctx ctx;
    char path[128], file[160];
    size_t size = 0;
    unsigned char *bytes = read_file(FIX "llama/model.onnx", &size);
    specdec_model *m;

    /* A rotary model without config.json: specdec warns that its context length is a guess. */
    snprintf(path, sizeof path, "%s/llama", g_tmp);
    snprintf(file, sizeof file, "%s/model.onnx", path);
    CHECK(bytes != NULL && mkdir_p(path) && write_file(file, bytes, size));
    free(bytes);
    memset(&ctx, 0, sizeof ctx);
    CHECK(specdec_get_log_level() == SPECDEC_LOG_LEVEL_WARNING);
    CHECK_OK(specdec_set_log_callback(on_log, &ctx, &g_err));
    m = load_with(path, 0);
    CHECK(specdec_model_context_limit(m) == 2048 && specdec_model_context_limit_source(m) == SPECDEC_CONTEXT_LIMIT_SOURCE_DEFAULT);
    specdec_model_free(m);
    CHECKF(ctx.specdec == 1 && strstr(ctx.last, "context length is unknown") != NULL, "%d messages, last \"%s\"", ctx.specdec,
           ctx.last);
    CHECK(ctx.below_warning == 0);
    /* Verbose: ONNX Runtime's own messages arrive through the same callback. */
    CHECK_OK(specdec_set_log_level(SPECDEC_LOG_LEVEL_VERBOSE, &g_err));
    CHECK(specdec_get_log_level() == SPECDEC_LOG_LEVEL_VERBOSE);
    m = load_with(FIX "draft", 0);
    specdec_model_free(m);
    CHECKF(ctx.onnxruntime > 0 && ctx.below_warning > 0, "%d ONNX Runtime messages", ctx.onnxruntime);
    /* Off: nothing at all. */
    memset(&ctx, 0, sizeof ctx);
    CHECK_OK(specdec_set_log_level(SPECDEC_LOG_LEVEL_OFF, &g_err));
    m = load_with(path, 0);
    specdec_model_free(m);
    CHECK(ctx.specdec == 0 && ctx.onnxruntime == 0);
    CHECK_ERR(specdec_set_log_level(6, &g_err), SPECDEC_STATUS_INVALID_ARGUMENT, "log level");
    CHECK(specdec_get_log_level() == SPECDEC_LOG_LEVEL_OFF);
    /* A callback that re-enters: replacing itself is refused with BUSY, the rest works. */
    CHECK_OK(specdec_set_log_level(SPECDEC_LOG_LEVEL_WARNING, &g_err));
    ctx.reenter = 1;
    m = load_with(path, 0);
    specdec_model_free(m);
    CHECK(ctx.specdec == 1 && ctx.reenter_status == SPECDEC_STATUS_BUSY);
    /* Back to stderr. */
    CHECK_OK(specdec_set_log_callback(NULL, NULL, &g_err));
    fprintf(stderr, "(test_embedder: one warning about an unknown context length on stderr is expected next)\n");
    memset(&ctx, 0, sizeof ctx);
    m = load_with(path, 0);
    specdec_model_free(m);
    CHECK(ctx.specdec == 0);
}

int main(void) {
    g_quick = getenv("SPECDEC_TEST_QUICK") != NULL;
    snprintf(g_tmp, sizeof g_tmp, "/tmp/specdec-embedder-XXXXXX");
    if (!mkdtemp(g_tmp)) {
        perror("mkdtemp");
        return 1;
    }
    g_target = load_with(FIX "llama", 0);
    g_draft = load_with(FIX "draft", 0);
    if (!g_target || !g_draft) return 1;

    test_length_and_room();
    test_logprobs();
    test_rewind_and_settings();
    test_fork();
    test_metadata();
    test_load_from_memory();
    test_timing();
    test_logging();

    specdec_model_free(g_target);
    specdec_model_free(g_draft);
    {
        char cmd[128];
        snprintf(cmd, sizeof cmd, "rm -rf %s", g_tmp);
        if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", g_tmp);
    }
    printf("%d passed, %d failed\n", g_passed, g_failed);
    return g_failed ? 1 : 0;
}
