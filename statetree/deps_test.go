package statetree

import (
	"testing"

	"github.com/extentd/extentd/internal/testutil"
)

// TestDeps keeps statetree a pure data structure: it imports the standard
// library only. In particular no zap (the tree does no logging), no
// ristretto (the tree caches nothing) and no other extentd package (the
// import direction is extentcache -> statetree, never the reverse). The
// design allowed github.com/tidwall/btree, but the package needs none, so
// the rule is the stricter one the root lint_test.go also enforces.
func TestDeps(t *testing.T) {
	testutil.CheckImports(t, ".", testutil.ImportRules{
		StdlibOnly: true,
		Banned: map[string]string{
			"go.uber.org/zap":                "statetree does no logging",
			"github.com/dgraph-io/ristretto": "statetree caches nothing",
			"github.com/extentd/extentd":     "import direction is extentcache -> statetree",
		},
	})
}
