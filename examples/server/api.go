package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"strings"
	"unicode/utf8"
)

// completionRequest is the body of POST /v1/completions: OpenAI's fields that this server
// supports, and two extensions (top_k, return_token_ids). Any other field is a 400.
type completionRequest struct {
	Model         string          `json:"model"`
	Prompt        *string         `json:"prompt"`
	MaxTokens     *int            `json:"max_tokens"`
	Temperature   *float64        `json:"temperature"`
	TopP          *float64        `json:"top_p"`
	TopK          *int            `json:"top_k"`
	Stop          json.RawMessage `json:"stop"`
	Seed          *int64          `json:"seed"`
	Stream        bool            `json:"stream"`
	StreamOptions *struct {
		IncludeUsage bool `json:"include_usage"`
	} `json:"stream_options"`
	N    *int   `json:"n"`
	User string `json:"user"`
	// ReturnTokenIDs adds "token_ids" (the generated ids) to each choice or chunk.
	ReturnTokenIDs bool `json:"return_token_ids"`
}

// Defaults and bounds of the request fields.
const (
	defaultMaxTokens = 16
	maxStops         = 4
	maxBodyBytes     = 1 << 20
)

// apiError is an OpenAI-style error: {"error":{"message","type","param","code"}}.
type apiError struct {
	Status  int     `json:"-"`
	Message string  `json:"message"`
	Type    string  `json:"type"`
	Param   *string `json:"param"`
	Code    *string `json:"code"`
}

func (e *apiError) Error() string { return e.Message }

func badRequest(param, format string, args ...any) *apiError {
	e := &apiError{Status: http.StatusBadRequest, Message: fmt.Sprintf(format, args...), Type: "invalid_request_error"}
	if param != "" {
		e.Param = &param
	}
	return e
}

func writeError(w http.ResponseWriter, e *apiError) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(e.Status)
	_ = json.NewEncoder(w).Encode(map[string]*apiError{"error": e})
}

// parsedRequest is a validated request.
type parsedRequest struct {
	prompt      string
	maxTokens   int
	temperature float64
	topP        float64
	topK        int
	stops       []string
	seed        uint64
	stream      bool
	usage       bool // stream: a final chunk with usage
	tokenIDs    bool
}

// parseRequest reads and validates the body. Every failure is a 400 with the offending parameter.
func parseRequest(w http.ResponseWriter, r *http.Request) (*parsedRequest, *apiError) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return nil, &apiError{Status: http.StatusRequestEntityTooLarge, Message: fmt.Sprintf("request body over %d bytes", maxBodyBytes), Type: "invalid_request_error"}
		}
		return nil, badRequest("", "reading the request body: %v", err)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	var req completionRequest
	if err := dec.Decode(&req); err != nil {
		var ute *json.UnmarshalTypeError
		if errors.As(err, &ute) {
			return nil, badRequest(ute.Field, "invalid type for %q: expected %s", ute.Field, ute.Type)
		}
		if msg := err.Error(); strings.HasPrefix(msg, "json: unknown field ") {
			field := strings.Trim(strings.TrimPrefix(msg, "json: unknown field "), `"`)
			return nil, badRequest(field, "unrecognized request argument supplied: %s", field)
		}
		return nil, badRequest("", "we could not parse the JSON body of your request: %v", err)
	}
	if dec.More() {
		return nil, badRequest("", "the request body holds more than one JSON value")
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, badRequest("", "the request body holds more than one JSON value")
	}
	p := &parsedRequest{maxTokens: defaultMaxTokens, temperature: 1, topP: 1, stream: req.Stream, tokenIDs: req.ReturnTokenIDs}
	if req.Prompt == nil {
		return nil, badRequest("prompt", "you must provide a prompt")
	}
	if !utf8.ValidString(*req.Prompt) || strings.IndexByte(*req.Prompt, 0) >= 0 {
		return nil, badRequest("prompt", "prompt must be valid UTF-8 without NUL characters")
	}
	p.prompt = *req.Prompt
	if req.MaxTokens != nil {
		if *req.MaxTokens < 0 {
			return nil, badRequest("max_tokens", "max_tokens must be at least 0, got %d", *req.MaxTokens)
		}
		if *req.MaxTokens > math.MaxInt32 {
			return nil, badRequest("max_tokens", "max_tokens %d is too large", *req.MaxTokens)
		}
		p.maxTokens = *req.MaxTokens
	}
	if req.Temperature != nil {
		t := *req.Temperature
		if math.IsNaN(t) || t < 0 || t > 100 {
			return nil, badRequest("temperature", "temperature must be between 0 and 100, got %v", t)
		}
		p.temperature = t
	}
	if req.TopP != nil {
		tp := *req.TopP
		if math.IsNaN(tp) || tp <= 0 || tp > 1 {
			return nil, badRequest("top_p", "top_p must be in (0, 1], got %v", tp)
		}
		p.topP = tp
	}
	if req.TopK != nil {
		if *req.TopK < 0 || *req.TopK > math.MaxInt32 {
			return nil, badRequest("top_k", "top_k must be at least 0 (0: off), got %d", *req.TopK)
		}
		p.topK = *req.TopK
	}
	if req.N != nil && *req.N != 1 {
		return nil, badRequest("n", "only n = 1 is supported, got %d", *req.N)
	}
	if req.Seed != nil {
		p.seed = uint64(*req.Seed)
	}
	if req.StreamOptions != nil {
		if !req.Stream {
			return nil, badRequest("stream_options", "stream_options is only allowed when stream is true")
		}
		p.usage = req.StreamOptions.IncludeUsage
	}
	stops, aerr := parseStop(req.Stop)
	if aerr != nil {
		return nil, aerr
	}
	p.stops = stops
	return p, nil
}

// parseStop accepts null, a string, or a list of up to 4 non-empty strings.
func parseStop(raw json.RawMessage) ([]string, *apiError) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var one string
	var list []string
	if err := json.Unmarshal(raw, &one); err == nil {
		list = []string{one}
	} else if err := json.Unmarshal(raw, &list); err != nil {
		return nil, badRequest("stop", "stop must be a string or a list of strings")
	}
	if len(list) > maxStops {
		return nil, badRequest("stop", "at most %d stop sequences are allowed, got %d", maxStops, len(list))
	}
	for _, s := range list {
		if s == "" {
			return nil, badRequest("stop", "stop sequences must not be empty")
		}
		if !utf8.ValidString(s) || strings.IndexByte(s, 0) >= 0 {
			return nil, badRequest("stop", "stop sequences must be valid UTF-8 without NUL characters")
		}
	}
	return list, nil
}

// Response bodies.

type choice struct {
	Text         string   `json:"text"`
	Index        int      `json:"index"`
	Logprobs     any      `json:"logprobs"`
	FinishReason *string  `json:"finish_reason"`
	TokenIDs     []uint32 `json:"token_ids,omitempty"`
}

type usage struct {
	PromptTokens     int `json:"prompt_tokens"`
	CompletionTokens int `json:"completion_tokens"`
	TotalTokens      int `json:"total_tokens"`
}

type completion struct {
	ID      string   `json:"id"`
	Object  string   `json:"object"`
	Created int64    `json:"created"`
	Model   string   `json:"model"`
	Choices []choice `json:"choices"`
	Usage   *usage   `json:"usage,omitempty"`
}

// stopCutter turns a stream of decoded text into what the client may see: the text before the
// first stop string, holding back a possible stop string's beginning until it is decided.
type stopCutter struct {
	stops   []string
	hold    int // bytes held back: the longest stop string less one
	all     strings.Builder
	sent    int
	stopped bool // a stop string was found; nothing after it is released
}

func newStopCutter(stops []string) *stopCutter {
	c := &stopCutter{stops: stops}
	for _, s := range stops {
		if len(s)-1 > c.hold {
			c.hold = len(s) - 1
		}
	}
	return c
}

// push adds text and returns the part now safe to release.
func (c *stopCutter) push(text string, final bool) string {
	if c.stopped {
		return ""
	}
	c.all.WriteString(text)
	all := c.all.String()
	end := len(all)
	// A stop string may start in the part already released's tail: search from there.
	from := c.sent - c.hold
	if from < 0 {
		from = 0
	}
	best := -1
	for _, s := range c.stops {
		if i := strings.Index(all[from:], s); i >= 0 && (best < 0 || from+i < best) {
			best = from + i
		}
	}
	if best >= 0 {
		c.stopped = true
		end = best
	} else if !final {
		end -= c.hold
		for end > c.sent && end < len(all) && !utf8.RuneStart(all[end]) {
			end--
		}
	}
	if end <= c.sent {
		return ""
	}
	out := all[c.sent:end]
	c.sent = end
	return out
}
