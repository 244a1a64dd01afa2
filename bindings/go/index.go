//go:build cgo

package vx

/*
#include <stdlib.h>
#include <vx.h>
extern int vxGoProgress(void *user_data, uint32_t iteration, uint32_t max_iters, double objective);
*/
import "C"

import (
	"runtime"
	"runtime/cgo"
	"sync"
	"unsafe"
)

// Index is an opened index. Safe for concurrent use; Close is idempotent
// and waits for calls under way.
type Index struct {
	mu      sync.RWMutex
	ix      *C.vx_index
	cleanup runtime.Cleanup
}

func newIndex(ix *C.vx_index) *Index {
	x := &Index{ix: ix}
	x.cleanup = runtime.AddCleanup(x, func(p *C.vx_index) { C.vx_index_free(p) }, ix)
	return x
}

// Close frees the handle (the index stays in the store). Idempotent.
func (x *Index) Close() error {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.ix != nil {
		x.cleanup.Stop()
		C.vx_index_free(x.ix)
		x.ix = nil
	}
	return nil
}

// with runs f with the handle under the read lock, or returns ErrClosed.
func (x *Index) with(f func(*C.vx_index) error) error {
	x.mu.RLock()
	defer x.mu.RUnlock()
	if x.ix == nil {
		return ErrClosed
	}
	return f(x.ix)
}

// Creds are per-call credentials: nil Key = the handle's key.
type Creds struct {
	Key  []byte
	User []byte
}

func (c *Creds) ptrs() (*C.uint8_t, *C.uint8_t, error) {
	if c == nil {
		return nil, nil, nil
	}
	k, err := keyPtr(c.Key)
	if err != nil {
		return nil, nil, err
	}
	u, err := userPtr(c.User)
	return k, u, err
}

func (c *Creds) keepAlive() {
	if c != nil {
		runtime.KeepAlive(c.Key)
		runtime.KeepAlive(c.User)
	}
}

// Name, Dimension, Metric, IndexType, QuantizerBits, NLists and
// TrainingState read the handle's state (0 for a key without READ).
func (x *Index) Name() string {
	var s string
	_ = x.with(func(ix *C.vx_index) error { s = C.GoString(C.vx_index_name(ix)); return nil })
	return s
}

func (x *Index) Dimension() uint32 {
	var d uint32
	_ = x.with(func(ix *C.vx_index) error { d = uint32(C.vx_index_dimension(ix)); return nil })
	return d
}

func (x *Index) Metric() uint32 {
	var d uint32
	_ = x.with(func(ix *C.vx_index) error { d = uint32(C.vx_index_metric(ix)); return nil })
	return d
}

// IndexType is IVFFlat or IVFRaBitQ.
func (x *Index) IndexType() uint32 {
	var d uint32
	_ = x.with(func(ix *C.vx_index) error { d = uint32(C.vx_index_type(ix)); return nil })
	return d
}

// QuantizerBits is an IVFRaBitQ index's bits per dimension as resolved at
// creation (0 for IVFFlat). Since 0.6.
func (x *Index) QuantizerBits() uint32 {
	var d uint32
	_ = x.with(func(ix *C.vx_index) error { d = uint32(C.vx_index_quantizer_bits(ix)); return nil })
	return d
}

func (x *Index) NLists() uint32 {
	var d uint32
	_ = x.with(func(ix *C.vx_index) error { d = uint32(C.vx_index_n_lists(ix)); return nil })
	return d
}

// AutoNProbes is the probe count a query with NProbes 0 uses, calibrated at
// training (0 until trained).
func (x *Index) AutoNProbes() uint32 {
	var d uint32
	_ = x.with(func(ix *C.vx_index) error { d = uint32(C.vx_index_auto_n_probes(ix)); return nil })
	return d
}

func (x *Index) TrainingState() uint32 {
	var d uint32
	_ = x.with(func(ix *C.vx_index) error { d = uint32(C.vx_index_training_state(ix)); return nil })
	return d
}

// NumVectors counts the items.
func (x *Index) NumVectors(c *Creds) (uint64, error) {
	var n C.uint64_t
	err := x.with(func(ix *C.vx_index) error {
		k, u, err := c.ptrs()
		if err != nil {
			return err
		}
		defer c.keepAlive()
		return call(func() C.vx_status { return C.vx_index_num_vectors(ix, k, u, &n) })
	})
	return uint64(n), err
}

// Item is one item to upsert or one item returned by Get.
type Item struct {
	ID       string
	Vector   []float32
	Metadata *string // JSON object text, nil = none
	Contents []byte  // nil = none
	Found    bool    // set by Get
}

// Upsert inserts or overwrites items atomically; every vector has the same length.
func (x *Index) Upsert(items []Item, c *Creds) error {
	if len(items) == 0 {
		return nil
	}
	dim := len(items[0].Vector)
	flat := make([]float32, 0, len(items)*dim)
	ids := make([]string, len(items))
	var metas []*C.char
	var contents []*C.uint8_t
	var lens []C.size_t
	for i, it := range items {
		if len(it.Vector) != dim {
			return &Error{Code: StatusDimensionMismatch, Msg: "all vectors of a batch must have the same length"}
		}
		flat = append(flat, it.Vector...)
		ids[i] = it.ID
	}
	cids := cStrings(ids)
	defer freeAll(cids)
	for i, it := range items {
		if it.Metadata != nil {
			if metas == nil {
				metas = make([]*C.char, len(items))
			}
			metas[i] = C.CString(*it.Metadata)
		}
		if it.Contents != nil {
			if contents == nil {
				contents = make([]*C.uint8_t, len(items))
				lens = make([]C.size_t, len(items))
			}
			// A Go slice of Go pointers may not go to C: copy into C memory
			// (one spare byte so empty contents still have a pointer).
			p := C.malloc(C.size_t(len(it.Contents) + 1))
			copy(unsafe.Slice((*byte)(p), len(it.Contents)), it.Contents)
			contents[i] = (*C.uint8_t)(p)
			lens[i] = C.size_t(len(it.Contents))
		}
	}
	defer func() {
		for _, m := range metas {
			C.free(unsafe.Pointer(m))
		}
		for i, p := range contents {
			if p != nil {
				clear(unsafe.Slice((*byte)(unsafe.Pointer(p)), int(lens[i]))) // wipe the copy
				C.free(unsafe.Pointer(p))
			}
		}
	}()
	return x.with(func(ix *C.vx_index) error {
		k, u, err := c.ptrs()
		if err != nil {
			return err
		}
		defer c.keepAlive()
		err = call(func() C.vx_status {
			return C.vx_index_upsert(ix, C.size_t(len(items)), ptrOf(cids), (*C.float)(ptrOf(flat)), C.size_t(dim),
				ptrOf(contents), ptrOf(lens), ptrOf(metas), k, u)
		})
		runtime.KeepAlive(flat)
		return err
	})
}

// Get looks up ids; a missing id comes back with Found = false.
func (x *Index) Get(ids []string, include uint32, c *Creds) ([]Item, error) {
	cids := cStrings(ids)
	defer freeAll(cids)
	var out []Item
	err := x.with(func(ix *C.vx_index) error {
		k, u, err := c.ptrs()
		if err != nil {
			return err
		}
		defer c.keepAlive()
		var items *C.vx_items
		if err := call(func() C.vx_status {
			return C.vx_index_get(ix, C.size_t(len(ids)), ptrOf(cids), C.uint32_t(include), k, u, &items)
		}); err != nil {
			return err
		}
		defer C.vx_items_free(items)
		out = make([]Item, len(ids))
		for i := range out {
			ci := C.size_t(i)
			out[i].ID = ids[i]
			out[i].Found = bool(C.vx_items_found(items, ci))
			var n C.size_t
			if v := C.vx_items_vector(items, ci, &n); v != nil {
				out[i].Vector = append([]float32(nil), unsafe.Slice((*float32)(unsafe.Pointer(v)), int(n))...)
			}
			if m := C.vx_items_metadata(items, ci); m != nil {
				s := C.GoString(m)
				out[i].Metadata = &s
			}
			if b := C.vx_items_contents(items, ci, &n); b != nil {
				out[i].Contents = C.GoBytes(unsafe.Pointer(b), C.int(n))
			}
		}
		return nil
	})
	return out, err
}

// Delete removes the ids that exist and says how many did.
func (x *Index) Delete(ids []string, c *Creds) (int, error) {
	cids := cStrings(ids)
	defer freeAll(cids)
	var n C.size_t
	err := x.with(func(ix *C.vx_index) error {
		k, u, err := c.ptrs()
		if err != nil {
			return err
		}
		defer c.keepAlive()
		return call(func() C.vx_status { return C.vx_index_delete(ix, C.size_t(len(ids)), ptrOf(cids), k, u, &n) })
	})
	return int(n), err
}

// ListIDs pages through ids in byte order (limit 0 = all).
func (x *Index) ListIDs(offset, limit int, c *Creds) ([]string, error) {
	var out []string
	err := x.with(func(ix *C.vx_index) error {
		k, u, err := c.ptrs()
		if err != nil {
			return err
		}
		defer c.keepAlive()
		var l *C.vx_string_list
		if err := call(func() C.vx_status {
			return C.vx_index_list_ids(ix, C.size_t(offset), C.size_t(limit), k, u, &l)
		}); err != nil {
			return err
		}
		defer C.vx_string_list_free(l)
		out = stringList(l)
		return nil
	})
	return out, err
}

// QueryOptions; zero TopK means the library default (100).
type QueryOptions struct {
	TopK    uint32
	NProbes uint32
	Filter  string // MongoDB-style JSON, "" = none
	Include uint32 // 0 = distances only
	Greedy  bool
	// RerankMult: IVFRaBitQ once trained, candidates reranked exactly per
	// hit, up to MaxRerankMult (0 = automatic). Since 0.6.
	RerankMult uint32
	// Text turns on hybrid search: its BM25 ranking over the index's text
	// fields (IndexConfig.TextFields) is fused with the vector ranking by
	// weighted reciprocal rank; hits come by descending Hit.Score, each with
	// its exact distance. "" = vector search only. Since 0.8.
	Text string
	// Alpha is the weight of the vector ranking in the fusion, 0 to 1 (the
	// text's is 1 - Alpha); nil = the default, 0.5. Since 0.8.
	Alpha *float32
	// RRFK is the rank damping of the fusion (0 = the default, 60). Since 0.8.
	RRFK uint32
	// VectorDepth and TextDepth are the items the vector and the text
	// ranking contribute, up to 65536 (0 = the default, max(2*TopK, 50)).
	// Since 0.8.
	VectorDepth uint32
	TextDepth   uint32
}

// Hit is one result row.
type Hit struct {
	ID       string
	Distance float32
	// Score, higher is better: the BM25 score of a keyword search
	// (MetadataQuery.Text), the fused score of a hybrid search
	// (QueryOptions.Text); NaN otherwise. Since 0.8.
	Score    float32
	Metadata *string
	Contents []byte
	Vector   []float32
}

// Query searches with nq = len(queries)/dim query vectors.
func (x *Index) Query(queries []float32, dim int, o *QueryOptions, c *Creds) ([][]Hit, error) {
	if dim <= 0 || len(queries)%dim != 0 {
		return nil, &Error{Code: StatusInvalidArgument, Msg: "len(queries) must be a positive multiple of dim"}
	}
	var p C.vx_query_params
	C.vx_query_params_init(&p)
	if o != nil {
		if o.TopK != 0 {
			p.top_k = C.uint32_t(o.TopK)
		}
		p.n_probes = C.uint32_t(o.NProbes)
		if o.Include != 0 {
			p.include = C.uint32_t(o.Include)
		}
		p.greedy = C.bool(o.Greedy)
		p.rerank_mult = C.uint32_t(o.RerankMult)
		if o.Filter != "" {
			f := C.CString(o.Filter)
			defer C.free(unsafe.Pointer(f))
			p.filter_json = f
		}
		if o.Text != "" {
			t := C.CString(o.Text)
			defer C.free(unsafe.Pointer(t))
			p.text = t
		}
		if o.Alpha != nil {
			p.alpha = C.float(*o.Alpha)
		}
		p.rrf_k = C.uint32_t(o.RRFK)
		p.vector_depth = C.uint32_t(o.VectorDepth)
		p.text_depth = C.uint32_t(o.TextDepth)
	}
	nq := len(queries) / dim
	var out [][]Hit
	err := x.with(func(ix *C.vx_index) error {
		k, u, err := c.ptrs()
		if err != nil {
			return err
		}
		defer c.keepAlive()
		var r *C.vx_results
		err = call(func() C.vx_status {
			return C.vx_index_query(ix, (*C.float)(ptrOf(queries)), C.size_t(nq), C.size_t(dim), &p, k, u, &r)
		})
		runtime.KeepAlive(queries)
		if err != nil {
			return err
		}
		defer C.vx_results_free(r)
		out = hitsOf(r, nq)
		return nil
	})
	return out, err
}

// hitsOf copies the hits of nq queries out of r.
func hitsOf(r *C.vx_results, nq int) [][]Hit {
	out := make([][]Hit, nq)
	for q := range out {
		n := int(C.vx_results_len(r, C.size_t(q)))
		out[q] = make([]Hit, n)
		for i := range out[q] {
			cq, ci := C.size_t(q), C.size_t(i)
			h := &out[q][i]
			h.ID = C.GoString(C.vx_results_id(r, cq, ci))
			h.Distance = float32(C.vx_results_distance(r, cq, ci))
			h.Score = float32(C.vx_results_score(r, cq, ci))
			if m := C.vx_results_metadata(r, cq, ci); m != nil {
				s := C.GoString(m)
				h.Metadata = &s
			}
			var l C.size_t
			if b := C.vx_results_contents(r, cq, ci, &l); b != nil {
				h.Contents = C.GoBytes(unsafe.Pointer(b), C.int(l))
			}
			if v := C.vx_results_vector(r, cq, ci, &l); v != nil {
				h.Vector = append([]float32(nil), unsafe.Slice((*float32)(unsafe.Pointer(v)), int(l))...)
			}
		}
	}
	return out
}

// MetadataQuery is what QueryMetadata asks. The zero value lists every
// item by id, ascending, with its metadata. Since 0.7.
type MetadataQuery struct {
	Filter string // MongoDB-style JSON, "" = every item
	// Text makes it a keyword search: only the matches holding a term of
	// this text in the index's text fields (IndexConfig.TextFields), by
	// descending BM25 score (Hit.Score) unless OrderBy is given. "" = none.
	// Since 0.8.
	Text string
	// OrderBy is the dot-path of a metadata field ("date", "doc.year"); ""
	// orders by id. Values order by type (missing and null, numbers,
	// strings, objects and arrays, booleans), then by value; ties by id.
	OrderBy    string
	Descending bool
	TopK       int    // 0 = every match from Offset
	Offset     int    // matches skipped first
	Include    uint32 // 0 = IncludeMetadata; IncludeDistance is refused (there is none)
}

// QueryMetadata lists the items a filter matches ordered by one metadata
// field, a page at a time, without a query vector (vx_index_query_metadata).
// Hits have NaN distances; with Text, BM25 scores. Since 0.7.
func (x *Index) QueryMetadata(q *MetadataQuery, c *Creds) ([]Hit, error) {
	if q == nil {
		q = &MetadataQuery{}
	}
	if q.TopK < 0 || q.Offset < 0 {
		return nil, &Error{Code: StatusInvalidArgument, Msg: "TopK and Offset must not be negative"}
	}
	include := q.Include
	if include == 0 {
		include = IncludeMetadata
	}
	var filter, text, orderBy *C.char
	if q.Filter != "" {
		filter = C.CString(q.Filter)
		defer C.free(unsafe.Pointer(filter))
	}
	if q.Text != "" {
		text = C.CString(q.Text)
		defer C.free(unsafe.Pointer(text))
	}
	if q.OrderBy != "" {
		orderBy = C.CString(q.OrderBy)
		defer C.free(unsafe.Pointer(orderBy))
	}
	var out []Hit
	err := x.with(func(ix *C.vx_index) error {
		k, u, err := c.ptrs()
		if err != nil {
			return err
		}
		defer c.keepAlive()
		var r *C.vx_results
		if err := call(func() C.vx_status {
			return C.vx_index_query_metadata(ix, filter, text, C.size_t(q.TopK), orderBy, C.bool(!q.Descending),
				C.size_t(q.Offset), C.uint32_t(include), k, u, &r)
		}); err != nil {
			return err
		}
		defer C.vx_results_free(r)
		out = hitsOf(r, 1)[0]
		return nil
	})
	return out, err
}

// TrainOptions: zero means automatic for the first five.
type TrainOptions struct {
	NLists       uint32
	BatchSize    int
	MaxIters     uint32
	Tolerance    float64
	MaxMemoryMiB int
	Seed         *uint64
	// Progress is called after each k-means iteration; return true to cancel.
	Progress func(iteration, maxIters uint32, objective float64) bool
}

//export vxGoProgress
func vxGoProgress(userData unsafe.Pointer, iteration, maxIters C.uint32_t, objective C.double) C.int {
	f := cgo.Handle(uintptr(userData)).Value().(func(uint32, uint32, float64) bool)
	if f(uint32(iteration), uint32(maxIters), float64(objective)) {
		return 1
	}
	return 0
}

// Train builds the IVF lists (see vx_index_train).
func (x *Index) Train(o *TrainOptions, c *Creds) error {
	var p C.vx_train_params
	C.vx_train_params_init(&p)
	var handle uintptr
	if o != nil {
		p.n_lists = C.uint32_t(o.NLists)
		p.batch_size = C.size_t(o.BatchSize)
		p.max_iters = C.uint32_t(o.MaxIters)
		p.tolerance = C.double(o.Tolerance)
		p.max_memory = C.size_t(o.MaxMemoryMiB)
		if o.Seed != nil {
			p.seed = C.uint64_t(*o.Seed)
		}
		if o.Progress != nil {
			h := cgo.NewHandle(o.Progress)
			defer h.Delete()
			handle = uintptr(h)
		}
	}
	return x.with(func(ix *C.vx_index) error {
		k, u, err := c.ptrs()
		if err != nil {
			return err
		}
		defer c.keepAlive()
		return trainEx(ix, &p, handle, k, u)
	})
}

// Epoch names a committed state of an index: its version and digest.
type Epoch [EpochLen]byte

// Epoch is the name of the committed state. Keep it outside the store and
// pass it to RequireEpoch after loading to detect a rolled-back or forked
// store.
func (x *Index) Epoch(c *Creds) (Epoch, error) {
	var e Epoch
	err := x.with(func(ix *C.vx_index) error {
		k, u, err := c.ptrs()
		if err != nil {
			return err
		}
		defer c.keepAlive()
		return call(func() C.vx_status { return C.vx_index_epoch(ix, k, u, (*C.uint8_t)(&e[0])) })
	})
	return e, err
}

// RequireEpoch fails with ErrIntegrity if the stored index is older than
// epoch, or at its version but another state.
func (x *Index) RequireEpoch(epoch Epoch) error {
	return x.with(func(ix *C.vx_index) error {
		return call(func() C.vx_status { return C.vx_index_require_epoch(ix, (*C.uint8_t)(&epoch[0])) })
	})
}

// Compact deletes what failed or killed training runs wrote ahead of their
// commit, then gives a file: store's free space back to the system (the
// pages deletes, overwrites and training freed). WRITE.
func (x *Index) Compact(c *Creds) error {
	return x.with(func(ix *C.vx_index) error {
		k, u, err := c.ptrs()
		if err != nil {
			return err
		}
		defer c.keepAlive()
		return call(func() C.vx_status { return C.vx_index_compact(ix, k, u) })
	})
}

// DeleteIndex removes the index and everything it stored (root key only).
func (x *Index) DeleteIndex(c *Creds) error {
	return x.with(func(ix *C.vx_index) error {
		k, u, err := c.ptrs()
		if err != nil {
			return err
		}
		defer c.keepAlive()
		return call(func() C.vx_status { return C.vx_index_delete_index(ix, k, u) })
	})
}
