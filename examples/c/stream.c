/*
 * Streaming speculative generation with the specdec C API.
 *
 *   stream [TARGET [DRAFT [PROMPT [MAX_NEW_TOKENS]]]]
 *
 * TARGET and DRAFT are model folders (model.onnx, config.json, generation_config.json,
 * tokenizer.json). Defaults: models/demo/target and models/demo/draft, or the test fixtures
 * models/fixtures/llama and models/fixtures/draft when the demo models are not there.
 *
 * The continuation is printed to stdout as it is generated; statistics go to stderr.
 *
 * Build (from the repository root):
 *   gcc -std=c99 -Wall -Wextra -pedantic -I include examples/c/stream.c -o stream \
 *       -L target/release -lspecdec -Wl,-rpath,$PWD/target/release -lpthread
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "specdec.h"

/* What the token callback needs: the stream decoder that turns ids into text. */
struct stream_state {
    specdec_stream_decoder *decoder;
    specdec_status status; /* first streaming error, if any */
    specdec_error *error;
};

/* Report a failed call and its error (`*err`, filled by the call), then free the error.
 * Returns 1 if `status` is an error. */
static int failed(const char *what, specdec_status status, specdec_error **err) {
    if (status == SPECDEC_STATUS_OK) return 0;
    fprintf(stderr, "stream: %s: %s: %s\n", what, specdec_status_name(status), specdec_error_message(*err));
    specdec_error_free(*err);
    *err = NULL;
    return 1;
}

/* Called by specdec_generator_generate with the tokens of each iteration. */
static int32_t on_tokens(void *user_data, const uint32_t *tokens, size_t n_tokens) {
    struct stream_state *st = user_data;
    const char *text = NULL;
    size_t len = 0;
    st->status = specdec_stream_decoder_push(st->decoder, tokens, n_tokens, &text, &len, &st->error);
    if (st->status != SPECDEC_STATUS_OK) return 1; /* stop generating */
    fwrite(text, 1, len, stdout);
    fflush(stdout);
    return 0;
}

static const char *finish_name(specdec_finish_reason reason) {
    switch (reason) {
    case SPECDEC_FINISH_REASON_EOS: return "end of sequence";
    case SPECDEC_FINISH_REASON_MAX_TOKENS: return "max_new_tokens";
    case SPECDEC_FINISH_REASON_STOP_SEQUENCE: return "stop sequence";
    case SPECDEC_FINISH_REASON_STOPPED: return "stopped";
    default: return "none";
    }
}

static int is_dir(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
}

int main(int argc, char **argv) {
    const char *target_path = "models/demo/target";
    const char *draft_path = "models/demo/draft";
    const char *prompt = "import os\nimport sys\n\n\ndef main(argv=None):\n";
    unsigned long max_new_tokens = 64;

    specdec_model_options *options = NULL;
    specdec_model *target = NULL, *draft = NULL;
    specdec_tokenizer *tokenizer = NULL;
    specdec_gen_config *config = NULL;
    specdec_generator *generator = NULL;
    struct stream_state stream = {NULL, SPECDEC_STATUS_OK, NULL};
    specdec_finish_reason reason = SPECDEC_FINISH_REASON_NONE;
    specdec_stats stats;
    specdec_error *err = NULL;
    specdec_status s;
    uint32_t *ids = NULL;
    size_t n_ids = 0, len = 0;
    const char *rest = NULL;
    int exit_code = 1;

    if (argc > 1) target_path = argv[1];
    if (argc > 2) draft_path = argv[2];
    if (argc > 3) prompt = argv[3];
    if (argc > 4) max_new_tokens = strtoul(argv[4], NULL, 10);
    if (argc < 2 && !is_dir(target_path)) {
        target_path = "models/fixtures/llama";
        draft_path = "models/fixtures/draft";
    }
    if (specdec_abi_version() != SPECDEC_ABI_VERSION) {
        fprintf(stderr, "stream: libspecdec ABI %u, this program was built for %u\n", (unsigned)specdec_abi_version(),
                (unsigned)SPECDEC_ABI_VERSION);
        return 1;
    }

    /* Models and tokenizer (the tokenizer.json of the target's folder). */
    options = specdec_model_options_new();
    if (!options) goto done;
    if (failed("options", specdec_model_options_set_intra_threads(options, 1, &err), &err)) goto done;
    if (failed("target", specdec_model_load(target_path, options, &target, &err), &err)) goto done;
    if (failed("draft", specdec_model_load(draft_path, options, &draft, &err), &err)) goto done;
    if (failed("tokenizer", specdec_tokenizer_load(target_path, &tokenizer, &err), &err)) goto done;

    /* The prompt's ids: ask for the count, then encode into a buffer of that size. */
    s = specdec_tokenizer_encode(tokenizer, prompt, strlen(prompt), NULL, 0, &n_ids, &err);
    if (s == SPECDEC_STATUS_BUFFER_TOO_SMALL) {
        specdec_error_free(err);
        err = NULL;
        ids = malloc(n_ids * sizeof *ids);
        if (!ids) goto done;
        s = specdec_tokenizer_encode(tokenizer, prompt, strlen(prompt), ids, n_ids, &n_ids, &err);
    }
    if (failed("encode", s, &err)) goto done;

    /* Settings: 4 draft tokens per round, greedy, at most max_new_tokens. */
    config = specdec_gen_config_new();
    if (!config) goto done;
    if (failed("gamma", specdec_gen_config_set_gamma(config, 4, &err), &err)) goto done;
    if (failed("max_new_tokens", specdec_gen_config_set_max_new_tokens(config, (uint32_t)max_new_tokens, &err), &err)) goto done;

    if (failed("generator", specdec_generator_new(target, draft, config, &generator, &err), &err)) goto done;
    if (failed("prompt", specdec_generator_append_tokens(generator, ids, n_ids, &err), &err)) goto done;
    if (failed("stream decoder", specdec_stream_decoder_new(tokenizer, &stream.decoder, &err), &err)) goto done;

    /* Generate, streaming each iteration's text from the callback. */
    fputs(prompt, stdout);
    s = specdec_generator_generate(generator, on_tokens, &stream, &reason, &err);
    if (stream.status != SPECDEC_STATUS_OK) {
        failed("decode", stream.status, &stream.error);
        specdec_error_free(err);
        goto done;
    }
    if (failed("generate", s, &err)) goto done;
    /* Whatever the decoder still holds back (an incomplete character at the end). */
    if (failed("flush", specdec_stream_decoder_flush(stream.decoder, &rest, &len, &err), &err)) goto done;
    fwrite(rest, 1, len, stdout);
    fputc('\n', stdout);
    fflush(stdout);

    stats.struct_size = sizeof stats;
    if (failed("stats", specdec_generator_stats(generator, &stats, &err), &err)) goto done;
    fprintf(stderr,
            "finish reason %s; %llu tokens in %llu target calls: %.2f tokens per target call, "
            "acceptance rate %.1f%% (%llu of %llu drafted), %.1f ms\n",
            finish_name(reason),
            (unsigned long long)stats.new_tokens, (unsigned long long)stats.target_calls, stats.tokens_per_target_call,
            100.0 * stats.acceptance_rate, (unsigned long long)stats.accepted, (unsigned long long)stats.drafted,
            1000.0 * stats.total_seconds);
    exit_code = 0;

done:
    /* Every _free accepts NULL. */
    specdec_stream_decoder_free(stream.decoder);
    specdec_generator_free(generator);
    specdec_gen_config_free(config);
    free(ids);
    specdec_tokenizer_free(tokenizer);
    specdec_model_free(draft);
    specdec_model_free(target);
    specdec_model_options_free(options);
    return exit_code;
}
