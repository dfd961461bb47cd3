package extentcache

import (
	"go/build"
	"strings"
	"testing"
)

// TestDeps keeps the import direction of the design: extentcache sits over
// device and statetree and is used by cmd; it never imports the server, the
// binaries, or the backing-file package (whose capabilities it finds by type
// assertion, so that tests run over any device).
func TestDeps(t *testing.T) {
	pkg, err := build.ImportDir(".", 0)
	if err != nil {
		t.Fatal(err)
	}
	banned := map[string]string{
		"github.com/extentd/extentd/nbdserver": "the server imports the cache, not the reverse",
		"github.com/extentd/extentd/cmd":       "only cmd wires layers together",
		"github.com/extentd/extentd/alloc":     "capabilities are found by type assertion; space comes as Options.Space",
	}
	for _, imp := range pkg.Imports {
		for prefix, why := range banned {
			if strings.HasPrefix(imp, prefix) {
				t.Errorf("extentcache imports %s: %s", imp, why)
			}
		}
	}
}
