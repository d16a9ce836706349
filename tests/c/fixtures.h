/*
 * The fixtures shared by the C ABI test programs (test_runtime.c, test_model.c, test_config.c,
 * test_tokenizer.c, test_generator.c, test_threads.c): the tiny models and tokenizer of
 * models/fixtures/, four prompts, and helpers that generate and compare token sequences.
 * A program's main is
 *     if (!fixtures_begin("name")) return 2;    (harness_begin, the checkout, a scratch folder)
 *     if (!fixtures_load()) return fixtures_end();    (only when it uses g_target/g_draft/g_tok)
 *     RUN(test_...); ...
 *     return fixtures_end();
 */
#ifndef SPECDEC_TEST_FIXTURES_H
#define SPECDEC_TEST_FIXTURES_H

#include <sys/stat.h>

#include "harness.h"

#define FIX "models/fixtures/"
#define MAX_TOKENS 1024

static specdec_model *g_target; /* llama, vocab 512, context 512 */
static specdec_model *g_draft;  /* the small draft */
static specdec_tokenizer *g_tok;

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

HARNESS_FN int same_tokens(const tokbuf *a, const tokbuf *b) {
    return a->n == b->n && (a->n == 0 || memcmp(a->ids, b->ids, a->n * sizeof a->ids[0]) == 0);
}

HARNESS_FN void print_tokens(const char *label, const tokbuf *t) {
    size_t i;
    fprintf(stderr, "  %s (%zu):", label, t->n);
    for (i = 0; i < t->n; i++) fprintf(stderr, " %u", (unsigned)t->ids[i]);
    fputc('\n', stderr);
}

HARNESS_FN specdec_model *load_model(const char *path) {
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
HARNESS_FN specdec_gen_config *make_config(uint32_t gamma, uint32_t max_new, float temperature, uint64_t seed, int no_eos) {
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

HARNESS_FN int32_t collect_cb(void *user_data, const uint32_t *tokens, size_t n_tokens) {
    collector *c = user_data;
    size_t i;
    for (i = 0; i < n_tokens && c->n < MAX_TOKENS; i++) c->ids[c->n++] = tokens[i];
    c->calls++;
    return c->stop_after_calls != 0 && c->calls >= c->stop_after_calls;
}

/* The tokens after the first `skip` of the generator's sequence. */
HARNESS_FN specdec_status tail_tokens(const specdec_generator *g, size_t skip, tokbuf *out, specdec_error **err) {
    const uint32_t *all = NULL;
    size_t n = 0;
    specdec_status s = specdec_generator_tokens(g, &all, &n, err);
    out->n = 0;
    if (s != SPECDEC_STATUS_OK) return s;
    for (; skip < n && out->n < MAX_TOKENS; skip++) out->ids[out->n++] = all[skip];
    return s;
}

/* One generation on a fresh generator; `out` receives the new tokens. Thread-safe (err local). */
HARNESS_FN specdec_status generate_once(const specdec_model *target, const specdec_model *draft, const specdec_gen_config *cfg,
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
HARNESS_FN void greedy(const specdec_model *target, const specdec_model *draft, uint32_t gamma, int prompt, uint32_t max_new,
                       tokbuf *out) {
    specdec_gen_config *c = make_config(gamma, max_new, 0.0f, 0, 1);
    specdec_finish_reason r = SPECDEC_FINISH_REASON_NONE;
    CHECK_OK(generate_once(target, draft, c, g_prompts[prompt], g_prompt_len[prompt], out, &r, &g_err));
    CHECK(r == SPECDEC_FINISH_REASON_MAX_TOKENS);
    CHECK(out->n == max_new);
    specdec_gen_config_free(c);
}

/* Whether `s` (n bytes) is complete, valid UTF-8. */
HARNESS_FN int valid_utf8(const char *s, size_t n) {
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
HARNESS_FN char *decode_all(const uint32_t *ids, size_t n) {
    size_t len = 0;
    char *buf;
    CHECK_STATUS(specdec_tokenizer_decode(g_tok, ids, n, NULL, 0, &len, &g_err), SPECDEC_STATUS_BUFFER_TOO_SMALL);
    buf = malloc(len + 1);
    buf[0] = '\0';
    CHECK_OK(specdec_tokenizer_decode(g_tok, ids, n, buf, len + 1, &len, &g_err));
    return buf;
}

/* The shared models, tokenizer and prompts (checked). */
HARNESS_FN void load_fixtures(void) {
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

/* The start of a program over the fixtures: harness_begin, the checkout's fixtures present, the
 * scratch folder /tmp/specdec-<name>-XXXXXX. 0 (after a message) when the program cannot run. */
HARNESS_FN int fixtures_begin(const char *name) {
    struct stat sb;
    harness_begin();
    if (stat(FIX "llama/model.onnx", &sb) != 0) {
        fprintf(stderr, "run from the repository root (%s not found)\n", FIX "llama/model.onnx");
        return 0;
    }
    return harness_tmpdir(name);
}

/* RUN(load_fixtures); 0 (with one more failure) when the models or the tokenizer did not load. */
HARNESS_FN int fixtures_load(void) {
    RUN(load_fixtures);
    if (!g_target || !g_draft || !g_tok) {
        fprintf(stderr, "cannot load the fixtures\n");
        g_failed++;
        return 0;
    }
    return 1;
}

/* Free the fixtures, remove the scratch folder, print "N passed, M failed"; the exit status. */
HARNESS_FN int fixtures_end(void) {
    specdec_tokenizer_free(g_tok);
    specdec_model_free(g_draft);
    specdec_model_free(g_target);
    g_tok = NULL;
    g_draft = g_target = NULL;
    harness_remove_tmpdir();
    return harness_end();
}

#endif
