package nbdserver

import (
	"bytes"
	"encoding/binary"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"
)

func newTestServer(tb testing.TB, opts Options) *Server {
	tb.Helper()
	if opts.Exports == nil {
		opts.Exports = memExports(1 << 20)
	}
	if opts.Logger == nil {
		opts.Logger = zaptest.NewLogger(tb)
	}
	s, err := New(opts)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

// TestOptions sends option sequences and checks the reply types.
func TestOptions(t *testing.T) {
	type step struct {
		opt  uint32
		data []byte
		want []uint32 // reply types, final last
	}
	long := make([]byte, 64<<10+1)
	for _, tc := range []struct {
		name  string
		steps []step
	}{
		{"unknown option", []step{{99, []byte("junk"), []uint32{repErrUnsup}}, {optList, nil, []uint32{repServer, repServer, repAck}}}},
		{"peek export withdrawn", []step{{optPeekExport, nil, []uint32{repErrUnsup}}}},
		{"list with data", []step{{optList, []byte("x"), []uint32{repErrInvalid}}, {optList, nil, []uint32{repServer, repServer, repAck}}}},
		{"structured twice", []step{{optStructuredReply, nil, []uint32{repAck}}, {optStructuredReply, nil, []uint32{repErrInvalid}}}},
		{"structured with data", []step{{optStructuredReply, []byte{0}, []uint32{repErrInvalid}}}},
		{"structured after extended", []step{{optExtendedHeaders, nil, []uint32{repAck}}, {optStructuredReply, nil, []uint32{repErrExtHeaderReq}}}},
		{"extended twice", []step{{optExtendedHeaders, nil, []uint32{repAck}}, {optExtendedHeaders, nil, []uint32{repErrInvalid}}}},
		{"extended with data", []step{{optExtendedHeaders, []byte{1}, []uint32{repErrInvalid}}}},
		{"extended after structured", []step{{optStructuredReply, nil, []uint32{repAck}}, {optExtendedHeaders, nil, []uint32{repAck}}}},
		{"starttls unconfigured", []step{{optStartTLS, nil, []uint32{repErrUnsup}}}},
		{"info default", []step{{optInfo, infoData(""), []uint32{repInfo, repInfo, repAck}}}},
		{"info with name and description", []step{{optInfo, infoData("ro", infoName, infoDescription, 77), []uint32{repInfo, repInfo, repInfo, repInfo, repAck}}}},
		{"info unknown export", []step{{optInfo, infoData("nope"), []uint32{repErrUnknown}}}},
		{"info truncated", []step{{optInfo, []byte{0, 0, 0, 9, 'a'}, []uint32{repErrInvalid}}}},
		{"info count mismatch", []step{{optInfo, append(infoData(""), 0, 1), []uint32{repErrInvalid}}}},
		{"info name too long", []step{{optInfo, infoData(string(make([]byte, 5000))), []uint32{repErrInvalid}}}},
		{"option too long is drained", []step{{optInfo, long, []uint32{repErrTooBig}}, {optInfo, infoData(""), []uint32{repInfo, repInfo, repAck}}}},
		{"meta before structured", []step{{optListMetaContext, metaData(""), []uint32{repErrInvalid}}}},
		{"list meta all", []step{{optStructuredReply, nil, []uint32{repAck}}, {optListMetaContext, metaData(""), []uint32{repMetaContext, repAck}}}},
		{"list meta base:", []step{{optStructuredReply, nil, []uint32{repAck}}, {optListMetaContext, metaData("", "base:"), []uint32{repMetaContext, repAck}}}},
		{"list meta unknown namespace", []step{{optStructuredReply, nil, []uint32{repAck}}, {optListMetaContext, metaData("", "qemu:dirty-bitmap:x"), []uint32{repAck}}}},
		{"set meta", []step{{optStructuredReply, nil, []uint32{repAck}}, {optSetMetaContext, metaData("", metaBaseAllocation), []uint32{repMetaContext, repAck}}}},
		{"set meta base: selects nothing", []step{{optStructuredReply, nil, []uint32{repAck}}, {optSetMetaContext, metaData("", "base:"), []uint32{repAck}}}},
		{"set meta unknown export", []step{{optStructuredReply, nil, []uint32{repAck}}, {optSetMetaContext, metaData("x", metaBaseAllocation), []uint32{repErrUnknown}}}},
		{"set meta malformed query", []step{{optStructuredReply, nil, []uint32{repAck}}, {optSetMetaContext, append(metaData(""), 0, 0, 0, 1), []uint32{repErrInvalid}}}},
		{"abort", []step{{optAbort, []byte("ignored"), []uint32{repAck}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rc := pipeClient(t, newTestServer(t, Options{}))
			rc.greet(cflagFixedNewstyle | cflagNoZeroes)
			for i, st := range tc.steps {
				rc.sendOpt(st.opt, st.data)
				rs := rc.readOptReplies()
				var got []uint32
				for _, r := range rs {
					if r.opt != st.opt {
						t.Fatalf("step %d: reply for option %d, want %d", i, r.opt, st.opt)
					}
					got = append(got, r.typ)
				}
				if len(got) != len(st.want) {
					t.Fatalf("step %d: replies %#x, want %#x", i, got, st.want)
				}
				for j := range got {
					if got[j] != st.want[j] {
						t.Fatalf("step %d: replies %#x, want %#x", i, got, st.want)
					}
				}
			}
		})
	}
}

func TestInfoContents(t *testing.T) {
	rc := pipeClient(t, newTestServer(t, Options{}))
	rc.greet(cflagFixedNewstyle)
	rc.sendOpt(optInfo, infoData("ro", infoName, infoDescription, infoBlockSize))
	infos := map[uint16][]byte{}
	for _, r := range rc.readOptReplies() {
		if r.typ == repInfo {
			infos[binary.BigEndian.Uint16(r.data)] = r.data[2:]
		}
	}
	exp := infos[infoExport]
	if len(exp) != 10 || binary.BigEndian.Uint64(exp) != 1<<20 {
		t.Fatalf("NBD_INFO_EXPORT = %x", exp)
	}
	if f := binary.BigEndian.Uint16(exp[8:]); f&tflagReadOnly == 0 || f&tflagSendTrim != 0 {
		t.Fatalf("ro export flags %#x", f)
	}
	if string(infos[infoName]) != "ro" || string(infos[infoDescription]) != "read-only view" {
		t.Fatalf("name %q description %q", infos[infoName], infos[infoDescription])
	}
	bs := infos[infoBlockSize]
	if len(bs) != 12 || binary.BigEndian.Uint32(bs) != 1 || binary.BigEndian.Uint32(bs[4:]) != 4096 ||
		binary.BigEndian.Uint32(bs[8:]) != 32<<20 {
		t.Fatalf("NBD_INFO_BLOCK_SIZE = %x", bs)
	}
}

func TestList(t *testing.T) {
	rc := pipeClient(t, newTestServer(t, Options{}))
	rc.greet(cflagFixedNewstyle)
	rc.sendOpt(optList, nil)
	rs := rc.readOptReplies()
	if len(rs) != 3 {
		t.Fatalf("replies %+v", rs)
	}
	want := [][]byte{append(nameData(""), "scratch disk"...), append(nameData("ro"), "read-only view"...)}
	for i, w := range want {
		if !bytes.Equal(rs[i].data, w) {
			t.Errorf("REP_SERVER %d = %q, want %q", i, rs[i].data, w)
		}
	}
}

func TestExportName(t *testing.T) {
	for _, tc := range []struct {
		name   string
		cflags uint32
		want   int
	}{
		{"no zeroes", cflagFixedNewstyle | cflagNoZeroes, 10},
		{"zeroes", cflagFixedNewstyle, 134},
		{"non-fixed newstyle", 0, 134},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rc := pipeClient(t, newTestServer(t, Options{}))
			rc.greet(tc.cflags)
			rc.sendOpt(optExportName, []byte("ro"))
			b := rc.read(tc.want)
			if binary.BigEndian.Uint64(b) != 1<<20 || binary.BigEndian.Uint16(b[8:])&tflagReadOnly == 0 {
				t.Fatalf("EXPORT_NAME reply %x", b[:10])
			}
			if !bytes.Equal(b[10:], make([]byte, tc.want-10)) {
				t.Fatalf("padding not zero")
			}
			// Transmission works right away.
			if errno, _, _ := rc.do(requestHeader{cmd: CmdRead, cookie: 7, length: 512}, nil); errno != 0 {
				t.Fatalf("read: %v", errno)
			}
		})
	}
}

// TestHandshakeCloses checks the cases where the only answer is to hang up.
func TestHandshakeCloses(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts Options
		run  func(rc *rawClient)
	}{
		{"unknown client flags", Options{}, func(rc *rawClient) { rc.greet(1 << 5) }},
		{"unknown export name", Options{}, func(rc *rawClient) {
			rc.greet(cflagFixedNewstyle)
			rc.sendOpt(optExportName, []byte("nope"))
		}},
		{"export name after extended headers", Options{}, func(rc *rawClient) {
			rc.greet(cflagFixedNewstyle)
			rc.sendOpt(optExtendedHeaders, nil)
			rc.readOptReply()
			rc.sendOpt(optExportName, nil)
		}},
		{"bad option magic", Options{}, func(rc *rawClient) {
			rc.greet(cflagFixedNewstyle)
			rc.write(make([]byte, 16))
		}},
		{"too many options", Options{MaxOptions: 3}, func(rc *rawClient) {
			rc.greet(cflagFixedNewstyle)
			for range 3 {
				rc.sendOpt(99, nil)
				rc.readOptReply()
			}
			// The server hangs up before reading the next option.
			rc.c.Write(binary.BigEndian.AppendUint64(nil, magicOpts))
		}},
		{"huge option", Options{}, func(rc *rawClient) {
			rc.greet(cflagFixedNewstyle)
			b := binary.BigEndian.AppendUint64(nil, magicOpts)
			b = binary.BigEndian.AppendUint32(b, optInfo)
			rc.write(binary.BigEndian.AppendUint32(b, 1<<31))
		}},
		{"huge export name", Options{}, func(rc *rawClient) {
			rc.greet(cflagFixedNewstyle)
			b := binary.BigEndian.AppendUint64(nil, magicOpts)
			b = binary.BigEndian.AppendUint32(b, optExportName)
			rc.write(binary.BigEndian.AppendUint32(b, 1<<20))
		}},
		{"handshake timeout", Options{HandshakeTimeout: 50 * time.Millisecond}, func(rc *rawClient) {
			rc.greet(cflagFixedNewstyle)
		}},
		{"abort", Options{}, func(rc *rawClient) {
			rc.greet(cflagFixedNewstyle)
			rc.sendOpt(optAbort, nil)
			rc.readOptReply()
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rc := pipeClient(t, newTestServer(t, tc.opts))
			tc.run(rc)
			if !rc.closed() {
				t.Fatal("server did not close the connection")
			}
		})
	}
}

func TestOptionsValidate(t *testing.T) {
	dev := memExports(1 << 20)[0].Device
	for _, tc := range []struct {
		name string
		opts Options
		ok   bool
	}{
		{"one export", Options{Exports: []Export{{Device: dev}}}, true},
		{"no exports", Options{}, false},
		{"nil device", Options{Exports: []Export{{Name: "a"}}}, false},
		{"duplicate names", Options{Exports: []Export{{Name: "a", Device: dev}, {Name: "a", Device: dev}}}, false},
		{"require TLS without config", Options{Exports: []Export{{Device: dev}}, RequireTLS: true}, false},
		{"min block not power of two", Options{Exports: []Export{{Device: dev, MinBlock: 3}}}, false},
		{"min block too big", Options{Exports: []Export{{Device: dev, MinBlock: 1 << 17}}}, false},
		{"pref below 512", Options{Exports: []Export{{Device: dev, PrefBlock: 256}}}, false},
		{"max below pref", Options{Exports: []Export{{Device: dev, PrefBlock: 8192, MaxBlock: 4096}}}, false},
		{"max above payload", Options{Exports: []Export{{Device: dev, MaxBlock: 64 << 20}}, MaxPayload: 32 << 20}, false},
		{"payload too small", Options{Exports: []Export{{Device: dev}}, MaxPayload: 100}, false},
		{"negative workers", Options{Exports: []Export{{Device: dev}}, Workers: -1}, false},
		{"name too long", Options{Exports: []Export{{Device: dev, Name: string(make([]byte, 4097))}}}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.opts.Validate()
			if (err == nil) != tc.ok {
				t.Fatalf("Validate() = %v, want ok=%v", err, tc.ok)
			}
		})
	}
	o := Options{Exports: []Export{{Device: dev}}}
	o.EnsureDefaults()
	e := o.Exports[0]
	if o.MaxPayload != 32<<20 || o.MaxInFlight != 64 || o.Workers != 8 || o.MaxOptions != 32 ||
		o.MaxOptionLen != 64<<10 || o.HandshakeTimeout != 30*time.Second || o.Logger == nil ||
		e.MinBlock != 1 || e.PrefBlock != 4096 || e.MaxBlock != 32<<20 {
		t.Fatalf("defaults: %+v %+v", o, e)
	}
}

func TestValidateMaxBlockAgainstDefaultPayload(t *testing.T) {
	o := Options{Exports: []Export{{Device: memExports(1 << 20)[0].Device, MaxBlock: 64 << 20}}}
	if err := o.Validate(); err == nil {
		t.Fatal("MaxBlock above the default MaxPayload accepted")
	}
}
