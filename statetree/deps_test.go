package statetree

import (
	"go/build"
	"strings"
	"testing"
)

// TestDeps keeps statetree a pure data structure: it imports the standard
// library only. In particular no zap (the tree does no logging), no
// ristretto (the tree caches nothing) and no other extentd package (the
// import direction is extentcache -> statetree, never the reverse). The
// design allowed github.com/tidwall/btree, but the package needs none, so
// the rule is the stricter one the root lint_test.go also enforces.
func TestDeps(t *testing.T) {
	pkg, err := build.ImportDir(".", 0)
	if err != nil {
		t.Fatal(err)
	}
	banned := map[string]string{
		"go.uber.org/zap":                "statetree does no logging",
		"github.com/dgraph-io/ristretto": "statetree caches nothing",
		"github.com/extentd/extentd":     "import direction is extentcache -> statetree",
	}
	for _, imp := range pkg.Imports {
		for prefix, why := range banned {
			if strings.HasPrefix(imp, prefix) {
				t.Errorf("statetree imports %s: %s", imp, why)
			}
		}
		first, _, _ := strings.Cut(imp, "/")
		if strings.Contains(first, ".") {
			t.Errorf("statetree imports non-stdlib package %s; only the standard library is allowed", imp)
		}
	}
}
