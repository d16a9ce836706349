/*
 * The batch engine through the specdec C ABI: NULL arguments and errors, options, every
 * sequence's output equal to its batch-1 output (a generator with the same config, greedy and
 * sampled with a seed) with sequences joining mid-run, polling in small pieces, cancellation,
 * removal, memory budgets (wait and refuse), stats, and a stepping thread beside threads that add,
 * poll and cancel (concurrent steps are SPECDEC_STATUS_BUSY).
 *
 * Part of the C ABI tests (include/specdec.h), in plain C99; the shared checks are in harness.h,
 * the fixtures in fixtures.h. Run from the repository root. The last line is "N passed, M
 * failed"; the exit status is non-zero if anything failed.
 */
#include <stdint.h>

#include "fixtures.h"

/* Step until nothing is left, polling every sequence into its buffer after each round. */
static void drain(specdec_engine *e, const uint64_t *ids, size_t n, tokbuf *out) {
    size_t left = 1, i, got;
    int rounds = 0;
    while (left > 0 && rounds++ < 10000) {
        CHECK_OK(specdec_engine_step(e, &left, &g_err));
        for (i = 0; i < n; i++) {
            CHECK_OK(specdec_engine_poll(e, ids[i], out[i].ids + out[i].n, MAX_TOKENS - out[i].n, &got, NULL, NULL, &g_err));
            out[i].n += got;
        }
    }
}

static void test_engine_null_parameters(void) {
    const specdec_status NP = SPECDEC_STATUS_NULL_PARAMETER;
    specdec_engine *e = NULL, *e2 = NULL;
    specdec_engine_options *o = specdec_engine_options_new();
    uint64_t id = 7;
    size_t n = 0;
    uint32_t buf[4];
    specdec_stats st;
    specdec_engine_stats es;

    CHECK(o != NULL);
    CHECK_ERR(specdec_engine_options_set_max_batch(NULL, 4, &g_err), NP, "options");
    CHECK_ERR(specdec_engine_options_set_max_batch(o, 0, &g_err), SPECDEC_STATUS_INVALID_ARGUMENT, "max_rows");
    CHECK_ERR(specdec_engine_options_set_kv_memory_limit(NULL, 0, &g_err), NP, "options");
    CHECK_ERR(specdec_engine_options_set_admission(NULL, SPECDEC_ADMISSION_WAIT, &g_err), NP, "options");
    CHECK_ERR(specdec_engine_options_set_admission(o, (specdec_admission)9, &g_err), SPECDEC_STATUS_INVALID_ARGUMENT, "9");
    CHECK_OK(specdec_engine_options_set_admission(o, SPECDEC_ADMISSION_REFUSE, &g_err));

    CHECK_ERR(specdec_engine_new(NULL, g_draft, o, &e2, &g_err), NP, "target");
    CHECK(e2 == NULL);
    CHECK_ERR(specdec_engine_new(g_target, g_draft, o, NULL, &g_err), NP, "out");
    CHECK_OK(specdec_engine_new(g_target, g_draft, NULL, &e, &g_err));
    specdec_engine_options_free(o);
    specdec_engine_options_free(NULL);

    CHECK_ERR(specdec_engine_set_tokenizer(NULL, g_tok, &g_err), NP, "engine");
    CHECK_ERR(specdec_engine_set_tokenizer(e, NULL, &g_err), NP, "tokenizer");
    CHECK_ERR(specdec_engine_add(NULL, g_prompts[0], g_prompt_len[0], NULL, &id, &g_err), NP, "engine");
    CHECK(id == 0);
    CHECK_ERR(specdec_engine_add(e, NULL, 3, NULL, &id, &g_err), NP, "prompt");
    CHECK_ERR(specdec_engine_add(e, g_prompts[0], g_prompt_len[0], NULL, NULL, &g_err), NP, "out_id");
    CHECK_ERR(specdec_engine_cancel(NULL, 1, &g_err), NP, "engine");
    CHECK_ERR(specdec_engine_step(NULL, &n, &g_err), NP, "engine");
    CHECK_ERR(specdec_engine_poll(NULL, 1, buf, 4, &n, NULL, NULL, &g_err), NP, "engine");
    CHECK_ERR(specdec_engine_remove(NULL, 1, &g_err), NP, "engine");
    st.struct_size = sizeof st;
    es.struct_size = sizeof es;
    CHECK_ERR(specdec_engine_seq_stats(NULL, 1, &st, &g_err), NP, "engine");
    CHECK_ERR(specdec_engine_get_stats(NULL, &es, &g_err), NP, "engine");
    CHECK_ERR(specdec_engine_get_stats(e, NULL, &g_err), NP, "stats");

    /* Bad values. */
    CHECK_ERR(specdec_engine_add(e, g_prompts[0], 0, NULL, &id, &g_err), SPECDEC_STATUS_INVALID_ARGUMENT, "empty prompt");
    buf[0] = 100000;
    CHECK_ERR(specdec_engine_add(e, buf, 1, NULL, &id, &g_err), SPECDEC_STATUS_TOKEN_OUT_OF_RANGE, "100000");
    CHECK_ERR(specdec_engine_cancel(e, 12345, &g_err), SPECDEC_STATUS_INVALID_ARGUMENT, "12345");
    CHECK_ERR(specdec_engine_remove(e, 12345, &g_err), SPECDEC_STATUS_INVALID_ARGUMENT, "12345");
    CHECK_ERR(specdec_engine_poll(e, 12345, buf, 4, &n, NULL, NULL, &g_err), SPECDEC_STATUS_INVALID_ARGUMENT, "12345");
    CHECK_ERR(specdec_engine_seq_stats(e, 12345, &st, &g_err), SPECDEC_STATUS_INVALID_ARGUMENT, "12345");
    es.struct_size = 8;
    CHECK_ERR(specdec_engine_get_stats(e, &es, &g_err), SPECDEC_STATUS_INVALID_ARGUMENT, "struct_size");

    /* Still usable; NULL err still gets the status. */
    CHECK(specdec_engine_step(NULL, &n, NULL) == NP);
    CHECK_OK(specdec_engine_add(e, g_prompts[0], g_prompt_len[0], NULL, &id, &g_err));
    CHECK(id > 0);
    CHECK_ERR(specdec_engine_poll(e, id, NULL, 4, &n, NULL, NULL, &g_err), NP, "tokens");
    CHECK_ERR(specdec_engine_poll(e, id, buf, 4, NULL, NULL, NULL, &g_err), NP, "n_tokens");
    CHECK_OK(specdec_engine_step(e, NULL, &g_err));
    specdec_engine_free(e);
    specdec_engine_free(NULL);
}

/* Sequences of different gammas, lengths and temperatures, six at first and four joining after
 * three rounds, each equal to a generator's output with the same config. */
static void exactness(const specdec_model *draft, float temperature) {
    enum { N = 10 };
    specdec_engine_options *o = specdec_engine_options_new();
    specdec_engine *e = NULL;
    specdec_gen_config *cfg[N];
    uint64_t ids[N];
    static tokbuf got[N], want;
    size_t i, left = 1, n;
    int round = 0;

    CHECK_OK(specdec_engine_options_set_max_batch(o, 6, &g_err));
    CHECK_OK(specdec_engine_new(g_target, draft, o, &e, &g_err));
    for (i = 0; i < N; i++) {
        cfg[i] = make_config(1 + (uint32_t)(i % 5), 20 + 9 * (uint32_t)(i % 3), temperature, 100 + i, 1);
        got[i].n = 0;
    }
    for (i = 0; i < 6; i++) CHECK_OK(specdec_engine_add(e, g_prompts[i % 4], g_prompt_len[i % 4] - i / 4, cfg[i], &ids[i], &g_err));
    while (left > 0 || round < 4) {
        if (round == 3)
            for (i = 6; i < N; i++) CHECK_OK(specdec_engine_add(e, g_prompts[i % 4], g_prompt_len[i % 4] - i / 4, cfg[i], &ids[i], &g_err));
        CHECK_OK(specdec_engine_step(e, &left, &g_err));
        round++;
        for (i = 0; i < (round > 3 ? (size_t)N : 6); i++) {
            /* Small pieces: a poll takes at most 3 tokens, the rest waits for the next. */
            CHECK_OK(specdec_engine_poll(e, ids[i], got[i].ids + got[i].n, 3, &n, NULL, NULL, &g_err));
            got[i].n += n;
        }
    }
    for (i = 0; i < N; i++) {
        specdec_seq_state state = SPECDEC_SEQ_STATE_WAITING;
        specdec_finish_reason reason = SPECDEC_FINISH_REASON_NONE;
        do {
            CHECK_OK(specdec_engine_poll(e, ids[i], got[i].ids + got[i].n, 3, &n, &state, &reason, &g_err));
            got[i].n += n;
        } while (n == 3);
        CHECK(state == SPECDEC_SEQ_STATE_FINISHED && reason == SPECDEC_FINISH_REASON_MAX_TOKENS);
        CHECK_OK(generate_once(g_target, draft, cfg[i], g_prompts[i % 4], g_prompt_len[i % 4] - i / 4, &want, NULL, &g_err));
        CHECKF(same_tokens(&want, &got[i]), "sequence %zu (temperature %.1f, draft %s) differs from batch 1", i, temperature,
               draft ? "yes" : "no");
        if (!same_tokens(&want, &got[i])) {
            print_tokens("batch 1", &want);
            print_tokens("engine", &got[i]);
        }
        specdec_gen_config_free(cfg[i]);
    }
    specdec_engine_options_free(o);
    specdec_engine_free(e);
}

static void test_engine_equals_batch_one(void) {
    exactness(g_draft, 0.0f);
    exactness(NULL, 0.0f);
    exactness(g_draft, 1.0f);
}

static void test_engine_cancel_remove_stats(void) {
    specdec_engine *e = NULL;
    specdec_gen_config *cfg = make_config(4, 300, 0.0f, 0, 1);
    uint64_t a, b, c;
    uint32_t buf[8];
    size_t n, left;
    specdec_seq_state state;
    specdec_finish_reason reason;
    specdec_stats st;
    specdec_engine_stats es;

    CHECK_OK(specdec_engine_new(g_target, g_draft, NULL, &e, &g_err));
    CHECK_OK(specdec_engine_add(e, g_prompts[0], g_prompt_len[0], cfg, &a, &g_err));
    CHECK_OK(specdec_engine_add(e, g_prompts[1], g_prompt_len[1], cfg, &b, &g_err));
    CHECK_OK(specdec_engine_add(e, g_prompts[2], g_prompt_len[2], NULL, &c, &g_err));
    CHECK(a != b && b != c);
    CHECK_OK(specdec_engine_poll(e, a, NULL, 0, &n, &state, &reason, &g_err));
    CHECK(n == 0 && state == SPECDEC_SEQ_STATE_WAITING && reason == SPECDEC_FINISH_REASON_NONE);
    CHECK_OK(specdec_engine_step(e, &left, &g_err));
    CHECK(left == 3);
    CHECK_OK(specdec_engine_poll(e, a, buf, 1, &n, &state, NULL, &g_err));
    CHECK(n == 1 && state == SPECDEC_SEQ_STATE_RUNNING);

    CHECK_OK(specdec_engine_cancel(e, a, &g_err));
    CHECK_OK(specdec_engine_remove(e, b, &g_err));
    CHECK_ERR(specdec_engine_poll(e, b, buf, 8, &n, NULL, NULL, &g_err), SPECDEC_STATUS_INVALID_ARGUMENT, "no sequence");
    CHECK_OK(specdec_engine_step(e, &left, &g_err));
    CHECK(left == 1);
    CHECK_OK(specdec_engine_poll(e, a, buf, 8, &n, &state, &reason, &g_err));
    CHECK(state == SPECDEC_SEQ_STATE_FINISHED && reason == SPECDEC_FINISH_REASON_CANCELLED);
    CHECK_OK(specdec_engine_cancel(e, a, &g_err)); /* already over: no-op */

    st.struct_size = sizeof st;
    CHECK_OK(specdec_engine_seq_stats(e, c, &st, &g_err));
    CHECK(st.struct_size == sizeof st && st.rounds == 2 && st.new_tokens > 0 && st.drafted > 0);
    es.struct_size = sizeof es;
    CHECK_OK(specdec_engine_get_stats(e, &es, &g_err));
    CHECK(es.struct_size == sizeof es && es.rounds == 2 && es.active == 1 && es.waiting == 0 && es.finished == 1);
    CHECK(es.new_tokens >= st.new_tokens && es.kv_bytes_used > 0 && es.kv_bytes_limit == 0 && es.total_seconds > 0);
    CHECK_OK(specdec_engine_remove(e, a, &g_err));
    CHECK_OK(specdec_engine_get_stats(e, &es, &g_err));
    CHECK(es.finished == 0);
    specdec_gen_config_free(cfg);
    specdec_engine_free(e); /* with a running sequence */
}

static void test_engine_memory_budget(void) {
    specdec_engine_options *o = specdec_engine_options_new();
    specdec_engine *e = NULL;
    specdec_gen_config *cfg = make_config(4, 40, 0.0f, 0, 1);
    specdec_gen_config *huge = make_config(4, 400, 0.0f, 0, 1);
    uint64_t ids[4];
    static tokbuf out[4];
    size_t i, left;
    specdec_engine_stats es;
    /* Fixture llama + draft: 8 layers x 2 heads x 32 dims x 4 bytes x 2 ... measured below. */
    uint64_t per_seq, limit;

    /* One sequence's reservation, read from an engine that takes it in. */
    CHECK_OK(specdec_engine_new(g_target, g_draft, NULL, &e, &g_err));
    CHECK_OK(specdec_engine_add(e, g_prompts[0], g_prompt_len[0], cfg, &ids[0], &g_err));
    CHECK_OK(specdec_engine_step(e, NULL, &g_err));
    es.struct_size = sizeof es;
    CHECK_OK(specdec_engine_get_stats(e, &es, &g_err));
    per_seq = es.kv_bytes_used / (g_prompt_len[0] + 4) * (g_prompt_len[0] + 40 + 4);
    specdec_engine_free(e);
    limit = 2 * per_seq + per_seq / 2;

    CHECK_OK(specdec_engine_options_set_kv_memory_limit(o, limit, &g_err));
    CHECK_OK(specdec_engine_new(g_target, g_draft, o, &e, &g_err));
    for (i = 0; i < 4; i++) {
        CHECK_OK(specdec_engine_add(e, g_prompts[0], g_prompt_len[0], cfg, &ids[i], &g_err));
        out[i].n = 0;
    }
    CHECK_OK(specdec_engine_step(e, &left, &g_err));
    CHECK_OK(specdec_engine_get_stats(e, &es, &g_err));
    CHECKF(es.active == 2 && es.waiting == 2, "active %llu waiting %llu", (unsigned long long)es.active, (unsigned long long)es.waiting);
    CHECK(es.kv_bytes_limit == limit && es.kv_bytes_used <= limit);
    drain(e, ids, 4, out);
    for (i = 0; i < 4; i++) CHECK(out[i].n == 40);
    CHECK_ERR(specdec_engine_add(e, g_prompts[0], g_prompt_len[0], huge, &ids[0], &g_err), SPECDEC_STATUS_MEMORY_BUDGET, "budget");
    specdec_engine_free(e);

    CHECK_OK(specdec_engine_options_set_admission(o, SPECDEC_ADMISSION_REFUSE, &g_err));
    CHECK_OK(specdec_engine_new(g_target, g_draft, o, &e, &g_err));
    CHECK_OK(specdec_engine_add(e, g_prompts[0], g_prompt_len[0], cfg, &ids[0], &g_err));
    CHECK_OK(specdec_engine_add(e, g_prompts[0], g_prompt_len[0], cfg, &ids[1], &g_err));
    CHECK_ERR(specdec_engine_add(e, g_prompts[0], g_prompt_len[0], cfg, &ids[2], &g_err), SPECDEC_STATUS_MEMORY_BUDGET, "budget");
    CHECK_OK(specdec_engine_cancel(e, ids[1], &g_err));
    CHECK_OK(specdec_engine_step(e, NULL, &g_err));
    CHECK_OK(specdec_engine_add(e, g_prompts[0], g_prompt_len[0], cfg, &ids[2], &g_err));
    specdec_engine_free(e);
    specdec_engine_options_free(o);
    specdec_gen_config_free(cfg);
    specdec_gen_config_free(huge);
}

/* One thread steps; another adds, polls and cancels meanwhile, and its own steps are BUSY or
 * succeed (when it slips in between rounds). */
typedef struct {
    specdec_engine *e;
    volatile int stop;
} stepper_ctx;

static void *stepper(void *p) {
    stepper_ctx *ctx = p;
    specdec_error *err = NULL;
    size_t left;
    while (!ctx->stop) {
        specdec_status s = specdec_engine_step(ctx->e, &left, &err);
        if (s != SPECDEC_STATUS_OK && s != SPECDEC_STATUS_BUSY) {
            CHECKF(0, "step: %s", specdec_error_message(err));
        }
        specdec_error_free(err);
        err = NULL;
    }
    return NULL;
}

static void test_engine_threads(void) {
    enum { N = 12 };
    stepper_ctx ctx = {NULL, 0};
    pthread_t t;
    specdec_gen_config *cfg = make_config(3, 30, 0.0f, 0, 1);
    uint64_t ids[N];
    static tokbuf out[N];
    size_t i, n, done = 0;
    int busy = 0, spins = 0;
    specdec_seq_state state;

    CHECK_OK(specdec_engine_new(g_target, g_draft, NULL, &ctx.e, &g_err));
    CHECK(pthread_create(&t, NULL, stepper, &ctx) == 0);
    for (i = 0; i < N; i++) {
        CHECK_OK(specdec_engine_add(ctx.e, g_prompts[i % 4], g_prompt_len[i % 4], cfg, &ids[i], &g_err));
        out[i].n = 0;
    }
    CHECK_OK(specdec_engine_cancel(ctx.e, ids[N - 1], &g_err));
    while (done < N && spins++ < 200000) {
        specdec_error *err = NULL;
        struct timespec pause = {0, 200000};
        nanosleep(&pause, NULL);
        if (specdec_engine_step(ctx.e, NULL, &err) == SPECDEC_STATUS_BUSY) busy++;
        specdec_error_free(err);
        done = 0;
        for (i = 0; i < N; i++) {
            CHECK_OK(specdec_engine_poll(ctx.e, ids[i], out[i].ids + out[i].n, MAX_TOKENS - out[i].n, &n, &state, NULL, &g_err));
            out[i].n += n;
            done += state == SPECDEC_SEQ_STATE_FINISHED;
        }
    }
    ctx.stop = 1;
    pthread_join(t, NULL);
    CHECK(done == N);
    for (i = 0; i + 1 < N; i++) CHECKF(out[i].n == 30, "sequence %zu: %zu tokens", i, out[i].n);
    fprintf(stderr, "  %d of the main thread's steps were BUSY\n", busy);
    specdec_gen_config_free(cfg);
    specdec_engine_free(ctx.e);
}

int main(void) {
    if (!fixtures_begin("test_engine")) return 2;
    if (!fixtures_load()) return fixtures_end();
    RUN(test_engine_null_parameters);
    RUN(test_engine_equals_batch_one);
    RUN(test_engine_cancel_remove_stats);
    RUN(test_engine_memory_budget);
    RUN(test_engine_threads);
    return fixtures_end();
}
