package integration

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/extentd/extentd/internal/testutil"
	"github.com/extentd/extentd/nbdserver/nbdtest"
)

// bins holds the binaries TestMain built: "extentd" and "brokenserver".
var bins = map[string]string{}

// buildErr is set when TestMain could not build; every test then fails.
var buildErr error

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "extentd-integ-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	for name, pkg := range map[string]string{
		"extentd":      "github.com/extentd/extentd/cmd/extentd",
		"brokenserver": "github.com/extentd/extentd/test/brokenserver",
	} {
		out := filepath.Join(dir, name)
		cmd := exec.Command("go", "build", "-o", out, pkg)
		if b, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build %s: %v\n%s", pkg, err, b)
			break
		}
		bins[name] = out
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// serverKind says how to start one NBD server on an image.
type serverKind struct {
	name string
	// args returns the command line; addrFile is where a server that
	// supports it writes "nbd URI" once listening, port is a free port
	// for one that does not.
	args func(image, addrFile string, port int, size int64) []string
	// exitZero: a clean stop (SIGTERM) must exit 0.
	exitZero bool
	// stopsUnderClients: SIGTERM ends the server while clients stay
	// connected (nbdkit instead waits for them to disconnect).
	stopsUnderClients bool
}

var (
	extentdServer = serverKind{
		name: "extentd",
		args: func(image, addrFile string, _ int, size int64) []string {
			return []string{bins["extentd"], "serve", image, "-i", "127.0.0.1", "-p", "0",
				"--size", strconv.FormatInt(size, 10), "--admin-address", "", "--addr-file", addrFile}
		},
		exitZero:          true,
		stopsUnderClients: true,
	}
	nbdkitServer = serverKind{
		name: "nbdkit",
		args: func(image, _ string, port int, _ int64) []string {
			return []string{"nbdkit", "-f", "-i", "127.0.0.1", "-p", strconv.Itoa(port), "file", image}
		},
	}
)

// brokenServer is test/brokenserver in one of its modes.
func brokenServer(mode string) serverKind {
	return serverKind{
		name: "brokenserver-" + mode,
		args: func(image, addrFile string, _ int, size int64) []string {
			return []string{bins["brokenserver"], "-mode", mode, "-addr-file", addrFile,
				"-size", strconv.FormatInt(size, 10), image}
		},
		exitZero:          true,
		stopsUnderClients: true,
	}
}

// serverUnderTest is extentd, or nbdkit when EXTENTD_INTEG_SERVER=nbdkit
// (a reference run showing the tests pass against a known-good server).
func serverUnderTest(t testing.TB) serverKind {
	t.Helper()
	switch s := os.Getenv("EXTENTD_INTEG_SERVER"); s {
	case "", "extentd":
		return extentdServer
	case "nbdkit":
		testutil.RequireTool(t, "nbdkit")
		return nbdkitServer
	case "brokenserver-noflush", "brokenserver-dropdirty", "brokenserver-ok":
		// Used by broken_test.go to show a whole test fails against them.
		return brokenServer(strings.TrimPrefix(s, "brokenserver-"))
	default:
		t.Fatalf("EXTENTD_INTEG_SERVER=%q: want extentd, nbdkit or brokenserver-{noflush,dropdirty,ok}", s)
		return serverKind{}
	}
}

// server is one running server process.
type server struct {
	t     testing.TB
	kind  serverKind
	image string
	size  int64
	cmd   *exec.Cmd
	addr  string // host:port
	done  chan struct{}
	err   error // Wait's result, valid after done is closed
	logf  string
	runs  int
}

// startServer starts kind on image (created with size if missing) and
// waits until it accepts connections. The process is killed at cleanup if
// it still runs.
func startServer(t testing.TB, kind serverKind, image string, size int64) *server {
	t.Helper()
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	s := &server{t: t, kind: kind, image: image, size: size}
	t.Cleanup(func() {
		if s.running() {
			s.cmd.Process.Kill()
			<-s.done
		}
	})
	s.start()
	return s
}

func (s *server) running() bool {
	if s.cmd == nil {
		return false
	}
	select {
	case <-s.done:
		return false
	default:
		return true
	}
}

// start (re)starts the process on the same image.
func (s *server) start() {
	t := s.t
	t.Helper()
	if s.running() {
		t.Fatalf("%s: already running", s.kind.name)
	}
	if s.kind.name == "nbdkit" {
		if _, err := os.Stat(s.image); errors.Is(err, os.ErrNotExist) {
			if err := os.Truncate(createFile(t, s.image), s.size); err != nil {
				t.Fatal(err)
			}
		}
	}
	s.runs++
	dir := filepath.Dir(s.image)
	addrFile := filepath.Join(dir, fmt.Sprintf("addr.%d", s.runs))
	s.logf = filepath.Join(dir, fmt.Sprintf("server.%d.log", s.runs))
	port := freePort(t)
	argv := s.kind.args(s.image, addrFile, port, s.size)
	logf, err := os.Create(s.logf)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	s.cmd = exec.Command(argv[0], argv[1:]...)
	s.cmd.Stdout, s.cmd.Stderr = logf, logf
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s.done = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) {
		s.err = cmd.Wait()
		close(done)
	}(s.cmd, s.done)
	deadline := time.Now().Add(20 * time.Second)
	for {
		if s.kind.name == "nbdkit" {
			s.addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		} else if b, err := os.ReadFile(addrFile); err == nil {
			for _, line := range strings.Split(string(b), "\n") {
				if u, ok := strings.CutPrefix(line, "nbd nbd://"); ok {
					s.addr = strings.TrimSuffix(u, "/")
					break
				}
			}
		}
		if s.addr != "" {
			if c, err := net.DialTimeout("tcp", s.addr, time.Second); err == nil {
				c.Close()
				return
			}
		}
		if !s.running() {
			t.Fatalf("%s exited at start: %v\n%s", s.kind.name, s.err, s.log())
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not start listening in 20s\n%s", s.kind.name, s.log())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func createFile(t testing.TB, path string) string {
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	return path
}

// log returns the current run's server output.
func (s *server) log() string {
	b, _ := os.ReadFile(s.logf)
	return string(b)
}

// uri is the NBD URI of the default export.
func (s *server) uri() string { return "nbd://" + s.addr + "/" }

// stop sends SIGTERM and waits for the exit; a server that must exit 0
// and did not is an error.
func (s *server) stop() error {
	s.t.Helper()
	if !s.running() {
		return fmt.Errorf("%s: not running (exit %v)", s.kind.name, s.err)
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(60 * time.Second):
		s.cmd.Process.Kill()
		<-s.done
		return fmt.Errorf("%s: no exit within 60s of SIGTERM\n%s", s.kind.name, s.log())
	}
	if s.err != nil && s.kind.exitZero {
		return fmt.Errorf("%s: SIGTERM: %v\n%s", s.kind.name, s.err, s.log())
	}
	return nil
}

// kill sends SIGKILL and waits for the process to go.
func (s *server) kill() {
	if s.running() {
		s.cmd.Process.Kill()
		<-s.done
	}
}

// restart stops the server cleanly (SIGTERM) and starts it again.
func (s *server) restart() {
	s.t.Helper()
	if err := s.stop(); err != nil {
		s.t.Fatal(err)
	}
	s.start()
}

// dial opens an in-process NBD client (nbdserver/nbdtest) to the server.
func (s *server) dial(t testing.TB) *nbdtest.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := nbdtest.Dial(ctx, "tcp", s.addr, nbdtest.Options{})
	if err != nil {
		t.Fatalf("dial %s: %v", s.kind.name, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func freePort(t testing.TB) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// runCmd runs a tool with a timeout and returns its combined output;
// failure is an error carrying that output.
func runCmd(timeout time.Duration, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// mustRun is runCmd that fails the test.
func mustRun(t testing.TB, timeout time.Duration, name string, args ...string) string {
	t.Helper()
	out, err := runCmd(timeout, name, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}
