/*
 * Library-wide calls of the specdec C ABI: versions, status names, error objects, ONNX Runtime
 * loading, and *_free(NULL).
 *
 * ONNX Runtime is loaded once per process, so this program loads no model before its runtime
 * tests: one forks a child before the runtime is loaded (a bad $ORT_DYLIB_PATH must give
 * SPECDEC_STATUS_RUNTIME_LOAD), the next loads it with specdec_runtime_init after bad paths.
 *
 * Part of the C ABI tests (include/specdec.h), in plain C99; the shared checks are in harness.h,
 * the fixtures in fixtures.h. Run from the repository root (fixtures are read from
 * models/fixtures/). The last line is "N passed, M failed"; the exit status is non-zero if
 * anything failed. SPECDEC_TEST_QUICK=1 (used under valgrind) trims the slow repetitions.
 */
#include <stdint.h>
#include <sys/types.h>
#include <sys/wait.h>

#include "fixtures.h"

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

int main(void) {
    if (!fixtures_begin("runtime")) return 2;
    RUN(test_versions);
    RUN(test_status_names);
    RUN(test_model_load_without_runtime);
    RUN(test_runtime_init);
    RUN(test_free_null);
    return fixtures_end();
}
