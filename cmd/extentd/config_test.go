package main

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"
)

// buildFrom parses args with the serve command's flags and returns the
// resolved config, without serving.
func buildFrom(t *testing.T, args ...string) (*Config, []resolved, error) {
	t.Helper()
	var f serveFlags
	cmd := &cobra.Command{Use: "serve"}
	f.register(cmd.Flags())
	if err := cmd.Flags().Parse(args); err != nil {
		return nil, nil, err
	}
	cfg, err := f.buildConfig(cmd, cmd.Flags().Args())
	if err != nil {
		return nil, nil, err
	}
	rs, err := cfg.resolveExports()
	return cfg, rs, err
}

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "extentd.yaml")
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestDefaults(t *testing.T) {
	cfg, rs, err := buildFrom(t)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Address != "127.0.0.1" || *cfg.Port != 10809 || cfg.Unix != "" || *cfg.AdminAddress != defaultAdminAddress {
		t.Errorf("listen defaults: %s:%d unix %q admin %q", cfg.Address, *cfg.Port, cfg.Unix, *cfg.AdminAddress)
	}
	if len(rs) != 1 {
		t.Fatalf("%d exports, want 1", len(rs))
	}
	r := rs[0]
	if r.Name != "" || r.Image != "extentd.img" || r.Size != 1<<30 || r.Cache != cacheWriteback || r.readOnly || !r.multiConn {
		t.Errorf("default export = %+v", r)
	}
}

func TestFlagsPositionalImage(t *testing.T) {
	_, rs, err := buildFrom(t, "-e", "disk", "-r", "--description", "golden", "--cache=none", "--size", "2G", "/tmp/disk.img")
	if err != nil {
		t.Fatal(err)
	}
	r := rs[0]
	if len(rs) != 1 || r.Name != "disk" || r.Image != "/tmp/disk.img" || !r.readOnly || r.Description != "golden" || r.Cache != cacheNone || r.Size != 2<<30 {
		t.Errorf("export = %+v", r)
	}
}

const sampleConfig = `
address: 0.0.0.0
port: 10900
admin-address: ""
log: {level: debug, format: json}
defaults:
  cache-size: 128M
  max-dirty: 64MiB
  writeback-age: 2s
exports:
  - name: a
    image: /srv/a.img
    size: 10G
  - name: b
    image: /srv/b.img
    description: second
    read-only: true
    cache: none
    cache-size: 1G
`

func TestConfigFile(t *testing.T) {
	path := writeConfig(t, sampleConfig)
	cfg, rs, err := buildFrom(t, "--config", path)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Address != "0.0.0.0" || *cfg.Port != 10900 || *cfg.AdminAddress != "" || cfg.Log.Level != "debug" || cfg.Log.Format != "json" {
		t.Errorf("server settings from file: %+v", cfg)
	}
	if len(rs) != 2 {
		t.Fatalf("%d exports, want 2", len(rs))
	}
	a, b := rs[0], rs[1]
	if a.Size != 10<<30 || a.CacheSize != 128<<20 || a.MaxDirty != 64<<20 || time.Duration(a.WritebackAge) != 2*time.Second || a.readOnly || a.Cache != cacheWriteback {
		t.Errorf("export a = %+v (defaults not applied?)", a)
	}
	if b.CacheSize != 1<<30 || !b.readOnly || b.Cache != cacheNone || b.Description != "second" || b.Size != 1<<30 {
		t.Errorf("export b = %+v", b)
	}
}

func TestFlagsOverrideConfigFile(t *testing.T) {
	path := writeConfig(t, sampleConfig)
	cfg, rs, err := buildFrom(t, "--config", path, "-p", "0", "--cache-size", "32M", "--log-level", "warn", "--cache", "writeback")
	if err != nil {
		t.Fatal(err)
	}
	if *cfg.Port != 0 || cfg.Address != "0.0.0.0" || cfg.Log.Level != "warn" {
		t.Errorf("port %d address %s level %s", *cfg.Port, cfg.Address, cfg.Log.Level)
	}
	for _, r := range rs {
		if r.CacheSize != 32<<20 || r.Cache != cacheWriteback {
			t.Errorf("export %q: cache-size %d cache %s, want the flag values", r.Name, r.CacheSize, r.Cache)
		}
	}
	// IMAGE with -e replaces the image of the export of that name.
	_, rs, err = buildFrom(t, "--config", path, "-e", "b", "/other/b.img")
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 2 || rs[1].Image != "/other/b.img" {
		t.Errorf("exports after IMAGE override: %+v", rs)
	}
	// -e without IMAGE is ambiguous with a file listing exports.
	if _, _, err := buildFrom(t, "--config", path, "-e", "b"); err == nil {
		t.Errorf("-e without IMAGE over a config with exports: no error")
	}
}

func TestUnixSocketReplacesTCP(t *testing.T) {
	cfg, _, err := buildFrom(t, "-U", "/tmp/x.sock")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.tcpExplicit {
		t.Errorf("-U alone keeps TCP")
	}
	cfg, _, err = buildFrom(t, "-U", "/tmp/x.sock", "-p", "0")
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.tcpExplicit {
		t.Errorf("-U with -p drops TCP")
	}
}

func TestBadConfigs(t *testing.T) {
	tests := map[string]string{
		"unknown key":     "exports:\n  - name: a\n    image: a.img\n    cache_size: 1G\n",
		"bad size":        "defaults:\n  cache-size: 12 parsecs\n",
		"bad duration":    "defaults:\n  writeback-age: later\n",
		"bad cache":       "exports:\n  - image: a.img\n    cache: sometimes\n",
		"no image":        "exports:\n  - name: a\n",
		"duplicate name":  "exports:\n  - {name: a, image: a.img}\n  - {name: a, image: b.img}\n",
		"shared image":    "exports:\n  - {name: a, image: a.img}\n  - {name: b, image: a.img}\n",
		"block size":      "exports:\n  - {image: a.img, block-size: 3000}\n",
		"defaults image":  "defaults:\n  image: x.img\n",
		"not yaml at all": "{{{",
	}
	for name, body := range tests {
		t.Run(name, func(t *testing.T) {
			_, _, err := buildFrom(t, "--config", writeConfig(t, body))
			if !errors.Is(err, errConfig) && !errors.Is(err, errBadSize) {
				t.Fatalf("error = %v, want a configuration error", err)
			}
		})
	}
	// An empty file is an empty configuration.
	if _, rs, err := buildFrom(t, "--config", writeConfig(t, "")); err != nil || len(rs) != 1 {
		t.Fatalf("empty config: %v, %d exports", err, len(rs))
	}
}

// TestAutoDirtyBudget: without max-dirty, each caching export gets 20 % of
// usable memory split between the caching exports (at least 256 MiB); an
// explicit value is kept, and
// read-only or uncached exports get nothing.
func TestAutoDirtyBudget(t *testing.T) {
	mem := usableMemory()
	if mem <= 0 {
		t.Fatal("usableMemory found no memory size")
	}
	var si unix.Sysinfo_t
	if err := unix.Sysinfo(&si); err != nil {
		t.Fatal(err)
	}
	if phys := int64(si.Totalram) * int64(si.Unit); mem > phys {
		t.Errorf("usable memory %d exceeds physical %d", mem, phys)
	}
	_, rs, err := buildFrom(t)
	if err != nil {
		t.Fatal(err)
	}
	want := max(mem/5, 256<<20)
	if got := int64(rs[0].MaxDirty); got != want {
		t.Errorf("one export: max-dirty %d, want %d (20%% of %d)", got, want, mem)
	}

	_, rs, err = buildFrom(t, "--config", writeConfig(t, `
exports:
  - {name: a, image: /tmp/a.img}
  - {name: b, image: /tmp/b.img}
  - {name: c, image: /tmp/c.img, read-only: true}
  - {name: d, image: /tmp/d.img, cache: none}
  - {name: e, image: /tmp/e.img, max-dirty: 64M}
`))
	if err != nil {
		t.Fatal(err)
	}
	// a, b and e cache writes: three shares.
	share := max(mem/5/3, 256<<20)
	for _, r := range rs {
		var want int64
		switch r.Name {
		case "a", "b":
			want = share
		case "e":
			want = 64 << 20
		}
		if int64(r.MaxDirty) != want {
			t.Errorf("export %s: max-dirty %d, want %d", r.Name, r.MaxDirty, want)
		}
	}
}

// TestFillGapSetting: unset keeps the cache's default, 0 disables (a
// negative FillGap for the cache), and flags override the file.
func TestFillGapSetting(t *testing.T) {
	cases := []struct {
		args []string
		want int64
	}{
		{nil, 0},
		{[]string{"--fill-gap", "0"}, -1},
		{[]string{"--fill-gap", "16K"}, 16 << 10},
		{[]string{"--config", writeConfig(t, "defaults: {fill-gap: 0}\nexports: [{image: /tmp/a.img}]\n")}, -1},
		{[]string{"--config", writeConfig(t, "defaults: {fill-gap: 0}\nexports: [{image: /tmp/a.img, fill-gap: 8K}]\n")}, 8 << 10},
		{[]string{"--config", writeConfig(t, "exports: [{image: /tmp/a.img, fill-gap: 0}]\n"), "--fill-gap", "32K"}, 32 << 10},
	}
	for _, tc := range cases {
		_, rs, err := buildFrom(t, tc.args...)
		if err != nil {
			t.Fatalf("%v: %v", tc.args, err)
		}
		if got := fillGapOption(rs[0].FillGap); got != tc.want {
			t.Errorf("%v: FillGap option %d, want %d", tc.args, got, tc.want)
		}
	}
}
