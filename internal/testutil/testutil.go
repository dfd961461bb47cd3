package testutil

import (
	"os"
	"os/exec"
	"testing"
)

// InCI reports whether the tests run in CI (the CI environment variable is
// set and not "false"). In CI a missing tool or privilege is a failure, never
// a skip, so a green CI run means every test really ran.
func InCI() bool {
	v := os.Getenv("CI")
	return v != "" && v != "false" && v != "0"
}

// RequireTool returns the path of each named executable. When one is missing
// the test is skipped on a developer machine and fails in CI.
func RequireTool(tb testing.TB, names ...string) []string {
	tb.Helper()
	paths := make([]string, 0, len(names))
	for _, name := range names {
		p, err := exec.LookPath(name)
		if err != nil {
			missing(tb, "tool "+name+" is not installed (make test installs it)")
			return nil
		}
		paths = append(paths, p)
	}
	return paths
}

// RequireRoot skips the test unless it runs as root, failing instead in CI
// (which runs as root).
func RequireRoot(tb testing.TB) {
	tb.Helper()
	if os.Geteuid() != 0 {
		missing(tb, "needs root")
	}
}

func missing(tb testing.TB, why string) {
	tb.Helper()
	if InCI() {
		tb.Fatalf("%s; CI must run every test", why)
	}
	tb.Skip(why)
}
