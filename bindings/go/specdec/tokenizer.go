package specdec

/*
#include <stdlib.h>
#include "specdec.h"
*/
import "C"

import (
	"runtime"
	"sync"
	"unsafe"
)

// Tokenizer is a loaded tokenizer.json. It is safe for concurrent use; SetChatTemplate, its one
// mutating method, is best called before sharing it.
type Tokenizer struct {
	mu  sync.RWMutex
	ptr *C.specdec_tokenizer
}

// LoadTokenizer loads path: a tokenizer.json or a folder holding one. Errors: ErrIO, ErrTokenizer.
func LoadTokenizer(path string) (*Tokenizer, error) {
	cpath, err := cString(path, "tokenizer path")
	if err != nil {
		return nil, err
	}
	defer C.free(unsafe.Pointer(cpath))
	var out *C.specdec_tokenizer
	var cerr *C.specdec_error
	st := C.specdec_tokenizer_load(cpath, &out, &cerr)
	if err := takeError(st, cerr); err != nil {
		return nil, err
	}
	t := &Tokenizer{ptr: out}
	runtime.SetFinalizer(t, (*Tokenizer).finalize)
	return t, nil
}

func (t *Tokenizer) finalize() {
	C.specdec_tokenizer_free(t.ptr)
	t.ptr = nil
}

// Close releases the tokenizer. It is idempotent; stream decoders and generators using it keep it
// alive.
func (t *Tokenizer) Close() error {
	if t == nil {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.ptr != nil {
		C.specdec_tokenizer_free(t.ptr)
		t.ptr = nil
		runtime.SetFinalizer(t, nil)
	}
	return nil
}

func (t *Tokenizer) acquire() (*C.specdec_tokenizer, error) {
	if t == nil {
		return nil, &Error{Code: StatusNullParameter, Message: "tokenizer is nil"}
	}
	t.mu.RLock()
	if t.ptr == nil {
		t.mu.RUnlock()
		return nil, closedError("tokenizer")
	}
	return t.ptr, nil
}

// VocabSize returns the tokenizer's vocabulary size, added tokens included (0 after Close).
func (t *Tokenizer) VocabSize() int {
	if t == nil {
		return 0
	}
	t.mu.RLock()
	defer t.mu.RUnlock()
	return int(C.specdec_tokenizer_vocab_size(t.ptr))
}

// Encode tokenizes text (without special tokens).
func (t *Tokenizer) Encode(text string) ([]uint32, error) {
	ptr, err := t.acquire()
	if err != nil {
		return nil, err
	}
	defer t.mu.RUnlock()

	var ctext *C.char
	if len(text) > 0 {
		// Go memory without pointers, read only during the call.
		ctext = (*C.char)(unsafe.Pointer(unsafe.StringData(text)))
	}
	// Byte-level tokenizers give at most one id per byte; retry once with the exact size otherwise.
	ids := make([]uint32, len(text)+8)
	for attempt := 0; ; attempt++ {
		var n C.size_t
		var cerr *C.specdec_error
		st := C.specdec_tokenizer_encode(ptr, ctext, C.size_t(len(text)), idsPtr(ids), C.size_t(len(ids)), &n, &cerr)
		runtime.KeepAlive(text)
		if Status(st) == StatusBufferTooSmall && attempt == 0 {
			C.specdec_error_free(cerr)
			ids = make([]uint32, int(n))
			continue
		}
		if err := takeError(st, cerr); err != nil {
			return nil, err
		}
		return ids[:int(n)], nil
	}
}

// Decode turns ids into text (special tokens skipped). Errors: ErrTokenOutOfRange, ErrTokenizer.
func (t *Tokenizer) Decode(ids []uint32) (string, error) {
	ptr, err := t.acquire()
	if err != nil {
		return "", err
	}
	defer t.mu.RUnlock()

	buf := make([]byte, 16*len(ids)+16)
	for attempt := 0; ; attempt++ {
		var n C.size_t
		var cerr *C.specdec_error
		st := C.specdec_tokenizer_decode(ptr, idsPtr(ids), C.size_t(len(ids)),
			(*C.char)(unsafe.Pointer(&buf[0])), C.size_t(len(buf)), &n, &cerr)
		runtime.KeepAlive(ids)
		if Status(st) == StatusBufferTooSmall && attempt == 0 {
			C.specdec_error_free(cerr)
			buf = make([]byte, int(n)+1)
			continue
		}
		if err := takeError(st, cerr); err != nil {
			return "", err
		}
		return string(buf[:int(n)]), nil
	}
}

// StreamDecoder turns a stream of generated ids into text, releasing only whole UTF-8 characters.
// Not safe for concurrent use: one decoder per stream (calls are serialised by a mutex).
type StreamDecoder struct {
	mu  sync.Mutex
	ptr *C.specdec_stream_decoder
}

// NewStreamDecoder creates a stream decoder over tok (which it keeps alive).
func NewStreamDecoder(tok *Tokenizer) (*StreamDecoder, error) {
	tptr, err := tok.acquire()
	if err != nil {
		return nil, err
	}
	var out *C.specdec_stream_decoder
	var cerr *C.specdec_error
	st := C.specdec_stream_decoder_new(tptr, &out, &cerr)
	tok.mu.RUnlock()
	if err := takeError(st, cerr); err != nil {
		return nil, err
	}
	d := &StreamDecoder{ptr: out}
	runtime.SetFinalizer(d, (*StreamDecoder).finalize)
	return d, nil
}

func (d *StreamDecoder) finalize() {
	C.specdec_stream_decoder_free(d.ptr)
	d.ptr = nil
}

// Close frees the decoder. It is idempotent.
func (d *StreamDecoder) Close() error {
	if d == nil {
		return nil
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.ptr != nil {
		C.specdec_stream_decoder_free(d.ptr)
		d.ptr = nil
		runtime.SetFinalizer(d, nil)
	}
	return nil
}

// Push adds generated ids and returns the newly completed text (possibly empty).
func (d *StreamDecoder) Push(ids []uint32) (string, error) {
	if d == nil {
		return "", &Error{Code: StatusNullParameter, Message: "stream decoder is nil"}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.ptr == nil {
		return "", closedError("stream decoder")
	}
	var text *C.char
	var n C.size_t
	var cerr *C.specdec_error
	st := C.specdec_stream_decoder_push(d.ptr, idsPtr(ids), C.size_t(len(ids)), &text, &n, &cerr)
	runtime.KeepAlive(ids)
	if err := takeError(st, cerr); err != nil {
		return "", err
	}
	return C.GoStringN(text, C.int(n)), nil
}

// Flush returns whatever text the decoder still holds back (at the end of a stream).
func (d *StreamDecoder) Flush() (string, error) {
	if d == nil {
		return "", &Error{Code: StatusNullParameter, Message: "stream decoder is nil"}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.ptr == nil {
		return "", closedError("stream decoder")
	}
	var text *C.char
	var n C.size_t
	var cerr *C.specdec_error
	st := C.specdec_stream_decoder_flush(d.ptr, &text, &n, &cerr)
	if err := takeError(st, cerr); err != nil {
		return "", err
	}
	return C.GoStringN(text, C.int(n)), nil
}

// EncodeWith tokenizes text; addSpecialTokens adds the special tokens the tokenizer's
// post-processor adds (a BOS, say), as transformers' encode does by default. A prompt from
// ApplyChatTemplate already holds its special tokens: encode it with false.
// Errors: ErrInvalidUTF8, ErrTokenizer.
func (t *Tokenizer) EncodeWith(text string, addSpecialTokens bool) ([]uint32, error) {
	ptr, err := t.acquire()
	if err != nil {
		return nil, err
	}
	defer t.mu.RUnlock()

	var flags C.uint32_t
	if addSpecialTokens {
		flags = C.SPECDEC_ENCODE_ADD_SPECIAL_TOKENS
	}
	var ctext *C.char
	if len(text) > 0 {
		// Go memory without pointers, read only during the call.
		ctext = (*C.char)(unsafe.Pointer(unsafe.StringData(text)))
	}
	ids := make([]uint32, len(text)+8)
	for attempt := 0; ; attempt++ {
		var n C.size_t
		var cerr *C.specdec_error
		st := C.specdec_tokenizer_encode_ex(ptr, ctext, C.size_t(len(text)), flags, idsPtr(ids), C.size_t(len(ids)), &n, &cerr)
		runtime.KeepAlive(text)
		if Status(st) == StatusBufferTooSmall && attempt == 0 {
			C.specdec_error_free(cerr)
			ids = make([]uint32, int(n))
			continue
		}
		if err := takeError(st, cerr); err != nil {
			return nil, err
		}
		return ids[:int(n)], nil
	}
}

// DecodeWith turns ids into text; with skipSpecialTokens false the special tokens ("<|eot_id|>",
// "</s>", ...) stay in the text. Errors: ErrTokenOutOfRange, ErrTokenizer.
func (t *Tokenizer) DecodeWith(ids []uint32, skipSpecialTokens bool) (string, error) {
	ptr, err := t.acquire()
	if err != nil {
		return "", err
	}
	defer t.mu.RUnlock()

	var flags C.uint32_t
	if !skipSpecialTokens {
		flags = C.SPECDEC_DECODE_KEEP_SPECIAL_TOKENS
	}
	return fillString(16*len(ids)+16, func(buf *C.char, capacity C.size_t, n *C.size_t, cerr **C.specdec_error) C.specdec_status {
		st := C.specdec_tokenizer_decode_ex(ptr, idsPtr(ids), C.size_t(len(ids)), flags, buf, capacity, n, cerr)
		runtime.KeepAlive(ids)
		return st
	})
}

// TokenToID returns the id of token as written in tokenizer.json ("<|endoftext|>", "Ġthe"); ok is
// false when the tokenizer has no such token, which is not an error. Errors: ErrInvalidUTF8.
func (t *Tokenizer) TokenToID(token string) (id uint32, ok bool, err error) {
	ptr, err := t.acquire()
	if err != nil {
		return 0, false, err
	}
	defer t.mu.RUnlock()

	var ctoken *C.char
	if len(token) > 0 {
		ctoken = (*C.char)(unsafe.Pointer(unsafe.StringData(token)))
	}
	var cid C.uint32_t
	var found C.bool
	var cerr *C.specdec_error
	st := C.specdec_tokenizer_token_to_id(ptr, ctoken, C.size_t(len(token)), &cid, &found, &cerr)
	runtime.KeepAlive(token)
	if err := takeError(st, cerr); err != nil {
		return 0, false, err
	}
	return uint32(cid), bool(found), nil
}

// IDToToken returns the token string of id as written in tokenizer.json. Errors:
// ErrTokenOutOfRange (an id the tokenizer does not have).
func (t *Tokenizer) IDToToken(id uint32) (string, error) {
	return t.idToToken(id, 32)
}

func (t *Tokenizer) idToToken(id uint32, guess int) (string, error) {
	ptr, err := t.acquire()
	if err != nil {
		return "", err
	}
	defer t.mu.RUnlock()
	return fillString(guess, func(buf *C.char, capacity C.size_t, n *C.size_t, cerr **C.specdec_error) C.specdec_status {
		return C.specdec_tokenizer_id_to_token(ptr, C.uint32_t(id), buf, capacity, n, cerr)
	})
}

// ChatMessage is one message of a conversation for ApplyChatTemplate.
type ChatMessage struct {
	Role    string // "system", "user", "assistant", ...
	Content string
}

// ApplyChatTemplate renders msgs with the tokenizer's chat template (the one set with
// SetChatTemplate, else the folder's chat_template.jinja or tokenizer_config.json), byte for byte
// as transformers' apply_chat_template(messages, tokenize=False, add_generation_prompt=...). With
// addGenerationPrompt the text ends with the header of an assistant turn. Encode the result with
// Encode (or EncodeWith(prompt, false)): the template writes the special tokens itself.
// Errors: ErrTokenizer (no template, or rendering failed, e.g. the template's raise_exception:
// the message says why), ErrInvalidUTF8, ErrInvalidArgument (a NUL byte in a message).
func (t *Tokenizer) ApplyChatTemplate(msgs []ChatMessage, addGenerationPrompt bool) (string, error) {
	guess := 256
	for _, m := range msgs {
		guess += len(m.Role) + len(m.Content) + 32
	}
	return t.applyChatTemplate(msgs, addGenerationPrompt, guess)
}

func (t *Tokenizer) applyChatTemplate(msgs []ChatMessage, addGenerationPrompt bool, guess int) (string, error) {
	// The C array holds pointers, so it and the strings live in C memory.
	var cmsgs *C.specdec_chat_message
	if len(msgs) > 0 {
		cmsgs = (*C.specdec_chat_message)(C.calloc(C.size_t(len(msgs)), C.size_t(unsafe.Sizeof(C.specdec_chat_message{}))))
		defer C.free(unsafe.Pointer(cmsgs))
	}
	arr := unsafe.Slice(cmsgs, len(msgs))
	defer func() {
		for i := range arr {
			C.free(unsafe.Pointer(arr[i].role))
			C.free(unsafe.Pointer(arr[i].content))
		}
	}()
	for i, m := range msgs {
		role, err := cString(m.Role, "chat message role")
		if err != nil {
			return "", err
		}
		arr[i].role = role
		content, err := cString(m.Content, "chat message content")
		if err != nil {
			return "", err
		}
		arr[i].content = content
	}

	ptr, err := t.acquire()
	if err != nil {
		return "", err
	}
	defer t.mu.RUnlock()
	return fillString(guess, func(buf *C.char, capacity C.size_t, n *C.size_t, cerr **C.specdec_error) C.specdec_status {
		return C.specdec_tokenizer_apply_chat_template(ptr, cmsgs, C.size_t(len(msgs)), C.bool(addGenerationPrompt), buf, capacity, n, cerr)
	})
}

// SetChatTemplate makes chatTemplate (Jinja source) the tokenizer's chat template instead of its
// folder's; the special tokens stay the folder's. On failure the template in use is unchanged.
// It waits for calls in progress on the tokenizer; set it before sharing the tokenizer, as other
// goroutines would otherwise see the change at an unpredictable point.
// Errors: ErrTokenizer (it does not compile; the message gives the line), ErrInvalidUTF8,
// ErrInvalidArgument (a NUL byte).
func (t *Tokenizer) SetChatTemplate(chatTemplate string) error {
	if t == nil {
		return &Error{Code: StatusNullParameter, Message: "tokenizer is nil"}
	}
	ctmpl, err := cString(chatTemplate, "chat template")
	if err != nil {
		return err
	}
	defer C.free(unsafe.Pointer(ctmpl))
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.ptr == nil {
		return closedError("tokenizer")
	}
	var cerr *C.specdec_error
	st := C.specdec_tokenizer_set_chat_template(t.ptr, ctmpl, &cerr)
	return takeError(st, cerr)
}

// fillString runs call, the C buffer protocol of specdec_tokenizer_decode (a NUL-terminated string
// into buf, or StatusBufferTooSmall and its length), with a guess-byte buffer first and the exact
// size if that was too small.
func fillString(guess int, call func(buf *C.char, capacity C.size_t, n *C.size_t, cerr **C.specdec_error) C.specdec_status) (string, error) {
	buf := make([]byte, guess+1)
	for attempt := 0; ; attempt++ {
		var n C.size_t
		var cerr *C.specdec_error
		st := call((*C.char)(unsafe.Pointer(&buf[0])), C.size_t(len(buf)), &n, &cerr)
		if Status(st) == StatusBufferTooSmall && attempt == 0 {
			C.specdec_error_free(cerr)
			buf = make([]byte, int(n)+1)
			continue
		}
		if err := takeError(st, cerr); err != nil {
			return "", err
		}
		return string(buf[:int(n)]), nil
	}
}
