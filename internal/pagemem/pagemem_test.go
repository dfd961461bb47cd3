package pagemem

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"unsafe"
)

func TestMap(t *testing.T) {
	for _, n := range []int{ChunkSize, 3 * ChunkSize} {
		b, err := Map(n)
		if err != nil {
			t.Fatalf("Map(%d): %v", n, err)
		}
		if len(b) != n || cap(b) != n {
			t.Fatalf("Map(%d): len %d cap %d", n, len(b), cap(b))
		}
		if p := uintptr(unsafe.Pointer(&b[0])); p%ChunkSize != 0 {
			t.Fatalf("Map(%d) at %#x: not aligned to %d", n, p, ChunkSize)
		}
		for i := 0; i < n; i += 4096 {
			if b[i] != 0 {
				t.Fatalf("Map(%d): byte %d is %d, want 0", n, i, b[i])
			}
		}
		b[0], b[n-1] = 1, 2 // writable to both ends
		if err := Unmap(b); err != nil {
			t.Fatal(err)
		}
	}
}

// TestMapResident checks that Map populates: the chunk is resident before
// anything touches it (the point of the package).
func TestMapResident(t *testing.T) {
	const n = 8 * ChunkSize
	before := rss(t)
	b, err := Map(n)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = Unmap(b) }()
	if grew := rss(t) - before; grew < n*3/4 {
		t.Fatalf("RSS grew by %d bytes after Map(%d): not populated", grew, n)
	}
}

// rss returns this process's resident set size in bytes.
func rss(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		t.Skipf("no /proc/self/statm: %v", err)
	}
	var size, res int
	if _, err := fmt.Sscan(strings.TrimSpace(string(b)), &size, &res); err != nil {
		t.Fatal(err)
	}
	return res * os.Getpagesize()
}

func TestMapBadSize(t *testing.T) {
	for _, n := range []int{0, -ChunkSize, ChunkSize + 4096, 4096} {
		if _, err := Map(n); !errors.Is(err, ErrSize) {
			t.Errorf("Map(%d) = %v, want ErrSize", n, err)
		}
	}
}

func TestUnmapEmpty(t *testing.T) {
	if err := Unmap(nil); err != nil {
		t.Fatal(err)
	}
}
