package nbdserver

import (
	"bytes"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/extentd/extentd/device"
	"github.com/extentd/extentd/device/memdev"
)

// noWaitDev is a device.NoWaiter over memory whose Try methods succeed
// below fast (and count their calls) and refuse above it, as a cache does
// for a miss; ReadAt and WriteAt count the requests that reached them.
type noWaitDev struct {
	*memdev.Dev
	fast                    int64
	tryReads, tryWrites     atomic.Int64
	plainReads, plainWrites atomic.Int64
}

var _ device.NoWaiter = (*noWaitDev)(nil)

func (d *noWaitDev) TryReadAt(p []byte, off int64) (bool, error) {
	if off+int64(len(p)) > d.fast {
		return false, nil
	}
	d.tryReads.Add(1)
	_, err := d.Dev.ReadAt(p, off)
	return true, err
}

func (d *noWaitDev) TryWriteAt(p []byte, off int64) (bool, error) {
	if off+int64(len(p)) > d.fast {
		return false, nil
	}
	d.tryWrites.Add(1)
	_, err := d.Dev.WriteAt(p, off)
	return true, err
}

func (d *noWaitDev) ReadAt(p []byte, off int64) (int, error) {
	d.plainReads.Add(1)
	return d.Dev.ReadAt(p, off)
}

func (d *noWaitDev) WriteAt(p []byte, off int64) (int, error) {
	d.plainWrites.Add(1)
	return d.Dev.WriteAt(p, off)
}

// countingConn counts the Write calls on the server's side of a pipe.
type countingConn struct {
	net.Conn
	writes atomic.Int64
}

func (c *countingConn) Write(p []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(p)
}

// TestNoWaitBatch: READs and WRITEs that the device can do at once are
// answered by the reader itself, and a batch of them read in one go is
// answered with one write to the socket; requests it refuses, FUA writes and
// sparse reads go to the workers; every reply is right.
func TestNoWaitBatch(t *testing.T) {
	const size, fast, bs = 1 << 20, 512 << 10, 4096
	for _, structured := range []bool{false, true} {
		name := "simple"
		if structured {
			name = "structured"
		}
		t.Run(name, func(t *testing.T) {
			dev := &noWaitDev{Dev: memdev.New(size, memdev.Options{}), fast: fast}
			data := pattern(size, 3)
			dev.Dev.WriteAt(data, 0)
			s := newTestServer(t, Options{Exports: []Export{{Device: dev}}})
			var counted *countingConn
			rc := pipeClientVia(t, s, func(c net.Conn) net.Conn {
				counted = &countingConn{Conn: c}
				return counted
			})
			rc.open("", structured, false, false)

			// One batch: 8 fast reads and 8 fast writes, sent in one write.
			var batch []byte
			var hdr [sizeExtendedRequest]byte
			for i := range 16 {
				h := requestHeader{cmd: CmdRead, cookie: uint64(1 + i), off: uint64(i * bs), length: bs}
				var payload []byte
				if i >= 8 {
					h.cmd = CmdWrite
					payload = pattern(bs, byte(100+i))
					copy(data[h.off:], payload)
				}
				n := putRequest(hdr[:], h, false)
				batch = append(append(batch, hdr[:n]...), payload...)
			}
			before := counted.writes.Load()
			rc.write(batch)
			for i := range 16 {
				readLen := 0 // inline replies leave in request order: reads first
				if i < 8 {
					readLen = bs
				}
				r := rc.readReply(readLen)
				if r.errno != 0 {
					t.Fatalf("cookie %d: errno %v", r.cookie, r.errno)
				}
				if r.cookie <= 8 {
					got := r.data
					if structured {
						got = r.data[8:] // OFFSET_DATA: offset, then data
					}
					if want := data[(r.cookie-1)*bs:][:bs]; !bytes.Equal(got, want) {
						t.Fatalf("read cookie %d: wrong data", r.cookie)
					}
				}
			}
			if w := counted.writes.Load() - before; w > 2 {
				t.Errorf("16 requests read together were answered with %d writes, want 1 (2 if the batch was split)", w)
			}
			if r, w := dev.tryReads.Load(), dev.tryWrites.Load(); r != 8 || w != 8 {
				t.Errorf("%d reads and %d writes done at once, want 8 and 8", r, w)
			}
			if r, w := dev.plainReads.Load(), dev.plainWrites.Load(); r != 0 || w != 0 {
				t.Errorf("%d reads and %d writes went to a worker, want none", r, w)
			}

			// Refused by the device, FUA, or a sparse read: workers.
			if errno, got, _ := rc.do(requestHeader{cmd: CmdRead, cookie: 20, off: fast, length: bs}, nil); errno != 0 || !bytes.Equal(got, data[fast:][:bs]) {
				t.Fatalf("read past the fast part: %v", errno)
			}
			if errno, _, _ := rc.do(requestHeader{cmd: CmdWrite, flags: cmdFlagFUA, cookie: 21, off: 0, length: bs}, data[:bs]); errno != 0 {
				t.Fatalf("FUA write: %v", errno)
			}
			if r, w := dev.plainReads.Load(), dev.plainWrites.Load(); r != 1 || w != 1 {
				t.Errorf("%d reads and %d writes went to a worker, want 1 and 1", r, w)
			}
			got := make([]byte, size)
			dev.Dev.ReadAt(got, 0)
			if !bytes.Equal(got, data) {
				t.Fatal("device contents differ from what was written")
			}
		})
	}
}

// idleDev counts Idle calls.
type idleDev struct {
	*memdev.Dev
	idles atomic.Int64
}

var _ device.Idler = (*idleDev)(nil)

func (d *idleDev) Idle() bool { d.idles.Add(1); return false }

// TestIdleCalled: with everything answered and the next request not there
// yet, the reader gives the device its idle time; not while a request is
// still being worked on.
func TestIdleCalled(t *testing.T) {
	mem := memdev.New(1<<20, memdev.Options{})
	dev := &idleDev{Dev: mem}
	rc := pipeClient(t, newTestServer(t, Options{Exports: []Export{{Device: dev}}}))
	rc.open("", false, false, false)
	before := dev.idles.Load()
	if errno, _, _ := rc.do(requestHeader{cmd: CmdWrite, cookie: 1, length: 4096}, pattern(4096, 1)); errno != 0 {
		t.Fatalf("write: %v", errno)
	}
	deadline := time.Now().Add(5 * time.Second)
	for dev.idles.Load() == before {
		if time.Now().After(deadline) {
			t.Fatal("Idle never called after a request was answered")
		}
		time.Sleep(time.Millisecond)
	}

	// A request held in the device: no Idle until it is answered.
	g := &gateDevice{Device: dev, entered: make(chan struct{}, 1), gate: make(chan struct{})}
	idler := &gatedIdler{gateDevice: g, idle: dev}
	rc2 := pipeClient(t, newTestServer(t, Options{Exports: []Export{{Device: idler}}}))
	rc2.open("", false, false, false)
	rc2.send(requestHeader{cmd: CmdRead, cookie: 2, length: 512}, nil)
	<-g.entered
	n := dev.idles.Load()
	time.Sleep(20 * time.Millisecond)
	if got := dev.idles.Load(); got != n {
		t.Fatalf("Idle called %d times while a read was in flight", got-n)
	}
	close(g.gate)
	if r := rc2.readReply(512); r.errno != 0 {
		t.Fatalf("read: %v", r.errno)
	}
}

// gatedIdler is a gateDevice that is also an Idler.
type gatedIdler struct {
	*gateDevice
	idle *idleDev
}

func (d *gatedIdler) Idle() bool { return d.idle.Idle() }
