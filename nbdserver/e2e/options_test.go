package e2e

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/extentd/extentd/device/memdev"
	"github.com/extentd/extentd/nbdserver"
	"github.com/extentd/extentd/nbdserver/nbdtest"
)

// TestGreeting checks the fixed-newstyle greeting on TCP and Unix sockets.
func TestGreeting(t *testing.T) {
	for _, e := range []*env{newEnv(t), newUnixEnv(t)} {
		h := e.handshake()
		if h.ServerFlags&nbdtest.FlagFixedNewstyle == 0 {
			t.Errorf("%s: handshake flags %#x lack FIXED_NEWSTYLE", e.Network, h.ServerFlags)
		}
		if h.ServerFlags&^(nbdtest.FlagFixedNewstyle|nbdtest.FlagNoZeroes) != 0 {
			t.Errorf("%s: handshake flags %#x set undefined bits", e.Network, h.ServerFlags)
		}
		if err := h.Abort(); err != nil {
			t.Errorf("%s: abort: %v", e.Network, err)
		}
	}
}

// TestOptList checks NBD_OPT_LIST and that a LIST with payload is refused
// with ERR_INVALID without desynchronising the stream (nbd-server bug 1k-2).
func TestOptList(t *testing.T) {
	e := newEnv(t, addExport(nbdserver.Export{Name: "second", Description: "two", Device: memdev.New(1<<20, memdev.Options{})}))
	h := e.handshake()
	list, err := h.List()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, x := range list {
		names = append(names, x.Name)
	}
	slices.Sort(names)
	if !slices.Equal(names, []string{"", "second"}) {
		t.Fatalf("LIST: %q, want [\"\" second]", names)
	}
	if _, err := h.Option(nbdtest.OptList, []byte("junk payload")); !errors.Is(err, nbdtest.RepErrInvalid) {
		t.Fatalf("LIST with payload: %v, want NBD_REP_ERR_INVALID", err)
	}
	// The stream must still be in sync: the next option works.
	if list2, err := h.List(); err != nil || len(list2) != 2 {
		t.Fatalf("LIST after bad LIST: %v %v", list2, err)
	}
	info, err := h.Go("second", nbdtest.DefaultInfoRequests())
	if err != nil || info.Size != 1<<20 || info.Description != "two" {
		t.Fatalf("GO second: %+v %v", info, err)
	}
}

// TestOptInfoGo checks that INFO and GO report the same export (nbd-server
// bug 1k-3 reports size 0 in INFO) and the requested info types.
func TestOptInfoGo(t *testing.T) {
	e := newEnv(t)
	h := e.handshake()
	info, err := h.Info("", nbdtest.DefaultInfoRequests())
	if err != nil {
		t.Fatal(err)
	}
	if info.Size != defaultSize {
		t.Errorf("INFO size %d, want %d", info.Size, defaultSize)
	}
	if info.Description != "default test export" {
		t.Errorf("INFO description %q", info.Description)
	}
	if !info.HasBlockSize {
		t.Errorf("INFO: no NBD_INFO_BLOCK_SIZE although requested")
	} else {
		checkBlockSizes(t, info)
	}
	goInfo, err := h.Go("", nbdtest.DefaultInfoRequests())
	if err != nil {
		t.Fatal(err)
	}
	if goInfo.Size != info.Size || goInfo.Flags != info.Flags || goInfo.MinBlock != info.MinBlock ||
		goInfo.PrefBlock != info.PrefBlock || goInfo.MaxBlock != info.MaxBlock {
		t.Errorf("GO reports %+v, INFO reported %+v", goInfo, info)
	}
}

// checkBlockSizes checks the NBD_INFO_BLOCK_SIZE constraints of the spec.
func checkBlockSizes(t *testing.T, info nbdtest.ExportInfo) {
	t.Helper()
	pow2 := func(x uint32) bool { return x != 0 && x&(x-1) == 0 }
	if !pow2(info.MinBlock) || info.MinBlock > 64<<10 {
		t.Errorf("minimum block %d: must be a power of two <= 64 KiB", info.MinBlock)
	}
	if !pow2(info.PrefBlock) || info.PrefBlock < max(info.MinBlock, 512) {
		t.Errorf("preferred block %d: must be a power of two >= max(min, 512)", info.PrefBlock)
	}
	if info.MaxBlock < info.PrefBlock || (info.MaxBlock != 0xffffffff && info.MaxBlock%info.MinBlock != 0) {
		t.Errorf("maximum block %d: must be >= preferred and a multiple of min", info.MaxBlock)
	}
}

// TestOptGoNoInfoRequests is what nbd-client sends: GO with no info
// requests must still carry NBD_INFO_EXPORT.
func TestOptGoNoInfoRequests(t *testing.T) {
	e := newEnv(t)
	c := e.dial(nbdtest.Options{InfoRequests: []uint16{}})
	if c.Export().Size != defaultSize {
		t.Fatalf("size %d", c.Export().Size)
	}
}

// TestUnknownExport: GO and INFO answer ERR_UNKNOWN and the option phase
// goes on; EXPORT_NAME cannot fail politely, so the server must close.
func TestUnknownExport(t *testing.T) {
	e := newEnv(t, withExports(nbdserver.Export{Name: "only", Device: memdev.New(1<<20, memdev.Options{})}))
	h := e.handshake()
	if _, err := h.Info("nosuch", nil); !errors.Is(err, nbdtest.RepErrUnknown) {
		t.Fatalf("INFO unknown export: %v, want NBD_REP_ERR_UNKNOWN", err)
	}
	if _, err := h.Go("nosuch", nil); !errors.Is(err, nbdtest.RepErrUnknown) {
		t.Fatalf("GO unknown export: %v, want NBD_REP_ERR_UNKNOWN", err)
	}
	if _, err := h.Go("only", nil); err != nil {
		t.Fatalf("GO after refused GO: %v", err)
	}

	h = e.handshake()
	if _, err := h.ExportName("nosuch"); err == nil {
		t.Fatal("EXPORT_NAME of unknown export succeeded")
	}
	if err := h.ExpectClosed(5 * time.Second); err != nil {
		t.Fatalf("EXPORT_NAME unknown export: %v", err)
	}
}

// TestOptExportName covers EXPORT_NAME with and without NO_ZEROES (the 124
// zero bytes), from fixed-newstyle and plain newstyle clients (flags
// without FIXED_NEWSTYLE: EXPORT_NAME is the one option they may send),
// and transmission afterwards.
func TestOptExportName(t *testing.T) {
	e := newEnv(t)
	for _, flags := range []uint32{
		nbdtest.ClientFlagFixedNewstyle, nbdtest.ClientFlagFixedNewstyle | nbdtest.ClientFlagNoZeroes,
		0, nbdtest.ClientFlagNoZeroes,
	} {
		c := e.dial(nbdtest.Options{UseExportName: true, ClientFlags: &flags})
		if c.Export().Size != defaultSize {
			t.Fatalf("flags %#x: size %d", flags, c.Export().Size)
		}
		buf := pattern(byte(flags), 4096)
		if _, err := c.WriteAt(buf, 0); err != nil {
			t.Fatalf("flags %#x: write: %v", flags, err)
		}
		if err := c.Close(); err != nil {
			t.Fatalf("flags %#x: close: %v", flags, err)
		}
	}
}

// TestOptAbort: ABORT is acknowledged (even with stray data) and the
// server closes.
func TestOptAbort(t *testing.T) {
	e := newEnv(t)
	h := e.handshake()
	if _, err := h.Option(nbdtest.OptAbort, nil); err != nil {
		t.Fatalf("ABORT: %v", err)
	}
	if err := h.ExpectClosed(5 * time.Second); err != nil {
		t.Fatalf("after ABORT: %v", err)
	}
}

// TestOptUnknown: unknown options get ERR_UNSUP and negotiation goes on.
func TestOptUnknown(t *testing.T) {
	e := newEnv(t)
	h := e.handshake()
	for _, opt := range []uint32{nbdtest.OptPeekExport, 12, 200, 0x7fffffff, 0xffffffff} {
		if _, err := h.Option(opt, []byte("some data")); !errors.Is(err, nbdtest.RepErrUnsup) {
			t.Fatalf("option %d: %v, want NBD_REP_ERR_UNSUP", opt, err)
		}
	}
	if _, err := h.Go("", nil); err != nil {
		t.Fatalf("GO after unknown options: %v", err)
	}
}

// TestOptStructuredReply: the option takes no data; twice is harmless or
// refused, but never fatal.
func TestOptStructuredReply(t *testing.T) {
	e := newEnv(t)
	h := e.handshake()
	if _, err := h.Option(nbdtest.OptStructuredReply, []byte{1}); !errors.Is(err, nbdtest.RepErrInvalid) {
		t.Fatalf("STRUCTURED_REPLY with data: %v, want NBD_REP_ERR_INVALID", err)
	}
	if err := h.StructuredReply(); err != nil {
		t.Fatal(err)
	}
	var oe *nbdtest.OptionError
	if err := h.StructuredReply(); err != nil && !errors.As(err, &oe) {
		t.Fatalf("second STRUCTURED_REPLY: %v", err)
	}
	info, err := h.Go("", nil)
	if err != nil {
		t.Fatal(err)
	}
	c, err := h.Client()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.ReadAt(make([]byte, 8192), 0); err != nil {
		t.Fatalf("structured read: %v (flags %#x)", err, info.Flags)
	}
}

// TestMetaContextNegotiation covers LIST/SET_META_CONTEXT rules.
func TestMetaContextNegotiation(t *testing.T) {
	e := newEnv(t)
	h := e.handshake()
	if _, err := h.SetMetaContext("", nbdtest.ContextBaseAllocation); !errors.Is(err, nbdtest.RepErrInvalid) {
		t.Fatalf("SET_META_CONTEXT before STRUCTURED_REPLY: %v, want NBD_REP_ERR_INVALID", err)
	}
	if _, err := h.ListMetaContext(""); !errors.Is(err, nbdtest.RepErrInvalid) {
		t.Fatalf("LIST_META_CONTEXT before STRUCTURED_REPLY: %v, want NBD_REP_ERR_INVALID", err)
	}
	if err := h.StructuredReply(); err != nil {
		t.Fatal(err)
	}
	all, err := h.ListMetaContext("")
	if err != nil || !slices.ContainsFunc(all, func(m nbdtest.MetaContext) bool { return m.Name == nbdtest.ContextBaseAllocation }) {
		t.Fatalf("LIST_META_CONTEXT (all): %v %v", all, err)
	}
	base, err := h.ListMetaContext("", "base:")
	if err != nil || len(base) != 1 || base[0].Name != nbdtest.ContextBaseAllocation {
		t.Fatalf("LIST_META_CONTEXT base: : %v %v", base, err)
	}
	none, err := h.ListMetaContext("", "x-nosuch:thing")
	if err != nil || len(none) != 0 {
		t.Fatalf("LIST_META_CONTEXT unknown namespace: %v %v (want ACK only)", none, err)
	}
	if _, err := h.SetMetaContext("nosuch", nbdtest.ContextBaseAllocation); !errors.Is(err, nbdtest.RepErrUnknown) {
		t.Fatalf("SET_META_CONTEXT for unknown export: %v, want NBD_REP_ERR_UNKNOWN", err)
	}
	// Malformed payload: query length past the end.
	bad := []byte{0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 200, 'b'}
	if _, err := h.Option(nbdtest.OptSetMetaContext, bad); !errors.Is(err, nbdtest.RepErrInvalid) {
		t.Fatalf("SET_META_CONTEXT malformed: %v, want NBD_REP_ERR_INVALID", err)
	}
	set, err := h.SetMetaContext("", nbdtest.ContextBaseAllocation, "x-nosuch:thing")
	if err != nil || len(set) != 1 || set[0].Name != nbdtest.ContextBaseAllocation {
		t.Fatalf("SET_META_CONTEXT: %v %v", set, err)
	}
	if _, err := h.Go("", nil); err != nil {
		t.Fatal(err)
	}
	c, err := h.Client()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	st, err := c.BlockStatus(0, 1<<20, 0)
	if err != nil || len(st[nbdtest.ContextBaseAllocation]) == 0 {
		t.Fatalf("BLOCK_STATUS: %v %v", st, err)
	}
}

// TestFlagsAdvertised checks the transmission flags for writable,
// read-only, capability-less and single-connection exports.
func TestFlagsAdvertised(t *testing.T) {
	ro := memdev.New(1<<20, memdev.Options{})
	e := newEnv(t,
		addExport(nbdserver.Export{Name: "ro", Device: ro, ReadOnly: true}),
		addExport(nbdserver.Export{Name: "plain", Device: plainDevice{memdev.New(1<<20, memdev.Options{})}}),
	)
	type want struct{ set, clear uint16 }
	for _, tc := range []struct {
		export     string
		structured bool
		want       want
	}{
		{"", false, want{
			set:   nbdtest.TFlagHasFlags | nbdtest.TFlagSendFlush | nbdtest.TFlagSendFUA | nbdtest.TFlagSendTrim | nbdtest.TFlagSendWriteZeroes | nbdtest.TFlagSendFastZero | nbdtest.TFlagCanMultiConn,
			clear: nbdtest.TFlagReadOnly | nbdtest.TFlagSendDF,
		}},
		{"", true, want{set: nbdtest.TFlagHasFlags | nbdtest.TFlagSendFlush | nbdtest.TFlagSendFUA, clear: nbdtest.TFlagReadOnly}},
		{"ro", false, want{set: nbdtest.TFlagHasFlags | nbdtest.TFlagReadOnly, clear: nbdtest.TFlagCanMultiConn | nbdtest.TFlagSendDF}},
		{"plain", false, want{set: nbdtest.TFlagHasFlags | nbdtest.TFlagSendFlush, clear: nbdtest.TFlagSendTrim | nbdtest.TFlagSendFastZero | nbdtest.TFlagCanMultiConn | nbdtest.TFlagReadOnly}},
	} {
		c := e.dial(nbdtest.Options{ExportName: tc.export, StructuredReplies: tc.structured})
		f := c.Export().Flags
		if f&tc.want.set != tc.want.set || f&tc.want.clear != 0 {
			t.Errorf("export %q structured=%v: flags %#x, want set %#x and clear %#x", tc.export, tc.structured, f, tc.want.set, tc.want.clear)
		}
		if f&(1<<13|1<<14|1<<15) != 0 {
			t.Errorf("export %q: undefined transmission flags set: %#x", tc.export, f)
		}
	}
}

// TestBadClientFlags: unknown client flags must make the server drop the
// connection (the spec's MUST); then the server keeps serving.
func TestBadClientFlags(t *testing.T) {
	e := newEnv(t)
	for _, flags := range []uint32{1 << 2, 1 << 31, 0xffffffff} {
		h, err := nbdtest.NewHandshake(e.conn())
		if err != nil {
			t.Fatal(err)
		}
		if err := h.SendClientFlags(flags | nbdtest.ClientFlagFixedNewstyle); err != nil {
			t.Fatal(err)
		}
		// Whatever the server says, it must end the connection.
		_ = h.SendOption(nbdtest.OptList, nil)
		if err := h.ExpectClosed(5 * time.Second); err != nil {
			t.Errorf("client flags %#x: %v", flags, err)
		}
	}
	e.checkAlive(nil, 0)
}

// TestStartTLSWithoutConfig: a server without TLS refuses STARTTLS with an
// error (UNSUP or POLICY) and stays usable in plaintext.
func TestStartTLSWithoutConfig(t *testing.T) {
	e := newEnv(t)
	h := e.handshake()
	_, err := h.Option(nbdtest.OptStartTLS, nil)
	if !errors.Is(err, nbdtest.RepErrUnsup) && !errors.Is(err, nbdtest.RepErrPolicy) {
		t.Fatalf("STARTTLS without TLS config: %v, want ERR_UNSUP or ERR_POLICY", err)
	}
	if _, err := h.Go("", nil); err != nil {
		t.Fatal(err)
	}
}

// TestOptExtendedHeaders: the option takes no data, takes precedence over
// STRUCTURED_REPLY (which then gets ERR_EXT_HEADER_REQD or an ACK that
// changes nothing: the client checks every later reply is extended).
func TestOptExtendedHeaders(t *testing.T) {
	e := newEnv(t)
	h := e.handshake()
	if _, err := h.Option(nbdtest.OptExtendedHeaders, []byte{0}); !errors.Is(err, nbdtest.RepErrInvalid) {
		t.Fatalf("EXTENDED_HEADERS with data: %v, want NBD_REP_ERR_INVALID", err)
	}
	if err := h.StructuredReply(); err != nil {
		t.Fatal(err)
	}
	if err := h.ExtendedHeaders(); err != nil {
		t.Fatalf("EXTENDED_HEADERS after STRUCTURED_REPLY: %v", err)
	}
	if err := h.StructuredReply(); err != nil && !errors.Is(err, nbdtest.RepErrExtHeaderReqd) {
		t.Fatalf("STRUCTURED_REPLY after EXTENDED_HEADERS: %v, want ACK or NBD_REP_ERR_EXT_HEADER_REQD", err)
	}
	if _, err := h.SetMetaContext("", nbdtest.ContextBaseAllocation); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Go("", nil); err != nil {
		t.Fatal(err)
	}
	c, err := h.Client()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if !c.Extended() {
		t.Fatal("extended headers lost")
	}
	roundTrip(t, c, 9)
	if _, err := c.BlockStatus(0, 1<<20, 0); err != nil {
		t.Fatal(err)
	}
}

// TestOptGoInfoRequests: unknown and repeated info requests are ignored;
// NBD_INFO_EXPORT is always sent.
func TestOptGoInfoRequests(t *testing.T) {
	e := newEnv(t)
	h := e.handshake()
	info, err := h.Go("", []uint16{999, nbdtest.InfoName, nbdtest.InfoName, nbdtest.InfoExport, 0xffff})
	if err != nil {
		t.Fatalf("GO with odd info requests: %v", err)
	}
	if info.Size != defaultSize {
		t.Fatalf("size %d", info.Size)
	}
	// A GO whose payload is cut short (count says 3 requests, 1 given).
	h = e.handshake()
	bad := append(nbdtest.InfoPayload("", nil)[:4], 0, 3, 0, 1)
	if _, err := h.Option(nbdtest.OptGo, bad); !errors.Is(err, nbdtest.RepErrInvalid) {
		t.Fatalf("GO with short info request list: %v, want NBD_REP_ERR_INVALID", err)
	}
	// Name length past the end of the option.
	if _, err := h.Option(nbdtest.OptInfo, []byte{0, 0, 1, 0, 'a'}); !errors.Is(err, nbdtest.RepErrInvalid) {
		t.Fatalf("INFO with name length past the end: %v, want NBD_REP_ERR_INVALID", err)
	}
	if _, err := h.Go("", nil); err != nil {
		t.Fatal(err)
	}
}

// TestMetaContextScope: BLOCK_STATUS is only valid if the final
// SET_META_CONTEXT succeeded, selected something, and named the export
// chosen by GO; otherwise the server SHOULD answer EINVAL (and must not
// send status for a context the client does not have: nbdtest fails that
// as a protocol violation).
func TestMetaContextScope(t *testing.T) {
	e := newEnv(t, addExport(nbdserver.Export{Name: "other", Device: memdev.New(1<<20, memdev.Options{})}))
	for _, tc := range []struct {
		name  string
		setup func(h *nbdtest.Handshake) error
	}{
		{"no queries selects nothing", func(h *nbdtest.Handshake) error {
			mc, err := h.SetMetaContext("")
			if err == nil && len(mc) != 0 {
				return fmt.Errorf("SET_META_CONTEXT with zero queries selected %v", mc)
			}
			return err
		}},
		{"failed SET replaces the set", func(h *nbdtest.Handshake) error {
			if _, err := h.SetMetaContext("", nbdtest.ContextBaseAllocation); err != nil {
				return err
			}
			if _, err := h.SetMetaContext("nosuch", nbdtest.ContextBaseAllocation); !errors.Is(err, nbdtest.RepErrUnknown) {
				return fmt.Errorf("SET for unknown export: %v", err)
			}
			return nil
		}},
		{"SET for another export", func(h *nbdtest.Handshake) error {
			_, err := h.SetMetaContext("other", nbdtest.ContextBaseAllocation)
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := e.handshake()
			if err := h.StructuredReply(); err != nil {
				t.Fatal(err)
			}
			if err := tc.setup(h); err != nil {
				t.Fatal(err)
			}
			if _, err := h.Go("", nil); err != nil {
				t.Fatal(err)
			}
			c, err := h.Client()
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			runErrCases(t, c, []errCase{{"BLOCK_STATUS without valid contexts",
				nbdtest.Request{Type: nbdtest.CmdBlockStatus, Length: 4096}, []nbdtest.Errno{nbdtest.EINVAL}}})
		})
	}
}
