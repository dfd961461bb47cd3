package nbdserver

import (
	"math/bits"
	"sync"
)

// Payload buffers are pooled by power-of-two size class so that a READ or
// WRITE allocates nothing once the pools are warm. Pools hold *[]byte (a
// pointer fits in an interface without allocating).

const (
	minClassShift = 12 // smallest class: 4 KiB
	maxClassShift = 30 // largest class: 1 GiB (maxPayloadLimit)
)

type bufPools struct {
	classes [maxClassShift - minClassShift + 1]sync.Pool
}

func (p *bufPools) init() {
	for i := range p.classes {
		size := 1 << (i + minClassShift)
		p.classes[i].New = func() any {
			b := make([]byte, size)
			return &b
		}
	}
}

// classOf returns the class index holding n bytes (n <= 1 GiB).
func classOf(n int) int {
	if n <= 1<<minClassShift {
		return 0
	}
	return bits.Len(uint(n-1)) - minClassShift
}

// get returns a buffer of at least n bytes; put it back with put.
func (p *bufPools) get(n int) *[]byte {
	return p.classes[classOf(n)].Get().(*[]byte)
}

// put returns a buffer obtained from get.
func (p *bufPools) put(b *[]byte) {
	p.classes[classOf(cap(*b))].Put(b)
}
