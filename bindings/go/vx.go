//go:build cgo

// Package vx is the Go binding of vx, an embeddable encrypted vector index.
//
// It links the installed C library through pkg-config (`vx`, or `vx-static`
// with -tags vx_static). Every call runs on a locked OS thread so the
// library's per-thread error message is read on the thread that set it.
// Slices are passed to C directly (never copied into C memory), including
// keys: wipe them with clear(key) when done.
package vx

/*
#cgo !vx_static pkg-config: vx
#cgo vx_static pkg-config: --static vx-static
#include <stdlib.h>
#include <vx.h>

// Trampoline for training progress (defined in index.go via export).
extern int vxGoProgress(void *user_data, uint32_t iteration, uint32_t max_iters, double objective);
// The progress handle travels as an integer (a cgo.Handle), never as a Go pointer.
static vx_status vx_go_train_ex(vx_index *index, vx_train_params *p, uintptr_t handle, const uint8_t *key, const uint8_t *user) {
    if (handle != 0) {
        p->progress = vxGoProgress;
        p->user_data = (void *)handle;
    }
    return vx_index_train_ex(index, p, key, user);
}
*/
import "C"

import (
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"unsafe"
)

// Status is a vx_status code.
type Status int32

// The status codes, each taken from the C header so a renamed code breaks
// the build. This is the one list of codes: each error code's sentinel below
// is built from its constant, which also adds the code to AllStatuses, and a
// test checks AllStatuses against the header.
const (
	StatusOK                Status = C.VX_STATUS_OK
	StatusNullArgument      Status = C.VX_STATUS_NULL_ARGUMENT
	StatusInvalidArgument   Status = C.VX_STATUS_INVALID_ARGUMENT
	StatusDimensionMismatch Status = C.VX_STATUS_DIMENSION_MISMATCH
	StatusInvalidUTF8       Status = C.VX_STATUS_INVALID_UTF8
	StatusInvalidJSON       Status = C.VX_STATUS_INVALID_JSON
	StatusInvalidFilter     Status = C.VX_STATUS_INVALID_FILTER
	StatusBufferTooSmall    Status = C.VX_STATUS_BUFFER_TOO_SMALL
	StatusNotFound          Status = C.VX_STATUS_NOT_FOUND
	StatusAlreadyExists     Status = C.VX_STATUS_ALREADY_EXISTS
	StatusNotEnoughVectors  Status = C.VX_STATUS_NOT_ENOUGH_VECTORS
	StatusPoisoned          Status = C.VX_STATUS_POISONED
	StatusCancelled         Status = C.VX_STATUS_CANCELLED
	StatusWrongKey          Status = C.VX_STATUS_WRONG_KEY
	StatusPermissionDenied  Status = C.VX_STATUS_PERMISSION_DENIED
	StatusIntegrity         Status = C.VX_STATUS_INTEGRITY
	StatusRNGFailed         Status = C.VX_STATUS_RNG_FAILED
	StatusMemoryLimit       Status = C.VX_STATUS_MEMORY_LIMIT
	StatusOutOfMemory       Status = C.VX_STATUS_OUT_OF_MEMORY
	StatusIO                Status = C.VX_STATUS_IO
	StatusStorage           Status = C.VX_STATUS_STORAGE
	StatusInternal          Status = C.VX_STATUS_INTERNAL
	StatusPanic             Status = C.VX_STATUS_PANIC
)

// AllStatuses lists every code, for callers that map them: StatusOK, then
// the code of each sentinel in the order they are declared.
var AllStatuses = []Status{StatusOK}

func sentinel(code Status) *Error {
	AllStatuses = append(AllStatuses, code)
	return &Error{Code: code}
}

// String is the library's static description of the code.
func (s Status) String() string { return C.GoString(C.vx_status_str(C.vx_status(s))) }

// Error is a failed call: its status code and the library's one-line message.
type Error struct {
	Code Status
	Msg  string
}

func (e *Error) Error() string { return fmt.Sprintf("vx: %s: %s", e.Code, e.Msg) }

// Is makes errors.Is(err, vx.ErrWrongKey) match by code.
func (e *Error) Is(target error) bool {
	var t *Error
	return errors.As(target, &t) && t.Code == e.Code
}

// Sentinels for errors.Is, one per error code.
var (
	ErrNullArgument      = sentinel(StatusNullArgument)
	ErrInvalidArgument   = sentinel(StatusInvalidArgument)
	ErrDimensionMismatch = sentinel(StatusDimensionMismatch)
	ErrInvalidUTF8       = sentinel(StatusInvalidUTF8)
	ErrInvalidJSON       = sentinel(StatusInvalidJSON)
	ErrInvalidFilter     = sentinel(StatusInvalidFilter)
	ErrBufferTooSmall    = sentinel(StatusBufferTooSmall)
	ErrNotFound          = sentinel(StatusNotFound)
	ErrAlreadyExists     = sentinel(StatusAlreadyExists)
	ErrNotEnoughVectors  = sentinel(StatusNotEnoughVectors)
	ErrPoisoned          = sentinel(StatusPoisoned)
	ErrCancelled         = sentinel(StatusCancelled)
	ErrWrongKey          = sentinel(StatusWrongKey)
	ErrPermissionDenied  = sentinel(StatusPermissionDenied)
	ErrIntegrity         = sentinel(StatusIntegrity)
	ErrRNGFailed         = sentinel(StatusRNGFailed)
	ErrMemoryLimit       = sentinel(StatusMemoryLimit)
	ErrOutOfMemory       = sentinel(StatusOutOfMemory)
	ErrIO                = sentinel(StatusIO)
	ErrStorage           = sentinel(StatusStorage)
	ErrInternal          = sentinel(StatusInternal)
	ErrPanic             = sentinel(StatusPanic)
)

// ErrClosed is returned by every method after Close.
var ErrClosed = errors.New("vx: use of a closed handle")

// KeyLen and UserIDLen are the lengths of keys and user ids.
const (
	KeyLen    = C.VX_KEY_LEN
	UserIDLen = C.VX_USER_ID_LEN
	EpochLen  = C.VX_EPOCH_LEN
)

// Metrics.
const (
	Euclidean        = uint32(C.VX_METRIC_EUCLIDEAN)
	SquaredEuclidean = uint32(C.VX_METRIC_SQUARED_EUCLIDEAN)
	Cosine           = uint32(C.VX_METRIC_COSINE)
	InnerProduct     = uint32(C.VX_METRIC_INNER_PRODUCT)
)

// Index types (IndexConfig.IndexType). IVFRaBitQ keeps RaBitQ codes of
// QuantizerBits bits per dimension in its lists and reranks the best
// candidates exactly; until trained its queries are exact exhaustive
// searches, as IVFFlat's. Since 0.6.
const (
	IVFFlat   = uint32(C.VX_INDEX_TYPE_IVF_FLAT)
	IVFRaBitQ = uint32(C.VX_INDEX_TYPE_IVF_RABITQ)
)

// MaxQuantizerBits bounds IndexConfig.QuantizerBits and MaxRerankMult
// QueryOptions.RerankMult. Since 0.6.
const (
	MaxQuantizerBits = uint32(C.VX_MAX_QUANTIZER_BITS)
	MaxRerankMult    = uint32(C.VX_MAX_RERANK_MULT)
)

// MaxBM25K1 bounds IndexConfig.BM25K1. Since 0.8.
const MaxBM25K1 = float32(C.VX_MAX_BM25_K1)

// Include bits for Get and Query.
const (
	IncludeDistance = uint32(C.VX_INCLUDE_DISTANCE)
	IncludeMetadata = uint32(C.VX_INCLUDE_METADATA)
	IncludeContents = uint32(C.VX_INCLUDE_CONTENTS)
	IncludeVector   = uint32(C.VX_INCLUDE_VECTOR)
)

// Training states.
const (
	Untrained = uint32(C.VX_TRAINING_UNTRAINED)
	Training  = uint32(C.VX_TRAINING_TRAINING)
	Trained   = uint32(C.VX_TRAINING_TRAINED)
)

// trainEx lives here because the C helper it calls is defined in this
// file's preamble (a file with //export may only declare).
func trainEx(ix *C.vx_index, p *C.vx_train_params, handle uintptr, k, u *C.uint8_t) error {
	return call(func() C.vx_status { return C.vx_go_train_ex(ix, p, C.uintptr_t(handle), k, u) })
}

// Version is the library's version string.
func Version() string { return C.GoString(C.vx_version_string()) }

// call runs one C call on a locked OS thread and reads the thread's last
// error message there, before anything else can run on it.
func call(f func() C.vx_status) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	st := f()
	if st == C.VX_STATUS_OK {
		return nil
	}
	var n C.size_t
	C.vx_last_error_message(nil, 0, &n)
	buf := make([]byte, int(n)+1)
	C.vx_last_error_message((*C.char)(unsafe.Pointer(unsafe.SliceData(buf))), C.size_t(len(buf)), &n)
	return &Error{Code: Status(st), Msg: string(buf[:n])}
}

// fixedPtr points C at a caller's fixed-length byte slice (a key or a user
// id) without copying it; nil stays nil.
func fixedPtr(b []byte, want int, what string) (*C.uint8_t, error) {
	if b == nil {
		return nil, nil
	}
	if len(b) != want {
		return nil, &Error{Code: StatusInvalidArgument, Msg: fmt.Sprintf("%s must be %d bytes, got %d", what, want, len(b))}
	}
	return (*C.uint8_t)(unsafe.Pointer(unsafe.SliceData(b))), nil
}

func keyPtr(key []byte) (*C.uint8_t, error) { return fixedPtr(key, KeyLen, "key") }

func userPtr(user []byte) (*C.uint8_t, error) { return fixedPtr(user, UserIDLen, "user id") }

// cStrings copies Go strings into C memory; free them with freeAll.
func cStrings(ss []string) []*C.char {
	out := make([]*C.char, len(ss))
	for i, s := range ss {
		out[i] = C.CString(s)
	}
	return out
}

func freeAll(ps []*C.char) {
	for _, p := range ps {
		C.free(unsafe.Pointer(p))
	}
}

func ptrOf[T any](s []T) *T {
	if len(s) == 0 {
		return nil
	}
	return unsafe.SliceData(s)
}

// ClientOptions configure Open. Zero Threads means one per core; a nil
// CacheBytes keeps the library's default (1 GiB); 0 disables the cache.
type ClientOptions struct {
	Threads    uint32
	CacheBytes *uint64
}

// Client is an open backing store. Safe for concurrent use; Close is idempotent.
type Client struct {
	mu      sync.RWMutex
	c       *C.vx_client
	cleanup runtime.Cleanup
}

// Open opens "memory:", "file:/dir" or a plain directory path.
func Open(uri string, opts *ClientOptions) (*Client, error) {
	var o C.vx_client_options
	C.vx_client_options_init(&o)
	if opts != nil {
		o.threads = C.uint32_t(opts.Threads)
		if opts.CacheBytes != nil {
			o.cache_bytes = C.uint64_t(*opts.CacheBytes)
		}
	}
	curi := C.CString(uri)
	defer C.free(unsafe.Pointer(curi))
	var c *C.vx_client
	if err := call(func() C.vx_status { return C.vx_client_open(curi, &o, &c) }); err != nil {
		return nil, err
	}
	cl := &Client{c: c}
	// A leak backstop only: Close is the way to free a client.
	cl.cleanup = runtime.AddCleanup(cl, func(p *C.vx_client) { C.vx_client_free(p) }, c)
	return cl, nil
}

// Close frees the client; indexes opened from it stay usable. Idempotent.
func (cl *Client) Close() error {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	if cl.c != nil {
		cl.cleanup.Stop()
		C.vx_client_free(cl.c)
		cl.c = nil
	}
	return nil
}

// ListIndexes returns every index name in the store.
func (cl *Client) ListIndexes() ([]string, error) {
	cl.mu.RLock()
	defer cl.mu.RUnlock()
	if cl.c == nil {
		return nil, ErrClosed
	}
	var l *C.vx_string_list
	if err := call(func() C.vx_status { return C.vx_client_list_indexes(cl.c, &l) }); err != nil {
		return nil, err
	}
	defer C.vx_string_list_free(l)
	return stringList(l), nil
}

func stringList(l *C.vx_string_list) []string {
	n := int(C.vx_string_list_len(l))
	out := make([]string, n)
	for i := range out {
		out[i] = C.GoString(C.vx_string_list_get(l, C.size_t(i)))
	}
	return out
}

// IndexConfig configures CreateIndex; the zero value is the default
// (dimension fixed by the first upsert, Euclidean, IVF_FLAT, F32).
type IndexConfig struct {
	Dimension uint32
	Metric    uint32
	F16       bool
	// IndexType is IVFFlat (0, the default) or IVFRaBitQ.
	IndexType uint32
	// QuantizerBits: IVFRaBitQ only, 1 to MaxQuantizerBits bits per
	// dimension (0 = the library's default; Index.QuantizerBits reads it
	// back). Must be 0 with IVFFlat.
	QuantizerBits uint32
	// FilterableFields are metadata fields (dot-paths) vx keeps an
	// in-memory index of, so filters on them are answered without a scan.
	// Since 0.7.
	FilterableFields []string
	// TextFields are metadata fields (dot-paths) holding text (a string or
	// an array of strings) for keyword search (MetadataQuery.Text) and
	// hybrid search (QueryOptions.Text), ranked by BM25. Since 0.8.
	TextFields []string
	// BM25K1 is BM25's term-frequency saturation, 0 to MaxBM25K1; nil =
	// the default, 1.2. Since 0.8.
	BM25K1 *float32
	// BM25B is BM25's document-length normalisation, 0 (none) to 1 (full);
	// nil = the default, 0.75. Since 0.8.
	BM25B *float32
}

// CreateIndex creates an encrypted index under a 32-byte root key.
func (cl *Client) CreateIndex(name string, key []byte, cfg *IndexConfig) (*Index, error) {
	cl.mu.RLock()
	defer cl.mu.RUnlock()
	if cl.c == nil {
		return nil, ErrClosed
	}
	kp, err := keyPtr(key)
	if err != nil {
		return nil, err
	}
	if kp == nil {
		return nil, &Error{Code: StatusNullArgument, Msg: "key is nil"}
	}
	var c C.vx_index_config
	C.vx_index_config_init(&c)
	if cfg != nil {
		c.dimension = C.uint32_t(cfg.Dimension)
		c.metric = C.uint32_t(cfg.Metric)
		if cfg.F16 {
			c.storage_precision = C.VX_PRECISION_F16
		}
		c.index_type = C.uint32_t(cfg.IndexType)
		c.quantizer_bits = C.uint32_t(cfg.QuantizerBits)
		if len(cfg.FilterableFields) > 0 {
			text, err := json.Marshal(cfg.FilterableFields)
			if err != nil {
				return nil, &Error{Code: StatusInvalidArgument, Msg: "FilterableFields: " + err.Error()}
			}
			fields := C.CString(string(text))
			defer C.free(unsafe.Pointer(fields))
			c.filterable_fields_json = fields
		}
		if len(cfg.TextFields) > 0 {
			text, err := json.Marshal(cfg.TextFields)
			if err != nil {
				return nil, &Error{Code: StatusInvalidArgument, Msg: "TextFields: " + err.Error()}
			}
			fields := C.CString(string(text))
			defer C.free(unsafe.Pointer(fields))
			c.text_fields_json = fields
		}
		if cfg.BM25K1 != nil {
			c.bm25_k1 = C.float(*cfg.BM25K1)
		}
		if cfg.BM25B != nil {
			c.bm25_b = C.float(*cfg.BM25B)
		}
	}
	cname := C.CString(name)
	defer C.free(unsafe.Pointer(cname))
	var ix *C.vx_index
	err = call(func() C.vx_status { return C.vx_index_create(cl.c, cname, kp, &c, &ix) })
	runtime.KeepAlive(key)
	if err != nil {
		return nil, err
	}
	return newIndex(ix), nil
}

// LoadIndex opens an existing index with its root key (user nil) or a user's key.
func (cl *Client) LoadIndex(name string, key, user []byte) (*Index, error) {
	cl.mu.RLock()
	defer cl.mu.RUnlock()
	if cl.c == nil {
		return nil, ErrClosed
	}
	kp, err := keyPtr(key)
	if err != nil {
		return nil, err
	}
	up, err := userPtr(user)
	if err != nil {
		return nil, err
	}
	cname := C.CString(name)
	defer C.free(unsafe.Pointer(cname))
	var ix *C.vx_index
	err = call(func() C.vx_status { return C.vx_index_load(cl.c, cname, kp, up, &ix) })
	runtime.KeepAlive(key)
	runtime.KeepAlive(user)
	if err != nil {
		return nil, err
	}
	return newIndex(ix), nil
}
