package nbdserver

import (
	"bytes"
	"testing"

	"github.com/extentd/extentd/device"
	"github.com/extentd/extentd/device/memdev"
)

// scriptedExtents is a device whose Extents reports a fixed list, however
// wrong, to check the server copes with any Extenter.
type scriptedExtents struct {
	device.Device
	exts []device.Extent
}

func (s *scriptedExtents) Extents(off, n int64, yield func(device.Extent) bool) error {
	for _, e := range s.exts {
		if !yield(e) {
			break
		}
	}
	return nil
}

func TestSparseReadManyExtents(t *testing.T) {
	d := memdev.New(4<<20, memdev.Options{})
	want := make([]byte, 4<<20)
	for i := 0; i < 64; i += 2 { // every other 64 KiB chunk has data
		p := pattern(64<<10, byte(i))
		d.WriteAt(p, int64(i)<<16)
		copy(want[i<<16:], p)
	}
	rc := pipeClient(t, newTestServer(t, Options{Exports: []Export{{Device: d}}}))
	rc.open("", true, false, false)
	errno, got, chunks := rc.do(requestHeader{cmd: CmdRead, cookie: 1, off: 4096, length: 4<<20 - 8192}, nil)
	if errno != 0 || !bytes.Equal(got, want[4096:4<<20-4096]) {
		t.Fatalf("errno %v, data equal %v", errno, bytes.Equal(got, want[4096:4<<20-4096]))
	}
	if len(chunks) > maxSegs {
		t.Fatalf("%d chunks, want at most %d", len(chunks), maxSegs)
	}
}

func TestMisbehavingExtenter(t *testing.T) {
	mem := memdev.New(1<<20, memdev.Options{})
	data := pattern(1<<20, 11)
	mem.WriteAt(data, 0)
	dev := &scriptedExtents{Device: mem, exts: []device.Extent{
		{Off: 8192, Len: 4096, Flags: device.Zero},               // gap before it
		{Off: 0, Len: 100, Flags: 0},                             // goes backwards
		{Off: 12288, Len: 1 << 30, Flags: device.Hole},           // past the end, hole but not zero
		{Off: 1 << 40, Len: 1, Flags: device.Zero | device.Hole}, // nonsense
	}}
	rc := pipeClient(t, newTestServer(t, Options{Exports: []Export{{Device: dev}}}))
	rc.open("", true, true, false)
	// A gap must be read as data; a Zero extent may be a hole. Everything
	// not reported as Zero must come from the device.
	errno, got, _ := rc.do(requestHeader{cmd: CmdRead, cookie: 1, off: 0, length: 64 << 10}, nil)
	if errno != 0 {
		t.Fatalf("read: %v", errno)
	}
	want := append([]byte(nil), data[:64<<10]...)
	clear(want[8192:12288]) // reported Zero: sent as a hole (it is 4 KiB)
	if !bytes.Equal(got, want) {
		t.Fatal("read through a misbehaving extenter returned wrong data")
	}
	errno, _, chunks := rc.do(requestHeader{cmd: CmdBlockStatus, cookie: 2, off: 0, length: 64 << 10}, nil)
	if errno != 0 || len(chunks) != 1 {
		t.Fatalf("block status: %v %+v", errno, chunks)
	}
	var sum uint64
	for _, e := range decodeExtents(t, chunks[0], false) {
		if e[0] == 0 {
			t.Fatal("zero-length descriptor")
		}
		sum += e[0]
	}
	if sum == 0 || sum > 64<<10 {
		t.Fatalf("descriptors cover %d bytes of a 64 KiB request", sum)
	}
}

func TestBlockStatusDescriptorLimit(t *testing.T) {
	mem := memdev.New(1<<30, memdev.Options{})
	var exts []device.Extent
	for i := range int64(3 * maxDescriptors) {
		exts = append(exts, device.Extent{Off: i * 4096, Len: 4096, Flags: device.ExtentFlags(i%2) * device.Zero})
	}
	dev := &scriptedExtents{Device: mem, exts: exts}
	rc := pipeClient(t, newTestServer(t, Options{Exports: []Export{{Device: dev}}}))
	rc.open("", false, true, true)
	errno, _, chunks := rc.do(requestHeader{cmd: CmdBlockStatus, cookie: 1, off: 0, length: 1 << 30}, nil)
	if errno != 0 || len(chunks) != 1 {
		t.Fatalf("block status: %v", errno)
	}
	got := decodeExtents(t, chunks[0], true)
	if len(got) != maxDescriptors {
		t.Fatalf("%d descriptors, want the limit %d", len(got), maxDescriptors)
	}
	for i, e := range got {
		if e[0] != 4096 || e[1] != uint64(i%2)*stateZero {
			t.Fatalf("descriptor %d = %v", i, e)
		}
	}
}
