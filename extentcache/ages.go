package extentcache

// ageQueue is a FIFO of (offset, time) marks: one per write that made a
// clean block dirty and one per trim. Writeback pops marks older than
// WritebackAge and writes back the cluster around each; a mark whose bytes
// are clean by then is dropped. It reuses its backing array, so steady-state
// pushes do not allocate.
type ageQueue struct {
	q    []ageMark
	head int
}

type ageMark struct {
	off int64
	t   int64 // UnixNano when the bytes became dirty
}

func (a *ageQueue) push(off, t int64) {
	if a.head > 0 && a.head >= len(a.q)/2 && len(a.q) == cap(a.q) {
		n := copy(a.q, a.q[a.head:])
		a.q = a.q[:n]
		a.head = 0
	}
	a.q = append(a.q, ageMark{off, t})
}

func (a *ageQueue) len() int { return len(a.q) - a.head }

// compact keeps only the marks for which keep returns true, in order.
func (a *ageQueue) compact(keep func(off int64) bool) {
	n := 0
	for _, m := range a.q[a.head:] {
		if keep(m.off) {
			a.q[n] = m
			n++
		}
	}
	a.q, a.head = a.q[:n], 0
}

func (a *ageQueue) front() ageMark { return a.q[a.head] }

func (a *ageQueue) pop() {
	a.head++
	if a.head == len(a.q) {
		a.q = a.q[:0]
		a.head = 0
	}
}
