package extentcache

import (
	"math/rand/v2"
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
