package extentd_test

// Repository-wide rules that no linter checks (STYLE.md, rules 2-4, 18, 20,
// 40 and 43), in the manner of pebble's internal/lint and tailscale's
// pkgdoc_test.go. Each test names the file and line that breaks a rule.

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

const modulePath = "github.com/extentd/extentd"

// goFile is one parsed Go file of the repository.
type goFile struct {
	path string // relative to the repository root
	dir  string
	test bool
	ast  *ast.File
}

// parseRepo parses every .go file under the repository root, skipping
// testdata, hidden directories and vendor.
func parseRepo(t *testing.T) (*token.FileSet, []goFile) {
	t.Helper()
	fset := token.NewFileSet()
	var files []goFile
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			name := d.Name()
			if path != "." && (strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_") || name == "testdata" || name == "vendor") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.ParseComments|parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		files = append(files, goFile{path: path, dir: filepath.Dir(path), test: strings.HasSuffix(path, "_test.go"), ast: f})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return fset, files
}

// TestPackageDocs: every library package has a doc.go carrying its package
// comment ("// Package x ..."). A command (package main) may keep its
// "// Command x ..." comment in doc.go or main.go, as small tools do.
func TestPackageDocs(t *testing.T) {
	_, files := parseRepo(t)
	pkgs := map[string]string{}      // dir → package name, for dirs with non-test code
	docs := map[string][]*ast.File{} // dir → files that may hold the comment
	for _, f := range files {
		if f.test {
			continue
		}
		name := f.ast.Name.Name
		pkgs[f.dir] = name
		base := filepath.Base(f.path)
		if base == "doc.go" || (name == "main" && base == "main.go") {
			docs[f.dir] = append(docs[f.dir], f.ast)
		}
	}
	if len(pkgs) < 3 {
		t.Fatalf("found only %d packages; is the test running at the repository root?", len(pkgs))
	}
	for dir, name := range pkgs {
		want := "Package " + name + " "
		where := "doc.go"
		if name == "main" {
			want = "Command " + filepath.Base(dir) + " "
			where = "doc.go or main.go"
		}
		found := ""
		for _, f := range docs[dir] {
			if f.Doc != nil && found == "" {
				found = f.Doc.Text()
			}
		}
		switch {
		case len(docs[dir]) == 0:
			t.Errorf("%s: package %s has no %s", dir, name, where)
		case !strings.HasPrefix(found, want):
			t.Errorf("%s: package comment in %s must start with %q, got %q", dir, where, want, firstLine(found))
		}
	}
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// importName returns the local name under which f imports path, or "".
func importName(f *ast.File, path string) string {
	for _, imp := range f.Imports {
		p, _ := strconv.Unquote(imp.Path.Value)
		if p != path {
			continue
		}
		if imp.Name != nil {
			return imp.Name.Name
		}
		return path[strings.LastIndex(path, "/")+1:]
	}
	return ""
}

// TestNoGlobalLogger: zap.L(), zap.S() and zap.ReplaceGlobals are banned;
// loggers come in through Options (STYLE rule 3).
func TestNoGlobalLogger(t *testing.T) {
	fset, files := parseRepo(t)
	for _, f := range files {
		zapName := importName(f.ast, "go.uber.org/zap")
		if zapName == "" {
			continue
		}
		ast.Inspect(f.ast, func(n ast.Node) bool {
			sel, ok := n.(*ast.SelectorExpr)
			if !ok {
				return true
			}
			if id, ok := sel.X.(*ast.Ident); ok && id.Name == zapName {
				switch sel.Sel.Name {
				case "L", "S", "ReplaceGlobals", "RedirectStdLog":
					t.Errorf("%s: zap.%s: use the *zap.Logger from Options", fset.Position(sel.Pos()), sel.Sel.Name)
				}
			}
			return true
		})
		// No package-level logger variables either.
		for _, decl := range f.ast.Decls {
			gd, ok := decl.(*ast.GenDecl)
			if !ok || gd.Tok != token.VAR {
				continue
			}
			for _, spec := range gd.Specs {
				vs := spec.(*ast.ValueSpec)
				if star, ok := vs.Type.(*ast.StarExpr); ok {
					if sel, ok := star.X.(*ast.SelectorExpr); ok {
						if id, ok := sel.X.(*ast.Ident); ok && id.Name == zapName && (sel.Sel.Name == "Logger" || sel.Sel.Name == "SugaredLogger") {
							t.Errorf("%s: package-level logger variable", fset.Position(vs.Pos()))
						}
					}
				}
			}
		}
	}
}

// leadingLiteral returns the first string literal of a panic argument built
// from a literal, a concatenation or fmt.Sprintf/Errorf, and whether there
// is one.
func leadingLiteral(e ast.Expr) (string, bool) {
	switch x := e.(type) {
	case *ast.BasicLit:
		if x.Kind == token.STRING {
			s, err := strconv.Unquote(x.Value)
			return s, err == nil
		}
	case *ast.BinaryExpr:
		if x.Op == token.ADD {
			return leadingLiteral(x.X)
		}
	case *ast.CallExpr:
		if sel, ok := x.Fun.(*ast.SelectorExpr); ok && len(x.Args) > 0 {
			if id, ok := sel.X.(*ast.Ident); ok && (id.Name == "fmt" || id.Name == "errors") {
				return leadingLiteral(x.Args[0])
			}
		}
	case *ast.ParenExpr:
		return leadingLiteral(x.X)
	}
	return "", false
}

// TestPanicMessages: panic is for broken invariants only, and a panic with
// a message names its package ("statetree: ...") so a crash report says
// where the invariant lives (STYLE rule 18; pebble forbids bare panics).
// Client input and I/O errors must return errors instead.
func TestPanicMessages(t *testing.T) {
	fset, files := parseRepo(t)
	for _, f := range files {
		if f.test {
			continue
		}
		pkg := f.ast.Name.Name
		ast.Inspect(f.ast, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok || len(call.Args) != 1 {
				return true
			}
			if id, ok := call.Fun.(*ast.Ident); !ok || id.Name != "panic" {
				return true
			}
			msg, ok := leadingLiteral(call.Args[0])
			if !ok {
				return true // panic(err) re-raises an error built elsewhere
			}
			if !strings.HasPrefix(msg, pkg+": ") {
				t.Errorf("%s: panic message %q must start with %q and name the broken invariant", fset.Position(call.Pos()), msg, pkg+": ")
			}
			return true
		})
	}
}

// TestTypedAtomics: sync/atomic functions (atomic.AddInt64...) are banned in
// favour of the typed wrappers (atomic.Int64), which cannot be misused with
// a plain read (STYLE rule 20; pebble TestRawAtomics).
func TestTypedAtomics(t *testing.T) {
	fset, files := parseRepo(t)
	for _, f := range files {
		name := importName(f.ast, "sync/atomic")
		if name == "" {
			continue
		}
		ast.Inspect(f.ast, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok {
				return true
			}
			sel, ok := call.Fun.(*ast.SelectorExpr)
			if !ok {
				return true
			}
			if id, ok := sel.X.(*ast.Ident); ok && id.Name == name {
				for _, p := range []string{"Add", "Load", "Store", "Swap", "CompareAndSwap", "And", "Or"} {
					if strings.HasPrefix(sel.Sel.Name, p) {
						t.Errorf("%s: atomic.%s: use a typed atomic (atomic.Int64...)", fset.Position(call.Pos()), sel.Sel.Name)
					}
				}
			}
			return true
		})
	}
}

// TestImportDirection: statetree and device use the standard library only,
// and only cmd/ (and nbdserver's own packages) import nbdserver (STYLE rule 2).
func TestImportDirection(t *testing.T) {
	fset, files := parseRepo(t)
	stdlibOnly := []string{"statetree", "device"}
	for _, f := range files {
		if f.test {
			continue
		}
		top := strings.Split(filepath.ToSlash(f.dir), "/")[0]
		for _, imp := range f.ast.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			pos := fset.Position(imp.Pos())
			if (f.dir == "statetree" || f.dir == "device") && strings.Contains(strings.SplitN(p, "/", 2)[0], ".") {
				t.Errorf("%s: %s imports %s; %v may use the standard library only", pos, f.dir, p, stdlibOnly)
			}
			if (p == modulePath+"/nbdserver" || strings.HasPrefix(p, modulePath+"/nbdserver/")) && top != "cmd" && top != "nbdserver" && top != "test" {
				t.Errorf("%s: %s imports %s; only cmd/ wires the server", pos, f.dir, p)
			}
		}
	}
}

// optionsExempt lists packages whose Options need neither defaults nor
// validation, with the reason.
var optionsExempt = map[string]string{
	"device/memdev": "test-only device; one bool option, every value valid",
}

// TestOptionsContract: every exported Options struct has EnsureDefaults and
// Validate methods (STYLE rule 40).
func TestOptionsContract(t *testing.T) {
	_, files := parseRepo(t)
	type key struct{ dir, typ string }
	types := map[key]string{} // → file
	methods := map[key]map[string]bool{}
	for _, f := range files {
		if f.test {
			continue
		}
		for _, decl := range f.ast.Decls {
			switch d := decl.(type) {
			case *ast.GenDecl:
				for _, spec := range d.Specs {
					if ts, ok := spec.(*ast.TypeSpec); ok && ts.Name.Name == "Options" {
						if _, ok := ts.Type.(*ast.StructType); ok {
							types[key{f.dir, "Options"}] = f.path
						}
					}
				}
			case *ast.FuncDecl:
				if d.Recv == nil || len(d.Recv.List) != 1 {
					continue
				}
				rt := d.Recv.List[0].Type
				if star, ok := rt.(*ast.StarExpr); ok {
					rt = star.X
				}
				if id, ok := rt.(*ast.Ident); ok && id.Name == "Options" {
					k := key{f.dir, "Options"}
					if methods[k] == nil {
						methods[k] = map[string]bool{}
					}
					methods[k][d.Name.Name] = true
				}
			}
		}
	}
	for k, file := range types {
		if _, ok := optionsExempt[filepath.ToSlash(k.dir)]; ok {
			continue
		}
		for _, m := range []string{"EnsureDefaults", "Validate"} {
			if !methods[k][m] {
				t.Errorf("%s: Options has no %s method", file, m)
			}
		}
	}
}

func TestMain(m *testing.M) {
	// The walk is relative to the repository root, where this file lives.
	if _, err := os.Stat("go.mod"); err != nil {
		panic("extentd_test: lint tests must run from the repository root")
	}
	os.Exit(m.Run())
}
