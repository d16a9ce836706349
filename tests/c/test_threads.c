/*
 * Generators across threads through the specdec C ABI: cancellation from another thread, calls
 * from inside a generator's own callback (SPECDEC_STATUS_BUSY), and models and a tokenizer shared
 * by threads.
 *
 * A cancelled generator stays usable and resumes to exactly the uninterrupted output.
 * (tests/c/test_concurrency.c does the same at server scale.)
 *
 * Part of the C ABI tests (include/specdec.h), in plain C99; the shared checks are in harness.h,
 * the fixtures in fixtures.h. Run from the repository root (fixtures are read from
 * models/fixtures/). The last line is "N passed, M failed"; the exit status is non-zero if
 * anything failed. SPECDEC_TEST_QUICK=1 (used under valgrind) trims the slow repetitions.
 */
#include <pthread.h>
#include <sched.h>
#include <stdint.h>

#include "fixtures.h"

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

int main(void) {
    if (!fixtures_begin("threads")) return 2;
    if (!fixtures_load()) return fixtures_end();
    RUN(test_cancel);
    RUN(test_busy);
    RUN(test_sharing);
    return fixtures_end();
}
