package main

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"gopkg.in/yaml.v3"
)

// The deployment files in deploy/ pass flags to this binary; these tests
// keep them in step with the command.

const deployDir = "../../deploy"

// checkArgs verifies that args (after the binary name) name a subcommand and
// only flags that subcommand defines.
func checkArgs(t testing.TB, where string, args []string) {
	t.Helper()
	if len(args) == 0 {
		t.Errorf("%s: no arguments", where)
		return
	}
	root := newRootCmd(io.Discard, io.Discard)
	var sub *cobra.Command
	for _, c := range root.Commands() {
		if c.Name() == args[0] {
			sub = c
		}
	}
	if sub == nil {
		t.Errorf("%s: unknown subcommand %q", where, args[0])
		return
	}
	flags := sub.Flags()
	for i := 1; i < len(args); i++ {
		a := args[i]
		if !strings.HasPrefix(a, "-") {
			continue
		}
		name, value, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		var f = flags.Lookup(name)
		if !strings.HasPrefix(a, "--") {
			f = flags.ShorthandLookup(name)
		}
		if f == nil {
			t.Errorf("%s: %s has no flag %q", where, sub.Name(), a)
			continue
		}
		switch {
		case hasValue:
		case f.NoOptDefVal != "": // a boolean flag
			value = f.NoOptDefVal
		case i+1 < len(args):
			value = args[i+1]
			i++
		}
		if err := f.Value.Set(value); err != nil {
			t.Errorf("%s: %s: bad value %q: %v", where, a, value, err)
		}
	}
	// Parse the whole line as the command would.
	if err := sub.ParseFlags(args[1:]); err != nil {
		t.Errorf("%s: %v", where, err)
	}
}

// execStart returns the ExecStart= command of a unit file.
func execStart(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "ExecStart="); ok {
			return strings.Fields(v)
		}
	}
	t.Fatalf("%s: no ExecStart=", path)
	return nil
}

func TestSystemdUnits(t *testing.T) {
	svc := filepath.Join(deployDir, "extentd.service")
	cmd := execStart(t, svc)
	if filepath.Base(cmd[0]) != "extentd" {
		t.Fatalf("%s: ExecStart runs %s", svc, cmd[0])
	}
	checkArgs(t, svc, cmd[1:])
	// The config the unit points at is the example in deploy/.
	for i, a := range cmd {
		if a == "--config" && i+1 < len(cmd) && filepath.Base(cmd[i+1]) != "extentd.yaml" {
			t.Errorf("%s: --config %s is not the shipped example's name", svc, cmd[i+1])
		}
	}
	sock, err := os.ReadFile(filepath.Join(deployDir, "extentd.socket"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(sock), "ListenStream=") {
		t.Errorf("extentd.socket has no ListenStream")
	}
	unit, _ := os.ReadFile(svc)
	if !strings.Contains(string(unit), "Requires=extentd.socket") || !strings.Contains(string(unit), "KillSignal=SIGTERM") {
		t.Errorf("extentd.service must require extentd.socket and stop with SIGTERM")
	}
}

func TestExampleConfigParses(t *testing.T) {
	path := filepath.Join(deployDir, "extentd.yaml")
	cfg, err := loadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	rs, err := cfg.resolveExports()
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) < 2 {
		t.Errorf("%s: the example should show several exports, has %d", path, len(rs))
	}
	if _, _, err := newLogger(cfg.Log); err != nil {
		t.Errorf("%s: log section: %v", path, err)
	}
}

// k8sContainer is the part of a container spec we check.
type k8sContainer struct {
	Name    string   `yaml:"name"`
	Command []string `yaml:"command"`
	Args    []string `yaml:"args"`
}

func TestKubernetesManifests(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(deployDir, "kubernetes", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests: %v", err)
	}
	kinds := map[string]bool{}
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(data))
		for {
			var doc struct {
				Kind string            `yaml:"kind"`
				Data map[string]string `yaml:"data"`
				Spec struct {
					Template struct {
						Spec struct {
							Containers []k8sContainer `yaml:"containers"`
						} `yaml:"spec"`
					} `yaml:"template"`
					VolumeClaimTemplates []any `yaml:"volumeClaimTemplates"`
				} `yaml:"spec"`
			}
			if err := dec.Decode(&doc); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				t.Fatalf("%s: %v", file, err)
			}
			kinds[doc.Kind] = true
			for _, c := range doc.Spec.Template.Spec.Containers {
				args := append(append([]string(nil), c.Command...), c.Args...)
				if len(c.Command) > 0 && filepath.Base(c.Command[0]) == "extentd" {
					args = args[1:]
				}
				checkArgs(t, file+": container "+c.Name, args)
			}
			if doc.Kind == "StatefulSet" && len(doc.Spec.VolumeClaimTemplates) == 0 {
				t.Errorf("%s: StatefulSet has no volumeClaimTemplates for the image", file)
			}
			for name, body := range doc.Data {
				if strings.HasSuffix(name, ".yaml") {
					cfg, err := parseConfig(file+": "+name, []byte(body))
					if err == nil {
						_, err = cfg.resolveExports()
					}
					if err != nil {
						t.Errorf("%s: ConfigMap %s: %v", file, name, err)
					}
				}
			}
		}
	}
	for _, k := range []string{"StatefulSet", "Service"} {
		if !kinds[k] {
			t.Errorf("no %s manifest", k)
		}
	}
}

// recorder notes Errorf calls instead of failing the test.
type recorder struct {
	testing.TB
	failed bool
}

func (r *recorder) Helper()               {}
func (r *recorder) Errorf(string, ...any) { r.failed = true }

// TestCheckArgsCatchesUnknownFlags makes sure the checker above can fail.
func TestCheckArgsCatchesUnknownFlags(t *testing.T) {
	for _, args := range [][]string{
		{"serve", "--no-such-flag"},
		{"serve", "--cache-size=12 parsecs"},
		{"serve", "--cache", "sometimes"},
		{"serve", "-Z"},
		{"nosuchcommand"},
	} {
		rec := &recorder{TB: t}
		checkArgs(rec, "test", args)
		if !rec.failed {
			t.Errorf("checkArgs(%v) passed", args)
		}
	}
	rec := &recorder{TB: t}
	checkArgs(rec, "test", []string{"serve", "-p", "1", "--cache=none", "-r", "x.img"})
	if rec.failed {
		t.Errorf("checkArgs rejected a good command line")
	}
}

// TestDockerfile checks the Dockerfile by inspection (no engine in CI): the
// module download comes before the source copy, the binary is static with a
// stamped version, the runtime user is not root, and CMD passes valid flags.
func TestDockerfile(t *testing.T) {
	data, err := os.ReadFile("../../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	s := string(data)
	order := []string{"COPY go.mod go.sum", "go mod download", "COPY . .", "CGO_ENABLED=0", "-X main.version=", "USER 65532"}
	for _, want := range []string{"EXPOSE 10809", "VOLUME ["} {
		if !strings.Contains(s, want) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}
	last := -1
	for _, want := range order {
		i := strings.Index(s, want)
		if i < 0 {
			t.Errorf("Dockerfile lacks %q", want)
			continue
		}
		if i < last {
			t.Errorf("Dockerfile: %q is out of order", want)
		}
		last = i
	}
	if strings.Count(s, "\nFROM ") < 2 {
		t.Errorf("Dockerfile is not multi-stage")
	}
	for _, line := range strings.Split(s, "\n") {
		if v, ok := strings.CutPrefix(line, "CMD "); ok {
			var args []string
			if err := yaml.Unmarshal([]byte(v), &args); err != nil {
				t.Fatalf("CMD %s: %v", v, err)
			}
			checkArgs(t, "Dockerfile CMD", args)
		}
	}
}
