package nbdtest_test

import (
	"testing"

	"github.com/extentd/extentd/internal/testutil"
)

// TestDeps keeps nbdtest an independent oracle: its non-test code uses
// only the standard library, and above all never the server's package
// (sharing constants or codecs with nbdserver would hide misreadings of
// the spec that both sides make).
func TestDeps(t *testing.T) {
	testutil.CheckImports(t, ".", testutil.ImportRules{
		StdlibOnly:   true,
		StdlibReason: "nbdtest must use only the standard library",
		Banned: map[string]string{
			"github.com/extentd/extentd/nbdserver": "an oracle that shares the server's code shares its misreadings of the spec",
		},
	})
}
