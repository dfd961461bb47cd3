package e2e

import (
	"bytes"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/extentd/extentd/device/memdev"
	"github.com/extentd/extentd/nbdserver"
	"github.com/extentd/extentd/nbdserver/nbdtest"
)

// headerStyles are the three reply styles a client can negotiate.
var headerStyles = []struct {
	name string
	opts nbdtest.Options
}{
	{"simple", nbdtest.Options{}},
	{"structured", nbdtest.Options{StructuredReplies: true, MetaContexts: []string{nbdtest.ContextBaseAllocation}}},
	{"extended", nbdtest.Options{ExtendedHeaders: true, MetaContexts: []string{nbdtest.ContextBaseAllocation}}},
}

// TestCommands runs every command with every header style and checks the
// data through reads.
func TestCommands(t *testing.T) {
	e := newEnv(t)
	for i, hs := range headerStyles {
		t.Run(hs.name, func(t *testing.T) {
			c := e.dial(hs.opts)
			base := int64(i) * 8 << 20
			data := pattern(byte(i+1), 1<<20)

			// WRITE, WRITE+FUA, READ.
			if _, err := c.WriteAt(data[:512<<10], base); err != nil {
				t.Fatal(err)
			}
			if _, err := c.WriteAtFlags(data[512<<10:], base+512<<10, nbdtest.CmdFlagFUA); err != nil {
				t.Fatal(err)
			}
			got := make([]byte, len(data))
			if _, err := c.ReadAt(got, base); err != nil || !bytes.Equal(got, data) {
				t.Fatalf("read back: %v, equal %v", err, bytes.Equal(got, data))
			}
			// Unaligned read and write.
			if _, err := c.WriteAt([]byte("unaligned"), base+1001); err != nil {
				t.Fatal(err)
			}
			copy(data[1001:], "unaligned")
			if _, err := c.ReadAt(got[:3000], base+77); err != nil || !bytes.Equal(got[:3000], data[77:3077]) {
				t.Fatalf("unaligned read: %v", err)
			}
			if err := c.Flush(); err != nil {
				t.Fatal(err)
			}

			// WRITE_ZEROES plain, NO_HOLE, FAST_ZERO (advertised by memdev).
			for j, f := range []uint16{0, nbdtest.CmdFlagNoHole, nbdtest.CmdFlagFastZero, nbdtest.CmdFlagFUA | nbdtest.CmdFlagNoHole} {
				off := int64(j) * 64 << 10
				if err := c.Zero(base+off, 64<<10, f); err != nil {
					t.Fatalf("WRITE_ZEROES flags %#x: %v", f, err)
				}
				clear(data[off : off+64<<10])
			}
			// TRIM (this project's devices read trimmed ranges as zeros).
			if err := c.Trim(base+512<<10, 128<<10, 0); err != nil {
				t.Fatal(err)
			}
			if err := c.Trim(base+640<<10, 4096, nbdtest.CmdFlagFUA); err != nil {
				t.Fatal(err)
			}
			clear(data[512<<10 : 640<<10+4096])
			if err := c.Cache(base, 1<<20); err != nil {
				t.Fatal(err)
			}
			if _, err := c.ReadAt(got, base); err != nil || !bytes.Equal(got, data) {
				t.Fatalf("read after zero/trim: %v, equal %v", err, bytes.Equal(got, data))
			}

			// Reads of a never-written range return zeros (sparse
			// structured replies may use hole chunks).
			call, err := c.Do(nbdtest.Request{Type: nbdtest.CmdRead, Offset: uint64(base + 4<<20), Length: 1 << 20})
			if err != nil || !bytes.Equal(call.Data, make([]byte, 1<<20)) {
				t.Fatalf("sparse read: %v", err)
			}
			t.Logf("sparse 1 MiB read answered with %d message(s), first %+v", len(call.Chunks), call.Chunks[0])

			// DF: at most one content chunk (checked by the client), even
			// over a range mixing data and a hole.
			if c.Export().Has(nbdtest.TFlagSendDF) {
				if _, err := c.WriteAt([]byte("island"), base+6<<20+30000); err != nil {
					t.Fatal(err)
				}
				if _, err := c.ReadAtFlags(got[:64<<10], base+6<<20, nbdtest.CmdFlagDF); err != nil {
					t.Fatalf("DF read: %v", err)
				}
				want := make([]byte, 64<<10)
				copy(want[30000:], "island")
				if !bytes.Equal(got[:64<<10], want) {
					t.Fatal("DF read over data and hole returned wrong data")
				}
			} else if c.Structured() {
				t.Logf("server does not offer SEND_DF with structured replies")
			}

			if c.Structured() {
				checkBlockStatus(t, c, base)
			}

			// With SEND_FUA the server MUST accept FUA on every command,
			// even where it means nothing.
			if c.Export().Has(nbdtest.TFlagSendFUA) {
				fua := nbdtest.CmdFlagFUA
				for _, req := range []nbdtest.Request{
					{Type: nbdtest.CmdRead, Flags: fua, Offset: uint64(base), Length: 4096},
					{Type: nbdtest.CmdFlush, Flags: fua},
					{Type: nbdtest.CmdCache, Flags: fua, Offset: uint64(base), Length: 4096},
				} {
					if _, err := c.Do(req); err != nil {
						t.Errorf("%s with FUA: %v", nbdtest.CmdName(req.Type), err)
					}
				}
				if c.Structured() {
					if _, err := c.BlockStatus(base, 4096, fua); err != nil {
						t.Errorf("BLOCK_STATUS with FUA: %v", err)
					}
				}
			}
			if err := c.Err(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// checkBlockStatus checks base:allocation around written, zeroed and
// never-written ranges set up by TestCommands at base.
func checkBlockStatus(t *testing.T, c *nbdtest.Client, base int64) {
	t.Helper()
	// Never written: must read as zero.
	st, err := c.BlockStatus(base+4<<20, 1<<20, 0)
	if err != nil {
		t.Fatal(err)
	}
	ext := st[nbdtest.ContextBaseAllocation]
	if len(ext) == 0 || ext[0].Flags&nbdtest.StateZero == 0 {
		t.Errorf("never-written range: extents %+v, want ZERO set on the first", ext)
	}
	// Written data (after the zeroed/trimmed ranges): not zero.
	st, err = c.BlockStatus(base+768<<10, 64<<10, 0)
	if err != nil {
		t.Fatal(err)
	}
	ext = st[nbdtest.ContextBaseAllocation]
	if len(ext) == 0 || ext[0].Flags&nbdtest.StateZero != 0 || ext[0].Flags&nbdtest.StateHole != 0 {
		t.Errorf("written range: extents %+v, want data", ext)
	}
	// A status query over the whole export covers it contiguously.
	size := int64(c.Export().Size)
	var covered int64
	for covered < size {
		st, err := c.BlockStatus(covered, size-covered, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, x := range st[nbdtest.ContextBaseAllocation] {
			covered += int64(x.Length)
		}
	}
	// REQ_ONE: exactly one descriptor (checked by the client).
	if _, err := c.BlockStatus(base, 4<<20, nbdtest.CmdFlagReqOne); err != nil {
		t.Fatalf("REQ_ONE: %v", err)
	}
}

// TestExtendedHeaders64 uses 64-bit lengths, which need extended headers:
// TRIM, WRITE_ZEROES and BLOCK_STATUS over more than 4 GiB.
func TestExtendedHeaders64(t *testing.T) {
	const size = 6 << 30
	big := memdev.New(size, memdev.Options{})
	e := newEnv(t, addExport(nbdserver.Export{Name: "big", Device: big}))
	c := e.dial(nbdtest.Options{ExportName: "big", ExtendedHeaders: true, MetaContexts: []string{nbdtest.ContextBaseAllocation}})
	if !c.Extended() {
		t.Fatal("extended headers not in use")
	}
	mark := []byte("beyond 4 GiB")
	if _, err := c.WriteAt(mark, 5<<30); err != nil {
		t.Fatal(err)
	}
	st, err := c.BlockStatus(0, 5<<30+4096, 0)
	if err != nil {
		t.Fatal(err)
	}
	var sum uint64
	for _, x := range st[nbdtest.ContextBaseAllocation] {
		sum += x.Length
	}
	if sum == 0 {
		t.Fatal("no extents")
	}
	t.Logf("64-bit block status: %d extents covering %d bytes", len(st[nbdtest.ContextBaseAllocation]), sum)
	if err := c.Zero(0, 5<<30+4096, 0); err != nil {
		t.Fatalf("WRITE_ZEROES of 5 GiB: %v", err)
	}
	got := make([]byte, len(mark))
	if _, err := c.ReadAt(got, 5<<30); err != nil || !bytes.Equal(got, make([]byte, len(mark))) {
		t.Fatalf("after zero: %q %v", got, err)
	}
	if _, err := c.WriteAt(mark, 5<<30); err != nil {
		t.Fatal(err)
	}
	if err := c.Trim(4096, 5<<30-4096, 0); err != nil {
		t.Fatalf("TRIM of 5 GiB: %v", err)
	}
	if _, err := c.ReadAt(got, 5<<30); err != nil || !bytes.Equal(got, mark) {
		t.Fatalf("data after trim below it: %q %v", got, err)
	}
}

// TestOutOfOrderReplies keeps many mixed requests in flight on one
// connection and checks each reply reached its own request.
func TestOutOfOrderReplies(t *testing.T) {
	e := newEnv(t)
	for _, hs := range headerStyles {
		t.Run(hs.name, func(t *testing.T) {
			c := e.dial(hs.opts)
			const n = 128
			var calls []*nbdtest.Call
			for i := 0; i < n; i++ {
				req := nbdtest.Request{Type: nbdtest.CmdWrite, Offset: uint64(i) * 8192, Payload: pattern(byte(i), 8192)}
				if i%4 == 3 {
					req = nbdtest.Request{Type: nbdtest.CmdFlush}
				}
				call, err := c.Submit(req)
				if err != nil {
					t.Fatal(err)
				}
				calls = append(calls, call)
			}
			for _, call := range calls {
				if err := call.Wait(20 * time.Second); err != nil {
					t.Fatal(err)
				}
			}
			calls = calls[:0]
			for i := 0; i < n; i++ {
				call, err := c.Submit(nbdtest.Request{Type: nbdtest.CmdRead, Offset: uint64(i) * 8192, Length: 8192})
				if err != nil {
					t.Fatal(err)
				}
				calls = append(calls, call)
			}
			for i, call := range calls {
				if err := call.Wait(20 * time.Second); err != nil {
					t.Fatal(err)
				}
				if i%4 != 3 && !bytes.Equal(call.Data, pattern(byte(i), 8192)) {
					t.Fatalf("read %d got another request's data", i)
				}
			}
		})
	}
}

// TestConcurrentClients: two clients write disjoint ranges with many
// requests in flight; a third verifies everything.
func TestConcurrentClients(t *testing.T) {
	e := newEnv(t)
	const blocks, bs = 512, 16 << 10
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	for w := 0; w < 2; w++ {
		c := e.dial(headerStyles[w].opts)
		wg.Add(1)
		go func() {
			defer wg.Done()
			var calls []*nbdtest.Call
			for i := w; i < blocks; i += 2 {
				call, err := c.Submit(nbdtest.Request{Type: nbdtest.CmdWrite, Offset: uint64(i) * bs, Payload: pattern(byte(i), bs)})
				if err != nil {
					errs <- err
					return
				}
				calls = append(calls, call)
				if len(calls) >= 64 {
					if err := calls[0].Wait(20 * time.Second); err != nil {
						errs <- err
						return
					}
					calls = calls[1:]
				}
			}
			for _, call := range calls {
				if err := call.Wait(20 * time.Second); err != nil {
					errs <- err
					return
				}
			}
			if err := c.Flush(); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	v := e.dial(nbdtest.Options{StructuredReplies: true})
	got := make([]byte, bs)
	for i := 0; i < blocks; i++ {
		if _, err := v.ReadAt(got, int64(i)*bs); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, pattern(byte(i), bs)) {
			t.Fatalf("block %d corrupted", i)
		}
	}
}

// TestDisconnect: after NBD_CMD_DISC the server finishes and closes.
func TestDisconnect(t *testing.T) {
	e := newEnv(t)
	c := e.dial(nbdtest.Options{})
	call, err := c.Submit(nbdtest.Request{Type: nbdtest.CmdWrite, Offset: 0, Payload: pattern(9, 1<<20)})
	if err != nil {
		t.Fatal(err)
	}
	if err := call.Wait(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	e.checkAlive(pattern(9, 1<<20), 0)
}

// errCase is one request that must fail with one of want, leaving the
// connection usable.
type errCase struct {
	name string
	req  nbdtest.Request
	want []nbdtest.Errno
}

func runErrCases(t *testing.T, c *nbdtest.Client, cases []errCase) {
	t.Helper()
	for _, tc := range cases {
		_, err := c.Do(tc.req)
		ok := false
		for _, w := range tc.want {
			ok = ok || errors.Is(err, w)
		}
		if !ok {
			t.Errorf("%s (%s flags %#x off %d len %d): got %v, want %v", tc.name, nbdtest.CmdName(tc.req.Type), tc.req.Flags, tc.req.Offset, tc.req.Length, err, tc.want)
		}
		if err := c.Err(); err != nil {
			t.Fatalf("%s: connection died: %v", tc.name, err)
		}
	}
	// The connection still works.
	if _, err := c.ReadAt(make([]byte, 4096), 0); err != nil {
		t.Fatalf("read after error cases: %v", err)
	}
}

// TestErrorReplies covers the error codes the spec asks for.
func TestErrorReplies(t *testing.T) {
	const size = defaultSize
	e := newEnv(t,
		addExport(nbdserver.Export{Name: "ro", Device: memdev.New(1<<20, memdev.Options{}), ReadOnly: true}),
		addExport(nbdserver.Export{Name: "plain", Device: plainDevice{memdev.New(1<<20, memdev.Options{})}}),
	)
	for _, hs := range headerStyles {
		t.Run(hs.name, func(t *testing.T) {
			c := e.dial(hs.opts)
			r := func(typ, flags uint16, off, n uint64) nbdtest.Request {
				return nbdtest.Request{Type: typ, Flags: flags, Offset: off, Length: n}
			}
			einval := []nbdtest.Errno{nbdtest.EINVAL}
			enospc := []nbdtest.Errno{nbdtest.ENOSPC}
			cases := []errCase{
				{"read past end", r(nbdtest.CmdRead, 0, size-1024, 4096), einval},
				{"read at end", r(nbdtest.CmdRead, 0, size, 1), einval},
				{"read offset overflow", r(nbdtest.CmdRead, 0, 1<<64-2048, 4096), einval},
				{"trim past end", r(nbdtest.CmdTrim, 0, size-4096, 8192), einval},
				{"cache past end", r(nbdtest.CmdCache, 0, size, 4096), einval},
				{"write past end", nbdtest.Request{Type: nbdtest.CmdWrite, Offset: size - 512, Payload: make([]byte, 1024)}, enospc},
				{"write zeroes past end", r(nbdtest.CmdWriteZeroes, 0, size-512, 1024), enospc},
				{"write zeroes overflow", r(nbdtest.CmdWriteZeroes, 0, 1<<64-512, 1024), []nbdtest.Errno{nbdtest.ENOSPC, nbdtest.EINVAL}},
				{"unknown command", r(42, 0, 0, 4096), einval},
				{"NBD_CMD_RESIZE not offered", r(nbdtest.CmdResize, 0, 0, 0), einval},
				{"unknown flag bit 9", r(nbdtest.CmdRead, 1<<9, 0, 4096), einval},
				{"NO_HOLE on write", nbdtest.Request{Type: nbdtest.CmdWrite, Flags: nbdtest.CmdFlagNoHole, Payload: make([]byte, 512)}, einval},
				{"REQ_ONE on read", r(nbdtest.CmdRead, nbdtest.CmdFlagReqOne, 0, 4096), einval},
				{"FAST_ZERO on trim", r(nbdtest.CmdTrim, nbdtest.CmdFlagFastZero, 0, 4096), einval},
			}
			if c.Extended() {
				// A payload on a command without a payload form: the server
				// consumes it and answers EINVAL (ext-header spec SHOULD).
				cases = append(cases, errCase{"READ with PAYLOAD_LEN",
					nbdtest.Request{Type: nbdtest.CmdRead, Flags: nbdtest.CmdFlagPayloadLen, Length: 512, Payload: make([]byte, 512)}, einval})
			} else {
				cases = append(cases, errCase{"PAYLOAD_LEN in compact mode", r(nbdtest.CmdRead, nbdtest.CmdFlagPayloadLen, 0, 512), einval})
			}
			if c.Structured() {
				cases = append(cases, errCase{"DF on WRITE", nbdtest.Request{Type: nbdtest.CmdWrite, Flags: nbdtest.CmdFlagDF, Payload: make([]byte, 512)}, einval})
			}
			if hs.name == "simple" {
				cases = append(cases,
					errCase{"BLOCK_STATUS without meta context", r(nbdtest.CmdBlockStatus, 0, 0, 4096), einval},
					errCase{"DF without structured replies", r(nbdtest.CmdRead, nbdtest.CmdFlagDF, 0, 4096), einval},
				)
			} else {
				cases = append(cases,
					errCase{"block status past end", r(nbdtest.CmdBlockStatus, 0, size, 4096), einval},
				)
			}
			runErrCases(t, c, cases)

			ro := e.dial(nbdtest.Options{ExportName: "ro", ExtendedHeaders: hs.opts.ExtendedHeaders, StructuredReplies: hs.opts.StructuredReplies})
			eperm := []nbdtest.Errno{nbdtest.EPERM}
			runErrCases(t, ro, []errCase{
				{"write on read-only", nbdtest.Request{Type: nbdtest.CmdWrite, Payload: make([]byte, 4096)}, eperm},
				{"write FUA on read-only", nbdtest.Request{Type: nbdtest.CmdWrite, Flags: nbdtest.CmdFlagFUA, Payload: make([]byte, 4096)}, eperm},
				{"trim on read-only", r(nbdtest.CmdTrim, 0, 0, 4096), eperm},
				{"write zeroes on read-only", r(nbdtest.CmdWriteZeroes, 0, 0, 4096), eperm},
			})

			plain := e.dial(nbdtest.Options{ExportName: "plain", ExtendedHeaders: hs.opts.ExtendedHeaders, StructuredReplies: hs.opts.StructuredReplies})
			if plain.Export().Has(nbdtest.TFlagSendFastZero) {
				t.Fatalf("plain export advertises SEND_FAST_ZERO")
			}
			cases = []errCase{
				// nbdkit 1.32.5 aborts the whole server on this (bug 1k-1).
				{"FAST_ZERO not advertised", r(nbdtest.CmdWriteZeroes, nbdtest.CmdFlagFastZero, 0, 4096), einval},
			}
			if !plain.Export().Has(nbdtest.TFlagSendTrim) {
				cases = append(cases, errCase{"TRIM not advertised", r(nbdtest.CmdTrim, 0, 0, 4096), einval})
			}
			if !plain.Export().Has(nbdtest.TFlagSendCache) {
				cases = append(cases, errCase{"CACHE not advertised", r(nbdtest.CmdCache, 0, 0, 4096), einval})
			}
			if !plain.Export().Has(nbdtest.TFlagSendWriteZeroes) {
				cases = append(cases, errCase{"WRITE_ZEROES not advertised", r(nbdtest.CmdWriteZeroes, 0, 0, 4096), einval})
			} else if _, err := plain.Do(r(nbdtest.CmdWriteZeroes, 0, 0, 4096)); err != nil {
				t.Errorf("WRITE_ZEROES advertised on a device without Zeroer but failed: %v", err)
			}
			if plain.Export().Has(nbdtest.TFlagSendFlush) {
				if err := plain.Flush(); err != nil {
					t.Errorf("FLUSH on plain export: %v", err)
				}
			}
			runErrCases(t, plain, cases)
		})
	}
	e.checkAlive(nil, 0)
}

// TestZeroLengthRequests: behaviour is unspecified, but the connection
// must survive.
func TestZeroLengthRequests(t *testing.T) {
	e := newEnv(t)
	c := e.dial(nbdtest.Options{StructuredReplies: true})
	for _, typ := range []uint16{nbdtest.CmdRead, nbdtest.CmdWrite, nbdtest.CmdTrim, nbdtest.CmdWriteZeroes, nbdtest.CmdCache} {
		_, err := c.Do(nbdtest.Request{Type: typ, Offset: 4096})
		var ne *nbdtest.Error
		if err != nil && !errors.As(err, &ne) {
			t.Fatalf("zero-length %s: %v", nbdtest.CmdName(typ), err)
		}
	}
	if _, err := c.ReadAt(make([]byte, 512), 0); err != nil {
		t.Fatal(err)
	}
}

// TestBlockSizeRespected: an export with MinBlock 4096 reports it, and
// the spec lets the server reject misaligned requests with EINVAL.
func TestBlockSizeConstraints(t *testing.T) {
	e := newEnv(t, addExport(nbdserver.Export{Name: "4k", Device: memdev.New(4<<20, memdev.Options{}), MinBlock: 4096, PrefBlock: 65536, MaxBlock: 1 << 20}))
	c := e.dial(nbdtest.Options{ExportName: "4k"})
	info := c.Export()
	if info.MinBlock != 4096 || info.PrefBlock != 65536 || info.MaxBlock != 1<<20 {
		t.Fatalf("block sizes %d/%d/%d, want 4096/65536/1048576", info.MinBlock, info.PrefBlock, info.MaxBlock)
	}
	checkBlockSizes(t, info)
	// nbd-client never asks for NBD_INFO_BLOCK_SIZE; the server must not
	// answer NBD_REP_ERR_BLOCK_SIZE_REQD to it (nor refuse EXPORT_NAME).
	e.dial(nbdtest.Options{ExportName: "4k", InfoRequests: []uint16{}})
	e.dial(nbdtest.Options{ExportName: "4k", UseExportName: true})
	if _, err := c.WriteAt(make([]byte, 8192), 4096); err != nil {
		t.Fatalf("aligned write: %v", err)
	}
	// Misaligned or oversized requests may be refused with EINVAL, but a
	// refused WRITE's payload must still be consumed: the next request
	// has to work on the same connection.
	for _, req := range []nbdtest.Request{
		{Type: nbdtest.CmdRead, Offset: 100, Length: 4096},
		{Type: nbdtest.CmdWrite, Offset: 100, Payload: pattern(8, 4096)},
		{Type: nbdtest.CmdWrite, Offset: 4096, Payload: pattern(9, 1000)},
		{Type: nbdtest.CmdWrite, Offset: 0, Payload: pattern(10, 2<<20)}, // over MaxBlock, under 32 MiB
		{Type: nbdtest.CmdTrim, Offset: 512, Length: 4096},
	} {
		_, err := c.Do(req)
		if err != nil && !errors.Is(err, nbdtest.EINVAL) {
			t.Fatalf("%s [%d,+%d) on 4k export: %v, want success or EINVAL", nbdtest.CmdName(req.Type), req.Offset, max(req.Length, uint64(len(req.Payload))), err)
		}
		got := make([]byte, 4096)
		if _, err := c.ReadAt(got, 8192); err != nil {
			t.Fatalf("read after %s: %v (stream out of sync?)", nbdtest.CmdName(req.Type), err)
		}
	}
}
