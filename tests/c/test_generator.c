/*
 * Generators through the specdec C ABI: errors and limits, stats, finish reasons, the step API and
 * turns, lifetimes, greedy exactness and seeded reproducibility.
 *
 * Generation is checked for exactness (speculative greedy == target-only greedy for gamma 1..64
 * on three architectures), reproducibility (same seed, same tokens) and finish reasons.
 *
 * Part of the C ABI tests (include/specdec.h), in plain C99; the shared checks are in harness.h,
 * the fixtures in fixtures.h. Run from the repository root (fixtures are read from
 * models/fixtures/). The last line is "N passed, M failed"; the exit status is non-zero if
 * anything failed. SPECDEC_TEST_QUICK=1 (used under valgrind) trims the slow repetitions.
 */
#include <math.h>
#include <stdint.h>

#include "fixtures.h"

/* ---------------------------------------------------------------------------------------------
 * NULL arguments
 * ------------------------------------------------------------------------------------------- */

static void test_generator_null_parameters(void) {
    const specdec_status NP = SPECDEC_STATUS_NULL_PARAMETER;
    specdec_gen_config *cfg = specdec_gen_config_new();
    specdec_generator *gen = NULL;
    specdec_generator *g = NULL;
    const uint32_t *toks = NULL;
    size_t n = 0;
    uint32_t ids[8] = {5};
    specdec_stats st;
    specdec_finish_reason r;

    CHECK_OK(specdec_generator_new(g_target, g_draft, NULL, &gen, &g_err));

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
    CHECK(specdec_generator_step(NULL, &toks, &n, NULL) == NP);

    /* The handles are still usable after all of that. */
    CHECK_OK(specdec_generator_append_tokens(gen, g_prompts[0], g_prompt_len[0], &g_err));
    CHECK_OK(specdec_generator_step(gen, &toks, &n, &g_err));
    CHECK(n >= 1 && toks != NULL);


    specdec_generator_free(gen);
    specdec_gen_config_free(cfg);
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

int main(void) {
    if (!fixtures_begin("generator")) return 2;
    if (!fixtures_load()) return fixtures_end();
    RUN(test_generator_null_parameters);
    RUN(test_generator_errors);
    RUN(test_context_limit);
    RUN(test_stats);
    RUN(test_finish_reasons);
    RUN(test_step_and_turns);
    RUN(test_lifetimes);
    RUN(test_greedy_exactness);
    RUN(test_sampling_reproducible);
    return fixtures_end();
}
