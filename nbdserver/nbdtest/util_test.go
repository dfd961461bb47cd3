package nbdtest_test

import (
	"encoding/binary"
	"io"
	"net"
	"time"

	"github.com/extentd/extentd/nbdserver/nbdtest"
)

type netDialer struct{}

func (netDialer) dial(sock string) (net.Conn, error) {
	return net.DialTimeout("unix", sock, 5*time.Second)
}

// fakeHandshake plays the server side of a fixed-newstyle handshake for the
// scripted servers of the tests: greeting, client flags, then an ACK for
// every option, context id 1 for base:allocation on SET_META_CONTEXT, and
// a 1 MiB export (HAS_FLAGS|SEND_FLUSH) on GO, after which it returns true.
// It returns false when the connection fails.
func fakeHandshake(conn net.Conn) bool {
	be := binary.BigEndian
	g := be.AppendUint64(nil, nbdtest.MagicNBD)
	g = be.AppendUint64(g, nbdtest.MagicIHaveOpt)
	g = be.AppendUint16(g, nbdtest.FlagFixedNewstyle|nbdtest.FlagNoZeroes)
	if _, err := conn.Write(g); err != nil {
		return false
	}
	var flags [4]byte
	if _, err := io.ReadFull(conn, flags[:]); err != nil {
		return false
	}
	reply := func(opt, typ uint32, data []byte) {
		b := be.AppendUint64(nil, nbdtest.MagicOptionReply)
		b = be.AppendUint32(b, opt)
		b = be.AppendUint32(b, typ)
		b = be.AppendUint32(b, uint32(len(data)))
		_, _ = conn.Write(append(b, data...))
	}
	for {
		var hdr [16]byte
		if _, err := io.ReadFull(conn, hdr[:]); err != nil {
			return false
		}
		opt := be.Uint32(hdr[8:])
		if _, err := io.CopyN(io.Discard, conn, int64(be.Uint32(hdr[12:]))); err != nil {
			return false
		}
		switch opt {
		case nbdtest.OptSetMetaContext:
			reply(opt, nbdtest.RepMetaContext, append(be.AppendUint32(nil, 1), nbdtest.ContextBaseAllocation...))
		case nbdtest.OptGo:
			info := be.AppendUint16(nil, nbdtest.InfoExport)
			info = be.AppendUint64(info, 1<<20)
			info = be.AppendUint16(info, nbdtest.TFlagHasFlags|nbdtest.TFlagSendFlush)
			reply(opt, nbdtest.RepInfo, info)
		}
		reply(opt, nbdtest.RepAck, nil)
		if opt == nbdtest.OptGo {
			return true
		}
	}
}
