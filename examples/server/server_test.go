package main

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/specdec/specdec/bindings/go/specdec"
)

func TestStopCutter(t *testing.T) {
	c := newStopCutter([]string{"\n\n", "END"})
	var out strings.Builder
	for _, piece := range []string{"a", "b\n", "c\n", "\nd", "EN"} {
		out.WriteString(c.push(piece, false))
	}
	out.WriteString(c.push("", true))
	if got := out.String(); got != "ab\nc" {
		t.Errorf("cut text %q, want %q", got, "ab\nc")
	}
	c = newStopCutter([]string{"END"})
	var held strings.Builder
	held.WriteString(c.push("xxEN", false))
	if held.String() != "xx" {
		t.Errorf("held back %q, want the possible stop's start held", held.String())
	}
	held.WriteString(c.push("é", true))
	if held.String() != "xxENé" {
		t.Errorf("final text %q", held.String())
	}
	c = newStopCutter(nil)
	if got := c.push("héllo", false); got != "héllo" {
		t.Errorf("no stops: %q", got)
	}
}

func fixtures(name string) string { return filepath.Join("..", "..", "models", "fixtures", name) }

type completionOut struct {
	Choices []struct {
		Text         string   `json:"text"`
		FinishReason *string  `json:"finish_reason"`
		TokenIDs     []uint32 `json:"token_ids"`
	} `json:"choices"`
	Usage *usage `json:"usage"`
	Error *struct {
		Message string  `json:"message"`
		Type    string  `json:"type"`
		Param   *string `json:"param"`
	} `json:"error"`
}

func post(t *testing.T, url, body string) (int, completionOut) {
	t.Helper()
	resp, err := http.Post(url+"/v1/completions", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatalf("POST: %v", err)
	}
	defer resp.Body.Close()
	var out completionOut
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatalf("decoding the response to %s: %v", body, err)
	}
	return resp.StatusCode, out
}

func metricValue(t *testing.T, url, name string) float64 {
	t.Helper()
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 2 && f[0] == name {
			var v float64
			if err := json.Unmarshal([]byte(f[1]), &v); err == nil {
				return v
			}
		}
	}
	t.Fatalf("no %s in /metrics", name)
	return 0
}

// TestServer runs both modes over the test fixtures: greedy output equals a Generator's, with
// invalid requests (400s) sent meanwhile; streaming gives the same tokens; stop strings are cut;
// a client that disconnects frees its slot.
func TestServer(t *testing.T) {
	target, err := specdec.LoadModel(fixtures("llama"))
	if err != nil {
		t.Fatal(err)
	}
	defer target.Close()
	tok, err := specdec.LoadTokenizer(fixtures("llama"))
	if err != nil {
		t.Fatal(err)
	}
	defer tok.Close()
	prompt := "Once upon a time, there was a little"
	ids, _ := tok.Encode(prompt)
	gen, err := specdec.NewGenerator(target, nil, specdec.WithMaxNewTokens(32), specdec.WithFinishAtContextLimit(true))
	if err != nil {
		t.Fatal(err)
	}
	_ = gen.Append(ids)
	var want []uint32
	if _, err := gen.Generate(context.Background(), func(t []uint32) bool { want = append(want, t...); return true }); err != nil {
		t.Fatal(err)
	}
	gen.Close()

	for _, mode := range []string{"engine", "generator"} {
		t.Run(mode, func(t *testing.T) {
			s, cleanup, err := setup(fixtures("llama"), fixtures("draft"), mode, 4, 0, false, 3, 1)
			if err != nil {
				t.Fatal(err)
			}
			defer cleanup()
			ts := httptest.NewServer(s.routes())
			defer ts.Close()

			bad := map[string]string{
				`{"prompt": "x",`:                                   "",
				`{"prompt": "x", "bogus": true}`:                    "bogus",
				`{"max_tokens": 4}`:                                 "prompt",
				`{"prompt": ""}`:                                    "prompt",
				`{"prompt": "x", "max_tokens": -1}`:                 "max_tokens",
				`{"prompt": "x", "temperature": -0.1}`:              "temperature",
				`{"prompt": "x", "top_p": 1.5}`:                     "top_p",
				`{"prompt": "x", "stop": [1, 2]}`:                   "stop",
				`{"prompt": "x", "stop": ["a","b","c","d","e"]}`:    "stop",
				`{"prompt": "x", "n": 3}`:                           "n",
				`{"prompt": "x"} {"prompt": "y"}`:                   "",
				`{"prompt": "` + strings.Repeat("a b ", 600) + `"}`: "prompt",
			}
			var wg sync.WaitGroup
			results := make([]completionOut, 4)
			for i := range results {
				wg.Add(1)
				go func(i int) {
					defer wg.Done()
					code, out := post(t, ts.URL, `{"prompt": "`+prompt+`", "max_tokens": 32, "temperature": 0, "return_token_ids": true}`)
					if code != http.StatusOK {
						t.Errorf("greedy request: HTTP %d %+v", code, out.Error)
					}
					results[i] = out
				}(i)
			}
			for body, param := range bad {
				code, out := post(t, ts.URL, body)
				if code != http.StatusBadRequest || out.Error == nil || out.Error.Type != "invalid_request_error" {
					t.Errorf("%.60s: HTTP %d %+v, want a 400 invalid_request_error", body, code, out.Error)
					continue
				}
				if param != "" && (out.Error.Param == nil || *out.Error.Param != param) {
					t.Errorf("%.60s: param %v, want %q", body, out.Error.Param, param)
				}
			}
			wg.Wait()
			for i, out := range results {
				if len(out.Choices) != 1 || !slices.Equal(out.Choices[0].TokenIDs, want) {
					t.Errorf("greedy request %d: %+v, want tokens %v", i, out.Choices, want)
					continue
				}
				text, _ := tok.Decode(want)
				if out.Choices[0].Text != text || *out.Choices[0].FinishReason != "length" || out.Usage.CompletionTokens != len(want) {
					t.Errorf("greedy request %d: text %q finish %q usage %+v; want %q", i, out.Choices[0].Text, *out.Choices[0].FinishReason, out.Usage, text)
				}
			}

			// Streaming: the same tokens, then [DONE].
			resp, err := http.Post(ts.URL+"/v1/completions", "application/json",
				strings.NewReader(`{"prompt": "`+prompt+`", "max_tokens": 32, "temperature": 0, "stream": true, "return_token_ids": true}`))
			if err != nil {
				t.Fatal(err)
			}
			var streamed []uint32
			var text strings.Builder
			done := false
			sc := bufio.NewScanner(resp.Body)
			for sc.Scan() {
				line := strings.TrimPrefix(sc.Text(), "data: ")
				if line == "" {
					continue
				}
				if line == "[DONE]" {
					done = true
					break
				}
				var c completionOut
				if err := json.Unmarshal([]byte(line), &c); err != nil {
					t.Fatalf("chunk %q: %v", line, err)
				}
				streamed = append(streamed, c.Choices[0].TokenIDs...)
				text.WriteString(c.Choices[0].Text)
			}
			resp.Body.Close()
			if !done || !slices.Equal(streamed, want) || resp.Header.Get("Content-Type") != "text/event-stream" {
				t.Errorf("stream: done %v, tokens %v, want %v", done, streamed, want)
			}

			// A stop string: the text ends before it.
			full, _ := tok.Decode(want)
			stop := full[len(full)/2 : len(full)/2+3]
			_, out := post(t, ts.URL, `{"prompt": "`+prompt+`", "max_tokens": 32, "temperature": 0, "stop": `+strings.ReplaceAll(mustJSON(stop), "\n", `\n`)+`}`)
			if wantText := full[:strings.Index(full, stop)]; len(out.Choices) != 1 || out.Choices[0].Text != wantText || *out.Choices[0].FinishReason != "stop" {
				t.Errorf("stop %q: %+v, want text %q", stop, out.Choices, wantText)
			}

			// A client that goes away: its slot is freed.
			ctx, cancel := context.WithCancel(context.Background())
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, ts.URL+"/v1/completions",
				strings.NewReader(`{"prompt": "`+prompt+`", "max_tokens": 400, "stream": true}`))
			resp, err = http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			br := bufio.NewReader(resp.Body)
			if _, err := br.ReadString('\n'); err != nil {
				t.Fatal(err)
			}
			cancel()
			resp.Body.Close()
			deadline := time.Now().Add(10 * time.Second)
			for metricValue(t, ts.URL, "specdec_active_sequences")+metricValue(t, ts.URL, "specdec_requests_in_flight") > 0 {
				if time.Now().After(deadline) {
					t.Fatal("the disconnected client's sequence still holds a slot after 10 s")
				}
				time.Sleep(20 * time.Millisecond)
			}
			if h, err := http.Get(ts.URL + "/health"); err != nil || h.StatusCode != http.StatusOK {
				t.Errorf("/health: %v", err)
			}
		})
	}
}

func mustJSON(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// TestServerKVLimit: a request that could never fit --kv-limit is a 400; one that fits runs.
func TestServerKVLimit(t *testing.T) {
	for _, mode := range []string{"engine", "generator"} {
		t.Run(mode, func(t *testing.T) {
			probe, cleanup, err := setup(fixtures("llama"), fixtures("draft"), mode, 2, 0, false, 3, 1)
			if err != nil {
				t.Fatal(err)
			}
			perTok := probe.kvPerTok
			cleanup()
			s, cleanup, err := setup(fixtures("llama"), fixtures("draft"), mode, 2, 100*perTok, true, 3, 1)
			if err != nil {
				t.Fatal(err)
			}
			defer cleanup()
			ts := httptest.NewServer(s.routes())
			defer ts.Close()
			if code, out := post(t, ts.URL, `{"prompt": "Once upon a time", "max_tokens": 300}`); code != http.StatusBadRequest || out.Error == nil || *out.Error.Param != "max_tokens" {
				t.Errorf("over the KV limit: HTTP %d %+v", code, out.Error)
			}
			if code, out := post(t, ts.URL, `{"prompt": "Once upon a time", "max_tokens": 8, "temperature": 0}`); code != http.StatusOK || out.Usage == nil || out.Usage.CompletionTokens == 0 {
				t.Errorf("within the KV limit: HTTP %d %+v", code, out)
			}
		})
	}
}
