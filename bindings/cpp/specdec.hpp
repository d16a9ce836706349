// specdec.hpp: a header-only C++17 RAII wrapper over the specdec C ABI (include/specdec.h).
//
// Why: the C ABI reports errors as status codes plus heap-allocated error objects, and hands out
// raw handles that must be freed exactly once. This header turns every handle into a move-only
// owner (std::unique_ptr with the matching *_free as deleter), every failing call into a
// specdec::Error exception (the C error object is always freed first), and every
// buffer-negotiating call into a function returning std::vector / std::string.
//
// Conventions shared by every class here:
// - Ownership: each object owns exactly one C handle. Objects are movable, not copyable. A
//   moved-from object holds no handle: destroying or assigning to it is safe; calling a member on
//   it throws specdec::Error with SPECDEC_STATUS_NULL_PARAMETER (getters return 0), never UB.
// - Lifetimes: the C library reference-counts models and tokenizers, so a Generator may outlive
//   the Model objects it was built from, and a StreamDecoder the Tokenizer it came from.
// - Thread-safety (as in the C ABI): Model and Tokenizer are immutable and may be used from many
//   threads at once through const references (Tokenizer::set_chat_template, the one non-const
//   member, needs exclusive use). GenConfig, ModelOptions, StreamDecoder and
//   Generator need exclusive use, except Generator::cancel(), which any thread may call while
//   the Generator object exists (do not move or destroy it concurrently). Engine is thread-safe
//   (one thread steps it while others add, poll, cancel and remove sequences).
// - Errors: every failing C call throws specdec::Error (a std::runtime_error) whose code() is the
//   specdec_status and whose what() is the library's message. The wrapper throws it itself, with
//   the closest status, where the C call would go wrong silently: a moved-from argument
//   (SPECDEC_STATUS_NULL_PARAMETER), a string with an embedded NUL (INVALID_ARGUMENT), a library
//   of another ABI (UNAVAILABLE). Exceptions thrown by a generate() callback never cross the C
//   boundary: they are caught in the trampoline, generation is stopped, and the same exception
//   is rethrown once the C call has returned. An exception thrown by a DraftCallback (a host
//   drafter) is caught the same way; it fails that round with SPECDEC_STATUS_CALLBACK, thrown as a
//   specdec::Error that nests the original (std::rethrow_if_nested gets it back).
//
// Link with -lspecdec (and -lpthread if your toolchain needs it).

#ifndef SPECDEC_HPP
#define SPECDEC_HPP

#if __cplusplus < 201703L && !(defined(_MSVC_LANG) && _MSVC_LANG >= 201703L)
#error "specdec.hpp needs C++17 or newer"
#endif

#include <specdec.h>

#include <array>
#include <climits>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <initializer_list>
#include <iterator>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

// This wrapper was written against ABI 1 of the C header; a different header needs a review of
// this file before it can be trusted.
static_assert(SPECDEC_ABI_VERSION == 1, "specdec.hpp was written for SPECDEC_ABI_VERSION 1");

namespace specdec {

// ---------------------------------------------------------------------------------------------
// Errors

// Thrown by every failing call. code() is the C status; what() the library's message.
// Copyable and cheap to copy (std::runtime_error shares its message).
class Error : public std::runtime_error {
public:
    Error(specdec_status code, const std::string& message) : std::runtime_error(message), code_(code) {}

    specdec_status code() const noexcept { return code_; }
    // "SPECDEC_STATUS_IO", ... (static storage).
    const char* code_name() const noexcept { return specdec_status_name(static_cast<uint32_t>(code_)); }

private:
    specdec_status code_;
};

// "SPECDEC_STATUS_OK", ... for any status value (static storage).
inline const char* status_name(specdec_status status) noexcept {
    return specdec_status_name(static_cast<uint32_t>(status));
}

// ---------------------------------------------------------------------------------------------
// Versions

// The loaded library's version, "MAJOR.MINOR.PATCH" (static storage).
inline std::string_view version() noexcept { return specdec_version(); }

// The loaded library's ABI version; must equal SPECDEC_ABI_VERSION (see check_abi()).
inline uint32_t abi_version() noexcept { return specdec_abi_version(); }

// Throws specdec::Error (SPECDEC_STATUS_UNAVAILABLE) when the loaded libspecdec has another ABI
// than the header this program was compiled with. Model::load and Tokenizer::load call it (once
// per process), so most programs never need to.
inline void check_abi() {
    if (specdec_abi_version() != SPECDEC_ABI_VERSION) {
        throw Error(SPECDEC_STATUS_UNAVAILABLE,
                    "libspecdec has ABI version " + std::to_string(specdec_abi_version()) +
                        " but specdec.h has " + std::to_string(SPECDEC_ABI_VERSION));
    }
}

namespace detail {

struct ErrorDeleter {
    void operator()(specdec_error* e) const noexcept { specdec_error_free(e); }
};
using ErrorPtr = std::unique_ptr<specdec_error, ErrorDeleter>;

// Turn (status, error object) into an exception; always frees the error object.
inline void check(specdec_status status, specdec_error* raw) {
    ErrorPtr err(raw);
    if (status == SPECDEC_STATUS_OK) return;
    specdec_status code = err ? specdec_error_code(err.get()) : status;
    std::string message = err ? specdec_error_message(err.get()) : status_name(status);
    throw Error(code, message);
}

// Call `f(specdec_error**)` and throw on failure. (A helper rather than check(f(&err), err),
// whose argument evaluation order is unspecified.)
template <class F>
void call(F&& f) {
    specdec_error* err = nullptr;
    specdec_status status = f(&err);
    check(status, err);
}

// A NUL-terminated copy of `s`; the C ABI takes C strings, so an embedded NUL would silently
// truncate: refuse it instead.
inline std::string c_string(std::string_view s, const char* what) {
    if (s.find('\0') != std::string_view::npos) {
        throw Error(SPECDEC_STATUS_INVALID_ARGUMENT, std::string(what) + " contains a NUL byte");
    }
    return std::string(s);
}

inline void ensure_abi() {
    static const bool ok = (check_abi(), true);
    (void)ok;
}

[[noreturn]] inline void throw_moved_from(const char* what) {
    throw Error(SPECDEC_STATUS_NULL_PARAMETER, std::string("specdec::") + what + " is empty (moved-from)");
}

template <class T, void (*Free)(T*)>
struct Deleter {
    void operator()(T* p) const noexcept { Free(p); }
};

}  // namespace detail

// ---------------------------------------------------------------------------------------------
// TokenSpan

// A non-owning view of token ids (C++17 has no std::span). Converts implicitly from
// std::vector<uint32_t>, std::array, C arrays, braced lists ({1, 2, 3}) and (pointer, size), so
// every function taking a TokenSpan accepts all of them. It must not outlive what it views
// (a braced list lives until the end of the full expression).
struct TokenSpan {
    const uint32_t* data = nullptr;
    size_t size = 0;

    constexpr TokenSpan() noexcept = default;
    constexpr TokenSpan(const uint32_t* ptr, size_t n) noexcept : data(ptr), size(n) {}
    TokenSpan(const std::vector<uint32_t>& v) noexcept : data(v.data()), size(v.size()) {}
    // Like C++26 std::span's: the list's array lives until the end of the full expression, which
    // is what a call argument needs. (std::data rather than l.begin(): same pointer, without
    // GCC's -Winit-list-lifetime, which cannot tell a parameter view from a stored one.)
    constexpr TokenSpan(std::initializer_list<uint32_t> l) noexcept : data(std::data(l)), size(l.size()) {}
    template <size_t N>
    constexpr TokenSpan(const std::array<uint32_t, N>& a) noexcept : data(a.data()), size(N) {}
    template <size_t N>
    constexpr TokenSpan(const uint32_t (&a)[N]) noexcept : data(a), size(N) {}

    constexpr const uint32_t* begin() const noexcept { return data; }
    constexpr const uint32_t* end() const noexcept { return data + size; }
    constexpr bool empty() const noexcept { return size == 0; }
    constexpr uint32_t operator[](size_t i) const noexcept { return data[i]; }
    std::vector<uint32_t> to_vector() const { return std::vector<uint32_t>(begin(), end()); }
};

// ---------------------------------------------------------------------------------------------
// Runtime

// Load ONNX Runtime from `ort_library_path` (empty: $ORT_DYLIB_PATH, then the project-local
// .deps/onnxruntime). Optional: loading a model does it with the defaults. Thread-safe.
inline void runtime_init(std::string_view ort_library_path = {}) {
    std::string path = detail::c_string(ort_library_path, "ort_library_path");
    detail::call([&](specdec_error** e) {
        return specdec_runtime_init(ort_library_path.empty() ? nullptr : path.c_str(), e);
    });
}

// ---------------------------------------------------------------------------------------------
// ModelOptions

// Options for Model::load: device ("cpu" | "cuda" | "cuda:N"), CUDA fallback, IoBinding, ONNX Runtime
// intra-op threads, spinning and graph optimization level, and which graph variant of a folder.
// Owns a specdec_model_options; move-only. Setters validate at once and throw specdec::Error;
// they return *this for chaining: Model::load(p, ModelOptions().device("cpu").intra_threads(2)).
// Not thread-safe while being modified.
class ModelOptions {
public:
    ModelOptions() : h_(specdec_model_options_new()) {
        if (!h_) throw Error(SPECDEC_STATUS_PANIC, "specdec_model_options_new failed");
    }

    // Execution provider. An unknown name throws SPECDEC_STATUS_INVALID_ARGUMENT here; CUDA in a
    // machine where CUDA cannot run throws SPECDEC_STATUS_UNAVAILABLE from Model::load.
    ModelOptions& device(std::string_view name) & {
        std::string s = detail::c_string(name, "device");
        detail::call([&](specdec_error** e) { return specdec_model_options_set_device(h_.get(), s.c_str(), e); });
        return *this;
    }
    ModelOptions&& device(std::string_view name) && { return std::move(device(name)); }

    // Intra-op threads of a pool of the model's own; 0 (default) runs the model on the process's
    // shared pool (one thread per core), which a target and its draft share.
    ModelOptions& intra_threads(uint32_t n) & {
        detail::call([&](specdec_error** e) { return specdec_model_options_set_intra_threads(h_.get(), n, e); });
        return *this;
    }
    ModelOptions&& intra_threads(uint32_t n) && { return std::move(intra_threads(n)); }

    // Which graph of a folder holding several to load: "q4" is model_q4.onnx (in the onnx/
    // subfolder of onnx-community layouts), "fp16" model_fp16.onnx, "default" model.onnx. Without
    // it the only graph is loaded, and a folder with several makes Model::load throw
    // SPECDEC_STATUS_INVALID_ARGUMENT naming them; an unknown variant throws SPECDEC_STATUS_IO
    // there, naming those present.
    ModelOptions& variant(std::string_view name) & {
        std::string s = detail::c_string(name, "variant");
        detail::call([&](specdec_error** e) { return specdec_model_options_set_variant(h_.get(), s.c_str(), e); });
        return *this;
    }
    ModelOptions&& variant(std::string_view name) && { return std::move(variant(name)); }

    // Whether a model asked to run on CUDA may load on the CPU where CUDA cannot be used (default
    // false: Model::load throws SPECDEC_STATUS_UNAVAILABLE). Model::cuda_device() tells where it runs.
    ModelOptions& cuda_fallback(bool allow) & {
        detail::call([&](specdec_error** e) { return specdec_model_options_set_cuda_fallback(h_.get(), allow, e); });
        return *this;
    }
    ModelOptions&& cuda_fallback(bool allow) && { return std::move(cuda_fallback(allow)); }

    // Every call through ONNX Runtime's IoBinding with the KV cache in the device's memory (always
    // on for CUDA; default false on the CPU, where it runs the CUDA code path, same output).
    ModelOptions& io_binding(bool enable) & {
        detail::call([&](specdec_error** e) { return specdec_model_options_set_io_binding(h_.get(), enable, e); });
        return *this;
    }
    ModelOptions&& io_binding(bool enable) && { return std::move(io_binding(enable)); }

    // Reduce logits on the model's device where sampling needs only the best of each row (the
    // argmax, or the top-k candidates, cross to the host instead of whole rows). Default: on for
    // CUDA, off on the CPU; on the CPU it gives the same tokens.
    ModelOptions& device_reductions(bool enable) & {
        detail::call([&](specdec_error** e) { return specdec_model_options_set_device_reductions(h_.get(), enable, e); });
        return *this;
    }
    ModelOptions&& device_reductions(bool enable) && { return std::move(device_reductions(enable)); }

    // Whether idle ONNX Runtime worker threads spin before sleeping (default true).
    ModelOptions& spinning(bool spin) & {
        detail::call([&](specdec_error** e) { return specdec_model_options_set_spinning(h_.get(), spin, e); });
        return *this;
    }
    ModelOptions&& spinning(bool spin) && { return std::move(spinning(spin)); }

    // ONNX Runtime graph optimization level, 0 (none) to 3 (all, the default); above 3 throws
    // SPECDEC_STATUS_INVALID_ARGUMENT.
    ModelOptions& optimization_level(uint32_t level) & {
        detail::call([&](specdec_error** e) { return specdec_model_options_set_optimization_level(h_.get(), level, e); });
        return *this;
    }
    ModelOptions&& optimization_level(uint32_t level) && { return std::move(optimization_level(level)); }

    // Use `n_tokens` as the context limit whatever config.json and the graph say; 0 (the default)
    // takes config.json's, else a learned position table's rows, else 2048 with a warning.
    ModelOptions& context_limit(size_t n_tokens) & {
        detail::call([&](specdec_error** e) { return specdec_model_options_set_context_limit(h_.get(), n_tokens, e); });
        return *this;
    }
    ModelOptions&& context_limit(size_t n_tokens) && { return std::move(context_limit(n_tokens)); }

    const specdec_model_options* get() const noexcept { return h_.get(); }
    explicit operator bool() const noexcept { return h_ != nullptr; }

private:
    std::unique_ptr<specdec_model_options, detail::Deleter<specdec_model_options, specdec_model_options_free>> h_;
};

// ---------------------------------------------------------------------------------------------
// Model

// Where a model's context limit comes from (Model::context_limit_source).
enum class ContextLimitSource : uint32_t {
    Config = SPECDEC_CONTEXT_LIMIT_SOURCE_CONFIG,    // config.json
    Graph = SPECDEC_CONTEXT_LIMIT_SOURCE_GRAPH,      // a learned position table's rows
    Options = SPECDEC_CONTEXT_LIMIT_SOURCE_OPTIONS,  // ModelOptions::context_limit
    Default = SPECDEC_CONTEXT_LIMIT_SOURCE_DEFAULT,  // nothing stated it: 2048 assumed
};

// A loaded decoder model (a folder with model.onnx, config.json, generation_config.json, or an
// .onnx file). Owns one specdec_model handle; move-only. Immutable and thread-safe: share it by
// const reference across threads and generators. Generators keep the underlying model alive, so
// the Model object may be destroyed before them.
class Model {
public:
    // Throws specdec::Error: SPECDEC_STATUS_IO (missing path), SPECDEC_STATUS_INVALID_MODEL,
    // SPECDEC_STATUS_UNSUPPORTED_LAYOUT, SPECDEC_STATUS_UNAVAILABLE (cuda on a CPU build),
    // SPECDEC_STATUS_RUNTIME_LOAD.
    static Model load(std::string_view path, const ModelOptions& options = ModelOptions()) {
        detail::ensure_abi();
        if (!options) detail::throw_moved_from("ModelOptions");
        std::string p = detail::c_string(path, "path");
        specdec_model* out = nullptr;
        detail::call([&](specdec_error** e) { return specdec_model_load(p.c_str(), options.get(), &out, e); });
        return Model(out);
    }

    // Load a single-file model (no external data) from `size` bytes at `data` (which may be freed
    // once this returns), with the texts of its config.json and generation_config.json (empty:
    // none). No tokenizer fingerprint. Throws as load(), SPECDEC_STATUS_NULL_PARAMETER for no
    // data, SPECDEC_STATUS_IO for invalid JSON.
    static Model load_from_memory(const void* data, size_t size, std::string_view config_json = {},
                                  std::string_view generation_config_json = {},
                                  const ModelOptions& options = ModelOptions()) {
        detail::ensure_abi();
        if (!options) detail::throw_moved_from("ModelOptions");
        std::string cfg = detail::c_string(config_json, "config_json");
        std::string gen = detail::c_string(generation_config_json, "generation_config_json");
        specdec_model* out = nullptr;
        detail::call([&](specdec_error** e) {
            return specdec_model_load_from_memory(data, size, config_json.empty() ? nullptr : cfg.c_str(),
                                                  generation_config_json.empty() ? nullptr : gen.c_str(), options.get(),
                                                  &out, e);
        });
        return Model(out);
    }
    static Model load_from_memory(const std::vector<uint8_t>& data, std::string_view config_json = {},
                                  std::string_view generation_config_json = {},
                                  const ModelOptions& options = ModelOptions()) {
        return load_from_memory(data.data(), data.size(), config_json, generation_config_json, options);
    }

    // Metadata (thread-safe; empty / 0 / nullopt for a moved-from Model).
    // End-of-sequence ids (generation_config.json, else config.json).
    std::vector<uint32_t> eos_ids() const {
        if (!h_) return {};
        const uint32_t* ids = nullptr;
        size_t n = 0;
        detail::call([&](specdec_error** e) { return specdec_model_eos_ids(h_.get(), &ids, &n, e); });
        return std::vector<uint32_t>(ids, ids + n);
    }
    // The BOS / padding id, or nullopt when none is stated.
    std::optional<uint32_t> bos_id() const noexcept { return opt_id(specdec_model_bos_id(h_.get())); }
    std::optional<uint32_t> pad_id() const noexcept { return opt_id(specdec_model_pad_id(h_.get())); }
    // config.json's architectures[0] (e.g. "LlamaForCausalLM"), else its model_type; "" if unknown.
    std::string architecture() const { return specdec_model_architecture(h_.get()); }
    size_t layer_count() const noexcept { return specdec_model_layer_count(h_.get()); }
    size_t kv_head_count() const noexcept { return specdec_model_kv_head_count(h_.get()); }
    size_t head_size() const noexcept { return specdec_model_head_size(h_.get()); }
    // Bytes of KV cache one token takes (keys and values of every layer).
    size_t kv_bytes_per_token() const noexcept { return specdec_model_kv_bytes_per_token(h_.get()); }
    // "float32", "float16" or "bfloat16" (static storage).
    std::string_view kv_dtype() const noexcept { return specdec_model_kv_dtype(h_.get()); }
    // "cpu" or "cuda:N".
    std::string device() const { return specdec_model_device(h_.get()); }
    ContextLimitSource context_limit_source() const noexcept {
        return static_cast<ContextLimitSource>(specdec_model_context_limit_source(h_.get()));
    }

    // 0 for a moved-from Model.
    size_t vocab_size() const noexcept { return specdec_model_vocab_size(h_.get()); }
    size_t context_limit() const noexcept { return specdec_model_context_limit(h_.get()); }
    // The CUDA device the model runs on, or -1 on the CPU (also after a CUDA fallback) and for a
    // moved-from Model.
    int32_t cuda_device() const noexcept { return specdec_model_cuda_device(h_.get()); }

    const specdec_model* get() const noexcept { return h_.get(); }
    explicit operator bool() const noexcept { return h_ != nullptr; }

private:
    explicit Model(specdec_model* h) noexcept : h_(h) {}
    static std::optional<uint32_t> opt_id(int64_t v) noexcept {
        return v < 0 ? std::nullopt : std::optional<uint32_t>(static_cast<uint32_t>(v));
    }
    std::unique_ptr<specdec_model, detail::Deleter<specdec_model, specdec_model_free>> h_;
};

// ---------------------------------------------------------------------------------------------
// Tokenizer

// One message of a conversation for Tokenizer::apply_chat_template: UTF-8 `role` ("system",
// "user", "assistant", ...) and `content`.
struct ChatMessage {
    std::string role;
    std::string content;
};

namespace detail {

// The C buffer protocol shared by decode, id_to_token and apply_chat_template: `f(buf, capacity,
// &len, &err)` writes a NUL-terminated string, or says how long it is with
// SPECDEC_STATUS_BUFFER_TOO_SMALL. Starts with `guess` bytes (0: ask for the size), then
// retries with the exact size.
template <class F>
std::string fill_string(size_t guess, F&& f) {
    std::string text(guess, '\0');
    size_t capacity = guess ? guess + 1 : 0;  // std::string keeps room for the NUL at text[size()]
    for (;;) {
        size_t len = 0;
        specdec_error* raw = nullptr;
        specdec_status st = f(capacity ? &text[0] : nullptr, capacity, &len, &raw);
        if (st == SPECDEC_STATUS_BUFFER_TOO_SMALL && len + 1 > capacity) {
            ErrorPtr drop(raw);
            text.resize(len);
            capacity = len + 1;
            continue;
        }
        check(st, raw);
        text.resize(len);
        return text;
    }
}

}  // namespace detail

// A tokenizer.json. Owns one specdec_tokenizer; move-only. Immutable and thread-safe (const
// members may run concurrently), except set_chat_template, which needs exclusive use. Stream
// decoders and generators keep it alive.
class Tokenizer {
public:
    // `path`: a tokenizer.json, or a folder holding one (a model folder works).
    // Throws SPECDEC_STATUS_IO, SPECDEC_STATUS_TOKENIZER.
    static Tokenizer load(std::string_view path) {
        detail::ensure_abi();
        std::string p = detail::c_string(path, "path");
        specdec_tokenizer* out = nullptr;
        detail::call([&](specdec_error** e) { return specdec_tokenizer_load(p.c_str(), &out, e); });
        return Tokenizer(out);
    }

    // Token ids of `text` (UTF-8; special tokens are not added). Throws SPECDEC_STATUS_INVALID_UTF8,
    // SPECDEC_STATUS_TOKENIZER. Negotiates the size: asks with capacity 0, then fills the vector.
    std::vector<uint32_t> encode(std::string_view text) const {
        std::vector<uint32_t> ids;
        for (;;) {
            size_t needed = 0;
            specdec_error* raw = nullptr;
            specdec_status st = specdec_tokenizer_encode(h_.get(), text.data(), text.size(), ids.data(), ids.size(),
                                                         &needed, &raw);
            if (st == SPECDEC_STATUS_BUFFER_TOO_SMALL && needed > ids.size()) {
                detail::ErrorPtr drop(raw);
                ids.resize(needed);
                continue;
            }
            detail::check(st, raw);
            ids.resize(needed);
            return ids;
        }
    }

    // UTF-8 text of `ids` (special tokens skipped). Throws SPECDEC_STATUS_TOKEN_OUT_OF_RANGE,
    // SPECDEC_STATUS_TOKENIZER. Negotiates the size: asks with capacity 0, then fills the string.
    std::string decode(TokenSpan ids) const {
        std::string text;
        size_t capacity = 0;  // bytes available in text, counting its terminator slot
        for (;;) {
            size_t len = 0;
            specdec_error* raw = nullptr;
            specdec_status st = specdec_tokenizer_decode(h_.get(), ids.data, ids.size,
                                                         capacity ? &text[0] : nullptr, capacity, &len, &raw);
            if (st == SPECDEC_STATUS_BUFFER_TOO_SMALL && len + 1 > capacity) {
                detail::ErrorPtr drop(raw);
                text.resize(len);  // std::string keeps room for the NUL at text[len]
                capacity = len + 1;
                continue;
            }
            detail::check(st, raw);
            text.resize(len);
            return text;
        }
    }
    std::string decode(const uint32_t* ids, size_t n) const { return decode(TokenSpan(ids, n)); }

    // encode() with the choice of special tokens: `add_special_tokens` adds those the tokenizer's
    // post-processor adds (a BOS, say), as transformers' encode() does by default. A prompt from
    // apply_chat_template already holds its special tokens: encode it with false.
    std::vector<uint32_t> encode_with(std::string_view text, bool add_special_tokens) const {
        const uint32_t flags = add_special_tokens ? SPECDEC_ENCODE_ADD_SPECIAL_TOKENS : 0u;
        std::vector<uint32_t> ids;
        for (;;) {
            size_t needed = 0;
            specdec_error* raw = nullptr;
            specdec_status st = specdec_tokenizer_encode_ex(h_.get(), text.data(), text.size(), flags, ids.data(),
                                                            ids.size(), &needed, &raw);
            if (st == SPECDEC_STATUS_BUFFER_TOO_SMALL && needed > ids.size()) {
                detail::ErrorPtr drop(raw);
                ids.resize(needed);
                continue;
            }
            detail::check(st, raw);
            ids.resize(needed);
            return ids;
        }
    }

    // decode() with the choice of special tokens: `skip_special_tokens` false keeps them
    // ("<|eot_id|>", "</s>", ...) in the text.
    std::string decode_with(TokenSpan ids, bool skip_special_tokens) const {
        const uint32_t flags = skip_special_tokens ? 0u : SPECDEC_DECODE_KEEP_SPECIAL_TOKENS;
        return detail::fill_string(0, [&](char* buf, size_t cap, size_t* len, specdec_error** e) {
            return specdec_tokenizer_decode_ex(h_.get(), ids.data, ids.size, flags, buf, cap, len, e);
        });
    }

    // The id of `token` as written in tokenizer.json ("<|endoftext|>", "\xc4\xa0the"), or
    // std::nullopt when the tokenizer has no such token. Throws SPECDEC_STATUS_INVALID_UTF8.
    std::optional<uint32_t> token_to_id(std::string_view token) const {
        uint32_t id = 0;
        bool found = false;
        detail::call([&](specdec_error** e) {
            return specdec_tokenizer_token_to_id(h_.get(), token.data(), token.size(), &id, &found, e);
        });
        if (!found) return std::nullopt;
        return id;
    }

    // The token string of `id` as written in tokenizer.json. Throws
    // SPECDEC_STATUS_TOKEN_OUT_OF_RANGE for an id the tokenizer does not have.
    std::string id_to_token(uint32_t id) const {
        return detail::fill_string(32, [&](char* buf, size_t cap, size_t* len, specdec_error** e) {
            return specdec_tokenizer_id_to_token(h_.get(), id, buf, cap, len, e);
        });
    }

    // Render `messages` with the tokenizer's chat template (the one set with set_chat_template,
    // else the folder's chat_template.jinja or tokenizer_config.json), byte for byte as
    // transformers' apply_chat_template(messages, tokenize=False, add_generation_prompt=...).
    // With `add_generation_prompt` the text ends with the header of an assistant turn. Encode the
    // result with encode_with(prompt, false) (or encode): the template writes the special tokens.
    // Throws SPECDEC_STATUS_TOKENIZER (no template, or rendering failed, e.g. the template's own
    // raise_exception), SPECDEC_STATUS_INVALID_UTF8, SPECDEC_STATUS_INVALID_ARGUMENT (a NUL byte).
    std::string apply_chat_template(const std::vector<ChatMessage>& messages, bool add_generation_prompt) const {
        std::vector<specdec_chat_message> c;
        c.reserve(messages.size());
        size_t guess = 256;
        for (const ChatMessage& m : messages) {
            if (m.role.find('\0') != std::string::npos || m.content.find('\0') != std::string::npos) {
                throw Error(SPECDEC_STATUS_INVALID_ARGUMENT, "chat message contains a NUL byte");
            }
            c.push_back(specdec_chat_message{m.role.c_str(), m.content.c_str()});
            guess += m.role.size() + m.content.size() + 32;
        }
        return detail::fill_string(guess, [&](char* buf, size_t cap, size_t* len, specdec_error** e) {
            return specdec_tokenizer_apply_chat_template(h_.get(), c.data(), c.size(), add_generation_prompt, buf,
                                                         cap, len, e);
        });
    }

    // Use `chat_template` (Jinja source) instead of the folder's template; the special tokens stay
    // the folder's. On failure the template in use is unchanged. Not thread-safe: set it before
    // sharing the tokenizer. Throws SPECDEC_STATUS_TOKENIZER (it does not compile),
    // SPECDEC_STATUS_INVALID_UTF8, SPECDEC_STATUS_INVALID_ARGUMENT (a NUL byte).
    void set_chat_template(std::string_view chat_template) {
        std::string t = detail::c_string(chat_template, "chat_template");
        detail::call([&](specdec_error** e) { return specdec_tokenizer_set_chat_template(h_.get(), t.c_str(), e); });
    }

    // Vocabulary size, added tokens included (0 for a moved-from Tokenizer).
    size_t vocab_size() const noexcept { return specdec_tokenizer_vocab_size(h_.get()); }

    const specdec_tokenizer* get() const noexcept { return h_.get(); }
    explicit operator bool() const noexcept { return h_ != nullptr; }

private:
    explicit Tokenizer(specdec_tokenizer* h) noexcept : h_(h) {}
    std::unique_ptr<specdec_tokenizer, detail::Deleter<specdec_tokenizer, specdec_tokenizer_free>> h_;
};

// ---------------------------------------------------------------------------------------------
// StreamDecoder

// Incremental detokenisation for streaming output: push() returns only whole UTF-8 characters,
// holding back a partial one until the token completing it arrives; flush() returns the rest at
// the end. The concatenation of all pushes and the flush equals Tokenizer::decode of all ids.
// Owns one specdec_stream_decoder (which keeps its tokenizer alive); move-only; one decoder per
// stream, not thread-safe.
class StreamDecoder {
public:
    explicit StreamDecoder(const Tokenizer& tokenizer) {
        if (!tokenizer) detail::throw_moved_from("Tokenizer");
        specdec_stream_decoder* out = nullptr;
        detail::call([&](specdec_error** e) { return specdec_stream_decoder_new(tokenizer.get(), &out, e); });
        h_.reset(out);
    }

    // Throws SPECDEC_STATUS_TOKEN_OUT_OF_RANGE, SPECDEC_STATUS_TOKENIZER.
    std::string push(TokenSpan ids) {
        const char* text = nullptr;
        size_t len = 0;
        detail::call([&](specdec_error** e) {
            return specdec_stream_decoder_push(h_.get(), ids.data, ids.size, &text, &len, e);
        });
        return std::string(text, len);
    }
    std::string push(const uint32_t* ids, size_t n) { return push(TokenSpan(ids, n)); }

    std::string flush() {
        const char* text = nullptr;
        size_t len = 0;
        detail::call([&](specdec_error** e) { return specdec_stream_decoder_flush(h_.get(), &text, &len, e); });
        return std::string(text, len);
    }

    explicit operator bool() const noexcept { return h_ != nullptr; }

private:
    std::unique_ptr<specdec_stream_decoder, detail::Deleter<specdec_stream_decoder, specdec_stream_decoder_free>> h_;
};

// ---------------------------------------------------------------------------------------------
// GenConfig

// How the draft length of each round is chosen (specdec_draft_policy).
enum class DraftPolicy : uint32_t {
    // gamma proposals every round (fewer only when the drafter runs out or near the end). Default.
    Fixed = SPECDEC_DRAFT_POLICY_FIXED,
    // Start at gamma; +2 after a round whose proposals were all accepted, -1 otherwise.
    Heuristic = SPECDEC_DRAFT_POLICY_HEURISTIC,
    // gamma in 0..16 chosen every round from measured acceptance and costs, drafting stopped early
    // after unsure guesses, learning carried to later generations. Sampled output with a fixed seed
    // is then reproducible only in distribution; greedy output is the target's own regardless.
    Auto = SPECDEC_DRAFT_POLICY_AUTO,
};

// Generation settings (gamma, sampling, seed, limits, EOS, stop sequences, draft policy, KV budget). Owns one
// specdec_gen_config; move-only. Every setter validates at once (throwing specdec::Error, the
// old value kept) and returns *this, on lvalues and on temporaries alike:
//   auto cfg = specdec::GenConfig().gamma(4).temperature(0.7f).seed(1);
// A Generator copies the settings when created, so the GenConfig may change or die afterwards.
// Not thread-safe while being modified; const use (creating generators) may be shared.
class GenConfig {
public:
    GenConfig() : h_(specdec_gen_config_new()) {
        if (!h_) throw Error(SPECDEC_STATUS_PANIC, "specdec_gen_config_new failed");
    }

    // Draft tokens per iteration, 1..=SPECDEC_MAX_GAMMA (default 4).
    GenConfig& gamma(uint32_t v) & { return set([&](auto c, auto e) { return specdec_gen_config_set_gamma(c, v, e); }); }
    GenConfig&& gamma(uint32_t v) && { return std::move(gamma(v)); }
    // Finite, >= 0; 0 is greedy (default 0).
    GenConfig& temperature(float v) & { return set([&](auto c, auto e) { return specdec_gen_config_set_temperature(c, v, e); }); }
    GenConfig&& temperature(float v) && { return std::move(temperature(v)); }
    // 0 is off (default).
    GenConfig& top_k(uint32_t v) & { return set([&](auto c, auto e) { return specdec_gen_config_set_top_k(c, v, e); }); }
    GenConfig&& top_k(uint32_t v) && { return std::move(top_k(v)); }
    // (0, 1]; 1 is off (default).
    GenConfig& top_p(float v) & { return set([&](auto c, auto e) { return specdec_gen_config_set_top_p(c, v, e); }); }
    GenConfig&& top_p(float v) && { return std::move(top_p(v)); }
    // [0, 1]; 0 is off (default).
    GenConfig& min_p(float v) & { return set([&](auto c, auto e) { return specdec_gen_config_set_min_p(c, v, e); }); }
    GenConfig&& min_p(float v) && { return std::move(min_p(v)); }
    // Finite, > 0; 1 is off (default).
    GenConfig& repetition_penalty(float v) & {
        return set([&](auto c, auto e) { return specdec_gen_config_set_repetition_penalty(c, v, e); });
    }
    GenConfig&& repetition_penalty(float v) && { return std::move(repetition_penalty(v)); }
    // OpenAI-style, finite; 0 is off (default): subtracted once from every token the current
    // generation has produced.
    GenConfig& presence_penalty(float v) & {
        return set([&](auto c, auto e) { return specdec_gen_config_set_presence_penalty(c, v, e); });
    }
    GenConfig&& presence_penalty(float v) && { return std::move(presence_penalty(v)); }
    // OpenAI-style, finite; 0 is off (default): subtracted once per time a token was produced.
    GenConfig& frequency_penalty(float v) & {
        return set([&](auto c, auto e) { return specdec_gen_config_set_frequency_penalty(c, v, e); });
    }
    GenConfig&& frequency_penalty(float v) && { return std::move(frequency_penalty(v)); }
    // Added to the listed tokens' logits after the penalties (replacing any bias set before; empty
    // clears it). Biases finite, each id once; ids checked against the vocabulary by Generator.
    GenConfig& logit_bias(const std::vector<std::pair<uint32_t, float>>& bias) & {
        std::vector<uint32_t> ids;
        std::vector<float> values;
        for (const auto& [id, b] : bias) {
            ids.push_back(id);
            values.push_back(b);
        }
        return set([&](auto c, auto e) {
            return specdec_gen_config_set_logit_bias(c, ids.data(), values.data(), ids.size(), e);
        });
    }
    GenConfig&& logit_bias(const std::vector<std::pair<uint32_t, float>>& bias) && { return std::move(logit_bias(bias)); }
    GenConfig& seed(uint64_t v) & { return set([&](auto c, auto e) { return specdec_gen_config_set_seed(c, v, e); }); }
    GenConfig&& seed(uint64_t v) && { return std::move(seed(v)); }
    // Per prompt (default 128); 0 generates nothing.
    GenConfig& max_new_tokens(uint32_t v) & {
        return set([&](auto c, auto e) { return specdec_gen_config_set_max_new_tokens(c, v, e); });
    }
    GenConfig&& max_new_tokens(uint32_t v) && { return std::move(max_new_tokens(v)); }

    // Exactly these EOS ids; an empty list means no EOS at all. (Use default_eos_ids() for the
    // target's generation_config.json.)
    GenConfig& eos_ids(TokenSpan ids) & {
        return set([&](auto c, auto e) { return specdec_gen_config_set_eos_ids(c, ids.data, ids.size, e); });
    }
    GenConfig&& eos_ids(TokenSpan ids) && { return std::move(eos_ids(ids)); }
    // EOS ids from the target's generation_config.json (the default).
    GenConfig& default_eos_ids() & {
        return set([&](auto c, auto e) { return specdec_gen_config_use_model_eos_ids(c, e); });
    }
    GenConfig&& default_eos_ids() && { return std::move(default_eos_ids()); }

    // Stop once the generated tokens end with `ids` (non-empty).
    GenConfig& add_stop_tokens(TokenSpan ids) & {
        return set([&](auto c, auto e) { return specdec_gen_config_add_stop_tokens(c, ids.data, ids.size, e); });
    }
    GenConfig&& add_stop_tokens(TokenSpan ids) && { return std::move(add_stop_tokens(ids)); }
    // Stop once the generated text contains `text` (non-empty, no NUL). Needs
    // Generator::set_tokenizer.
    GenConfig& add_stop_text(std::string_view text) & {
        std::string s = detail::c_string(text, "stop text");
        return set([&](auto c, auto e) { return specdec_gen_config_add_stop_text(c, s.c_str(), e); });
    }
    GenConfig&& add_stop_text(std::string_view text) && { return std::move(add_stop_text(text)); }
    // Remove all stop sequences (tokens and texts).
    GenConfig& clear_stops() & { return set([&](auto c, auto e) { return specdec_gen_config_clear_stops(c, e); }); }
    GenConfig&& clear_stops() && { return std::move(clear_stops()); }

    // How the draft length is chosen (default DraftPolicy::Fixed).
    GenConfig& draft_policy(DraftPolicy p) & {
        return set([&](auto c, auto e) { return specdec_gen_config_set_draft_policy(c, static_cast<uint32_t>(p), e); });
    }
    GenConfig&& draft_policy(DraftPolicy p) && { return std::move(draft_policy(p)); }
    // Stop a round's drafting once the draft's top probability falls below p_min, in [0, 1]; 0 is
    // off (default). For score-based drafters (a draft model, counts); combines with any policy.
    GenConfig& confidence_stop(float p_min) & {
        return set([&](auto c, auto e) { return specdec_gen_config_set_confidence_stop(c, p_min, e); });
    }
    GenConfig&& confidence_stop(float p_min) && { return std::move(confidence_stop(p_min)); }
    // Most bytes the KV caches of one generator (target and draft) may use; 0 is no limit (default).
    // Generator::append throws SPECDEC_STATUS_MEMORY_BUDGET, changing nothing, for a request
    // (prompt + max_new_tokens + a round's proposals) that could outgrow it.
    GenConfig& kv_memory_limit(uint64_t bytes) & {
        return set([&](auto c, auto e) { return specdec_gen_config_set_kv_memory_limit(c, bytes, e); });
    }
    GenConfig&& kv_memory_limit(uint64_t bytes) && { return std::move(kv_memory_limit(bytes)); }
    // Record each generated token's log-probabilities with its `top_n` most likely alternatives
    // (Generator::logprobs; at most SPECDEC_MAX_LOGPROBS); 0 turns them off (default). Changes no
    // generated token.
    GenConfig& logprobs(uint32_t top_n) & {
        return set([&](auto c, auto e) { return specdec_gen_config_set_logprobs(c, top_n, e); });
    }
    GenConfig&& logprobs(uint32_t top_n) && { return std::move(logprobs(top_n)); }
    // Whether append() throws SPECDEC_STATUS_CONTEXT_LIMIT when fewer than max_new_tokens fit
    // after the prompt (default false: room for one token is enough).
    GenConfig& reserve_max_new_tokens(bool reserve) & {
        return set([&](auto c, auto e) { return specdec_gen_config_set_reserve_max_new_tokens(c, reserve, e); });
    }
    GenConfig&& reserve_max_new_tokens(bool reserve) && { return std::move(reserve_max_new_tokens(reserve)); }
    // Whether a generation filling the context ends with SPECDEC_FINISH_REASON_LENGTH (true) or
    // its next iteration throws SPECDEC_STATUS_CONTEXT_LIMIT (false, the default).
    GenConfig& finish_at_context_limit(bool finish) & {
        return set([&](auto c, auto e) { return specdec_gen_config_set_finish_at_context_limit(c, finish, e); });
    }
    GenConfig&& finish_at_context_limit(bool finish) && { return std::move(finish_at_context_limit(finish)); }

    // Getters (0 / false / empty for a moved-from GenConfig).
    uint32_t gamma() const noexcept { return specdec_gen_config_get_gamma(h_.get()); }
    float temperature() const noexcept { return specdec_gen_config_get_temperature(h_.get()); }
    uint32_t top_k() const noexcept { return specdec_gen_config_get_top_k(h_.get()); }
    float top_p() const noexcept { return specdec_gen_config_get_top_p(h_.get()); }
    float min_p() const noexcept { return specdec_gen_config_get_min_p(h_.get()); }
    float repetition_penalty() const noexcept { return specdec_gen_config_get_repetition_penalty(h_.get()); }
    float presence_penalty() const noexcept { return specdec_gen_config_get_presence_penalty(h_.get()); }
    float frequency_penalty() const noexcept { return specdec_gen_config_get_frequency_penalty(h_.get()); }
    // The logit bias, in the order set.
    std::vector<std::pair<uint32_t, float>> logit_bias() const {
        if (!h_) detail::throw_moved_from("GenConfig");
        size_t n = 0;
        detail::call([&](specdec_error** e) { return specdec_gen_config_get_logit_bias(h_.get(), nullptr, nullptr, 0, &n, e); });
        std::vector<uint32_t> ids(n);
        std::vector<float> values(n);
        if (n > 0) {
            detail::call([&](specdec_error** e) {
                return specdec_gen_config_get_logit_bias(h_.get(), ids.data(), values.data(), n, &n, e);
            });
        }
        std::vector<std::pair<uint32_t, float>> out;
        for (size_t i = 0; i < ids.size(); i++) out.emplace_back(ids[i], values[i]);
        return out;
    }
    uint64_t seed() const noexcept { return specdec_gen_config_get_seed(h_.get()); }
    uint32_t max_new_tokens() const noexcept { return specdec_gen_config_get_max_new_tokens(h_.get()); }
    DraftPolicy draft_policy() const noexcept { return static_cast<DraftPolicy>(specdec_gen_config_get_draft_policy(h_.get())); }
    float confidence_stop() const noexcept { return specdec_gen_config_get_confidence_stop(h_.get()); }
    uint64_t kv_memory_limit() const noexcept { return specdec_gen_config_get_kv_memory_limit(h_.get()); }
    uint32_t logprobs() const noexcept { return specdec_gen_config_get_logprobs(h_.get()); }
    bool reserve_max_new_tokens() const noexcept { return specdec_gen_config_get_reserve_max_new_tokens(h_.get()); }
    bool finish_at_context_limit() const noexcept { return specdec_gen_config_get_finish_at_context_limit(h_.get()); }
    // The EOS ids set with eos_ids(), or nullopt when the target's own apply (the default).
    std::optional<std::vector<uint32_t>> eos_ids() const {
        if (!h_) detail::throw_moved_from("GenConfig");
        const uint32_t* ids = nullptr;
        size_t n = 0;
        bool from_model = false;
        detail::call([&](specdec_error** e) { return specdec_gen_config_get_eos_ids(h_.get(), &ids, &n, &from_model, e); });
        if (from_model) return std::nullopt;
        return std::vector<uint32_t>(ids, ids + n);
    }
    // The stop sequences of tokens and the stop texts, in the order added.
    std::vector<std::vector<uint32_t>> stop_tokens() const {
        std::vector<std::vector<uint32_t>> out;
        size_t count = specdec_gen_config_get_stop_token_count(h_.get());
        for (size_t i = 0; i < count; i++) {
            const uint32_t* ids = nullptr;
            size_t n = 0;
            detail::call([&](specdec_error** e) { return specdec_gen_config_get_stop_tokens(h_.get(), i, &ids, &n, e); });
            out.emplace_back(ids, ids + n);
        }
        return out;
    }
    std::vector<std::string> stop_texts() const {
        std::vector<std::string> out;
        size_t count = specdec_gen_config_get_stop_text_count(h_.get());
        for (size_t i = 0; i < count; i++) {
            const char* t = specdec_gen_config_get_stop_text(h_.get(), i);
            out.emplace_back(t ? t : "");
        }
        return out;
    }

    // Take ownership of a config made with the C API (e.g. specdec_generator_get_config).
    static GenConfig adopt(specdec_gen_config* owned) noexcept { return GenConfig(owned); }

    const specdec_gen_config* get() const noexcept { return h_.get(); }
    explicit operator bool() const noexcept { return h_ != nullptr; }

private:
    explicit GenConfig(specdec_gen_config* owned) noexcept : h_(owned) {}

    template <class F>
    GenConfig& set(F&& f) {
        detail::call([&](specdec_error** e) { return f(h_.get(), e); });
        return *this;
    }

    std::unique_ptr<specdec_gen_config, detail::Deleter<specdec_gen_config, specdec_gen_config_free>> h_;
};

// ---------------------------------------------------------------------------------------------
// Drafters

// One round's question to a DraftCallback. The pointers view the library's memory and are valid
// only during the call.
struct DraftRequest {
    // The sequence so far: prompts and generated tokens.
    TokenSpan tokens;
    // Room for up to max_proposals tokens: write the proposals from index 0.
    uint32_t* proposals = nullptr;
    size_t max_proposals = 0;
    // The target's vocabulary size.
    size_t vocab_size = 0;
    // nullptr unless the drafter was made with probabilities; then max_proposals rows of
    // vocab_size floats: fill row i (prob_row(i)) with the distribution proposal i was sampled
    // from (giving it a positive probability, summing to 1).
    float* probs = nullptr;

    float* prob_row(size_t i) const noexcept { return probs ? probs + i * vocab_size : nullptr; }
};

// A draft source implemented by the host (Drafter::callback). propose() writes up to
// req.max_proposals tokens continuing req.tokens to req.proposals and returns how many (0 proposes
// nothing this round; more than max_proposals fails the round with SPECDEC_STATUS_INVALID_ARGUMENT).
// Whatever it proposes, the output stays exact. Throwing fails the round: the Generator call
// throws specdec::Error with SPECDEC_STATUS_CALLBACK nesting the exception, and the generator stays
// usable. It runs on the thread running the generator, possibly for several generators at once
// (so it must be thread-safe when shared), and must not use the generator that called it.
class DraftCallback {
public:
    virtual ~DraftCallback() = default;
    virtual size_t propose(const DraftRequest& req) = 0;
};

// The function form of a DraftCallback.
using DraftFunction = std::function<size_t(const DraftRequest&)>;

// Order of a counts drafter.
enum class CountsOrder : uint32_t { Unigram = 1, Bigram = 2 };

namespace detail {

class FunctionDraftCallback final : public DraftCallback {
public:
    explicit FunctionDraftCallback(DraftFunction f) : f_(std::move(f)) {}
    size_t propose(const DraftRequest& req) override { return f_(req); }

private:
    DraftFunction f_;
};

// The exception a DraftCallback threw on this thread during the C call in progress (the library
// calls a draft callback on the thread running the generator).
inline std::exception_ptr& draft_error() noexcept {
    static thread_local std::exception_ptr error;
    return error;
}

// Around a C call that may run draft callbacks: starts with an empty slot, restores the enclosing
// call's slot at the end (a callback may itself run another generator).
class DraftErrorScope {
public:
    DraftErrorScope() noexcept : saved_(std::exchange(draft_error(), nullptr)) {}
    ~DraftErrorScope() { draft_error() = std::move(saved_); }
    DraftErrorScope(const DraftErrorScope&) = delete;
    DraftErrorScope& operator=(const DraftErrorScope&) = delete;
    std::exception_ptr take() noexcept { return std::exchange(draft_error(), nullptr); }

private:
    std::exception_ptr saved_;
};

// As check(), but a failure with an exception from a draft callback throws
// specdec::Error(SPECDEC_STATUS_CALLBACK) nesting that exception.
inline void check_draft(specdec_status status, specdec_error* raw, std::exception_ptr cause) {
    if (status == SPECDEC_STATUS_OK || !cause) return check(status, raw);
    ErrorPtr err(raw);
    std::string message = err ? specdec_error_message(err.get()) : status_name(status);
    try {
        std::rethrow_exception(cause);
    } catch (const std::exception& e) {
        std::throw_with_nested(Error(SPECDEC_STATUS_CALLBACK, message + ": " + e.what()));
    } catch (...) {
        std::throw_with_nested(Error(SPECDEC_STATUS_CALLBACK, message + ": an exception of unknown type"));
    }
}

}  // namespace detail
}  // namespace specdec

// The C trampoline of callback drafters: user_data is the DraftCallback, kept alive by the Drafter
// and by every Generator made from it. Never lets an exception escape into specdec.
extern "C" inline int32_t specdec_cpp_draft_trampoline(void* user_data, const uint32_t* tokens, size_t n_tokens,
                                                       size_t max_proposals, size_t vocab_size, uint32_t* proposals,
                                                       float* probs) noexcept {
    try {
        specdec::DraftRequest req;
        req.tokens = specdec::TokenSpan(tokens, n_tokens);
        req.proposals = proposals;
        req.max_proposals = max_proposals;
        req.vocab_size = vocab_size;
        req.probs = probs;
        size_t n = static_cast<specdec::DraftCallback*>(user_data)->propose(req);
        return n > static_cast<size_t>(INT32_MAX) ? INT32_MAX : static_cast<int32_t>(n);
    } catch (...) {
        std::exception_ptr& slot = specdec::detail::draft_error();
        if (!slot) slot = std::current_exception();
        return -1;
    }
}

namespace specdec {

// A draft source for Generator(target, drafter, config): an ONNX draft model, n-gram prompt
// lookup, unigram/bigram counts, or a host DraftCallback. Owns one specdec_drafter; move-only.
// A recipe: every Generator made from it gets its own drafter state, so one Drafter serves many
// generators on many threads (const use). Generators keep what they need (a callback drafter's
// DraftCallback included), so the Drafter may be destroyed before them.
class Drafter {
public:
    // Drafts with the ONNX model `draft` (kept alive by the drafter), which must share the
    // target's vocabulary (SPECDEC_STATUS_VOCAB_MISMATCH when the Generator is made).
    static Drafter model(const Model& draft) {
        if (!draft) detail::throw_moved_from("Model (draft)");
        return make([&](specdec_drafter** out, specdec_error** e) { return specdec_drafter_new_model(draft.get(), out, e); });
    }

    // Prompt lookup: matches the last n tokens (n_max down to n_min) against the sequence so far
    // and proposes up to max_proposal tokens that followed the latest match. Throws
    // SPECDEC_STATUS_INVALID_ARGUMENT unless 1 <= n_min <= n_max <= 64, 1 <= max_proposal <= 64.
    static Drafter ngram(uint32_t n_min, uint32_t n_max, uint32_t max_proposal) {
        return make([&](specdec_drafter** out, specdec_error** e) {
            return specdec_drafter_new_ngram(n_min, n_max, max_proposal, out, e);
        });
    }

    // Unigram or bigram counts from `counts_path` (lines `<id> <count>` / `<prev> <id> <count>`,
    // as `specdec counts` writes), or, with an empty path, learnt from the sequence itself.
    // Throws SPECDEC_STATUS_INVALID_ARGUMENT (order), SPECDEC_STATUS_IO (unreadable, malformed).
    static Drafter counts(CountsOrder order, std::string_view counts_path = {}) {
        std::string path = detail::c_string(counts_path, "counts_path");
        return make([&](specdec_drafter** out, specdec_error** e) {
            return specdec_drafter_new_counts(static_cast<uint32_t>(order), counts_path.empty() ? nullptr : path.c_str(),
                                              out, e);
        });
    }

    // Asks `cb` each round. Without probabilities the proposals are verified as fixed tokens
    // (exact whatever they are); with them, `cb` fills DraftRequest::probs too.
    static Drafter callback(std::shared_ptr<DraftCallback> cb, bool with_probs = false) {
        if (!cb) throw Error(SPECDEC_STATUS_NULL_PARAMETER, "specdec::Drafter::callback: the DraftCallback is null");
        Drafter d = make([&](specdec_drafter** out, specdec_error** e) {
            return specdec_drafter_new_callback(&specdec_cpp_draft_trampoline, cb.get(), with_probs, out, e);
        });
        d.keep_ = std::move(cb);
        return d;
    }
    static Drafter callback(DraftFunction f, bool with_probs = false) {
        if (!f) throw Error(SPECDEC_STATUS_NULL_PARAMETER, "specdec::Drafter::callback: the function is empty");
        return callback(std::make_shared<detail::FunctionDraftCallback>(std::move(f)), with_probs);
    }

    const specdec_drafter* get() const noexcept { return h_.get(); }
    explicit operator bool() const noexcept { return h_ != nullptr; }

private:
    friend class Generator;

    template <class F>
    static Drafter make(F&& f) {
        detail::ensure_abi();
        specdec_drafter* out = nullptr;
        detail::call([&](specdec_error** e) { return f(&out, e); });
        Drafter d;
        d.h_.reset(out);
        return d;
    }
    Drafter() = default;

    // Declared before h_, so the native drafter goes first.
    std::shared_ptr<DraftCallback> keep_;
    std::unique_ptr<specdec_drafter, detail::Deleter<specdec_drafter, specdec_drafter_free>> h_;
};

// ---------------------------------------------------------------------------------------------
// Generator

namespace detail {

// What the C trampoline receives as user_data: a type-erased callable plus a slot for the
// exception it may throw.
struct CallbackState {
    bool (*invoke)(void* fn, const uint32_t* tokens, size_t n);  // may throw
    void* fn;
    std::exception_ptr error;
};

template <class F>
bool invoke_callback(void* fn, const uint32_t* tokens, size_t n) {
    F& f = *static_cast<F*>(fn);
    if constexpr (std::is_invocable_v<F&, TokenSpan>) {
        using R = std::invoke_result_t<F&, TokenSpan>;
        if constexpr (std::is_void_v<R>) {
            f(TokenSpan(tokens, n));
            return true;
        } else {
            return static_cast<bool>(f(TokenSpan(tokens, n)));
        }
    } else {
        static_assert(std::is_invocable_v<F&, const uint32_t*, size_t>,
                      "the generate() callback must be callable as f(specdec::TokenSpan) or "
                      "f(const uint32_t*, size_t), returning bool (false stops) or void");
        using R = std::invoke_result_t<F&, const uint32_t*, size_t>;
        if constexpr (std::is_void_v<R>) {
            f(tokens, n);
            return true;
        } else {
            return static_cast<bool>(f(tokens, n));
        }
    }
}

}  // namespace detail
}  // namespace specdec

// The C trampoline: C language linkage, never lets an exception escape into specdec (it would
// unwind through Rust frames, which is undefined behaviour). Returns non-zero to stop.
extern "C" inline int32_t specdec_cpp_token_trampoline(void* user_data, const uint32_t* tokens, size_t n) noexcept {
    auto* state = static_cast<specdec::detail::CallbackState*>(user_data);
    if (state->error) return 1;
    try {
        return state->invoke(state->fn, tokens, n) ? 0 : 1;
    } catch (...) {
        state->error = std::current_exception();
        return 1;
    }
}

namespace specdec {

// Generation statistics (the C struct, with struct_size already set).
using Stats = specdec_stats;
using FinishReason = specdec_finish_reason;
// One token's log-probabilities at one position, from the target's distribution there.
using Logprob = specdec_logprob;
// One round (iteration) of the current generation, timed from the generation's start.
using Round = specdec_round;

// The log-probabilities of a generation's last chosen.size() generated tokens (Generator::logprobs):
// chosen[i] belongs to token tokens().size() - chosen.size() + i; its top_n most likely
// alternatives, most likely first, are top[i * top_n, (i + 1) * top_n) (alternatives(i)).
struct Logprobs {
    std::vector<Logprob> chosen;
    std::vector<Logprob> top;
    size_t top_n = 0;

    size_t size() const noexcept { return chosen.size(); }
    bool empty() const noexcept { return chosen.empty(); }
    std::vector<Logprob> alternatives(size_t i) const {
        return std::vector<Logprob>(top.begin() + i * top_n, top.begin() + (i + 1) * top_n);
    }
};

// One sequence being generated, speculatively (with a draft model or any Drafter) or target-only.
// Owns one specdec_generator (with its KV caches); move-only. Not thread-safe: one thread at a time,
// except cancel(), which any thread may call while the Generator object exists. The generator
// keeps its models (and tokenizer) alive.
class Generator {
public:
    // `draft` may be nullptr (target-only decoding). The config is copied.
    // Throws SPECDEC_STATUS_VOCAB_MISMATCH, SPECDEC_STATUS_TOKEN_OUT_OF_RANGE (an EOS id),
    // SPECDEC_STATUS_INVALID_ARGUMENT, SPECDEC_STATUS_INFERENCE, SPECDEC_STATUS_NULL_PARAMETER
    // (a moved-from argument: the C call would silently read NULL as "no draft"/"defaults").
    Generator(const Model& target, const Model* draft = nullptr, const GenConfig& config = GenConfig()) {
        if (!target) detail::throw_moved_from("Model (target)");
        if (draft && !*draft) detail::throw_moved_from("Model (draft)");
        if (!config) detail::throw_moved_from("GenConfig");
        specdec_generator* out = nullptr;
        detail::call([&](specdec_error** e) {
            return specdec_generator_new(target.get(), draft ? draft->get() : nullptr, config.get(), &out, e);
        });
        h_.reset(out);
    }

    // A generator over `target` drafting with `drafter` (see Drafter); the config is copied.
    // Throws as the constructor above, and SPECDEC_STATUS_NULL_PARAMETER for a moved-from Drafter.
    Generator(const Model& target, const Drafter& drafter, const GenConfig& config = GenConfig()) {
        if (!target) detail::throw_moved_from("Model (target)");
        if (!drafter) detail::throw_moved_from("Drafter");
        if (!config) detail::throw_moved_from("GenConfig");
        specdec_generator* out = nullptr;
        detail::call([&](specdec_error** e) {
            return specdec_generator_new_with_drafter(target.get(), drafter.get(), config.get(), &out, e);
        });
        keep_ = drafter.keep_;
        h_.reset(out);
    }

    // Take ownership of a generator made with the C API (specdec_generator_new,
    // specdec_generator_new_with_drafter). Whatever its drafter's callback needs must outlive it.
    static Generator adopt(specdec_generator* owned) noexcept { return Generator(owned); }

    // Match text stop sequences with `tokenizer` (kept alive by the generator).
    void set_tokenizer(const Tokenizer& tokenizer) {
        if (!tokenizer) detail::throw_moved_from("Tokenizer");
        detail::call([&](specdec_error** e) { return specdec_generator_set_tokenizer(h_.get(), tokenizer.get(), e); });
    }

    // Append prompt tokens (a first prompt or a follow-up turn) and start a new generation.
    // All or nothing. Throws SPECDEC_STATUS_TOKEN_OUT_OF_RANGE, SPECDEC_STATUS_CONTEXT_LIMIT.
    void append(TokenSpan ids) {
        detail::call([&](specdec_error** e) { return specdec_generator_append_tokens(h_.get(), ids.data, ids.size, e); });
    }
    void append(const uint32_t* ids, size_t n) { append(TokenSpan(ids, n)); }

    // One iteration; returns the tokens it added (empty once finished). Throws
    // SPECDEC_STATUS_INVALID_ARGUMENT (no prompt), SPECDEC_STATUS_CANCELLED,
    // SPECDEC_STATUS_CONTEXT_LIMIT, SPECDEC_STATUS_INFERENCE, SPECDEC_STATUS_CALLBACK (a
    // DraftCallback failed; its exception is nested).
    std::vector<uint32_t> step() {
        const uint32_t* tokens = nullptr;
        size_t n = 0;
        detail::DraftErrorScope scope;
        specdec_error* raw = nullptr;
        specdec_status st = specdec_generator_step(h_.get(), &tokens, &n, &raw);
        detail::check_draft(st, raw, scope.take());
        return std::vector<uint32_t>(tokens, tokens + n);
    }

    // Generate until EOS, a stop sequence or max_new_tokens; returns why it ended.
    FinishReason generate() {
        FinishReason reason = SPECDEC_FINISH_REASON_NONE;
        detail::DraftErrorScope scope;
        specdec_error* raw = nullptr;
        specdec_status st = specdec_generator_generate(h_.get(), nullptr, nullptr, &reason, &raw);
        detail::check_draft(st, raw, scope.take());
        return reason;
    }

    // As generate(), calling `on_tokens` with each iteration's tokens. `on_tokens` is any callable
    // taking (specdec::TokenSpan) or (const uint32_t*, size_t), returning bool (false stops:
    // SPECDEC_FINISH_REASON_STOPPED) or void. The tokens are valid only during the call. If it
    // throws, generation stops and the exception is rethrown here, unchanged; the generator stays
    // usable (its finish reason is STOPPED, the tokens so far are kept).
    template <class F>
    FinishReason generate(F&& on_tokens) {
        using Fn = std::remove_reference_t<F>;
        if constexpr (std::is_function_v<Fn>) {
            return generate(&on_tokens);  // a plain function: go through its pointer
        } else {
            return generate_with(std::addressof(on_tokens));
        }
    }

    // Ask a running or future generation to stop: its next iteration throws
    // SPECDEC_STATUS_CANCELLED (the request is then consumed and the generator stays usable;
    // append() clears a pending one). Thread-safe, never throws.
    void cancel() const noexcept { specdec_generator_cancel(h_.get()); }

    // Withdraw a cancellation request no iteration has consumed yet (for example one that arrived
    // just after a generation's last iteration had begun), so that it cannot cancel a later call.
    // Thread-safe, never throws.
    void clear_cancel() const noexcept { specdec_generator_clear_cancel(h_.get()); }

    // The whole sequence: prompts and generated tokens.
    std::vector<uint32_t> tokens() const {
        const uint32_t* tokens = nullptr;
        size_t n = 0;
        detail::call([&](specdec_error** e) { return specdec_generator_tokens(h_.get(), &tokens, &n, e); });
        return std::vector<uint32_t>(tokens, tokens + n);
    }

    // Why the current generation ended (SPECDEC_FINISH_REASON_NONE while it runs or has not).
    FinishReason finish_reason() const noexcept { return specdec_generator_finish_reason(h_.get()); }

    // Cumulative counters and timings.
    Stats stats() const {
        Stats s{};
        s.struct_size = sizeof(Stats);
        detail::call([&](specdec_error** e) { return specdec_generator_stats(h_.get(), &s, e); });
        return s;
    }

    // The log-probabilities of the current generation's tokens (GenConfig::logprobs turns them
    // on; empty when off). Throws SPECDEC_STATUS_BUSY.
    Logprobs logprobs() const {
        const Logprob* chosen = nullptr;
        const Logprob* top = nullptr;
        size_t n = 0, top_n = 0;
        detail::call([&](specdec_error** e) { return specdec_generator_logprobs(h_.get(), &chosen, &n, &top, &top_n, e); });
        Logprobs out;
        out.chosen.assign(chosen, chosen + n);
        if (top && n && top_n) out.top.assign(top, top + n * top_n);
        out.top_n = top_n;
        return out;
    }

    // Rounds of the current generation so far, and one of them.
    size_t round_count() const noexcept { return specdec_generator_round_count(h_.get()); }
    Round round(size_t index) const {
        Round r{};
        r.struct_size = sizeof(Round);
        detail::call([&](specdec_error** e) { return specdec_generator_round(h_.get(), index, &r, e); });
        return r;
    }
    std::vector<Round> rounds() const {
        std::vector<Round> out;
        size_t n = round_count();
        for (size_t i = 0; i < n; i++) out.push_back(round(i));
        return out;
    }

    // Tokens that still fit in the context after the sequence.
    size_t context_room() const noexcept { return specdec_generator_context_room(h_.get()); }

    // Keep the first `n_tokens` tokens and forget the rest (KV caches too); within the current
    // generation it continues from there, within the prompt the next generation starts after it.
    // Throws SPECDEC_STATUS_INVALID_ARGUMENT (beyond the sequence; nothing changes).
    void rewind(size_t n_tokens) {
        detail::call([&](specdec_error** e) { return specdec_generator_rewind(h_.get(), n_tokens, e); });
    }

    // Replace the settings (between turns or iterations) with a copy of `config`; all or nothing.
    void set_config(const GenConfig& config) {
        if (!config) detail::throw_moved_from("GenConfig");
        detail::call([&](specdec_error** e) { return specdec_generator_set_config(h_.get(), config.get(), e); });
    }
    // A copy of the current settings: change some and pass them to set_config().
    GenConfig config() const {
        specdec_gen_config* out = nullptr;
        detail::call([&](specdec_error** e) { return specdec_generator_get_config(h_.get(), &out, e); });
        return GenConfig::adopt(out);
    }

    // Feed the sequence to both models now, so that the next iteration or a fork() only computes
    // what follows.
    void prefill() {
        detail::call([&](specdec_error** e) { return specdec_generator_prefill(h_.get(), e); });
    }

    // A new generator holding the first `n_tokens` tokens, their KV copied, starting a generation
    // after them; with this generator's settings, or `config`. This one is not changed. Throws
    // SPECDEC_STATUS_INVALID_ARGUMENT, SPECDEC_STATUS_CONTEXT_LIMIT, SPECDEC_STATUS_MEMORY_BUDGET,
    // SPECDEC_STATUS_UNAVAILABLE (a drafter that cannot be forked), SPECDEC_STATUS_BUSY.
    Generator fork(size_t n_tokens) const { return fork_with(n_tokens, nullptr); }
    Generator fork(size_t n_tokens, const GenConfig& config) const {
        if (!config) detail::throw_moved_from("GenConfig");
        return fork_with(n_tokens, config.get());
    }

    const specdec_generator* get() const noexcept { return h_.get(); }
    explicit operator bool() const noexcept { return h_ != nullptr; }

private:
    Generator fork_with(size_t n_tokens, const specdec_gen_config* config) const {
        specdec_generator* out = nullptr;
        detail::call([&](specdec_error** e) { return specdec_generator_fork(h_.get(), n_tokens, config, &out, e); });
        Generator g(out);
        g.keep_ = keep_;
        return g;
    }

    template <class Fn>
    FinishReason generate_with(Fn* fn) {
        detail::CallbackState state{&detail::invoke_callback<Fn>, const_cast<void*>(static_cast<const void*>(fn)),
                                    nullptr};
        FinishReason reason = SPECDEC_FINISH_REASON_NONE;
        specdec_error* raw = nullptr;
        detail::DraftErrorScope scope;
        specdec_status st = specdec_generator_generate(h_.get(), &specdec_cpp_token_trampoline, &state, &reason, &raw);
        if (state.error) {
            specdec_error_free(raw);
            std::rethrow_exception(state.error);
        }
        detail::check_draft(st, raw, scope.take());
        return reason;
    }

    explicit Generator(specdec_generator* owned) noexcept : h_(owned) {}

    // What a callback drafter's native state points at; declared before h_, so the native
    // generator goes first.
    std::shared_ptr<DraftCallback> keep_;
    std::unique_ptr<specdec_generator, detail::Deleter<specdec_generator, specdec_generator_free>> h_;
};

// "none", "eos", "max_tokens", "stop_sequence", "stopped", "length", "cancelled".
inline const char* finish_reason_name(FinishReason r) noexcept {
    switch (r) {
        case SPECDEC_FINISH_REASON_NONE: return "none";
        case SPECDEC_FINISH_REASON_EOS: return "eos";
        case SPECDEC_FINISH_REASON_MAX_TOKENS: return "max_tokens";
        case SPECDEC_FINISH_REASON_STOP_SEQUENCE: return "stop_sequence";
        case SPECDEC_FINISH_REASON_STOPPED: return "stopped";
        case SPECDEC_FINISH_REASON_LENGTH: return "length";
        case SPECDEC_FINISH_REASON_CANCELLED: return "cancelled";
    }
    return "unknown";
}

// ---------------------------------------------------------------------------------------------
// Engine

// A sequence's id in an Engine.
using SeqId = uint64_t;
// An engine's counters (the C struct, with struct_size already set by Engine::stats()).
using EngineStats = specdec_engine_stats;

// A sequence's state in an Engine.
enum class SeqState : uint32_t {
    Waiting = SPECDEC_SEQ_STATE_WAITING,    // added, waiting for a slot
    Running = SPECDEC_SEQ_STATE_RUNNING,    // in the running batch
    Finished = SPECDEC_SEQ_STATE_FINISHED,  // ended (see the finish reason)
    Failed = SPECDEC_SEQ_STATE_FAILED,      // ended by an error
};

// What Engine::add does when the KV memory limit has no room for a sequence now: queue (Wait, the
// default) or refuse (Refuse: SPECDEC_STATUS_MEMORY_BUDGET). A full batch always queues.
enum class Admission : uint32_t {
    Wait = SPECDEC_ADMISSION_WAIT,
    Refuse = SPECDEC_ADMISSION_REFUSE,
};

// An engine's settings, builder style:
//   auto opts = specdec::EngineOptions().max_batch(8).kv_memory_limit(256 << 20);
// The engine copies them when created. Not thread-safe while being modified.
class EngineOptions {
public:
    EngineOptions() : h_(specdec_engine_options_new()) {
        if (!h_) throw Error(SPECDEC_STATUS_PANIC, "specdec_engine_options_new failed");
    }

    // Most sequences running at once (the rows of one batched round).
    EngineOptions& max_batch(uint32_t rows) & {
        return set([&](auto o, auto e) { return specdec_engine_options_set_max_batch(o, rows, e); });
    }
    EngineOptions&& max_batch(uint32_t rows) && { return std::move(max_batch(rows)); }
    // Bytes of KV cache all sequences may hold together (0: no limit).
    EngineOptions& kv_memory_limit(uint64_t total_bytes) & {
        return set([&](auto o, auto e) { return specdec_engine_options_set_kv_memory_limit(o, total_bytes, e); });
    }
    EngineOptions&& kv_memory_limit(uint64_t total_bytes) && { return std::move(kv_memory_limit(total_bytes)); }
    // Queue or refuse sequences that do not fit.
    EngineOptions& admission(Admission mode) & {
        return set([&](auto o, auto e) {
            return specdec_engine_options_set_admission(o, static_cast<specdec_admission>(mode), e);
        });
    }
    EngineOptions&& admission(Admission mode) && { return std::move(admission(mode)); }

    const specdec_engine_options* get() const noexcept { return h_.get(); }
    explicit operator bool() const noexcept { return h_ != nullptr; }

private:
    template <class F>
    EngineOptions& set(F&& f) {
        if (!h_) detail::throw_moved_from("EngineOptions");
        detail::call([&](specdec_error** e) { return f(h_.get(), e); });
        return *this;
    }

    std::unique_ptr<specdec_engine_options, detail::Deleter<specdec_engine_options, specdec_engine_options_free>> h_;
};

// What Engine::poll returns: the tokens since the previous poll, the state, the finish reason, and
// for a failed sequence (once its tokens are drained) its error.
struct PollResult {
    std::vector<uint32_t> tokens;
    SeqState state = SeqState::Waiting;
    FinishReason reason = SPECDEC_FINISH_REASON_NONE;
    std::optional<Error> error;

    bool done() const noexcept { return state == SeqState::Finished || state == SeqState::Failed; }
};

// Many sequences over one pair of models, one batched round (step()) at a time. Move-only.
// Thread-safe: one thread may call step() in a loop while others add(), poll(), cancel() and
// remove() (which do not wait for a running step); a second concurrent step() throws
// SPECDEC_STATUS_BUSY. Do not move or destroy it while another thread uses it.
class Engine {
public:
    // `draft` may be nullptr (target-only decoding). Throws SPECDEC_STATUS_VOCAB_MISMATCH,
    // SPECDEC_STATUS_INVALID_ARGUMENT, SPECDEC_STATUS_NULL_PARAMETER (a moved-from argument).
    explicit Engine(const Model& target, const Model* draft = nullptr, const EngineOptions& options = EngineOptions()) {
        if (!target) detail::throw_moved_from("Model (target)");
        if (draft && !*draft) detail::throw_moved_from("Model (draft)");
        if (!options) detail::throw_moved_from("EngineOptions");
        specdec_engine* out = nullptr;
        detail::call([&](specdec_error** e) {
            return specdec_engine_new(target.get(), draft ? draft->get() : nullptr, options.get(), &out, e);
        });
        h_.reset(out);
    }

    // Match text stop sequences with `tokenizer` (kept alive by the engine).
    void set_tokenizer(const Tokenizer& tokenizer) {
        if (!tokenizer) detail::throw_moved_from("Tokenizer");
        detail::call([&](specdec_error** e) { return specdec_engine_set_tokenizer(h_.get(), tokenizer.get(), e); });
    }

    // Queue a sequence: `prompt`, then a generation with `config` (copied). Returns its id at once.
    // Throws SPECDEC_STATUS_TOKEN_OUT_OF_RANGE, SPECDEC_STATUS_CONTEXT_LIMIT,
    // SPECDEC_STATUS_INVALID_ARGUMENT, SPECDEC_STATUS_MEMORY_BUDGET (more than the KV limits could
    // ever hold; under Admission::Refuse, more than the engine's limit has room for now).
    SeqId add(TokenSpan prompt, const GenConfig& config = GenConfig()) {
        if (!config) detail::throw_moved_from("GenConfig");
        uint64_t id = 0;
        detail::call([&](specdec_error** e) {
            return specdec_engine_add(h_.get(), prompt.data, prompt.size, config.get(), &id, e);
        });
        return id;
    }

    // End a sequence before the next round (SPECDEC_FINISH_REASON_CANCELLED; its KV caches are
    // freed; its tokens stay readable until remove()). Throws for an unknown id.
    void cancel(SeqId id) {
        detail::call([&](specdec_error** e) { return specdec_engine_cancel(h_.get(), id, e); });
    }

    // One round over every running sequence; returns how many are still active.
    size_t step() {
        size_t n = 0;
        detail::call([&](specdec_error** e) { return specdec_engine_step(h_.get(), &n, e); });
        return n;
    }

    // The tokens since the previous poll, and the sequence's state. A failed sequence's error is
    // in the result (not thrown) once its tokens are drained; an unknown id throws.
    PollResult poll(SeqId id) {
        PollResult out;
        std::vector<uint32_t> buf(256);
        for (;;) {
            size_t n = 0;
            specdec_seq_state state = SPECDEC_SEQ_STATE_WAITING;
            FinishReason reason = SPECDEC_FINISH_REASON_NONE;
            specdec_error* raw = nullptr;
            specdec_status st =
                specdec_engine_poll(h_.get(), id, buf.data(), buf.size(), &n, &state, &reason, &raw);
            if (st == SPECDEC_STATUS_BUFFER_TOO_SMALL && n > buf.size()) {
                specdec_error_free(raw);
                buf.resize(n);
                continue;
            }
            n = n < buf.size() ? n : buf.size();
            out.tokens.insert(out.tokens.end(), buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(n));
            out.state = static_cast<SeqState>(state);
            out.reason = reason;
            if (st != SPECDEC_STATUS_OK) {
                if (out.state != SeqState::Failed) detail::check(st, raw);  // throws
                try {
                    detail::check(st, raw);
                } catch (const Error& e) {
                    out.error = e;
                }
                return out;
            }
            specdec_error_free(raw);
            if (n < buf.size()) return out;
        }
    }

    // Forget a sequence (cancelling it if it runs) and free what it holds.
    void remove(SeqId id) {
        detail::call([&](specdec_error** e) { return specdec_engine_remove(h_.get(), id, e); });
    }

    // One sequence's counters and timings.
    Stats seq_stats(SeqId id) const {
        Stats s{};
        s.struct_size = sizeof(Stats);
        detail::call([&](specdec_error** e) { return specdec_engine_seq_stats(h_.get(), id, &s, e); });
        return s;
    }

    // The engine's counters.
    EngineStats stats() const {
        EngineStats s{};
        s.struct_size = sizeof(EngineStats);
        detail::call([&](specdec_error** e) { return specdec_engine_get_stats(h_.get(), &s, e); });
        return s;
    }

    const specdec_engine* get() const noexcept { return h_.get(); }
    explicit operator bool() const noexcept { return h_ != nullptr; }

private:
    std::unique_ptr<specdec_engine, detail::Deleter<specdec_engine, specdec_engine_free>> h_;
};

inline const char* seq_state_name(SeqState s) noexcept {
    switch (s) {
        case SeqState::Waiting: return "waiting";
        case SeqState::Running: return "running";
        case SeqState::Finished: return "finished";
        case SeqState::Failed: return "failed";
    }
    return "unknown";
}

// ---------------------------------------------------------------------------------------------
// Logging

// Severity of a log message, and the threshold of set_log_level().
enum class LogLevel : uint32_t {
    Verbose = SPECDEC_LOG_LEVEL_VERBOSE,
    Info = SPECDEC_LOG_LEVEL_INFO,
    Warning = SPECDEC_LOG_LEVEL_WARNING,
    Error = SPECDEC_LOG_LEVEL_ERROR,
    Fatal = SPECDEC_LOG_LEVEL_FATAL,
    Off = SPECDEC_LOG_LEVEL_OFF,  // as a threshold: no message at all
};

// The threshold of every message, specdec's and ONNX Runtime's (Off silences both). Thread-safe,
// allowed from a log callback. Throws SPECDEC_STATUS_INVALID_ARGUMENT for an unknown level.
inline void set_log_level(LogLevel level) {
    detail::call([&](specdec_error** e) { return specdec_set_log_level(static_cast<uint32_t>(level), e); });
}
// The threshold of specdec's own messages (Warning until set_log_level()).
inline LogLevel log_level() noexcept { return static_cast<LogLevel>(specdec_get_log_level()); }

// Receives one message: severity, source ("specdec" or "onnxruntime") and text (valid during the
// call). Called from any thread, several at once: it must be thread-safe. An exception it throws
// is swallowed (it never crosses the C boundary). It must not call set_log_callback().
using LogCallback = std::function<void(LogLevel level, std::string_view source, std::string_view message)>;

namespace detail {
struct LogState {
    std::mutex mu;
    std::unique_ptr<LogCallback> current;
};
inline LogState& log_state() {
    static LogState* s = new LogState();  // never destroyed: the library may log at exit
    return *s;
}
}  // namespace detail

}  // namespace specdec

extern "C" inline void specdec_cpp_log_trampoline(void* user_data, specdec_log_level level, const char* source,
                                                  const char* message) noexcept {
    try {
        (*static_cast<specdec::LogCallback*>(user_data))(static_cast<specdec::LogLevel>(level),
                                                         source ? source : "", message ? message : "");
    } catch (...) {
    }
}

namespace specdec {

// Send every message that passes the threshold to `callback` (kept until replaced); an empty one
// restores the default (a line per message on stderr). Waits for running calls of the previous
// callback. Throws SPECDEC_STATUS_BUSY from inside a log callback.
inline void set_log_callback(LogCallback callback) {
    auto& st = detail::log_state();
    std::lock_guard<std::mutex> lock(st.mu);
    std::unique_ptr<LogCallback> next = callback ? std::make_unique<LogCallback>(std::move(callback)) : nullptr;
    detail::call([&](specdec_error** e) {
        return specdec_set_log_callback(next ? &specdec_cpp_log_trampoline : nullptr, next.get(), e);
    });
    st.current = std::move(next);  // the library no longer calls the old one
}

}  // namespace specdec

#endif  // SPECDEC_HPP
