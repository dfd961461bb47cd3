package nbdserver

import (
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/extentd/extentd/device"
)

// Server serves NBD exports.
//
// # Lifecycle
//
// New validates Options; Serve accepts connections on a listener until
// Shutdown; ServeConn serves one connection accepted elsewhere. Shutdown
// stops accepting, answers new requests with ESHUTDOWN, waits for requests
// in flight, then closes connections. The caller flushes and closes the
// devices afterwards.
//
// # Concurrency
//
// All methods are safe for concurrent use.
type Server struct {
	opts    Options
	log     *zap.Logger
	exports []*export
	pools   bufPools

	nextConnID   atomic.Uint64
	shuttingDown atomic.Bool
	conns        sync.WaitGroup // one per connection goroutine
	shutdownCh   chan struct{}  // closed when Shutdown starts

	mu sync.Mutex // guards the following
	// +checklocks:mu
	listeners map[net.Listener]struct{}
	// +checklocks:mu
	active map[*conn]struct{}
	// +checklocks:mu
	closed bool
}

// export is an Export with its capabilities found once.
type export struct {
	Export
	size       int64
	trimmer    device.Trimmer
	zeroer     device.Zeroer
	fastZero   bool
	extenter   device.Extenter
	syncer     device.RangeSyncer
	prefetcher device.Prefetcher
	nowaiter   device.NoWaiter // nil: requests always go to a worker (or the QD1 write path)
	idler      device.Idler    // nil: nothing to do while waiting for a client
}

func newExport(e Export) *export {
	x := &export{Export: e, size: e.Device.Size()}
	if !e.ReadOnly {
		x.trimmer, _ = e.Device.(device.Trimmer)
		x.zeroer, _ = e.Device.(device.Zeroer)
		if fz, ok := e.Device.(device.FastZeroer); ok {
			x.fastZero = fz.FastZero()
		}
	}
	x.extenter, _ = e.Device.(device.Extenter)
	x.syncer, _ = e.Device.(device.RangeSyncer)
	x.prefetcher, _ = e.Device.(device.Prefetcher)
	x.nowaiter, _ = e.Device.(device.NoWaiter)
	x.idler, _ = e.Device.(device.Idler)
	return x
}

// transmissionFlags returns the flags advertised for this export on a
// connection that did (structured) or did not negotiate structured replies
// or extended headers.
func (x *export) transmissionFlags(structured bool) uint16 {
	// SEND_FLUSH and SEND_FUA always go together: without both the Linux
	// client reports no write cache and never flushes.
	f := uint16(tflagHasFlags | tflagSendFlush | tflagSendFUA | tflagSendCache)
	if x.ReadOnly {
		f |= tflagReadOnly
	}
	if x.trimmer != nil {
		f |= tflagSendTrim
	}
	if x.zeroer != nil {
		f |= tflagSendWriteZeroes
		if x.fastZero {
			f |= tflagSendFastZero
		}
	}
	if structured {
		f |= tflagSendDF
	}
	if x.MultiConn {
		f |= tflagCanMultiConn
	}
	return f
}

// New returns a Server for opts after applying defaults and validating.
func New(opts Options) (*Server, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	opts.EnsureDefaults()
	s := &Server{
		opts:       opts,
		log:        opts.Logger.Named("nbdserver"),
		shutdownCh: make(chan struct{}),
		listeners:  make(map[net.Listener]struct{}),
		active:     make(map[*conn]struct{}),
	}
	for _, e := range opts.Exports {
		s.exports = append(s.exports, newExport(e))
	}
	s.pools.init()
	return s, nil
}

// lookup returns the export for name; "" falls back to the first export.
func (s *Server) lookup(name string) *export {
	for _, x := range s.exports {
		if x.Name == name {
			return x
		}
	}
	if name == "" {
		return s.exports[0]
	}
	return nil
}

// Serve accepts connections on l until Shutdown, then returns
// ErrServerClosed. It closes l when it returns. Serve may be called for
// several listeners at once.
func (s *Server) Serve(l net.Listener) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		l.Close()
		return ErrServerClosed
	}
	s.listeners[l] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, l)
		s.mu.Unlock()
		l.Close()
	}()
	s.log.Info("serving", zap.String("addr", l.Addr().String()))
	var backoff time.Duration
	for {
		nc, err := l.Accept()
		if err != nil {
			if s.shuttingDown.Load() {
				return ErrServerClosed
			}
			if retryableAccept(err) {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				s.log.Warn("accept failed; retrying", zap.Error(err), zap.Duration("backoff", backoff))
				time.Sleep(backoff)
				continue
			}
			return err
		}
		backoff = 0
		if !s.track(nil) {
			nc.Close()
			return ErrServerClosed
		}
		go func() {
			defer s.conns.Done()
			s.serve(context.Background(), nc)
		}()
	}
}

// retryableAccept reports whether an Accept error is transient (too many
// open files, a connection aborted before accept, a timeout): Serve backs
// off and goes on instead of returning.
func retryableAccept(err error) bool {
	switch {
	case errors.Is(err, syscall.EMFILE), errors.Is(err, syscall.ENFILE),
		errors.Is(err, syscall.ECONNABORTED), errors.Is(err, syscall.ENOBUFS),
		errors.Is(err, syscall.ENOMEM):
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// track registers one more connection goroutine with s.conns unless the
// server is closed. c may be nil.
func (s *Server) track(c *conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.conns.Add(1)
	return true
}

// ServeConn serves one already-accepted connection and returns when it ends.
// Cancelling ctx drops the connection. The connection is closed on return.
func (s *Server) ServeConn(ctx context.Context, nc net.Conn) {
	if !s.track(nil) {
		nc.Close()
		return
	}
	defer s.conns.Done()
	s.serve(ctx, nc)
}

func (s *Server) serve(ctx context.Context, nc net.Conn) {
	c := newConn(s, nc)
	s.mu.Lock()
	s.active[c] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.active, c)
		s.mu.Unlock()
	}()
	stop := context.AfterFunc(ctx, c.kill)
	defer stop()
	c.run()
}

// Shutdown stops accepting connections, answers new requests with
// ESHUTDOWN, waits for requests in flight to be answered and closes every
// connection. If ctx ends first, connections are dropped at once and
// ctx.Err() is returned.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	if !s.closed {
		s.closed = true
		s.shuttingDown.Store(true)
		close(s.shutdownCh)
		for l := range s.listeners {
			l.Close()
		}
	}
	s.mu.Unlock()
	s.log.Info("shutting down")

	done := make(chan struct{})
	go func() {
		s.conns.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		s.mu.Lock()
		for c := range s.active {
			c.kill()
		}
		s.mu.Unlock()
		// Workers blocked in device I/O finish on their own; their
		// replies go nowhere.
		return ctx.Err()
	}
}
