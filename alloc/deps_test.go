package alloc

import (
	"testing"

	"github.com/extentd/extentd/internal/testutil"
)

// TestDeps keeps the import direction of the house style: alloc is a
// layer under the cache and the server (extentcache -> alloc -> device,
// statetree), never above them.
func TestDeps(t *testing.T) {
	testutil.CheckImports(t, ".", testutil.ImportRules{Banned: map[string]string{
		"github.com/extentd/extentd/extentcache": "the cache imports alloc, not the reverse",
		"github.com/extentd/extentd/nbdserver":   "alloc knows nothing of NBD",
		"github.com/extentd/extentd/cmd":         "only cmd wires packages together",
		"github.com/dgraph-io/ristretto":         "alloc caches nothing; the cache owns ristretto",
		"github.com/prometheus":                  "metrics are exported by cmd from Stats",
		"github.com/spf13":                       "no CLI code below cmd",
	}})
}
