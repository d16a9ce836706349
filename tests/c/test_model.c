/*
 * Models through the specdec C ABI: model options, loading and its failures, devices, getters.
 *
 * Every failure must return the documented status, fill `*err` with the same code and a message
 * naming the cause, and leave `*out` NULL. Scratch files go to a mkdtemp folder under /tmp.
 *
 * Part of the C ABI tests (include/specdec.h), in plain C99; the shared checks are in harness.h,
 * the fixtures in fixtures.h. Run from the repository root (fixtures are read from
 * models/fixtures/). The last line is "N passed, M failed"; the exit status is non-zero if
 * anything failed. SPECDEC_TEST_QUICK=1 (used under valgrind) trims the slow repetitions.
 */
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "fixtures.h"

/* ---------------------------------------------------------------------------------------------
 * NULL arguments
 * ------------------------------------------------------------------------------------------- */

static void test_model_null_parameters(void) {
    const specdec_status NP = SPECDEC_STATUS_NULL_PARAMETER;
    specdec_model_options *opt = specdec_model_options_new();
    specdec_model *m = NULL;
    char buf[64];

    CHECK(opt != NULL);

    /* Model options and loading. */
    CHECK_ERR(specdec_model_options_set_device(NULL, "cpu", &g_err), NP, "options");
    CHECK_ERR(specdec_model_options_set_device(opt, NULL, &g_err), NP, "device");
    CHECK_ERR(specdec_model_options_set_intra_threads(NULL, 1, &g_err), NP, "options");
    CHECK_ERR(specdec_model_options_set_cuda_fallback(NULL, true, &g_err), NP, "options");
    CHECK_ERR(specdec_model_options_set_io_binding(NULL, true, &g_err), NP, "options");
    CHECK_ERR(specdec_model_options_set_device_reductions(NULL, true, &g_err), NP, "options");
    CHECK(specdec_model_cuda_device(NULL) == -1);
    m = (specdec_model *)(void *)buf; /* must be reset to NULL */
    CHECK_ERR(specdec_model_load(NULL, NULL, &m, &g_err), NP, "path");
    CHECK(m == NULL);
    CHECK_ERR(specdec_model_load(FIX "llama", NULL, NULL, &g_err), NP, "out");

    /* Model getters. */
    CHECK(specdec_model_vocab_size(NULL) == 0);
    CHECK(specdec_model_context_limit(NULL) == 0);

    specdec_model_options_free(opt);
}

/* ---------------------------------------------------------------------------------------------
 * Loading failures, devices
 * ------------------------------------------------------------------------------------------- */

/* A valid ONNX model that is not a decoder: y = Identity(x), x float[4]; IR 8, opset 13. */
static const unsigned char IDENTITY_ONNX[] =
    "\x08\x08\x3a\x37\x0a\x10\x0a\x01\x78\x12\x01\x79\x22\x08\x49\x64\x65\x6e\x74\x69\x74\x79\x12\x01"
    "\x67\x5a\x0f\x0a\x01\x78\x12\x0a\x0a\x08\x08\x01\x12\x04\x0a\x02\x08\x04\x62\x0f\x0a\x01\x79\x12"
    "\x0a\x0a\x08\x08\x01\x12\x04\x0a\x02\x08\x04\x42\x04\x0a\x00\x10\x0d";

static void test_load_failures(void) {
    specdec_model *m = NULL;
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
        /* Device reductions on the CPU too (only the argmax of each row reaches the host): the
         * same greedy output as the plain model. */
        CHECK_OK(specdec_model_options_set_device_reductions(opt, true, &g_err));
        specdec_model_free(m);
        m = NULL;
        CHECK_OK(specdec_model_load(FIX "llama/model.onnx", opt, &m, &g_err));
        CHECK_OK(specdec_model_options_set_device_reductions(opt, false, &g_err));
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

    specdec_model_options_free(opt);
}

int main(void) {
    if (!fixtures_begin("model")) return 2;
    RUN(test_model_null_parameters);
    RUN(test_load_failures);
    return fixtures_end();
}
