package main

import (
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// rateMeter: tokens per second over a sliding window, in one-second buckets.
type rateMeter struct {
	mu      sync.Mutex
	window  time.Duration
	buckets map[int64]uint64
}

func newRateMeter(window time.Duration) *rateMeter {
	return &rateMeter{window: window, buckets: map[int64]uint64{}}
}

func (m *rateMeter) add(n uint64) {
	now := time.Now().Unix()
	m.mu.Lock()
	m.buckets[now] += n
	m.mu.Unlock()
}

// perSecond: the tokens of the window's complete seconds, over the window.
func (m *rateMeter) perSecond() float64 {
	now := time.Now().Unix()
	secs := int64(m.window / time.Second)
	m.mu.Lock()
	defer m.mu.Unlock()
	var sum uint64
	for t, n := range m.buckets {
		switch {
		case t < now-secs:
			delete(m.buckets, t)
		case t < now:
			sum += n
		}
	}
	return float64(sum) / float64(secs)
}

func (s *server) handleMetrics(w http.ResponseWriter, r *http.Request) {
	st := s.be.stats()
	var b strings.Builder
	metric := func(name, kind, help string, samples ...string) {
		fmt.Fprintf(&b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, kind)
		for _, sample := range samples {
			fmt.Fprintf(&b, "%s%s\n", name, sample)
		}
	}
	f := func(v float64) string { return fmt.Sprintf(" %g", v) }
	u := func(v uint64) string { return fmt.Sprintf(" %d", v) }

	metric("specdec_info", "gauge", "The server's mode and model.",
		fmt.Sprintf("{mode=%q,model=%q} 1", s.mode, s.modelName))
	var outcomes []string
	s.outcomes.Range(func(k, v any) bool {
		outcomes = append(outcomes, fmt.Sprintf("{outcome=%q} %d", k, v.(*atomic.Uint64).Load()))
		return true
	})
	sort.Strings(outcomes)
	metric("specdec_requests_total", "counter", "Completion requests by outcome (ok, bad_request, cancelled, refused, error).", outcomes...)
	metric("specdec_requests_in_flight", "gauge", "Completion requests being handled.", fmt.Sprintf(" %d", s.inflight.Load()))
	metric("specdec_generated_tokens_total", "counter", "Tokens generated for clients.", u(s.tokens.Load()))
	metric("specdec_tokens_per_second", "gauge", "Tokens generated per second over the last 10 seconds.", f(s.rate.perSecond()))
	metric("specdec_draft_tokens_total", "counter", "Tokens proposed by the draft.", u(st.Drafted))
	metric("specdec_accepted_tokens_total", "counter", "Draft proposals the target accepted.", u(st.Accepted))
	acc := 0.0
	if st.Drafted > 0 {
		acc = float64(st.Accepted) / float64(st.Drafted)
	}
	metric("specdec_acceptance_rate", "gauge", "Accepted over drafted tokens since the start.", f(acc))
	metric("specdec_rounds_total", "counter", "Rounds (engine: batched steps; generator: iterations of finished requests).", u(st.Rounds))
	metric("specdec_active_sequences", "gauge", "Sequences running now.", u(st.Active))
	metric("specdec_waiting_sequences", "gauge", "Sequences waiting for a slot (the queue).", u(st.Waiting))
	metric("specdec_kv_bytes_used", "gauge", "Bytes of KV cache in use (generator mode: an estimate from the tokens held).", u(st.KVUsed))
	metric("specdec_kv_bytes_limit", "gauge", "The KV cache limit (0: none).", u(st.KVLimit))
	w.Header().Set("Content-Type", "text/plain; version=0.0.4")
	fmt.Fprint(w, b.String())
}
