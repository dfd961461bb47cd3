package testutil

import (
	"fmt"
	"path/filepath"
	"reflect"
	"testing"
)

// recorder is a testing.TB that records Errorf and Fatalf instead of
// failing, so the checker's own failures can be asserted.
type recorder struct {
	testing.TB
	errs  []string
	fatal []string
}

func (r *recorder) Helper() {}

func (r *recorder) Errorf(format string, args ...any) {
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

func (r *recorder) Fatalf(format string, args ...any) {
	r.fatal = append(r.fatal, fmt.Sprintf(format, args...))
}

func TestCheckImports(t *testing.T) {
	dir := filepath.Join("testdata", "imports")
	banned := filepath.Join(dir, "banned.go")
	other := filepath.Join(dir, "other_linux.go")
	tests := []struct {
		name  string
		rules ImportRules
		want  []string
	}{
		{
			name:  "no rules",
			rules: ImportRules{},
		},
		{
			name: "banned prefix covers packages below it but not a longer sibling",
			rules: ImportRules{Banned: map[string]string{
				"github.com/extentd/extentd/nbdserver": "only cmd wires the server",
				"go.uber.org/zap":                      "no logging here",
				"github.com/spf13":                     "no CLI code",
				"github.com/prometheus":                "tests only, never reached",
			}},
			want: []string{
				banned + " imports github.com/extentd/extentd/nbdserver/nbdtest: only cmd wires the server",
				banned + " imports go.uber.org/zap: no logging here",
				other + " imports github.com/spf13/cobra: no CLI code",
			},
		},
		{
			name:  "stdlib only with an allowed exact path",
			rules: ImportRules{StdlibOnly: true, Allow: []string{"github.com/extentd/extentd/device"}},
			want: []string{
				banned + " imports non-stdlib package github.com/extentd/extentd/nbdserver/nbdtest: only the standard library is allowed",
				banned + " imports non-stdlib package github.com/extentd/extentd/nbdserverx: only the standard library is allowed",
				banned + " imports non-stdlib package go.uber.org/zap: only the standard library is allowed",
				other + " imports non-stdlib package github.com/spf13/cobra: only the standard library is allowed",
			},
		},
		{
			name: "stdlib only with its own reason, banned too",
			rules: ImportRules{
				StdlibOnly:   true,
				StdlibReason: "an oracle shares nothing",
				Allow:        []string{"github.com/extentd/extentd/device", "github.com/extentd/extentd/nbdserverx", "github.com/spf13/cobra"},
				Banned:       map[string]string{"github.com/extentd/extentd/nbdserverx": "Allow does not override Banned"},
			},
			want: []string{
				banned + " imports non-stdlib package github.com/extentd/extentd/nbdserver/nbdtest: an oracle shares nothing",
				banned + " imports github.com/extentd/extentd/nbdserverx: Allow does not override Banned",
				banned + " imports non-stdlib package go.uber.org/zap: an oracle shares nothing",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &recorder{TB: t}
			CheckImports(r, dir, tt.rules)
			if len(r.fatal) != 0 {
				t.Fatalf("Fatalf: %q", r.fatal)
			}
			if !reflect.DeepEqual(r.errs, tt.want) {
				t.Errorf("errors:\n got %q\nwant %q", r.errs, tt.want)
			}
		})
	}
}

// TestCheckImportsNoFiles: a directory with no code to check, or none at
// all, fails rather than passing vacuously.
func TestCheckImportsNoFiles(t *testing.T) {
	for _, dir := range []string{filepath.Join("testdata", "empty"), filepath.Join("testdata", "missing")} {
		r := &recorder{TB: t}
		CheckImports(r, dir, ImportRules{StdlibOnly: true})
		if len(r.fatal) != 1 || len(r.errs) != 0 {
			t.Errorf("%s: fatal %q, errors %q; want one fatal", dir, r.fatal, r.errs)
		}
	}
}

func TestIsStdlib(t *testing.T) {
	for path, want := range map[string]bool{
		"fmt":                        true,
		"net/http":                   true,
		"go.uber.org/zap":            false,
		"github.com/extentd/extentd": false,
		"golang.org/x/sys/unix":      false,
	} {
		if got := IsStdlib(path); got != want {
			t.Errorf("IsStdlib(%q) = %v, want %v", path, got, want)
		}
	}
}
