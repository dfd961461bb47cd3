package alloc

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// TestTryReadAt: data the host page cache holds and holes from the map are
// read at once; data it does not hold (dropped with FADV_DONTNEED) makes
// TryReadAt refuse, until a ReadAt brings it back. DirectIO images, reads
// out of range and closed files always refuse. A hit allocates nothing.
func TestTryReadAt(t *testing.T) {
	const size, bs = 1 << 20, 4096
	f := openTest(t, size, Options{})
	data := bytes.Repeat([]byte("extentd!"), 16*bs/8)
	if _, err := f.WriteAt(data, 0); err != nil { // [0, 64K) data, the rest a hole
		t.Fatal(err)
	}
	want := make([]byte, size)
	copy(want, data)
	try := func(off, n int64) bool {
		t.Helper()
		p := make([]byte, n)
		for i := range p {
			p[i] = 0xee // holes must be cleared
		}
		done, err := f.TryReadAt(p, off)
		if err != nil {
			t.Fatalf("TryReadAt([%d,+%d)): %v", off, n, err)
		}
		if done && !bytes.Equal(p, want[off:off+n]) {
			t.Fatalf("TryReadAt([%d,+%d)): wrong data", off, n)
		}
		return done
	}
	if !try(0, 2*bs) {
		if f.noNowait.Load() && os.Getenv("CI") == "" {
			t.Skip("the filesystem of the test's temporary folder has no RWF_NOWAIT reads")
		}
		t.Fatal("a block just written is not read at once")
	}
	for _, r := range [][2]int64{{bs + 100, 3000}, {15 * bs, 2 * bs}, {32 * bs, 8 * bs}} {
		if !try(r[0], r[1]) {
			t.Fatalf("TryReadAt([%d,+%d)) refused data in the page cache or a hole", r[0], r[1])
		}
	}

	// Out of the page cache: refused, until a ReadAt reads it back.
	if err := f.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := unix.Fadvise(f.fd, 0, size, unix.FADV_DONTNEED); err != nil {
		t.Fatal(err)
	}
	if try(4*bs, bs) {
		t.Fatal("a block dropped from the page cache was read at once")
	}
	if !try(64*bs, bs) {
		t.Fatal("a hole is not read at once")
	}
	if _, err := f.ReadAt(make([]byte, bs), 4*bs); err != nil {
		t.Fatal(err)
	}
	if !try(4*bs, bs) {
		t.Fatal("a block read back is not read at once")
	}

	buf := make([]byte, bs)
	if n := testing.AllocsPerRun(50, func() { _, _ = f.TryReadAt(buf, 4*bs) }); n != 0 {
		t.Errorf("TryReadAt allocates %.1f times per call, want 0", n)
	}
	if done, err := f.TryReadAt(buf, size-bs/2); done || err != nil {
		t.Errorf("TryReadAt past the end = %v, %v; want false, nil (ReadAt reports it)", done, err)
	}

	d := openTest(t, size, Options{DirectIO: true})
	if _, err := d.WriteAt(AlignedBuffer(bs), 0); err != nil {
		t.Fatal(err)
	}
	if done, err := d.TryReadAt(AlignedBuffer(bs), 0); done || err != nil {
		t.Errorf("TryReadAt with DirectIO = %v, %v; want false, nil", done, err)
	}

	g, err := Open(filepath.Join(t.TempDir(), "closed.img"), Options{Size: size, Create: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
	if done, err := g.TryReadAt(buf, 0); done || err != nil {
		t.Errorf("TryReadAt after Close = %v, %v; want false, nil", done, err)
	}
}
