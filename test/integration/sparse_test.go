package integration

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// allocated is the space the image file holds on the host (st_blocks).
func allocated(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Blocks * 512
}

// TestSparseImage writes 10% of a 1 GiB device in 1 MiB pieces scattered
// over it and flushes: the image must then hold about 10% of its size. After
// TRIM of those pieces and a flush the allocation must shrink back, and
// stay so across a clean restart.
func TestSparseImage(t *testing.T) {
	const (
		size  = 1 << 30
		chunk = 1 << 20
		n     = size / chunk / 10 // 102 chunks: 10% of the device
	)
	img := filepath.Join(t.TempDir(), "disk.img")
	s := startServer(t, serverUnderTest(t), img, size)
	c := s.dial(t)
	if got := allocated(t, img); got > 1<<20 {
		t.Fatalf("fresh image allocates %d bytes, want about 0", got)
	}

	r := rand.New(rand.NewPCG(5, 5))
	slots := r.Perm(size / chunk)[:n]
	buf := make([]byte, chunk)
	for _, slot := range slots {
		fill(r.Uint64(), buf) // random: no zero block the server could skip
		if _, err := c.WriteAt(buf, int64(slot)*chunk); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	written := int64(n * chunk)
	got := allocated(t, img)
	t.Logf("after writing %d MiB and FLUSH: image allocates %.1f MiB", written>>20, float64(got)/(1<<20))
	if got < written || got > written+written/10 {
		t.Fatalf("image allocates %d bytes after writing %d and FLUSH: want %d..%d (written, +10%%)", got, written, written, written+written/10)
	}

	for _, slot := range slots {
		if err := c.Trim(int64(slot)*chunk, chunk, 0); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	got = allocated(t, img)
	t.Logf("after TRIM and FLUSH: image allocates %.1f MiB", float64(got)/(1<<20))
	if got > written/20 {
		t.Fatalf("image still allocates %d bytes after TRIM of all %d written bytes and FLUSH: want under %d", got, written, written/20)
	}
	// Trimmed data reads as zeros.
	if _, err := c.ReadAt(buf, int64(slots[0])*chunk); err != nil {
		t.Fatal(err)
	}
	for i, b := range buf {
		if b != 0 {
			t.Fatalf("byte %d of a trimmed chunk reads 0x%02x, want 0", i, b)
		}
	}
	c.Close()
	s.restart()
	if got2 := allocated(t, img); got2 > written/20 {
		t.Fatalf("after restart the image allocates %d bytes, want under %d", got2, written/20)
	}
	if err := s.stop(); err != nil {
		t.Fatal(err)
	}
}
