package statetree

import "testing"

// TestSteadyStateAllocs pins zero allocations for Set/Clear and for the
// write cycle with a reused ChangeSet, on a 10,000-range tree, once the
// tree's index and free list have reached their steady capacity. It counts
// every allocation over thousands of ops in one run, so even a rare one
// fails the test.
func TestSteadyStateAllocs(t *testing.T) {
	tr, ops := tenKTree()
	var cs ChangeSet
	pass := func() {
		for _, o := range ops {
			tr.Set(o[0], o[1], Writeback, 1)
			tr.Clear(o[0], o[1], Writeback)
			cs.Reset()
			tr.SetRecord(o[0], o[1], Dirty|Zeroed, 2, &cs)
			tr.Convert(o[0], o[1], Writeback, Dirty)
			tr.ClearRecord(o[0], o[1], Writeback|Zeroed, &cs)
		}
	}
	pass() // warm up: grow the index slices and the ChangeSet
	if allocs := testing.AllocsPerRun(1, pass); allocs != 0 {
		t.Fatalf("%v allocations in %d steady-state ops, want 0", allocs, 5*len(ops))
	}
	if err := tr.Check(); err != nil {
		t.Fatal(err)
	}
	queries := func() {
		for _, o := range ops {
			tr.Get(o[0])
			tr.FindFirst(o[0], Writeback|Dirty)
			tr.FindFirstClear(o[0], Dirty)
			tr.FindContiguous(o[0], Dirty, 1<<20)
			tr.Cluster(o[0], Delalloc, Writeback, 1<<20, 1<<20)
			tr.Count(o[0], o[1]+1<<20, Dirty, true, 0)
			tr.TestAll(o[0], o[1], Dirty)
			tr.Union(o[0], o[1])
		}
	}
	if allocs := testing.AllocsPerRun(1, queries); allocs != 0 {
		t.Fatalf("%v allocations in queries, want 0", allocs)
	}
}
