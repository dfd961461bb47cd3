package nbdtest

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"time"
)

// Request is one transmission request. The Client copies its fields to the
// wire as given: it never checks flags or ranges against the export, so
// tests can send requests a polite client would not.
type Request struct {
	Type   uint16 // NBD_CMD_*
	Flags  uint16 // NBD_CMD_FLAG_*
	Cookie uint64 // 0: the Client assigns a unique cookie
	Offset uint64
	// Length is the request length. For NBD_CMD_WRITE the Client sets it
	// to len(Payload), and under extended headers also sets
	// NBD_CMD_FLAG_PAYLOAD_LEN, which the spec requires there.
	Length uint64
	// Payload follows the header (NBD_CMD_WRITE data, or a BLOCK_STATUS
	// payload with NBD_CMD_FLAG_PAYLOAD_LEN under extended headers).
	Payload []byte
}

// Chunk records one reply message received for a call, for tests that
// check how the server chose to answer (hole chunks, DONE placement ...).
type Chunk struct {
	Simple bool   // a simple reply (no type)
	Flags  uint16 // NBD_REPLY_FLAG_*
	Type   uint16 // NBD_REPLY_TYPE_*
	Offset uint64 // content chunk offset, or the extended header's offset
	Length uint64 // bytes the chunk describes (data or hole size)
}

// Extent is one block status descriptor.
type Extent struct {
	Length uint64
	Flags  uint64 // NBD_STATE_* for base:allocation
}

// Call is one request in flight. Done is closed when the reply is
// complete; then Err, Data and Extents are valid.
type Call struct {
	Req  Request
	Done chan struct{}
	// Err is nil, an *Error (server error reply), or a connection error
	// wrapping ErrClosed and possibly ErrProtocol.
	Err error
	// Data holds the bytes read by NBD_CMD_READ (len = Req.Length).
	Data []byte
	// Extents holds BLOCK_STATUS descriptors by context id.
	Extents map[uint32][]Extent
	// Chunks lists every reply message received for the call, in order.
	Chunks []Chunk

	covered  [][2]uint64 // content chunks of a structured READ, [start, end)
	replyErr *Error      // first error chunk
}

// Wait blocks until the call completes or timeout elapses (0: forever).
func (c *Call) Wait(timeout time.Duration) error {
	if timeout <= 0 {
		<-c.Done
		return c.Err
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-c.Done:
		return c.Err
	case <-t.C:
		return fmt.Errorf("nbdtest: %s cookie %d: no reply after %v", CmdName(c.Req.Type), c.Req.Cookie, timeout)
	}
}

// Client is an asynchronous NBD transmission-phase client. Any number of
// goroutines may submit requests at once; replies are matched to calls by
// cookie, in whatever order the server sends them. Replies are validated
// strictly against the spec; a violation fails the connection with
// ErrProtocol (see Err).
type Client struct {
	conn       net.Conn
	r          *bufio.Reader
	info       ExportInfo
	structured bool
	extended   bool
	contexts   map[uint32]string
	// Timeout bounds the synchronous helpers' wait for a reply.
	Timeout time.Duration

	writeMu sync.Mutex // guards the following
	w       *bufio.Writer

	mu         sync.Mutex // guards the following
	pending    map[uint64]*Call
	nextCookie uint64
	err        error // fatal connection error, once set
	closing    bool

	readerDone chan struct{}
}

func newClient(h *Handshake) *Client {
	c := &Client{
		conn: h.conn, r: h.r, info: h.info,
		structured: h.structured, extended: h.extended, contexts: h.contexts,
		Timeout:    30 * time.Second,
		w:          bufio.NewWriterSize(h.conn, 64<<10),
		pending:    make(map[uint64]*Call),
		readerDone: make(chan struct{}),
	}
	if tc, ok := h.conn.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
	}
	go c.readLoop()
	return c
}

// Export returns what the handshake reported about the export.
func (c *Client) Export() ExportInfo { return c.info }

// Structured reports whether structured replies are in use.
func (c *Client) Structured() bool { return c.structured }

// Extended reports whether extended headers are in use.
func (c *Client) Extended() bool { return c.extended }

// Contexts returns the negotiated meta contexts by id.
func (c *Client) Contexts() map[uint32]string { return c.contexts }

// Conn returns the underlying connection.
func (c *Client) Conn() net.Conn { return c.conn }

// Err returns the error that ended the connection, or nil while it is
// healthy. After Close it is ErrClosed.
func (c *Client) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Submit sends req and returns its Call without waiting for the reply.
// NBD_CMD_DISC has no reply; its Call is complete at once.
func (c *Client) Submit(req Request) (*Call, error) {
	if req.Type == CmdWrite {
		req.Length = uint64(len(req.Payload))
		if c.extended {
			req.Flags |= CmdFlagPayloadLen
		}
	}
	if !c.extended && req.Length > 0xffffffff {
		return nil, fmt.Errorf("nbdtest: length %d needs extended headers", req.Length)
	}
	call := &Call{Req: req, Done: make(chan struct{})}
	if req.Type == CmdRead {
		if req.Length > maxReplyPayload {
			return nil, fmt.Errorf("nbdtest: read of %d bytes over client cap; use Raw", req.Length)
		}
		call.Data = make([]byte, req.Length)
	}
	c.mu.Lock()
	if c.err != nil {
		err := c.err
		c.mu.Unlock()
		return nil, err
	}
	if req.Cookie == 0 {
		for {
			c.nextCookie++
			if _, busy := c.pending[c.nextCookie]; !busy && c.nextCookie != 0 {
				break
			}
		}
		req.Cookie = c.nextCookie
		call.Req.Cookie = req.Cookie
	} else if _, busy := c.pending[req.Cookie]; busy {
		c.mu.Unlock()
		return nil, fmt.Errorf("nbdtest: cookie %d already in flight", req.Cookie)
	}
	if req.Type == CmdDisc {
		c.closing = true
	} else {
		c.pending[req.Cookie] = call
	}
	c.mu.Unlock()

	c.writeMu.Lock()
	err := writeRequest(c.w, c.extended, req)
	if err == nil {
		err = c.w.Flush()
	}
	c.writeMu.Unlock()
	if err != nil {
		err = fmt.Errorf("nbdtest: write %s: %w", CmdName(req.Type), err)
		c.fail(err)
		if req.Type == CmdDisc {
			return nil, err // never registered, so fail did not complete it
		}
		<-call.Done
		return call, call.Err
	}
	if req.Type == CmdDisc {
		close(call.Done)
	}
	return call, nil
}

// writeRequest encodes a request header and its payload.
func writeRequest(w io.Writer, extended bool, req Request) error {
	var b [extRequestLen]byte
	n := requestLen
	if extended {
		binary.BigEndian.PutUint32(b[0:], MagicExtRequest)
		binary.BigEndian.PutUint64(b[24:], req.Length)
		n = extRequestLen
	} else {
		binary.BigEndian.PutUint32(b[0:], MagicRequest)
		binary.BigEndian.PutUint32(b[24:], uint32(req.Length))
	}
	binary.BigEndian.PutUint16(b[4:], req.Flags)
	binary.BigEndian.PutUint16(b[6:], req.Type)
	binary.BigEndian.PutUint64(b[8:], req.Cookie)
	binary.BigEndian.PutUint64(b[16:], req.Offset)
	if _, err := w.Write(b[:n]); err != nil {
		return err
	}
	_, err := w.Write(req.Payload)
	return err
}

// Do submits req and waits for its reply.
func (c *Client) Do(req Request) (*Call, error) {
	call, err := c.Submit(req)
	if err != nil {
		return call, err
	}
	return call, call.Wait(c.Timeout)
}

// ReadAt reads len(p) bytes at off.
func (c *Client) ReadAt(p []byte, off int64) (int, error) {
	return c.ReadAtFlags(p, off, 0)
}

// ReadAtFlags reads len(p) bytes at off with command flags (e.g. DF).
func (c *Client) ReadAtFlags(p []byte, off int64, flags uint16) (int, error) {
	call, err := c.Do(Request{Type: CmdRead, Flags: flags, Offset: uint64(off), Length: uint64(len(p))})
	if err != nil {
		return 0, err
	}
	return copy(p, call.Data), nil
}

// WriteAt writes p at off.
func (c *Client) WriteAt(p []byte, off int64) (int, error) {
	return c.WriteAtFlags(p, off, 0)
}

// WriteAtFlags writes p at off with command flags (e.g. FUA).
func (c *Client) WriteAtFlags(p []byte, off int64, flags uint16) (int, error) {
	if _, err := c.Do(Request{Type: CmdWrite, Flags: flags, Offset: uint64(off), Payload: p}); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Flush sends NBD_CMD_FLUSH.
func (c *Client) Flush() error {
	_, err := c.Do(Request{Type: CmdFlush})
	return err
}

// Trim sends NBD_CMD_TRIM for [off, off+n) with flags.
func (c *Client) Trim(off, n int64, flags uint16) error {
	_, err := c.Do(Request{Type: CmdTrim, Flags: flags, Offset: uint64(off), Length: uint64(n)})
	return err
}

// Zero sends NBD_CMD_WRITE_ZEROES for [off, off+n) with flags (NO_HOLE,
// FAST_ZERO, FUA).
func (c *Client) Zero(off, n int64, flags uint16) error {
	_, err := c.Do(Request{Type: CmdWriteZeroes, Flags: flags, Offset: uint64(off), Length: uint64(n)})
	return err
}

// Cache sends NBD_CMD_CACHE for [off, off+n).
func (c *Client) Cache(off, n int64) error {
	_, err := c.Do(Request{Type: CmdCache, Offset: uint64(off), Length: uint64(n)})
	return err
}

// BlockStatus sends NBD_CMD_BLOCK_STATUS for [off, off+n) with flags
// (REQ_ONE) and returns the descriptors by context name.
func (c *Client) BlockStatus(off, n int64, flags uint16) (map[string][]Extent, error) {
	if len(c.contexts) == 0 {
		return nil, fmt.Errorf("nbdtest: block status without meta contexts: %w", ErrNotNegotiated)
	}
	call, err := c.Do(Request{Type: CmdBlockStatus, Flags: flags, Offset: uint64(off), Length: uint64(n)})
	if err != nil {
		return nil, err
	}
	out := make(map[string][]Extent)
	for id, ext := range call.Extents {
		out[c.contexts[id]] = ext
	}
	return out, nil
}

// Close waits (up to Timeout) for calls in flight, sends NBD_CMD_DISC and
// waits for the server to close the connection. It returns an error if
// the connection had failed or the server did not close after DISC.
func (c *Client) Close() error {
	deadline := time.Now().Add(c.Timeout)
	for {
		c.mu.Lock()
		n, failed := len(c.pending), c.err != nil
		c.mu.Unlock()
		if n == 0 || failed || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Millisecond)
	}
	prior := c.Err()
	var err error
	if prior == nil {
		_, err = c.Submit(Request{Type: CmdDisc})
		if err == nil {
			select {
			case <-c.readerDone:
			case <-time.After(c.Timeout):
				err = fmt.Errorf("nbdtest: server did not close the connection after NBD_CMD_DISC")
			}
		}
	}
	c.fail(ErrClosed)
	<-c.readerDone
	if prior != nil {
		return prior
	}
	return err
}

// fail records err as the fatal error (first one wins), closes the
// connection and fails every pending call.
func (c *Client) fail(err error) {
	c.mu.Lock()
	if c.err == nil {
		c.err = err
	}
	first := c.err
	pending := c.pending
	c.pending = make(map[uint64]*Call)
	c.mu.Unlock()
	_ = c.conn.Close()
	for _, call := range pending {
		if errors.Is(first, ErrClosed) {
			call.Err = first
		} else {
			call.Err = fmt.Errorf("%w: %w", ErrClosed, first)
		}
		close(call.Done)
	}
}

func (c *Client) readLoop() {
	defer close(c.readerDone)
	for {
		err := c.readReply()
		if err == nil {
			continue
		}
		c.mu.Lock()
		closing := c.closing
		c.mu.Unlock()
		if closing && (errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed)) {
			c.fail(ErrClosed)
		} else {
			c.fail(err)
		}
		return
	}
}

// lookup finds the pending call for cookie.
func (c *Client) lookup(cookie uint64) (*Call, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	call, ok := c.pending[cookie]
	if !ok {
		return nil, protoErrorf("reply for unknown cookie %d", cookie)
	}
	return call, nil
}

// complete removes call from pending and wakes its waiter.
func (c *Client) complete(call *Call, err error) {
	c.mu.Lock()
	delete(c.pending, call.Req.Cookie)
	c.mu.Unlock()
	call.Err = err
	close(call.Done)
}

func (c *Client) readReply() error {
	var m [4]byte
	if _, err := io.ReadFull(c.r, m[:]); err != nil {
		return err
	}
	switch magic := binary.BigEndian.Uint32(m[:]); magic {
	case MagicSimpleReply:
		var b [12]byte
		if _, err := io.ReadFull(c.r, b[:]); err != nil {
			return err
		}
		errno := Errno(binary.BigEndian.Uint32(b[0:]))
		call, err := c.lookup(binary.BigEndian.Uint64(b[4:]))
		if err != nil {
			return err
		}
		if c.extended {
			return protoErrorf("simple reply to %s with extended headers", CmdName(call.Req.Type))
		}
		if c.structured && call.Req.Type == CmdRead {
			return protoErrorf("simple reply to NBD_CMD_READ with structured replies")
		}
		call.Chunks = append(call.Chunks, Chunk{Simple: true})
		if errno != 0 {
			c.complete(call, &Error{Cmd: call.Req.Type, Cookie: call.Req.Cookie, Errno: errno})
			return nil
		}
		if call.Req.Type == CmdRead {
			if _, err := io.ReadFull(c.r, call.Data); err != nil {
				return err
			}
		}
		c.complete(call, nil)
		return nil
	case MagicStructuredRepl:
		var b [16]byte
		if _, err := io.ReadFull(c.r, b[:]); err != nil {
			return err
		}
		if !c.structured || c.extended {
			return protoErrorf("structured reply chunk without structured replies (or with extended headers)")
		}
		return c.chunk(binary.BigEndian.Uint16(b[0:]), binary.BigEndian.Uint16(b[2:]),
			binary.BigEndian.Uint64(b[4:]), 0, uint64(binary.BigEndian.Uint32(b[12:])))
	case MagicExtReply:
		var b [28]byte
		if _, err := io.ReadFull(c.r, b[:]); err != nil {
			return err
		}
		if !c.extended {
			return protoErrorf("extended reply chunk without extended headers")
		}
		return c.chunk(binary.BigEndian.Uint16(b[0:]), binary.BigEndian.Uint16(b[2:]),
			binary.BigEndian.Uint64(b[4:]), binary.BigEndian.Uint64(b[12:]), binary.BigEndian.Uint64(b[20:]))
	default:
		return protoErrorf("reply magic %#x", magic)
	}
}

// chunk handles one structured or extended reply chunk whose header has
// been read; length bytes of payload follow on the wire.
func (c *Client) chunk(flags, typ uint16, cookie, hdrOffset, length uint64) error {
	call, err := c.lookup(cookie)
	if err != nil {
		return err
	}
	req := call.Req
	name := CmdName(req.Type)
	if c.extended && hdrOffset != req.Offset {
		return protoErrorf("%s: extended reply offset %d, request offset %d", name, hdrOffset, req.Offset)
	}
	if length > maxReplyPayload+64 {
		return protoErrorf("%s: chunk type %d of %d bytes", name, typ, length)
	}
	ch := Chunk{Flags: flags, Type: typ, Offset: hdrOffset}
	switch {
	case typ == ReplyTypeNone:
		if length != 0 {
			return protoErrorf("%s: NBD_REPLY_TYPE_NONE with length %d", name, length)
		}
		if flags&ReplyFlagDone == 0 {
			return protoErrorf("%s: NBD_REPLY_TYPE_NONE without NBD_REPLY_FLAG_DONE", name)
		}
	case typ == ReplyTypeOffsetData:
		if req.Type != CmdRead {
			return protoErrorf("%s: OFFSET_DATA chunk", name)
		}
		if length < 9 {
			return protoErrorf("%s: OFFSET_DATA of length %d", name, length)
		}
		var b [8]byte
		if _, err := io.ReadFull(c.r, b[:]); err != nil {
			return err
		}
		off, n := binary.BigEndian.Uint64(b[:]), length-8
		if off < req.Offset || off+n > req.Offset+req.Length || off+n < off {
			return protoErrorf("%s [%d,+%d): OFFSET_DATA [%d,+%d) out of bounds", name, req.Offset, req.Length, off, n)
		}
		if _, err := io.ReadFull(c.r, call.Data[off-req.Offset:off-req.Offset+n]); err != nil {
			return err
		}
		call.covered = append(call.covered, [2]uint64{off, off + n})
		ch.Offset, ch.Length = off, n
		length = 0
	case typ == ReplyTypeOffsetHole:
		if req.Type != CmdRead {
			return protoErrorf("%s: OFFSET_HOLE chunk", name)
		}
		if length != 12 {
			return protoErrorf("%s: OFFSET_HOLE of length %d, want 12", name, length)
		}
		var b [12]byte
		if _, err := io.ReadFull(c.r, b[:]); err != nil {
			return err
		}
		off, n := binary.BigEndian.Uint64(b[:]), uint64(binary.BigEndian.Uint32(b[8:]))
		if n == 0 {
			return protoErrorf("%s: OFFSET_HOLE of size 0", name)
		}
		if off < req.Offset || off+n > req.Offset+req.Length || off+n < off {
			return protoErrorf("%s [%d,+%d): OFFSET_HOLE [%d,+%d) out of bounds", name, req.Offset, req.Length, off, n)
		}
		clear(call.Data[off-req.Offset : off-req.Offset+n])
		call.covered = append(call.covered, [2]uint64{off, off + n})
		ch.Offset, ch.Length = off, n
		length = 0
	case typ == ReplyTypeBlockStatus || typ == ReplyTypeBlockStatusExt:
		sum, err := c.blockStatusChunk(call, typ, length)
		if err != nil {
			return err
		}
		ch.Length, length = sum, 0
	case typ&replyTypeErrBit != 0:
		if length < 6 {
			return protoErrorf("%s: error chunk of length %d", name, length)
		}
		p := make([]byte, length)
		if _, err := io.ReadFull(c.r, p); err != nil {
			return err
		}
		errno := Errno(binary.BigEndian.Uint32(p))
		msgLen := uint64(binary.BigEndian.Uint16(p[4:]))
		if msgLen > length-6 {
			return protoErrorf("%s: error message length %d exceeds chunk length %d", name, msgLen, length)
		}
		if errno == 0 {
			return protoErrorf("%s: error chunk with error 0", name)
		}
		e := &Error{Cmd: req.Type, Cookie: cookie, Errno: errno, Message: string(p[6 : 6+msgLen])}
		rest := p[6+msgLen:]
		switch typ {
		case ReplyTypeError:
			if len(rest) != 0 {
				return protoErrorf("%s: NBD_REPLY_TYPE_ERROR has %d trailing bytes", name, len(rest))
			}
		case ReplyTypeErrorOffset:
			if len(rest) != 8 {
				return protoErrorf("%s: NBD_REPLY_TYPE_ERROR_OFFSET has %d trailing bytes, want 8", name, len(rest))
			}
			e.Offset, e.HasOffset = binary.BigEndian.Uint64(rest), true
			if e.Offset < req.Offset || e.Offset >= req.Offset+req.Length {
				return protoErrorf("%s [%d,+%d): error offset %d out of bounds", name, req.Offset, req.Length, e.Offset)
			}
		default:
			// Unknown error types make the reply an error; the stream
			// stays usable.
		}
		if call.replyErr == nil {
			call.replyErr = e
		}
		length = 0
	default:
		return protoErrorf("%s: unknown chunk type %d", name, typ)
	}
	if length != 0 {
		return protoErrorf("%s: %d unexpected payload bytes", name, length)
	}
	call.Chunks = append(call.Chunks, ch)
	if flags&ReplyFlagDone == 0 {
		return nil
	}
	c.complete(call, finishStructured(call, len(c.contexts)))
	return nil
}

// finishStructured checks a complete structured reply and returns the
// call's result.
func finishStructured(call *Call, nContexts int) error {
	if call.replyErr != nil {
		return call.replyErr
	}
	req := call.Req
	name := CmdName(req.Type)
	switch req.Type {
	case CmdRead:
		slices.SortFunc(call.covered, func(a, b [2]uint64) int {
			switch {
			case a[0] < b[0]:
				return -1
			case a[0] > b[0]:
				return 1
			}
			return 0
		})
		var sum uint64
		for i, iv := range call.covered {
			if i > 0 && iv[0] < call.covered[i-1][1] {
				return protoErrorf("%s: content chunks [%d,%d) and [%d,%d) overlap", name,
					call.covered[i-1][0], call.covered[i-1][1], iv[0], iv[1])
			}
			sum += iv[1] - iv[0]
		}
		if sum != req.Length {
			return protoErrorf("%s [%d,+%d): successful reply covers %d bytes", name, req.Offset, req.Length, sum)
		}
		if req.Flags&CmdFlagDF != 0 && len(call.covered) > 1 {
			return protoErrorf("%s with DF: %d content chunks", name, len(call.covered))
		}
	case CmdBlockStatus:
		if len(call.Extents) != nContexts {
			return protoErrorf("%s: status for %d contexts, %d negotiated", name, len(call.Extents), nContexts)
		}
	default:
		for _, ch := range call.Chunks {
			if ch.Type != ReplyTypeNone {
				return protoErrorf("%s: unexpected chunk type %d", name, ch.Type)
			}
		}
	}
	return nil
}

// blockStatusChunk reads a BLOCK_STATUS or BLOCK_STATUS_EXT payload.
func (c *Client) blockStatusChunk(call *Call, typ uint16, length uint64) (uint64, error) {
	req := call.Req
	name := CmdName(req.Type)
	if req.Type != CmdBlockStatus {
		return 0, protoErrorf("%s: block status chunk", name)
	}
	if (typ == ReplyTypeBlockStatusExt) != c.extended {
		return 0, protoErrorf("%s: chunk type %d with extended headers %v", name, typ, c.extended)
	}
	p := make([]byte, length)
	if _, err := io.ReadFull(c.r, p); err != nil {
		return 0, err
	}
	var id uint32
	var ext []Extent
	if typ == ReplyTypeBlockStatus {
		if length < 12 || (length-4)%8 != 0 {
			return 0, protoErrorf("%s: BLOCK_STATUS chunk of length %d", name, length)
		}
		id = binary.BigEndian.Uint32(p)
		for d := p[4:]; len(d) > 0; d = d[8:] {
			ext = append(ext, Extent{Length: uint64(binary.BigEndian.Uint32(d)), Flags: uint64(binary.BigEndian.Uint32(d[4:]))})
		}
	} else {
		if length < 24 || (length-8)%16 != 0 {
			return 0, protoErrorf("%s: BLOCK_STATUS_EXT chunk of length %d", name, length)
		}
		id = binary.BigEndian.Uint32(p)
		count := binary.BigEndian.Uint32(p[4:])
		if uint64(count) != (length-8)/16 {
			return 0, protoErrorf("%s: BLOCK_STATUS_EXT count %d but %d descriptors", name, count, (length-8)/16)
		}
		for d := p[8:]; len(d) > 0; d = d[16:] {
			ext = append(ext, Extent{Length: binary.BigEndian.Uint64(d), Flags: binary.BigEndian.Uint64(d[8:])})
		}
		if strings.HasPrefix(c.contexts[id], "base:") {
			for i, e := range ext {
				if e.Flags>>32 != 0 {
					return 0, protoErrorf("%s: base: context descriptor %d has status %#x (upper 32 bits must be zero)", name, i, e.Flags)
				}
			}
		}
	}
	if _, ok := c.contexts[id]; !ok {
		return 0, protoErrorf("%s: status for unnegotiated context id %d", name, id)
	}
	if _, dup := call.Extents[id]; dup {
		return 0, protoErrorf("%s: two status chunks for context id %d", name, id)
	}
	if req.Flags&CmdFlagReqOne != 0 && len(ext) != 1 {
		return 0, protoErrorf("%s with REQ_ONE: %d descriptors", name, len(ext))
	}
	var sum uint64
	for i, e := range ext {
		if e.Length == 0 {
			return 0, protoErrorf("%s: descriptor %d has length 0", name, i)
		}
		// Only the last descriptor may run past the requested range.
		if i < len(ext)-1 && sum+e.Length >= req.Length {
			return 0, protoErrorf("%s [%d,+%d): descriptor %d ends past the request", name, req.Offset, req.Length, i)
		}
		sum += e.Length
	}
	if call.Extents == nil {
		call.Extents = make(map[uint32][]Extent)
	}
	call.Extents[id] = ext
	return sum, nil
}
