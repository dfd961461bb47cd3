package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/extentd/extentd/nbdserver"
)

// runCLI runs the command line in-process and returns the exit code, stdout
// and stderr.
func runCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestUsageErrorsExit2(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string // the message must name this
	}{
		{"unknown flag", []string{"serve", "--no-such-flag"}, "--no-such-flag"},
		{"bad size", []string{"serve", "--cache-size", "10X"}, "--cache-size"},
		{"decimal unit", []string{"serve", "--max-dirty", "1MB"}, "--max-dirty"},
		{"bad cache mode", []string{"serve", "--cache=sometimes"}, "--cache"},
		{"bad log level", []string{"serve", "--log-level", "loud"}, "--log-level"},
		{"bad log format", []string{"serve", "--log-format", "xml"}, "--log-format"},
		{"bad duration", []string{"serve", "--writeback-age", "soon"}, "--writeback-age"},
		{"bad port", []string{"serve", "-p", "70000"}, "--port"},
		{"two images", []string{"serve", "a.img", "b.img"}, "arg"},
		{"require tls without cert", []string{"serve", "--require-tls"}, "--require-tls"},
		{"unknown command", []string{"frobnicate"}, "frobnicate"},
		{"create without size", []string{"create", "x.img"}, "--size"},
		{"create bad size", []string{"create", "x.img", "--size", "1.5"}, "--size"},
		{"create no image", []string{"create", "--size", "1G"}, "arg"},
		{"info with args", []string{"info", "extra"}, "extra"},
		{"missing config", []string{"serve", "--config", "/nonexistent/extentd.yaml"}, "/nonexistent/extentd.yaml"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Chdir(t.TempDir())
			code, _, stderr := runCLI(t, tc.args...)
			if tc.name == "missing config" {
				if code != exitError {
					t.Fatalf("exit code %d, want %d (stderr %q)", code, exitError, stderr)
				}
			} else if code != exitUsage {
				t.Fatalf("exit code %d, want %d (stderr %q)", code, exitUsage, stderr)
			}
			if strings.Count(stderr, "\n") != 1 || !strings.HasPrefix(stderr, "extentd: ") {
				t.Errorf("stderr %q is not one line starting with \"extentd: \"", stderr)
			}
			if !strings.Contains(stderr, tc.want) {
				t.Errorf("stderr %q does not name %q", stderr, tc.want)
			}
			if _, err := os.Stat(defaultImage); err == nil {
				t.Errorf("a failed command created %s", defaultImage)
			}
		})
	}
}

func TestVersion(t *testing.T) {
	code, out, _ := runCLI(t, "version")
	if code != 0 || out != "extentd "+version+"\n" {
		t.Fatalf("version: code %d out %q", code, out)
	}
}

func TestHelpHasExamples(t *testing.T) {
	for _, sub := range []string{"serve", "create", "info", "version"} {
		code, out, _ := runCLI(t, sub, "--help")
		if code != 0 || !strings.Contains(out, "Examples:") || !strings.Contains(out, "extentd "+sub) {
			t.Errorf("%s --help: code %d, output lacks an example:\n%s", sub, code, out)
		}
	}
	_, out, _ := runCLI(t, "serve", "--help")
	for _, f := range []string{"-p, --port", "-i, --ipaddr", "-U, --unix", "-r, --read-only", "-e, --export-name", "--cache-size", "--cache ", "--require-tls", "--admin-address"} {
		if !strings.Contains(out, f) {
			t.Errorf("serve --help lacks %q", f)
		}
	}
}

func TestCreate(t *testing.T) {
	dir := t.TempDir()
	img := filepath.Join(dir, "x.img")
	code, out, stderr := runCLI(t, "create", img, "--size", "1.5GiB")
	if code != 0 {
		t.Fatalf("create: code %d stderr %q", code, stderr)
	}
	if !strings.Contains(out, "1.50 GiB") {
		t.Errorf("create output %q does not state the size", out)
	}
	fi, err := os.Stat(img)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() != 3<<29 {
		t.Errorf("image size %d, want %d", fi.Size(), int64(3<<29))
	}
	if blocks := fi.Sys().(*syscall.Stat_t).Blocks; blocks > 8 {
		t.Errorf("image has %d blocks allocated, want a sparse file", blocks)
	}
	// An existing file is never overwritten.
	code, _, stderr = runCLI(t, "create", img, "--size", "4k")
	if code != exitError || !strings.Contains(stderr, "exist") {
		t.Errorf("create over an existing file: code %d stderr %q", code, stderr)
	}
	if fi, _ := os.Stat(img); fi.Size() != 3<<29 {
		t.Errorf("existing image was resized to %d", fi.Size())
	}
}

func TestMetricLabelsBounded(t *testing.T) {
	if got := commandLabel(nbdserver.CmdWrite); got != "write" {
		t.Errorf("commandLabel(write) = %q", got)
	}
	if got := commandLabel(nbdserver.Command(999)); got != "unknown" {
		t.Errorf("commandLabel(999) = %q, want unknown", got)
	}
	if got := errnoLabel(0); got != "" {
		t.Errorf("errnoLabel(0) = %q, want empty", got)
	}
	if got := errnoLabel(nbdserver.Errno(12345)); got != "other" {
		t.Errorf("errnoLabel(12345) = %q, want other", got)
	}
}
