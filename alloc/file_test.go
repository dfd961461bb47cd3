package alloc

import (
	"bytes"
	"errors"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"go.uber.org/zap/zaptest"
	"golang.org/x/sys/unix"

	"github.com/extentd/extentd/device"
	"github.com/extentd/extentd/device/devicetest"
)

func TestOptionsValidate(t *testing.T) {
	for _, c := range []struct {
		name  string
		opts  Options
		field string // "" means valid
	}{
		{"zero", Options{}, ""},
		{"full", Options{Size: 1 << 20, Create: true, DirectIO: true, ThinLimit: 1 << 19, ReserveMargin: 1 << 10}, ""},
		{"no-margin", Options{ReserveMargin: NoReserveMargin}, ""},
		{"negative-size", Options{Size: -1}, "Options.Size"},
		{"direct-odd-size", Options{Size: 4097, DirectIO: true}, "Options.Size"},
		{"create-read-only", Options{Create: true, ReadOnly: true}, "Options.Create"},
		{"negative-thin", Options{ThinLimit: -1}, "Options.ThinLimit"},
		{"negative-margin", Options{ReserveMargin: -2}, "Options.ReserveMargin"},
		{"negative-interval", Options{StatfsInterval: -1}, "Options.StatfsInterval"},
		{"no-max-buffered-write", Options{MaxBufferedWrite: NoMaxBufferedWrite}, ""},
		{"odd-max-buffered-write", Options{MaxBufferedWrite: 5000}, "Options.MaxBufferedWrite"},
		{"negative-max-buffered-write", Options{MaxBufferedWrite: -2}, "Options.MaxBufferedWrite"},
	} {
		t.Run(c.name, func(t *testing.T) {
			o := c.opts
			o.EnsureDefaults()
			if o.Logger == nil || o.StatfsInterval == 0 && c.opts.StatfsInterval == 0 {
				t.Fatalf("EnsureDefaults left Logger %v, StatfsInterval %v", o.Logger, o.StatfsInterval)
			}
			err := o.Validate()
			if c.field == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrInvalidOptions) || !bytes.Contains([]byte(err.Error()), []byte(c.field)) {
				t.Fatalf("Validate = %v, want ErrInvalidOptions naming %s", err, c.field)
			}
		})
	}
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	log := zaptest.NewLogger(t)
	missing := filepath.Join(dir, "missing.img")
	if _, err := Open(missing, Options{Logger: log}); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Open of a missing file: %v, want fs.ErrNotExist", err)
	}
	if _, err := Open(missing, Options{Create: true, Logger: log}); !errors.Is(err, ErrInvalidOptions) {
		t.Errorf("Open(Create) of a missing file with Size 0: %v, want ErrInvalidOptions", err)
	}
	if _, err := Open(dir, Options{Logger: log}); !errors.Is(err, ErrNotRegular) && !errors.Is(err, syscall.EISDIR) {
		t.Errorf("Open of a directory: %v, want ErrNotRegular or EISDIR", err)
	}
	odd := filepath.Join(dir, "odd.img")
	if err := Create(odd, 4097); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(odd, Options{DirectIO: true, Logger: log}); !errors.Is(err, ErrInvalidOptions) {
		t.Errorf("DirectIO Open of a 4097-byte image: %v, want ErrInvalidOptions", err)
	}
	if err := Create(odd, 4096); !errors.Is(err, fs.ErrExist) {
		t.Errorf("Create over an existing file: %v, want fs.ErrExist", err)
	}
	if err := Create(filepath.Join(dir, "zero.img"), 0); !errors.Is(err, ErrInvalidOptions) {
		t.Errorf("Create of 0 bytes: %v, want ErrInvalidOptions", err)
	}
	// An existing image keeps its size whatever Options.Size says.
	f, err := Open(odd, Options{Create: true, Size: 1 << 20, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	if f.Size() != 4097 {
		t.Errorf("existing image opened with size %d, want 4097", f.Size())
	}
	// A second writer is refused while the first holds the image.
	if _, err := Open(odd, Options{Logger: log}); !errors.Is(err, ErrLocked) {
		t.Errorf("second Open: %v, want ErrLocked", err)
	}
	if _, err := Open(odd, Options{ReadOnly: true, Logger: log}); !errors.Is(err, ErrLocked) {
		t.Errorf("read-only Open of a locked image: %v, want ErrLocked", err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); !errors.Is(err, device.ErrClosed) {
		t.Errorf("second Close: %v, want ErrClosed", err)
	}
	// Two readers may share it.
	r1, err := Open(odd, Options{ReadOnly: true, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	defer r1.Close()
	r2, err := Open(odd, Options{ReadOnly: true, Logger: log})
	if err != nil {
		t.Fatalf("second reader: %v", err)
	}
	defer r2.Close()
}

func TestReadOnly(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ro.img")
	if err := Create(path, 1<<20); err != nil {
		t.Fatal(err)
	}
	f, err := Open(path, Options{ReadOnly: true, Logger: zaptest.NewLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	checks := map[string]error{
		"WriteAt":   func() error { _, err := f.WriteAt([]byte{1}, 0); return err }(),
		"WriteVAt":  func() error { _, err := f.WriteVAt([][]byte{{1}}, 0); return err }(),
		"Trim":      f.Trim(0, 4096),
		"Zero":      f.Zero(0, 4096, false),
		"Allocate":  f.Allocate(0, 4096),
		"ZeroTrim":  f.Zero(0, 4096, true),
		"WriteAt 0": func() error { _, err := f.WriteAt(nil, 0); return err }(),
	}
	for op, err := range checks {
		if !errors.Is(err, device.ErrReadOnly) {
			t.Errorf("%s on a read-only image: %v, want ErrReadOnly", op, err)
		}
	}
	if f.FastZero() {
		t.Error("FastZero() true on a read-only image")
	}
	if err := f.Flush(); err != nil {
		t.Errorf("Flush: %v", err)
	}
	buf := make([]byte, 4096)
	if _, err := f.ReadAt(buf, 0); err != nil {
		t.Errorf("ReadAt: %v", err)
	}
}

func TestClosed(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.img")
	h, err := Open(path, Options{Create: true, Size: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 10)
	for op, err := range map[string]error{
		"ReadAt":    func() error { _, err := h.ReadAt(buf, 0); return err }(),
		"WriteAt":   func() error { _, err := h.WriteAt(buf, 0); return err }(),
		"WriteVAt":  func() error { _, err := h.WriteVAt([][]byte{buf}, 0); return err }(),
		"Flush":     h.Flush(),
		"SyncRange": h.SyncRange(0, 1),
		"Trim":      h.Trim(0, 1),
		"Zero":      h.Zero(0, 1, false),
		"Allocate":  h.Allocate(0, 1),
		"Prefetch":  h.Prefetch(0, 1),
		"Extents":   h.Extents(0, 1, func(device.Extent) bool { return true }),
	} {
		if !errors.Is(err, device.ErrClosed) {
			t.Errorf("%s after Close: %v, want ErrClosed", op, err)
		}
	}
	// Space outlives the File: statfs fails, the last figures stay.
	if _, err := h.Space().Reserve(0, 4096); err != nil {
		t.Errorf("Space.Reserve after Close: %v", err)
	}
}

// makeSparse writes a sparse image with data at the given block ranges
// (in 4 KiB units) through a plain fd, then punches holes, and returns its
// path.
func makeSparse(t *testing.T, size int64, data [][2]int64, punch [][2]int64) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "sparse.img")
	fh, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	if err := fh.Truncate(size); err != nil {
		t.Fatal(err)
	}
	for _, d := range data {
		if _, err := fh.WriteAt(bytes.Repeat([]byte{0xab}, int(d[1]-d[0])*4096), d[0]*4096); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range punch {
		if err := unix.Fallocate(int(fh.Fd()), modePunch, p[0]*4096, (p[1]-p[0])*4096); err != nil {
			t.Fatal(err)
		}
	}
	if err := fh.Sync(); err != nil {
		t.Fatal(err)
	}
	return path
}

// ext builds an Extent (vet wants keyed literals).
func ext(off, n int64, flags device.ExtentFlags) device.Extent {
	return device.Extent{Off: off, Len: n, Flags: flags}
}

func collectExtents(t *testing.T, d device.Device, off, n int64) []device.Extent {
	t.Helper()
	return devicetest.CheckExtents(t, d, nil, off, n)
}

// TestScanSparse: the allocation map built with SEEK_DATA/SEEK_HOLE at Open
// matches the file, and Extents/Allocated report it.
func TestScanSparse(t *testing.T) {
	const size = 256 * 4096
	path := makeSparse(t, size,
		[][2]int64{{0, 4}, {10, 40}, {100, 101}, {250, 256}},
		[][2]int64{{20, 25}, {2, 3}})
	for _, direct := range []bool{false, true} {
		f, err := Open(path, Options{DirectIO: direct, Logger: zaptest.NewLogger(t)})
		if err != nil {
			t.Fatal(err)
		}
		got := collectExtents(t, f, 0, size)
		const H = device.Hole | device.Zero
		want := []device.Extent{
			ext(0, 2*4096, 0), ext(2*4096, 4096, H), ext(3*4096, 4096, 0), ext(4*4096, 6*4096, H),
			ext(10*4096, 10*4096, 0), ext(20*4096, 5*4096, H), ext(25*4096, 15*4096, 0),
			ext(40*4096, 60*4096, H), ext(100*4096, 4096, 0), ext(101*4096, 149*4096, H),
			ext(250*4096, 6*4096, 0),
		}
		if !slices.Equal(got, want) {
			t.Fatalf("direct=%v: extents\n got %v\nwant %v", direct, got, want)
		}
		if st := f.Space().Stats(); st.Allocated != (2+1+10+15+1+6)*4096 || st.Reserved != 0 {
			t.Fatalf("direct=%v: stats %+v", direct, st)
		}
		// Sub-range queries are clipped to the range.
		if got := collectExtents(t, f, 4096+1, 4096); !slices.Equal(got, []device.Extent{ext(4097, 4095, 0), ext(8192, 1, H)}) {
			t.Fatalf("direct=%v: Extents(4097, 4096) = %v", direct, got)
		}
		buf := make([]byte, size)
		if _, err := f.ReadAt(buf, 0); err != nil {
			t.Fatal(err)
		}
		for _, e := range want {
			wantByte := byte(0xab)
			if e.Flags != 0 {
				wantByte = 0
			}
			for i, b := range buf[e.Off : e.Off+e.Len] {
				if b != wantByte {
					t.Fatalf("direct=%v: byte %d in %v is %#x, want %#x", direct, e.Off+int64(i), e, b, wantByte)
				}
			}
		}
		if err := f.Space().Check(); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestReadSkipsHoles: ReadAt of a range the map knows is a hole does not
// read the file (data written behind the File's back stays invisible until
// the File writes the block or is reopened).
func TestReadSkipsHoles(t *testing.T) {
	f := openTest(t, 1<<20, Options{})
	other, err := os.OpenFile(f.Path(), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if _, err := other.WriteAt(bytes.Repeat([]byte{7}, 8192), 65536); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 8192)
	if _, err := f.ReadAt(buf, 65536); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf, make([]byte, 8192)) {
		t.Fatal("ReadAt of a mapped hole read the file")
	}
	// Once the File writes one byte of the first block, that block is data
	// and is read from the file; the second block is still a hole.
	if _, err := f.WriteAt([]byte{9}, 65536); err != nil {
		t.Fatal(err)
	}
	if _, err := f.ReadAt(buf, 65536); err != nil {
		t.Fatal(err)
	}
	want := append(append([]byte{9}, bytes.Repeat([]byte{7}, 4095)...), make([]byte, 4096)...)
	if !bytes.Equal(buf, want) {
		t.Fatalf("after a 1-byte write: got % x... want % x...", buf[:8], want[:8])
	}
}

// TestWriteVAt: vectored writes of many buffers (more than IOV_MAX, with
// empty ones and odd lengths) land back to back; the caller's slice is
// not modified.
func TestWriteVAt(t *testing.T) {
	for _, o := range []Options{
		{},                                  // buffered, split at DefaultMaxBufferedWrite
		{MaxBufferedWrite: 3 * DirectAlign}, // split often, inside buffers
		{MaxBufferedWrite: NoMaxBufferedWrite},
		{DirectIO: true},
	} {
		direct := o.DirectIO
		f := openTest(t, 16<<20, o)
		var bufs [][]byte
		var want []byte
		for i := range 1500 {
			var b []byte
			switch i % 5 {
			case 0:
				b = nil
			case 1:
				b = AlignedBuffer(4096)
			default:
				b = make([]byte, 1+i%977)
			}
			for j := range b {
				b[j] = byte(i + j)
			}
			bufs = append(bufs, b)
			want = append(want, b...)
		}
		saved := slices.Clone(bufs)
		const off = 12345
		n, err := f.WriteVAt(bufs, off)
		if err != nil || n != len(want) {
			t.Fatalf("direct=%v: WriteVAt = %d, %v; want %d", direct, n, err, len(want))
		}
		for i := range bufs {
			if len(bufs[i]) != len(saved[i]) || (len(bufs[i]) > 0 && &bufs[i][0] != &saved[i][0]) {
				t.Fatalf("direct=%v: WriteVAt modified bufs[%d]", direct, i)
			}
		}
		got := make([]byte, len(want)+2)
		if _, err := f.ReadAt(got, off-1); err != nil {
			t.Fatal(err)
		}
		if got[0] != 0 || got[len(got)-1] != 0 || !bytes.Equal(got[1:len(got)-1], want) {
			t.Fatalf("direct=%v: read back differs", direct)
		}
		// Aligned cluster: 1024 aligned 4 KiB buffers in one call.
		cluster := make([][]byte, 1024)
		for i := range cluster {
			cluster[i] = AlignedBuffer(4096)
			cluster[i][0] = byte(i)
		}
		if n, err := f.WriteVAt(cluster, 8<<20); err != nil || n != 4<<20 {
			t.Fatalf("direct=%v: cluster WriteVAt = %d, %v", direct, n, err)
		}
		one := make([]byte, 1)
		for i := range cluster {
			if _, err := f.ReadAt(one, 8<<20+int64(i)*4096); err != nil || one[0] != byte(i) {
				t.Fatalf("direct=%v: cluster block %d reads %d, %v", direct, i, one[0], err)
			}
		}
		if _, err := f.WriteVAt([][]byte{make([]byte, 10)}, 16<<20-5); !errors.Is(err, device.ErrOutOfRange) {
			t.Fatalf("direct=%v: WriteVAt past the end: %v", direct, err)
		}
		if n, err := f.WriteVAt(nil, 0); n != 0 || err != nil {
			t.Fatalf("direct=%v: empty WriteVAt = %d, %v", direct, n, err)
		}
	}
}

// TestSplitPieces: the pieces of a buffered write hold the bytes of bufs in
// order, each ends at or before the next multiple of split in the file,
// none is empty unless bufs ends in empty buffers, and bufs is untouched.
func TestSplitPieces(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for round := range 300 {
		var bufs [][]byte
		var want []byte
		for i := range 1 + r.IntN(40) {
			b := make([]byte, r.IntN(3)*r.IntN(20000))
			for j := range b {
				b[j] = byte(i*7 + j)
			}
			bufs = append(bufs, b)
			want = append(want, b...)
		}
		saved := slices.Clone(bufs)
		off := r.Int64N(1 << 20)
		split := int64(1+r.IntN(8)) * 4096
		scratch := make([][]byte, 0, 1+r.IntN(6))
		var got []byte
		pos, ended := off, false
		err := splitPieces(scratch, bufs, off, split, func(p [][]byte, at int64) error {
			if at != pos {
				t.Fatalf("round %d: piece at %d, want %d", round, at, pos)
			}
			var n int64
			for _, b := range p {
				got = append(got, b...)
				n += int64(len(b))
			}
			if n > 0 && (at/split != (at+n-1)/split) {
				t.Fatalf("round %d: piece [%d,+%d) crosses a multiple of %d", round, at, n, split)
			}
			if ended {
				t.Fatalf("round %d: piece at %d after one that ended short of a boundary", round, at)
			}
			// Only the last piece, or one that used all of scratch, ends
			// short of a multiple of split.
			ended = (at+n)%split != 0 && len(p) < cap(scratch)
			pos += n
			return nil
		})
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("round %d: %d bytes back (err %v), want %d", round, len(got), err, len(want))
		}
		for i := range bufs {
			if len(bufs[i]) != len(saved[i]) {
				t.Fatalf("round %d: bufs[%d] modified", round, i)
			}
		}
	}
	stop := errors.New("stop")
	calls := 0
	err := splitPieces(make([][]byte, 0, 4), [][]byte{make([]byte, 3*4096)}, 0, 4096, func([][]byte, int64) error {
		calls++
		return stop
	})
	if err != stop || calls != 1 {
		t.Fatalf("splitPieces after an error: %v after %d calls, want stop after 1", err, calls)
	}
}

// TestAllocateAndWriteConvertReservations: Allocate and writes turn the
// cache's reservations into allocations; Trim leaves reservations alone.
func TestAllocateAndWriteConvertReservations(t *testing.T) {
	f := openTest(t, 1<<20, Options{})
	sp := f.Space()
	if _, err := sp.Reserve(0, 64<<10); err != nil {
		t.Fatal(err)
	}
	if err := f.Allocate(0, 32<<10); err != nil {
		t.Fatal(err)
	}
	if st := sp.Stats(); st.Allocated != 32<<10 || st.Reserved != 32<<10 {
		t.Fatalf("after Allocate: %+v", st)
	}
	if got := collectExtents(t, f, 0, 64<<10); !slices.Equal(got, []device.Extent{ext(0, 32<<10, 0), ext(32<<10, 32<<10, device.Hole|device.Zero)}) {
		t.Fatalf("extents after Allocate: %v", got)
	}
	// A 1-byte write allocates its whole block and consumes its reservation.
	if _, err := f.WriteAt([]byte{1}, 40<<10+5); err != nil {
		t.Fatal(err)
	}
	if st := sp.Stats(); st.Allocated != 36<<10 || st.Reserved != 28<<10 {
		t.Fatalf("after a 1-byte write: %+v", st)
	}
	// Trim frees storage but not reservations.
	if _, err := sp.Reserve(100<<10, 8<<10); err != nil {
		t.Fatal(err)
	}
	if err := f.Trim(0, 128<<10); err != nil {
		t.Fatal(err)
	}
	if st := sp.Stats(); st.Allocated != 0 || st.Reserved != 36<<10 {
		t.Fatalf("after Trim: %+v", st)
	}
	// A partial-block trim keeps the block (fallocate zeroes it in place).
	if _, err := f.WriteAt(bytes.Repeat([]byte{5}, 8192), 200<<10); err != nil {
		t.Fatal(err)
	}
	if err := f.Trim(200<<10+100, 4096); err != nil {
		t.Fatal(err)
	}
	if st := sp.Stats(); st.Allocated != 8192 {
		t.Fatalf("partial trims freed blocks: %+v", st)
	}
	buf := make([]byte, 8192)
	if _, err := f.ReadAt(buf, 200<<10); err != nil {
		t.Fatal(err)
	}
	want := bytes.Repeat([]byte{5}, 8192)
	clear(want[100 : 100+4096])
	if !bytes.Equal(buf, want) {
		t.Fatal("partial trim: wrong data")
	}
}

// TestZeroAllocation: Zero with mayTrim punches a hole, without it the
// range stays allocated (data in Extents) and reads zeros.
func TestZeroAllocation(t *testing.T) {
	f := openTest(t, 1<<20, Options{})
	if _, err := f.WriteAt(bytes.Repeat([]byte{3}, 64<<10), 0); err != nil {
		t.Fatal(err)
	}
	if err := f.Zero(0, 16<<10, true); err != nil {
		t.Fatal(err)
	}
	if err := f.Zero(16<<10, 16<<10, false); err != nil {
		t.Fatal(err)
	}
	if err := f.Zero(128<<10, 16<<10, false); err != nil { // a hole, kept allocated
		t.Fatal(err)
	}
	got := collectExtents(t, f, 0, 256<<10)
	want := []device.Extent{
		ext(0, 16<<10, device.Hole|device.Zero), ext(16<<10, 48<<10, 0),
		ext(64<<10, 64<<10, device.Hole|device.Zero), ext(128<<10, 16<<10, 0),
		ext(144<<10, 112<<10, device.Hole|device.Zero),
	}
	if !slices.Equal(got, want) {
		t.Fatalf("extents\n got %v\nwant %v", got, want)
	}
	buf := make([]byte, 32<<10)
	if _, err := f.ReadAt(buf, 0); err != nil || !bytes.Equal(buf, make([]byte, 32<<10)) {
		t.Fatalf("zeroed range does not read as zeros (%v)", err)
	}
	if !f.FastZero() {
		t.Log("host filesystem has neither ZERO_RANGE nor punch+fallocate")
	}
}

// TestZeroFallbacks forces the slower Zero paths and checks each.
func TestZeroFallbacks(t *testing.T) {
	for _, c := range []struct {
		name                 string
		noZeroRange, noPunch bool
		fast                 bool
	}{
		{"punch+fallocate", true, false, true},
		{"write-zeros", true, true, false},
	} {
		for _, direct := range []bool{false, true} {
			f := openTest(t, 1<<20, Options{DirectIO: direct})
			f.noZeroRange.Store(c.noZeroRange)
			f.noPunchAlloc.Store(c.noPunch)
			if f.FastZero() != c.fast {
				t.Fatalf("%s: FastZero() = %v", c.name, f.FastZero())
			}
			if _, err := f.WriteAt(bytes.Repeat([]byte{3}, 64<<10), 0); err != nil {
				t.Fatal(err)
			}
			if err := f.Zero(1000, 20000, false); err != nil {
				t.Fatalf("%s: %v", c.name, err)
			}
			buf := make([]byte, 64<<10)
			if _, err := f.ReadAt(buf, 0); err != nil {
				t.Fatal(err)
			}
			want := bytes.Repeat([]byte{3}, 64<<10)
			clear(want[1000:21000])
			if !bytes.Equal(buf, want) {
				t.Fatalf("%s direct=%v: wrong data after Zero", c.name, direct)
			}
			if got := collectExtents(t, f, 0, 64<<10); !slices.Equal(got, []device.Extent{ext(0, 64<<10, 0)}) {
				t.Fatalf("%s direct=%v: Zero without mayTrim left holes: %v", c.name, direct, got)
			}
		}
	}
}

// TestUnalignedErrorsWrapErrno: an I/O error keeps its errno visible.
func TestIOErrorWrapping(t *testing.T) {
	err := ioErr("write", 4096, 8192, unix.ENOSPC)
	if !errors.Is(err, syscall.ENOSPC) || !errors.Is(err, device.ErrNoSpace) {
		t.Fatalf("ENOSPC wrapped as %v: errors.Is lost it", err)
	}
	if want := "alloc: write [4096,+8192): "; !bytes.HasPrefix([]byte(err.Error()), []byte(want)) {
		t.Fatalf("message %q does not start with %q", err, want)
	}
	err = ioErr("read", 0, 1, unix.EIO)
	if !errors.Is(err, syscall.EIO) || errors.Is(err, device.ErrNoSpace) {
		t.Fatalf("EIO wrapped as %v", err)
	}
}

func TestAlignedBuffer(t *testing.T) {
	for _, n := range []int{1, 4096, 5000, 1 << 20} {
		b := AlignedBuffer(n)
		if len(b) != n || cap(b) != n {
			t.Fatalf("AlignedBuffer(%d): len %d cap %d", n, len(b), cap(b))
		}
		if uintptr(unsafe.Pointer(&b[0]))%DirectAlign != 0 {
			t.Fatalf("AlignedBuffer(%d) is not aligned", n)
		}
	}
	if AlignedBuffer(0) != nil {
		t.Fatal("AlignedBuffer(0) != nil")
	}
	b := AlignedBuffer(8192)
	if isAligned(b[1:4097], 0) || isAligned(b[:4096], 1) || isAligned(b[:4095], 0) {
		t.Fatal("isAligned accepted a misaligned buffer")
	}
}

// TestOddSize: an image whose size is not a block multiple: the last
// partial block can be written, trimmed and freed.
func TestOddSize(t *testing.T) {
	const size = 3*4096 + 100
	f := openTest(t, size, Options{})
	if _, err := f.WriteAt(bytes.Repeat([]byte{1}, 200), size-200); err != nil {
		t.Fatal(err)
	}
	if got := collectExtents(t, f, 0, size); !slices.Equal(got, []device.Extent{ext(0, 2*4096, device.Hole|device.Zero), ext(2*4096, 4096+100, 0)}) {
		t.Fatalf("extents: %v", got)
	}
	if err := f.Trim(3*4096, 100); err != nil {
		t.Fatal(err)
	}
	if st := f.Space().Stats(); st.Allocated != 4096 {
		t.Fatalf("trim of the last partial block: allocated %d, want 4096", st.Allocated)
	}
	if _, err := f.Space().Reserve(size-1, 1); err != nil {
		t.Fatal(err)
	}
	if got := f.Space().Release(3*4096, 100); got != 4096 {
		t.Fatalf("Release of the last partial block released %d", got)
	}
}

// TestCloseWhileBusy: Close waits for operations in flight; every call
// either completes or fails with ErrClosed (never EBADF on a reused fd).
func TestCloseWhileBusy(t *testing.T) {
	path := filepath.Join(t.TempDir(), "busy.img")
	f, err := Open(path, Options{Create: true, Size: 8 << 20, Logger: zaptest.NewLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 4)
	for w := range 4 {
		go func() {
			buf := make([]byte, 8192)
			for i := 0; ; i++ {
				off := int64((i*4+w)%1000) * 8192
				var err error
				switch i % 4 {
				case 0:
					_, err = f.WriteAt(buf, off)
				case 1:
					_, err = f.ReadAt(buf, off)
				case 2:
					err = f.Trim(off, 8192)
				default:
					err = f.Flush()
				}
				if err != nil {
					if errors.Is(err, device.ErrClosed) {
						err = nil
					}
					done <- err
					return
				}
			}
		}()
	}
	time.Sleep(20 * time.Millisecond)
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	for range 4 {
		if err := <-done; err != nil {
			t.Errorf("operation racing Close: %v, want nil or ErrClosed", err)
		}
	}
}

// TestWriteAllocs pins the writeback path at zero allocations: WriteVAt
// of a cluster, WriteAt, ReadAt of data and of a hole, Allocate.
func TestWriteAllocs(t *testing.T) {
	f := openTest(t, 64<<20, Options{})
	cluster := make([][]byte, 256)
	for i := range cluster {
		cluster[i] = AlignedBuffer(4096)
	}
	buf := AlignedBuffer(4096)
	for name, fn := range map[string]func(){
		"WriteVAt": func() {
			if _, err := f.WriteVAt(cluster, 1<<20); err != nil {
				t.Fatal(err)
			}
		},
		"WriteAt": func() {
			if _, err := f.WriteAt(buf, 8192); err != nil {
				t.Fatal(err)
			}
		},
		"ReadAt": func() {
			if _, err := f.ReadAt(buf, 8192); err != nil {
				t.Fatal(err)
			}
		},
		"ReadAtHole": func() {
			if _, err := f.ReadAt(buf, 32<<20); err != nil {
				t.Fatal(err)
			}
		},
		"Allocate": func() {
			if err := f.Allocate(1<<20, 1<<20); err != nil {
				t.Fatal(err)
			}
		},
	} {
		fn() // warm the pools and the map
		if n := testing.AllocsPerRun(50, fn); n != 0 {
			t.Errorf("%s allocates %.1f times per call, want 0", name, n)
		}
	}
}

// TestDirectRMWRace: with DirectIO an unaligned write read-modify-writes
// its block. Racing it with an aligned write of the whole block must give
// one of the two orders (X, or X patched with Y), never the old block
// patched with Y (the aligned write lost).
func TestDirectRMWRace(t *testing.T) {
	f := openTest(t, 1<<20, Options{DirectIO: true})
	old := AlignedBuffer(4096)
	x := AlignedBuffer(4096)
	for i := range x {
		old[i], x[i] = 0x11, 0x22
	}
	y := bytes.Repeat([]byte{0x33}, 100)
	xy := bytes.Clone(x)
	copy(xy[10:], y)
	got := AlignedBuffer(4096)
	for i := range 300 {
		off := int64(i%200) * 4096
		if _, err := f.WriteAt(old, off); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		wg.Add(2)
		go func() {
			defer wg.Done()
			if _, err := f.WriteAt(x, off); err != nil {
				t.Error(err)
			}
		}()
		go func() {
			defer wg.Done()
			if _, err := f.WriteAt(y, off+10); err != nil {
				t.Error(err)
			}
		}()
		wg.Wait()
		if _, err := f.ReadAt(got, off); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, x) && !bytes.Equal(got, xy) {
			t.Fatalf("iteration %d: block is neither X nor X+Y (first bytes % x): a write was lost", i, got[:16])
		}
	}
}
