package faultdev

import (
	"bytes"
	"errors"
	"io"
	"syscall"
	"testing"

	"github.com/extentd/extentd/device/memdev"
)

func TestInjectAndClear(t *testing.T) {
	m := memdev.New(1<<16, memdev.Options{})
	d := New(m)
	buf := bytes.Repeat([]byte{7}, 4096)

	d.Inject(OpWrite, Fail, nil, 1)
	if _, err := d.WriteAt(buf, 0); !errors.Is(err, syscall.EIO) || !errors.Is(err, ErrInjected) {
		t.Fatalf("WriteAt with fault: err %v, want injected EIO", err)
	}
	got := make([]byte, 4096)
	if _, err := d.ReadAt(got, 0); err != nil || !bytes.Equal(got, make([]byte, 4096)) {
		t.Fatalf("failed write changed data (err %v)", err)
	}
	if _, err := d.WriteAt(buf, 0); err != nil {
		t.Fatalf("fault with count 1 still firing: %v", err)
	}

	d.Inject(OpFlush, Fail, ENOSPC, -1)
	for i := 0; i < 3; i++ {
		if err := d.Flush(); !errors.Is(err, syscall.ENOSPC) {
			t.Fatalf("flush %d: err %v, want ENOSPC", i, err)
		}
	}
	d.Clear(OpFlush)
	if err := d.Flush(); err != nil {
		t.Fatalf("flush after Clear: %v", err)
	}
	st := d.Stats()
	if st.Calls[OpFlush] != 4 || st.Faults[OpFlush] != 3 || st.Calls[OpWrite] != 2 || st.Faults[OpWrite] != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestShortWrites(t *testing.T) {
	m := memdev.New(1<<16, memdev.Options{})
	d := New(m)
	d.Inject(OpWrite, Short, nil, 2)
	n, err := d.WriteAt(bytes.Repeat([]byte{1}, 1000), 0)
	if n != 500 || !errors.Is(err, io.ErrShortWrite) {
		t.Fatalf("short WriteAt: n %d err %v", n, err)
	}
	bufs := [][]byte{bytes.Repeat([]byte{2}, 100), bytes.Repeat([]byte{3}, 100), bytes.Repeat([]byte{4}, 100)}
	n, err = d.WriteVAt(bufs, 1000)
	if n != 200 || err == nil {
		t.Fatalf("short WriteVAt: n %d err %v", n, err)
	}
	got := make([]byte, 300)
	if _, err := d.ReadAt(got, 1000); err != nil {
		t.Fatal(err)
	}
	want := append(append(bytes.Repeat([]byte{2}, 100), bytes.Repeat([]byte{3}, 100)...), make([]byte, 100)...)
	if !bytes.Equal(got, want) {
		t.Fatalf("short WriteVAt wrote %v..., want first two buffers only", got[:8])
	}
	if n, err := d.WriteVAt(bufs, 1000); n != 300 || err != nil {
		t.Fatalf("WriteVAt after faults: n %d err %v", n, err)
	}
}

func TestCapabilitiesForwarded(t *testing.T) {
	m := memdev.New(1<<16, memdev.Options{})
	d := New(m)
	if _, err := d.WriteAt(bytes.Repeat([]byte{9}, 8192), 0); err != nil {
		t.Fatal(err)
	}
	if err := d.Trim(0, 4096); err != nil {
		t.Fatal(err)
	}
	if err := d.Zero(4096, 4096, false); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 8192)
	if _, err := d.ReadAt(got, 0); err != nil || !bytes.Equal(got, make([]byte, 8192)) {
		t.Fatalf("trim/zero not forwarded (err %v)", err)
	}
	d.Inject(OpTrim, Fail, nil, 1)
	if err := d.Trim(0, 4096); !errors.Is(err, ErrInjected) {
		t.Fatalf("trim fault: %v", err)
	}
	if err := d.SyncRange(0, 4096); err != nil {
		t.Fatal(err)
	}
	if err := d.Allocate(0, 4096); err != nil {
		t.Fatal(err)
	}
}

// TestDrop: a Drop fault on Flush or SyncRange undoes every change since
// the last successful sync (writes, vectored writes, trims, zeroes) and
// fails once; a plain failure keeps the changes pending; the crash image of
// a crashable memdev below never holds the dropped data.
func TestDrop(t *testing.T) {
	for _, op := range []Op{OpFlush, OpSync} {
		t.Run(op.String(), func(t *testing.T) {
			m := memdev.New(1<<16, memdev.Options{Crashable: true})
			d := New(m)
			d.RecordUndo()
			sync := func() error {
				if op == OpFlush {
					return d.Flush()
				}
				return d.SyncRange(0, 1<<16)
			}
			a := bytes.Repeat([]byte{1}, 8192)
			if _, err := d.WriteAt(a, 0); err != nil {
				t.Fatal(err)
			}
			if err := sync(); err != nil {
				t.Fatal(err)
			}
			if _, err := d.WriteVAt([][]byte{bytes.Repeat([]byte{2}, 4096), bytes.Repeat([]byte{3}, 4096)}, 4096); err != nil {
				t.Fatal(err)
			}
			if err := d.Trim(0, 4096); err != nil {
				t.Fatal(err)
			}
			if err := d.Zero(12288, 4096, false); err != nil {
				t.Fatal(err)
			}
			d.Inject(op, Fail, nil, 1) // plain failure: nothing dropped
			if err := sync(); !errors.Is(err, syscall.EIO) {
				t.Fatalf("sync with Fail: %v", err)
			}
			d.Inject(op, Drop, nil, 1)
			if err := sync(); !errors.Is(err, syscall.EIO) {
				t.Fatalf("sync with Drop: %v", err)
			}
			want := append(append([]byte(nil), a...), make([]byte, 8192)...)
			got := make([]byte, len(want))
			if _, err := d.ReadAt(got, 0); err != nil || !bytes.Equal(got, want) {
				t.Fatalf("after Drop lower holds %v... (err %v), want the last synced data", got[:16], err)
			}
			if err := sync(); err != nil {
				t.Fatalf("sync after Drop: %v", err)
			}
			if _, err := m.Crash().ReadAt(got, 0); err != nil || !bytes.Equal(got, want) {
				t.Fatalf("crash image after Drop differs (err %v)", err)
			}
		})
	}
}
