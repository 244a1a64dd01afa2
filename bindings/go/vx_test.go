package vx_test

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"testing"

	"vxdb.dev/vx"
)

func key(b byte) []byte {
	k := make([]byte, vx.KeyLen)
	for i := range k {
		k[i] = b + byte(i)
	}
	return k
}

func vectors(n, dim int, shift float32) []vx.Item {
	items := make([]vx.Item, n)
	for i := range items {
		v := make([]float32, dim)
		for j := range v {
			v[j] = float32((i*7+j*13)%97)/97 + shift*float32(i%16)
		}
		meta := fmt.Sprintf(`{"group": %d}`, i%5)
		items[i] = vx.Item{ID: fmt.Sprintf("id-%d", i), Vector: v, Metadata: &meta}
	}
	return items
}

func newIndex(t *testing.T) (*vx.Client, *vx.Index) {
	t.Helper()
	c, err := vx.Open("memory:", nil)
	if err != nil {
		t.Fatal(err)
	}
	ix, err := c.CreateIndex("t", key(1), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ix.Close(); c.Close() })
	return c, ix
}

func TestEveryStatusHasADescriptionAndMatchesItsSentinel(t *testing.T) {
	seen := map[string]bool{}
	for _, s := range vx.AllStatuses {
		if s.String() == "" || seen[s.String()] {
			t.Fatalf("status %d has an empty or duplicate description %q", int32(s), s.String())
		}
		seen[s.String()] = true
		err := error(&vx.Error{Code: s, Msg: "x"})
		if !errors.Is(err, &vx.Error{Code: s}) {
			t.Fatalf("errors.Is fails for %v", s)
		}
	}
	if errors.Is(&vx.Error{Code: vx.StatusIO}, vx.ErrWrongKey) {
		t.Fatal("different codes must not match")
	}
}

func TestRoundTrip(t *testing.T) {
	_, ix := newIndex(t)
	items := vectors(500, 8, 0)
	items[3].Contents = []byte("payload")
	items[4].Contents = []byte{}
	if err := ix.Upsert(items, nil); err != nil {
		t.Fatal(err)
	}
	if n, err := ix.NumVectors(nil); err != nil || n != 500 {
		t.Fatalf("NumVectors = %d, %v", n, err)
	}
	hits, err := ix.Query(items[10].Vector, 8, &vx.QueryOptions{TopK: 3, Filter: `{"group": 0}`, Include: vx.IncludeMetadata | vx.IncludeContents}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(hits) != 1 || len(hits[0]) != 3 || hits[0][0].ID != "id-10" || *hits[0][0].Metadata != `{"group": 0}` {
		t.Fatalf("unexpected hits %+v", hits)
	}
	got, err := ix.Get([]string{"id-3", "id-4", "missing"}, vx.IncludeContents|vx.IncludeVector, nil)
	if err != nil {
		t.Fatal(err)
	}
	if string(got[0].Contents) != "payload" || got[1].Contents == nil || len(got[1].Contents) != 0 || got[2].Found {
		t.Fatalf("unexpected items %+v", got)
	}
	if len(got[0].Vector) != 8 {
		t.Fatalf("vector length %d", len(got[0].Vector))
	}
	if n, err := ix.Delete([]string{"id-3", "missing"}, nil); err != nil || n != 1 {
		t.Fatalf("Delete = %d, %v", n, err)
	}
	ids, err := ix.ListIDs(0, 5, nil)
	if err != nil || len(ids) != 5 {
		t.Fatalf("ListIDs = %v, %v", ids, err)
	}
	// Group 0 by id descending, the second page of 4; metadata by default.
	page, err := ix.QueryMetadata(&vx.MetadataQuery{Filter: `{"group": 0}`, Descending: true, TopK: 4, Offset: 4}, nil)
	if err != nil || len(page) != 4 || page[0].Metadata == nil || *page[0].Metadata != `{"group": 0}` {
		t.Fatalf("QueryMetadata = %+v, %v", page, err)
	}
	all, err := ix.QueryMetadata(&vx.MetadataQuery{Filter: `{"group": 0}`, Descending: true}, nil)
	if err != nil || all[4].ID != page[0].ID || all[7].ID != page[3].ID || all[0].ID <= all[1].ID {
		t.Fatalf("pages disagree: %+v then %+v, %v", all, page, err)
	}
	if _, err := ix.QueryMetadata(&vx.MetadataQuery{Include: vx.IncludeDistance}, nil); !errors.Is(err, vx.ErrInvalidArgument) {
		t.Fatalf("want ErrInvalidArgument for IncludeDistance, got %v", err)
	}
	if _, err := ix.QueryMetadata(&vx.MetadataQuery{OrderBy: "a..b"}, nil); !errors.Is(err, vx.ErrInvalidArgument) {
		t.Fatalf("want ErrInvalidArgument for a bad path, got %v", err)
	}
}

func TestErrorsCarryCodesAndMessages(t *testing.T) {
	c, ix := newIndex(t)
	if _, err := c.LoadIndex("t", key(2), nil); !errors.Is(err, vx.ErrWrongKey) {
		t.Fatalf("want ErrWrongKey, got %v", err)
	}
	if _, err := c.LoadIndex("nope", key(1), nil); !errors.Is(err, vx.ErrNotFound) {
		t.Fatalf("want ErrNotFound, got %v", err)
	}
	if _, err := c.CreateIndex("t", key(1), nil); !errors.Is(err, vx.ErrAlreadyExists) {
		t.Fatalf("want ErrAlreadyExists, got %v", err)
	}
	if err := ix.Upsert(vectors(2, 4, 0), nil); err != nil {
		t.Fatal(err)
	}
	_, err := ix.Query(make([]float32, 4), 4, &vx.QueryOptions{Filter: `{"a": {"$gt": []}}`}, nil)
	var e *vx.Error
	if !errors.As(err, &e) || e.Code != vx.StatusInvalidFilter || e.Msg == "" {
		t.Fatalf("want an invalid-filter error with a message, got %v", err)
	}
	if _, err := ix.Query(make([]float32, 6), 6, nil, nil); !errors.Is(err, vx.ErrDimensionMismatch) {
		t.Fatalf("want ErrDimensionMismatch, got %v", err)
	}
	if _, err := ix.NumVectors(&vx.Creds{Key: key(9)}); !errors.Is(err, vx.ErrWrongKey) {
		t.Fatalf("want ErrWrongKey for a per-call key, got %v", err)
	}
	if _, err := ix.NumVectors(&vx.Creds{Key: []byte{1, 2}}); !errors.Is(err, vx.ErrInvalidArgument) {
		t.Fatalf("want ErrInvalidArgument for a short key, got %v", err)
	}
	bad := `[1]`
	if err := ix.Upsert([]vx.Item{{ID: "x", Vector: make([]float32, 4), Metadata: &bad}}, nil); !errors.Is(err, vx.ErrInvalidJSON) {
		t.Fatalf("want ErrInvalidJSON, got %v", err)
	}
}

func TestTrainProgressAndCancel(t *testing.T) {
	_, ix := newIndex(t)
	if err := ix.Upsert(vectors(10500, 8, 1), nil); err != nil {
		t.Fatal(err)
	}
	if err := ix.Train(nil, nil); err != nil {
		t.Fatal(err)
	}
	calls := 0
	err := ix.Train(&vx.TrainOptions{NLists: 20, MaxIters: 30, Tolerance: 1e-12, Progress: func(it, max uint32, obj float64) bool {
		calls++
		return it == 2
	}}, nil)
	if !errors.Is(err, vx.ErrCancelled) || calls != 2 {
		t.Fatalf("want ErrCancelled after 2 calls, got %v after %d", err, calls)
	}
	if p := ix.AutoNProbes(); p < 1 || p > ix.NLists() {
		t.Fatalf("AutoNProbes = %d, want 1 to %d", p, ix.NLists())
	}
	if ix.TrainingState() != vx.Trained || ix.NLists() != 102 {
		t.Fatalf("the cancelled run must leave the first training: state %d, lists %d", ix.TrainingState(), ix.NLists())
	}
}

func TestCloseIsIdempotentAndRacesCalls(t *testing.T) {
	c, err := vx.Open("memory:", nil)
	if err != nil {
		t.Fatal(err)
	}
	ix, err := c.CreateIndex("race", key(3), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := ix.Upsert(vectors(200, 8, 0), nil); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				_, err := ix.Query(make([]float32, 8), 8, &vx.QueryOptions{TopK: 5}, nil)
				if err != nil && !errors.Is(err, vx.ErrClosed) {
					t.Errorf("query: %v", err)
					return
				}
			}
		}()
	}
	wg.Add(1)
	go func() { defer wg.Done(); ix.Close() }()
	wg.Wait()
	if err := ix.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := ix.NumVectors(nil); !errors.Is(err, vx.ErrClosed) {
		t.Fatalf("want ErrClosed, got %v", err)
	}
	c.Close()
	c.Close()
	if _, err := c.ListIndexes(); !errors.Is(err, vx.ErrClosed) {
		t.Fatalf("want ErrClosed, got %v", err)
	}
}

func TestUserKeysPermissionsAndRotation(t *testing.T) {
	c, root := newIndex(t)
	if err := root.Upsert(vectors(50, 4, 0), nil); err != nil {
		t.Fatal(err)
	}
	reader, writer := make([]byte, vx.UserIDLen), make([]byte, vx.UserIDLen)
	reader[0], writer[0] = 1, 2
	if err := root.CreateUserKeys(reader, key(30), vx.PermissionRead, nil); err != nil {
		t.Fatal(err)
	}
	if err := root.CreateUserKeys(writer, key(40), vx.PermissionWrite, key(1)); err != nil {
		t.Fatal(err)
	}
	if err := root.CreateUserKeys(writer, key(40), 8, nil); !errors.Is(err, vx.ErrInvalidArgument) {
		t.Fatalf("want ErrInvalidArgument for unknown permission bits, got %v", err)
	}
	users, err := root.ListUserKeys(nil)
	if err != nil || len(users) != 2 || users[0].UserID[0] != 1 || users[1].Permissions != vx.PermissionWrite {
		t.Fatalf("ListUserKeys = %+v, %v", users, err)
	}
	asReader := &vx.Creds{Key: key(30), User: reader}
	asWriter := &vx.Creds{Key: key(40), User: writer}
	if n, err := root.NumVectors(asReader); err != nil || n != 50 {
		t.Fatalf("reader NumVectors = %d, %v", n, err)
	}
	if _, err := root.NumVectors(asWriter); !errors.Is(err, vx.ErrPermissionDenied) {
		t.Fatalf("want ErrPermissionDenied for the writer reading, got %v", err)
	}
	if err := root.Upsert(vectors(1, 4, 0), asReader); !errors.Is(err, vx.ErrPermissionDenied) {
		t.Fatalf("want ErrPermissionDenied for the reader writing, got %v", err)
	}
	if err := root.Upsert(vectors(1, 4, 0), asWriter); err != nil {
		t.Fatal(err)
	}
	loaded, err := c.LoadIndex("t", key(30), reader)
	if err != nil {
		t.Fatal(err)
	}
	defer loaded.Close()
	if _, err := loaded.ListUserKeys(nil); !errors.Is(err, vx.ErrPermissionDenied) {
		t.Fatalf("want ErrPermissionDenied for a user listing users, got %v", err)
	}
	if err := root.RotateKey(key(1), key(5)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.LoadIndex("t", key(1), nil); !errors.Is(err, vx.ErrWrongKey) {
		t.Fatalf("want ErrWrongKey for the rotated-away root key, got %v", err)
	}
	if n, err := loaded.NumVectors(nil); err != nil || n != 50 {
		t.Fatalf("reader after rotation: %d, %v", n, err)
	}
	if err := root.DeleteUserKeys(reader, nil); err != nil {
		t.Fatal(err)
	}
	if err := root.DeleteUserKeys(reader, nil); err != nil {
		t.Fatalf("deleting again must be a no-op, got %v", err)
	}
	if _, err := loaded.NumVectors(nil); !errors.Is(err, vx.ErrWrongKey) {
		t.Fatalf("want ErrWrongKey for a deleted user's open handle, got %v", err)
	}
	if err := root.Compact(nil); err != nil {
		t.Fatalf("Compact on memory: = %v", err)
	}
	epoch, err := root.Epoch(nil)
	if err != nil || root.RequireEpoch(epoch) != nil {
		t.Fatalf("Epoch = %x, %v", epoch, err)
	}
	forked := epoch
	forked[vx.EpochLen-1] ^= 1 // the same version, another state
	if err := root.RequireEpoch(forked); !errors.Is(err, vx.ErrIntegrity) {
		t.Fatalf("want ErrIntegrity for another state at the epoch's version, got %v", err)
	}
	if err := root.RotateKey(nil, key(6)); !errors.Is(err, vx.ErrNullArgument) {
		t.Fatalf("want ErrNullArgument, got %v", err)
	}
}

func TestIVFRaBitQConfigAndRerankMult(t *testing.T) {
	c, flat := newIndex(t)
	rq, err := c.CreateIndex("rq", key(1), &vx.IndexConfig{Dimension: 8, IndexType: vx.IVFRaBitQ, QuantizerBits: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer rq.Close()
	if rq.IndexType() != vx.IVFRaBitQ || rq.QuantizerBits() != 3 || rq.Metric() != vx.Euclidean {
		t.Fatalf("type %d bits %d metric %d", rq.IndexType(), rq.QuantizerBits(), rq.Metric())
	}
	if flat.IndexType() != vx.IVFFlat || flat.QuantizerBits() != 0 {
		t.Fatalf("flat: type %d bits %d", flat.IndexType(), flat.QuantizerBits())
	}
	items := vectors(200, 8, 0.25)
	for _, ix := range []*vx.Index{flat, rq} {
		if err := ix.Upsert(items, nil); err != nil {
			t.Fatal(err)
		}
	}
	// Untrained, an IVF_RABITQ query is the exact exhaustive search IVF_FLAT's is.
	q := append(append([]float32{}, items[3].Vector...), items[150].Vector...)
	want, err := flat.Query(q, 8, &vx.QueryOptions{TopK: 10}, nil)
	if err != nil {
		t.Fatal(err)
	}
	got, err := rq.Query(q, 8, &vx.QueryOptions{TopK: 10, RerankMult: 4}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range want {
		if len(got[i]) != 10 || len(want[i]) != 10 {
			t.Fatalf("query %d: %d and %d hits", i, len(got[i]), len(want[i]))
		}
		for j := range want[i] {
			if got[i][j].ID != want[i][j].ID || got[i][j].Distance != want[i][j].Distance {
				t.Fatalf("query %d rank %d: %+v, IVF_FLAT %+v", i, j, got[i][j], want[i][j])
			}
		}
	}
	_, err = rq.Query(q, 8, &vx.QueryOptions{RerankMult: vx.MaxRerankMult + 1}, nil)
	var e *vx.Error
	if !errors.As(err, &e) || e.Code != vx.StatusInvalidArgument || e.Msg == "" {
		t.Fatalf("rerank_mult above the maximum: want ErrInvalidArgument with a message, got %v", err)
	}
	for _, cfg := range []vx.IndexConfig{
		{IndexType: vx.IVFRaBitQ, QuantizerBits: vx.MaxQuantizerBits + 1},
		{QuantizerBits: 2}, // IVF_FLAT takes none
		{IndexType: 1},     // IVF_PQ: reserved
	} {
		if _, err := c.CreateIndex("bad", key(1), &cfg); !errors.Is(err, vx.ErrInvalidArgument) {
			t.Fatalf("%+v: want ErrInvalidArgument, got %v", cfg, err)
		}
	}
}

func TestFilterableFields(t *testing.T) {
	c, plain := newIndex(t)
	fast, err := c.CreateIndex("fields", key(1), &vx.IndexConfig{FilterableFields: []string{"group"}})
	if err != nil {
		t.Fatal(err)
	}
	defer fast.Close()
	items := vectors(300, 8, 0)
	for _, ix := range []*vx.Index{plain, fast} {
		if err := ix.Upsert(items, nil); err != nil {
			t.Fatal(err)
		}
	}
	o := &vx.QueryOptions{TopK: 5, Filter: `{"group": {"$in": [1, 3]}}`}
	a, errA := plain.Query(items[7].Vector, 8, o, nil)
	b, errB := fast.Query(items[7].Vector, 8, o, nil)
	if errA != nil || errB != nil || len(b[0]) != 5 || fmt.Sprint(a) != fmt.Sprint(b) {
		t.Fatalf("answers differ: %v (%v) vs %v (%v)", a, errA, b, errB)
	}
	if _, err := c.CreateIndex("bad", key(1), &vx.IndexConfig{FilterableFields: []string{"a..b"}}); !errors.Is(err, vx.ErrInvalidArgument) {
		t.Fatalf("want ErrInvalidArgument for a bad path, got %v", err)
	}
}

func TestTextFields(t *testing.T) {
	c, plain := newIndex(t)
	bad := float32(2)
	if _, err := c.CreateIndex("bad", key(1), &vx.IndexConfig{TextFields: []string{"title"}, BM25B: &bad}); !errors.Is(err, vx.ErrInvalidArgument) {
		t.Fatalf("want ErrInvalidArgument for BM25B 2, got %v", err)
	}
	big := vx.MaxBM25K1 * 2
	if _, err := c.CreateIndex("bad", key(1), &vx.IndexConfig{TextFields: []string{"title"}, BM25K1: &big}); !errors.Is(err, vx.ErrInvalidArgument) {
		t.Fatalf("want ErrInvalidArgument for a BM25K1 above MaxBM25K1, got %v", err)
	}
	k1, b := float32(1.2), float32(0.75)
	ix, err := c.CreateIndex("text", key(1), &vx.IndexConfig{TextFields: []string{"title"}, BM25K1: &k1, BM25B: &b})
	if err != nil {
		t.Fatal(err)
	}
	defer ix.Close()
	titles := []string{"encrypted vector search", "running dogs", "the cat sat on the mat",
		"fast approximate nearest neighbour search", "dogs and cats living together", "a quiet evening"}
	items := make([]vx.Item, len(titles))
	for i, title := range titles {
		meta := fmt.Sprintf(`{"title": %q, "n": %d}`, title, i)
		items[i] = vx.Item{ID: fmt.Sprintf("t%d", i), Vector: []float32{float32(i), 0}, Metadata: &meta}
	}
	if err := ix.Upsert(items, nil); err != nil {
		t.Fatal(err)
	}

	// Keyword search: stemmed ("run" finds "running"), by BM25 score.
	kw, err := ix.QueryMetadata(&vx.MetadataQuery{Text: "run"}, nil)
	if err != nil || len(kw) != 1 || kw[0].ID != "t1" || !(kw[0].Score > 0) || math.IsInf(float64(kw[0].Score), 0) ||
		!math.IsNaN(float64(kw[0].Distance)) || kw[0].Metadata == nil || !strings.Contains(*kw[0].Metadata, "running dogs") {
		t.Fatalf("keyword search = %+v, %v", kw, err)
	}
	kw, err = ix.QueryMetadata(&vx.MetadataQuery{Text: "dogs search", Filter: `{"n": {"$gte": 1}}`, OrderBy: "n", Descending: true}, nil)
	if err != nil || len(kw) != 3 || kw[0].ID != "t4" || kw[1].ID != "t3" || kw[2].ID != "t1" {
		t.Fatalf("filtered keyword search by n = %+v, %v", kw, err)
	}

	// Hybrid search: fused scores descending, every hit with its exact distance.
	q := []float32{1.2, 0}
	hybrid, err := ix.Query(q, 2, &vx.QueryOptions{TopK: 6, Text: "dogs search", RRFK: 60, VectorDepth: 6, TextDepth: 6}, nil)
	if err != nil || len(hybrid) != 1 || len(hybrid[0]) != 6 || hybrid[0][0].ID != "t1" {
		t.Fatalf("hybrid search = %+v, %v", hybrid, err)
	}
	for i, h := range hybrid[0] {
		var n int
		fmt.Sscanf(h.ID, "t%d", &n)
		want := math.Abs(float64(q[0]) - float64(n))
		if math.IsNaN(float64(h.Score)) || !(h.Score > 0) || math.Abs(float64(h.Distance)-want) > 1e-4 ||
			(i > 0 && h.Score > hybrid[0][i-1].Score) {
			t.Fatalf("hybrid hit %d = %+v (want distance %v, scores descending)", i, h, want)
		}
	}
	// Alpha 1: the vector ranking alone, as a plain query orders it; plain
	// queries have no score.
	one := float32(1)
	byVector, err := ix.Query(q, 2, &vx.QueryOptions{TopK: 6, Text: "dogs", Alpha: &one, VectorDepth: 6}, nil)
	vector, errV := ix.Query(q, 2, &vx.QueryOptions{TopK: 6}, nil)
	if err != nil || errV != nil || len(byVector[0]) != 6 || len(vector[0]) != 6 {
		t.Fatalf("alpha 1: %+v (%v), plain: %+v (%v)", byVector, err, vector, errV)
	}
	for i := range vector[0] {
		if byVector[0][i].ID != vector[0][i].ID || !math.IsNaN(float64(vector[0][i].Score)) {
			t.Fatalf("alpha 1 gives %+v, the plain query %+v", byVector[0], vector[0])
		}
	}
	outOfRange := float32(1.5)
	if _, err := ix.Query(q, 2, &vx.QueryOptions{Text: "dogs", Alpha: &outOfRange}, nil); !errors.Is(err, vx.ErrInvalidArgument) {
		t.Fatalf("want ErrInvalidArgument for Alpha 1.5, got %v", err)
	}

	// Text on an index without text fields.
	if _, err := plain.QueryMetadata(&vx.MetadataQuery{Text: "run"}, nil); !errors.Is(err, vx.ErrInvalidArgument) {
		t.Fatalf("want ErrInvalidArgument for keyword search without text fields, got %v", err)
	}
	if err := plain.Upsert(items, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := plain.Query(q, 2, &vx.QueryOptions{Text: "run"}, nil); !errors.Is(err, vx.ErrInvalidArgument) {
		t.Fatalf("want ErrInvalidArgument for hybrid search without text fields, got %v", err)
	}
}
