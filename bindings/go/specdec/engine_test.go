package specdec

import (
	"errors"
	"slices"
	"sync"
	"testing"
	"time"
)

// drain steps the engine until every sequence ended and polls each one after every step,
// returning each sequence's tokens, final state and reason.
func drain(t *testing.T, e *Engine, ids []SeqID) (map[SeqID][]uint32, map[SeqID]PollResult) {
	t.Helper()
	toks := map[SeqID][]uint32{}
	last := map[SeqID]PollResult{}
	for round := 0; ; round++ {
		if round > 10000 {
			t.Fatal("the engine did not finish within 10000 steps")
		}
		n, err := e.Step()
		if err != nil {
			t.Fatalf("Step: %v", err)
		}
		for _, id := range ids {
			if last[id].State.Done() {
				continue
			}
			r, err := e.Poll(id)
			if err != nil && r.State != SeqFailed {
				t.Fatalf("Poll(%d): %v", id, err)
			}
			toks[id] = append(toks[id], r.Tokens...)
			last[id] = r
		}
		if n == 0 {
			done := true
			for _, id := range ids {
				done = done && last[id].State.Done()
			}
			if done {
				return toks, last
			}
		}
	}
}

func TestEngineGreedyEqualsGenerator(t *testing.T) {
	target, draft, tok, ids := setup(t)
	for _, d := range []*Model{draft, nil} {
		name := "speculative"
		if d == nil {
			name = "target-only"
		}
		t.Run(name, func(t *testing.T) {
			opts := []GenerateOption{WithMaxNewTokens(40), WithGamma(3)}
			want, wantReason := generate(t, target, d, ids, opts...)

			e, err := NewEngine(target, d, WithMaxBatch(4), WithEngineTokenizer(tok))
			if err != nil {
				t.Fatalf("NewEngine: %v", err)
			}
			defer e.Close()
			// Three copies of the prompt and a shorter other prompt, batched together.
			other, err := tok.Encode("class Stack:")
			if err != nil {
				t.Fatal(err)
			}
			var seqs []SeqID
			for i := 0; i < 3; i++ {
				id, err := e.Add(ids, opts...)
				if err != nil {
					t.Fatalf("Add: %v", err)
				}
				seqs = append(seqs, id)
			}
			oid, err := e.Add(other, WithMaxNewTokens(25))
			if err != nil {
				t.Fatalf("Add: %v", err)
			}
			seqs = append(seqs, oid)
			got, last := drain(t, e, seqs)
			for _, id := range seqs[:3] {
				if !slices.Equal(got[id], want) {
					t.Errorf("sequence %d: engine tokens %v, generator %v", id, got[id], want)
				}
				if last[id].State != SeqFinished || last[id].Reason != wantReason {
					t.Errorf("sequence %d: state %v reason %v, want finished %v", id, last[id].State, last[id].Reason, wantReason)
				}
			}
			wantOther, _ := generate(t, target, d, other, WithMaxNewTokens(25), WithGamma(3))
			if !slices.Equal(got[oid], wantOther) {
				t.Errorf("other prompt: engine tokens %v, generator %v", got[oid], wantOther)
			}
			// Polling a finished sequence again gives nothing new.
			r, err := e.Poll(seqs[0])
			if err != nil || len(r.Tokens) != 0 || r.State != SeqFinished {
				t.Errorf("second Poll of a finished sequence: %+v, %v", r, err)
			}
			s, err := e.SeqStats(seqs[0])
			if err != nil || s.NewTokens != uint64(len(want)) {
				t.Errorf("SeqStats: %+v, %v; want %d new tokens", s, err, len(want))
			}
			st, err := e.Stats()
			if err != nil {
				t.Fatalf("Stats: %v", err)
			}
			if st.Rounds == 0 || st.NewTokens < uint64(3*len(want)) || st.Active != 0 || st.Waiting != 0 {
				t.Errorf("Stats: %+v", st)
			}
			if d != nil && (st.Drafted == 0 || st.AcceptanceRate() <= 0) {
				t.Errorf("Stats with a draft: %+v", st)
			}
			for _, id := range seqs {
				if err := e.Remove(id); err != nil {
					t.Errorf("Remove(%d): %v", id, err)
				}
			}
			if _, err := e.Poll(seqs[0]); err == nil {
				t.Error("Poll of a removed sequence succeeded")
			}
			if st, _ := e.Stats(); st.Finished != 0 || st.KVBytesUsed != 0 {
				t.Errorf("Stats after Remove: %+v", st)
			}
		})
	}
}

func TestEngineCancelAndRemove(t *testing.T) {
	target, draft, _, ids := setup(t)
	e, err := NewEngine(target, draft, WithMaxBatch(2))
	if err != nil {
		t.Fatalf("NewEngine: %v", err)
	}
	defer e.Close()
	long := []GenerateOption{WithMaxNewTokens(200), WithNoEOS()}
	a, err := e.Add(ids, long...)
	if err != nil {
		t.Fatal(err)
	}
	b, err := e.Add(ids, long...)
	if err != nil {
		t.Fatal(err)
	}
	// A third waits for a slot (max batch 2).
	c, err := e.Add(ids, WithMaxNewTokens(8))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Step(); err != nil {
		t.Fatal(err)
	}
	if r, err := e.Poll(c); err != nil || r.State != SeqWaiting {
		t.Errorf("third sequence: %+v, %v; want waiting", r, err)
	}
	// Cancelling one frees its slot for the waiting one.
	if err := e.Cancel(a); err != nil {
		t.Fatalf("Cancel: %v", err)
	}
	if err := e.Remove(b); err != nil { // removing a running sequence cancels it
		t.Fatalf("Remove: %v", err)
	}
	got, last := drain(t, e, []SeqID{a, c})
	if last[a].State != SeqFinished || last[a].Reason != FinishCancelled || len(got[a]) >= 200 {
		t.Errorf("cancelled sequence: %+v, %d tokens", last[a], len(got[a]))
	}
	if last[c].State != SeqFinished || len(got[c]) == 0 {
		t.Errorf("waiting sequence after the cancel: %+v, %d tokens", last[c], len(got[c]))
	}
	if err := e.Cancel(SeqID(999999)); err == nil {
		t.Error("Cancel of an unknown id succeeded")
	}
	if err := e.Remove(b); err == nil {
		t.Error("Remove of a removed id succeeded")
	}
	st, err := e.Stats()
	if err != nil || st.Active != 0 || st.Waiting != 0 {
		t.Errorf("Stats: %+v, %v", st, err)
	}
}

func TestEngineConcurrentUse(t *testing.T) {
	target, draft, _, ids := setup(t)
	want, _ := generate(t, target, draft, ids, WithMaxNewTokens(24))
	e, err := NewEngine(target, draft, WithMaxBatch(4))
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	stop := make(chan struct{})
	stepped := make(chan struct{})
	go func() {
		defer close(stepped)
		for {
			select {
			case <-stop:
				return
			default:
			}
			if n, err := e.Step(); err != nil && !errors.Is(err, ErrBusy) {
				t.Errorf("Step: %v", err)
				return
			} else if n == 0 {
				time.Sleep(time.Millisecond)
			}
		}
	}()
	var wg sync.WaitGroup
	for i := 0; i < 6; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id, err := e.Add(ids, WithMaxNewTokens(24))
			if err != nil {
				t.Errorf("Add: %v", err)
				return
			}
			defer e.Remove(id)
			var got []uint32
			for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); {
				r, err := e.Poll(id)
				if err != nil {
					t.Errorf("Poll: %v", err)
					return
				}
				got = append(got, r.Tokens...)
				if r.State.Done() {
					if !slices.Equal(got, want) {
						t.Errorf("concurrent sequence: %v, want %v", got, want)
					}
					return
				}
				time.Sleep(time.Millisecond)
			}
			t.Error("a sequence did not finish within 60 s")
		}()
	}
	wg.Wait()
	close(stop)
	<-stepped
}

func TestEngineBadInput(t *testing.T) {
	target, draft, tok, ids := setup(t)
	if _, err := NewEngine(nil, draft); !errors.Is(err, ErrNullParameter) {
		t.Errorf("NewEngine(nil): %v", err)
	}
	if _, err := NewEngine(target, draft, WithMaxBatch(-1)); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("WithMaxBatch(-1): %v", err)
	}
	e, err := NewEngine(target, draft, WithAdmission(AdmissionWait), WithEngineKVMemoryLimit(0))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Add([]uint32{1 << 30}); !errors.Is(err, ErrTokenOutOfRange) {
		t.Errorf("Add of an out-of-range id: %v", err)
	}
	if _, err := e.Add(ids, WithGamma(0)); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("Add with gamma 0: %v", err)
	}
	if _, err := e.Add(ids, WithTokenizer(tok)); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("Add WithTokenizer: %v", err)
	}
	if _, err := e.Poll(SeqID(12345)); err == nil {
		t.Error("Poll of an unknown id succeeded")
	}
	if _, err := e.SeqStats(SeqID(12345)); err == nil {
		t.Error("SeqStats of an unknown id succeeded")
	}
	e.Close()
	e.Close()
	if _, err := e.Add(ids); !errors.Is(err, ErrNullParameter) {
		t.Errorf("Add after Close: %v", err)
	}
	if _, err := e.Step(); !errors.Is(err, ErrNullParameter) {
		t.Errorf("Step after Close: %v", err)
	}
	var nilEngine *Engine
	if err := nilEngine.Close(); err != nil {
		t.Errorf("nil Close: %v", err)
	}
	if SeqFailed.String() != "failed" || AdmissionRefuse.String() != "refuse" {
		t.Error("String methods")
	}
}
