package extentcache

import (
	"testing"

	"github.com/extentd/extentd/internal/testutil"
)

// TestDeps keeps the import direction of the design: extentcache sits over
// device and statetree and is used by cmd; it never imports the server, the
// binaries, or the backing-file package (whose capabilities it finds by type
// assertion, so that tests run over any device).
func TestDeps(t *testing.T) {
	testutil.CheckImports(t, ".", testutil.ImportRules{Banned: map[string]string{
		"github.com/extentd/extentd/nbdserver": "the server imports the cache, not the reverse",
		"github.com/extentd/extentd/cmd":       "only cmd wires layers together",
		"github.com/extentd/extentd/alloc":     "capabilities are found by type assertion; space comes as Options.Space",
	}})
}
