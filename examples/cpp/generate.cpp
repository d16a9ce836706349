// Speculative generation from C++ with the RAII wrapper (bindings/cpp/specdec.hpp).
//
//   generate [TARGET_DIR [DRAFT_DIR [PROMPT [MAX_NEW_TOKENS]]]]
//
// Defaults: models/demo/target, models/demo/draft, "Once upon a time", 64. DRAFT_DIR "ngram"
// drafts by n-gram prompt lookup instead of a draft model; both run under the auto draft-length
// policy. The tokenizer is the target's. The continuation is streamed to stdout as it is generated; statistics go to stderr.
// Build: see scripts/check-cpp.sh.

#include "specdec.hpp"

#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <string>

int main(int argc, char** argv) {
    const std::string target_path = argc > 1 ? argv[1] : "models/demo/target";
    const std::string draft_path = argc > 2 ? argv[2] : "models/demo/draft";
    const std::string prompt = argc > 3 ? argv[3] : "Once upon a time";
    const uint32_t max_new_tokens = argc > 4 ? static_cast<uint32_t>(std::strtoul(argv[4], nullptr, 10)) : 64;

    try {
        specdec::Model target = specdec::Model::load(target_path);
        specdec::Drafter drafter = draft_path == "ngram" ? specdec::Drafter::ngram(2, 4, 8)
                                                         : specdec::Drafter::model(specdec::Model::load(draft_path));
        specdec::Tokenizer tokenizer = specdec::Tokenizer::load(target_path);

        specdec::Generator gen(target, drafter,
                               specdec::GenConfig().gamma(4).max_new_tokens(max_new_tokens).draft_policy(specdec::DraftPolicy::Auto));
        gen.append(tokenizer.encode(prompt));

        std::cout << prompt << std::flush;
        specdec::StreamDecoder stream(tokenizer);
        gen.generate([&](specdec::TokenSpan tokens) {
            std::cout << stream.push(tokens) << std::flush;  // whole UTF-8 characters only
            return true;                                      // keep going
        });
        std::cout << stream.flush() << std::endl;

        const specdec::Stats s = gen.stats();
        std::fprintf(stderr, "finish: %s | %llu tokens in %.3f s | acceptance rate %.1f%% (%.1f%% per verified position) | %.2f tokens "
                     "per target call\n",
                     specdec::finish_reason_name(gen.finish_reason()), static_cast<unsigned long long>(s.new_tokens),
                     s.total_seconds, 100.0 * s.acceptance_rate, 100.0 * s.alpha, s.tokens_per_target_call);
        return 0;
    } catch (const specdec::Error& e) {
        std::fprintf(stderr, "specdec error %s (%u): %s\n", e.code_name(), static_cast<unsigned>(e.code()), e.what());
        return 1;
    }
}
