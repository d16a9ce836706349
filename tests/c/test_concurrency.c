/*
 * Concurrency through the specdec C ABI, in plain C99 with pthreads: what a server does.
 *
 * 1. Sharing: 8 threads x 100 generations over one pair of shared model handles (llama target,
 *    small draft) and shared read-only configs, mixed greedy and sampled requests with their own
 *    seeds, some target-only, some driven step by step. Every output must equal the reference
 *    computed single-threaded beforehand, token for token.
 * 2. Cancellation races: cancel before start, from another thread at a random moment during
 *    generation (while other threads generate on the same models and must stay undisturbed),
 *    and after the end. A cancelled generator resumes to exactly the uninterrupted output
 *    (greedy and sampled: a cancelled iteration consumes no randomness) and stays usable.
 *
 * SPECDEC_TEST_QUICK=1 (valgrind) runs 3 threads x 4 generations over 6 of the 16 requests, and
 * fewer races.
 * Run from the repository root. Last line: "N passed, M failed"; non-zero exit on failure.
 */
#include <sched.h>

#include "harness.h"

#define FIX "models/fixtures/"
#define MAX_TOKENS 256
#define REQUESTS 16
#define THREADS 8
#define PER_THREAD 100

typedef struct {
    uint32_t ids[MAX_TOKENS];
    size_t n;
} tokbuf;

static int same(const tokbuf *a, const tokbuf *b) {
    return a->n == b->n && memcmp(a->ids, b->ids, a->n * sizeof a->ids[0]) == 0;
}

/* ---------------------------------------------------------------------------------------------
 * Shared state: models, prompts, requests and their references
 * ------------------------------------------------------------------------------------------- */

static specdec_model *g_target, *g_draft;

static const char *const PROMPTS[4] = {
    "def __init__(self, name, value=None):\n        self.name = name\n",
    "import os\nimport sys\n\n\nclass Config:\n    \"\"\"",
    "    for i in range(len(items)):\n        if items[i] is None:\n            ",
    "The quick brown fox jumps over the lazy dog. 1234567890",
};
static uint32_t g_prompt[4][12];
static size_t g_prompt_len[4];

typedef struct {
    int prompt;
    int use_draft;
    int stepwise; /* drive with specdec_generator_step instead of _generate */
    specdec_gen_config *cfg;
    tokbuf ref;
    char what[96];
} request;

static request g_req[REQUESTS];
static int g_nreq = REQUESTS; /* requests in use (fewer in quick mode) */

static specdec_model *load(const char *path) {
    specdec_model_options *o = specdec_model_options_new();
    specdec_model *m = NULL;
    CHECK_OK(specdec_model_options_set_intra_threads(o, 1, &e_));
    CHECK_OK(specdec_model_load(path, o, &m, &e_));
    specdec_model_options_free(o);
    return m;
}

/* Greedy or sampled settings, no EOS (fixed lengths). */
static specdec_gen_config *config(uint32_t gamma, uint32_t max_new, float temperature, float top_p, uint64_t seed) {
    specdec_gen_config *c = specdec_gen_config_new();
    CHECK_OK(specdec_gen_config_set_gamma(c, gamma, &e_));
    CHECK_OK(specdec_gen_config_set_max_new_tokens(c, max_new, &e_));
    CHECK_OK(specdec_gen_config_set_temperature(c, temperature, &e_));
    CHECK_OK(specdec_gen_config_set_top_p(c, top_p, &e_));
    CHECK_OK(specdec_gen_config_set_seed(c, seed, &e_));
    CHECK_OK(specdec_gen_config_set_eos_ids(c, NULL, 0, &e_));
    return c;
}

typedef struct {
    tokbuf *out;
} collect_ctx;

static int32_t collect(void *user_data, const uint32_t *tokens, size_t n) {
    collect_ctx *c = user_data;
    size_t i;
    for (i = 0; i < n && c->out->n < MAX_TOKENS; i++) c->out->ids[c->out->n++] = tokens[i];
    return 0;
}

/* Run request `r` on a fresh generator: the new tokens go to `out` (both through the callback
 * or step results and through specdec_generator_tokens, which must agree). Thread-safe. */
static specdec_status run_request(const request *r, tokbuf *out, char *msg, size_t msg_len) {
    specdec_generator *g = NULL;
    specdec_error *err = NULL;
    specdec_finish_reason reason = SPECDEC_FINISH_REASON_NONE;
    const uint32_t *all = NULL, *step = NULL;
    size_t n_all = 0, n_step = 0;
    collect_ctx ctx;
    specdec_status s;
    out->n = 0;
    ctx.out = out;
    s = specdec_generator_new(g_target, r->use_draft ? g_draft : NULL, r->cfg, &g, &err);
    if (s == SPECDEC_STATUS_OK) s = specdec_generator_append_tokens(g, g_prompt[r->prompt], g_prompt_len[r->prompt], &err);
    if (s == SPECDEC_STATUS_OK && r->stepwise) {
        while (s == SPECDEC_STATUS_OK && (s = specdec_generator_step(g, &step, &n_step, &err)) == SPECDEC_STATUS_OK && n_step > 0)
            collect(&ctx, step, n_step);
        reason = specdec_generator_finish_reason(g);
    } else if (s == SPECDEC_STATUS_OK) {
        s = specdec_generator_generate(g, collect, &ctx, &reason, &err);
    }
    if (s == SPECDEC_STATUS_OK) s = specdec_generator_tokens(g, &all, &n_all, &err);
    if (s == SPECDEC_STATUS_OK &&
        (reason != SPECDEC_FINISH_REASON_MAX_TOKENS || n_all != g_prompt_len[r->prompt] + out->n ||
         memcmp(all + g_prompt_len[r->prompt], out->ids, out->n * sizeof out->ids[0]) != 0)) {
        snprintf(msg, msg_len, "callback/step tokens disagree with specdec_generator_tokens (reason %d)", (int)reason);
        s = SPECDEC_STATUS_PANIC; /* reported as a failure by the caller */
        err = NULL;
    } else if (err) {
        snprintf(msg, msg_len, "%s", specdec_error_message(err));
    }
    specdec_error_free(err);
    specdec_generator_free(g);
    return s;
}

static void setup(void) {
    specdec_tokenizer *tok = NULL;
    int i;
    g_target = load(FIX "llama");
    g_draft = load(FIX "draft");
    CHECK_OK(specdec_tokenizer_load(FIX "llama", &tok, &e_));
    for (i = 0; i < 4; i++) {
        uint32_t ids[128];
        size_t n = 0;
        CHECK_OK(specdec_tokenizer_encode(tok, PROMPTS[i], strlen(PROMPTS[i]), ids, 128, &n, &e_));
        g_prompt_len[i] = n < 12 ? n : 12;
        memcpy(g_prompt[i], ids, g_prompt_len[i] * sizeof ids[0]);
    }
    specdec_tokenizer_free(tok);

    /* Requests: even ones greedy, odd ones sampled (own seeds, some with top-p); gamma 1..5;
     * every fifth target-only; every third stepwise; 24..32 new tokens. */
    for (i = 0; i < REQUESTS; i++) {
        request *r = &g_req[i];
        int sampled = i % 2 == 1;
        uint32_t gamma = 1 + (uint32_t)(i % 5);
        uint32_t max_new = 24 + (uint32_t)(i * 5 % 9);
        float temperature = sampled ? (i % 4 == 1 ? 1.0f : 0.7f) : 0.0f;
        float top_p = sampled && i % 3 == 0 ? 0.9f : 1.0f;
        r->prompt = i % 4;
        r->use_draft = i % 5 != 4;
        r->stepwise = i % 3 == 2;
        r->cfg = config(gamma, max_new, temperature, top_p, 1000 + (uint64_t)i * 7919);
        snprintf(r->what, sizeof r->what, "request %d (%s T=%.1f top_p=%.1f gamma=%u %s%s, %u tokens)", i,
                 sampled ? "sampled" : "greedy", temperature, top_p, gamma, r->use_draft ? "draft" : "target-only",
                 r->stepwise ? ", stepwise" : "", max_new);
    }
}

/* Single-threaded references, each computed twice (the second must equal the first). */
static void references(void) {
    int i;
    for (i = 0; i < g_nreq; i++) {
        tokbuf again;
        char msg[256] = "";
        specdec_status s = run_request(&g_req[i], &g_req[i].ref, msg, sizeof msg);
        CHECKF(s == SPECDEC_STATUS_OK, "%s: %s: %s", g_req[i].what, specdec_status_name(s), msg);
        if (!g_quick) {
            s = run_request(&g_req[i], &again, msg, sizeof msg);
            CHECKF(s == SPECDEC_STATUS_OK && same(&again, &g_req[i].ref), "%s is not reproducible single-threaded", g_req[i].what);
        }
        CHECKF(g_req[i].ref.n >= 24, "%s: only %zu tokens", g_req[i].what, g_req[i].ref.n);
    }
}

/* ---------------------------------------------------------------------------------------------
 * 1. 8 threads x 100 generations
 * ------------------------------------------------------------------------------------------- */

typedef struct {
    int id, generations;
    int done, mismatches, errors;
    char first_problem[320];
} worker;

static void *work(void *arg) {
    worker *w = arg;
    int k;
    for (k = 0; k < w->generations; k++) {
        /* A different walk through the requests per thread. */
        const request *r = &g_req[(w->id * 7 + k * (2 * w->id + 1)) % g_nreq];
        tokbuf out;
        char msg[256] = "";
        specdec_status s = run_request(r, &out, msg, sizeof msg);
        w->done++;
        if (s != SPECDEC_STATUS_OK) {
            if (!w->errors++ && !w->mismatches)
                snprintf(w->first_problem, sizeof w->first_problem, "%s: %s: %s", r->what, specdec_status_name(s), msg);
        } else if (!same(&out, &r->ref)) {
            if (!w->mismatches++ && !w->errors)
                snprintf(w->first_problem, sizeof w->first_problem, "%s: %zu tokens differ from the reference", r->what, out.n);
        }
    }
    return NULL;
}

static void test_sharing(void) {
    const int threads = g_quick ? 3 : THREADS, per = g_quick ? 4 : PER_THREAD;
    pthread_t th[THREADS];
    static worker w[THREADS];
    int i, total = 0;
    double t0 = now_s();
    for (i = 0; i < threads; i++) {
        memset(&w[i], 0, sizeof w[i]);
        w[i].id = i;
        w[i].generations = per;
        CHECK(pthread_create(&th[i], NULL, work, &w[i]) == 0);
    }
    for (i = 0; i < threads; i++) {
        CHECK(pthread_join(th[i], NULL) == 0);
        CHECKF(w[i].done == per && w[i].errors == 0 && w[i].mismatches == 0, "thread %d: %d done, %d errors, %d mismatches; first: %s",
               i, w[i].done, w[i].errors, w[i].mismatches, w[i].first_problem);
        total += w[i].done;
    }
    fprintf(stderr, "  %d threads x %d generations = %d, all equal to their references: %.2f s\n", threads, per, total,
            now_s() - t0);
}

/* ---------------------------------------------------------------------------------------------
 * 2. Cancellation races
 * ------------------------------------------------------------------------------------------- */

typedef struct {
    specdec_generator *gen;
    long delay_us;
} cancel_job;

static void *cancel_later(void *arg) {
    cancel_job *j = arg;
    sleep_us(j->delay_us);
    specdec_generator_cancel(j->gen);
    return NULL;
}

/* Another request generating on the same models while a race runs: must be undisturbed. */
typedef struct {
    int rounds;
    int ok;
} bystander_job;

static void *bystander(void *arg) {
    bystander_job *b = arg;
    int k;
    b->ok = 1;
    for (k = 0; k < b->rounds; k++) {
        const request *r = &g_req[(k * 5 + 1) % g_nreq];
        tokbuf out;
        char msg[256];
        if (run_request(r, &out, msg, sizeof msg) != SPECDEC_STATUS_OK || !same(&out, &r->ref)) b->ok = 0;
    }
    return NULL;
}

/* The new tokens of `g` after the prompt of `r`. */
static void tail(specdec_generator *g, const request *r, tokbuf *out) {
    const uint32_t *all = NULL;
    size_t n = 0, i;
    CHECK_OK(specdec_generator_tokens(g, &all, &n, &e_));
    out->n = 0;
    for (i = g_prompt_len[r->prompt]; i < n && out->n < MAX_TOKENS; i++) out->ids[out->n++] = all[i];
}

static int is_prefix(const tokbuf *a, const tokbuf *b) {
    return a->n <= b->n && memcmp(a->ids, b->ids, a->n * sizeof a->ids[0]) == 0;
}

static void test_cancel_races(void) {
    const int races = g_quick ? 6 : 60;
    int i, cancelled = 0, finished_first = 0;
    bystander_job by;
    pthread_t by_th;
    unsigned seed = 12345;

    by.rounds = g_quick ? 2 : 40;
    CHECK(pthread_create(&by_th, NULL, bystander, &by) == 0);

    /* Before start: the request is pending when generate begins. */
    for (i = 0; i < (g_quick ? 2 : 8); i++) {
        const request *r = &g_req[i % g_nreq];
        specdec_generator *g = NULL;
        specdec_finish_reason reason;
        cancel_job j;
        pthread_t th;
        tokbuf out;
        specdec_error *err = NULL;
        specdec_status s;
        CHECK_OK(specdec_generator_new(g_target, r->use_draft ? g_draft : NULL, r->cfg, &g, &e_));
        CHECK_OK(specdec_generator_append_tokens(g, g_prompt[r->prompt], g_prompt_len[r->prompt], &e_));
        j.gen = g;
        j.delay_us = 0;
        CHECK(pthread_create(&th, NULL, cancel_later, &j) == 0);
        CHECK(pthread_join(th, NULL) == 0);
        s = specdec_generator_generate(g, NULL, NULL, &reason, &err);
        CHECKF(s == SPECDEC_STATUS_CANCELLED, "cancel before start: %s", specdec_status_name(s));
        specdec_error_free(err);
        tail(g, r, &out);
        CHECK(out.n == 0);
        CHECK_OK(specdec_generator_generate(g, NULL, NULL, &reason, &e_));
        tail(g, r, &out);
        CHECKF(same(&out, &r->ref), "%s: after a cancel before start the output differs", r->what);
        specdec_generator_free(g);
    }

    /* During: a cancel from another thread at a random moment. */
    for (i = 0; i < races; i++) {
        const request *r = &g_req[(i * 3) % g_nreq];
        specdec_generator *g = NULL;
        specdec_finish_reason reason = SPECDEC_FINISH_REASON_NONE;
        cancel_job j;
        pthread_t th;
        tokbuf out;
        specdec_error *err = NULL;
        specdec_status s;
        seed = seed * 1103515245u + 12345u;
        CHECK_OK(specdec_generator_new(g_target, r->use_draft ? g_draft : NULL, r->cfg, &g, &e_));
        CHECK_OK(specdec_generator_append_tokens(g, g_prompt[r->prompt], g_prompt_len[r->prompt], &e_));
        j.gen = g;
        /* 0-12 ms in steps of 1.2 ms plus jitter: before, inside or after the generation (which
         * takes a few ms here; how many land after it depends on the machine). */
        j.delay_us = (long)((i % 10) * 1200 + (seed >> 8) % 1000);
        CHECK(pthread_create(&th, NULL, cancel_later, &j) == 0);
        s = specdec_generator_generate(g, NULL, NULL, &reason, &err);
        CHECK(pthread_join(th, NULL) == 0);
        tail(g, r, &out);
        if (s == SPECDEC_STATUS_CANCELLED) {
            cancelled++;
            CHECK(specdec_error_code(err) == SPECDEC_STATUS_CANCELLED);
            CHECKF(is_prefix(&out, &r->ref) && out.n < r->ref.n, "%s: cancelled with %zu tokens, not a prefix of the reference",
                   r->what, out.n);
            CHECK(specdec_generator_finish_reason(g) == SPECDEC_FINISH_REASON_NONE);
            /* Resume: the whole output equals the uninterrupted one. */
            CHECK_OK(specdec_generator_generate(g, NULL, NULL, &reason, &e_));
            tail(g, r, &out);
            CHECKF(same(&out, &r->ref), "%s: resumed after a cancel, the output differs from the reference", r->what);
        } else {
            finished_first++;
            CHECKF(s == SPECDEC_STATUS_OK, "%s: %s: %s", r->what, specdec_status_name(s), specdec_error_message(err));
            CHECKF(same(&out, &r->ref), "%s: the output differs from the reference", r->what);
            /* The request arrived after the end (or was never consumed): harmless. */
            CHECK_OK(specdec_generator_generate(g, NULL, NULL, &reason, &e_));
            CHECK(reason == SPECDEC_FINISH_REASON_MAX_TOKENS);
        }
        specdec_error_free(err);
        /* Usable afterwards: a follow-up turn generates (an append clears any pending request). */
        CHECK_OK(specdec_generator_append_tokens(g, g_prompt[0], 3, &e_));
        CHECK_OK(specdec_generator_generate(g, NULL, NULL, &reason, &e_));
        CHECK(reason == SPECDEC_FINISH_REASON_MAX_TOKENS);
        specdec_generator_free(g);
    }

    /* After the end: cancel a finished generation, then start the next turn. */
    for (i = 0; i < (g_quick ? 2 : 8); i++) {
        const request *r = &g_req[(i * 5 + 2) % g_nreq];
        specdec_generator *g = NULL;
        specdec_finish_reason reason = SPECDEC_FINISH_REASON_NONE;
        const uint32_t *toks;
        size_t n = 0;
        tokbuf out;
        CHECK_OK(specdec_generator_new(g_target, r->use_draft ? g_draft : NULL, r->cfg, &g, &e_));
        CHECK_OK(specdec_generator_append_tokens(g, g_prompt[r->prompt], g_prompt_len[r->prompt], &e_));
        CHECK_OK(specdec_generator_generate(g, NULL, NULL, &reason, &e_));
        specdec_generator_cancel(g);
        CHECK_OK(specdec_generator_generate(g, NULL, NULL, &reason, &e_)); /* finished: nothing to cancel */
        CHECK(reason == SPECDEC_FINISH_REASON_MAX_TOKENS);
        CHECK_OK(specdec_generator_step(g, &toks, &n, &e_));
        CHECK(n == 0);
        tail(g, r, &out);
        CHECKF(same(&out, &r->ref), "%s: cancel after the end changed the output", r->what);
        CHECK_OK(specdec_generator_append_tokens(g, g_prompt[1], 4, &e_));
        CHECK_OK(specdec_generator_generate(g, NULL, NULL, &reason, &e_));
        CHECK(reason == SPECDEC_FINISH_REASON_MAX_TOKENS);
        specdec_generator_free(g);
    }

    CHECK(pthread_join(by_th, NULL) == 0);
    CHECKF(by.ok, "a request on another thread was disturbed by the cancellations");
    fprintf(stderr, "  cancel during: %d races, %d cancelled (before or during the generation), %d finished first\n", races, cancelled, finished_first);
    /* The shortest delays (under 1 ms) land before or inside the generation on any machine. */
    CHECKF(cancelled > 0, "no race cancelled a generation");
}

int main(void) {
    double t0 = now_s();
    int i;
    harness_begin();
    if (g_quick) g_nreq = 6;
    setup();
    if (!g_target || !g_draft) {
        printf("cannot load the fixtures\n0 passed, 1 failed\n");
        return 1;
    }
    references();
    fprintf(stderr, "references: %.2f s\n", now_s() - t0);
    test_sharing();
    test_cancel_races();
    for (i = 0; i < REQUESTS; i++) specdec_gen_config_free(g_req[i].cfg);
    specdec_model_free(g_draft);
    specdec_model_free(g_target);
    fprintf(stderr, "total %.2f s\n", now_s() - t0);
    return harness_end();
}
