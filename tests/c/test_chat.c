/*
 * Chat templates and special tokens through the specdec C ABI: specdec_tokenizer_apply_chat_template
 * (the folder's template and one set with specdec_tokenizer_set_chat_template, multi-turn, with and
 * without the generation prompt, the buffer-size protocol, raise_exception, no template),
 * specdec_tokenizer_encode_ex / decode_ex with and without special tokens, and
 * specdec_tokenizer_token_to_id / id_to_token. The expected strings and ids are transformers'
 * (the JSON files in tests/chat, made by tests/chat/make_expected.py).
 *
 * Uses tests/chat/bos: the fixture tokenizer with a post-processor that adds <|endoftext|> (id 0)
 * as a BOS, and a Llama-3 style template. Part of the C ABI tests (include/specdec.h), in plain
 * C99; run from the repository root. The last line is "N passed, M failed".
 */
#include <stdint.h>

#include "fixtures.h"

#define BOS_DIR "tests/chat/bos"

static specdec_tokenizer *g_bos;

/* transformers: apply_chat_template([{"role": "user", "content": "Hello!"}], add_generation_prompt=True). */
static const char *const HELLO_PROMPT =
    "<|endoftext|><|start_header_id|>user<|end_header_id|>\n\nHello!<|endoftext|><|start_header_id|>assistant<|end_header_id|>\n\n";

/* The Qwen2 template and transformers' rendering of a four-turn conversation (tests/chat/qwen2.json). */
static const char *const QWEN2 =
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";
static const specdec_chat_message CONVERSATION[4] = {
    {"system", "You are a terse assistant."},
    {"user", "Hi, what is 2 + 2?"},
    {"assistant", "4."},
    {"user", "  And 3 + 3?  \n"},
};
static const char *const QWEN2_EXPECTED =
    "<|im_start|>system\nYou are a terse assistant.<|im_end|>\n<|im_start|>user\nHi, what is 2 + 2?<|im_end|>\n"
    "<|im_start|>assistant\n4.<|im_end|>\n<|im_start|>user\n  And 3 + 3?  \n<|im_end|>\n";
static const char *const QWEN2_PROMPT = "<|im_start|>assistant\n";

static void load_bos(void) {
    CHECK_OK(specdec_tokenizer_load(BOS_DIR, &g_bos, &g_err));
    CHECK(g_bos != NULL);
}

static void test_null_parameters(void) {
    const specdec_status NP = SPECDEC_STATUS_NULL_PARAMETER;
    specdec_chat_message m = {"user", "hi"}, no_role = {NULL, "hi"}, no_content = {"user", NULL};
    char buf[256];
    size_t len = 0, n = 0;
    uint32_t ids[8], id = 0;
    bool found = false;

    CHECK_ERR(specdec_tokenizer_apply_chat_template(NULL, &m, 1, true, buf, sizeof buf, &len, &g_err), NP, "tokenizer");
    CHECK_ERR(specdec_tokenizer_apply_chat_template(g_bos, NULL, 1, true, buf, sizeof buf, &len, &g_err), NP, "messages");
    CHECK_ERR(specdec_tokenizer_apply_chat_template(g_bos, &no_role, 1, true, buf, sizeof buf, &len, &g_err), NP, "role");
    CHECK_ERR(specdec_tokenizer_apply_chat_template(g_bos, &no_content, 1, true, buf, sizeof buf, &len, &g_err), NP, "content");
    CHECK_ERR(specdec_tokenizer_apply_chat_template(g_bos, &m, 1, true, NULL, sizeof buf, &len, &g_err), NP, "buf");
    CHECK_ERR(specdec_tokenizer_apply_chat_template(g_bos, &m, 1, true, buf, sizeof buf, NULL, &g_err), NP, "len");
    CHECK_ERR(specdec_tokenizer_set_chat_template(NULL, "x", &g_err), NP, "tokenizer");
    CHECK_ERR(specdec_tokenizer_set_chat_template(g_bos, NULL, &g_err), NP, "chat_template");
    CHECK_ERR(specdec_tokenizer_encode_ex(NULL, "a", 1, 0, ids, 8, &n, &g_err), NP, "tokenizer");
    CHECK_ERR(specdec_tokenizer_encode_ex(g_bos, "a", 1, 0, ids, 8, NULL, &g_err), NP, "n_ids");
    CHECK_ERR(specdec_tokenizer_decode_ex(NULL, ids, 0, 0, buf, sizeof buf, &len, &g_err), NP, "tokenizer");
    CHECK_ERR(specdec_tokenizer_decode_ex(g_bos, NULL, 1, 0, buf, sizeof buf, &len, &g_err), NP, "ids");
    CHECK_ERR(specdec_tokenizer_token_to_id(NULL, "a", 1, &id, &found, &g_err), NP, "tokenizer");
    CHECK_ERR(specdec_tokenizer_token_to_id(g_bos, NULL, 1, &id, &found, &g_err), NP, "token");
    CHECK_ERR(specdec_tokenizer_token_to_id(g_bos, "a", 1, NULL, &found, &g_err), NP, "id");
    CHECK_ERR(specdec_tokenizer_token_to_id(g_bos, "a", 1, &id, NULL, &g_err), NP, "found");
    CHECK_ERR(specdec_tokenizer_id_to_token(NULL, 0, buf, sizeof buf, &len, &g_err), NP, "tokenizer");
    CHECK_ERR(specdec_tokenizer_id_to_token(g_bos, 0, NULL, sizeof buf, &len, &g_err), NP, "buf");
    CHECK_ERR(specdec_tokenizer_id_to_token(g_bos, 0, buf, sizeof buf, NULL, &g_err), NP, "len");
    /* Zero messages may be NULL. */
    CHECK_OK(specdec_tokenizer_apply_chat_template(g_bos, NULL, 0, false, buf, sizeof buf, &len, &g_err));
    CHECK(len == 0 && buf[0] == '\0');
}

static void test_apply_chat_template(void) {
    specdec_chat_message hello = {"user", "Hello!"};
    specdec_tokenizer *t = NULL;
    size_t len = 0, want = strlen(HELLO_PROMPT);
    char buf[1024];
    char *small;

    /* The folder's template (tokenizer_config.json), byte for byte transformers'. */
    CHECK_OK(specdec_tokenizer_apply_chat_template(g_bos, &hello, 1, true, buf, sizeof buf, &len, &g_err));
    CHECK(len == want && strcmp(buf, HELLO_PROMPT) == 0);

    /* Capacity 0 asks for the size; length + 1 is enough, length is not. */
    len = 0;
    CHECK_ERR(specdec_tokenizer_apply_chat_template(g_bos, &hello, 1, true, NULL, 0, &len, &g_err), SPECDEC_STATUS_BUFFER_TOO_SMALL, "chat prompt");
    CHECK(len == want);
    small = malloc(want + 1);
    CHECK_ERR(specdec_tokenizer_apply_chat_template(g_bos, &hello, 1, true, small, want, &len, &g_err), SPECDEC_STATUS_BUFFER_TOO_SMALL, "chat prompt");
    CHECK_OK(specdec_tokenizer_apply_chat_template(g_bos, &hello, 1, true, small, want + 1, &len, &g_err));
    CHECK(len == want && memcmp(small, HELLO_PROMPT, want + 1) == 0);
    free(small);

    /* An explicit template overrides the folder's: multi-turn, with and without the prompt. */
    CHECK_OK(specdec_tokenizer_load(BOS_DIR, &t, &g_err));
    CHECK_OK(specdec_tokenizer_set_chat_template(t, QWEN2, &g_err));
    CHECK_OK(specdec_tokenizer_apply_chat_template(t, CONVERSATION, 4, false, buf, sizeof buf, &len, &g_err));
    CHECK(len == strlen(QWEN2_EXPECTED) && strcmp(buf, QWEN2_EXPECTED) == 0);
    CHECK_OK(specdec_tokenizer_apply_chat_template(t, CONVERSATION, 4, true, buf, sizeof buf, &len, &g_err));
    CHECK(len == strlen(QWEN2_EXPECTED) + strlen(QWEN2_PROMPT));
    CHECK(strncmp(buf, QWEN2_EXPECTED, strlen(QWEN2_EXPECTED)) == 0 && strcmp(buf + strlen(QWEN2_EXPECTED), QWEN2_PROMPT) == 0);
    /* Without a system message, Qwen2's default one. */
    CHECK_OK(specdec_tokenizer_apply_chat_template(t, &hello, 1, true, buf, sizeof buf, &len, &g_err));
    CHECK(strcmp(buf, "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHello!<|im_end|>\n<|im_start|>assistant\n") == 0);

    /* A template that does not compile is refused and the one in use stays. */
    CHECK_ERR(specdec_tokenizer_set_chat_template(t, "{% for m in messages %}", &g_err), SPECDEC_STATUS_TOKENIZER, "chat template");
    CHECK_ERR(specdec_tokenizer_set_chat_template(t, "\xe2\x82", &g_err), SPECDEC_STATUS_INVALID_UTF8, "chat_template");
    CHECK_OK(specdec_tokenizer_apply_chat_template(t, CONVERSATION, 4, false, buf, sizeof buf, &len, &g_err));
    CHECK(strcmp(buf, QWEN2_EXPECTED) == 0);

    /* raise_exception fails the render with the template's message; special tokens are the folder's. */
    CHECK_OK(specdec_tokenizer_set_chat_template(t, "{{ bos_token }}{% if messages[0].role != 'user' %}{{ raise_exception('Conversation roles must alternate') }}{% endif %}", &g_err));
    CHECK_ERR(specdec_tokenizer_apply_chat_template(t, CONVERSATION, 4, true, buf, sizeof buf, &len, &g_err), SPECDEC_STATUS_TOKENIZER, "Conversation roles must alternate");
    CHECK_OK(specdec_tokenizer_apply_chat_template(t, &hello, 1, true, buf, sizeof buf, &len, &g_err));
    CHECK(strcmp(buf, "<|endoftext|>") == 0);
    specdec_tokenizer_free(t);

    /* A tokenizer without a template (the fixture has no tokenizer_config.json). */
    CHECK_ERR(specdec_tokenizer_apply_chat_template(g_tok, &hello, 1, true, buf, sizeof buf, &len, &g_err), SPECDEC_STATUS_TOKENIZER, "no chat template");
    /* Bad UTF-8 in a message. */
    hello.content = "\xe2\x82";
    CHECK_ERR(specdec_tokenizer_apply_chat_template(g_bos, &hello, 1, true, buf, sizeof buf, &len, &g_err), SPECDEC_STATUS_INVALID_UTF8, "content");
}

static void test_special_tokens(void) {
    /* transformers: encode("def f(x):\n    return x", add_special_tokens=True/False) (tests/chat/bos/expected.json). */
    static const uint32_t WITH[] = {0, 270, 70, 293, 8, 88, 289, 278, 391, 221, 88};
    const char *text = "def f(x):\n    return x";
    uint32_t ids[128];
    size_t n = 0, len = 0;
    char buf[256];

    CHECK_OK(specdec_tokenizer_encode_ex(g_bos, text, strlen(text), SPECDEC_ENCODE_ADD_SPECIAL_TOKENS, ids, 128, &n, &g_err));
    CHECK(n == 11 && memcmp(ids, WITH, sizeof WITH) == 0);
    CHECK_OK(specdec_tokenizer_encode_ex(g_bos, text, strlen(text), 0, ids, 128, &n, &g_err));
    CHECK(n == 10 && memcmp(ids, WITH + 1, sizeof WITH - sizeof WITH[0]) == 0);
    /* The old function is flags 0. */
    CHECK_OK(specdec_tokenizer_encode(g_bos, text, strlen(text), ids, 128, &n, &g_err));
    CHECK(n == 10 && ids[0] == 270);
    CHECK_ERR(specdec_tokenizer_encode_ex(g_bos, text, strlen(text), SPECDEC_ENCODE_ADD_SPECIAL_TOKENS, ids, 10, &n, &g_err), SPECDEC_STATUS_BUFFER_TOO_SMALL, "encoding");
    CHECK(n == 11);
    CHECK_ERR(specdec_tokenizer_encode_ex(g_bos, text, strlen(text), 2, ids, 128, &n, &g_err), SPECDEC_STATUS_INVALID_ARGUMENT, "flags");

    CHECK_OK(specdec_tokenizer_decode_ex(g_bos, WITH, 11, SPECDEC_DECODE_KEEP_SPECIAL_TOKENS, buf, sizeof buf, &len, &g_err));
    CHECK(strcmp(buf, "<|endoftext|>def f(x):\n    return x") == 0 && len == strlen(buf));
    CHECK_OK(specdec_tokenizer_decode_ex(g_bos, WITH, 11, 0, buf, sizeof buf, &len, &g_err));
    CHECK(strcmp(buf, text) == 0);
    CHECK_OK(specdec_tokenizer_decode(g_bos, WITH, 11, buf, sizeof buf, &len, &g_err));
    CHECK(strcmp(buf, text) == 0);
    CHECK_ERR(specdec_tokenizer_decode_ex(g_bos, WITH, 11, 4, buf, sizeof buf, &len, &g_err), SPECDEC_STATUS_INVALID_ARGUMENT, "flags");
    ids[0] = 512;
    CHECK_ERR(specdec_tokenizer_decode_ex(g_bos, ids, 1, SPECDEC_DECODE_KEEP_SPECIAL_TOKENS, buf, sizeof buf, &len, &g_err), SPECDEC_STATUS_TOKEN_OUT_OF_RANGE, "512");

    /* The chat prompt encodes with flags 0 (the template wrote the BOS) to one BOS at the front. */
    CHECK_OK(specdec_tokenizer_encode_ex(g_bos, HELLO_PROMPT, strlen(HELLO_PROMPT), 0, ids, 128, &n, &g_err));
    CHECK(n > 2 && ids[0] == 0 && ids[1] != 0);
}

static void test_token_lookup(void) {
    uint32_t id = 99;
    bool found = false;
    size_t len = 0;
    char buf[64];

    CHECK_OK(specdec_tokenizer_token_to_id(g_bos, "<|endoftext|>", 13, &id, &found, &g_err));
    CHECK(found && id == 0);
    CHECK_OK(specdec_tokenizer_token_to_id(g_bos, "\xc4\xa0" "f", 3, &id, &found, &g_err)); /* "Ġf" */
    CHECK(found && id == 293);
    CHECK_OK(specdec_tokenizer_token_to_id(g_bos, "no such token", 13, &id, &found, &g_err));
    CHECK(!found && id == 0);
    CHECK_ERR(specdec_tokenizer_token_to_id(g_bos, "\xe2\x82", 2, &id, &found, &g_err), SPECDEC_STATUS_INVALID_UTF8, "token");

    CHECK_OK(specdec_tokenizer_id_to_token(g_bos, 293, buf, sizeof buf, &len, &g_err));
    CHECK(len == 3 && strcmp(buf, "\xc4\xa0" "f") == 0);
    CHECK_OK(specdec_tokenizer_id_to_token(g_bos, 0, buf, sizeof buf, &len, &g_err));
    CHECK(strcmp(buf, "<|endoftext|>") == 0);
    CHECK_ERR(specdec_tokenizer_id_to_token(g_bos, 0, buf, 13, &len, &g_err), SPECDEC_STATUS_BUFFER_TOO_SMALL, "token");
    CHECK(len == 13);
    CHECK_ERR(specdec_tokenizer_id_to_token(g_bos, 512, buf, sizeof buf, &len, &g_err), SPECDEC_STATUS_TOKEN_OUT_OF_RANGE, "512");
}

int main(void) {
    if (!fixtures_begin("chat")) return 2;
    CHECK_OK(specdec_tokenizer_load(FIX "llama", &g_tok, &g_err));
    RUN(load_bos);
    if (g_bos) {
        RUN(test_null_parameters);
        RUN(test_apply_chat_template);
        RUN(test_special_tokens);
        RUN(test_token_lookup);
    }
    specdec_tokenizer_free(g_bos);
    return fixtures_end();
}
