// Package specdec is the Go binding of specdec, exact speculative decoding over ONNX Runtime.
//
// It wraps the library's C ABI (include/specdec.h) with cgo. A draft model proposes a few tokens,
// the target model verifies them in one call, and the output is exactly what the target alone
// would have produced (token for token when greedy, in distribution when sampling).
//
//	target, err := specdec.LoadModel("models/demo/target")
//	...
//	defer target.Close()
//	draft, err := specdec.LoadModel("models/demo/draft")
//	...
//	gen, err := specdec.NewGenerator(target, draft, specdec.WithGamma(4), specdec.WithMaxNewTokens(64))
//	...
//	defer gen.Close()
//	err = gen.Append(promptIDs)
//	reason, err := gen.Generate(ctx, func(tokens []uint32) bool { ...; return true })
//
// # Draft sources and policies
//
// NewGenerator drafts with a draft model. NewGeneratorWithDrafter takes any Drafter: a draft model
// (NewModelDrafter), n-gram prompt lookup (NewNGramDrafter), unigram or bigram counts
// (NewCountsDrafter), or the host's own DraftCallback (NewCallbackDrafter). WithDraftPolicy
// (DraftPolicyFixed, DraftPolicyHeuristic, DraftPolicyAuto), WithConfidenceStop and
// WithKVMemoryLimit tune a generation; WithVariant, WithIOBinding, WithCUDAFallback, WithSpinning
// and WithOptimizationLevel tune a model's loading.
//
// # Batch engine
//
// NewEngine runs many sequences over one model pair, one batched round per Engine.Step: the
// target verifies every running sequence's proposals in one call. Add queues a sequence (with the
// same GenerateOptions as a Generator), Poll drains its new tokens, Cancel ends it, Remove frees
// it; one goroutine steps while others add and poll (all its methods are safe for concurrent
// use). Greedy output equals a Generator's on the same prompt. examples/server serves
// OpenAI-style completions over it.
//
// # Errors
//
// Every failure of the library is returned as an *Error holding the library's status code and
// message. Compare with errors.Is against the sentinels (ErrIO, ErrVocabMismatch, ...), which match
// on the code alone. Cancellation through a context returns an error that matches both
// ErrCancelled and the context's error (context.Canceled or context.DeadlineExceeded).
//
// # Concurrency
//
// Models and tokenizers are immutable and safe for concurrent use by many goroutines (the C library
// serialises the ONNX Runtime calls of one model internally): load a pair of models once and create
// one Generator per concurrent sequence. A Generator is NOT meant for concurrent use: it holds one
// sequence, and interleaving calls from several goroutines gives an unspecified order. Its calls are
// serialised by a mutex, so such misuse cannot corrupt memory. Generator.Cancel is the exception: it
// may be called from any goroutine at any time.
//
// # Resources
//
// Model, Tokenizer, Generator, Engine and StreamDecoder hold native memory. Call Close when done (Close is
// idempotent). A finalizer frees objects that were never closed, but only as a safety net: native
// memory is invisible to the Go garbage collector, which may therefore run it late.
//
// # Linking
//
// By default the cgo directives point at the source checkout (include/ and target/release/, with an
// rpath; see cgo_checkout.go). For an installed library (the dist tarball ships
// lib/pkgconfig/specdec.pc), build with -tags specdec_pkgconfig and PKG_CONFIG_PATH set, or add
// CGO_CFLAGS/CGO_LDFLAGS, which come before the directives' flags:
//
//	CGO_CFLAGS="$(pkg-config --cflags specdec)" CGO_LDFLAGS="$(pkg-config --libs specdec)" go build
//
// and make libspecdec.so.1 findable at run time (an rpath in CGO_LDFLAGS, LD_LIBRARY_PATH, or the
// system library path). ONNX Runtime is loaded by libspecdec itself at run time: see RuntimeInit.
package specdec
