package alloc

import (
	"go/build"
	"strings"
	"testing"
)

// TestDeps keeps the import direction of the house style: alloc is a
// layer under the cache and the server (extentcache -> alloc -> device,
// statetree), never above them.
func TestDeps(t *testing.T) {
	pkg, err := build.ImportDir(".", 0)
	if err != nil {
		t.Fatal(err)
	}
	banned := map[string]string{
		"github.com/extentd/extentd/extentcache": "the cache imports alloc, not the reverse",
		"github.com/extentd/extentd/nbdserver":   "alloc knows nothing of NBD",
		"github.com/extentd/extentd/cmd":         "only cmd wires packages together",
		"github.com/dgraph-io/ristretto":         "alloc caches nothing; the cache owns ristretto",
		"github.com/prometheus":                  "metrics are exported by cmd from Stats",
		"github.com/spf13":                       "no CLI code below cmd",
	}
	for _, imp := range pkg.Imports {
		for prefix, why := range banned {
			if strings.HasPrefix(imp, prefix) {
				t.Errorf("alloc imports %s: %s", imp, why)
			}
		}
	}
}
