package devicetest

import (
	"testing"

	"github.com/extentd/extentd/internal/testutil"
)

// TestDeps: the suite depends only on device and the standard library, so
// that every Device package can run it without an import cycle.
func TestDeps(t *testing.T) {
	testutil.CheckImports(t, ".", testutil.ImportRules{
		StdlibOnly:   true,
		StdlibReason: "only device and the standard library are allowed",
		Allow:        []string{"github.com/extentd/extentd/device"},
	})
}
