package nbdserver

import (
	"context"
	"net"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"
)

type event struct {
	kind  string
	cmd   Command
	bytes int64
	errno Errno
}

type recordingObserver struct {
	mu     sync.Mutex // guards events
	events []event
}

func (o *recordingObserver) add(e event) {
	o.mu.Lock()
	o.events = append(o.events, e)
	o.mu.Unlock()
}

func (o *recordingObserver) ConnOpened(export string) { o.add(event{kind: "open:" + export}) }
func (o *recordingObserver) ConnClosed(export string) { o.add(event{kind: "close:" + export}) }
func (o *recordingObserver) Request(cmd Command, bytes int64, d time.Duration, errno Errno) {
	if d < 0 {
		panic("negative duration")
	}
	o.add(event{kind: "req", cmd: cmd, bytes: bytes, errno: errno})
}

func (o *recordingObserver) snapshot() []event {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]event(nil), o.events...)
}

func TestObserver(t *testing.T) {
	obs := &recordingObserver{}
	s := newTestServer(t, Options{Observer: obs})
	rc := pipeClient(t, s)
	rc.open("ro", false, false, false)
	rc.do(requestHeader{cmd: CmdRead, cookie: 1, length: 4096}, nil)
	rc.do(requestHeader{cmd: CmdWrite, cookie: 2, length: 4}, []byte("nope"))
	rc.send(requestHeader{cmd: CmdDisc}, nil)
	if !rc.closed() {
		t.Fatal("not closed after DISC")
	}
	want := []event{
		{kind: "open:ro"},
		{kind: "req", cmd: CmdRead, bytes: 4096},
		{kind: "req", cmd: CmdWrite, bytes: 4, errno: EPERM},
		{kind: "close:ro"},
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(obs.snapshot()) < len(want) && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	got := obs.snapshot()
	if len(got) != len(want) {
		t.Fatalf("events %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("event %d = %+v, want %+v", i, got[i], want[i])
		}
	}
}

// TestServeConnContext checks that cancelling ServeConn's context drops
// the connection.
func TestServeConnContext(t *testing.T) {
	s := newTestServer(t, Options{})
	cs, cc := net.Pipe()
	defer cc.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.ServeConn(ctx, cs)
	}()
	rc := newRawClient(t, cc)
	rc.open("", false, false, false)
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("ServeConn ignored context cancellation")
	}
}

// TestShutdownIdleAndHandshake checks that Shutdown ends idle connections
// and connections still in the handshake, and refuses ServeConn afterwards.
func TestShutdownIdleAndHandshake(t *testing.T) {
	s, addr := startServer(t, Options{Exports: memExports(1 << 20)})
	idle := dialRaw(t, addr)
	idle.open("", false, false, false)
	hs := dialRaw(t, addr)
	hs.greet(cflagFixedNewstyle)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if !idle.closed() || !hs.closed() {
		t.Fatal("connections survived Shutdown")
	}
	cs, cc := net.Pipe()
	defer cc.Close()
	s.ServeConn(context.Background(), cs) // returns at once
	if _, err := cc.Write([]byte{0}); err == nil {
		t.Fatal("ServeConn after Shutdown kept the connection")
	}
}

// flakyListener fails Accept with EMFILE a few times before delegating.
type flakyListener struct {
	net.Listener
	fails int
}

func (l *flakyListener) Accept() (net.Conn, error) {
	if l.fails > 0 {
		l.fails--
		return nil, &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.EMFILE)}
	}
	return l.Listener.Accept()
}

func TestServeRetriesTransientAcceptErrors(t *testing.T) {
	s := newTestServer(t, Options{})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(&flakyListener{Listener: l, fails: 3}) }()
	rc := dialRaw(t, l.Addr().String())
	rc.open("", false, false, false)
	if errno, _, _ := rc.do(requestHeader{cmd: CmdFlush, cookie: 1}, nil); errno != 0 {
		t.Fatalf("flush: %v", errno)
	}
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := <-served; err != ErrServerClosed {
		t.Fatalf("Serve: %v", err)
	}
}
