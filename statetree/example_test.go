package statetree_test

import (
	"fmt"

	"github.com/extentd/extentd/statetree"
)

// The writeback claim: from any dirty byte, grow the cluster both ways,
// claim it with one atomic Convert, and on completion clear Writeback only,
// so bytes re-dirtied meanwhile stay Dirty.
func ExampleTree_Cluster() {
	const K = 4096
	tr := statetree.New(statetree.Options{Size: 1 << 20, BlockSize: K})
	tr.Set(8*K, 24*K, statetree.Dirty|statetree.Delalloc, 0)
	tr.Set(12*K, 13*K, statetree.Writeback, 0) // still in flight from before

	s, e, ok := tr.Cluster(20*K, statetree.Dirty, statetree.Writeback|statetree.Locked, 64*K, 64*K)
	fmt.Println(s/K, e/K, ok)
	tr.Convert(s, e, statetree.Writeback, statetree.Dirty)

	tr.Set(14*K, 15*K, statetree.Dirty, 0) // re-dirtied during the write
	tr.Clear(s, e, statetree.Writeback|statetree.Delalloc)
	tr.Ascend(0, tr.Size(), func(r statetree.Range) bool {
		fmt.Println(r.Start/K, r.End/K, r.Bits)
		return true
	})
	// Output:
	// 13 24 true
	// 8 12 Dirty|Delalloc
	// 12 13 Dirty|Delalloc|Writeback
	// 14 15 Dirty
}

// Exact reservation accounting: SetRecord reports only the bytes that newly
// became Delalloc, so only they are charged, and undoing touches only them.
func ExampleTree_SetRecord() {
	tr := statetree.New(statetree.Options{Size: 1 << 20, BlockSize: 4096})
	tr.Set(0, 8192, statetree.Delalloc, 0)

	var cs statetree.ChangeSet
	tr.SetRecord(4096, 16384, statetree.Delalloc, 0, &cs)
	fmt.Println(cs.Bytes, cs.Pieces)

	for _, p := range cs.Pieces { // the reservation failed: undo exactly
		tr.Clear(p.Start, p.End, p.Bits)
	}
	fmt.Println(tr.Bytes(statetree.Delalloc))
	// Output:
	// 8192 [[8192,16384) Delalloc owner=0]
	// 8192
}
