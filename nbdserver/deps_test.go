package nbdserver

import (
	"testing"

	"github.com/extentd/extentd/internal/testutil"
)

// TestDeps keeps the import direction of STYLE.md: only cmd/ imports
// nbdserver, and nbdserver knows only the device interface.
func TestDeps(t *testing.T) {
	testutil.CheckImports(t, ".", testutil.ImportRules{Banned: map[string]string{
		"github.com/extentd/extentd/extentcache": "the server speaks only device.Device",
		"github.com/extentd/extentd/statetree":   "the server speaks only device.Device",
		"github.com/extentd/extentd/alloc":       "the server speaks only device.Device",
		"github.com/dgraph-io/ristretto/v2":      "caching belongs to extentcache",
		"reflect":                                "no reflection on the request path",
	}})
}
