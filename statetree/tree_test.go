package statetree

import (
	"slices"
	"testing"
)

// newTestTree returns a tree of size blocks of bs bytes that is checked when
// the test ends.
func newTestTree(tb testing.TB, blocks, bs int64) *Tree {
	tb.Helper()
	t := New(Options{Size: blocks * bs, BlockSize: bs})
	tb.Cleanup(func() {
		if err := t.Check(); err != nil {
			tb.Errorf("Check at cleanup: %v", err)
		}
	})
	return t
}

func records(t *Tree) []Range {
	var out []Range
	t.AscendRecords(0, t.Size(), func(r Range) bool { out = append(out, r); return true })
	return out
}

func wantRecords(tb testing.TB, t *Tree, want ...Range) {
	tb.Helper()
	if err := t.Check(); err != nil {
		tb.Fatalf("Check: %v", err)
	}
	if got := records(t); !slices.Equal(got, want) {
		tb.Fatalf("records:\n got  %v\n want %v", got, want)
	}
}

func TestBitsString(t *testing.T) {
	for _, tc := range []struct {
		b    Bits
		want string
	}{
		{0, "0"},
		{Dirty, "Dirty"},
		{Dirty | Writeback, "Dirty|Writeback"},
		{Delalloc | Locked | Zeroed, "Delalloc|Locked|Zeroed"},
		{1 << 5, "bit5"},
		{Dirty | 1<<31, "Dirty|bit31"},
	} {
		if got := tc.b.String(); got != tc.want {
			t.Errorf("Bits(%#x).String() = %q, want %q", uint32(tc.b), got, tc.want)
		}
	}
}

func TestOptionsValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    Options
		ok   bool
	}{
		{"zero size", Options{}, false},
		{"negative block", Options{Size: 10, BlockSize: -1}, false},
		{"default block", Options{Size: 10}, true},
		{"ok", Options{Size: 4096, BlockSize: 512}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := tc.o
			o.EnsureDefaults()
			if err := o.Validate(); (err == nil) != tc.ok {
				t.Fatalf("Validate() = %v, want ok=%v", err, tc.ok)
			}
		})
	}
}

func TestBasicSetClear(t *testing.T) {
	tr := newTestTree(t, 16, 1)
	tr.Set(2, 6, Dirty, 0)
	wantRecords(t, tr, Range{2, 6, Dirty, 0})
	tr.Set(6, 8, Dirty, 0)
	wantRecords(t, tr, Range{2, 8, Dirty, 0})
	tr.Set(4, 5, Writeback, 0)
	wantRecords(t, tr, Range{2, 4, Dirty, 0}, Range{4, 5, Dirty | Writeback, 0}, Range{5, 8, Dirty, 0})
	tr.Clear(4, 5, Writeback)
	wantRecords(t, tr, Range{2, 8, Dirty, 0})
	tr.Clear(0, 16, Dirty)
	wantRecords(t, tr)
	if tr.Len() != 0 || tr.Bytes(Dirty) != 0 {
		t.Fatalf("Len %d Bytes %d after clearing everything", tr.Len(), tr.Bytes(Dirty))
	}
}

func TestMisusePanics(t *testing.T) {
	tr := newTestTree(t, 16, 4)
	for _, tc := range []struct {
		name       string
		start, end int64
	}{
		{"unaligned start", 1, 8},
		{"unaligned end", 0, 7},
		{"past size", 0, 68},
		{"negative", -4, 4},
		{"reversed", 8, 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Fatal("no panic")
				}
			}()
			tr.Set(tc.start, tc.end, Dirty, 0)
		})
	}
}

func TestCloneIsIndependent(t *testing.T) {
	tr := newTestTree(t, 64, K)
	for i := int64(0); i < 64; i += 2 {
		tr.Set(i*K, (i+1)*K, Dirty, uint32(i))
	}
	c := tr.Clone()
	if err := c.Check(); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(records(c), records(tr)) || c.Gen() != tr.Gen() || c.Bytes(Dirty) != tr.Bytes(Dirty) {
		t.Fatal("clone differs from the original")
	}
	c.Clear(0, 64*K, Dirty)
	if tr.Len() != 32 || c.Len() != 0 {
		t.Fatalf("clearing the clone changed the original: %d, %d", tr.Len(), c.Len())
	}
}

func TestRangesIterator(t *testing.T) {
	tr := newTestTree(t, 64, K)
	tr.Set(0, 4*K, Dirty, 0)
	tr.Set(8*K, 12*K, Writeback, 0)
	var got []Range
	for r := range tr.Ranges(2*K, 64*K) {
		got = append(got, r)
		break
	}
	if want := []Range{{2 * K, 4 * K, Dirty, 0}}; !slices.Equal(got, want) {
		t.Fatalf("Ranges = %v, want %v", got, want)
	}
}
