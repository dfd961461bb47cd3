package nbdtest_test

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"testing"

	"github.com/extentd/extentd/nbdserver/nbdtest"
)

// fakeServer runs a scripted server on one end of a pipe: it completes a
// fixed-newstyle handshake (STRUCTURED_REPLY then GO for a 1 MiB export),
// reads one request header and calls reply with the request cookie.
func fakeServer(t *testing.T, conn net.Conn, reply func(w io.Writer, cookie uint64)) {
	t.Helper()
	be := binary.BigEndian
	go func() {
		defer conn.Close()
		if !fakeHandshake(conn) {
			return
		}
		var req [28]byte
		if _, err := io.ReadFull(conn, req[:]); err != nil {
			return
		}
		reply(conn, be.Uint64(req[8:]))
		// Wait for NBD_CMD_DISC (or a closed pipe), then hang up.
		_, _ = io.ReadFull(conn, req[:])
	}()
}

func chunk(flags, typ uint16, cookie uint64, payload []byte) []byte {
	be := binary.BigEndian
	b := be.AppendUint32(nil, nbdtest.MagicStructuredRepl)
	b = be.AppendUint16(b, flags)
	b = be.AppendUint16(b, typ)
	b = be.AppendUint64(b, cookie)
	b = be.AppendUint32(b, uint32(len(payload)))
	return append(b, payload...)
}

func offsetData(off uint64, n int) []byte {
	return append(binary.BigEndian.AppendUint64(nil, off), make([]byte, n)...)
}

// TestClientDetectsViolations checks that the client refuses replies the
// spec forbids instead of accepting them silently: a lax oracle would let
// server bugs through.
func TestClientDetectsViolations(t *testing.T) {
	const done = nbdtest.ReplyFlagDone
	for _, tc := range []struct {
		name  string
		reply func(cookie uint64) []byte
		want  error
	}{
		{"unknown cookie", func(c uint64) []byte { return chunk(done, nbdtest.ReplyTypeNone, c+1, nil) }, nbdtest.ErrProtocol},
		{"bad magic", func(c uint64) []byte { return []byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16} }, nbdtest.ErrProtocol},
		{"data out of bounds", func(c uint64) []byte {
			return chunk(done, nbdtest.ReplyTypeOffsetData, c, offsetData(4096, 4096))
		}, nbdtest.ErrProtocol},
		{"short coverage", func(c uint64) []byte {
			return chunk(done, nbdtest.ReplyTypeOffsetData, c, offsetData(0, 1024))
		}, nbdtest.ErrProtocol},
		{"overlap", func(c uint64) []byte {
			return append(chunk(0, nbdtest.ReplyTypeOffsetData, c, offsetData(0, 3072)),
				chunk(done, nbdtest.ReplyTypeOffsetData, c, offsetData(2048, 2048))...)
		}, nbdtest.ErrProtocol},
		{"simple reply to structured read", func(c uint64) []byte {
			b := binary.BigEndian.AppendUint32(nil, nbdtest.MagicSimpleReply)
			b = binary.BigEndian.AppendUint32(b, 0)
			return append(binary.BigEndian.AppendUint64(b, c), make([]byte, 4096)...)
		}, nbdtest.ErrProtocol},
		{"error chunk", func(c uint64) []byte {
			p := binary.BigEndian.AppendUint32(nil, uint32(nbdtest.EIO))
			p = binary.BigEndian.AppendUint16(p, 4)
			return chunk(done, nbdtest.ReplyTypeError, c, append(p, "boom"...))
		}, nbdtest.EIO},
		{"hole and data", func(c uint64) []byte {
			hole := binary.BigEndian.AppendUint64(nil, 0)
			hole = binary.BigEndian.AppendUint32(hole, 2048)
			return append(chunk(0, nbdtest.ReplyTypeOffsetHole, c, hole),
				chunk(done, nbdtest.ReplyTypeOffsetData, c, offsetData(2048, 2048))...)
		}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cli, srv := net.Pipe()
			fakeServer(t, srv, func(w io.Writer, cookie uint64) { _, _ = w.Write(tc.reply(cookie)) })
			c, err := nbdtest.Negotiate(context.Background(), cli, nbdtest.Options{StructuredReplies: true})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_, err = c.ReadAt(make([]byte, 4096), 0)
			if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("read: %v, want %v", err, tc.want)
			}
		})
	}
}
