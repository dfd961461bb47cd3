package sdactivation

import (
	"errors"
	"net"
	"os"
	"strconv"
	"syscall"
	"testing"
)

// passListener returns a raw duplicate descriptor of l's socket, as systemd
// would pass it. Ownership passes to ListenersFrom, which closes it.
func passListener(t *testing.T, l net.Listener) int {
	t.Helper()
	f, err := l.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fd, err := syscall.Dup(int(f.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	return fd
}

func envFrom(vars map[string]string, pid, first int) Env {
	return Env{
		Getenv:   func(k string) string { return vars[k] },
		Unsetenv: func(k string) error { delete(vars, k); return nil },
		Pid:      pid,
		FirstFD:  first,
	}
}

func TestListenersNotActivated(t *testing.T) {
	ls, err := ListenersFrom(envFrom(map[string]string{}, 42, FirstFD))
	if err != nil || ls != nil {
		t.Fatalf("ListenersFrom(no env) = %v, %v; want nil, nil", ls, err)
	}
}

func TestListenersOtherPid(t *testing.T) {
	vars := map[string]string{"LISTEN_FDS": "1", "LISTEN_PID": "41"}
	ls, err := ListenersFrom(envFrom(vars, 42, FirstFD))
	if err != nil || ls != nil {
		t.Fatalf("ListenersFrom(other pid) = %v, %v; want nil, nil", ls, err)
	}
	if len(vars) != 0 {
		t.Errorf("variables not unset: %v", vars)
	}
}

func TestListenersBadEnv(t *testing.T) {
	for _, vars := range []map[string]string{
		{"LISTEN_FDS": "x", "LISTEN_PID": "42"},
		{"LISTEN_FDS": "1", "LISTEN_PID": "forty-two"},
		{"LISTEN_FDS": "-1", "LISTEN_PID": "42"},
	} {
		_, err := ListenersFrom(envFrom(vars, 42, FirstFD))
		if !errors.Is(err, ErrBadEnvironment) {
			t.Errorf("ListenersFrom(%v) error = %v, want ErrBadEnvironment", vars, err)
		}
	}
}

func TestListenersNotASocket(t *testing.T) {
	f, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fd, err := syscall.Dup(int(f.Fd())) // ListenersFrom takes ownership
	if err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{"LISTEN_FDS": "1", "LISTEN_PID": "42"}
	_, err = ListenersFrom(envFrom(vars, 42, fd))
	if !errors.Is(err, ErrBadEnvironment) {
		t.Fatalf("ListenersFrom(/dev/null fd) error = %v, want ErrBadEnvironment", err)
	}
}

func TestListenersAccept(t *testing.T) {
	orig, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer orig.Close()
	fd := passListener(t, orig)
	vars := map[string]string{"LISTEN_FDS": "1", "LISTEN_PID": strconv.Itoa(42), "LISTEN_FDNAMES": "nbd"}
	ls, err := ListenersFrom(envFrom(vars, 42, fd))
	if err != nil {
		t.Fatal(err)
	}
	if len(ls) != 1 || ls[0].Name != "nbd" {
		t.Fatalf("got %d listeners %+v, want one named nbd", len(ls), ls)
	}
	defer ls[0].Close()
	if got, want := ls[0].Addr().String(), orig.Addr().String(); got != want {
		t.Fatalf("activated listener address %s, want %s", got, want)
	}
	orig.Close() // the activated duplicate must keep working on its own
	done := make(chan error, 1)
	go func() {
		c, err := ls[0].Accept()
		if err == nil {
			_, err = c.Write([]byte("ok"))
			c.Close()
		}
		done <- err
	}()
	c, err := net.Dial("tcp", ls[0].Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, 2)
	if _, err := c.Read(buf); err != nil || string(buf) != "ok" {
		t.Fatalf("read %q, %v", buf, err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if len(vars) != 0 {
		t.Errorf("variables not unset: %v", vars)
	}
}
