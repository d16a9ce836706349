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

// Tokenizer is a loaded tokenizer.json. It is immutable and safe for concurrent use.
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
