package pagemem

import (
	"testing"

	"github.com/extentd/extentd/internal/testutil"
)

// TestDeps: pagemem is a leaf: it maps memory and knows nothing of the
// layers that use it.
func TestDeps(t *testing.T) {
	testutil.CheckImports(t, ".", testutil.ImportRules{Banned: map[string]string{
		"github.com/extentd/extentd": "a leaf package: no other package of this module",
		"go.uber.org/zap":            "no logging in a memory mapper",
	}})
}
