package nbdserver

import (
	"encoding/binary"
	"io"
	"net"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/extentd/extentd/device/memdev"
)

// FuzzDecodeRequest decodes arbitrary request headers and validates them
// against several negotiated states. Whatever the bytes, nothing panics and
// an accepted request lies within the export and the payload limit.
func FuzzDecodeRequest(f *testing.F) {
	for _, h := range []requestHeader{
		{cmd: CmdRead, length: 4096},
		{cmd: CmdWrite, flags: cmdFlagFUA, off: 4096, length: 512},
		{cmd: CmdWrite, flags: cmdFlagPayloadLen, length: 512},
		{cmd: CmdWriteZeroes, flags: cmdFlagFastZero | cmdFlagNoHole, length: 1 << 20},
		{cmd: CmdBlockStatus, flags: cmdFlagReqOne, length: 1 << 30},
		{cmd: CmdTrim, off: 1<<64 - 1, length: 1<<32 - 1},
		{cmd: CmdFlush},
	} {
		for _, ext := range []bool{false, true} {
			var b [sizeExtendedRequest]byte
			n := putRequest(b[:], h, ext)
			f.Add(b[:n], ext)
		}
	}
	const size = 1 << 30
	states := []negotiated{
		{tflags: tflagHasFlags | tflagSendFlush | tflagSendFUA, size: size, minBlock: 1, maxPayload: 32 << 20},
		{tflags: 0xfff, structured: true, meta: true, size: size, minBlock: 512, maxPayload: 32 << 20},
		{tflags: 0xfff, structured: true, extended: true, meta: true, size: size, minBlock: 1, maxPayload: 1 << 20},
		{tflags: tflagHasFlags | tflagReadOnly, size: 0, minBlock: 1, maxPayload: 4096},
	}
	f.Fuzz(func(t *testing.T, b []byte, extended bool) {
		need := sizeRequest
		if extended {
			need = sizeExtendedRequest
		}
		if len(b) < need {
			return
		}
		h, ok := decodeRequest(b, extended)
		if !ok {
			return
		}
		var re [sizeExtendedRequest]byte
		if n := putRequest(re[:], h, extended); string(re[:n]) != string(b[:n]) {
			t.Fatalf("decode/encode mismatch: %x vs %x", re[:n], b[:n])
		}
		for _, st := range states {
			st.extended = st.extended && extended
			errno, msg := validateRequest(&st, &h)
			_ = payloadLen(&st, &h)
			if (errno == 0) != (msg == "") {
				t.Fatalf("errno %v with message %q", errno, msg)
			}
			if errno != 0 {
				continue
			}
			if h.cmd != CmdFlush && (h.off > st.size || h.length > st.size-h.off) {
				t.Fatalf("accepted out-of-range %+v on size %d", h, st.size)
			}
			if (h.cmd == CmdRead || h.cmd == CmdWrite) && h.length > uint64(st.maxPayload) {
				t.Fatalf("accepted oversized %+v", h)
			}
			if st.tflags&tflagReadOnly != 0 && (h.cmd == CmdWrite || h.cmd == CmdTrim || h.cmd == CmdWriteZeroes) {
				t.Fatalf("accepted %v on read-only export", h.cmd)
			}
			if h.flags&cmdFlagFastZero != 0 && st.tflags&tflagSendFastZero == 0 {
				t.Fatalf("accepted unoffered FAST_ZERO")
			}
		}
	})
}

// FuzzHandshake feeds arbitrary client bytes to a server over net.Pipe. The
// bytes may negotiate and go on into transmission. The server must never
// panic and must end the connection promptly once the client goes away.
func FuzzHandshake(f *testing.F) {
	for _, seed := range fuzzSeeds() {
		f.Add(seed)
	}
	d := memdev.New(1<<20, memdev.Options{})
	s, err := New(Options{
		Exports:          []Export{{Name: "", Device: d, MultiConn: true}, {Name: "ro", Device: d, ReadOnly: true}},
		Logger:           zap.NewNop(),
		HandshakeTimeout: 2 * time.Second,
		MaxPayload:       1 << 20,
		MaxInFlight:      4,
		Workers:          2,
	})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		cs, cc := net.Pipe()
		done := make(chan struct{})
		go func() {
			defer close(done)
			s.ServeConn(t.Context(), cs)
		}()
		go io.Copy(io.Discard, cc) // drain replies so the server never blocks
		cc.SetWriteDeadline(time.Now().Add(2 * time.Second))
		cc.Write(in)
		cc.Close()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatalf("server did not end the connection after the client closed")
		}
	})
}

// fuzzSeeds returns client byte streams that exercise the main paths.
func fuzzSeeds() [][]byte {
	opt := func(b []byte, o uint32, data []byte) []byte {
		b = binary.BigEndian.AppendUint64(b, magicOpts)
		b = binary.BigEndian.AppendUint32(b, o)
		b = binary.BigEndian.AppendUint32(b, uint32(len(data)))
		return append(b, data...)
	}
	req := func(b []byte, h requestHeader, ext bool, payload []byte) []byte {
		var hb [sizeExtendedRequest]byte
		n := putRequest(hb[:], h, ext)
		return append(append(b, hb[:n]...), payload...)
	}
	flags := binary.BigEndian.AppendUint32(nil, cflagFixedNewstyle|cflagNoZeroes)
	var seeds [][]byte

	b := opt(append([]byte{}, flags...), optGo, infoData(""))
	b = req(b, requestHeader{cmd: CmdWrite, cookie: 1, off: 512, length: 16}, false, []byte("0123456789abcdef"))
	b = req(b, requestHeader{cmd: CmdRead, cookie: 2, off: 512, length: 16}, false, nil)
	b = req(b, requestHeader{cmd: CmdFlush, cookie: 3}, false, nil)
	b = req(b, requestHeader{cmd: CmdWriteZeroes, flags: cmdFlagFastZero, cookie: 4, length: 4096}, false, nil)
	b = req(b, requestHeader{cmd: CmdDisc}, false, nil)
	seeds = append(seeds, b)

	b = opt(append([]byte{}, flags...), optStructuredReply, nil)
	b = opt(b, optSetMetaContext, metaData("", metaBaseAllocation))
	b = opt(b, optGo, infoData("", infoBlockSize))
	b = req(b, requestHeader{cmd: CmdBlockStatus, cookie: 1, length: 1 << 20}, false, nil)
	b = req(b, requestHeader{cmd: CmdRead, flags: cmdFlagDF, cookie: 2, length: 65536}, false, nil)
	seeds = append(seeds, b)

	b = opt(append([]byte{}, flags...), optExtendedHeaders, nil)
	b = opt(b, optSetMetaContext, metaData("", metaBaseAllocation))
	b = opt(b, optGo, infoData(""))
	b = req(b, requestHeader{cmd: CmdWrite, flags: cmdFlagPayloadLen, cookie: 1, length: 8}, true, []byte("extentd!"))
	b = req(b, requestHeader{cmd: CmdBlockStatus, cookie: 2, length: 1 << 20}, true, nil)
	b = req(b, requestHeader{cmd: CmdTrim, flags: cmdFlagPayloadLen, cookie: 3, length: 4}, true, []byte("junk"))
	seeds = append(seeds, b)

	b = opt(append([]byte{}, flags...), optList, nil)
	b = opt(b, optInfo, infoData("ro", infoName, infoDescription))
	b = opt(b, optListMetaContext, metaData("", "base:"))
	b = opt(b, optExportName, []byte("ro"))
	b = req(b, requestHeader{cmd: CmdWrite, cookie: 1, length: 4}, false, []byte("nope"))
	seeds = append(seeds, b)

	seeds = append(seeds, opt(append([]byte{}, flags...), optAbort, nil))
	return seeds
}
