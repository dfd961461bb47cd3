package memdev

import (
	"bytes"
	"errors"
	"syscall"
	"testing"

	"github.com/extentd/extentd/device"
)

func read(t *testing.T, d *Dev, off int64, n int) []byte {
	t.Helper()
	p := make([]byte, n)
	if _, err := d.ReadAt(p, off); err != nil {
		t.Fatalf("ReadAt(%d,%d): %v", off, n, err)
	}
	return p
}

func TestReadWriteAcrossChunks(t *testing.T) {
	d := New(4*chunkSize, Options{})
	p := bytes.Repeat([]byte{0xab}, chunkSize+10)
	off := int64(chunkSize - 5)
	if _, err := d.WriteAt(p, off); err != nil {
		t.Fatal(err)
	}
	if got := read(t, d, off, len(p)); !bytes.Equal(got, p) {
		t.Fatal("read back differs")
	}
	if got := read(t, d, 0, 8); !bytes.Equal(got, make([]byte, 8)) {
		t.Fatalf("unwritten bytes = %x, want zeros", got)
	}
	if _, err := d.WriteAt([]byte{1}, 4*chunkSize); !errors.Is(err, device.ErrOutOfRange) {
		t.Fatalf("write past end: %v, want ErrOutOfRange", err)
	}
}

func TestCrashKeepsOnlyDurableData(t *testing.T) {
	d := New(4*chunkSize, Options{Crashable: true})
	d.WriteAt([]byte("flushed"), 0)
	if err := d.Flush(); err != nil {
		t.Fatal(err)
	}
	d.WriteAt([]byte("synced"), 2*chunkSize)
	if err := d.SyncRange(2*chunkSize, 6); err != nil {
		t.Fatal(err)
	}
	d.WriteAt([]byte("lost"), 3*chunkSize)
	d.WriteAt([]byte("LOST"), 0) // overwrites flushed data, never flushed

	c := d.Crash()
	if got := read(t, c, 0, 7); string(got) != "flushed" {
		t.Errorf("flushed data after crash = %q", got)
	}
	if got := read(t, c, 2*chunkSize, 6); string(got) != "synced" {
		t.Errorf("synced data after crash = %q", got)
	}
	if got := read(t, c, 3*chunkSize, 4); !bytes.Equal(got, make([]byte, 4)) {
		t.Errorf("unflushed data survived the crash: %q", got)
	}
	// The original device still holds everything.
	if got := read(t, d, 3*chunkSize, 4); string(got) != "lost" {
		t.Errorf("current data = %q", got)
	}
}

func TestInjectFault(t *testing.T) {
	d := New(chunkSize, Options{})
	d.InjectFault(OpWrite, syscall.EIO, 1)
	if _, err := d.WriteAt([]byte{1}, 0); !errors.Is(err, syscall.EIO) {
		t.Fatalf("first write: %v, want EIO", err)
	}
	if got := read(t, d, 0, 1); got[0] != 0 {
		t.Fatal("a failed write changed the data")
	}
	if _, err := d.WriteAt([]byte{1}, 0); err != nil {
		t.Fatalf("second write: %v", err)
	}
	d.InjectFault(OpFlush, syscall.ENOSPC, -1)
	for range 3 {
		if err := d.Flush(); !errors.Is(err, syscall.ENOSPC) {
			t.Fatalf("flush: %v, want ENOSPC", err)
		}
	}
	d.InjectFault(OpFlush, nil, 0)
	if err := d.Flush(); err != nil {
		t.Fatal(err)
	}
	if s := d.Stats(); s.Calls[OpWrite] != 1 || s.Calls[OpFlush] != 1 {
		t.Fatalf("stats = %+v, want 1 write and 1 flush", s.Calls)
	}
}

func TestTrimZeroExtents(t *testing.T) {
	d := New(4*chunkSize, Options{})
	d.WriteAt(bytes.Repeat([]byte{7}, 4*chunkSize), 0)
	if err := d.Trim(chunkSize, chunkSize); err != nil {
		t.Fatal(err)
	}
	if err := d.Zero(2*chunkSize, chunkSize, false); err != nil {
		t.Fatal(err)
	}
	if err := d.Zero(3*chunkSize+1, 10, true); err != nil {
		t.Fatal(err)
	}
	if got := read(t, d, chunkSize, 2*chunkSize); !bytes.Equal(got, make([]byte, 2*chunkSize)) {
		t.Fatal("trimmed or zeroed range does not read as zeros")
	}
	if got := read(t, d, 3*chunkSize, 12); got[0] != 7 || got[1] != 0 || got[10] != 0 || got[11] != 7 {
		t.Fatalf("partial zero = %v", got)
	}
	var exts []device.Extent
	d.Extents(0, 4*chunkSize, func(e device.Extent) bool { exts = append(exts, e); return true })
	want := []device.Extent{
		{Off: 0, Len: chunkSize},
		{Off: chunkSize, Len: chunkSize, Flags: device.Hole | device.Zero},
		{Off: 2 * chunkSize, Len: 2 * chunkSize},
	}
	if len(exts) != len(want) {
		t.Fatalf("extents = %+v, want %+v", exts, want)
	}
	for i := range want {
		if exts[i] != want[i] {
			t.Fatalf("extent %d = %+v, want %+v", i, exts[i], want[i])
		}
	}
}

func TestReadWriteDoNotAllocate(t *testing.T) {
	d := New(4*chunkSize, Options{})
	p := make([]byte, 4096)
	d.WriteAt(p, 0) // allocate the chunk
	n := testing.AllocsPerRun(100, func() {
		d.WriteAt(p, 0)
		d.ReadAt(p, 4096)
	})
	if n != 0 {
		t.Fatalf("ReadAt+WriteAt allocate %.1f times per call, want 0", n)
	}
}
