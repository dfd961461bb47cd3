package nbdtest_test

import (
	"context"
	"encoding/binary"
	"io"
	"net"
	"testing"
	"time"

	"github.com/extentd/extentd/nbdserver/nbdtest"
)

// FuzzClientReplies feeds arbitrary bytes as transmission replies to a
// client with two reads, a write and a block status in flight. Whatever
// arrives, the client must not panic or hang: every call completes, with
// data, an *Error or a connection error.
func FuzzClientReplies(f *testing.F) {
	be := binary.BigEndian
	simple := be.AppendUint32(nil, nbdtest.MagicSimpleReply)
	simple = be.AppendUint32(simple, 0)
	simple = be.AppendUint64(simple, 3)
	f.Add(simple)
	f.Add(chunk(nbdtest.ReplyFlagDone, nbdtest.ReplyTypeNone, 3, nil))
	f.Add(chunk(nbdtest.ReplyFlagDone, nbdtest.ReplyTypeOffsetData, 1, offsetData(0, 512)))
	bs := be.AppendUint32(nil, 1)
	bs = be.AppendUint32(bs, 512)
	bs = be.AppendUint32(bs, 3)
	f.Add(chunk(nbdtest.ReplyFlagDone, nbdtest.ReplyTypeBlockStatus, 4, bs))
	errc := be.AppendUint32(nil, 5)
	errc = be.AppendUint16(errc, 0xffff)
	f.Add(chunk(nbdtest.ReplyFlagDone, nbdtest.ReplyTypeError, 2, errc))
	f.Fuzz(func(t *testing.T, replies []byte) {
		cli, srv := net.Pipe()
		go fuzzServer(srv, replies)
		c, err := nbdtest.Negotiate(context.Background(), cli, nbdtest.Options{
			StructuredReplies: true, MetaContexts: []string{nbdtest.ContextBaseAllocation}, HandshakeTimeout: 2 * time.Second,
		})
		if err != nil {
			t.Fatalf("handshake with the scripted server: %v", err)
		}
		c.Timeout = 2 * time.Second
		var calls []*nbdtest.Call
		for _, req := range []nbdtest.Request{
			{Type: nbdtest.CmdRead, Cookie: 1, Length: 512},
			{Type: nbdtest.CmdRead, Cookie: 2, Offset: 512, Length: 1024},
			{Type: nbdtest.CmdWrite, Cookie: 3, Payload: make([]byte, 16)},
			{Type: nbdtest.CmdBlockStatus, Cookie: 4, Length: 4096},
		} {
			call, err := c.Submit(req)
			if err != nil {
				break
			}
			calls = append(calls, call)
		}
		// The scripted server hangs up after its bytes, so every call
		// must finish well before the timeout.
		for _, call := range calls {
			select {
			case <-call.Done:
			case <-time.After(5 * time.Second):
				t.Fatalf("call %d never completed", call.Req.Cookie)
			}
		}
		c.Close()
	})
}

// fuzzServer does a fixed handshake (STRUCTURED_REPLY, SET_META_CONTEXT
// with base:allocation as id 1, GO), reads the four requests, writes
// replies verbatim and hangs up.
func fuzzServer(conn net.Conn, replies []byte) {
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if !fakeHandshake(conn) {
		return
	}
	// Requests: four 28-byte headers plus the 16-byte write payload.
	if _, err := io.CopyN(io.Discard, conn, 4*28+16); err != nil {
		return
	}
	_, _ = conn.Write(replies)
}
