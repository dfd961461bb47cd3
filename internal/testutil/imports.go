package testutil

import (
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// ImportRules are the import rules of one package, checked by CheckImports.
// Each package's deps_test.go states its own rules and the reason for each,
// so a failure says why the import is wrong, not only that it is.
type ImportRules struct {
	// Banned maps an import path to the reason it is banned. A rule bans the
	// path and every package below it ("github.com/spf13" bans
	// "github.com/spf13/cobra"), but not a longer sibling name.
	Banned map[string]string
	// StdlibOnly bans every import outside the standard library (any path
	// whose first element holds a dot), except the exact paths in Allow.
	StdlibOnly bool
	// StdlibReason is the reason given for a StdlibOnly failure; empty means
	// "only the standard library is allowed".
	StdlibReason string
	// Allow lists exact import paths that StdlibOnly lets through. It does
	// not override Banned.
	Allow []string
}

// CheckImports reports, with tb.Errorf, every import of the non-test Go files
// in dir that breaks rules, naming the file, the import and the reason. It
// reads every non-test .go file whatever its build constraints, so a rule
// holds on every platform and under every tag (invariants, race...). A
// directory without non-test Go files is a failure: a rule checked against
// nothing cannot fail.
func CheckImports(tb testing.TB, dir string, rules ImportRules) {
	tb.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		tb.Fatalf("testutil: import rules: %v", err)
		return
	}
	stdlibWhy := rules.StdlibReason
	if stdlibWhy == "" {
		stdlibWhy = "only the standard library is allowed"
	}
	// Check the rules in a fixed order so that failures read the same on
	// every run.
	banned := make([]string, 0, len(rules.Banned))
	for p := range rules.Banned {
		banned = append(banned, p)
	}
	sort.Strings(banned)
	fset := token.NewFileSet()
	files := 0
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") {
			continue
		}
		path := filepath.Join(dir, name)
		f, err := parser.ParseFile(fset, path, nil, parser.ImportsOnly)
		if err != nil {
			tb.Fatalf("testutil: import rules: %v", err)
			return
		}
		files++
		for _, spec := range f.Imports {
			imp, err := strconv.Unquote(spec.Path.Value)
			if err != nil {
				tb.Fatalf("testutil: import rules: %s: bad import %s", path, spec.Path.Value)
				return
			}
			for _, b := range banned {
				if imp == b || strings.HasPrefix(imp, b+"/") {
					tb.Errorf("%s imports %s: %s", path, imp, rules.Banned[b])
				}
			}
			if rules.StdlibOnly && !IsStdlib(imp) && !contains(rules.Allow, imp) {
				tb.Errorf("%s imports non-stdlib package %s: %s", path, imp, stdlibWhy)
			}
		}
	}
	if files == 0 {
		tb.Fatalf("testutil: import rules: no non-test Go files in %s", dir)
	}
}

// IsStdlib reports whether an import path names a standard-library package:
// its first path element has no dot (module paths start with a domain).
func IsStdlib(path string) bool {
	first, _, _ := strings.Cut(path, "/")
	return !strings.Contains(first, ".")
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
