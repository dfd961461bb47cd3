package alloc

import (
	"path/filepath"
	"testing"

	"go.uber.org/zap/zaptest"
)

// openTest creates and opens an image of size bytes in a temporary
// directory; cleanup checks the Space invariants and closes it.
func openTest(tb testing.TB, size int64, opts Options) *File {
	tb.Helper()
	return openTestAt(tb, filepath.Join(tb.TempDir(), "disk.img"), size, opts)
}

// openTestAt is openTest with the image at path.
func openTestAt(tb testing.TB, path string, size int64, opts Options) *File {
	tb.Helper()
	opts.Size, opts.Create = size, true
	if opts.Logger == nil {
		opts.Logger = zaptest.NewLogger(tb)
	}
	f, err := Open(path, opts)
	if err != nil {
		tb.Fatalf("Open: %v", err)
	}
	tb.Cleanup(func() {
		if err := f.Space().Check(); err != nil {
			tb.Errorf("Space.Check at cleanup: %v", err)
		}
		if err := f.Close(); err != nil {
			tb.Errorf("Close: %v", err)
		}
	})
	return f
}
