/*
 * Tokenizers and stream decoders through the specdec C ABI: loading and its failures, encode and
 * decode with the buffer-size protocol, out-of-range ids, and streaming in whole UTF-8 characters.
 *
 * Scratch files go to a mkdtemp folder under /tmp.
 *
 * Part of the C ABI tests (include/specdec.h), in plain C99; the shared checks are in harness.h,
 * the fixtures in fixtures.h. Run from the repository root (fixtures are read from
 * models/fixtures/). The last line is "N passed, M failed"; the exit status is non-zero if
 * anything failed. SPECDEC_TEST_QUICK=1 (used under valgrind) trims the slow repetitions.
 */
#include <stdint.h>

#include "fixtures.h"

/* ---------------------------------------------------------------------------------------------
 * NULL arguments
 * ------------------------------------------------------------------------------------------- */

static void test_tokenizer_null_parameters(void) {
    const specdec_status NP = SPECDEC_STATUS_NULL_PARAMETER;
    specdec_tokenizer *t = NULL;
    size_t n = 0, len = 0;
    uint32_t ids[8] = {5};
    char buf[64];

    /* Tokenizer. */
    t = (specdec_tokenizer *)(void *)buf;
    CHECK_ERR(specdec_tokenizer_load(NULL, &t, &g_err), NP, "path");
    CHECK(t == NULL);
    CHECK_ERR(specdec_tokenizer_load(FIX "llama", NULL, &g_err), NP, "out");
    CHECK_ERR(specdec_tokenizer_encode(NULL, "abc", 3, ids, 8, &n, &g_err), NP, "tokenizer");
    CHECK_ERR(specdec_tokenizer_encode(g_tok, NULL, 3, ids, 8, &n, &g_err), NP, "text");
    CHECK_ERR(specdec_tokenizer_encode(g_tok, "abc", 3, NULL, 8, &n, &g_err), NP, "ids");
    CHECK_ERR(specdec_tokenizer_encode(g_tok, "abc", 3, ids, 8, NULL, &g_err), NP, "n_ids");
    ids[0] = 5;
    CHECK_ERR(specdec_tokenizer_decode(NULL, ids, 1, buf, sizeof buf, &len, &g_err), NP, "tokenizer");
    CHECK_ERR(specdec_tokenizer_decode(g_tok, NULL, 1, buf, sizeof buf, &len, &g_err), NP, "ids");
    CHECK_ERR(specdec_tokenizer_decode(g_tok, ids, 1, NULL, sizeof buf, &len, &g_err), NP, "buf");
    CHECK_ERR(specdec_tokenizer_decode(g_tok, ids, 1, buf, sizeof buf, NULL, &g_err), NP, "len");
    CHECK(specdec_tokenizer_vocab_size(NULL) == 0);

    /* NULL err: the status is still returned. */
    CHECK(specdec_tokenizer_encode(g_tok, "abc", 3, ids, 8, NULL, NULL) == NP);

    /* Arrays of length 0 may be NULL. */
    n = 99;
    CHECK_OK(specdec_tokenizer_encode(g_tok, NULL, 0, NULL, 0, &n, &g_err));
    CHECK(n == 0);
    CHECK_OK(specdec_tokenizer_decode(g_tok, NULL, 0, buf, sizeof buf, &len, &g_err));
    CHECK(len == 0 && buf[0] == '\0');
}

static void test_stream_decoder_null_parameters(void) {
    const specdec_status NP = SPECDEC_STATUS_NULL_PARAMETER;
    specdec_stream_decoder *dec = NULL;
    specdec_stream_decoder *d = NULL;
    const char *text = NULL;
    size_t len = 0;
    uint32_t ids[8] = {5};
    char buf[64];

    CHECK_OK(specdec_stream_decoder_new(g_tok, &dec, &g_err));

    /* Stream decoder. */
    d = (specdec_stream_decoder *)(void *)buf;
    CHECK_ERR(specdec_stream_decoder_new(NULL, &d, &g_err), NP, "tokenizer");
    CHECK(d == NULL);
    CHECK_ERR(specdec_stream_decoder_new(g_tok, NULL, &g_err), NP, "out");
    CHECK_ERR(specdec_stream_decoder_push(NULL, ids, 1, &text, &len, &g_err), NP, "decoder");
    CHECK_ERR(specdec_stream_decoder_push(dec, NULL, 1, &text, &len, &g_err), NP, "ids");
    CHECK_ERR(specdec_stream_decoder_push(dec, ids, 1, NULL, &len, &g_err), NP, "text");
    CHECK_ERR(specdec_stream_decoder_push(dec, ids, 1, &text, NULL, &g_err), NP, "len");
    CHECK_ERR(specdec_stream_decoder_flush(NULL, &text, &len, &g_err), NP, "decoder");
    CHECK_ERR(specdec_stream_decoder_flush(dec, NULL, &len, &g_err), NP, "text");
    CHECK_ERR(specdec_stream_decoder_flush(dec, &text, NULL, &g_err), NP, "len");

    /* Arrays of length 0 may be NULL. */
    CHECK_OK(specdec_stream_decoder_push(dec, NULL, 0, &text, &len, &g_err));
    CHECK(len == 0 && text != NULL && text[0] == '\0');

    specdec_stream_decoder_free(dec);
}

/* ---------------------------------------------------------------------------------------------
 * Loading failures
 * ------------------------------------------------------------------------------------------- */

static void test_tokenizer_load_failures(void) {
    specdec_tokenizer *t = NULL;

    /* Tokenizers. */
    CHECK_ERR(specdec_tokenizer_load("/no/such/tokenizer.json", &t, &g_err), SPECDEC_STATUS_IO, "/no/such/tokenizer.json");
    CHECK(t == NULL);
    CHECK_ERR(specdec_tokenizer_load(g_tmp, &t, &g_err), SPECDEC_STATUS_IO, "tokenizer.json");
    CHECK(write_file(tmp_path("tokenizer.json"), "{\"model\": 42", 12));
    CHECK_ERR(specdec_tokenizer_load(tmp_path("tokenizer.json"), &t, &g_err), SPECDEC_STATUS_TOKENIZER, "tokenizer.json");
    CHECK(t == NULL);
    CHECK_ERR(specdec_tokenizer_load("\xe2\x82", &t, &g_err), SPECDEC_STATUS_INVALID_UTF8, "path");
    CHECK_OK(specdec_tokenizer_load(FIX "llama/tokenizer.json", &t, &g_err));
    CHECK(specdec_tokenizer_vocab_size(t) == 512);
    specdec_tokenizer_free(t);
}

/* ---------------------------------------------------------------------------------------------
 * Tokenizer and stream decoder
 * ------------------------------------------------------------------------------------------- */

static void test_tokenizer(void) {
    const char *text = PROMPT_TEXTS[0];
    size_t text_len = strlen(text), n = 0, n2 = 0, len = 0, len2 = 0;
    uint32_t ids[256], sentinel_ids[4] = {77, 77, 77, 77};
    uint32_t bad[3];
    char buf[512];
    char *round_trip;

    CHECK(specdec_tokenizer_vocab_size(g_tok) == 512);

    /* Capacity 0 asks for the size, then a retry with it succeeds. */
    CHECK_ERR(specdec_tokenizer_encode(g_tok, text, text_len, NULL, 0, &n, &g_err), SPECDEC_STATUS_BUFFER_TOO_SMALL, "capacity");
    CHECK(n > 1 && n < 256);
    CHECK_ERR(specdec_tokenizer_encode(g_tok, text, text_len, sentinel_ids, 2, &n2, &g_err), SPECDEC_STATUS_BUFFER_TOO_SMALL,
              "needs");
    CHECK(n2 == n && sentinel_ids[0] == 77 && sentinel_ids[1] == 77); /* nothing written */
    CHECK_OK(specdec_tokenizer_encode(g_tok, text, text_len, ids, n, &n2, &g_err));
    CHECK(n2 == n);
    /* text_len counts bytes; no terminator needed. */
    CHECK_OK(specdec_tokenizer_encode(g_tok, "abcdef", 3, ids + 200, 50, &n2, &g_err));
    CHECK(n2 >= 1);
    CHECK_ERR(specdec_tokenizer_encode(g_tok, "ab\xff", 3, ids + 200, 50, &n2, &g_err), SPECDEC_STATUS_INVALID_UTF8, "text");
    CHECK_ERR(specdec_tokenizer_encode(g_tok, "\xe2\x82\xac", 2, ids + 200, 50, &n2, &g_err), SPECDEC_STATUS_INVALID_UTF8,
              "text"); /* a character cut by text_len */

    /* Decode: capacity 0 gives the length; capacity == length is still too small (the NUL). */
    CHECK_ERR(specdec_tokenizer_decode(g_tok, ids, n, NULL, 0, &len, &g_err), SPECDEC_STATUS_BUFFER_TOO_SMALL, "capacity");
    CHECK(len == text_len);
    buf[0] = 'Z';
    CHECK_ERR(specdec_tokenizer_decode(g_tok, ids, n, buf, len, &len2, &g_err), SPECDEC_STATUS_BUFFER_TOO_SMALL, "NUL");
    CHECK(len2 == len && buf[0] == 'Z');
    CHECK_OK(specdec_tokenizer_decode(g_tok, ids, n, buf, len + 1, &len2, &g_err));
    CHECK(len2 == len && buf[len] == '\0');
    CHECKF(strcmp(buf, text) == 0, "round trip gave \"%s\"", buf);
    CHECK_ERR(specdec_tokenizer_decode(g_tok, ids, 0, buf, 0, &len, &g_err), SPECDEC_STATUS_BUFFER_TOO_SMALL, "capacity");
    CHECK(len == 0);

    /* Out-of-range ids. */
    bad[0] = 5;
    bad[1] = 512;
    bad[2] = 6;
    CHECK_ERR(specdec_tokenizer_decode(g_tok, bad, 3, buf, sizeof buf, &len, &g_err), SPECDEC_STATUS_TOKEN_OUT_OF_RANGE, "512");
    bad[1] = UINT32_MAX;
    CHECK_ERR(specdec_tokenizer_decode(g_tok, bad, 3, buf, sizeof buf, &len, &g_err), SPECDEC_STATUS_TOKEN_OUT_OF_RANGE,
              "4294967295");
    bad[1] = 511;
    CHECK_OK(specdec_tokenizer_decode(g_tok, bad, 3, buf, sizeof buf, &len, &g_err));
    /* Special tokens are skipped: id 0 is <|endoftext|>. */
    bad[0] = 0;
    CHECK_OK(specdec_tokenizer_decode(g_tok, bad, 1, buf, sizeof buf, &len, &g_err));
    CHECK(len == 0 && buf[0] == '\0');

    /* Non-ASCII text round-trips. */
    text = "na\xc3\xafve caf\xc3\xa9 \xe2\x80\x94 \xe2\x9c\x93 \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x99\x82";
    CHECK_OK(specdec_tokenizer_encode(g_tok, text, strlen(text), ids, 256, &n, &g_err));
    round_trip = decode_all(ids, n);
    CHECKF(strcmp(round_trip, text) == 0, "round trip gave \"%s\"", round_trip);
    free(round_trip);
}

/* Push `ids` through a fresh stream decoder, `chunk` at a time; returns the malloc'd text. */
static char *stream_decode(specdec_stream_decoder *d, const uint32_t *ids, size_t n, size_t chunk, int *pieces_valid) {
    size_t cap = 64, used = 0, i, len = 0;
    char *out = malloc(cap);
    const char *text = NULL;
    *pieces_valid = 1;
    for (i = 0; i <= n; i += chunk) {
        size_t k = i + chunk <= n ? chunk : n - i;
        specdec_status s = i < n ? specdec_stream_decoder_push(d, ids + i, k, &text, &len, &g_err)
                                 : specdec_stream_decoder_flush(d, &text, &len, &g_err);
        CHECK_OK(s);
        if (s != SPECDEC_STATUS_OK) break;
        CHECK(text != NULL && strlen(text) == len);
        if (!valid_utf8(text, len)) *pieces_valid = 0;
        while (used + len + 1 > cap) out = realloc(out, cap *= 2);
        memcpy(out + used, text, len);
        used += len;
        if (i >= n) break;
    }
    out[used] = '\0';
    return out;
}

static void test_stream_decoder(void) {
    specdec_stream_decoder *d = NULL;
    specdec_tokenizer *t = NULL;
    const char *utf8 = "caf\xc3\xa9 \xe2\x9c\x93 \xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e \xf0\x9f\x99\x82!";
    uint32_t ids[128], bad[2] = {5, 512};
    size_t n = 0, len = 0;
    const char *text = NULL;
    tokbuf gen;
    char *one_shot, *streamed;
    int valid;
    size_t chunk;

    /* Generated tokens: streamed text (one token at a time, then in chunks) == one-shot decode. */
    greedy(g_target, g_draft, 4, 1, 32, &gen);
    one_shot = decode_all(gen.ids, gen.n);
    for (chunk = 1; chunk <= 5; chunk += 4) {
        CHECK_OK(specdec_stream_decoder_new(g_tok, &d, &g_err));
        streamed = stream_decode(d, gen.ids, gen.n, chunk, &valid);
        CHECKF(strcmp(streamed, one_shot) == 0, "streamed \"%s\" != decoded \"%s\"", streamed, one_shot);
        CHECK(valid);
        free(streamed);
        specdec_stream_decoder_free(d);
    }
    free(one_shot);

    /* Multi-byte characters split across tokens are held back until complete. */
    CHECK_OK(specdec_tokenizer_encode(g_tok, utf8, strlen(utf8), ids, 128, &n, &g_err));
    CHECKF(n > 10, "%zu tokens", n);
    CHECK_OK(specdec_stream_decoder_new(g_tok, &d, &g_err));
    streamed = stream_decode(d, ids, n, 1, &valid);
    CHECKF(strcmp(streamed, utf8) == 0, "streamed \"%s\"", streamed);
    CHECK(valid);
    free(streamed);
    specdec_stream_decoder_free(d);

    /* An incomplete character at the very end comes out of flush (as U+FFFD). */
    CHECK_OK(specdec_stream_decoder_new(g_tok, &d, &g_err));
    CHECK_OK(specdec_tokenizer_encode(g_tok, "\xf0\x9f\x99\x82", 4, ids, 128, &n, &g_err));
    if (n >= 2) {
        CHECK_OK(specdec_stream_decoder_push(d, ids, n - 1, &text, &len, &g_err));
        CHECK(len == 0 && text[0] == '\0');
        CHECK_OK(specdec_stream_decoder_flush(d, &text, &len, &g_err));
        CHECK(len > 0);
    }
    specdec_stream_decoder_free(d);

    /* Out-of-range ids: an error, and the decoder stays usable. */
    CHECK_OK(specdec_stream_decoder_new(g_tok, &d, &g_err));
    CHECK_ERR(specdec_stream_decoder_push(d, bad, 2, &text, &len, &g_err), SPECDEC_STATUS_TOKEN_OUT_OF_RANGE, "512");
    CHECK_ERR(specdec_stream_decoder_push(d, bad + 1, 1, &text, &len, &g_err), SPECDEC_STATUS_TOKEN_OUT_OF_RANGE, "512");
    CHECK_OK(specdec_tokenizer_encode(g_tok, "hello world", 11, ids, 128, &n, &g_err));
    streamed = stream_decode(d, ids, n, 1, &valid);
    CHECKF(strcmp(streamed, "hello world") == 0, "after a failed push the decoder streamed \"%s\"", streamed);
    free(streamed);
    specdec_stream_decoder_free(d);

    /* A token that decodes to U+0000 (byte-level token 189, "\u0100"): the stream gives the same
     * bytes as decode, NUL included, with the exact length (found by the tokenizer fuzz target:
     * the stream used to turn it into a space). */
    {
        const uint32_t nul_ids[3] = {72, 189, 73};
        char buf[16];
        CHECK_OK(specdec_tokenizer_decode(g_tok, nul_ids, 3, buf, sizeof buf, &len, &g_err));
        CHECK(len == 3 && buf[1] == '\0');
        CHECK_OK(specdec_stream_decoder_new(g_tok, &d, &g_err));
        CHECK_OK(specdec_stream_decoder_push(d, nul_ids, 3, &text, &len, &g_err));
        CHECKF(len == 3 && memcmp(text, buf, 4) == 0, "streamed %zu bytes", len);
        specdec_stream_decoder_free(d);
    }

    /* The decoder keeps its tokenizer alive. */
    CHECK_OK(specdec_tokenizer_load(FIX "llama", &t, &g_err));
    CHECK_OK(specdec_stream_decoder_new(t, &d, &g_err));
    specdec_tokenizer_free(t);
    streamed = stream_decode(d, ids, n, 2, &valid);
    CHECK(strcmp(streamed, "hello world") == 0);
    free(streamed);
    specdec_stream_decoder_free(d);
}

int main(void) {
    if (!fixtures_begin("tokenizer")) return 2;
    if (!fixtures_load()) return fixtures_end();
    RUN(test_tokenizer_null_parameters);
    RUN(test_stream_decoder_null_parameters);
    RUN(test_tokenizer_load_failures);
    RUN(test_tokenizer);
    RUN(test_stream_decoder);
    return fixtures_end();
}
