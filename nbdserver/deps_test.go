package nbdserver

import (
	"go/build"
	"strings"
	"testing"
)

// TestDeps keeps the import direction of STYLE.md: only cmd/ imports
// nbdserver, and nbdserver knows only the device interface.
func TestDeps(t *testing.T) {
	banned := map[string]string{
		"github.com/extentd/extentd/extentcache": "the server speaks only device.Device",
		"github.com/extentd/extentd/statetree":   "the server speaks only device.Device",
		"github.com/extentd/extentd/alloc":       "the server speaks only device.Device",
		"github.com/dgraph-io/ristretto/v2":      "caching belongs to extentcache",
		"reflect":                                "no reflection on the request path",
	}
	pkg, err := build.ImportDir(".", 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, imp := range pkg.Imports {
		for b, why := range banned {
			if imp == b || strings.HasPrefix(imp, b+"/") {
				t.Errorf("nbdserver imports %s: %s", imp, why)
			}
		}
	}
}
