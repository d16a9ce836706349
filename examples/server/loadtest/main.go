// Command loadtest drives the example server (examples/server) with concurrent clients and checks
// what comes back.
//
//	make load-test            (the short form; make load-test-full: the recorded run)
//	loadtest --server target/server/server --target models/demo/target --draft models/demo/draft \
//	    --clients 1,4,16,64 --out results.md
//
// For each mode (engine, generator) it starts the server on a loopback port (or uses --url), then
// for each client count runs that many clients, each sending requests one after the other until the
// level's request count or time is used up. Most requests are greedy, and their tokens
// (return_token_ids) must equal the prompt's batch-1 output, computed first with a plain
// specdec.Generator through the Go binding: a lost, truncated or cross-talking sequence shows as a
// mismatch. Some requests are sampled (checked for completing only), and some clients disconnect
// mid-stream: afterwards /metrics must show no active or waiting sequence (slots freed). The
// server's RSS (VmRSS) is sampled after a warm-up and at the end. Prints a Markdown table; exits 1
// on a mismatch, a request that neither completed nor got an error response, or slots not freed.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/specdec/specdec/bindings/go/specdec"
)

// Prompts in the demo target's domain (Python source code).
var prompts = []string{
	"def fib(n):",
	"import os\nimport sys\n\n\ndef main(argv=None):\n",
	"class Stack:\n    def __init__(self):",
	"def read_config(path):\n    \"\"\"Read a JSON configuration file.\"\"\"\n",
	"for i in range(10):",
	"def quicksort(items):",
	"import numpy as np\n\n",
	"class Node(object):\n",
	"def parse_args():\n    parser = argparse.ArgumentParser(",
	"    def __repr__(self):",
	"def test_add():\n    assert",
	"with open(filename) as f:",
	"if __name__ == \"__main__\":",
	"def merge(a, b):\n    result = []\n",
	"try:\n    import json\nexcept ImportError:",
	"class Config:\n    \"\"\"Settings.\"\"\"\n\n    def get(self, key, default=None):",
}

type options struct {
	serverBin, url, target, draft string
	modes                         []string
	clients                       []int
	requestsPerClient, minReqs    int
	levelTime                     time.Duration
	maxTokens                     int
	cancelEvery, sampleEvery      int
	badEvery                      int
	maxBatch                      int
	serverArgs                    string
	out                           string
	pid                           int
	freeTimeout                   time.Duration
	passes                        int
}

type result struct {
	kind      string // greedy, sampled, cancel
	ok        bool   // completed with a finish reason
	errResp   bool   // an error response (HTTP status with an error JSON, or an error event)
	failed    string // neither: what went wrong
	mismatch  string
	tokens    int
	latency   time.Duration
	ttft      time.Duration
	cancelled bool
	ids       []uint32
}

type levelReport struct {
	mode                                   string
	clients, requests, ok, errs, cancelled int
	bad                                    int // invalid requests answered 400
	failures, mismatches                   int
	tokens                                 int
	wall                                   time.Duration
	p50, p99, ttft50                       time.Duration
	freed                                  bool
	freeNote                               string
	rss                                    int64 // server VmRSS after the level, kB
	pass                                   int
}

type modeReport struct {
	mode            string
	rssWarm, rssEnd int64 // kB
	levels          []levelReport
}

func main() {
	var o options
	var modes, clients string
	flag.StringVar(&o.serverBin, "server", "", "server binary to start for each mode (with --addr 127.0.0.1:0)")
	flag.StringVar(&o.url, "url", "", "use this running server instead (one mode: its own)")
	flag.IntVar(&o.pid, "pid", 0, "with --url: the server's process id, for its RSS")
	flag.StringVar(&o.target, "target", "models/demo/target", "target model folder (reference outputs; passed to the server)")
	flag.StringVar(&o.draft, "draft", "models/demo/draft", "draft model folder passed to the server (\"\" for none)")
	flag.StringVar(&modes, "modes", "engine,generator", "server modes to compare")
	flag.StringVar(&clients, "clients", "1,4,16,64", "concurrent client counts")
	flag.IntVar(&o.requestsPerClient, "requests-per-client", 4, "requests per client per level (the level's bound is clients x this, at least --min-requests)")
	flag.IntVar(&o.minReqs, "min-requests", 16, "fewest requests per level")
	flag.DurationVar(&o.levelTime, "level-time", 60*time.Second, "time bound per level (no new request after it)")
	flag.IntVar(&o.maxTokens, "max-tokens", 48, "max_tokens of each request")
	flag.IntVar(&o.cancelEvery, "cancel-every", 5, "every Nth request streams and disconnects after two chunks (0: none)")
	flag.IntVar(&o.sampleEvery, "sample-every", 4, "every Nth request samples (temperature 0.8, a seed) instead of greedy (0: none)")
	flag.IntVar(&o.badEvery, "bad-every", 7, "every Nth request is invalid (bad JSON, an unknown field, no prompt, ...) and must get a 400 (0: none)")
	flag.IntVar(&o.maxBatch, "max-batch", 16, "--max-batch of the server")
	flag.StringVar(&o.serverArgs, "server-args", "", "more server flags, space-separated")
	flag.StringVar(&o.out, "out", "", "also write the Markdown report here")
	flag.IntVar(&o.passes, "passes", 1, "run the client counts this many times (RSS after each level shows whether memory plateaus)")
	flag.DurationVar(&o.freeTimeout, "free-timeout", 15*time.Second, "how long slots may take to be freed after a level")
	flag.Parse()
	o.modes = strings.Split(modes, ",")
	for _, c := range strings.Split(clients, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(c))
		if err != nil || n < 1 {
			fatalf("bad --clients entry %q", c)
		}
		o.clients = append(o.clients, n)
	}
	if o.serverBin == "" && o.url == "" {
		fatalf("give --server BINARY or --url URL")
	}

	start := time.Now()
	ref, err := references(o)
	if err != nil {
		fatalf("reference outputs: %v", err)
	}
	fmt.Fprintf(os.Stderr, "loadtest: %d reference outputs (batch 1, greedy, target only) in %.1fs\n", len(ref), time.Since(start).Seconds())

	var reports []modeReport
	failed := false
	for _, mode := range o.modes {
		rep, err := runMode(o, mode, ref)
		if err != nil {
			fatalf("mode %s: %v", mode, err)
		}
		reports = append(reports, rep)
		for _, l := range rep.levels {
			if l.failures > 0 || l.mismatches > 0 || !l.freed {
				failed = true
			}
		}
	}
	md := report(o, reports, time.Since(start))
	fmt.Print(md)
	if o.out != "" {
		if err := os.WriteFile(o.out, []byte(md), 0o644); err != nil {
			fatalf("%v", err)
		}
	}
	if failed {
		fmt.Fprintln(os.Stderr, "loadtest: FAILED (see the table: failures, mismatches or slots not freed)")
		os.Exit(1)
	}
	fmt.Fprintln(os.Stderr, "loadtest: passed (every request completed or got an error response; no mismatch; slots freed)")
}

func fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "loadtest: "+format+"\n", args...)
	os.Exit(1)
}

// references: each prompt's greedy output at batch 1, from a plain Generator over the target
// alone (greedy speculative output equals it token for token), with the server's EOS (the
// model's) and tokenization.
func references(o options) (map[string][]uint32, error) {
	target, err := specdec.LoadModel(o.target)
	if err != nil {
		return nil, err
	}
	defer target.Close()
	tok, err := specdec.LoadTokenizer(o.target)
	if err != nil {
		return nil, err
	}
	defer tok.Close()
	ref := map[string][]uint32{}
	for _, p := range prompts {
		ids, err := tok.Encode(p)
		if err != nil {
			return nil, err
		}
		gen, err := specdec.NewGenerator(target, nil, specdec.WithMaxNewTokens(o.maxTokens), specdec.WithTemperature(0),
			specdec.WithFinishAtContextLimit(true))
		if err != nil {
			return nil, err
		}
		if err := gen.Append(ids); err != nil {
			gen.Close()
			return nil, err
		}
		var out []uint32
		if _, err := gen.Generate(context.Background(), func(t []uint32) bool { out = append(out, t...); return true }); err != nil {
			gen.Close()
			return nil, err
		}
		gen.Close()
		ref[p] = out
	}
	return ref, nil
}

type serverProc struct {
	cmd  *exec.Cmd
	url  string
	pid  int
	done chan struct{}
}

func startServer(o options, mode string) (*serverProc, error) {
	args := []string{"--mode", mode, "--addr", "127.0.0.1:0", "--target", o.target, "--max-batch", strconv.Itoa(o.maxBatch)}
	if o.draft != "" {
		args = append(args, "--draft", o.draft)
	}
	args = append(args, strings.Fields(o.serverArgs)...)
	cmd := exec.Command(o.serverBin, args...)
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &serverProc{cmd: cmd, pid: cmd.Process.Pid, done: make(chan struct{})}
	lines := bufio.NewScanner(stdout)
	addr := make(chan string, 1)
	go func() {
		sent := false
		for lines.Scan() {
			l := lines.Text()
			if !sent && strings.HasPrefix(l, "listening on ") {
				addr <- strings.Fields(strings.TrimPrefix(l, "listening on "))[0]
				sent = true
			}
		}
		if !sent {
			close(addr)
		}
	}()
	go func() { _ = cmd.Wait(); close(p.done) }()
	select {
	case a, ok := <-addr:
		if !ok {
			return nil, errors.New("the server exited before listening")
		}
		p.url = a
	case <-time.After(60 * time.Second):
		p.stop()
		return nil, errors.New("the server did not start listening within 60 s")
	}
	return p, nil
}

func (p *serverProc) stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// rssKB reads VmRSS of pid (0 when unknown).
func rssKB(pid int) int64 {
	if pid <= 0 {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmRSS:") {
			f := strings.Fields(l)
			if len(f) >= 2 {
				n, _ := strconv.ParseInt(f[1], 10, 64)
				return n
			}
		}
	}
	return 0
}

func runMode(o options, mode string, ref map[string][]uint32) (modeReport, error) {
	rep := modeReport{mode: mode}
	url, pid := o.url, o.pid
	if o.url == "" {
		p, err := startServer(o, mode)
		if err != nil {
			return rep, err
		}
		defer p.stop()
		url, pid = p.url, p.pid
	} else {
		h, err := httpGet(url + "/health")
		if err != nil {
			return rep, err
		}
		var health struct{ Mode string }
		_ = json.Unmarshal(h, &health)
		if health.Mode != "" {
			rep.mode = health.Mode
		}
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256, MaxConnsPerHost: 0, DisableCompression: true}}
	// Warm-up: every prompt once, four at a time (also checked).
	warm := runLevel(o, client, url, rep.mode, 4, len(prompts), ref, false)
	if warm.failures > 0 || warm.mismatches > 0 {
		fmt.Fprintf(os.Stderr, "loadtest: %s warm-up: %d failures, %d mismatches\n", rep.mode, warm.failures, warm.mismatches)
		warm.clients = 0
		rep.levels = append(rep.levels, warm)
	}
	rep.rssWarm = rssKB(pid)
	for pass := 0; pass < o.passes; pass++ {
		for _, c := range o.clients {
			n := c * o.requestsPerClient
			if n < o.minReqs {
				n = o.minReqs
			}
			l := runLevel(o, client, url, rep.mode, c, n, ref, true)
			l.rss = rssKB(pid)
			l.pass = pass + 1
			rep.levels = append(rep.levels, l)
			fmt.Fprintf(os.Stderr, "loadtest: %-9s %2d clients: %3d requests (%d ok, %d invalid answered 400, %d other error responses, %d cancelled, %d failed, %d mismatches) %.0f tokens/s, p50 %v, p99 %v, slots freed: %v %s\n",
				rep.mode, c, l.requests, l.ok, l.bad, l.errs, l.cancelled, l.failures, l.mismatches, float64(l.tokens)/l.wall.Seconds(),
				l.p50.Round(time.Millisecond), l.p99.Round(time.Millisecond), l.freed, l.freeNote)
		}
	}
	rep.rssEnd = rssKB(pid)
	return rep, nil
}

func httpGet(url string) ([]byte, error) {
	resp, err := http.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	return io.ReadAll(resp.Body)
}

// runLevel runs `clients` clients until n requests were started or the level's time is up.
func runLevel(o options, client *http.Client, url, mode string, clients, n int, ref map[string][]uint32, withExtras bool) levelReport {
	var mu sync.Mutex
	var results []result
	next := 0
	deadline := time.Now().Add(o.levelTime)
	start := time.Now()
	var wg sync.WaitGroup
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			rng := rand.New(rand.NewSource(int64(c) + 1))
			for {
				mu.Lock()
				if next >= n || time.Now().After(deadline) {
					mu.Unlock()
					return
				}
				i := next
				next++
				mu.Unlock()
				kind := "greedy"
				if withExtras && o.badEvery > 0 && i%o.badEvery == o.badEvery-1 {
					kind = "bad"
				} else if withExtras && o.cancelEvery > 0 && i%o.cancelEvery == o.cancelEvery-1 {
					kind = "cancel"
				} else if withExtras && o.sampleEvery > 0 && i%o.sampleEvery == o.sampleEvery-1 {
					kind = "sampled"
				}
				prompt := prompts[(i+c)%len(prompts)]
				stream := rng.Intn(2) == 0 || kind == "cancel"
				var r result
				if kind == "bad" {
					r = doBadRequest(client, url, i)
				} else {
					r = doRequest(client, url, prompt, kind, stream, o.maxTokens, uint64(i))
				}
				if kind == "greedy" && r.ok {
					r.mismatch = compare(prompt, ref[prompt], r.ids)
				} else if r.ok && r.tokens > o.maxTokens && kind == "sampled" {
					r.mismatch = fmt.Sprintf("prompt %q: %d tokens for max_tokens %d", prompt, r.tokens, o.maxTokens)
				}
				mu.Lock()
				results = append(results, r)
				mu.Unlock()
			}
		}(c)
	}
	wg.Wait()
	l := levelReport{mode: mode, clients: clients, wall: time.Since(start)}
	var lat, ttft []time.Duration
	for _, r := range results {
		l.requests++
		switch {
		case r.kind == "bad" && r.errResp:
			l.bad++
		case r.cancelled:
			l.cancelled++
		case r.ok:
			l.ok++
			l.tokens += r.tokens
			lat = append(lat, r.latency)
			if r.ttft > 0 {
				ttft = append(ttft, r.ttft)
			}
		case r.errResp:
			l.errs++
		default:
			l.failures++
			fmt.Fprintf(os.Stderr, "loadtest: %s: a %s request failed: %s\n", mode, r.kind, r.failed)
		}
		if r.mismatch != "" {
			l.mismatches++
			fmt.Fprintf(os.Stderr, "loadtest: %s: mismatch: %s\n", mode, r.mismatch)
		}
	}
	l.p50, l.p99 = percentile(lat, 0.5), percentile(lat, 0.99)
	l.ttft50 = percentile(ttft, 0.5)
	l.freed, l.freeNote = waitFreed(url, o.freeTimeout)
	return l
}

// compare: "" when got is want, else what differs.
func compare(prompt string, want, got []uint32) string {
	n := 0
	for n < len(want) && n < len(got) && want[n] == got[n] {
		n++
	}
	if n == len(want) && n == len(got) {
		return ""
	}
	return fmt.Sprintf("prompt %q: %d tokens, batch-1 reference %d tokens, first difference at %d (got %v, want %v)",
		prompt, len(got), len(want), n, head(got[n:]), head(want[n:]))
}

func head(ids []uint32) []uint32 {
	if len(ids) > 6 {
		return ids[:6]
	}
	return ids
}

func percentile(d []time.Duration, q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	i := int(q*float64(len(d))+0.5) - 1
	if i < 0 {
		i = 0
	}
	if i >= len(d) {
		i = len(d) - 1
	}
	return d[i]
}

// waitFreed polls /metrics until no sequence is active or waiting, no request is in flight and no
// KV cache bytes are held.
func waitFreed(url string, timeout time.Duration) (bool, string) {
	end := time.Now().Add(timeout)
	var last map[string]float64
	for {
		m, err := metrics(url)
		if err == nil {
			last = m
			if m["specdec_active_sequences"] == 0 && m["specdec_waiting_sequences"] == 0 && m["specdec_requests_in_flight"] == 0 &&
				m["specdec_kv_bytes_used"] == 0 {
				return true, ""
			}
		}
		if time.Now().After(end) {
			return false, fmt.Sprintf("(after %v: active %v, waiting %v, in flight %v, KV bytes %v)", timeout,
				last["specdec_active_sequences"], last["specdec_waiting_sequences"], last["specdec_requests_in_flight"],
				last["specdec_kv_bytes_used"])
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// metrics reads the unlabelled samples of /metrics.
func metrics(url string) (map[string]float64, error) {
	b, err := httpGet(url + "/metrics")
	if err != nil {
		return nil, err
	}
	m := map[string]float64{}
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) != 2 || strings.HasPrefix(l, "#") || strings.Contains(f[0], "{") {
			continue
		}
		if v, err := strconv.ParseFloat(f[1], 64); err == nil {
			m[f[0]] = v
		}
	}
	return m, nil
}

type choiceJSON struct {
	Text         string   `json:"text"`
	FinishReason *string  `json:"finish_reason"`
	TokenIDs     []uint32 `json:"token_ids"`
}

type respJSON struct {
	Choices []choiceJSON `json:"choices"`
	Usage   *struct {
		CompletionTokens int `json:"completion_tokens"`
	} `json:"usage"`
	Error *struct {
		Message string `json:"message"`
	} `json:"error"`
}

// Invalid bodies: each must get a 400 with an OpenAI-style error, and must not disturb the
// sequences running meanwhile (their greedy outputs are still checked).
var badBodies = []string{
	`{"prompt": "def f():", "max_tokens": 8,`,
	`{"prompt": "def f():", "max_tokens": 8, "frequency_penalty_typo": 1}`,
	`{"max_tokens": 8}`,
	`{"prompt": "def f():", "max_tokens": -3}`,
	`{"prompt": "def f():", "temperature": -1}`,
	`{"prompt": "def f():", "top_p": 0}`,
	`{"prompt": "def f():", "stop": 42}`,
	`{"prompt": ["a", "b"]}`,
	`{"prompt": "def f():", "n": 2}`,
}

// doBadRequest sends the i-th invalid body; ok only as a 400 with an error body.
func doBadRequest(client *http.Client, url string, i int) result {
	r := result{kind: "bad"}
	body := badBodies[i%len(badBodies)]
	resp, err := client.Post(url+"/v1/completions", "application/json", strings.NewReader(body))
	if err != nil {
		r.failed = "transport: " + err.Error()
		return r
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	var e respJSON
	if resp.StatusCode == http.StatusBadRequest && json.Unmarshal(data, &e) == nil && e.Error != nil && e.Error.Message != "" {
		r.errResp = true
		return r
	}
	r.failed = fmt.Sprintf("invalid body %s got HTTP %d %q, want a 400 with an error", body, resp.StatusCode, data)
	return r
}

// doRequest sends one request and reads the whole answer (or, for kind "cancel", two chunks, then
// disconnects).
func doRequest(client *http.Client, url, prompt, kind string, stream bool, maxTokens int, seed uint64) result {
	r := result{kind: kind}
	body := map[string]any{"prompt": prompt, "max_tokens": maxTokens, "temperature": 0, "stream": stream, "return_token_ids": true}
	if kind == "sampled" {
		body["temperature"] = 0.8
		body["top_p"] = 0.95
		body["seed"] = seed
	}
	if kind == "cancel" {
		body["max_tokens"] = maxTokens * 4 // long enough to be cut short
	}
	b, _ := json.Marshal(body)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url+"/v1/completions", bytes.NewReader(b))
	req.Header.Set("Content-Type", "application/json")
	start := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		r.failed = "transport: " + err.Error()
		return r
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var e respJSON
		data, _ := io.ReadAll(resp.Body)
		if json.Unmarshal(data, &e) == nil && e.Error != nil {
			r.errResp = true
			r.failed = fmt.Sprintf("HTTP %d: %s", resp.StatusCode, e.Error.Message)
		} else {
			r.failed = fmt.Sprintf("HTTP %d without an error body: %q", resp.StatusCode, data)
		}
		return r
	}
	var ids []uint32
	if !stream {
		var c respJSON
		if err := json.NewDecoder(resp.Body).Decode(&c); err != nil || len(c.Choices) != 1 || c.Choices[0].FinishReason == nil {
			r.failed = fmt.Sprintf("bad body (%v)", err)
			return r
		}
		r.latency = time.Since(start)
		r.ok = true
		r.ids = c.Choices[0].TokenIDs
		r.tokens = len(r.ids)
		return r
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<16), 1<<22)
	chunks := 0
	finished, done := false, false
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			continue
		}
		if !strings.HasPrefix(line, "data: ") {
			r.failed = fmt.Sprintf("bad event line %q", line)
			return r
		}
		data := strings.TrimPrefix(line, "data: ")
		if data == "[DONE]" {
			done = true
			break
		}
		var c respJSON
		if err := json.Unmarshal([]byte(data), &c); err != nil {
			r.failed = fmt.Sprintf("bad chunk %q", data)
			return r
		}
		if c.Error != nil {
			r.errResp = true
			r.failed = "error event: " + c.Error.Message
			continue
		}
		for _, ch := range c.Choices {
			if len(ch.TokenIDs) > 0 && r.ttft == 0 {
				r.ttft = time.Since(start)
			}
			ids = append(ids, ch.TokenIDs...)
			if ch.FinishReason != nil {
				finished = true
			}
		}
		chunks++
		if kind == "cancel" && chunks >= 2 && !finished {
			cancel() // disconnect mid-stream
			r.cancelled = true
			return r
		}
	}
	if !done || !(finished || r.errResp) {
		r.failed = fmt.Sprintf("stream ended without a finish reason and [DONE] (%v)", sc.Err())
		r.errResp = false
		return r
	}
	if r.errResp {
		return r
	}
	r.latency = time.Since(start)
	r.ok = true
	r.ids = ids
	r.tokens = len(ids)
	return r
}

// report renders the Markdown tables: per client count, engine beside generator; then RSS.
func report(o options, reps []modeReport, took time.Duration) string {
	var b strings.Builder
	draft := o.draft
	if draft == "" {
		draft = "none (target only)"
	}
	fmt.Fprintf(&b, "Load test, %s UTC, %d CPU cores: target `%s`, draft `%s`, server `--max-batch %d%s`, max_tokens %d; "+
		"every %s request invalid (must get a 400), every %s sampled (temperature 0.8), every %s streams and disconnects after two chunks, the others greedy and "+
		"checked token for token against batch-1 output; per level max(%d × clients, %d) requests or %v; whole run %.0f s.\n\n",
		time.Now().UTC().Format("2006-01-02 15:04"), numCPU(), o.target, draft, o.maxBatch, spaced(o.serverArgs), o.maxTokens,
		ordinal(o.badEvery), ordinal(o.sampleEvery), ordinal(o.cancelEvery), o.requestsPerClient, o.minReqs, o.levelTime, took.Seconds())
	fmt.Fprintf(&b, "Command: `loadtest %s`.\n\n", strings.Join(os.Args[1:], " "))
	b.WriteString("| clients | mode | requests | ok | invalid (400) | other error responses | cancelled | failed | mismatches | tokens/s | p50 latency | p99 latency | p50 first token (streams) | slots freed | server RSS after |\n")
	b.WriteString("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|\n")
	var rows []levelReport
	for _, r := range reps {
		rows = append(rows, r.levels...)
	}
	sort.SliceStable(rows, func(i, j int) bool {
		if rows[i].pass != rows[j].pass {
			return rows[i].pass < rows[j].pass
		}
		return rows[i].clients < rows[j].clients
	})
	for _, l := range rows {
		clients := strconv.Itoa(l.clients)
		if l.clients == 0 {
			clients = "warm-up"
		} else if o.passes > 1 {
			clients = fmt.Sprintf("%d (pass %d)", l.clients, l.pass)
		}
		freed := "yes"
		if !l.freed {
			freed = "**no** " + l.freeNote
		}
		fmt.Fprintf(&b, "| %s | %s | %d | %d | %d | %d | %d | %d | %d | %.0f | %s | %s | %s | %s | %s |\n", clients, l.mode, l.requests, l.ok, l.bad, l.errs,
			l.cancelled, l.failures, l.mismatches, float64(l.tokens)/l.wall.Seconds(), ms(l.p50), ms(l.p99), ms(l.ttft50), freed, mib(l.rss))
	}
	b.WriteString("\n| mode | server RSS after warm-up | server RSS at the end |\n|---|---:|---:|\n")
	for _, r := range reps {
		fmt.Fprintf(&b, "| %s | %s | %s |\n", r.mode, mib(r.rssWarm), mib(r.rssEnd))
	}
	return b.String()
}

func spaced(s string) string {
	if s == "" {
		return ""
	}
	return " " + s
}

func ordinal(n int) string {
	switch n {
	case 0:
		return "no"
	case 1:
		return "1st"
	case 2:
		return "2nd"
	case 3:
		return "3rd"
	}
	return strconv.Itoa(n) + "th"
}

func ms(d time.Duration) string {
	if d == 0 {
		return "–"
	}
	return fmt.Sprintf("%d ms", d.Milliseconds())
}

func mib(kb int64) string {
	if kb == 0 {
		return "–"
	}
	return fmt.Sprintf("%.1f MiB", float64(kb)/1024)
}

func numCPU() int { return runtime.NumCPU() }
