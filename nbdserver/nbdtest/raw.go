package nbdtest

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"time"
)

// Raw is a transmission-phase connection with no client-side validation,
// for hostile tests: it writes whatever request headers and bytes it is
// given and returns replies as they arrive. It is not safe for concurrent
// use.
type Raw struct {
	conn     net.Conn
	r        *bufio.Reader
	extended bool
	// Info is what the handshake reported.
	Info ExportInfo
}

// RawReply is one reply message as received.
type RawReply struct {
	Magic  uint32 // which header: simple, structured or extended
	Error  Errno  // simple replies only
	Flags  uint16 // chunk flags
	Type   uint16 // chunk type
	Cookie uint64
	Offset uint64 // extended header offset
	// Payload is the chunk payload, or the data of a successful simple
	// reply to a read (as many bytes as ReadReply was told to expect).
	Payload []byte
}

// Conn returns the underlying connection.
func (r *Raw) Conn() net.Conn { return r.conn }

// Write sends b as is.
func (r *Raw) Write(b []byte) error {
	_, err := r.conn.Write(b)
	return err
}

// WriteRequest encodes req with the negotiated header style, without
// checking anything: Length is sent as given (truncated to 32 bits for
// compact headers) and Payload follows whatever its size.
func (r *Raw) WriteRequest(req Request) error {
	return r.WriteRequestStyle(req, r.extended)
}

// WriteRequestStyle is WriteRequest with an explicit header style.
func (r *Raw) WriteRequestStyle(req Request, extended bool) error {
	w := bufio.NewWriter(r.conn)
	if err := writeRequest(w, extended, req); err != nil {
		return err
	}
	return w.Flush()
}

// ReadReply reads one reply message. readLen is the data length to expect
// after a successful simple reply (the length of the READ it answers, or 0).
// Chunk payloads over 64 MiB fail instead of being read.
func (r *Raw) ReadReply(readLen int) (*RawReply, error) {
	var m [4]byte
	if _, err := io.ReadFull(r.r, m[:]); err != nil {
		return nil, err
	}
	rep := &RawReply{Magic: binary.BigEndian.Uint32(m[:])}
	var length uint64
	switch rep.Magic {
	case MagicSimpleReply:
		var b [12]byte
		if _, err := io.ReadFull(r.r, b[:]); err != nil {
			return nil, err
		}
		rep.Error = Errno(binary.BigEndian.Uint32(b[:]))
		rep.Cookie = binary.BigEndian.Uint64(b[4:])
		if rep.Error == 0 {
			length = uint64(readLen)
		}
	case MagicStructuredRepl:
		var b [16]byte
		if _, err := io.ReadFull(r.r, b[:]); err != nil {
			return nil, err
		}
		rep.Flags, rep.Type = binary.BigEndian.Uint16(b[0:]), binary.BigEndian.Uint16(b[2:])
		rep.Cookie = binary.BigEndian.Uint64(b[4:])
		length = uint64(binary.BigEndian.Uint32(b[12:]))
	case MagicExtReply:
		var b [28]byte
		if _, err := io.ReadFull(r.r, b[:]); err != nil {
			return nil, err
		}
		rep.Flags, rep.Type = binary.BigEndian.Uint16(b[0:]), binary.BigEndian.Uint16(b[2:])
		rep.Cookie = binary.BigEndian.Uint64(b[4:])
		rep.Offset = binary.BigEndian.Uint64(b[12:])
		length = binary.BigEndian.Uint64(b[20:])
	default:
		return rep, protoErrorf("reply magic %#x", rep.Magic)
	}
	if length > maxReplyPayload {
		return rep, protoErrorf("reply payload of %d bytes", length)
	}
	rep.Payload = make([]byte, length)
	if _, err := io.ReadFull(r.r, rep.Payload); err != nil {
		return rep, err
	}
	return rep, nil
}

// ReadUntilDone reads replies for cookie until a simple reply or a chunk
// with NBD_REPLY_FLAG_DONE, and returns them with the reply's errno: the
// simple reply's error or the first error chunk's. Replies for other
// cookies are an error.
func (r *Raw) ReadUntilDone(cookie uint64, readLen int) ([]*RawReply, Errno, error) {
	var out []*RawReply
	var errno Errno
	for {
		rep, err := r.ReadReply(readLen)
		if err != nil {
			return out, errno, err
		}
		out = append(out, rep)
		if rep.Cookie != cookie {
			return out, errno, protoErrorf("reply for cookie %d, want %d", rep.Cookie, cookie)
		}
		if rep.Magic == MagicSimpleReply {
			return out, rep.Error, nil
		}
		if rep.Type&replyTypeErrBit != 0 && errno == 0 && len(rep.Payload) >= 4 {
			errno = Errno(binary.BigEndian.Uint32(rep.Payload))
		}
		if rep.Flags&ReplyFlagDone != 0 {
			return out, errno, nil
		}
	}
}

// ExpectClosed reads until the server closes the connection or timeout
// elapses; nil means closed.
func (r *Raw) ExpectClosed(timeout time.Duration) error {
	return expectClosed(r.conn, r.r, timeout)
}

// SetDeadline sets the connection deadline.
func (r *Raw) SetDeadline(t time.Time) error { return r.conn.SetDeadline(t) }

// Close closes the connection without NBD_CMD_DISC.
func (r *Raw) Close() error { return r.conn.Close() }

// Disconnect sends NBD_CMD_DISC and closes the connection.
func (r *Raw) Disconnect() error {
	err := r.WriteRequest(Request{Type: CmdDisc})
	if cerr := r.conn.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("nbdtest: disconnect: %w", err)
	}
	return nil
}
