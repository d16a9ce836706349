/*
 * Generation settings through the specdec C ABI: every specdec_gen_config setter, its range
 * checks, and their effect on generators.
 *
 * A refused value keeps the previous one; a config is copied into the generators made from it.
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

static void test_config_null_parameters(void) {
    const specdec_status NP = SPECDEC_STATUS_NULL_PARAMETER;
    specdec_gen_config *cfg = specdec_gen_config_new();
    uint32_t ids[8] = {5};

    CHECK(cfg != NULL);

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

    /* NULL err: the status is still returned. */
    CHECK(specdec_gen_config_set_gamma(NULL, 4, NULL) == NP);

    /* Arrays of length 0 may be NULL. */
    CHECK_ERR(specdec_gen_config_add_stop_tokens(cfg, NULL, 0, &g_err), SPECDEC_STATUS_INVALID_ARGUMENT, "empty");

    specdec_gen_config_free(cfg);
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

    CHECK_OK(specdec_gen_config_set_presence_penalty(c, -1.5f, &g_err));
    CHECK_OK(specdec_gen_config_set_frequency_penalty(c, 0.75f, &g_err));
    CHECK_ERR(specdec_gen_config_set_presence_penalty(c, NAN, &g_err), IA, "presence_penalty");
    CHECK_ERR(specdec_gen_config_set_frequency_penalty(c, INFINITY, &g_err), IA, "frequency_penalty");
    CHECK(specdec_gen_config_get_presence_penalty(c) == -1.5f && specdec_gen_config_get_frequency_penalty(c) == 0.75f);
    {
        const uint32_t bias_ids[3] = {7, 3, 7};
        const float biases[3] = {-100.0f, 2.5f, 1.0f};
        const float bad_bias[1] = {NAN};
        uint32_t got_ids[4] = {0};
        float got[4] = {0};
        size_t n = 99;
        CHECK_OK(specdec_gen_config_set_logit_bias(c, bias_ids, biases, 2, &g_err));
        CHECK_ERR(specdec_gen_config_set_logit_bias(c, bias_ids, biases, 3, &g_err), IA, "twice");
        CHECK_ERR(specdec_gen_config_set_logit_bias(c, bias_ids, bad_bias, 1, &g_err), IA, "finite");
        CHECK_ERR(specdec_gen_config_set_logit_bias(c, NULL, biases, 1, &g_err), SPECDEC_STATUS_NULL_PARAMETER, "ids");
        CHECK_ERR(specdec_gen_config_get_logit_bias(c, got_ids, got, 4, NULL, &g_err), SPECDEC_STATUS_NULL_PARAMETER, "n_total");
        /* Refused settings leave the bias as it was; a short buffer gets the first entries. */
        CHECK_OK(specdec_gen_config_get_logit_bias(c, got_ids, got, 1, &n, &g_err));
        CHECK(n == 2 && got_ids[0] == 7 && got[0] == -100.0f && got_ids[1] == 0);
        CHECK_OK(specdec_gen_config_get_logit_bias(c, got_ids, got, 4, &n, &g_err));
        CHECK(n == 2 && got_ids[1] == 3 && got[1] == 2.5f);
        CHECK_OK(specdec_gen_config_set_logit_bias(c, NULL, NULL, 0, &g_err));
        CHECK_OK(specdec_gen_config_get_logit_bias(c, NULL, NULL, 0, &n, &g_err));
        CHECK(n == 0);
    }

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

    /* So are logit-bias ids. */
    c = specdec_gen_config_new();
    {
        const float one = 1.0f;
        CHECK_OK(specdec_gen_config_set_logit_bias(c, &eos_bad[1], &one, 1, &g_err));
    }
    CHECK_ERR(specdec_generator_new(g_target, g_draft, c, &g, &g_err), SPECDEC_STATUS_TOKEN_OUT_OF_RANGE, "600");
    specdec_gen_config_free(c);

    /* Defaults (NULL config, no draft) work. */
    CHECK_OK(specdec_generator_new(g_target, NULL, NULL, &g, &g_err));
    CHECK(g != NULL);
    specdec_generator_free(g);
}

int main(void) {
    if (!fixtures_begin("config")) return 2;
    if (!fixtures_load()) return fixtures_end();
    RUN(test_config_null_parameters);
    RUN(test_config_setters);
    return fixtures_end();
}
