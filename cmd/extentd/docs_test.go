package main

import (
	"io"
	"os"
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

// TestReadmeStartsWithTheTwoCommands pins the README's first lines: the
// command that runs the server and the one that runs the whole suite.
func TestReadmeStartsWithTheTwoCommands(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitN(string(b), "\n", 5)
	if len(lines) < 4 || lines[0] != "```sh" ||
		!strings.HasPrefix(lines[1], "go run ./cmd/extentd serve ") ||
		!strings.HasPrefix(lines[2], "make test ") || lines[3] != "```" {
		t.Errorf("README.md must start with the two commands, got:\n%s", strings.Join(lines[:min(4, len(lines))], "\n"))
	}
}

// TestConfigurationDocCoversFlags: every serve flag is documented in
// docs/configuration.md, and every create/info flag in README or its help.
func TestConfigurationDocCoversFlags(t *testing.T) {
	b, err := os.ReadFile("../../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	root := newRootCmd(io.Discard, io.Discard)
	for _, c := range root.Commands() {
		if c.Name() != "serve" {
			continue
		}
		c.Flags().VisitAll(func(f *pflag.Flag) {
			if !strings.Contains(doc, "--"+f.Name) {
				t.Errorf("docs/configuration.md does not mention --%s", f.Name)
			}
		})
	}
}
