package nbdserver

import (
	"bufio"
	"encoding/binary"
	"io"
	"net"
	"testing"
	"time"
)

// rawClient is a minimal NBD client that speaks raw bytes, so tests can
// send anything a hostile client could. The full conformance client lives in
// nbdserver/nbdtest; this one stays small and independent of it.
type rawClient struct {
	tb         testing.TB
	c          net.Conn
	br         *bufio.Reader
	structured bool
	extended   bool
}

func newRawClient(tb testing.TB, c net.Conn) *rawClient {
	tb.Helper()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	tb.Cleanup(func() { c.Close() })
	return &rawClient{tb: tb, c: c, br: bufio.NewReader(c)}
}

func dialRaw(tb testing.TB, addr string) *rawClient {
	tb.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		tb.Fatal(err)
	}
	return newRawClient(tb, c)
}

// pipeClient serves one end of a net.Pipe with s and returns a client on the
// other end.
func pipeClient(tb testing.TB, s *Server) *rawClient {
	tb.Helper()
	return pipeClientVia(tb, s, func(c net.Conn) net.Conn { return c })
}

// pipeClientVia is pipeClient with the server's end of the pipe wrapped by
// wrap (to observe what the server does with its connection).
func pipeClientVia(tb testing.TB, s *Server, wrap func(net.Conn) net.Conn) *rawClient {
	tb.Helper()
	cs, cc := net.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.ServeConn(tb.Context(), wrap(cs))
	}()
	tb.Cleanup(func() { cc.Close(); <-done })
	return newRawClient(tb, cc)
}

func (rc *rawClient) write(b []byte) {
	rc.tb.Helper()
	if _, err := rc.c.Write(b); err != nil {
		rc.tb.Fatalf("write: %v", err)
	}
}

func (rc *rawClient) read(n int) []byte {
	rc.tb.Helper()
	b := make([]byte, n)
	if _, err := io.ReadFull(rc.br, b); err != nil {
		rc.tb.Fatalf("read %d bytes: %v", n, err)
	}
	return b
}

// closed reports whether the server closed the connection (reads EOF).
func (rc *rawClient) closed() bool {
	rc.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := rc.br.ReadByte()
	return err != nil
}

// greet reads the greeting and sends client flags.
func (rc *rawClient) greet(cflags uint32) {
	rc.tb.Helper()
	g := rc.read(sizeGreeting)
	if string(g[:16]) != "NBDMAGICIHAVEOPT" || binary.BigEndian.Uint16(g[16:]) != 3 {
		rc.tb.Fatalf("bad greeting %q", g)
	}
	rc.write(binary.BigEndian.AppendUint32(nil, cflags))
}

func (rc *rawClient) sendOpt(opt uint32, data []byte) {
	rc.tb.Helper()
	b := binary.BigEndian.AppendUint64(nil, magicOpts)
	b = binary.BigEndian.AppendUint32(b, opt)
	b = binary.BigEndian.AppendUint32(b, uint32(len(data)))
	rc.write(append(b, data...))
}

type optReply struct {
	opt, typ uint32
	data     []byte
}

func (rc *rawClient) readOptReply() optReply {
	rc.tb.Helper()
	h := rc.read(sizeOptionReply)
	if m := binary.BigEndian.Uint64(h); m != magicOptReply {
		rc.tb.Fatalf("option reply magic %#x", m)
	}
	r := optReply{opt: binary.BigEndian.Uint32(h[8:]), typ: binary.BigEndian.Uint32(h[12:])}
	r.data = rc.read(int(binary.BigEndian.Uint32(h[16:])))
	return r
}

// readOptReplies reads replies until a final one (ACK or error).
func (rc *rawClient) readOptReplies() []optReply {
	rc.tb.Helper()
	var rs []optReply
	for {
		r := rc.readOptReply()
		rs = append(rs, r)
		if r.typ == repAck || r.typ&(1<<31) != 0 {
			return rs
		}
	}
}

func nameData(name string, rest ...byte) []byte {
	b := binary.BigEndian.AppendUint32(nil, uint32(len(name)))
	return append(append(b, name...), rest...)
}

// infoData builds NBD_OPT_INFO/GO data asking for info types reqs.
func infoData(name string, reqs ...uint16) []byte {
	b := nameData(name)
	b = binary.BigEndian.AppendUint16(b, uint16(len(reqs)))
	for _, r := range reqs {
		b = binary.BigEndian.AppendUint16(b, r)
	}
	return b
}

// metaData builds NBD_OPT_{LIST,SET}_META_CONTEXT data.
func metaData(name string, queries ...string) []byte {
	b := nameData(name)
	b = binary.BigEndian.AppendUint32(b, uint32(len(queries)))
	for _, q := range queries {
		b = append(b, nameData(q)...)
	}
	return b
}

// open negotiates (optionally structured replies, base:allocation, extended
// headers) and enters transmission with GO. It returns size and flags.
func (rc *rawClient) open(name string, structured, meta, extended bool) (uint64, uint16) {
	rc.tb.Helper()
	rc.greet(cflagFixedNewstyle | cflagNoZeroes)
	if extended {
		rc.sendOpt(optExtendedHeaders, nil)
		if r := rc.readOptReply(); r.typ != repAck {
			rc.tb.Fatalf("EXTENDED_HEADERS: reply %#x", r.typ)
		}
		rc.extended, rc.structured = true, true
	} else if structured {
		rc.sendOpt(optStructuredReply, nil)
		if r := rc.readOptReply(); r.typ != repAck {
			rc.tb.Fatalf("STRUCTURED_REPLY: reply %#x", r.typ)
		}
		rc.structured = true
	}
	if meta {
		rc.sendOpt(optSetMetaContext, metaData(name, metaBaseAllocation))
		rs := rc.readOptReplies()
		if len(rs) != 2 || rs[0].typ != repMetaContext {
			rc.tb.Fatalf("SET_META_CONTEXT: %+v", rs)
		}
	}
	rc.sendOpt(optGo, infoData(name))
	var size uint64
	var tflags uint16
	for _, r := range rc.readOptReplies() {
		if r.typ&(1<<31) != 0 {
			rc.tb.Fatalf("GO: error %#x %q", r.typ, r.data)
		}
		if r.typ == repInfo && binary.BigEndian.Uint16(r.data) == infoExport {
			size, tflags = binary.BigEndian.Uint64(r.data[2:]), binary.BigEndian.Uint16(r.data[10:])
		}
	}
	return size, tflags
}

// send writes one request header and its payload.
func (rc *rawClient) send(h requestHeader, payload []byte) {
	rc.tb.Helper()
	var b [sizeExtendedRequest]byte
	n := putRequest(b[:], h, rc.extended)
	rc.write(append(b[:n:n], payload...))
}

// reply is one simple reply or structured/extended chunk.
type reply struct {
	simple bool
	errno  Errno
	cookie uint64
	flags  uint16
	typ    uint16
	off    uint64 // extended header offset
	data   []byte // chunk payload, or READ data of a simple reply
}

// readReply reads one simple reply or chunk. readLen is the READ data
// length to expect after a successful simple reply (0 otherwise).
func (rc *rawClient) readReply(readLen int) reply {
	rc.tb.Helper()
	return rc.readReplyFor(func(uint64) int { return readLen })
}

// readReplyFor is readReply for replies in any order: readLen gives the
// READ data length of a successful simple reply by its cookie.
func (rc *rawClient) readReplyFor(readLen func(cookie uint64) int) reply {
	rc.tb.Helper()
	m := binary.BigEndian.Uint32(rc.read(4))
	switch m {
	case magicSimpleReply:
		h := rc.read(12)
		r := reply{simple: true, errno: Errno(binary.BigEndian.Uint32(h)), cookie: binary.BigEndian.Uint64(h[4:])}
		if n := readLen(r.cookie); r.errno == 0 && n > 0 {
			r.data = rc.read(n)
		}
		return r
	case magicStructuredReply:
		h := rc.read(16)
		r := reply{flags: binary.BigEndian.Uint16(h), typ: binary.BigEndian.Uint16(h[2:]), cookie: binary.BigEndian.Uint64(h[4:])}
		r.data = rc.read(int(binary.BigEndian.Uint32(h[12:])))
		r.errnoFromChunk()
		return r
	case magicExtendedReply:
		h := rc.read(28)
		r := reply{flags: binary.BigEndian.Uint16(h), typ: binary.BigEndian.Uint16(h[2:]),
			cookie: binary.BigEndian.Uint64(h[4:]), off: binary.BigEndian.Uint64(h[12:])}
		r.data = rc.read(int(binary.BigEndian.Uint64(h[20:])))
		r.errnoFromChunk()
		return r
	}
	rc.tb.Fatalf("reply magic %#x", m)
	return reply{}
}

func (r *reply) errnoFromChunk() {
	if r.typ&(1<<15) != 0 && len(r.data) >= 4 {
		r.errno = Errno(binary.BigEndian.Uint32(r.data))
	}
}

// errMsg returns the message of an error chunk.
func (r reply) errMsg() string {
	if len(r.data) < 6 {
		return ""
	}
	return string(r.data[6:][:binary.BigEndian.Uint16(r.data[4:])])
}

// do sends a request and returns the errno of its (final) reply, reading
// READ data into a returned buffer assembled from chunks.
func (rc *rawClient) do(h requestHeader, payload []byte) (Errno, []byte, []reply) {
	rc.tb.Helper()
	rc.send(h, payload)
	readLen := 0
	if h.cmd == CmdRead {
		readLen = int(h.length)
	}
	var chunks []reply
	var data []byte
	if h.cmd == CmdRead && rc.structured {
		data = make([]byte, h.length)
	}
	for {
		r := rc.readReply(readLen)
		if r.cookie != h.cookie {
			rc.tb.Fatalf("reply cookie %d, want %d", r.cookie, h.cookie)
		}
		if r.simple {
			return r.errno, r.data, nil
		}
		if rc.extended && r.off != h.off {
			rc.tb.Fatalf("extended reply offset %d, want %d", r.off, h.off)
		}
		chunks = append(chunks, r)
		switch r.typ {
		case replyTypeOffsetData:
			o := binary.BigEndian.Uint64(r.data) - h.off
			copy(data[o:], r.data[8:])
		case replyTypeOffsetHole:
			o := binary.BigEndian.Uint64(r.data) - h.off
			clear(data[o:][:binary.BigEndian.Uint32(r.data[8:])])
		}
		if r.flags&replyFlagDone != 0 {
			var errno Errno
			for _, c := range chunks {
				if c.errno != 0 {
					errno = c.errno
				}
			}
			return errno, data, chunks
		}
	}
}
