// Command server is an OpenAI-style completion server over the specdec Go binding: many
// concurrent requests share one batched specdec.Engine (--mode=engine, one goroutine steps it), or
// each request gets its own specdec.Generator over the shared models (--mode=generator, for
// comparison).
//
//	go build -tags specdec_checkout -o server .   # after make build; or pkg-config, see bindings/go
//	./server --target ../../models/demo/target --draft ../../models/demo/draft --addr 127.0.0.1:8080
//	curl -s localhost:8080/v1/completions -d '{"prompt":"def fib(n):","max_tokens":32,"temperature":0}'
//	curl -sN localhost:8080/v1/completions -d '{"prompt":"import os","max_tokens":32,"stream":true}'
//	curl -s localhost:8080/metrics
//
// Endpoints: POST /v1/completions (prompt, max_tokens, temperature, top_p, stop, seed, stream, n=1;
// extensions top_k and return_token_ids), GET /metrics (Prometheus text), GET /health. A client
// that disconnects cancels its sequence, which frees its slot.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/specdec/specdec/bindings/go/specdec"
)

type server struct {
	mode      string
	modelName string
	tok       *specdec.Tokenizer
	ctxLimit  int
	gamma     int
	kvLimit   uint64 // --kv-limit (0: none)
	kvPerTok  uint64 // KV bytes per token, target and draft together
	be        backend

	inflight atomic.Int64
	tokens   atomic.Uint64 // generated tokens delivered to clients
	outcomes sync.Map      // outcome name -> *atomic.Uint64
	rate     *rateMeter
}

func main() {
	target := flag.String("target", "models/demo/target", "target model folder (its tokenizer.json is the tokenizer)")
	draft := flag.String("draft", "", "draft model folder (empty: target-only decoding)")
	addr := flag.String("addr", "127.0.0.1:8080", "listen address")
	mode := flag.String("mode", "engine", "engine (one batched engine) or generator (one generator per request)")
	maxBatch := flag.Int("max-batch", 16, "most sequences running at once (the others wait)")
	kvLimit := flag.Uint64("kv-limit", 0, "KV cache bytes for all sequences together (0: no limit)")
	refuse := flag.Bool("refuse", false, "engine mode: answer 429 when full instead of queueing")
	gamma := flag.Int("gamma", 3, "draft tokens per round")
	threads := flag.Int("threads", 1, "ONNX Runtime intra-op threads per model (0: its choice)")
	name := flag.String("model-name", "", "model name in responses (default: the target folder's name)")
	flag.Parse()
	if *mode != "engine" && *mode != "generator" {
		fmt.Fprintf(os.Stderr, "server: --mode must be engine or generator, not %q\n", *mode)
		os.Exit(2)
	}

	s, cleanup, err := setup(*target, *draft, *mode, *maxBatch, *kvLimit, *refuse, *gamma, *threads)
	if err != nil {
		log.Fatalf("server: %v", err)
	}
	if *name != "" {
		s.modelName = *name
	}

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatalf("server: %v", err)
	}
	srv := &http.Server{Handler: s.routes(), ReadHeaderTimeout: 10 * time.Second}
	// The load test reads the bound address from this line (with --addr 127.0.0.1:0).
	fmt.Printf("listening on http://%s (mode %s, model %s, max batch %d)\n", ln.Addr(), *mode, s.modelName, *maxBatch)

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sigs
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Fatalf("server: %v", err)
	}
	cleanup()
}

func setup(targetPath, draftPath, mode string, maxBatch int, kvLimit uint64, refuse bool, gamma, threads int) (*server, func(), error) {
	target, err := specdec.LoadModel(targetPath, specdec.WithIntraThreads(threads))
	if err != nil {
		return nil, nil, fmt.Errorf("loading the target: %w", err)
	}
	var draft *specdec.Model
	if draftPath != "" {
		if draft, err = specdec.LoadModel(draftPath, specdec.WithIntraThreads(threads)); err != nil {
			return nil, nil, fmt.Errorf("loading the draft: %w", err)
		}
	}
	tok, err := specdec.LoadTokenizer(targetPath)
	if err != nil {
		return nil, nil, fmt.Errorf("loading the tokenizer: %w", err)
	}
	s := &server{mode: mode, modelName: filepath.Base(filepath.Clean(targetPath)), tok: tok,
		ctxLimit: target.ContextLimit(), gamma: gamma, rate: newRateMeter(10 * time.Second),
		kvLimit: kvLimit, kvPerTok: uint64(target.KVBytesPerToken())}
	if draft != nil {
		s.kvPerTok += uint64(draft.KVBytesPerToken())
	}
	if mode == "engine" {
		if s.be, err = newEngineBackend(target, draft, tok, maxBatch, kvLimit, refuse); err != nil {
			return nil, nil, fmt.Errorf("creating the engine: %w", err)
		}
	} else {
		s.be = newGeneratorBackend(target, draft, tok, maxBatch, kvLimit)
	}
	cleanup := func() {
		s.be.close()
		tok.Close()
		draft.Close()
		target.Close()
	}
	return s, cleanup, nil
}

func (s *server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/v1/completions", s.handleCompletions)
	mux.HandleFunc("/metrics", s.handleMetrics)
	mux.HandleFunc("/health", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, "{\"status\":\"ok\",\"mode\":%q}\n", s.mode)
	})
	return mux
}

func (s *server) count(outcome string) {
	v, _ := s.outcomes.LoadOrStore(outcome, new(atomic.Uint64))
	v.(*atomic.Uint64).Add(1)
}

func newID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return "cmpl-" + hex.EncodeToString(b[:])
}

// finishName maps the library's reason to OpenAI's.
func finishName(r specdec.FinishReason) string {
	switch r {
	case specdec.FinishMaxTokens, specdec.FinishLength:
		return "length"
	}
	return "stop"
}

// errClientGone: writing to a streaming client failed.
var errClientGone = errors.New("client gone")

// errStopText: the text reached a stop string before the library ended the sequence.
var errStopText = errors.New("stop text")

func (s *server) handleCompletions(w http.ResponseWriter, r *http.Request) {
	s.inflight.Add(1)
	defer s.inflight.Add(-1)
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		s.count("bad_request")
		writeError(w, &apiError{Status: http.StatusMethodNotAllowed, Message: "use POST", Type: "invalid_request_error"})
		return
	}
	req, aerr := parseRequest(w, r)
	if aerr != nil {
		s.count("bad_request")
		writeError(w, aerr)
		return
	}
	prompt, err := s.tok.Encode(req.prompt)
	if err != nil {
		s.count("bad_request")
		writeError(w, badRequest("prompt", "tokenizing the prompt: %v", err))
		return
	}
	if len(prompt) == 0 {
		s.count("bad_request")
		writeError(w, badRequest("prompt", "the prompt is empty"))
		return
	}
	if len(prompt) >= s.ctxLimit {
		s.count("bad_request")
		writeError(w, badRequest("prompt", "the prompt has %d tokens; this model's context is %d tokens", len(prompt), s.ctxLimit))
		return
	}
	// A request whose KV caches could outgrow --kv-limit on their own can never run: a 400 (the
	// library would refuse it too, with the same status as "no room now" under --refuse).
	if s.kvLimit > 0 {
		most := len(prompt) + req.maxTokens + s.gamma + 1
		if most > s.ctxLimit {
			most = s.ctxLimit
		}
		if need := uint64(most) * s.kvPerTok; need > s.kvLimit {
			s.count("bad_request")
			writeError(w, badRequest("max_tokens", "this request could need %d bytes of KV cache, more than the server's limit of %d; lower max_tokens", need, s.kvLimit))
			return
		}
	}
	opts := []specdec.GenerateOption{
		specdec.WithGamma(s.gamma),
		specdec.WithMaxNewTokens(req.maxTokens),
		specdec.WithTemperature(float32(req.temperature)),
		specdec.WithTopP(float32(req.topP)),
		specdec.WithTopK(req.topK),
		specdec.WithSeed(req.seed),
		specdec.WithFinishAtContextLimit(true),
	}
	if len(req.stops) > 0 {
		opts = append(opts, specdec.WithStopTexts(req.stops...))
	}
	j := &job{prompt: prompt, opts: opts}

	id, created := newID(), time.Now().Unix()
	dec, err := specdec.NewStreamDecoder(s.tok)
	if err != nil {
		s.count("error")
		writeError(w, &apiError{Status: http.StatusInternalServerError, Message: err.Error(), Type: "server_error"})
		return
	}
	defer dec.Close()
	cut := newStopCutter(req.stops)
	var generated []uint32
	var text []byte
	var flusher http.Flusher
	started := false

	chunk := func(t string, ids []uint32, finish *string, u *usage) error {
		c := completion{ID: id, Object: "text_completion", Created: created, Model: s.modelName,
			Choices: []choice{{Text: t, FinishReason: finish}}, Usage: u}
		if req.tokenIDs {
			c.Choices[0].TokenIDs = ids
			if c.Choices[0].TokenIDs == nil {
				c.Choices[0].TokenIDs = []uint32{}
			}
		}
		if u != nil && finish == nil {
			c.Choices = []choice{}
		}
		b, _ := json.Marshal(c)
		if _, err := fmt.Fprintf(w, "data: %s\n\n", b); err != nil {
			return errClientGone
		}
		flusher.Flush()
		return nil
	}
	startStream := func() {
		if started {
			return
		}
		started = true
		flusher, _ = w.(http.Flusher)
		if flusher == nil {
			flusher = noFlush{}
		}
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set("Cache-Control", "no-cache")
		w.Header().Set("X-Accel-Buffering", "no")
		w.WriteHeader(http.StatusOK)
		flusher.Flush()
	}

	emit := func(toks []uint32) error {
		s.tokens.Add(uint64(len(toks)))
		s.rate.add(uint64(len(toks)))
		if cut.stopped {
			return errStopText
		}
		generated = append(generated, toks...)
		piece, err := dec.Push(toks)
		if err != nil {
			return err
		}
		out := cut.push(piece, false)
		if req.stream {
			startStream()
			if out != "" || req.tokenIDs {
				if err := chunk(out, toks, nil, nil); err != nil {
					return err
				}
			}
		} else {
			text = append(text, out...)
		}
		if cut.stopped {
			return errStopText
		}
		return nil
	}

	ctx := r.Context()
	reason, err := s.be.run(ctx, j, emit)
	if errors.Is(err, errStopText) {
		reason, err = specdec.FinishStopSequence, nil
	}
	if err != nil {
		switch {
		case ctx.Err() != nil || errors.Is(err, errClientGone):
			s.count("cancelled")
			return // nobody is listening
		case errors.Is(err, errRefused):
			s.count("refused")
			if !started {
				writeError(w, &apiError{Status: http.StatusTooManyRequests, Message: "the server is at capacity; try again later", Type: "server_overloaded"})
				return
			}
		case isBadRequest(err):
			s.count("bad_request")
			if !started {
				writeError(w, badRequest("", "%v", err))
				return
			}
		default:
			s.count("error")
			if !started {
				writeError(w, &apiError{Status: http.StatusInternalServerError, Message: err.Error(), Type: "server_error"})
				return
			}
		}
		// Mid-stream: an error event, then the end of the stream.
		b, _ := json.Marshal(map[string]*apiError{"error": {Message: err.Error(), Type: "server_error"}})
		fmt.Fprintf(w, "data: %s\n\ndata: [DONE]\n\n", b)
		flusher.Flush()
		return
	}
	if rest, ferr := dec.Flush(); ferr == nil {
		out := cut.push(rest, true)
		if req.stream {
			if out != "" {
				startStream()
				if chunk(out, nil, nil, nil) != nil {
					s.count("cancelled")
					return
				}
			}
		} else {
			text = append(text, out...)
		}
	}
	finish := finishName(reason)
	u := &usage{PromptTokens: len(prompt), CompletionTokens: len(generated), TotalTokens: len(prompt) + len(generated)}
	s.count("ok")
	if req.stream {
		startStream()
		if chunk("", nil, &finish, nil) != nil {
			return
		}
		if req.usage {
			if chunk("", nil, nil, u) != nil {
				return
			}
		}
		fmt.Fprint(w, "data: [DONE]\n\n")
		flusher.Flush()
		return
	}
	c := completion{ID: id, Object: "text_completion", Created: created, Model: s.modelName,
		Choices: []choice{{Text: string(text), FinishReason: &finish}}, Usage: u}
	if req.tokenIDs {
		c.Choices[0].TokenIDs = generated
		if generated == nil {
			c.Choices[0].TokenIDs = []uint32{}
		}
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(c)
}

// isBadRequest: the library refused the request's content (an id, the context, a setting).
func isBadRequest(err error) bool {
	return errors.Is(err, specdec.ErrInvalidArgument) || errors.Is(err, specdec.ErrContextLimit) ||
		errors.Is(err, specdec.ErrTokenOutOfRange) || errors.Is(err, specdec.ErrMemoryBudget)
}

type noFlush struct{}

func (noFlush) Flush() {}
