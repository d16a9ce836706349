// Tests of the C++ wrapper (bindings/cpp/specdec.hpp) against the real library and the tiny test
// models. Build and run: scripts/check-cpp.sh (or see it for the g++ line).
//
//   test_wrapper [FIXTURES_DIR]   (default models/fixtures, relative to the repository root)
//
// Prints one line per test, then exactly "N passed, M failed"; exits non-zero on any failure.

#include "specdec.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include <unistd.h>

namespace {

// ---------------------------------------------------------------------------------------------
// A minimal test harness

int g_check_failures = 0;  // failed CHECKs in the running test

#define CHECK(cond)                                                                   \
    do {                                                                              \
        if (!(cond)) {                                                                \
            std::fprintf(stderr, "    CHECK failed at %s:%d: %s\n", __FILE__, __LINE__, #cond); \
            ++g_check_failures;                                                       \
        }                                                                             \
    } while (0)

#define CHECK_EQ(a, b)                                                                          \
    do {                                                                                        \
        const auto& va_ = (a);                                                                  \
        const auto& vb_ = (b);                                                                  \
        if (!(va_ == vb_)) {                                                                    \
            std::fprintf(stderr, "    CHECK_EQ failed at %s:%d: %s == %s\n", __FILE__, __LINE__, #a, #b); \
            ++g_check_failures;                                                                 \
        }                                                                                       \
    } while (0)

// The status of the specdec::Error that `f` throws; SPECDEC_STATUS_OK if it throws nothing.
// Any other exception escapes (and fails the test).
template <class F>
specdec_status code_of(F&& f) {
    try {
        f();
    } catch (const specdec::Error& e) {
        // Every error carries a message and a name consistent with its code.
        if (std::strlen(e.what()) == 0) {
            std::fprintf(stderr, "    empty message for %s\n", e.code_name());
            ++g_check_failures;
        }
        if (std::strcmp(e.code_name(), specdec::status_name(e.code())) != 0) ++g_check_failures;
        return e.code();
    }
    return SPECDEC_STATUS_OK;
}

#define CHECK_CODE(expr, expected)                                                               \
    do {                                                                                         \
        specdec_status got_ = code_of([&] { (void)(expr); });                                   \
        if (got_ != (expected)) {                                                                \
            std::fprintf(stderr, "    CHECK_CODE failed at %s:%d: %s gave %s, expected %s\n", __FILE__, __LINE__, \
                         #expr, specdec::status_name(got_), specdec::status_name(expected));     \
            ++g_check_failures;                                                                  \
        }                                                                                        \
    } while (0)

struct TestCase {
    const char* name;
    void (*fn)();
};

std::vector<TestCase>& registry() {
    static std::vector<TestCase> tests;
    return tests;
}

struct Register {
    Register(const char* name, void (*fn)()) { registry().push_back({name, fn}); }
};

#define TEST(name)                                 \
    void test_##name();                            \
    const Register register_##name(#name, test_##name); \
    void test_##name()

// ---------------------------------------------------------------------------------------------
// Fixtures

std::string g_fixtures = "models/fixtures";

std::string fixture(const char* name) { return g_fixtures + "/" + name; }

// Loaded once, shared read-only by every test (and by threads: models are thread-safe).
struct Shared {
    specdec::Model target = specdec::Model::load(fixture("llama"));
    specdec::Model draft = specdec::Model::load(fixture("draft"));
    specdec::Tokenizer tokenizer = specdec::Tokenizer::load(fixture("llama"));
    std::vector<uint32_t> prompt = tokenizer.encode("Once upon a time, there was a little");
};

Shared& shared() {
    static Shared s;
    return s;
}

constexpr uint32_t kNewTokens = 48;

// Greedy settings without EOS, so every run generates exactly kNewTokens tokens.
specdec::GenConfig greedy(uint32_t gamma = 4) {
    return specdec::GenConfig().gamma(gamma).max_new_tokens(kNewTokens).eos_ids({});
}

std::vector<uint32_t> generated_part(const specdec::Generator& g, size_t prompt_len) {
    std::vector<uint32_t> all = g.tokens();
    return std::vector<uint32_t>(all.begin() + static_cast<std::ptrdiff_t>(prompt_len), all.end());
}

// Target-only greedy reference output for the shared prompt.
const std::vector<uint32_t>& baseline() {
    static const std::vector<uint32_t> out = [] {
        specdec::Generator g(shared().target, nullptr, greedy());
        g.append(shared().prompt);
        g.generate();
        return generated_part(g, shared().prompt.size());
    }();
    return out;
}

// Target-only, then speculative with the draft.
std::vector<const specdec::Model*> no_draft_and_draft() { return {nullptr, &shared().draft}; }

bool valid_utf8(const std::string& s) {
    size_t i = 0;
    while (i < s.size()) {
        unsigned char c = static_cast<unsigned char>(s[i]);
        size_t n = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
        if (n == 0 || i + n > s.size()) return false;
        for (size_t k = 1; k < n; ++k) {
            if ((static_cast<unsigned char>(s[i + k]) >> 6) != 0x2) return false;
        }
        i += n;
    }
    return true;
}

// Compile-time properties of the wrapper: unique ownership, cheap moves.
template <class T>
constexpr bool move_only_v = !std::is_copy_constructible_v<T> && !std::is_copy_assignable_v<T> &&
                             std::is_nothrow_move_constructible_v<T> && std::is_nothrow_move_assignable_v<T>;
static_assert(move_only_v<specdec::Model>);
static_assert(move_only_v<specdec::ModelOptions>);
static_assert(move_only_v<specdec::Tokenizer>);
static_assert(move_only_v<specdec::StreamDecoder>);
static_assert(move_only_v<specdec::GenConfig>);
static_assert(move_only_v<specdec::Generator>);
static_assert(std::is_base_of_v<std::runtime_error, specdec::Error>);

// ---------------------------------------------------------------------------------------------
// Tests

TEST(version_and_abi) {
    std::string expected = std::to_string(SPECDEC_VERSION_MAJOR) + "." + std::to_string(SPECDEC_VERSION_MINOR) + "." +
                           std::to_string(SPECDEC_VERSION_PATCH);
    CHECK_EQ(std::string(specdec::version()), expected);
    CHECK_EQ(specdec::abi_version(), static_cast<uint32_t>(SPECDEC_ABI_VERSION));
    CHECK_CODE(specdec::check_abi(), SPECDEC_STATUS_OK);
    CHECK_CODE(specdec::runtime_init(), SPECDEC_STATUS_OK);  // idempotent with the default location
}

TEST(load_models) {
    CHECK_EQ(shared().target.vocab_size(), size_t{512});
    CHECK_EQ(shared().target.context_limit(), size_t{512});
    CHECK_EQ(shared().draft.vocab_size(), size_t{512});
    CHECK_EQ(shared().tokenizer.vocab_size(), size_t{512});
    CHECK(!shared().prompt.empty());
    auto opts = specdec::ModelOptions().device("cpu").intra_threads(1);
    specdec::Model m = specdec::Model::load(fixture("qwen2"), opts);
    CHECK_EQ(m.vocab_size(), size_t{512});
    CHECK(static_cast<bool>(m));
}

TEST(greedy_target_only) {
    const auto& prompt = shared().prompt;
    specdec::Generator g(shared().target, nullptr, greedy());
    g.append(prompt);
    CHECK_EQ(g.finish_reason(), SPECDEC_FINISH_REASON_NONE);
    CHECK_EQ(g.generate(), SPECDEC_FINISH_REASON_MAX_TOKENS);
    CHECK_EQ(g.finish_reason(), SPECDEC_FINISH_REASON_MAX_TOKENS);
    std::vector<uint32_t> all = g.tokens();
    CHECK_EQ(all.size(), prompt.size() + kNewTokens);
    CHECK(std::equal(prompt.begin(), prompt.end(), all.begin()));
    CHECK_EQ(generated_part(g, prompt.size()), baseline());
    for (uint32_t t : all) CHECK(t < 512);
    // Generating again without a new prompt adds nothing.
    CHECK_EQ(g.generate(), SPECDEC_FINISH_REASON_MAX_TOKENS);
    CHECK_EQ(g.tokens().size(), all.size());
}

TEST(greedy_with_draft_default_config) {
    // Default settings (gamma 4, EOS from generation_config.json, 128 tokens): same as target-only.
    specdec::Generator plain(shared().target);
    specdec::Generator spec(shared().target, &shared().draft);
    plain.append(shared().prompt);
    spec.append(shared().prompt);
    specdec::FinishReason r1 = plain.generate();
    specdec::FinishReason r2 = spec.generate();
    CHECK_EQ(r1, r2);
    CHECK(r1 == SPECDEC_FINISH_REASON_EOS || r1 == SPECDEC_FINISH_REASON_MAX_TOKENS);
    CHECK_EQ(plain.tokens(), spec.tokens());
    CHECK(spec.stats().drafted > 0);
}

TEST(speculative_equals_target_gamma_1_to_8) {
    const auto& prompt = shared().prompt;
    for (uint32_t gamma = 1; gamma <= 8; ++gamma) {
        specdec::Generator g(shared().target, &shared().draft, greedy(gamma));
        g.append(prompt);
        CHECK_EQ(g.generate(), SPECDEC_FINISH_REASON_MAX_TOKENS);
        std::vector<uint32_t> out = generated_part(g, prompt.size());
        if (out != baseline()) {
            std::fprintf(stderr, "    gamma %u: speculative output differs from target-only\n", gamma);
            ++g_check_failures;
        }
        specdec::Stats s = g.stats();
        CHECK(s.drafted > 0);
        CHECK(s.accepted <= s.drafted);
        CHECK(s.draft_calls > 0);
    }
}

TEST(penalties_and_logit_bias) {
    // A strong bias repeats one token under greedy decoding until the frequency penalty breaks the
    // run; speculative output equals target-only; settings read back; bad values are refused.
    const auto& prompt = shared().prompt;
    auto run = [&](const specdec::Model* draft, specdec::GenConfig cfg) {
        specdec::Generator g(shared().target, draft, cfg);
        g.append(prompt);
        g.generate();
        return generated_part(g, prompt.size());
    };
    std::vector<uint32_t> biased = run(nullptr, greedy().logit_bias({{42, 30.0f}}));
    for (uint32_t t : biased) CHECK_EQ(t, 42u);
    auto penalised_cfg = [] { return greedy().logit_bias({{42, 30.0f}}).frequency_penalty(4.0f).presence_penalty(1.0f); };
    std::vector<uint32_t> penalised = run(nullptr, penalised_cfg());
    CHECK_EQ(penalised[0], 42u);
    CHECK(penalised != biased);
    CHECK_EQ(run(&shared().draft, penalised_cfg()), penalised);
    specdec::GenConfig cfg = penalised_cfg();
    CHECK_EQ(cfg.frequency_penalty(), 4.0f);
    CHECK_EQ(cfg.presence_penalty(), 1.0f);
    CHECK(cfg.logit_bias() == (std::vector<std::pair<uint32_t, float>>{{42, 30.0f}}));
    CHECK_CODE(cfg.presence_penalty(std::nanf("")), SPECDEC_STATUS_INVALID_ARGUMENT);
    CHECK_CODE(cfg.logit_bias({{1, 1.0f}, {1, 2.0f}}), SPECDEC_STATUS_INVALID_ARGUMENT);
    CHECK_EQ(cfg.logit_bias().size(), 1u);
    CHECK_CODE(specdec::Generator(shared().target, nullptr, greedy().logit_bias({{512, 1.0f}})),
               SPECDEC_STATUS_TOKEN_OUT_OF_RANGE);
}

TEST(step_equals_generate) {
    const auto& prompt = shared().prompt;
    for (const specdec::Model* draft : no_draft_and_draft()) {
        specdec::Generator g(shared().target, draft, greedy(3));
        g.append(prompt);
        std::vector<uint32_t> out;
        int steps = 0;
        while (g.finish_reason() == SPECDEC_FINISH_REASON_NONE && steps < 1000) {
            std::vector<uint32_t> chunk = g.step();
            out.insert(out.end(), chunk.begin(), chunk.end());
            ++steps;
        }
        CHECK_EQ(out, baseline());
        CHECK(g.step().empty());  // finished: nothing more
        CHECK_EQ(g.finish_reason(), SPECDEC_FINISH_REASON_MAX_TOKENS);
    }
}

bool plain_function_callback(const uint32_t* tokens, size_t n) { return tokens != nullptr && n > 0; }

TEST(callback_forms) {
    const auto& prompt = shared().prompt;
    // (pointer, size) returning bool; collects exactly the generated tokens.
    {
        specdec::Generator g(shared().target, &shared().draft, greedy());
        g.append(prompt);
        std::vector<uint32_t> seen;
        auto cb = [&](const uint32_t* t, size_t n) {
            seen.insert(seen.end(), t, t + n);
            return true;
        };
        CHECK_EQ(g.generate(cb), SPECDEC_FINISH_REASON_MAX_TOKENS);
        CHECK_EQ(seen, baseline());
    }
    // TokenSpan, void return (never stops), mutable lambda passed as a temporary.
    {
        specdec::Generator g(shared().target, &shared().draft, greedy());
        g.append(prompt);
        std::vector<uint32_t> seen;
        int calls = 0;
        CHECK_EQ(g.generate([&, local = 0](specdec::TokenSpan span) mutable {
            ++local;
            calls = local;
            for (uint32_t t : span) seen.push_back(t);
        }),
                 SPECDEC_FINISH_REASON_MAX_TOKENS);
        CHECK_EQ(seen, baseline());
        CHECK(calls > 0 && calls <= static_cast<int>(kNewTokens));
    }
    // A plain function, a function pointer, a const std::function.
    {
        specdec::Generator g(shared().target, nullptr, greedy());
        g.append(prompt);
        CHECK_EQ(g.generate(plain_function_callback), SPECDEC_FINISH_REASON_MAX_TOKENS);
        g.append({1, 2});
        bool (*fp)(const uint32_t*, size_t) = &plain_function_callback;
        CHECK_EQ(g.generate(fp), SPECDEC_FINISH_REASON_MAX_TOKENS);
        g.append({3});
        const std::function<bool(specdec::TokenSpan)> fn = [](specdec::TokenSpan s) { return !s.empty(); };
        CHECK_EQ(g.generate(fn), SPECDEC_FINISH_REASON_MAX_TOKENS);
        CHECK_EQ(g.tokens().size(), prompt.size() + 3 + 3 * kNewTokens);
    }
    // Returning false stops after that iteration.
    {
        specdec::Generator g(shared().target, &shared().draft, greedy());
        g.append(prompt);
        size_t first = 0;
        int calls = 0;
        CHECK_EQ(g.generate([&](specdec::TokenSpan s) {
            ++calls;
            first = s.size;
            return false;
        }),
                 SPECDEC_FINISH_REASON_STOPPED);
        CHECK_EQ(calls, 1);
        CHECK_EQ(g.finish_reason(), SPECDEC_FINISH_REASON_STOPPED);
        CHECK_EQ(g.tokens().size(), prompt.size() + first);
    }
}

TEST(errors_have_the_right_codes) {
    auto& sh = shared();
    // A missing model folder / tokenizer.
    CHECK_CODE(specdec::Model::load(fixture("no-such-model")), SPECDEC_STATUS_IO);
    CHECK_CODE(specdec::Tokenizer::load(fixture("no-such-model")), SPECDEC_STATUS_IO);
    // A path with a NUL byte is refused by the wrapper (the C string would be truncated).
    CHECK_CODE(specdec::Model::load(std::string_view("models\0x", 8)), SPECDEC_STATUS_INVALID_ARGUMENT);
    // A draft with another vocabulary.
    {
        specdec::Model v600 = specdec::Model::load(fixture("vocab600"));
        CHECK_EQ(v600.vocab_size(), size_t{600});
        CHECK_CODE(specdec::Generator(sh.target, &v600), SPECDEC_STATUS_VOCAB_MISMATCH);
    }
    // Token ids outside the vocabulary: all or nothing.
    {
        specdec::Generator g(sh.target, &sh.draft, greedy());
        CHECK_CODE(g.append({1, 2, 512}), SPECDEC_STATUS_TOKEN_OUT_OF_RANGE);
        CHECK(g.tokens().empty());
        CHECK_CODE(g.step(), SPECDEC_STATUS_INVALID_ARGUMENT);  // no prompt yet
        CHECK_CODE(g.generate(), SPECDEC_STATUS_INVALID_ARGUMENT);
        CHECK_CODE(sh.tokenizer.decode({512}), SPECDEC_STATUS_TOKEN_OUT_OF_RANGE);
        specdec::StreamDecoder d(sh.tokenizer);
        CHECK_CODE(d.push({600}), SPECDEC_STATUS_TOKEN_OUT_OF_RANGE);
        CHECK_CODE(specdec::Generator(sh.target, nullptr, specdec::GenConfig().eos_ids({512})),
                   SPECDEC_STATUS_TOKEN_OUT_OF_RANGE);
    }
    // Context limit: 512 prompt tokens leave no room for one generated token.
    {
        specdec::Generator g(sh.target, nullptr, greedy());
        std::vector<uint32_t> long_prompt(512, 5);
        CHECK_CODE(g.append(long_prompt), SPECDEC_STATUS_CONTEXT_LIMIT);
        long_prompt.resize(511);
        CHECK_CODE(g.append(long_prompt), SPECDEC_STATUS_OK);
    }
    // Settings out of range; the old value is kept and the config stays usable.
    {
        specdec::GenConfig cfg;
        CHECK_CODE(cfg.gamma(0), SPECDEC_STATUS_INVALID_ARGUMENT);
        CHECK_CODE(cfg.gamma(SPECDEC_MAX_GAMMA + 1), SPECDEC_STATUS_INVALID_ARGUMENT);
        CHECK_CODE(cfg.gamma(SPECDEC_MAX_GAMMA), SPECDEC_STATUS_OK);
        CHECK_CODE(cfg.temperature(-1.0f), SPECDEC_STATUS_INVALID_ARGUMENT);
        CHECK_CODE(cfg.temperature(std::nanf("")), SPECDEC_STATUS_INVALID_ARGUMENT);
        CHECK_CODE(cfg.top_p(0.0f), SPECDEC_STATUS_INVALID_ARGUMENT);
        CHECK_CODE(cfg.min_p(1.5f), SPECDEC_STATUS_INVALID_ARGUMENT);
        CHECK_CODE(cfg.repetition_penalty(0.0f), SPECDEC_STATUS_INVALID_ARGUMENT);
        CHECK_CODE(cfg.add_stop_tokens({}), SPECDEC_STATUS_INVALID_ARGUMENT);
        CHECK_CODE(cfg.add_stop_text(""), SPECDEC_STATUS_INVALID_ARGUMENT);
        CHECK_CODE(cfg.add_stop_text(std::string_view("a\0b", 3)), SPECDEC_STATUS_INVALID_ARGUMENT);
        CHECK_CODE(specdec::Generator(sh.target, &sh.draft, cfg), SPECDEC_STATUS_OK);
    }
    // Devices: unknown names at once, CUDA at load time where it cannot run (no GPU here).
    {
        CHECK_CODE(specdec::ModelOptions().device("tpu"), SPECDEC_STATUS_INVALID_ARGUMENT);
        specdec::ModelOptions cuda;
        cuda.device("cuda");
        CHECK_CODE(specdec::Model::load(fixture("llama"), cuda), SPECDEC_STATUS_UNAVAILABLE);
        CHECK_CODE(specdec::Model::load(fixture("llama"), specdec::ModelOptions().device("cuda:1")),
                   SPECDEC_STATUS_UNAVAILABLE);
    }
    // Text and tokenizer errors.
    {
        CHECK_CODE(sh.tokenizer.encode("bad \xff utf-8"), SPECDEC_STATUS_INVALID_UTF8);
        // A text stop sequence without a tokenizer on the generator.
        specdec::Generator g(sh.target, nullptr, greedy().add_stop_text("the"));
        g.append(sh.prompt);
        CHECK_CODE(g.generate(), SPECDEC_STATUS_INVALID_ARGUMENT);
    }
    // specdec::Error is a std::runtime_error carrying the library's message.
    try {
        specdec::Model::load(fixture("no-such-model"));
        CHECK(false);
    } catch (const std::runtime_error& e) {
        const auto* se = dynamic_cast<const specdec::Error*>(&e);
        CHECK(se != nullptr);
        CHECK(std::string(e.what()).find("no-such-model") != std::string::npos);
        CHECK_EQ(std::string(se->code_name()), std::string("SPECDEC_STATUS_IO"));
    }
}

TEST(move_semantics) {
    auto& sh = shared();
    // Model: move construction and assignment; moved-from objects are inert and destructible.
    {
        specdec::Model a = specdec::Model::load(fixture("draft"));
        specdec::Model b = std::move(a);
        CHECK(!a);  // NOLINT(bugprone-use-after-move): checking the documented moved-from state
        CHECK_EQ(a.vocab_size(), size_t{0});
        CHECK_EQ(b.vocab_size(), size_t{512});
        specdec::Model c = specdec::Model::load(fixture("llama"));
        c = std::move(b);  // frees c's old model
        CHECK(!b);
        CHECK_EQ(c.vocab_size(), size_t{512});
        // Using a moved-from model throws instead of silently meaning "no draft".
        CHECK_CODE(specdec::Generator(sh.target, &a), SPECDEC_STATUS_NULL_PARAMETER);
        CHECK_CODE(specdec::Generator(a), SPECDEC_STATUS_NULL_PARAMETER);
    }
    // GenConfig / ModelOptions.
    {
        specdec::GenConfig cfg = greedy(2);
        specdec::GenConfig cfg2(std::move(cfg));
        CHECK(!cfg);
        CHECK_CODE(cfg.gamma(3), SPECDEC_STATUS_NULL_PARAMETER);
        CHECK_CODE(specdec::Generator(sh.target, nullptr, cfg), SPECDEC_STATUS_NULL_PARAMETER);
        specdec::Generator g(sh.target, &sh.draft, cfg2);
        g.append(sh.prompt);
        g.generate();
        CHECK_EQ(generated_part(g, sh.prompt.size()), baseline());
        specdec::ModelOptions o;
        specdec::ModelOptions o2 = std::move(o);
        CHECK(!o);
        CHECK_CODE(specdec::Model::load(fixture("llama"), o), SPECDEC_STATUS_NULL_PARAMETER);
        CHECK_CODE(specdec::Model::load(fixture("llama"), o2), SPECDEC_STATUS_OK);
    }
    // Tokenizer / StreamDecoder.
    {
        specdec::Tokenizer t = specdec::Tokenizer::load(fixture("llama"));
        specdec::Tokenizer t2 = std::move(t);
        CHECK(!t);
        CHECK_EQ(t.vocab_size(), size_t{0});
        CHECK_CODE(t.encode("x"), SPECDEC_STATUS_NULL_PARAMETER);
        CHECK_CODE(specdec::StreamDecoder{t}, SPECDEC_STATUS_NULL_PARAMETER);
        specdec::StreamDecoder d(t2);
        specdec::StreamDecoder d2 = std::move(d);
        CHECK(!d);
        CHECK_CODE(d.push({1}), SPECDEC_STATUS_NULL_PARAMETER);
        std::string text = d2.push(t2.encode("hello")) + d2.flush();
        CHECK_EQ(text, std::string("hello"));
    }
    // Generator: moved in the middle of a sequence; a vector of generators reallocating.
    {
        specdec::Generator g(sh.target, &sh.draft, greedy());
        g.append(sh.prompt);
        specdec::Generator h = std::move(g);
        CHECK(!g);
        CHECK_CODE(g.tokens(), SPECDEC_STATUS_NULL_PARAMETER);
        CHECK_CODE(g.step(), SPECDEC_STATUS_NULL_PARAMETER);
        CHECK_CODE(g.stats(), SPECDEC_STATUS_NULL_PARAMETER);
        g.cancel();  // no-op, no crash
        CHECK_EQ(g.finish_reason(), SPECDEC_FINISH_REASON_NONE);
        h.generate();
        CHECK_EQ(generated_part(h, sh.prompt.size()), baseline());

        std::vector<specdec::Generator> many;
        for (int i = 0; i < 9; ++i) {
            many.emplace_back(sh.target, nullptr, greedy());  // growth moves the earlier ones
            many.back().append(sh.prompt);
        }
        many[0].generate();
        many[8].generate();
        CHECK_EQ(many[0].tokens(), many[8].tokens());
        g = std::move(many[3]);  // assigning into a moved-from generator
        CHECK(static_cast<bool>(g));
    }
}

TEST(generator_outlives_its_models) {
    std::optional<specdec::Generator> g;
    {
        specdec::Model target = specdec::Model::load(fixture("llama"));
        specdec::Model draft = specdec::Model::load(fixture("draft"));
        g.emplace(target, &draft, greedy(5));
    }  // both Model objects are gone; the generator keeps the models alive
    g->append(shared().prompt);
    CHECK_EQ(g->generate(), SPECDEC_FINISH_REASON_MAX_TOKENS);
    CHECK_EQ(generated_part(*g, shared().prompt.size()), baseline());
}

struct Boom {
    int id;
};

struct CustomError : std::runtime_error {
    explicit CustomError(int v) : std::runtime_error("custom"), value(v) {}
    int value;
};

TEST(callback_exception_propagates) {
    const auto& prompt = shared().prompt;
    specdec::Generator g(shared().target, &shared().draft, greedy());
    g.append(prompt);
    int calls = 0;
    size_t seen = 0;
    bool caught = false;
    try {
        g.generate([&](specdec::TokenSpan s) {
            ++calls;
            seen += s.size;
            if (calls == 2) throw Boom{42};
            return true;
        });
    } catch (const Boom& b) {
        caught = true;
        CHECK_EQ(b.id, 42);
    }
    CHECK(caught);
    CHECK_EQ(calls, 2);  // generation stopped right away: no call after the throw
    CHECK_EQ(g.finish_reason(), SPECDEC_FINISH_REASON_STOPPED);
    CHECK_EQ(g.tokens().size(), prompt.size() + seen);
    // The tokens kept are the right ones.
    std::vector<uint32_t> part = generated_part(g, prompt.size());
    CHECK(std::equal(part.begin(), part.end(), baseline().begin()));

    // Still usable: another turn, with a callback throwing a std::exception subclass.
    g.append({7, 8, 9});
    caught = false;
    try {
        g.generate([](const uint32_t*, size_t) -> bool { throw CustomError(5); });
    } catch (const specdec::Error&) {
        CHECK(false);  // must stay the caller's type, not become a specdec::Error
    } catch (const CustomError& e) {
        caught = true;
        CHECK_EQ(e.value, 5);
    }
    CHECK(caught);
    // A specdec::Error thrown by the callback keeps its own code.
    g.append({10});
    CHECK_CODE(g.generate([](specdec::TokenSpan) -> bool {
        throw specdec::Error(SPECDEC_STATUS_CONTEXT_LIMIT, "from the callback");
    }),
               SPECDEC_STATUS_CONTEXT_LIMIT);
    // And once more, normally, to the end.
    g.append({11});
    size_t n = 0;
    CHECK_EQ(g.generate([&](specdec::TokenSpan s) { n += s.size; }), SPECDEC_FINISH_REASON_MAX_TOKENS);
    CHECK_EQ(n, size_t{kNewTokens});
    CHECK(g.stats().new_tokens > kNewTokens);
}

TEST(cancel_from_another_thread) {
    const auto& prompt = shared().prompt;
    for (const specdec::Model* draft : no_draft_and_draft()) {
        specdec::Generator g(shared().target, draft, greedy());
        g.append(prompt);
        // Handshake: the first callback waits until the other thread has called cancel(), so the
        // cancellation surely lands in the middle of the generation.
        std::mutex m;
        std::condition_variable cv;
        bool started = false, cancelled = false;
        std::thread canceller([&] {
            std::unique_lock<std::mutex> lock(m);
            cv.wait(lock, [&] { return started; });
            g.cancel();  // const and thread-safe
            cancelled = true;
            cv.notify_all();
        });
        int calls = 0;
        specdec_status code = code_of([&] {
            g.generate([&](specdec::TokenSpan) {
                if (++calls == 1) {
                    std::unique_lock<std::mutex> lock(m);
                    started = true;
                    cv.notify_all();
                    cv.wait(lock, [&] { return cancelled; });
                }
                return true;
            });
        });
        canceller.join();
        CHECK_EQ(code, SPECDEC_STATUS_CANCELLED);
        CHECK_EQ(calls, 1);
        CHECK_EQ(g.finish_reason(), SPECDEC_FINISH_REASON_NONE);
        // The request was consumed: generation resumes and finishes the same sequence.
        CHECK_EQ(g.generate(), SPECDEC_FINISH_REASON_MAX_TOKENS);
        CHECK_EQ(generated_part(g, prompt.size()), baseline());
    }
    // Cancelling while no generation runs: the next iteration is cancelled...
    specdec::Generator g(shared().target, nullptr, greedy());
    g.append(prompt);
    g.cancel();
    CHECK_CODE(g.step(), SPECDEC_STATUS_CANCELLED);
    CHECK_EQ(g.step().size(), size_t{1});
    // ...unless tokens are appended first, which clears the request.
    g.cancel();
    g.append({5});
    CHECK_CODE(g.step(), SPECDEC_STATUS_OK);
}

TEST(tokenizer_round_trip) {
    const auto& tok = shared().tokenizer;
    const std::vector<std::string> texts = {
        "Once upon a time, there was a little girl named Lily.",
        "  leading spaces, tabs\tand\nnewlines  ",
        "UTF-8: caf\xc3\xa9, na\xc3\xafve, \xe2\x82\xac 5, \xe6\x97\xa5\xe6\x9c\xac, \xf0\x9f\x99\x82",
        "a",
        std::string(3000, 'x') + " long text to exercise the buffer negotiation",
    };
    for (const std::string& text : texts) {
        std::vector<uint32_t> ids = tok.encode(text);
        CHECK(!ids.empty());
        for (uint32_t id : ids) CHECK(id < tok.vocab_size());
        std::string back = tok.decode(ids);
        if (back != text) {
            std::fprintf(stderr, "    round trip differs: [%s] -> [%s]\n", text.c_str(), back.c_str());
            ++g_check_failures;
        }
        CHECK_EQ(tok.decode(ids.data(), ids.size()), back);  // pointer + size overload
    }
    CHECK(tok.encode("").empty());
    CHECK(tok.decode(std::vector<uint32_t>{}).empty());
    CHECK(tok.decode({0}).empty());  // <|endoftext|> is special: skipped
}

// ---------------------------------------------------------------------------------------------
// Chat templates and special tokens (tests/chat: transformers' renderings and ids)

// Just enough JSON for tests/chat/*.json: values keep their source text (raw) too.
struct Json {
    enum Kind { Null, Bool, Number, String, Array, Object } kind = Null;
    bool b = false;
    std::string s;                  // a String
    std::vector<std::string> keys;  // an Object's keys, in order, beside items
    std::vector<Json> items;        // an Array's elements or an Object's values
    std::string raw;

    const Json& operator[](const std::string& key) const {
        for (size_t i = 0; i < keys.size(); ++i)
            if (keys[i] == key) return items[i];
        throw std::runtime_error("no key " + key);
    }
    const Json& operator[](size_t i) const { return items.at(i); }
    std::vector<uint32_t> ids() const {
        std::vector<uint32_t> out;
        for (const Json& v : items) out.push_back(static_cast<uint32_t>(std::stoul(v.raw)));
        return out;
    }
};

struct JsonParser {
    const std::string& t;
    size_t i = 0;

    void ws() {
        while (i < t.size() && std::strchr(" \t\r\n", t[i])) ++i;
    }
    [[noreturn]] void fail() { throw std::runtime_error("bad JSON at " + std::to_string(i)); }
    static void put_utf8(std::string& o, uint32_t c) {
        if (c < 0x80) {
            o += static_cast<char>(c);
        } else if (c < 0x800) {
            o += static_cast<char>(0xC0 | (c >> 6));
            o += static_cast<char>(0x80 | (c & 0x3F));
        } else if (c < 0x10000) {
            o += static_cast<char>(0xE0 | (c >> 12));
            o += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
            o += static_cast<char>(0x80 | (c & 0x3F));
        } else {
            o += static_cast<char>(0xF0 | (c >> 18));
            o += static_cast<char>(0x80 | ((c >> 12) & 0x3F));
            o += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
            o += static_cast<char>(0x80 | (c & 0x3F));
        }
    }
    uint32_t hex4() {
        if (i + 4 > t.size()) fail();
        uint32_t c = static_cast<uint32_t>(std::stoul(t.substr(i, 4), nullptr, 16));
        i += 4;
        return c;
    }
    std::string str() {
        if (t[i] != '"') fail();
        ++i;
        std::string o;
        while (i < t.size() && t[i] != '"') {
            char c = t[i++];
            if (c != '\\') {
                o += c;
                continue;
            }
            char e = t.at(i++);
            switch (e) {
                case 'n': o += '\n'; break;
                case 't': o += '\t'; break;
                case 'r': o += '\r'; break;
                case 'b': o += '\b'; break;
                case 'f': o += '\f'; break;
                case 'u': {
                    uint32_t cp = hex4();
                    if (cp >= 0xD800 && cp < 0xDC00 && t.compare(i, 2, "\\u") == 0) {
                        i += 2;
                        cp = 0x10000 + ((cp - 0xD800) << 10) + (hex4() - 0xDC00);
                    }
                    put_utf8(o, cp);
                    break;
                }
                default: o += e;  // " \ /
            }
        }
        if (i >= t.size()) fail();
        ++i;
        return o;
    }
    Json value() {
        ws();
        if (i >= t.size()) fail();
        Json v;
        size_t start = i;
        char c = t[i];
        if (c == '{' || c == '[') {
            v.kind = c == '{' ? Json::Object : Json::Array;
            ++i;
            ws();
            char close = c == '{' ? '}' : ']';
            while (t.at(i) != close) {
                if (v.kind == Json::Object) {
                    ws();
                    v.keys.push_back(str());
                    ws();
                    if (t.at(i++) != ':') fail();
                }
                v.items.push_back(value());
                ws();
                if (t.at(i) == ',') ++i;
                ws();
            }
            ++i;
        } else if (c == '"') {
            v.kind = Json::String;
            v.s = str();
        } else if (t.compare(i, 4, "true") == 0 || t.compare(i, 5, "false") == 0) {
            v.kind = Json::Bool;
            v.b = t[i] == 't';
            i += v.b ? 4 : 5;
        } else if (t.compare(i, 4, "null") == 0) {
            i += 4;
        } else {
            v.kind = Json::Number;
            while (i < t.size() && std::strchr("+-.eE0123456789", t[i])) ++i;
            if (i == start) fail();
        }
        v.raw = t.substr(start, i - start);
        return v;
    }
};

std::string read_file(const std::filesystem::path& p) {
    std::ifstream f(p, std::ios::binary);
    if (!f) throw std::runtime_error("cannot read " + p.string());
    return std::string(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

Json load_json(const std::filesystem::path& p) {
    std::string text = read_file(p);
    JsonParser parser{text};
    return parser.value();
}

// tests/chat, beside models/fixtures.
std::filesystem::path chat_dir() { return std::filesystem::path(g_fixtures) / ".." / ".." / "tests" / "chat"; }

std::vector<specdec::ChatMessage> messages_of(const Json& conversation) {
    std::vector<specdec::ChatMessage> out;
    for (const Json& m : conversation.items) out.push_back({m["role"].s, m["content"].s});
    return out;
}

// Every tests/chat/*.json: its tokenizer_config.json beside the fixture tokenizer (as a model
// folder), every conversation with and without the generation prompt, byte for byte.
TEST(chat_templates_match_transformers) {
    namespace fs = std::filesystem;
    fs::path scratch = fs::temp_directory_path() / ("specdec-cpp-chat-" + std::to_string(::getpid()));
    int files = 0, cases = 0, errors = 0;
    for (const auto& entry : fs::directory_iterator(chat_dir())) {
        if (entry.path().extension() != ".json") continue;
        Json data = load_json(entry.path());
        fs::remove_all(scratch);
        fs::create_directories(scratch);
        fs::copy_file(fixture("llama") + "/tokenizer.json", scratch / "tokenizer.json");
        std::ofstream(scratch / "tokenizer_config.json", std::ios::binary) << data["tokenizer_config"].raw;
        specdec::Tokenizer tok = specdec::Tokenizer::load(scratch.string());
        for (const Json& c : data["cases"].items) {
            std::vector<specdec::ChatMessage> msgs = messages_of(data["conversations"][c["conversation"].s]);
            bool agp = c["add_generation_prompt"].b;
            const std::string where = entry.path().filename().string() + "/" + c["conversation"].s + (agp ? "/agp" : "");
            bool want_error = std::find(c.keys.begin(), c.keys.end(), "error") != c.keys.end();
            try {
                std::string got = tok.apply_chat_template(msgs, agp);
                if (want_error || got != c["expected"].s) {
                    std::fprintf(stderr, "    %s: got [%s]\n", where.c_str(), got.c_str());
                    ++g_check_failures;
                }
            } catch (const specdec::Error& e) {
                bool ok = want_error && e.code() == SPECDEC_STATUS_TOKENIZER &&
                          std::string(e.what()).find(c["error"].s) != std::string::npos;
                if (!ok) {
                    std::fprintf(stderr, "    %s: %s %s\n", where.c_str(), e.code_name(), e.what());
                    ++g_check_failures;
                }
                errors += ok;
            }
            ++cases;
        }
        ++files;
    }
    fs::remove_all(scratch);
    CHECK(files >= 7);
    CHECK(cases >= 42);
    CHECK(errors >= 2);  // mistral's raise_exception
}

TEST(set_chat_template_overrides_the_folders) {
    Json qwen = load_json(chat_dir() / "qwen2.json");
    const std::string bos_dir = (chat_dir() / "bos").string();
    specdec::Tokenizer tok = specdec::Tokenizer::load(bos_dir);
    std::vector<specdec::ChatMessage> msgs = messages_of(qwen["conversations"]["system_user_assistant_user"]);
    CHECK(tok.apply_chat_template(msgs, false).rfind("<|endoftext|><|start_header_id|>system", 0) == 0);
    tok.set_chat_template(qwen["tokenizer_config"]["chat_template"].s);
    int checked = 0;
    for (const Json& c : qwen["cases"].items) {
        std::vector<specdec::ChatMessage> m = messages_of(qwen["conversations"][c["conversation"].s]);
        CHECK_EQ(tok.apply_chat_template(m, c["add_generation_prompt"].b), c["expected"].s);
        ++checked;
    }
    CHECK_EQ(checked, 6);
    // A template that does not compile, or holds a NUL, is refused and the one in use stays.
    const std::string before = tok.apply_chat_template(msgs, true);
    CHECK_CODE(tok.set_chat_template("{% for m in messages %}"), SPECDEC_STATUS_TOKENIZER);
    CHECK_CODE(tok.set_chat_template(std::string("{{ 1 }}\0x", 9)), SPECDEC_STATUS_INVALID_ARGUMENT);
    CHECK_CODE(tok.set_chat_template("\xe2\x82"), SPECDEC_STATUS_INVALID_UTF8);
    CHECK_EQ(tok.apply_chat_template(msgs, true), before);
    // raise_exception's message; the special tokens stay the folder's; no messages at all.
    tok.set_chat_template("{{ bos_token }}{% if messages[0].role != 'user' %}{{ raise_exception('roles must alternate') }}{% endif %}");
    try {
        tok.apply_chat_template(msgs, true);
        CHECK(false);
    } catch (const specdec::Error& e) {
        CHECK_EQ(e.code(), SPECDEC_STATUS_TOKENIZER);
        CHECK(std::string(e.what()).find("roles must alternate") != std::string::npos);
    }
    CHECK_EQ(tok.apply_chat_template({{"user", "hi"}}, false), std::string("<|endoftext|>"));
    tok.set_chat_template("[{{ messages | length }}]");
    CHECK_EQ(tok.apply_chat_template({}, true), std::string("[0]"));
    // Bad messages: a NUL byte, invalid UTF-8. No template at all.
    CHECK_CODE(tok.apply_chat_template({{"user", std::string("a\0b", 3)}}, true), SPECDEC_STATUS_INVALID_ARGUMENT);
    CHECK_CODE(tok.apply_chat_template({{"us\xff", "hi"}}, true), SPECDEC_STATUS_INVALID_UTF8);
    CHECK_CODE(shared().tokenizer.apply_chat_template({{"user", "hi"}}, true), SPECDEC_STATUS_TOKENIZER);
    // Moved-from.
    specdec::Tokenizer moved = std::move(tok);
    CHECK_CODE(tok.apply_chat_template({}, true), SPECDEC_STATUS_NULL_PARAMETER);
    CHECK_CODE(tok.set_chat_template("x"), SPECDEC_STATUS_NULL_PARAMETER);
    CHECK_CODE(tok.encode_with("x", true), SPECDEC_STATUS_NULL_PARAMETER);
    CHECK_CODE(tok.token_to_id("x"), SPECDEC_STATUS_NULL_PARAMETER);
    CHECK_CODE(tok.id_to_token(0), SPECDEC_STATUS_NULL_PARAMETER);
}

TEST(chat_template_buffer_retry) {
    specdec::Tokenizer tok = specdec::Tokenizer::load((chat_dir() / "bos").string());
    // Far longer than the first guess (the messages' size plus a margin): the exact-size retry.
    tok.set_chat_template("{% for i in range(500) %}{{ messages[0].content }}{% endfor %}");
    std::string want;
    for (int i = 0; i < 500; ++i) want += "caf\xc3\xa9!";
    CHECK_EQ(tok.apply_chat_template({{"user", "caf\xc3\xa9!"}}, false), want);
    tok.set_chat_template("");
    CHECK_EQ(tok.apply_chat_template({{"user", "x"}}, true), std::string());
}

TEST(special_tokens_match_transformers) {
    Json exp = load_json(chat_dir() / "bos" / "expected.json");
    specdec::Tokenizer tok = specdec::Tokenizer::load((chat_dir() / "bos").string());
    const std::string text = exp["text"].s;
    const std::vector<uint32_t> with = exp["with_special_tokens"].ids();
    CHECK_EQ(with.size(), size_t{11});
    CHECK_EQ(tok.encode_with(text, true), with);
    CHECK_EQ(tok.encode_with(text, false), exp["without_special_tokens"].ids());
    CHECK_EQ(tok.encode(text), exp["without_special_tokens"].ids());
    CHECK_EQ(tok.decode_with(with, false), exp["decode_keep_special"].s);
    CHECK_EQ(tok.decode_with(with, true), exp["decode_skip_special"].s);
    CHECK_EQ(tok.decode(with), exp["decode_skip_special"].s);
    CHECK(tok.encode_with("", true) == std::vector<uint32_t>{0});
    CHECK(tok.encode_with("", false).empty());
    CHECK(tok.decode_with({}, false).empty());
    CHECK_CODE(tok.decode_with({512}, false), SPECDEC_STATUS_TOKEN_OUT_OF_RANGE);
    CHECK_CODE(tok.encode_with("bad \xff", true), SPECDEC_STATUS_INVALID_UTF8);
    // The chat prompt holds its BOS already: encode it without special tokens.
    std::string prompt = tok.apply_chat_template({{"user", "Hello!"}}, true);
    CHECK_EQ(prompt, exp["prompt"].s);
    std::vector<uint32_t> prompt_ids = tok.encode_with(prompt, false);
    CHECK_EQ(prompt_ids, exp["prompt_ids"].ids());
    CHECK_EQ(tok.decode_with(prompt_ids, false), exp["prompt_decode_keep_special"].s);
}

TEST(token_id_lookup_matches_transformers) {
    Json exp = load_json(chat_dir() / "bos" / "expected.json");
    specdec::Tokenizer tok = specdec::Tokenizer::load((chat_dir() / "bos").string());
    const Json& tokens = exp["tokens"];
    CHECK_EQ(tokens.keys.size(), size_t{4});
    for (size_t i = 0; i < tokens.keys.size(); ++i) {
        std::optional<uint32_t> id = tok.token_to_id(tokens.keys[i]);
        if (tokens.items[i].kind == Json::Null) {
            CHECK(!id.has_value());
            continue;
        }
        uint32_t want = static_cast<uint32_t>(std::stoul(tokens.items[i].raw));
        CHECK(id.has_value() && *id == want);
        CHECK_EQ(tok.id_to_token(want), tokens.keys[i]);
    }
    CHECK(!tok.token_to_id("no such token").has_value());  // not an error
    CHECK(!tok.token_to_id("").has_value());
    CHECK_CODE(tok.token_to_id("\xe2\x82"), SPECDEC_STATUS_INVALID_UTF8);
    CHECK_CODE(tok.id_to_token(static_cast<uint32_t>(tok.vocab_size())), SPECDEC_STATUS_TOKEN_OUT_OF_RANGE);
    // Tokens of 42 and of exactly 32 bytes (the first buffer holds 32 + NUL): the retry and the fit.
    std::string nl = "\xc4\x8a", sp = "\xc4\xa0";
    std::string t42 = nl, t32 = nl;
    for (int i = 0; i < 20; ++i) t42 += sp;
    for (int i = 0; i < 15; ++i) t32 += sp;
    CHECK_EQ(tok.id_to_token(389), t42);
    CHECK_EQ(tok.id_to_token(331), t32);
    CHECK(tok.token_to_id(t42) == std::optional<uint32_t>(389));
}

TEST(stream_decoder_equals_one_shot_decode) {
    const auto& tok = shared().tokenizer;
    auto check_stream = [&](const std::vector<uint32_t>& ids, size_t chunk) {
        specdec::StreamDecoder d(tok);
        std::string streamed;
        for (size_t i = 0; i < ids.size(); i += chunk) {
            size_t n = std::min(chunk, ids.size() - i);
            std::string piece = d.push(ids.data() + i, n);
            CHECK(valid_utf8(piece));  // never a partial character
            streamed += piece;
        }
        streamed += d.flush();
        std::string whole = tok.decode(ids);
        if (streamed != whole) {
            std::fprintf(stderr, "    stream (chunk %zu) [%s] != decode [%s]\n", chunk, streamed.c_str(), whole.c_str());
            ++g_check_failures;
        }
    };
    // Generated tokens, one at a time and in chunks; and multi-byte text split across tokens.
    std::vector<uint32_t> gen = shared().prompt;
    gen.insert(gen.end(), baseline().begin(), baseline().end());
    for (size_t chunk : {1, 2, 5, 1000}) check_stream(gen, chunk);
    std::vector<uint32_t> unicode = tok.encode("caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x99\x82 na\xc3\xafve \xe2\x82\xac");
    for (size_t chunk : {1, 3}) check_stream(unicode, chunk);

    // Streaming inside a generate() callback, as an application would.
    specdec::Generator g(shared().target, &shared().draft, greedy());
    g.append(shared().prompt);
    specdec::StreamDecoder d(tok);
    std::string streamed;
    g.generate([&](specdec::TokenSpan s) {
        streamed += d.push(s);
        return true;
    });
    streamed += d.flush();
    CHECK_EQ(streamed, tok.decode(baseline()));
}

TEST(stats_are_sane) {
    const auto& prompt = shared().prompt;
    // Target-only: one token per round, no draft work.
    {
        specdec::Generator g(shared().target, nullptr, greedy());
        specdec::Stats s0 = g.stats();
        CHECK_EQ(s0.struct_size, sizeof(specdec::Stats));
        CHECK_EQ(s0.new_tokens, uint64_t{0});
        g.append(prompt);
        g.generate();
        specdec::Stats s = g.stats();
        CHECK_EQ(s.struct_size, sizeof(specdec::Stats));
        CHECK_EQ(s.new_tokens, uint64_t{kNewTokens});
        CHECK_EQ(s.draft_calls, uint64_t{0});
        CHECK_EQ(s.drafted, uint64_t{0});
        CHECK_EQ(s.accepted, uint64_t{0});
        CHECK_EQ(s.acceptance_rate, 0.0);
        CHECK_EQ(s.rounds, uint64_t{kNewTokens});
        CHECK(s.target_calls >= s.rounds);
        CHECK(std::fabs(s.tokens_per_target_call - 1.0) < 1e-9);
        CHECK_EQ(s.draft_seconds, 0.0);
        CHECK(s.target_seconds > 0.0 && s.total_seconds >= s.target_seconds);
        CHECK(s.other_seconds >= 0.0);
    }
    // Speculative: fewer rounds than tokens unless nothing is accepted; consistent ratios.
    {
        specdec::Generator g(shared().target, &shared().draft, greedy(4));
        g.append(prompt);
        g.generate();
        specdec::Stats s = g.stats();
        CHECK_EQ(s.new_tokens, uint64_t{kNewTokens});
        CHECK(s.drafted > 0 && s.accepted <= s.drafted);
        CHECK(s.rounds > 0 && s.rounds <= s.new_tokens);
        CHECK(s.drafted <= 4 * s.rounds);
        CHECK(s.new_tokens <= s.accepted + s.rounds);  // each round adds accepted + one token
        CHECK(std::fabs(s.acceptance_rate - static_cast<double>(s.accepted) / static_cast<double>(s.drafted)) < 1e-9);
        CHECK(std::fabs(s.tokens_per_target_call - static_cast<double>(s.new_tokens) / static_cast<double>(s.rounds)) <
              1e-9);
        CHECK(s.acceptance_rate >= 0.0 && s.acceptance_rate <= 1.0);
        CHECK(s.draft_calls > 0 && s.target_calls >= s.rounds);
        CHECK(s.draft_seconds > 0.0 && s.target_seconds > 0.0);
        CHECK(s.total_seconds + 1e-9 >= s.draft_seconds + s.target_seconds);
        // Cumulative over prompts.
        g.append({3, 4});
        g.generate();
        specdec::Stats s2 = g.stats();
        CHECK_EQ(s2.new_tokens, uint64_t{2 * kNewTokens});
        CHECK(s2.rounds > s.rounds && s2.total_seconds >= s.total_seconds);
    }
}

TEST(stop_sequences) {
    const auto& prompt = shared().prompt;
    const auto& base = baseline();
    // Stop tokens: the pair at generated positions 10..11 (generation ends at its first occurrence).
    std::vector<uint32_t> stop(base.begin() + 10, base.begin() + 12);
    for (const specdec::Model* draft : no_draft_and_draft()) {
        specdec::Generator g(shared().target, draft, greedy().add_stop_tokens(stop));
        g.append(prompt);
        CHECK_EQ(g.generate(), SPECDEC_FINISH_REASON_STOP_SEQUENCE);
        std::vector<uint32_t> out = generated_part(g, prompt.size());
        CHECK(out.size() >= 2 && out.size() <= 12);
        CHECK(std::equal(out.begin(), out.end(), base.begin()));
        CHECK(std::equal(stop.begin(), stop.end(), out.end() - 2));
    }
    // Stop text (needs the tokenizer on the generator).
    std::string text = shared().tokenizer.decode(std::vector<uint32_t>(base.begin(), base.begin() + 20));
    std::string stop_text = text.substr(text.size() / 2, 3);
    if (stop_text.find_first_not_of(' ') == std::string::npos) stop_text = text.substr(0, 3);
    {
        specdec::Generator g(shared().target, &shared().draft, greedy().add_stop_text(stop_text));
        g.set_tokenizer(shared().tokenizer);
        g.append(prompt);
        CHECK_EQ(g.generate(), SPECDEC_FINISH_REASON_STOP_SEQUENCE);
        std::vector<uint32_t> out = generated_part(g, prompt.size());
        CHECK(out.size() <= 20);
        CHECK(std::equal(out.begin(), out.end(), base.begin()));
        CHECK(shared().tokenizer.decode(out).find(stop_text) != std::string::npos);
    }
    // clear_stops removes both kinds.
    {
        specdec::Generator g(shared().target, &shared().draft,
                             greedy().add_stop_tokens(stop).add_stop_text(stop_text).clear_stops());
        g.append(prompt);
        CHECK_EQ(g.generate(), SPECDEC_FINISH_REASON_MAX_TOKENS);
        CHECK_EQ(generated_part(g, prompt.size()), base);
    }
}

TEST(eos_and_limits) {
    const auto& prompt = shared().prompt;
    const auto& base = baseline();
    // An EOS id taken from the reference output: generation ends at its first occurrence.
    uint32_t eos = base[5];
    size_t first = 0;
    while (base[first] != eos) ++first;
    specdec::Generator g(shared().target, &shared().draft, greedy().eos_ids({eos}));
    g.append(prompt);
    CHECK_EQ(g.generate(), SPECDEC_FINISH_REASON_EOS);
    CHECK_EQ(generated_part(g, prompt.size()), std::vector<uint32_t>(base.begin(), base.begin() + first + 1));
    // default_eos_ids() gives back generation_config.json's EOS (as a fresh config would).
    specdec::Generator a(shared().target, nullptr, specdec::GenConfig().max_new_tokens(64).eos_ids({eos}).default_eos_ids());
    specdec::Generator b(shared().target, nullptr, specdec::GenConfig().max_new_tokens(64));
    a.append(prompt);
    b.append(prompt);
    CHECK_EQ(a.generate(), b.generate());
    CHECK_EQ(a.tokens(), b.tokens());
    // max_new_tokens 0 generates nothing.
    specdec::Generator z(shared().target, &shared().draft, greedy().max_new_tokens(0));
    z.append(prompt);
    CHECK_EQ(z.generate(), SPECDEC_FINISH_REASON_MAX_TOKENS);
    CHECK_EQ(z.tokens().size(), prompt.size());
}

TEST(eos_list_empty_versus_default) {
    // A copy of the llama fixture whose generation_config.json names a token the reference output
    // contains, so the default EOS really triggers; an explicitly empty list must then mean "no
    // EOS" (not "default": the C call reads a NULL array as default, and an empty vector's data()
    // may be NULL).
    namespace fs = std::filesystem;
    const auto& prompt = shared().prompt;
    const auto& base = baseline();
    const uint32_t eos = base[5];
    size_t first = 0;
    while (base[first] != eos) ++first;
    fs::path dir = fs::temp_directory_path() / ("specdec-cpp-test-" + std::to_string(std::chrono::steady_clock::now().time_since_epoch().count()));
    fs::create_directories(dir);
    fs::copy_file(fixture("llama") + "/model.onnx", dir / "model.onnx");
    fs::copy_file(fixture("llama") + "/config.json", dir / "config.json");
    std::ofstream(dir / "generation_config.json") << "{\"eos_token_id\": " << eos << "}\n";
    try {
        specdec::Model m = specdec::Model::load(dir.string());
        auto run = [&](const specdec::GenConfig& cfg, specdec::FinishReason expected, size_t n) {
            specdec::Generator g(m, &shared().draft, cfg);
            g.append(prompt);
            CHECK_EQ(g.generate(), expected);
            CHECK_EQ(generated_part(g, prompt.size()), std::vector<uint32_t>(base.begin(), base.begin() + static_cast<std::ptrdiff_t>(n)));
        };
        auto cfg = [] { return specdec::GenConfig().max_new_tokens(kNewTokens); };
        run(cfg(), SPECDEC_FINISH_REASON_EOS, first + 1);                          // the default
        run(cfg().eos_ids({}), SPECDEC_FINISH_REASON_MAX_TOKENS, kNewTokens);      // none at all
        run(cfg().eos_ids(std::vector<uint32_t>{}), SPECDEC_FINISH_REASON_MAX_TOKENS, kNewTokens);
        run(cfg().eos_ids({}).default_eos_ids(), SPECDEC_FINISH_REASON_EOS, first + 1);
    } catch (...) {
        fs::remove_all(dir);
        throw;
    }
    fs::remove_all(dir);
}

TEST(sampling_is_reproducible) {
    auto cfg = [](uint64_t seed) {
        return greedy(3).temperature(0.9f).top_k(50).top_p(0.95f).min_p(0.01f).repetition_penalty(1.1f).seed(seed);
    };
    auto run = [&](const specdec::Model* draft, uint64_t seed) {
        specdec::Generator g(shared().target, draft, cfg(seed));
        g.append(shared().prompt);
        g.generate();
        return g.tokens();
    };
    CHECK_EQ(run(nullptr, 1), run(nullptr, 1));
    CHECK_EQ(run(&shared().draft, 7), run(&shared().draft, 7));
    CHECK(run(&shared().draft, 7) != run(&shared().draft, 8));
}

TEST(model_shared_across_threads) {
    // One const Model used by generators on four threads at once.
    std::vector<std::vector<uint32_t>> outs(4);
    std::vector<std::string> errors(4);
    std::vector<std::thread> threads;
    for (size_t i = 0; i < outs.size(); ++i) {
        threads.emplace_back([&, i] {
            try {
                specdec::Generator g(shared().target, i % 2 ? &shared().draft : nullptr, greedy(static_cast<uint32_t>(i + 1)));
                g.append(shared().prompt);
                g.generate();
                outs[i] = generated_part(g, shared().prompt.size());
            } catch (const std::exception& e) {
                errors[i] = e.what();
            }
        });
    }
    for (auto& t : threads) t.join();
    for (size_t i = 0; i < outs.size(); ++i) {
        CHECK(errors[i].empty());
        CHECK_EQ(outs[i], baseline());
    }
}


// ---------------------------------------------------------------------------------------------
// Drafters, policies, model options

static_assert(move_only_v<specdec::Drafter>);

// A DraftCallback proposing the target's own greedy continuation (baseline()) of the prompt.
class Oracle : public specdec::DraftCallback {
public:
    size_t propose(const specdec::DraftRequest& req) override {
        calls.fetch_add(1);
        const auto& prompt = shared().prompt;
        const auto& ref = baseline();
        if (req.tokens.size < prompt.size() || !std::equal(prompt.begin(), prompt.end(), req.tokens.begin())) {
            throw std::runtime_error("the sequence does not start with the prompt");
        }
        size_t pos = req.tokens.size - prompt.size();
        size_t n = 0;
        for (; n < req.max_proposals && pos + n < ref.size(); ++n) {
            req.proposals[n] = ref[pos + n];
            if (float* row = req.prob_row(n)) {
                std::fill(row, row + req.vocab_size, 0.0f);
                row[req.proposals[n]] = 1.0f;
            }
        }
        return n;
    }
    std::atomic<int> calls{0};
};

// Writes a count file of the baseline (unigram lines, and bigram lines for order 2).
std::string write_counts(specdec::CountsOrder order) {
    const auto& ref = baseline();
    std::string path = (std::filesystem::temp_directory_path() /
                        ("specdec-cpp-counts-" + std::to_string(static_cast<int>(order)) + ".txt"))
                           .string();
    std::ofstream f(path);
    f << "# counts of the reference\n";
    for (uint32_t id : ref) f << id << " 1\n";  // repeated lines add up
    if (order == specdec::CountsOrder::Bigram) {
        for (size_t i = 1; i < ref.size(); ++i) f << ref[i - 1] << " " << ref[i] << " 1\n";
    }
    return path;
}

std::vector<uint32_t> run_drafter(const specdec::Drafter& d, const specdec::GenConfig& cfg, specdec_stats* stats = nullptr) {
    specdec::Generator g(shared().target, d, cfg);
    g.append(shared().prompt);
    g.generate();
    if (stats) *stats = g.stats();
    return generated_part(g, shared().prompt.size());
}

TEST(drafters_keep_greedy_exact) {
    using specdec::CountsOrder;
    using specdec::Drafter;
    struct Source {
        const char* name;
        std::function<Drafter()> make;
    };
    std::vector<Source> sources = {
        {"model", [] { return Drafter::model(shared().draft); }},
        {"ngram 1-4", [] { return Drafter::ngram(1, 4, 8); }},
        {"ngram 2-2", [] { return Drafter::ngram(2, 2, 3); }},
        {"unigram learnt", [] { return Drafter::counts(CountsOrder::Unigram); }},
        {"bigram learnt", [] { return Drafter::counts(CountsOrder::Bigram); }},
        {"unigram file", [] { return Drafter::counts(CountsOrder::Unigram, write_counts(CountsOrder::Unigram)); }},
        {"bigram file", [] { return Drafter::counts(CountsOrder::Bigram, write_counts(CountsOrder::Bigram)); }},
        {"callback", [] { return Drafter::callback(std::make_shared<Oracle>()); }},
        {"callback with probabilities", [] { return Drafter::callback(std::make_shared<Oracle>(), true); }},
        {"callback function", [] {
             auto oracle = std::make_shared<Oracle>();
             return Drafter::callback([oracle](const specdec::DraftRequest& r) { return oracle->propose(r); });
         }},
    };
    for (const Source& src : sources) {
        Drafter d = src.make();
        CHECK(static_cast<bool>(d));
        specdec_stats st{};
        std::vector<uint32_t> out = run_drafter(d, greedy(4), &st);
        if (out != baseline()) std::fprintf(stderr, "    %s: output differs from target-only greedy\n", src.name);
        CHECK(out == baseline());
        CHECK_EQ(st.new_tokens, uint64_t{kNewTokens});
        CHECK(st.accepted <= st.drafted);
        CHECK(st.alpha >= 0.0 && st.alpha <= 1.0);
        if (std::string(src.name).rfind("callback", 0) == 0) {
            // The oracle proposes exactly the target's continuation: everything is accepted.
            CHECK(st.drafted > 0);
            CHECK(st.acceptance_rate > 0.99);
            CHECK_EQ(st.rejected, uint64_t{0});
            CHECK(st.alpha > 0.99);
            CHECK(st.tokens_per_target_call > 3.0);
        }
    }
    // The model drafter is Generator(target, &draft): the same tokens when sampling, too.
    auto sampled = specdec::GenConfig().temperature(1.0f).seed(5).max_new_tokens(kNewTokens).eos_ids({});
    specdec::Generator g(shared().target, &shared().draft, sampled);
    g.append(shared().prompt);
    g.generate();
    CHECK(run_drafter(Drafter::model(shared().draft), sampled) == generated_part(g, shared().prompt.size()));
}

TEST(drafter_errors) {
    using specdec::CountsOrder;
    using specdec::Drafter;
    CHECK_CODE(Drafter::ngram(0, 2, 4), SPECDEC_STATUS_INVALID_ARGUMENT);
    CHECK_CODE(Drafter::ngram(3, 2, 4), SPECDEC_STATUS_INVALID_ARGUMENT);
    CHECK_CODE(Drafter::ngram(1, 2, SPECDEC_MAX_GAMMA + 1), SPECDEC_STATUS_INVALID_ARGUMENT);
    CHECK_CODE(Drafter::counts(static_cast<CountsOrder>(3)), SPECDEC_STATUS_INVALID_ARGUMENT);
    CHECK_CODE(Drafter::counts(CountsOrder::Unigram, "/no/such/counts.txt"), SPECDEC_STATUS_IO);
    CHECK_CODE(Drafter::counts(CountsOrder::Unigram, std::string("a\0b", 3)), SPECDEC_STATUS_INVALID_ARGUMENT);
    CHECK_CODE(Drafter::callback(std::shared_ptr<specdec::DraftCallback>()), SPECDEC_STATUS_NULL_PARAMETER);
    CHECK_CODE(Drafter::callback(specdec::DraftFunction()), SPECDEC_STATUS_NULL_PARAMETER);
    specdec::Model moved = specdec::Model::load(fixture("draft"));
    specdec::Model other = std::move(moved);
    CHECK_CODE(Drafter::model(moved), SPECDEC_STATUS_NULL_PARAMETER);
    // A draft with another vocabulary is refused when the generator is made.
    specdec::Model v600 = specdec::Model::load(fixture("vocab600"));
    Drafter d600 = Drafter::model(v600);
    CHECK_CODE(specdec::Generator(shared().target, d600), SPECDEC_STATUS_VOCAB_MISMATCH);
    // A moved-from drafter is refused rather than read as "no drafter".
    Drafter d = Drafter::ngram(1, 2, 4);
    Drafter d2 = std::move(d);
    CHECK(!d && d2);
    CHECK_CODE(specdec::Generator(shared().target, d), SPECDEC_STATUS_NULL_PARAMETER);
    CHECK_CODE(specdec::Generator(shared().target, d2, specdec::GenConfig().gamma(3)), SPECDEC_STATUS_OK);
}

struct DraftBoom : std::runtime_error {
    DraftBoom() : std::runtime_error("draft boom") {}
};

TEST(callback_drafter_failures) {
    const auto& prompt = shared().prompt;
    Oracle oracle;
    enum class Mode { Throw, ThrowInt, TooMany, OutOfRange, Reentrant } mode = Mode::Throw;
    int calls = 0;
    specdec::Generator* current = nullptr;
    specdec_status reentrant_code = SPECDEC_STATUS_OK;
    specdec::Drafter d = specdec::Drafter::callback([&](const specdec::DraftRequest& req) -> size_t {
        if (++calls != 3) return oracle.propose(req);
        switch (mode) {
            case Mode::Throw: throw DraftBoom();
            case Mode::ThrowInt: throw 42;
            case Mode::TooMany: return req.max_proposals + 1;
            case Mode::OutOfRange: req.proposals[0] = 1u << 20; return 1;
            case Mode::Reentrant:
                reentrant_code = code_of([&] { current->step(); });  // the generator is busy
                current->cancel();                                  // allowed: cancels the next iteration
                return oracle.propose(req);
        }
        return 0;
    });
    struct Case {
        Mode mode;
        specdec_status expected;
    };
    for (Case c : {Case{Mode::Throw, SPECDEC_STATUS_CALLBACK}, Case{Mode::ThrowInt, SPECDEC_STATUS_CALLBACK},
                   Case{Mode::TooMany, SPECDEC_STATUS_INVALID_ARGUMENT},
                   Case{Mode::OutOfRange, SPECDEC_STATUS_TOKEN_OUT_OF_RANGE},
                   Case{Mode::Reentrant, SPECDEC_STATUS_CANCELLED}}) {
        mode = c.mode;
        calls = 0;
        specdec::Generator g(shared().target, d, greedy(3));
        current = &g;
        g.append(prompt);
        specdec_status got = SPECDEC_STATUS_OK;
        for (int i = 0; i < 3 && got == SPECDEC_STATUS_OK; ++i) {
            try {
                g.step();
            } catch (const specdec::Error& e) {
                got = e.code();
                if (c.mode == Mode::Throw) {
                    // The callback's exception is nested in the specdec::Error, and named in its message.
                    CHECK(std::string(e.what()).find("draft boom") != std::string::npos);
                    bool nested = false;
                    try {
                        std::rethrow_if_nested(e);
                    } catch (const DraftBoom&) {
                        nested = true;
                    }
                    CHECK(nested);
                }
            }
        }
        if (c.mode == Mode::Reentrant) {
            CHECK_EQ(reentrant_code, SPECDEC_STATUS_BUSY);
            CHECK_CODE(g.step(), SPECDEC_STATUS_CANCELLED);
        } else {
            CHECK_EQ(got, c.expected);
        }
        // The generator goes on, exactly.
        CHECK_EQ(g.generate(), SPECDEC_FINISH_REASON_MAX_TOKENS);
        CHECK(generated_part(g, prompt.size()) == baseline());
    }
    // With generate() (one C call) and its token callback, too.
    mode = Mode::Throw;
    calls = 0;
    specdec::Generator g(shared().target, d, greedy(3));
    g.append(prompt);
    CHECK_CODE(g.generate([](specdec::TokenSpan) {}), SPECDEC_STATUS_CALLBACK);
    CHECK_EQ(g.generate(), SPECDEC_FINISH_REASON_MAX_TOKENS);
    CHECK(generated_part(g, prompt.size()) == baseline());
    // Probabilities that are not a distribution.
    specdec::Drafter bad = specdec::Drafter::callback(
        [](const specdec::DraftRequest& req) -> size_t {
            req.proposals[0] = 1;
            std::fill(req.prob_row(0), req.prob_row(0) + req.vocab_size, 0.0f);
            return 1;
        },
        true);
    specdec::Generator gb(shared().target, bad, greedy());
    gb.append(prompt);
    CHECK_CODE(gb.step(), SPECDEC_STATUS_INVALID_ARGUMENT);
}

TEST(callback_drafter_lifetime_and_threads) {
    const auto& prompt = shared().prompt;
    auto oracle = std::make_shared<Oracle>();
    std::weak_ptr<Oracle> watch = oracle;
    std::optional<specdec::Generator> g;
    {
        specdec::Drafter d = specdec::Drafter::callback(oracle);
        oracle.reset();
        g.emplace(shared().target, d, greedy());
    }  // the Drafter is gone; the generator keeps the callback alive
    CHECK(!watch.expired());
    g->append(prompt);
    g->generate();
    CHECK(generated_part(*g, prompt.size()) == baseline());
    specdec::Generator moved = std::move(*g);
    g.reset();
    CHECK(!watch.expired());
    moved = specdec::Generator(shared().target);
    CHECK(watch.expired());

    // One callback drafter shared by generators on four threads.
    auto shared_oracle = std::make_shared<Oracle>();
    specdec::Drafter d = specdec::Drafter::callback(shared_oracle);
    std::vector<std::vector<uint32_t>> outs(4);
    std::vector<std::string> errors(4);
    std::vector<std::thread> threads;
    for (size_t i = 0; i < outs.size(); ++i) {
        threads.emplace_back([&, i] {
            try {
                for (int k = 0; k < 3; ++k) outs[i] = run_drafter(d, greedy(static_cast<uint32_t>(i + 2)));
            } catch (const std::exception& e) {
                errors[i] = e.what();
            }
        });
    }
    for (auto& t : threads) t.join();
    for (size_t i = 0; i < outs.size(); ++i) {
        CHECK(errors[i].empty());
        CHECK(outs[i] == baseline());
    }
    CHECK(shared_oracle->calls.load() > 0);
}

TEST(draft_policies) {
    using specdec::DraftPolicy;
    specdec::Drafter model = specdec::Drafter::model(shared().draft);
    specdec::Drafter ngram = specdec::Drafter::ngram(1, 4, 8);
    for (DraftPolicy p : {DraftPolicy::Fixed, DraftPolicy::Heuristic, DraftPolicy::Auto}) {
        for (const specdec::Drafter* d : {&model, &ngram}) {
            for (float conf : {0.0f, 0.3f}) {
                specdec_stats st{};
                CHECK(run_drafter(*d, greedy(3).draft_policy(p).confidence_stop(conf), &st) == baseline());
                CHECK_EQ(st.new_tokens, uint64_t{kNewTokens});
            }
        }
        // With a draft model through the other constructor too.
        specdec::Generator g(shared().target, &shared().draft, greedy(3).draft_policy(p));
        g.append(shared().prompt);
        g.generate();
        CHECK(generated_part(g, shared().prompt.size()) == baseline());
    }
    CHECK_CODE(specdec::GenConfig().draft_policy(static_cast<DraftPolicy>(9)), SPECDEC_STATUS_INVALID_ARGUMENT);
    CHECK_CODE(specdec::GenConfig().confidence_stop(-0.1f), SPECDEC_STATUS_INVALID_ARGUMENT);
    CHECK_CODE(specdec::GenConfig().confidence_stop(1.5f), SPECDEC_STATUS_INVALID_ARGUMENT);
}

TEST(kv_memory_limit) {
    specdec::Generator g(shared().target, &shared().draft, greedy().kv_memory_limit(1024));
    CHECK_CODE(g.append(shared().prompt), SPECDEC_STATUS_MEMORY_BUDGET);
    CHECK(g.tokens().empty());
    specdec::Generator big(shared().target, &shared().draft, greedy().kv_memory_limit(uint64_t{1} << 30));
    big.append(shared().prompt);
    big.generate();
    CHECK(generated_part(big, shared().prompt.size()) == baseline());
}

TEST(model_variants) {
    std::string community = g_fixtures + "/../community/llama";
    // Without a variant a folder with several is refused, naming them.
    try {
        specdec::Model::load(community);
        CHECK(false);
    } catch (const specdec::Error& e) {
        CHECK_EQ(e.code(), SPECDEC_STATUS_INVALID_ARGUMENT);
        std::string msg = e.what();
        CHECK(msg.find("q4") != std::string::npos);
        CHECK(msg.find("fp16") != std::string::npos);
    }
    CHECK_CODE(specdec::Model::load(community, specdec::ModelOptions().variant("bogus")), SPECDEC_STATUS_IO);
    CHECK_CODE(specdec::ModelOptions().variant(std::string("q\0", 2)), SPECDEC_STATUS_INVALID_ARGUMENT);
    for (const char* v : {"default", "q4", "fp16"}) {
        specdec::Model m = specdec::Model::load(community, specdec::ModelOptions().variant(v));
        CHECK_EQ(m.vocab_size(), size_t{512});
        CHECK_EQ(m.cuda_device(), -1);
        specdec::Generator g(m, nullptr, specdec::GenConfig().max_new_tokens(12).eos_ids({}));
        g.append(shared().prompt);
        CHECK_EQ(g.generate(), SPECDEC_FINISH_REASON_MAX_TOKENS);
        CHECK_EQ(g.tokens().size(), shared().prompt.size() + 12);
    }
}

TEST(model_session_options) {
    using specdec::ModelOptions;
    std::vector<ModelOptions> variants;
    variants.push_back(ModelOptions().io_binding(true));
    variants.push_back(ModelOptions().io_binding(false).spinning(false));
    variants.push_back(ModelOptions().optimization_level(0));
    variants.push_back(ModelOptions().optimization_level(1).spinning(true).intra_threads(1));
    variants.push_back(ModelOptions().device("cpu").cuda_fallback(false).io_binding(true).optimization_level(3));
    // Device reductions on the CPU: only each row's argmax reaches the host, the same output.
    variants.push_back(ModelOptions().device_reductions(true));
    variants.push_back(ModelOptions().device_reductions(false).io_binding(true));
    for (const ModelOptions& o : variants) {
        specdec::Model m = specdec::Model::load(fixture("llama"), o);
        CHECK_EQ(m.cuda_device(), -1);
        specdec::Generator g(m, nullptr, greedy());
        g.append(shared().prompt);
        g.generate();
        CHECK(generated_part(g, shared().prompt.size()) == baseline());
    }
    CHECK_CODE(ModelOptions().optimization_level(4), SPECDEC_STATUS_INVALID_ARGUMENT);
    CHECK_EQ(shared().target.cuda_device(), -1);
    // CUDA fails loudly where it cannot run, unless the CPU fallback is allowed.
    try {
        specdec::Model m = specdec::Model::load(fixture("draft"), ModelOptions().device("cuda:0"));
        CHECK_EQ(m.cuda_device(), 0);
    } catch (const specdec::Error& e) {
        CHECK_EQ(e.code(), SPECDEC_STATUS_UNAVAILABLE);
        specdec::Model fb = specdec::Model::load(fixture("draft"), ModelOptions().device("cuda:0").cuda_fallback(true));
        CHECK_EQ(fb.cuda_device(), -1);
    }
}

TEST(clear_cancel_and_adopt) {
    specdec::Generator g(shared().target, &shared().draft, greedy());
    g.append(shared().prompt);
    g.cancel();
    g.clear_cancel();  // withdrawn before any iteration consumed it
    CHECK(!g.step().empty());
    g.cancel();
    CHECK_CODE(g.step(), SPECDEC_STATUS_CANCELLED);
    CHECK(!g.step().empty());
    specdec::Generator moved = std::move(g);
    g.clear_cancel();  // moved-from: a no-op
    // A generator made with the C API, adopted by the wrapper.
    specdec::Drafter d = specdec::Drafter::ngram(1, 4, 8);
    specdec_generator* raw = nullptr;
    CHECK_EQ(specdec_generator_new_with_drafter(shared().target.get(), d.get(), greedy().get(), &raw, nullptr),
             SPECDEC_STATUS_OK);
    specdec::Generator adopted = specdec::Generator::adopt(raw);
    adopted.append(shared().prompt);
    adopted.generate();
    CHECK(generated_part(adopted, shared().prompt.size()) == baseline());
}

// ---------------------------------------------------------------------------------------------
// The embedder API

std::vector<uint32_t> run_all(specdec::Generator& g) {
    g.generate();
    return g.tokens();
}

std::string read_file(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

TEST(embedder_logprobs_match_target_only) {
    auto cfg = [] { return specdec::GenConfig().max_new_tokens(16).gamma(4).eos_ids({}); };
    specdec::Generator plain(shared().target, &shared().draft, cfg());
    plain.append(shared().prompt);
    specdec::Generator base(shared().target, nullptr, cfg().logprobs(5));
    base.append(shared().prompt);
    specdec::Generator spec(shared().target, &shared().draft, cfg().logprobs(5));
    spec.append(shared().prompt);
    auto p = run_all(plain), want = run_all(base), got = run_all(spec);
    CHECK(p == got && want == got);
    specdec::Logprobs ref = base.logprobs(), lp = spec.logprobs();
    CHECK_EQ(lp.size(), size_t(16));
    CHECK_EQ(ref.size(), size_t(16));
    CHECK_EQ(lp.top_n, size_t(5));
    for (size_t i = 0; i < lp.size() && i < ref.size(); i++) {
        CHECK_EQ(lp.chosen[i].token, got[got.size() - 16 + i]);
        CHECK_EQ(lp.chosen[i].token, ref.chosen[i].token);
        CHECK(std::fabs(lp.chosen[i].raw_logprob - ref.chosen[i].raw_logprob) < 2e-3f);
        CHECK_EQ(lp.alternatives(i).size(), size_t(5));
    }
    CHECK_EQ(spec.config().logprobs(), 5u);
    auto rounds = spec.rounds();
    CHECK(!rounds.empty() && rounds.size() == spec.round_count() && rounds[0].emitted > 0);
    CHECK(rounds.back().end_seconds >= rounds[0].start_seconds);
    CHECK_CODE(spec.round(rounds.size()), SPECDEC_STATUS_INVALID_ARGUMENT);
    CHECK(spec.stats().time_to_first_token_seconds > 0);
    CHECK_CODE(specdec::GenConfig().logprobs(SPECDEC_MAX_LOGPROBS + 1), SPECDEC_STATUS_INVALID_ARGUMENT);
}

TEST(embedder_finish_length) {
    specdec::Model target = specdec::Model::load(fixture("llama"), specdec::ModelOptions().context_limit(40));
    CHECK_EQ(target.context_limit(), size_t(40));
    CHECK(target.context_limit_source() == specdec::ContextLimitSource::Options);
    const auto& prompt = shared().prompt;
    auto cfg = [] { return specdec::GenConfig().max_new_tokens(100).eos_ids({}); };
    specdec::Generator g(target, nullptr, cfg());
    g.append(prompt);
    CHECK_EQ(g.context_room(), 40 - prompt.size());
    CHECK_CODE(g.generate(), SPECDEC_STATUS_CONTEXT_LIMIT);
    specdec::Generator h(target, nullptr, cfg().finish_at_context_limit(true));
    h.append(prompt);
    CHECK(h.generate() == SPECDEC_FINISH_REASON_LENGTH);
    CHECK(std::string(specdec::finish_reason_name(h.finish_reason())) == "length");
    CHECK_EQ(h.tokens().size(), size_t(40));
    CHECK_EQ(h.context_room(), size_t(0));
    specdec::Generator r(target, nullptr, cfg().reserve_max_new_tokens(true));
    CHECK_CODE(r.append(prompt), SPECDEC_STATUS_CONTEXT_LIMIT);
}

TEST(embedder_rewind_and_set_config) {
    const auto& prompt = shared().prompt;
    specdec::Generator g(shared().target, &shared().draft, specdec::GenConfig().max_new_tokens(12).eos_ids({}));
    g.set_tokenizer(shared().tokenizer);
    g.append(prompt);
    auto full = run_all(g);
    g.rewind(prompt.size() + 4);
    CHECK(g.tokens() == std::vector<uint32_t>(full.begin(), full.begin() + prompt.size() + 4));
    CHECK(g.finish_reason() == SPECDEC_FINISH_REASON_NONE);
    CHECK(run_all(g) == full);
    CHECK_CODE(g.rewind(full.size() + 1), SPECDEC_STATUS_INVALID_ARGUMENT);
    // A second turn with other settings, read back.
    specdec::GenConfig c = g.config();
    CHECK_EQ(c.max_new_tokens(), 12u);
    c.max_new_tokens(3).seed(9).add_stop_tokens({7, 8}).add_stop_text("zz");
    g.set_config(c);
    specdec::GenConfig back = g.config();
    CHECK_EQ(back.max_new_tokens(), 3u);
    CHECK_EQ(back.seed(), uint64_t(9));
    CHECK(back.eos_ids() == std::optional<std::vector<uint32_t>>(std::vector<uint32_t>{}));
    CHECK((back.stop_tokens() == std::vector<std::vector<uint32_t>>{{7, 8}}));
    CHECK(back.stop_texts() == std::vector<std::string>{"zz"});
    CHECK(!specdec::GenConfig().eos_ids().has_value());
    CHECK(specdec::GenConfig().gamma() == back.gamma() && back.draft_policy() == specdec::DraftPolicy::Fixed);
    g.append({prompt[0], prompt[1]});
    CHECK_EQ(run_all(g).size(), full.size() + 2 + 3);
}

TEST(embedder_fork_after_prefill) {
    const auto& prompt = shared().prompt;
    auto cfg = [] { return specdec::GenConfig().max_new_tokens(10).eos_ids({}); };
    specdec::Generator fresh(shared().target, &shared().draft, cfg());
    fresh.append(prompt);
    auto want = run_all(fresh);
    specdec::Generator src(shared().target, &shared().draft, cfg());
    src.append(prompt);
    src.prefill();
    specdec::Generator f = src.fork(prompt.size());
    CHECK(run_all(f) == want);
    specdec::Generator f2 = src.fork(prompt.size(), cfg().max_new_tokens(3));
    CHECK(run_all(f2) == std::vector<uint32_t>(want.begin(), want.begin() + prompt.size() + 3));
    CHECK_CODE(src.fork(prompt.size() + 1), SPECDEC_STATUS_INVALID_ARGUMENT);
}

// A number after "key": in a flat JSON object (enough for config.json's integers).
long json_int(const std::string& json, const std::string& key) {
    size_t at = json.find("\"" + key + "\"");
    if (at == std::string::npos) return -1;
    at = json.find(':', at);
    return std::strtol(json.c_str() + at + 1, nullptr, 10);
}

TEST(embedder_model_metadata) {
    std::string dir = g_fixtures + "/../demo/target";
    specdec::Model m = specdec::Model::load(dir);
    std::string cfg = read_file(dir + "/config.json");
    long layers = json_int(cfg, "num_hidden_layers"), kv = json_int(cfg, "num_key_value_heads"),
         head = json_int(cfg, "head_dim");
    CHECK(cfg.find("\"" + m.architecture() + "\"") != std::string::npos && m.architecture() == "LlamaForCausalLM");
    CHECK_EQ(long(m.layer_count()), layers);
    CHECK_EQ(long(m.kv_head_count()), kv);
    CHECK_EQ(long(m.head_size()), head);
    CHECK_EQ(long(m.context_limit()), json_int(cfg, "max_position_embeddings"));
    CHECK(m.context_limit_source() == specdec::ContextLimitSource::Config);
    CHECK_EQ(long(m.kv_bytes_per_token()), 2 * layers * kv * head * 4);
    CHECK(m.kv_dtype() == "float32");
    CHECK(m.device() == "cpu");
    CHECK(m.bos_id() == std::optional<uint32_t>(uint32_t(json_int(cfg, "bos_token_id"))));
    auto eos = m.eos_ids();
    CHECK(std::find(eos.begin(), eos.end(), uint32_t(json_int(cfg, "eos_token_id"))) != eos.end());
    (void)m.pad_id();
    specdec::Model moved = std::move(m);
    CHECK(m.architecture().empty() && m.layer_count() == 0 && !m.bos_id() && m.eos_ids().empty());
}

TEST(embedder_load_from_memory) {
    std::string onnx = read_file(fixture("llama") + "/model.onnx");
    std::string cfg = read_file(fixture("llama") + "/config.json");
    specdec::Model m = specdec::Model::load_from_memory(onnx.data(), onnx.size(), cfg);
    CHECK_EQ(m.vocab_size(), shared().target.vocab_size());
    CHECK_EQ(m.context_limit(), shared().target.context_limit());
    CHECK(m.architecture() == shared().target.architecture());
    auto cfg_gen = [] { return specdec::GenConfig().max_new_tokens(8).eos_ids({}); };
    specdec::Generator a(m, nullptr, cfg_gen()), b(shared().target, nullptr, cfg_gen());
    a.append(shared().prompt);
    b.append(shared().prompt);
    CHECK(run_all(a) == run_all(b));
    CHECK_CODE(specdec::Model::load_from_memory(nullptr, 16), SPECDEC_STATUS_NULL_PARAMETER);
    // An empty buffer: the header says NULL_PARAMETER, the library answers INVALID_ARGUMENT.
    CHECK(code_of([&] { specdec::Model::load_from_memory(onnx.data(), 0); }) != SPECDEC_STATUS_OK);
    CHECK_CODE(specdec::Model::load_from_memory(onnx.data(), onnx.size(), "{not json"), SPECDEC_STATUS_IO);
}

TEST(embedder_log_callback) {
    specdec::LogLevel old = specdec::log_level();
    std::mutex mu;
    std::vector<std::string> msgs;
    specdec::set_log_callback([&](specdec::LogLevel, std::string_view source, std::string_view message) {
        {
            std::lock_guard<std::mutex> lock(mu);
            msgs.push_back(std::string(source) + ": " + std::string(message));
        }
        throw std::runtime_error("a throwing log callback must not crash the process");
    });
    specdec::set_log_level(specdec::LogLevel::Verbose);
    CHECK(specdec::log_level() == specdec::LogLevel::Verbose);
    CHECK_CODE(specdec::set_log_level(static_cast<specdec::LogLevel>(99)), SPECDEC_STATUS_INVALID_ARGUMENT);
    { specdec::Model m = specdec::Model::load(fixture("draft")); }
    specdec::set_log_level(old);
    specdec::set_log_callback(nullptr);
    bool found = false;
    std::lock_guard<std::mutex> lock(mu);
    for (const auto& s : msgs) found = found || s.rfind("specdec: ", 0) == 0;
    CHECK(found);
}


// ---------------------------------------------------------------------------------------------
// Engine

// Step until every sequence in `ids` is done, polling each after every step.
std::vector<specdec::PollResult> drain(specdec::Engine& engine, const std::vector<specdec::SeqId>& ids) {
    std::vector<specdec::PollResult> out(ids.size());
    for (int round = 0; round < 10000; round++) {
        size_t active = engine.step();
        bool all = true;
        for (size_t i = 0; i < ids.size(); i++) {
            if (out[i].done()) continue;
            specdec::PollResult r = engine.poll(ids[i]);
            out[i].tokens.insert(out[i].tokens.end(), r.tokens.begin(), r.tokens.end());
            out[i].state = r.state;
            out[i].reason = r.reason;
            out[i].error = r.error;
            all = all && out[i].done();
        }
        if (active == 0 && all) return out;
    }
    CHECK(!"the engine did not finish within 10000 steps");
    return out;
}

std::vector<uint32_t> generate_tokens(const specdec::Model* draft, const std::vector<uint32_t>& prompt,
                                      const specdec::GenConfig& cfg) {
    specdec::Generator g(shared().target, draft, cfg);
    g.append(prompt);
    std::vector<uint32_t> got;
    g.generate([&](specdec::TokenSpan t) { got.insert(got.end(), t.begin(), t.end()); });
    return got;
}

TEST(engine_greedy_equals_generator) {
    Shared& s = shared();
    for (const specdec::Model* draft : {static_cast<const specdec::Model*>(&s.draft), static_cast<const specdec::Model*>(nullptr)}) {
        auto cfg = specdec::GenConfig().max_new_tokens(40).gamma(3);
        std::vector<uint32_t> want = generate_tokens(draft, s.prompt, cfg);
        specdec::Engine engine(s.target, draft, specdec::EngineOptions().max_batch(4));
        engine.set_tokenizer(s.tokenizer);
        std::vector<specdec::SeqId> ids;
        for (int i = 0; i < 3; i++) ids.push_back(engine.add(s.prompt, cfg));
        std::vector<uint32_t> other = s.tokenizer.encode("The cat");
        auto other_cfg = specdec::GenConfig().max_new_tokens(20);
        ids.push_back(engine.add(other, other_cfg));
        auto got = drain(engine, ids);
        for (int i = 0; i < 3; i++) {
            CHECK(got[i].tokens == want);
            CHECK(got[i].state == specdec::SeqState::Finished);
            CHECK(!got[i].error);
        }
        CHECK(got[3].tokens == generate_tokens(draft, other, other_cfg));
        specdec::Stats seq = engine.seq_stats(ids[0]);
        CHECK_EQ(seq.new_tokens, static_cast<uint64_t>(want.size()));
        specdec::EngineStats st = engine.stats();
        CHECK(st.rounds > 0);
        CHECK(st.new_tokens >= 3 * want.size());
        CHECK_EQ(st.active, 0u);
        CHECK_EQ(st.waiting, 0u);
        if (draft) CHECK(st.drafted > 0);
        // A finished sequence polls empty; removed, it is unknown.
        specdec::PollResult again = engine.poll(ids[0]);
        CHECK(again.tokens.empty());
        CHECK(again.state == specdec::SeqState::Finished);
        for (specdec::SeqId id : ids) engine.remove(id);
        CHECK(code_of([&] { engine.poll(ids[0]); }) != SPECDEC_STATUS_OK);
        CHECK(code_of([&] { engine.remove(ids[0]); }) != SPECDEC_STATUS_OK);
    }
}

TEST(engine_cancel_remove_and_threads) {
    Shared& s = shared();
    specdec::Engine engine(s.target, &s.draft, specdec::EngineOptions().max_batch(2));
    auto long_cfg = specdec::GenConfig().max_new_tokens(200).eos_ids({});
    specdec::SeqId a = engine.add(s.prompt, long_cfg);
    specdec::SeqId b = engine.add(s.prompt, long_cfg);
    specdec::SeqId c = engine.add(s.prompt, specdec::GenConfig().max_new_tokens(8));
    engine.step();
    CHECK(engine.poll(c).state == specdec::SeqState::Waiting);
    engine.cancel(a);
    engine.remove(b);
    auto got = drain(engine, {a, c});
    CHECK(got[0].state == specdec::SeqState::Finished);
    CHECK(got[0].reason == SPECDEC_FINISH_REASON_CANCELLED);
    CHECK(std::string(specdec::finish_reason_name(got[0].reason)) == "cancelled");
    CHECK(got[0].tokens.size() < 200);
    CHECK(got[1].state == specdec::SeqState::Finished);
    CHECK(!got[1].tokens.empty());
    CHECK(code_of([&] { engine.cancel(987654321); }) != SPECDEC_STATUS_OK);
    engine.remove(a);
    engine.remove(c);

    // One thread steps while four add and poll their own sequences.
    auto cfg = specdec::GenConfig().max_new_tokens(24);
    std::vector<uint32_t> want = generate_tokens(&s.draft, s.prompt, cfg);
    std::atomic<bool> stop{false};
    std::thread stepper([&] {
        while (!stop) {
            try {
                if (engine.step() == 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
            } catch (const specdec::Error& e) {
                if (e.code() != SPECDEC_STATUS_BUSY) throw;
            }
        }
    });
    std::vector<std::thread> clients;
    std::atomic<int> equal{0};
    for (int i = 0; i < 4; i++) {
        clients.emplace_back([&] {
            specdec::SeqId id = engine.add(s.prompt, cfg);
            std::vector<uint32_t> toks;
            for (int spins = 0; spins < 600000; spins++) {
                specdec::PollResult r = engine.poll(id);
                toks.insert(toks.end(), r.tokens.begin(), r.tokens.end());
                if (r.done()) break;
                std::this_thread::sleep_for(std::chrono::microseconds(100));
            }
            if (toks == want) equal++;
            engine.remove(id);
        });
    }
    for (auto& t : clients) t.join();
    stop = true;
    stepper.join();
    CHECK_EQ(equal.load(), 4);
}

TEST(engine_bad_input_and_moves) {
    Shared& s = shared();
    CHECK_CODE(specdec::EngineOptions().max_batch(0), SPECDEC_STATUS_INVALID_ARGUMENT);
    specdec::Engine engine(s.target, nullptr, specdec::EngineOptions().admission(specdec::Admission::Wait).kv_memory_limit(0));
    CHECK_CODE(engine.add({1u << 30}), SPECDEC_STATUS_TOKEN_OUT_OF_RANGE);
    CHECK(code_of([&] { engine.poll(424242); }) != SPECDEC_STATUS_OK);
    CHECK(code_of([&] { engine.seq_stats(424242); }) != SPECDEC_STATUS_OK);
    specdec::Engine moved = std::move(engine);
    CHECK(!engine);
    CHECK(static_cast<bool>(moved));
    CHECK_CODE(engine.step(), SPECDEC_STATUS_NULL_PARAMETER);
    CHECK_CODE(engine.add(s.prompt), SPECDEC_STATUS_NULL_PARAMETER);
    CHECK(std::string(specdec::seq_state_name(specdec::SeqState::Failed)) == "failed");
}

}  // namespace

int main(int argc, char** argv) {
    if (argc > 1) g_fixtures = argv[1];
    int passed = 0, failed = 0;
    for (const TestCase& t : registry()) {
        g_check_failures = 0;
        const char* what = nullptr;
        std::string message;
        auto start = std::chrono::steady_clock::now();
        try {
            t.fn();
        } catch (const specdec::Error& e) {
            message = std::string("uncaught specdec::Error ") + e.code_name() + ": " + e.what();
            what = message.c_str();
        } catch (const std::exception& e) {
            message = std::string("uncaught exception: ") + e.what();
            what = message.c_str();
        } catch (...) {
            what = "uncaught exception of unknown type";
        }
        double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
        bool ok = what == nullptr && g_check_failures == 0;
        if (what) std::fprintf(stderr, "    %s\n", what);
        std::printf("%s %s (%.0f ms)\n", ok ? "ok  " : "FAIL", t.name, ms);
        std::fflush(stdout);
        (ok ? passed : failed) += 1;
    }
    std::printf("%d passed, %d failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
}
