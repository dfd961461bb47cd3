package devicetest

import (
	"go/build"
	"strings"
	"testing"
)

// TestDeps: the suite depends only on device and the standard library, so
// that every Device package can run it without an import cycle.
func TestDeps(t *testing.T) {
	pkg, err := build.ImportDir(".", 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, imp := range pkg.Imports {
		first, _, _ := strings.Cut(imp, "/")
		if strings.Contains(first, ".") && imp != "github.com/extentd/extentd/device" {
			t.Errorf("devicetest imports %s; only device and the standard library are allowed", imp)
		}
	}
}
