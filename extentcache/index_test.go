package extentcache

import (
	"math/rand/v2"
	"slices"
	"testing"
)

func TestPageIndex(t *testing.T) {
	for _, blocks := range []int64{1, 31, 33, 1000, 1 << 26} {
		x := newPageIndex(blocks, 4)
		if blocks == 1<<26 && x.bits != 6 {
			t.Errorf("blocks %d: chunk bits %d, want 6 (directory of at most %d)", blocks, x.bits, maxIndexDir)
		}
		model := map[int64]*page{}
		r := rand.New(rand.NewPCG(uint64(blocks), 1))
		for i := 0; i < 5000; i++ {
			b := r.Int64N(min(blocks, 3000))
			if r.IntN(3) == 0 {
				x.del(b)
				delete(model, b)
			} else {
				p := &page{}
				x.set(b, p)
				model[b] = p
			}
			if x.get(b) != model[b] {
				t.Fatalf("blocks %d: get(%d) differs from model", blocks, b)
			}
		}
		if x.len() != len(model) {
			t.Fatalf("len %d, model %d", x.len(), len(model))
		}
		prev := int64(-1)
		x.each(func(b int64, p *page) {
			if b <= prev || model[b] != p {
				t.Fatalf("each: block %d out of order or wrong page", b)
			}
			prev = b
		})
	}
}

// TestIndexEachIn: eachIn visits exactly the indexed blocks of the range,
// in order, across chunk boundaries and with deletions by the callback.
func TestIndexEachIn(t *testing.T) {
	x := newPageIndex(1000, 4)
	pg := &page{}
	set := []int64{0, 1, 31, 32, 33, 63, 64, 500, 999}
	for _, b := range set {
		x.set(b, pg)
	}
	for _, tc := range []struct {
		first, last int64
		want        []int64
	}{
		{0, 1000, set},
		{1, 32, []int64{1, 31}},
		{31, 34, []int64{31, 32, 33}},
		{34, 63, nil},
		{63, 65, []int64{63, 64}},
		{65, 999, []int64{500}},
		{999, 1000, []int64{999}},
	} {
		var got []int64
		x.eachIn(tc.first, tc.last, func(b int64, _ *page) { got = append(got, b) })
		if !slices.Equal(got, tc.want) {
			t.Errorf("eachIn(%d, %d) = %v, want %v", tc.first, tc.last, got, tc.want)
		}
	}
	x.eachIn(30, 70, func(b int64, _ *page) { x.del(b) })
	var left []int64
	x.each(func(b int64, _ *page) { left = append(left, b) })
	if want := []int64{0, 1, 500, 999}; !slices.Equal(left, want) {
		t.Fatalf("after deleting [30, 70) while walking it: %v, want %v", left, want)
	}
}
