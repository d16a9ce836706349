/*
 * The bad-input catalog of the specdec C ABI, in plain C99.
 *
 * One entry per kind of bad input an embedder's server may receive: each must return its own
 * documented status, fill `*err` with that code and a message naming the cause, and leave every
 * handle usable. After each group of entries the shared handles (two models, a tokenizer, a
 * config, a stream decoder, and the generator that received the bad calls) are checked: the
 * generator and a fresh one give exactly the reference greedy output computed before any bad
 * input, and the tokenizer and stream decoder round-trip the reference text.
 *
 * Each entry prints one line, "catalog: <entry> | <STATUS> (<code>) | <message>", so the output
 * doubles as the catalog's documentation. NULL pointer arguments are covered function by
 * function by the *_null_parameters tests of test_model.c, test_config.c, test_tokenizer.c and
 * test_generator.c, not repeated here.
 *
 * ONNX Runtime is loaded once per process, so the runtime entries (missing, not a library, too
 * old) run in child processes forked before this process loads it. The old runtime is
 * .deps/onnxruntime-old/libonnxruntime.so (1.20.1, fetched by scripts/setup.sh --old-runtime, which
 * scripts/check-c.sh runs); its absence is
 * a failure unless SPECDEC_SKIP_OLD_ORT=1.
 *
 * Run from the repository root. Last line: "N passed, M failed"; non-zero exit on failure.
 */
#include <math.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>

#include "harness.h"

#define FIX "models/fixtures/"
#define OLD_ORT ".deps/onnxruntime-old/libonnxruntime.so"
#define REF_TOKENS 16
#define MAX_TOKENS 1024

static int g_entries;

/* One catalog entry: `expr` (which stores its error in `err_`) returns `expected`, the error has
 * the same code and a message containing every needle. Also called with a NULL error slot
 * (`expr_null`) where given, which must return the same status. */
static void entry(const char *name, specdec_status got, specdec_error *err, specdec_status expected, const char *needle1,
                  const char *needle2, const char *file, int line) {
    const char *msg = specdec_error_message(err);
    int ok = got == expected && err != NULL && specdec_error_code(err) == expected && msg[0] != '\0' &&
             (!needle1 || strstr(msg, needle1)) && (!needle2 || strstr(msg, needle2));
    g_entries++;
    printf("catalog: %s | %s (%u) | %s\n", name, specdec_status_name(got), (unsigned)got, msg);
    record(ok, file, line, "%s: got %s with message \"%s\", expected %s with \"%s\"%s%s%s", name, specdec_status_name(got), msg,
           specdec_status_name(expected), needle1 ? needle1 : "", needle2 ? " and \"" : "", needle2 ? needle2 : "",
           needle2 ? "\"" : "");
    specdec_error_free(err);
}
#define ENTRY(name, expr, expected, needle1, needle2)                                                                \
    do {                                                                                                             \
        specdec_error *err_ = NULL;                                                                                  \
        specdec_status s_ = (expr);                                                                                  \
        entry((name), s_, err_, (expected), (needle1), (needle2), __FILE__, __LINE__);                               \
    } while (0)

/* ---------------------------------------------------------------------------------------------
 * Scratch files
 * ------------------------------------------------------------------------------------------- */

/* A copy of `src` at `dst`, optionally cut to `keep` bytes (0: all). */
static int copy_file(const char *src, const char *dst, size_t keep) {
    size_t n = 0;
    unsigned char *b = read_file(src, &n);
    int ok = b != NULL && write_file(dst, b, keep && keep < n ? keep : n);
    free(b);
    return ok;
}

/* A model folder `name` under the scratch folder: llama's model.onnx plus the given config.json
 * and generation_config.json (NULL: the fixture's own). */
static const char *model_folder(const char *name, const char *config, const char *generation) {
    char dir[192], p[256];
    snprintf(dir, sizeof dir, "%s/%s", g_tmp, name);
    CHECK(mkdir(dir, 0700) == 0);
    snprintf(p, sizeof p, "%s/model.onnx", dir);
    CHECK(copy_file(FIX "llama/model.onnx", p, 0));
    snprintf(p, sizeof p, "%s/config.json", dir);
    CHECK(config ? write_file(p, config, strlen(config)) : copy_file(FIX "llama/config.json", p, 0));
    snprintf(p, sizeof p, "%s/generation_config.json", dir);
    CHECK(generation ? write_file(p, generation, strlen(generation)) : copy_file(FIX "llama/generation_config.json", p, 0));
    return tmp_path(name);
}

/* ---------------------------------------------------------------------------------------------
 * ONNX Runtime: missing, not a library, too old (child processes, before this one loads it)
 * ------------------------------------------------------------------------------------------- */

static int in_child(void (*body)(void)) {
    pid_t pid;
    int wstatus = 0;
    fflush(stdout);
    fflush(stderr);
    pid = fork();
    if (pid < 0) return 0;
    if (pid == 0) {
        g_failed = 0; /* the child's own checks decide its exit status */
        body();
        fflush(stdout);
        _exit(g_failed == 0 ? 0 : 1);
    }
    return waitpid(pid, &wstatus, 0) == pid && WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 0;
}

static int skip_old_ort(void) {
    const char *s = getenv("SPECDEC_SKIP_OLD_ORT");
    return s && s[0] && strcmp(s, "0") != 0;
}

/* specdec_runtime_init with bad libraries, then the good one: failures do not poison the process. */
static void runtime_explicit(void) {
    struct stat sb;
    specdec_model *m = NULL;
    ENTRY("ONNX Runtime library missing", specdec_runtime_init("/no/such/dir/libonnxruntime.so", &err_),
          SPECDEC_STATUS_RUNTIME_LOAD, "/no/such/dir/libonnxruntime.so", "no such file");
    {
        /* Long enough for the loader to read a header (shorter gives "file too short"). */
        char text[256];
        memset(text, 'x', sizeof text);
        CHECK(write_file(tmp_path("libonnxruntime.so"), text, sizeof text));
    }
    ENTRY("ONNX Runtime path is not a library", specdec_runtime_init(tmp_path("libonnxruntime.so"), &err_),
          SPECDEC_STATUS_RUNTIME_LOAD, "libonnxruntime.so", "ELF");
    ENTRY("ONNX Runtime path is a directory", specdec_runtime_init(g_tmp, &err_), SPECDEC_STATUS_RUNTIME_LOAD, g_tmp, NULL);
    ENTRY("ONNX Runtime path not UTF-8", specdec_runtime_init("/tmp/lib\xff\xfeonnxruntime.so", &err_), SPECDEC_STATUS_INVALID_UTF8,
          "ort_library_path", "UTF-8");
    if (stat(OLD_ORT, &sb) == 0) {
        ENTRY("ONNX Runtime too old (1.20.1)", specdec_runtime_init(OLD_ORT, &err_), SPECDEC_STATUS_RUNTIME_LOAD, "1.20.1", "1.31");
        /* Twice: a refused library is not half-registered. */
        ENTRY("ONNX Runtime too old, again", specdec_runtime_init(OLD_ORT, &err_), SPECDEC_STATUS_RUNTIME_LOAD, "1.20.1", NULL);
    } else if (skip_old_ort()) {
        printf("catalog: ONNX Runtime too old | skipped (SPECDEC_SKIP_OLD_ORT) |\n");
    } else {
        CHECKF(0, "%s is missing: run scripts/setup.sh --old-runtime (or set SPECDEC_SKIP_OLD_ORT=1)", OLD_ORT);
    }
    /* The default runtime still loads afterwards, and works. */
    CHECK_OK(specdec_runtime_init(NULL, &e_));
    CHECK_OK(specdec_model_load(FIX "draft", NULL, &m, &e_));
    CHECK(specdec_model_vocab_size(m) == 512);
    specdec_model_free(m);
}

/* The implicit path: a model load initialises the runtime from $ORT_DYLIB_PATH. */
static void runtime_from_env(void) {
    struct stat sb;
    specdec_model *m = (specdec_model *)(void *)&sb;
    if (stat(OLD_ORT, &sb) != 0) {
        CHECKF(skip_old_ort(), "%s is missing: run scripts/setup.sh --old-runtime (or set SPECDEC_SKIP_OLD_ORT=1)", OLD_ORT);
        return;
    }
    setenv("ORT_DYLIB_PATH", OLD_ORT, 1);
    ENTRY("model load with $ORT_DYLIB_PATH too old", specdec_model_load(FIX "draft", NULL, &m, &err_),
          SPECDEC_STATUS_RUNTIME_LOAD, "1.20.1", NULL);
    CHECK(m == NULL);
    setenv("ORT_DYLIB_PATH", "/no/such/libonnxruntime.so", 1);
    ENTRY("model load with $ORT_DYLIB_PATH missing", specdec_model_load(FIX "draft", NULL, &m, &err_),
          SPECDEC_STATUS_RUNTIME_LOAD, "/no/such/libonnxruntime.so", NULL);
    unsetenv("ORT_DYLIB_PATH");
    CHECK_OK(specdec_model_load(FIX "draft", NULL, &m, &e_));
    specdec_model_free(m);
}

/* ---------------------------------------------------------------------------------------------
 * Shared handles and the reference they must keep producing
 * ------------------------------------------------------------------------------------------- */

static specdec_model *g_target, *g_draft;
static specdec_tokenizer *g_tok;
static specdec_gen_config *g_cfg; /* greedy, gamma 4, 16 new tokens, no EOS */
static specdec_stream_decoder *g_dec;
static specdec_generator *g_gen; /* receives bad calls; recreated per group */
static const char *const PROMPT = "def __init__(self, name, value=None):\n";
static uint32_t g_prompt[64];
static size_t g_prompt_len;
static uint32_t g_ref[REF_TOKENS];
static char g_ref_text[512];

static specdec_model *load(const char *path) {
    specdec_model_options *o = specdec_model_options_new();
    specdec_model *m = NULL;
    CHECK_OK(specdec_model_options_set_intra_threads(o, 1, &e_));
    CHECK_OK(specdec_model_load(path, o, &m, &e_));
    specdec_model_options_free(o);
    return m;
}

/* Appends the prompt to `g` (any state), generates, and compares the new tokens with the reference
 * (greedy output depends only on the whole sequence, so a fresh prompt after earlier turns is
 * compared by running the same sequence on a fresh generator when `g` already holds tokens). */
static int generates_reference(specdec_generator *g) {
    const uint32_t *all = NULL;
    size_t n0 = 0, n = 0;
    specdec_finish_reason r = SPECDEC_FINISH_REASON_NONE;
    specdec_error *err = NULL;
    int ok;
    if (specdec_generator_tokens(g, &all, &n0, &err) != SPECDEC_STATUS_OK) goto fail;
    if (n0 != 0) return 0;
    if (specdec_generator_append_tokens(g, g_prompt, g_prompt_len, &err) != SPECDEC_STATUS_OK) goto fail;
    if (specdec_generator_generate(g, NULL, NULL, &r, &err) != SPECDEC_STATUS_OK) goto fail;
    if (specdec_generator_tokens(g, &all, &n, &err) != SPECDEC_STATUS_OK) goto fail;
    ok = r == SPECDEC_FINISH_REASON_MAX_TOKENS && n == g_prompt_len + REF_TOKENS &&
         memcmp(all + g_prompt_len, g_ref, sizeof g_ref) == 0;
    return ok;
fail:
    fprintf(stderr, "  %s\n", specdec_error_message(err));
    specdec_error_free(err);
    return 0;
}

/* Every shared handle still works, and the generator that took the bad calls too. */
static void check_usable(const char *after) {
    specdec_generator *fresh = NULL;
    uint32_t ids[64];
    size_t n = 0, len = 0;
    char text[512];
    const char *piece = NULL;
    CHECKF(g_gen == NULL || generates_reference(g_gen), "after %s: the generator that got the bad input is not usable", after);
    specdec_generator_free(g_gen);
    g_gen = NULL;
    CHECK_OK(specdec_generator_new(g_target, g_draft, g_cfg, &fresh, &e_));
    CHECKF(fresh && generates_reference(fresh), "after %s: a new generator on the shared models differs", after);
    specdec_generator_free(fresh);
    CHECK_OK(specdec_tokenizer_encode(g_tok, PROMPT, strlen(PROMPT), ids, 64, &n, &e_));
    CHECKF(n == g_prompt_len && memcmp(ids, g_prompt, n * sizeof ids[0]) == 0, "after %s: the tokenizer encodes differently", after);
    CHECK_OK(specdec_tokenizer_decode(g_tok, g_ref, REF_TOKENS, text, sizeof text, &len, &e_));
    CHECKF(strcmp(text, g_ref_text) == 0, "after %s: the tokenizer decodes differently", after);
    /* The stream decoder: flush whatever a bad call may have left, then the reference streams. */
    CHECK_OK(specdec_stream_decoder_flush(g_dec, &piece, &len, &e_));
    CHECK_OK(specdec_stream_decoder_push(g_dec, g_ref, REF_TOKENS, &piece, &len, &e_));
    text[0] = '\0';
    if (piece) snprintf(text, sizeof text, "%s", piece);
    CHECK_OK(specdec_stream_decoder_flush(g_dec, &piece, &len, &e_));
    if (piece) strncat(text, piece, sizeof text - strlen(text) - 1);
    CHECKF(strcmp(text, g_ref_text) == 0, "after %s: the stream decoder gives \"%s\"", after, text);
    /* A new generator for the next group's bad calls. */
    CHECK_OK(specdec_generator_new(g_target, g_draft, g_cfg, &g_gen, &e_));
}

static void load_shared(void) {
    static const uint32_t none[1] = {0};
    specdec_generator *g = NULL;
    const uint32_t *all = NULL;
    size_t n = 0, len = 0;
    specdec_finish_reason r;
    g_target = load(FIX "llama");
    g_draft = load(FIX "draft");
    CHECK_OK(specdec_tokenizer_load(FIX "llama", &g_tok, &e_));
    CHECK_OK(specdec_stream_decoder_new(g_tok, &g_dec, &e_));
    g_cfg = specdec_gen_config_new();
    CHECK_OK(specdec_gen_config_set_max_new_tokens(g_cfg, REF_TOKENS, &e_));
    CHECK_OK(specdec_gen_config_set_eos_ids(g_cfg, none, 0, &e_));
    CHECK_OK(specdec_tokenizer_encode(g_tok, PROMPT, strlen(PROMPT), g_prompt, 64, &g_prompt_len, &e_));
    /* The reference: target-only greedy, before any bad input. */
    CHECK_OK(specdec_generator_new(g_target, NULL, g_cfg, &g, &e_));
    CHECK_OK(specdec_generator_append_tokens(g, g_prompt, g_prompt_len, &e_));
    CHECK_OK(specdec_generator_generate(g, NULL, NULL, &r, &e_));
    CHECK_OK(specdec_generator_tokens(g, &all, &n, &e_));
    CHECK(n == g_prompt_len + REF_TOKENS);
    if (n == g_prompt_len + REF_TOKENS) memcpy(g_ref, all + g_prompt_len, sizeof g_ref);
    specdec_generator_free(g);
    CHECK_OK(specdec_tokenizer_decode(g_tok, g_ref, REF_TOKENS, g_ref_text, sizeof g_ref_text, &len, &e_));
    CHECK_OK(specdec_generator_new(g_target, g_draft, g_cfg, &g_gen, &e_));
}

/* ---------------------------------------------------------------------------------------------
 * Model files
 * ------------------------------------------------------------------------------------------- */

static void catalog_models(void) {
    specdec_model *m = (specdec_model *)(void *)&g_entries; /* must be reset to NULL */
    const char *dir;

    ENTRY("model path does not exist", specdec_model_load("/no/such/model", NULL, &m, &err_), SPECDEC_STATUS_IO, "/no/such/model",
          "No such file");
    CHECK(m == NULL);
    CHECK(mkdir(tmp_path("empty-dir"), 0700) == 0);
    ENTRY("model path is a directory without model.onnx", specdec_model_load(tmp_path("empty-dir"), NULL, &m, &err_),
          SPECDEC_STATUS_IO, "empty-dir", "no model.onnx");
    CHECK(mkdir(tmp_path("dir-named-onnx"), 0700) == 0);
    CHECK(mkdir(tmp_path("dir-named-onnx/model.onnx"), 0700) == 0);
    ENTRY("model.onnx is a directory", specdec_model_load(tmp_path("dir-named-onnx"), NULL, &m, &err_), SPECDEC_STATUS_IO,
          "dir-named-onnx", "no model.onnx");
    ENTRY("model path is a device (/dev/zero)", specdec_model_load("/dev/zero", NULL, &m, &err_), SPECDEC_STATUS_IO, "/dev/zero",
          "not a regular file");
    CHECK(mkdir(tmp_path("fifo-config"), 0700) == 0);
    CHECK(copy_file(FIX "llama/model.onnx", tmp_path("fifo-config/model.onnx"), 0));
    CHECK(mkfifo(tmp_path("fifo-config/config.json"), 0600) == 0);
    ENTRY("config.json is a FIFO (reading would block)", specdec_model_load(tmp_path("fifo-config"), NULL, &m, &err_),
          SPECDEC_STATUS_IO, "config.json", "not a regular file");
    ENTRY("model path is not UTF-8", specdec_model_load("models/fixtures/\xc3\x28llama", NULL, &m, &err_), SPECDEC_STATUS_INVALID_UTF8,
          "path", "UTF-8");

    CHECK(mkdir(tmp_path("not-onnx"), 0700) == 0);
    CHECK(write_file(tmp_path("not-onnx/model.onnx"), "this is not a protobuf", 22));
    ENTRY("model file is not ONNX", specdec_model_load(tmp_path("not-onnx"), NULL, &m, &err_), SPECDEC_STATUS_INVALID_MODEL,
          "not-onnx/model.onnx", "not a loadable ONNX model");
    CHECK(mkdir(tmp_path("empty-file"), 0700) == 0);
    CHECK(write_file(tmp_path("empty-file/model.onnx"), "", 0));
    ENTRY("model file is empty", specdec_model_load(tmp_path("empty-file"), NULL, &m, &err_), SPECDEC_STATUS_INVALID_MODEL,
          "empty-file/model.onnx", NULL);
    CHECK(mkdir(tmp_path("truncated"), 0700) == 0);
    CHECK(copy_file(FIX "llama/model.onnx", tmp_path("truncated/model.onnx"), 100 * 1000));
    ENTRY("model file is truncated ONNX", specdec_model_load(tmp_path("truncated"), NULL, &m, &err_), SPECDEC_STATUS_INVALID_MODEL,
          "truncated/model.onnx", "not a loadable ONNX model");
    ENTRY("ONNX model that is not a decoder (one MatMul)", specdec_model_load("tests/data/matmul.onnx", NULL, &m, &err_),
          SPECDEC_STATUS_UNSUPPORTED_LAYOUT, "matmul.onnx", "input_ids");
    ENTRY("decoder without present outputs", specdec_model_load("tests/data/decoder-no-presents.onnx", NULL, &m, &err_),
          SPECDEC_STATUS_UNSUPPORTED_LAYOUT, "present.0.key", NULL);
    CHECK(m == NULL);

    /* config.json / generation_config.json beside a good model.onnx. */
    dir = model_folder("bad-json", "{\"vocab_size\": ", NULL);
    ENTRY("config.json is not JSON", specdec_model_load(dir, NULL, &m, &err_), SPECDEC_STATUS_IO, "config.json", "invalid JSON");
    dir = model_folder("context-0", "{\"max_position_embeddings\": 0, \"vocab_size\": 512}", NULL);
    ENTRY("config.json context length 0", specdec_model_load(dir, NULL, &m, &err_), SPECDEC_STATUS_UNSUPPORTED_LAYOUT,
          "context length 0", NULL);
    dir = model_folder("eos-600", NULL, "{\"eos_token_id\": [0, 600]}");
    ENTRY("generation_config.json EOS id outside the vocabulary", specdec_model_load(dir, NULL, &m, &err_),
          SPECDEC_STATUS_UNSUPPORTED_LAYOUT, "eos_token_id 600", NULL);
    dir = model_folder("eos-wide", NULL, "{\"eos_token_id\": 4294967298}");
    ENTRY("generation_config.json EOS id wider than 32 bits", specdec_model_load(dir, NULL, &m, &err_),
          SPECDEC_STATUS_UNSUPPORTED_LAYOUT, "4294967298", NULL);
    CHECK(m == NULL);

    /* The context limit comes from config.json: a smaller one is enforced. */
    dir = model_folder("context-64", "{\"max_position_embeddings\": 64, \"vocab_size\": 512}", NULL);
    {
        specdec_model *small = NULL;
        specdec_generator *g = NULL;
        uint32_t ids[64];
        size_t i;
        for (i = 0; i < 64; i++) ids[i] = (uint32_t)(i * 5 % 512);
        CHECK_OK(specdec_model_load(dir, NULL, &small, &e_));
        CHECK(specdec_model_context_limit(small) == 64);
        CHECK_OK(specdec_generator_new(small, NULL, g_cfg, &g, &e_));
        ENTRY("prompt longer than a context limit from config.json", specdec_generator_append_tokens(g, ids, 64, &err_),
              SPECDEC_STATUS_CONTEXT_LIMIT, "65", "64");
        specdec_generator_free(g);
        /* With a draft, the smaller of the two limits applies. */
        CHECK_OK(specdec_generator_new(g_target, small, g_cfg, &g, &e_));
        ENTRY("prompt longer than the draft's context limit", specdec_generator_append_tokens(g, ids, 64, &err_),
              SPECDEC_STATUS_CONTEXT_LIMIT, "64", NULL);
        CHECK_OK(specdec_generator_append_tokens(g, ids, 40, &e_));
        specdec_generator_free(g);
        specdec_model_free(small);
    }
    check_usable("bad model files");
}

/* ---------------------------------------------------------------------------------------------
 * Tokenizer files and tokenizer input
 * ------------------------------------------------------------------------------------------- */

static void catalog_tokenizer(void) {
    specdec_tokenizer *t = (specdec_tokenizer *)(void *)&g_entries;
    unsigned char *json;
    size_t json_len = 0, n = 0, len = 0;
    uint32_t ids[16];
    char buf[64];
    const char *text = NULL;
    const uint32_t bad_ids[3] = {5, 512, 6};
    const uint32_t minus_one[1] = {(uint32_t)-1};

    ENTRY("tokenizer path does not exist", specdec_tokenizer_load("/no/such/tokenizer.json", &t, &err_), SPECDEC_STATUS_IO,
          "/no/such/tokenizer.json", NULL);
    CHECK(t == NULL);
    ENTRY("tokenizer path is a directory without tokenizer.json", specdec_tokenizer_load(tmp_path("empty-dir"), &t, &err_),
          SPECDEC_STATUS_IO, "empty-dir/tokenizer.json", NULL);
    ENTRY("tokenizer path is a device (/dev/zero: reading would never end)", specdec_tokenizer_load("/dev/zero", &t, &err_),
          SPECDEC_STATUS_IO, "/dev/zero", "not a regular file");
    CHECK(mkfifo(tmp_path("fifo.json"), 0600) == 0);
    ENTRY("tokenizer path is a FIFO (reading would block)", specdec_tokenizer_load(tmp_path("fifo.json"), &t, &err_),
          SPECDEC_STATUS_IO, "fifo.json", "not a regular file");
    ENTRY("tokenizer path is not UTF-8", specdec_tokenizer_load("tok\xe2\x82", &t, &err_), SPECDEC_STATUS_INVALID_UTF8, "path", NULL);
    json = read_file(FIX "llama/tokenizer.json", &json_len);
    CHECK(json != NULL && json_len > 1000);
    if (json) {
        char *decoder;
        CHECK(write_file(tmp_path("truncated.json"), json, json_len / 2));
        ENTRY("tokenizer.json truncated", specdec_tokenizer_load(tmp_path("truncated.json"), &t, &err_), SPECDEC_STATUS_TOKENIZER,
              "truncated.json", "invalid tokenizer.json");
        /* Found by fuzzing: this makes the `tokenizers` crate panic inside its parser. */
        json = realloc(json, json_len + 1);
        json[json_len] = '\0';
        decoder = strstr((char *)json, "\"decoder\": {");
        CHECK(decoder != NULL);
        if (decoder) {
            memcpy(decoder, "\"decoder\": {1:", 14);
            CHECK(write_file(tmp_path("panics.json"), json, json_len));
            ENTRY("tokenizer.json with a non-string key in its decoder", specdec_tokenizer_load(tmp_path("panics.json"), &t, &err_),
                  SPECDEC_STATUS_TOKENIZER, "panics.json", "invalid tokenizer.json");
        }
        free(json);
    }
    CHECK(write_file(tmp_path("not-a-tokenizer.json"), "{\"hello\": [1, 2, 3]}", 20));
    ENTRY("tokenizer.json is JSON but not a tokenizer", specdec_tokenizer_load(tmp_path("not-a-tokenizer.json"), &t, &err_),
          SPECDEC_STATUS_TOKENIZER, "not-a-tokenizer.json", NULL);
    CHECK(write_file(tmp_path("binary.json"), "\x00\xff\x10garbage", 10));
    ENTRY("tokenizer.json is binary garbage", specdec_tokenizer_load(tmp_path("binary.json"), &t, &err_), SPECDEC_STATUS_TOKENIZER,
          "binary.json", NULL);
    CHECK(t == NULL);

    ENTRY("text to encode is not UTF-8", specdec_tokenizer_encode(g_tok, "ab\xc0\xaf", 4, ids, 16, &n, &err_),
          SPECDEC_STATUS_INVALID_UTF8, "text", NULL);
    ENTRY("text to encode has a lone surrogate (CESU)", specdec_tokenizer_encode(g_tok, "\xed\xa0\x80", 3, ids, 16, &n, &err_),
          SPECDEC_STATUS_INVALID_UTF8, "text", NULL);
    ENTRY("encode into a too small buffer", specdec_tokenizer_encode(g_tok, PROMPT, strlen(PROMPT), ids, 2, &n, &err_),
          SPECDEC_STATUS_BUFFER_TOO_SMALL, "capacity is 2", NULL);
    CHECK(n == g_prompt_len);
    ENTRY("decode a token id at the vocabulary size", specdec_tokenizer_decode(g_tok, bad_ids, 3, buf, sizeof buf, &len, &err_),
          SPECDEC_STATUS_TOKEN_OUT_OF_RANGE, "512", "vocabulary size 512");
    ENTRY("decode a negative token id (as uint32_t)", specdec_tokenizer_decode(g_tok, minus_one, 1, buf, sizeof buf, &len, &err_),
          SPECDEC_STATUS_TOKEN_OUT_OF_RANGE, "4294967295", NULL);
    ENTRY("decode into a too small buffer", specdec_tokenizer_decode(g_tok, g_ref, REF_TOKENS, buf, 2, &len, &err_),
          SPECDEC_STATUS_BUFFER_TOO_SMALL, "capacity is 2", NULL);
    ENTRY("stream a token id at the vocabulary size", specdec_stream_decoder_push(g_dec, bad_ids, 3, &text, &len, &err_),
          SPECDEC_STATUS_TOKEN_OUT_OF_RANGE, "512", NULL);
    check_usable("bad tokenizer input");
}

/* ---------------------------------------------------------------------------------------------
 * Vocabularies, token ids, prompts
 * ------------------------------------------------------------------------------------------- */

static void catalog_tokens(void) {
    specdec_model *v600 = load(FIX "vocab600");
    specdec_generator *g = (specdec_generator *)(void *)&g_entries;
    specdec_gen_config *c = specdec_gen_config_new();
    uint32_t *many = malloc(600 * sizeof *many);
    const uint32_t at_vocab[3] = {5, 512, 6};
    const uint32_t above[1] = {100000};
    const uint32_t minus_one[2] = {5, (uint32_t)-1};
    const uint32_t stop_bad[2] = {3, 512};
    const uint32_t *toks = NULL;
    size_t i, n = 0;

    ENTRY("draft and target vocabularies differ", specdec_generator_new(g_target, v600, g_cfg, &g, &err_),
          SPECDEC_STATUS_VOCAB_MISMATCH, "512", "600");
    CHECK(g == NULL);
    ENTRY("target and draft swapped, vocabularies differ", specdec_generator_new(v600, g_draft, NULL, &g, &err_),
          SPECDEC_STATUS_VOCAB_MISMATCH, "600", NULL);
    specdec_model_free(v600);

    ENTRY("prompt token id at the vocabulary size", specdec_generator_append_tokens(g_gen, at_vocab, 3, &err_),
          SPECDEC_STATUS_TOKEN_OUT_OF_RANGE, "token id 512", "vocabulary size 512");
    ENTRY("prompt token id far above the vocabulary", specdec_generator_append_tokens(g_gen, above, 1, &err_),
          SPECDEC_STATUS_TOKEN_OUT_OF_RANGE, "100000", NULL);
    ENTRY("prompt token id negative (as uint32_t)", specdec_generator_append_tokens(g_gen, minus_one, 2, &err_),
          SPECDEC_STATUS_TOKEN_OUT_OF_RANGE, "4294967295", NULL);
    for (i = 0; i < 600; i++) many[i] = (uint32_t)((i * 7 + 3) % 512);
    ENTRY("prompt longer than the context", specdec_generator_append_tokens(g_gen, many, 600, &err_), SPECDEC_STATUS_CONTEXT_LIMIT,
          "601", "512");
    ENTRY("prompt exactly the context (no room to generate)", specdec_generator_append_tokens(g_gen, many, 512, &err_),
          SPECDEC_STATUS_CONTEXT_LIMIT, "513", "512");
    CHECK_OK(specdec_generator_tokens(g_gen, &toks, &n, &e_));
    CHECKF(n == 0, "refused prompts left %zu tokens", n);
    ENTRY("step before any prompt", specdec_generator_step(g_gen, &toks, &n, &err_), SPECDEC_STATUS_INVALID_ARGUMENT, "prompt", NULL);

    /* The KV memory budget: a request that could outgrow it is refused before anything changes;
     * the same generator with a budget that fits generates the reference. */
    {
        specdec_gen_config *b = specdec_gen_config_new();
        specdec_generator *bg = NULL;
        CHECK_OK(specdec_gen_config_set_max_new_tokens(b, REF_TOKENS, &e_));
        CHECK_OK(specdec_gen_config_set_eos_ids(b, NULL, 0, &e_));
        CHECK_OK(specdec_gen_config_set_kv_memory_limit(b, 1000, &e_));
        CHECK_OK(specdec_generator_new(g_target, g_draft, b, &bg, &e_));
        ENTRY("KV caches would exceed the memory budget", specdec_generator_append_tokens(bg, g_prompt, g_prompt_len, &err_),
              SPECDEC_STATUS_MEMORY_BUDGET, "budget is 1000", "bytes");
        CHECK_OK(specdec_generator_tokens(bg, &toks, &n, &e_));
        CHECKF(n == 0, "a refused request left %zu tokens", n);
        ENTRY("step after a request refused for memory", specdec_generator_step(bg, &toks, &n, &err_), SPECDEC_STATUS_INVALID_ARGUMENT,
              "prompt", NULL);
        specdec_generator_free(bg);
        /* Within budget: 16 MB is far more than 512 tokens of the fixtures need. */
        CHECK_OK(specdec_gen_config_set_kv_memory_limit(b, 16u << 20, &e_));
        CHECK_OK(specdec_generator_new(g_target, g_draft, b, &bg, &e_));
        CHECKF(generates_reference(bg), "a generator within its memory budget does not give the reference");
        specdec_generator_free(bg);
        specdec_gen_config_free(b);
    }

    CHECK_OK(specdec_gen_config_set_eos_ids(c, stop_bad, 2, &e_));
    ENTRY("EOS id outside the vocabulary", specdec_generator_new(g_target, g_draft, c, &g, &err_), SPECDEC_STATUS_TOKEN_OUT_OF_RANGE,
          "512", NULL);
    CHECK_OK(specdec_gen_config_use_model_eos_ids(c, &e_));
    CHECK_OK(specdec_gen_config_add_stop_tokens(c, stop_bad, 2, &e_));
    ENTRY("stop sequence id outside the vocabulary", specdec_generator_new(g_target, g_draft, c, &g, &err_),
          SPECDEC_STATUS_TOKEN_OUT_OF_RANGE, "512", NULL);
    CHECK(g == NULL);
    specdec_gen_config_free(c);
    free(many);
    check_usable("bad token ids and prompts");
}

/* ---------------------------------------------------------------------------------------------
 * Settings
 * ------------------------------------------------------------------------------------------- */

static void catalog_settings(void) {
    const specdec_status IA = SPECDEC_STATUS_INVALID_ARGUMENT;
    specdec_gen_config *c = specdec_gen_config_new();
    specdec_generator *g = NULL;
    specdec_stats st;
    specdec_finish_reason r = SPECDEC_FINISH_REASON_NONE;
    const uint32_t *toks = NULL;
    uint32_t *many = malloc(500 * sizeof *many);
    size_t i, n = 0;

    ENTRY("gamma 0", specdec_gen_config_set_gamma(c, 0, &err_), IA, "gamma", "0");
    ENTRY("gamma 65 (above SPECDEC_MAX_GAMMA)", specdec_gen_config_set_gamma(c, SPECDEC_MAX_GAMMA + 1, &err_), IA, "gamma", "65");
    ENTRY("gamma UINT32_MAX", specdec_gen_config_set_gamma(c, UINT32_MAX, &err_), IA, "gamma", "4294967295");
    ENTRY("temperature negative", specdec_gen_config_set_temperature(c, -0.5f, &err_), IA, "temperature", "-0.5");
    ENTRY("temperature NaN", specdec_gen_config_set_temperature(c, NAN, &err_), IA, "temperature", "NaN");
    ENTRY("temperature infinite", specdec_gen_config_set_temperature(c, INFINITY, &err_), IA, "temperature", "inf");
    ENTRY("top-p 0", specdec_gen_config_set_top_p(c, 0.0f, &err_), IA, "top_p", "(0, 1]");
    ENTRY("top-p negative", specdec_gen_config_set_top_p(c, -0.25f, &err_), IA, "top_p", "-0.25");
    ENTRY("top-p above 1", specdec_gen_config_set_top_p(c, 1.5f, &err_), IA, "top_p", "1.5");
    ENTRY("top-p NaN", specdec_gen_config_set_top_p(c, NAN, &err_), IA, "top_p", "NaN");
    ENTRY("min-p above 1", specdec_gen_config_set_min_p(c, 2.0f, &err_), IA, "min_p", NULL);
    ENTRY("repetition penalty 0", specdec_gen_config_set_repetition_penalty(c, 0.0f, &err_), IA, "repetition_penalty", NULL);
    ENTRY("presence penalty NaN", specdec_gen_config_set_presence_penalty(c, NAN, &err_), IA, "presence_penalty", "NaN");
    ENTRY("frequency penalty infinite", specdec_gen_config_set_frequency_penalty(c, INFINITY, &err_), IA, "frequency_penalty", "inf");
    ENTRY("empty stop sequence", specdec_gen_config_add_stop_tokens(c, NULL, 0, &err_), IA, "empty", NULL);
    ENTRY("empty stop text", specdec_gen_config_add_stop_text(c, "", &err_), IA, "empty", NULL);
    ENTRY("stop text not UTF-8", specdec_gen_config_add_stop_text(c, "end\xff", &err_), SPECDEC_STATUS_INVALID_UTF8, "text", NULL);
    {
        specdec_model_options *o = specdec_model_options_new();
        specdec_model *m = NULL;
        ENTRY("device name unknown", specdec_model_options_set_device(o, "tpu:0", &err_), IA, "tpu:0", NULL);
        ENTRY("device name not UTF-8", specdec_model_options_set_device(o, "cu\xff", &err_), SPECDEC_STATUS_INVALID_UTF8, "device",
              NULL);
        CHECK_OK(specdec_model_options_set_device(o, "cuda:0", &e_));
        ENTRY("CUDA where it cannot run (CPU ONNX Runtime, no GPU)", specdec_model_load(FIX "draft", o, &m, &err_), SPECDEC_STATUS_UNAVAILABLE, "CUDA", NULL);
        CHECK(m == NULL);
        specdec_model_options_free(o);
    }
    st.struct_size = SPECDEC_STATS_V1_SIZE - 8;
    ENTRY("stats struct_size too small", specdec_generator_stats(g_gen, &st, &err_), IA, "struct_size", NULL);

    /* The refused values left the defaults in place: this config still generates the reference. */
    CHECK_OK(specdec_gen_config_set_max_new_tokens(c, REF_TOKENS, &e_));
    CHECK_OK(specdec_gen_config_set_eos_ids(c, NULL, 0, &e_));
    CHECK_OK(specdec_generator_new(g_target, g_draft, c, &g, &e_));
    CHECKF(generates_reference(g), "a config that refused bad values does not give the reference");
    specdec_generator_free(g);

    /* max_new_tokens 0: not an error, nothing generated. */
    CHECK_OK(specdec_gen_config_set_max_new_tokens(c, 0, &e_));
    CHECK_OK(specdec_generator_new(g_target, g_draft, c, &g, &e_));
    CHECK_OK(specdec_generator_append_tokens(g, g_prompt, g_prompt_len, &e_));
    CHECK_OK(specdec_generator_generate(g, NULL, NULL, &r, &e_));
    CHECK_OK(specdec_generator_tokens(g, &toks, &n, &e_));
    CHECK(r == SPECDEC_FINISH_REASON_MAX_TOKENS && n == g_prompt_len);
    printf("catalog: max new tokens 0 | SPECDEC_STATUS_OK (0) | finish reason MAX_TOKENS, %zu new tokens\n", n - g_prompt_len);
    specdec_generator_free(g);

    /* max_new_tokens UINT32_MAX: generation runs into the context limit, which is reported. */
    CHECK_OK(specdec_gen_config_set_max_new_tokens(c, UINT32_MAX, &e_));
    CHECK_OK(specdec_generator_new(g_target, g_draft, c, &g, &e_));
    for (i = 0; i < 500; i++) many[i] = (uint32_t)((i * 11 + 1) % 512);
    CHECK_OK(specdec_generator_append_tokens(g, many, 500, &e_));
    ENTRY("max new tokens UINT32_MAX runs into the context", specdec_generator_generate(g, NULL, NULL, &r, &err_),
          SPECDEC_STATUS_CONTEXT_LIMIT, "512", NULL);
    CHECK_OK(specdec_generator_tokens(g, &toks, &n, &e_));
    CHECKF(n == 512, "%zu tokens at the context limit", n);
    specdec_generator_free(g);

    specdec_gen_config_free(c);
    free(many);
    check_usable("bad settings");
}

/* ---------------------------------------------------------------------------------------------
 * Drafters: bad parameters, bad count files, and host callbacks that misbehave
 * ------------------------------------------------------------------------------------------- */

typedef struct {
    int mode;
} draft_cb_ctx;

enum { CB_FAIL, CB_TOO_MANY, CB_BAD_ID, CB_NAN_PROBS, CB_ZERO_AT_PROPOSAL, CB_GOOD };

/* Proposes token 5 (or misbehaves as `mode` says). */
static int32_t draft_cb(void *user_data, const uint32_t *tokens, size_t n_tokens, size_t max_proposals, size_t vocab_size,
                        uint32_t *proposals, float *probs) {
    const draft_cb_ctx *ctx = user_data;
    size_t i;
    (void)tokens;
    (void)n_tokens;
    if (ctx->mode == CB_FAIL) return -1;
    if (ctx->mode == CB_TOO_MANY) return (int32_t)max_proposals + 1;
    proposals[0] = ctx->mode == CB_BAD_ID ? 512 : 5;
    if (probs) {
        for (i = 0; i < vocab_size; i++) probs[i] = ctx->mode == CB_NAN_PROBS ? NAN : 0.0f;
        if (ctx->mode == CB_ZERO_AT_PROPOSAL) probs[6] = 1.0f;
        if (ctx->mode == CB_GOOD) probs[5] = 1.0f;
    }
    return 1;
}

/* A generator over the shared target with `d`, the prompt appended; one step's status. */
static specdec_status step_with(const specdec_drafter *d, specdec_generator **g, specdec_error **err) {
    const uint32_t *toks = NULL;
    size_t n = 0;
    specdec_status s = specdec_generator_new_with_drafter(g_target, d, g_cfg, g, err);
    if (s == SPECDEC_STATUS_OK) s = specdec_generator_append_tokens(*g, g_prompt, g_prompt_len, err);
    if (s == SPECDEC_STATUS_OK) s = specdec_generator_step(*g, &toks, &n, err);
    return s;
}

static void catalog_drafters(void) {
    const specdec_status IA = SPECDEC_STATUS_INVALID_ARGUMENT;
    specdec_drafter *d = (specdec_drafter *)(void *)&g_entries;
    specdec_generator *g = NULL;
    draft_cb_ctx ctx;
    const uint32_t *toks = NULL;
    size_t n = 0;
    int with_probs;

    ENTRY("n-gram drafter with n_min 0", specdec_drafter_new_ngram(0, 3, 4, &d, &err_), IA, "n_min", NULL);
    CHECK(d == NULL);
    ENTRY("n-gram drafter with n_min > n_max", specdec_drafter_new_ngram(4, 2, 4, &d, &err_), IA, NULL, NULL);
    ENTRY("n-gram drafter with max_proposal 65", specdec_drafter_new_ngram(1, 3, SPECDEC_MAX_GAMMA + 1, &d, &err_), IA,
          "max_proposal", NULL);
    ENTRY("counts drafter of order 3", specdec_drafter_new_counts(3, NULL, &d, &err_), IA, "order", NULL);
    ENTRY("counts file missing", specdec_drafter_new_counts(1, "/no/such/counts.txt", &d, &err_), SPECDEC_STATUS_IO,
          "/no/such/counts.txt", NULL);
    CHECK(write_file(tmp_path("counts.txt"), "5 10\nseven 3\n", 13));
    ENTRY("counts file malformed", specdec_drafter_new_counts(1, tmp_path("counts.txt"), &d, &err_), SPECDEC_STATUS_IO, "counts.txt",
          NULL);
    ENTRY("counts path not UTF-8", specdec_drafter_new_counts(1, "counts\xff.txt", &d, &err_), SPECDEC_STATUS_INVALID_UTF8, NULL,
          NULL);
    ENTRY("draft callback NULL", specdec_drafter_new_callback(NULL, NULL, 0, &d, &err_), SPECDEC_STATUS_NULL_PARAMETER, "callback",
          NULL);
    CHECK(d == NULL);

    /* Host callbacks that fail or answer nonsense: the step fails with a status naming it, the
     * generator is rolled back and generates the reference once the callback behaves. */
    for (with_probs = 0; with_probs <= 1; with_probs++) {
        static const struct {
            int mode;
            const char *name;
            specdec_status expected;
            const char *needle;
        } cases[] = {
            {CB_FAIL, "draft callback returns -1", SPECDEC_STATUS_CALLBACK, "-1"},
            {CB_TOO_MANY, "draft callback returns more than max_proposals", SPECDEC_STATUS_INVALID_ARGUMENT, "max_proposals"},
            {CB_BAD_ID, "draft callback proposes id 512", SPECDEC_STATUS_TOKEN_OUT_OF_RANGE, "512"},
            {CB_NAN_PROBS, "draft callback probabilities NaN", SPECDEC_STATUS_INVALID_ARGUMENT, NULL},
            {CB_ZERO_AT_PROPOSAL, "draft callback gives its proposal probability 0", SPECDEC_STATUS_INVALID_ARGUMENT, NULL},
        };
        size_t i;
        for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
            char name[160];
            if (!with_probs && (cases[i].mode == CB_NAN_PROBS || cases[i].mode == CB_ZERO_AT_PROPOSAL)) continue;
            snprintf(name, sizeof name, "%s (%s)", cases[i].name, with_probs ? "with probabilities" : "fixed proposals");
            ctx.mode = cases[i].mode;
            CHECK_OK(specdec_drafter_new_callback(draft_cb, &ctx, with_probs != 0, &d, &e_));
            ENTRY(name, step_with(d, &g, &err_), cases[i].expected, cases[i].needle, NULL);
            CHECK_OK(specdec_generator_tokens(g, &toks, &n, &e_));
            CHECKF(n == g_prompt_len, "%s: %zu tokens after the failed step", name, n);
            /* The same generator, once the callback behaves, generates the reference. */
            ctx.mode = CB_GOOD;
            {
                specdec_finish_reason r = SPECDEC_FINISH_REASON_NONE;
                const uint32_t *all = NULL;
                CHECK_OK(specdec_generator_generate(g, NULL, NULL, &r, &e_));
                CHECK_OK(specdec_generator_tokens(g, &all, &n, &e_));
                CHECKF(n == g_prompt_len + REF_TOKENS && memcmp(all + g_prompt_len, g_ref, sizeof g_ref) == 0,
                       "%s: afterwards the output differs from the reference", name);
            }
            specdec_generator_free(g);
            g = NULL;
            specdec_drafter_free(d);
        }
    }
    check_usable("bad drafters");
}

/* ---------------------------------------------------------------------------------------------
 * Main
 * ------------------------------------------------------------------------------------------- */

int main(void) {
    struct stat sb;
    if (stat(FIX "llama/model.onnx", &sb) != 0 || stat("tests/data/matmul.onnx", &sb) != 0) {
        fprintf(stderr, "run from the repository root\n");
        return 2;
    }
    harness_begin();
    if (!harness_tmpdir("catalog")) return 2;
    CHECKF(in_child(runtime_explicit), "the runtime_explicit child failed");
    CHECKF(in_child(runtime_from_env), "the runtime_from_env child failed");
    RUN(load_shared);
    if (!g_target || !g_draft || !g_tok || !g_gen) {
        printf("%d passed, %d failed\n", g_passed, g_failed + 1);
        harness_remove_tmpdir();
        return 1;
    }
    RUN(catalog_models);
    RUN(catalog_tokenizer);
    RUN(catalog_tokens);
    RUN(catalog_settings);
    RUN(catalog_drafters);

    specdec_generator_free(g_gen);
    specdec_stream_decoder_free(g_dec);
    specdec_gen_config_free(g_cfg);
    specdec_tokenizer_free(g_tok);
    specdec_model_free(g_draft);
    specdec_model_free(g_target);
    harness_remove_tmpdir();
    printf("%d catalog entries; %d passed, %d failed\n", g_entries, g_passed, g_failed);
    return g_failed == 0 ? 0 : 1;
}
