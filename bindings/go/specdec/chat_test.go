package specdec

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// tests/chat: chat templates with transformers' renderings, and tests/chat/bos, a tokenizer with a
// BOS-adding post-processor and transformers' ids (made by tests/chat/make_expected.py).
var chatDir = filepath.Join("..", "..", "..", "tests", "chat")

type chatCase struct {
	Conversation        string  `json:"conversation"`
	AddGenerationPrompt bool    `json:"add_generation_prompt"`
	Expected            *string `json:"expected"`
	Error               *string `json:"error"`
}

type chatFile struct {
	TokenizerConfig json.RawMessage          `json:"tokenizer_config"`
	Conversations   map[string][]ChatMessage `json:"conversations"`
	Cases           []chatCase               `json:"cases"`
}

type bosExpected struct {
	Text                    string             `json:"text"`
	WithSpecialTokens       []uint32           `json:"with_special_tokens"`
	WithoutSpecialTokens    []uint32           `json:"without_special_tokens"`
	DecodeKeepSpecial       string             `json:"decode_keep_special"`
	DecodeSkipSpecial       string             `json:"decode_skip_special"`
	Prompt                  string             `json:"prompt"`
	PromptIDs               []uint32           `json:"prompt_ids"`
	PromptDecodeKeepSpecial string             `json:"prompt_decode_keep_special"`
	Tokens                  map[string]*uint32 `json:"tokens"`
}

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

func loadBOS(t *testing.T) (*Tokenizer, bosExpected) {
	t.Helper()
	var exp bosExpected
	readJSON(t, filepath.Join(chatDir, "bos", "expected.json"), &exp)
	tok, err := LoadTokenizer(filepath.Join(chatDir, "bos"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tok.Close() })
	return tok, exp
}

// Every tests/chat/*.json: its tokenizer_config.json beside the fixture tokenizer (as a model
// folder), every conversation with and without the generation prompt, byte for byte.
func TestChatTemplatesMatchTransformers(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(chatDir, "*.json"))
	if err != nil || len(files) < 7 {
		t.Fatalf("tests/chat: %v %v", files, err)
	}
	tokJSON, err := os.ReadFile(filepath.Join(fixture("llama"), "tokenizer.json"))
	if err != nil {
		t.Fatal(err)
	}
	cases, raised := 0, 0
	for _, file := range files {
		var data chatFile
		readJSON(t, file, &data)
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "tokenizer.json"), tokJSON, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "tokenizer_config.json"), data.TokenizerConfig, 0o644); err != nil {
			t.Fatal(err)
		}
		tok, err := LoadTokenizer(dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range data.Cases {
			where := filepath.Base(file) + "/" + c.Conversation
			msgs := data.Conversations[c.Conversation]
			if len(msgs) == 0 {
				t.Fatalf("%s: no conversation", where)
			}
			got, err := tok.ApplyChatTemplate(msgs, c.AddGenerationPrompt)
			switch {
			case c.Expected != nil:
				if err != nil || got != *c.Expected {
					t.Errorf("%s agp=%v: got %q, %v; want %q", where, c.AddGenerationPrompt, got, err, *c.Expected)
				}
			case c.Error != nil:
				if !errors.Is(err, ErrTokenizer) || !strings.Contains(err.Error(), *c.Error) {
					t.Errorf("%s agp=%v: got %q, %v; want an error with %q", where, c.AddGenerationPrompt, got, err, *c.Error)
				}
				raised++
			default:
				t.Fatalf("%s: case without expected or error", where)
			}
			cases++
		}
		tok.Close()
	}
	if cases < 42 || raised < 2 {
		t.Errorf("%d cases, %d raised", cases, raised)
	}
}

func TestSetChatTemplate(t *testing.T) {
	tok, _ := loadBOS(t)
	var qwen chatFile
	readJSON(t, filepath.Join(chatDir, "qwen2.json"), &qwen)
	var cfg struct {
		ChatTemplate string `json:"chat_template"`
	}
	if err := json.Unmarshal(qwen.TokenizerConfig, &cfg); err != nil {
		t.Fatal(err)
	}
	conv := qwen.Conversations["system_user_assistant_user"]
	if got, err := tok.ApplyChatTemplate(conv, false); err != nil || !strings.HasPrefix(got, "<|endoftext|><|start_header_id|>system") {
		t.Fatalf("the folder's template: %q, %v", got, err)
	}
	if err := tok.SetChatTemplate(cfg.ChatTemplate); err != nil {
		t.Fatal(err)
	}
	for _, c := range qwen.Cases {
		got, err := tok.ApplyChatTemplate(qwen.Conversations[c.Conversation], c.AddGenerationPrompt)
		if err != nil || got != *c.Expected {
			t.Errorf("%s agp=%v: got %q, %v; want %q", c.Conversation, c.AddGenerationPrompt, got, err, *c.Expected)
		}
	}
	// Refused templates leave the one in use.
	before, _ := tok.ApplyChatTemplate(conv, true)
	if err := tok.SetChatTemplate("{% for m in messages %}"); !errors.Is(err, ErrTokenizer) {
		t.Errorf("a template that does not compile: %v", err)
	}
	if err := tok.SetChatTemplate("{{ 1 }}\x00x"); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("a NUL byte: %v", err)
	}
	if err := tok.SetChatTemplate("\xe2\x82"); !errors.Is(err, ErrInvalidUTF8) {
		t.Errorf("bad UTF-8: %v", err)
	}
	if after, err := tok.ApplyChatTemplate(conv, true); err != nil || after != before {
		t.Errorf("the template changed: %q, %v", after, err)
	}
	// raise_exception; the special tokens stay the folder's; no messages at all.
	if err := tok.SetChatTemplate("{{ bos_token }}{% if messages[0].role != 'user' %}{{ raise_exception('roles must alternate') }}{% endif %}"); err != nil {
		t.Fatal(err)
	}
	if _, err := tok.ApplyChatTemplate(conv, true); !errors.Is(err, ErrTokenizer) || !strings.Contains(err.Error(), "roles must alternate") {
		t.Errorf("raise_exception: %v", err)
	}
	if got, err := tok.ApplyChatTemplate([]ChatMessage{{"user", "hi"}}, false); err != nil || got != "<|endoftext|>" {
		t.Errorf("bos_token: %q, %v", got, err)
	}
	if err := tok.SetChatTemplate("[{{ messages | length }}]"); err != nil {
		t.Fatal(err)
	}
	if got, err := tok.ApplyChatTemplate(nil, true); err != nil || got != "[0]" {
		t.Errorf("no messages: %q, %v", got, err)
	}
	// Bad messages; no template at all.
	if _, err := tok.ApplyChatTemplate([]ChatMessage{{"user", "a\x00b"}}, true); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("a NUL byte in a message: %v", err)
	}
	if _, err := tok.ApplyChatTemplate([]ChatMessage{{"us\xff", "hi"}}, true); !errors.Is(err, ErrInvalidUTF8) {
		t.Errorf("bad UTF-8 in a message: %v", err)
	}
	_, _, plain, _ := setup(t)
	if _, err := plain.ApplyChatTemplate([]ChatMessage{{"user", "hi"}}, true); !errors.Is(err, ErrTokenizer) || !strings.Contains(err.Error(), "no chat template") {
		t.Errorf("no template: %v", err)
	}
}

func TestChatTemplateBufferRetry(t *testing.T) {
	tok, _ := loadBOS(t)
	// Far longer than the first guess: the exact-size retry.
	if err := tok.SetChatTemplate("{% for i in range(500) %}{{ messages[0].content }}{% endfor %}"); err != nil {
		t.Fatal(err)
	}
	want := strings.Repeat("café!", 500)
	if got, err := tok.ApplyChatTemplate([]ChatMessage{{"user", "café!"}}, false); err != nil || got != want {
		t.Errorf("long prompt: %d bytes, %v", len(got), err)
	}
	// The smallest first buffers: a single byte (the NUL only) and an exact fit.
	for _, guess := range []int{0, 1, len(want), len(want) - 1} {
		if got, err := tok.applyChatTemplate([]ChatMessage{{"user", "café!"}}, false, guess); err != nil || got != want {
			t.Errorf("guess %d: %d bytes, %v", guess, len(got), err)
		}
	}
	if err := tok.SetChatTemplate(""); err != nil {
		t.Fatal(err)
	}
	if got, err := tok.ApplyChatTemplate([]ChatMessage{{"user", "x"}}, true); err != nil || got != "" {
		t.Errorf("empty template: %q, %v", got, err)
	}
}

func TestSpecialTokensMatchTransformers(t *testing.T) {
	tok, exp := loadBOS(t)
	if len(exp.WithSpecialTokens) != 11 {
		t.Fatalf("expected.json: %v", exp.WithSpecialTokens)
	}
	check := func(what string, got []uint32, err error, want []uint32) {
		t.Helper()
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("%s: %v, %v; want %v", what, got, err, want)
		}
	}
	checkText := func(what string, got string, err error, want string) {
		t.Helper()
		if err != nil || got != want {
			t.Errorf("%s: %q, %v; want %q", what, got, err, want)
		}
	}
	ids, err := tok.EncodeWith(exp.Text, true)
	check("with special tokens", ids, err, exp.WithSpecialTokens)
	ids, err = tok.EncodeWith(exp.Text, false)
	check("without special tokens", ids, err, exp.WithoutSpecialTokens)
	ids, err = tok.Encode(exp.Text)
	check("Encode", ids, err, exp.WithoutSpecialTokens)
	ids, err = tok.EncodeWith("", true)
	check("empty, with special tokens", ids, err, []uint32{0})
	ids, err = tok.EncodeWith("", false)
	check("empty, without", ids, err, []uint32{})
	text, err := tok.DecodeWith(exp.WithSpecialTokens, false)
	checkText("keep special", text, err, exp.DecodeKeepSpecial)
	text, err = tok.DecodeWith(exp.WithSpecialTokens, true)
	checkText("skip special", text, err, exp.DecodeSkipSpecial)
	text, err = tok.Decode(exp.WithSpecialTokens)
	checkText("Decode", text, err, exp.DecodeSkipSpecial)
	text, err = tok.DecodeWith(nil, false)
	checkText("no ids", text, err, "")
	if _, err := tok.DecodeWith([]uint32{512}, false); !errors.Is(err, ErrTokenOutOfRange) {
		t.Errorf("id 512: %v", err)
	}
	if _, err := tok.EncodeWith("bad \xff", true); !errors.Is(err, ErrInvalidUTF8) {
		t.Errorf("bad UTF-8: %v", err)
	}
	// Special tokens written in the text are recognised either way.
	long := strings.Repeat("<|endoftext|>", 50)
	ids, err = tok.EncodeWith(long, true)
	if err != nil || len(ids) != 51 {
		t.Errorf("special tokens in the text: %d ids, %v", len(ids), err)
	}
	text, err = tok.DecodeWith(ids, false)
	checkText("decode retry", text, err, "<|endoftext|>"+long)

	// The chat prompt holds its BOS already: encode it without special tokens.
	prompt, err := tok.ApplyChatTemplate([]ChatMessage{{Role: "user", Content: "Hello!"}}, true)
	checkText("prompt", prompt, err, exp.Prompt)
	ids, err = tok.EncodeWith(prompt, false)
	check("prompt ids", ids, err, exp.PromptIDs)
	text, err = tok.DecodeWith(ids, false)
	checkText("prompt decode", text, err, exp.PromptDecodeKeepSpecial)
}

func TestTokenIDLookupMatchesTransformers(t *testing.T) {
	tok, exp := loadBOS(t)
	if len(exp.Tokens) != 4 {
		t.Fatalf("expected.json tokens: %v", exp.Tokens)
	}
	for token, want := range exp.Tokens {
		id, ok, err := tok.TokenToID(token)
		if err != nil {
			t.Errorf("%q: %v", token, err)
			continue
		}
		if want == nil {
			if ok || id != 0 {
				t.Errorf("%q: found %d, transformers has none", token, id)
			}
			continue
		}
		if !ok || id != *want {
			t.Errorf("%q: %d %v, want %d", token, id, ok, *want)
		}
		if back, err := tok.IDToToken(*want); err != nil || back != token {
			t.Errorf("%d: %q, %v; want %q", *want, back, err, token)
		}
	}
	for _, missing := range []string{"no such token", ""} {
		if id, ok, err := tok.TokenToID(missing); err != nil || ok || id != 0 {
			t.Errorf("%q: %d %v %v; want not found, no error", missing, id, ok, err)
		}
	}
	if _, _, err := tok.TokenToID("\xe2\x82"); !errors.Is(err, ErrInvalidUTF8) {
		t.Errorf("bad UTF-8: %v", err)
	}
	if _, err := tok.IDToToken(uint32(tok.VocabSize())); !errors.Is(err, ErrTokenOutOfRange) {
		t.Errorf("id %d: %v", tok.VocabSize(), err)
	}
	// Tokens of 42 bytes and of exactly 32 (the first buffer holds 32 and the NUL): retry and fit.
	t42, t32 := "Ċ"+strings.Repeat("Ġ", 20), "Ċ"+strings.Repeat("Ġ", 15)
	for _, c := range []struct {
		id    uint32
		token string
	}{{389, t42}, {331, t32}} {
		if got, err := tok.IDToToken(c.id); err != nil || got != c.token {
			t.Errorf("%d: %q, %v", c.id, got, err)
		}
		for _, guess := range []int{0, 1, len(c.token)} {
			if got, err := tok.idToToken(c.id, guess); err != nil || got != c.token {
				t.Errorf("%d, guess %d: %q, %v", c.id, guess, got, err)
			}
		}
		if id, ok, err := tok.TokenToID(c.token); err != nil || !ok || id != c.id {
			t.Errorf("%q: %d %v %v", c.token, id, ok, err)
		}
	}
}

func TestChatMethodsAfterClose(t *testing.T) {
	tok, err := LoadTokenizer(filepath.Join(chatDir, "bos"))
	if err != nil {
		t.Fatal(err)
	}
	tok.Close()
	var nilTok *Tokenizer
	for _, tk := range []*Tokenizer{tok, nilTok} {
		if _, err := tk.ApplyChatTemplate(nil, true); !errors.Is(err, ErrNullParameter) {
			t.Errorf("ApplyChatTemplate: %v", err)
		}
		if err := tk.SetChatTemplate("x"); !errors.Is(err, ErrNullParameter) {
			t.Errorf("SetChatTemplate: %v", err)
		}
		if _, err := tk.EncodeWith("x", true); !errors.Is(err, ErrNullParameter) {
			t.Errorf("EncodeWith: %v", err)
		}
		if _, err := tk.DecodeWith([]uint32{1}, true); !errors.Is(err, ErrNullParameter) {
			t.Errorf("DecodeWith: %v", err)
		}
		if _, _, err := tk.TokenToID("x"); !errors.Is(err, ErrNullParameter) {
			t.Errorf("TokenToID: %v", err)
		}
		if _, err := tk.IDToToken(0); !errors.Is(err, ErrNullParameter) {
			t.Errorf("IDToToken: %v", err)
		}
	}
}
