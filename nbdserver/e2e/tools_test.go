package e2e

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/extentd/extentd/device/memdev"
	"github.com/extentd/extentd/internal/testutil"
	"github.com/extentd/extentd/nbdserver"
	"github.com/extentd/extentd/nbdserver/nbdtest"
)

// toolEnv starts a server with the three exports the tool tests use:
// "" (64 MiB, writable), "ro" (1 MiB, read-only) and "plain" (1 MiB, no
// optional capabilities).
func toolEnv(t *testing.T, network string) *env {
	return startEnv(t, network,
		addExport(nbdserver.Export{Name: "ro", Description: "read-only", Device: memdev.New(1<<20, memdev.Options{}), ReadOnly: true}),
		addExport(nbdserver.Export{Name: "plain", Description: "plain", Device: plainDevice{memdev.New(1<<20, memdev.Options{})}}),
	)
}

// run runs an external tool with a timeout and returns its stdout; the
// test fails with stderr on a non-zero exit.
func run(t *testing.T, env []string, name string, args ...string) string {
	t.Helper()
	out, err := runErr(t, env, name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return out
}

func runErr(t *testing.T, env []string, name string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Dir = t.TempDir() // tools such as fio drop state files in their cwd
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		return "", err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			return stdout.String() + stderr.String(), err
		}
		return stdout.String(), nil
	case <-time.After(60 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		return stdout.String() + stderr.String(), fmt.Errorf("timed out")
	}
}

// TestNbdinfo uses nbdinfo as an oracle for LIST, INFO/GO, flags, block
// sizes, description, meta contexts and block status.
func TestNbdinfo(t *testing.T) {
	testutil.RequireTool(t, "nbdinfo")
	for _, network := range []string{"tcp", "unix"} {
		t.Run(network, func(t *testing.T) {
			e := toolEnv(t, network)
			var list struct {
				Protocol string           `json:"protocol"`
				Exports  []map[string]any `json:"exports"`
			}
			if err := json.Unmarshal([]byte(run(t, nil, "nbdinfo", "--list", "--json", e.uri(""))), &list); err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, x := range list.Exports {
				names = append(names, x["export-name"].(string))
			}
			slices.Sort(names)
			if list.Protocol != "newstyle-fixed" || !slices.Equal(names, []string{"", "plain", "ro"}) {
				t.Fatalf("nbdinfo --list: protocol %q exports %q", list.Protocol, names)
			}

			var info struct {
				Structured bool             `json:"structured"`
				Exports    []map[string]any `json:"exports"`
			}
			if err := json.Unmarshal([]byte(run(t, nil, "nbdinfo", "--json", e.uri(""))), &info); err != nil {
				t.Fatal(err)
			}
			if !info.Structured || len(info.Exports) != 1 {
				t.Fatalf("nbdinfo --json: %+v", info)
			}
			x := info.Exports[0]
			want := map[string]any{
				"export-size": float64(defaultSize), "description": "default test export", "is_read_only": false,
				"can_flush": true, "can_fua": true, "can_trim": true, "can_zero": true, "can_fast_zero": true,
				"can_multi_conn": true, "can_cache": true,
			}
			for k, v := range want {
				if x[k] != v {
					t.Errorf("nbdinfo --json %s = %v, want %v", k, x[k], v)
				}
			}
			if ctx, _ := x["contexts"].([]any); !slices.Contains(ctx, any("base:allocation")) {
				t.Errorf("contexts %v lack base:allocation", x["contexts"])
			}
			// The two oracles must agree on block sizes and flags.
			own := e.dial(defaultOpts()).Export()
			for k, v := range map[string]uint32{"block_size_minimum": own.MinBlock, "block_size_preferred": own.PrefBlock, "block_size_maximum": own.MaxBlock} {
				if got, ok := x[k].(float64); !ok || uint32(got) != v {
					t.Errorf("nbdinfo --json %s = %v, nbdtest saw %d", k, x[k], v)
				}
			}
			if x["can_df"] != own.Has(nbdtest.TFlagSendDF) || x["is_rotational"] != own.Has(nbdtest.TFlagRotational) {
				t.Errorf("nbdinfo can_df/is_rotational %v/%v, nbdtest flags %#x", x["can_df"], x["is_rotational"], own.Flags)
			}

			if err := json.Unmarshal([]byte(run(t, nil, "nbdinfo", "--json", e.uri("ro"))), &info); err != nil {
				t.Fatal(err)
			}
			if x := info.Exports[0]; x["is_read_only"] != true || x["export-size"] != float64(1<<20) {
				t.Errorf("read-only export: %v", x)
			}

			// --map: write 1 MiB at 4 MiB, and expect data there and
			// hole/zero around it.
			c := e.dial(defaultOpts())
			if _, err := c.WriteAt(pattern(3, 1<<20), 4<<20); err != nil {
				t.Fatal(err)
			}
			m := parseMap(t, run(t, nil, "nbdinfo", "--map", e.uri("")))
			var end int64
			for _, r := range m {
				if r.off != end {
					t.Fatalf("map not contiguous at %d: %+v", end, m)
				}
				end = r.off + r.len
			}
			if end != defaultSize {
				t.Fatalf("map covers %d bytes, want %d", end, defaultSize)
			}
			if typ := m.at(4<<20 + 1000); typ&3 != 0 {
				t.Errorf("written range mapped as type %d, want data (0): %+v", typ, m)
			}
			if typ := m.at(32 << 20); typ&2 == 0 {
				t.Errorf("never-written range mapped as type %d, want zero bit: %+v", typ, m)
			}
		})
	}
}

type mapEntry struct {
	off, len int64
	typ      int
}

type extentMap []mapEntry

func (m extentMap) at(off int64) int {
	for _, r := range m {
		if off >= r.off && off < r.off+r.len {
			return r.typ
		}
	}
	return -1
}

// parseMap parses `nbdinfo --map` lines: offset length type description.
func parseMap(t *testing.T, out string) extentMap {
	t.Helper()
	var m extentMap
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 3 {
			continue
		}
		off, err1 := strconv.ParseInt(f[0], 10, 64)
		n, err2 := strconv.ParseInt(f[1], 10, 64)
		typ, err3 := strconv.Atoi(f[2])
		if err1 != nil || err2 != nil || err3 != nil {
			t.Fatalf("bad --map line %q", sc.Text())
		}
		m = append(m, mapEntry{off, n, typ})
	}
	return m
}

// nbdshEnv returns the environment for nbdsh: the Debian nbdsh runs
// "python3 -m nbd", so the system python must come first in PATH.
func nbdshEnv(e *env) []string {
	return []string{
		"PATH=/usr/bin:/bin:" + os.Getenv("PATH"),
		"NBD_URI=" + e.uri(""), "NBD_URI_RO=" + e.uri("ro"), "NBD_URI_PLAIN=" + e.uri("plain"),
	}
}

// TestNbdsh runs the python3-libnbd scripts in testdata.
func TestNbdsh(t *testing.T) {
	testutil.RequireTool(t, "nbdsh")
	e := toolEnv(t, "tcp")
	u := toolEnv(t, "unix")
	for _, script := range []string{"nbdsh_options.py", "nbdsh_errors.py", "nbdsh_meta.py"} {
		t.Run(script, func(t *testing.T) {
			path, err := filepath.Abs(filepath.Join("testdata", script))
			if err != nil {
				t.Fatal(err)
			}
			code := fmt.Sprintf("exec(open(%q).read())", path)
			for _, x := range []*env{e, u} {
				out := run(t, nbdshEnv(x), "nbdsh", "-c", code)
				if !strings.Contains(out, ": ok") {
					t.Fatalf("%s over %s: no ok line:\n%s", script, x.Network, out)
				}
			}
		})
	}
}

// randomImage writes a 64 MiB image of random 1 MiB blocks separated by
// zero blocks, and returns its path and sha256.
func randomImage(t *testing.T) (string, [32]byte) {
	t.Helper()
	img := make([]byte, defaultSize)
	for off := 0; off < len(img); off += 3 << 20 {
		if _, err := rand.Read(img[off : off+1<<20]); err != nil {
			t.Fatal(err)
		}
	}
	copy(img[len(img)-512:], "tail marker")
	path := filepath.Join(t.TempDir(), "src.img")
	if err := os.WriteFile(path, img, 0o600); err != nil {
		t.Fatal(err)
	}
	return path, sha256.Sum256(img)
}

func fileSum(t *testing.T, path string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

// TestNbdcopy copies a random image in and out with nbdcopy (several
// connections and requests in flight) and compares checksums.
func TestNbdcopy(t *testing.T) {
	testutil.RequireTool(t, "nbdcopy")
	for _, network := range []string{"tcp", "unix"} {
		t.Run(network, func(t *testing.T) {
			e := toolEnv(t, network)
			src, sum := randomImage(t)
			run(t, nil, "nbdcopy", "--connections=4", "--requests=16", src, e.uri(""))
			dst := filepath.Join(t.TempDir(), "dst.img")
			run(t, nil, "nbdcopy", "--connections=2", e.uri(""), dst)
			if got := fileSum(t, dst); got != sum {
				t.Fatalf("nbdcopy round trip: sha256 %x, want %x", got, sum)
			}
			// Export to export, then compare with our own client.
			c := e.dial(defaultOpts())
			buf := make([]byte, 1<<20)
			if _, err := c.ReadAt(buf, defaultSize-1<<20); err != nil {
				t.Fatal(err)
			}
			if !bytes.HasPrefix(buf[len(buf)-512:], []byte("tail marker")) {
				t.Fatalf("tail marker missing through nbdtest client")
			}
		})
	}
}

// TestQemuImg: qemu-img convert into the export, compare, convert back.
func TestQemuImg(t *testing.T) {
	testutil.RequireTool(t, "qemu-img")
	e := toolEnv(t, "tcp")
	src, sum := randomImage(t)
	out := run(t, nil, "qemu-img", "info", "--output=json", "-f", "raw", e.uri(""))
	var info struct {
		VirtualSize int64 `json:"virtual-size"`
	}
	if err := json.Unmarshal([]byte(out), &info); err != nil || info.VirtualSize != defaultSize {
		t.Fatalf("qemu-img info: %v %s", err, out)
	}
	run(t, nil, "qemu-img", "convert", "-n", "-f", "raw", "-O", "raw", src, e.uri(""))
	run(t, nil, "qemu-img", "compare", "-f", "raw", "-F", "raw", src, e.uri(""))
	dst := filepath.Join(t.TempDir(), "dst.img")
	run(t, nil, "qemu-img", "convert", "-f", "raw", "-O", "raw", e.uri(""), dst)
	if got := fileSum(t, dst); got != sum {
		t.Fatalf("qemu-img round trip: sha256 %x, want %x", got, sum)
	}
	// A changed byte must make compare fail (the oracle itself works).
	c := e.dial(defaultOpts())
	if _, err := c.WriteAt([]byte{0xff}, 5<<20+7); err != nil {
		t.Fatal(err)
	}
	if out, err := runErr(t, nil, "qemu-img", "compare", "-f", "raw", "-F", "raw", src, e.uri("")); err == nil {
		t.Fatalf("qemu-img compare missed a changed byte:\n%s", out)
	}
}

// TestQemuIo runs qemu-io pattern writes, reads, zeroes and discards.
func TestQemuIo(t *testing.T) {
	testutil.RequireTool(t, "qemu-io")
	for _, network := range []string{"tcp", "unix"} {
		t.Run(network, func(t *testing.T) {
			e := toolEnv(t, network)
			out := run(t, nil, "qemu-io", "-f", "raw", e.uri(""),
				"-c", "write -P 0xab 0 1M",
				"-c", "read -P 0xab 0 1M",
				"-c", "write -f -P 0xcd 1M 1M", // -f: FUA
				"-c", "read -P 0xcd 1M 1M",
				"-c", "flush",
				"-c", "write -z 512k 64k",
				"-c", "read -P 0 512k 64k",
				"-c", "read -P 0xab 0 512k",
				"-c", "discard 1M 512k",
				"-c", "read -P 0xcd 1536k 512k",
				"-c", "aio_write -P 0x11 8M 64k",
				"-c", "aio_write -P 0x22 9M 64k",
				"-c", "aio_flush",
				"-c", "read -P 0x11 8M 64k",
				"-c", "read -P 0x22 9M 64k",
				"-c", "write -P 0x33 1000 3000",
				"-c", "read -P 0x33 1000 3000",
			)
			for _, bad := range []string{"Pattern verification failed", "failed", "error"} {
				if strings.Contains(strings.ToLower(out), strings.ToLower(bad)) {
					t.Fatalf("qemu-io: %q in output:\n%s", bad, out)
				}
			}
			if n := strings.Count(out, "read "); n < 8 {
				t.Fatalf("qemu-io ran %d reads, want 8:\n%s", n, out)
			}
			c := e.dial(defaultOpts())
			got := make([]byte, 64<<10)
			if _, err := c.ReadAt(got, 9<<20); err != nil || !bytes.Equal(got, bytes.Repeat([]byte{0x22}, 64<<10)) {
				t.Fatalf("qemu-io data not visible to nbdtest client: %v", err)
			}
		})
	}
}

// TestFio runs fio's nbd engine with random writes and crc32c verify.
func TestFio(t *testing.T) {
	testutil.RequireTool(t, "fio")
	e := toolEnv(t, "tcp")
	out := run(t, nil, "fio", "--name=verify", "--ioengine=nbd", "--uri="+e.uri(""),
		"--rw=randwrite", "--bs=4k", "--size=16m", "--iodepth=16", "--verify=crc32c",
		"--do_verify=1", "--verify_fatal=1", "--verify_state_save=0", "--output-format=json")
	var res struct {
		Jobs []struct {
			Error int `json:"error"`
			Write struct {
				IOBytes int64 `json:"io_bytes"`
			} `json:"write"`
			Read struct {
				IOBytes int64 `json:"io_bytes"`
			} `json:"read"`
		} `json:"jobs"`
	}
	i := strings.Index(out, "{")
	if i < 0 || json.Unmarshal([]byte(out[i:]), &res) != nil || len(res.Jobs) != 1 {
		t.Fatalf("fio output:\n%s", out)
	}
	j := res.Jobs[0]
	if j.Error != 0 || j.Write.IOBytes != 16<<20 || j.Read.IOBytes != 16<<20 {
		t.Fatalf("fio: error %d, wrote %d, verified %d bytes; want 16 MiB each", j.Error, j.Write.IOBytes, j.Read.IOBytes)
	}
}
