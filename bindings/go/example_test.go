package vx_test

import (
	"fmt"

	"vxdb.dev/vx"
)

func Example() {
	client, err := vx.Open("memory:", nil) // or "file:/var/lib/app/vx"
	if err != nil {
		panic(err)
	}
	defer client.Close()
	key := make([]byte, vx.KeyLen) // from your KMS; never store it beside the data
	defer clear(key)
	index, err := client.CreateIndex("docs", key, &vx.IndexConfig{Dimension: 2})
	if err != nil {
		panic(err)
	}
	defer index.Close()
	en, de := `{"lang": "en"}`, `{"lang": "de"}`
	_ = index.Upsert([]vx.Item{
		{ID: "a", Vector: []float32{1, 0}, Metadata: &en},
		{ID: "b", Vector: []float32{0, 1}, Metadata: &de},
	}, nil)
	hits, _ := index.Query([]float32{0.9, 0.2}, 2, &vx.QueryOptions{TopK: 1, Filter: `{"lang": "de"}`}, nil)
	fmt.Println(hits[0][0].ID)
	// Output: b
}

func ExampleIndex_Get() {
	client, _ := vx.Open("memory:", nil)
	defer client.Close()
	index, _ := client.CreateIndex("docs", make([]byte, vx.KeyLen), nil)
	defer index.Close()
	_ = index.Upsert([]vx.Item{{ID: "a", Vector: []float32{1, 2, 3}, Contents: []byte("hello")}}, nil)
	items, _ := index.Get([]string{"a", "zz"}, vx.IncludeContents, nil)
	fmt.Println(string(items[0].Contents), items[1].Found)
	// Output: hello false
}

func ExampleIndex_Train() {
	client, _ := vx.Open("memory:", nil)
	defer client.Close()
	index, _ := client.CreateIndex("docs", make([]byte, vx.KeyLen), nil)
	defer index.Close()
	items := make([]vx.Item, 10000)
	for i := range items {
		items[i] = vx.Item{ID: fmt.Sprint(i), Vector: []float32{float32(i % 100), float32(i / 100)}}
	}
	_ = index.Upsert(items, nil)
	err := index.Train(&vx.TrainOptions{NLists: 16, MaxIters: 10}, nil)
	fmt.Println(err, index.NLists(), index.TrainingState() == vx.Trained)
	// Output: <nil> 16 true
}
