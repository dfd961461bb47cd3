package alloc

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/extentd/extentd/device"
	"github.com/extentd/extentd/internal/testutil"
)

// mountTmpfs mounts a tmpfs of size bytes on a fresh directory and
// unmounts it at cleanup (also when the test fails).
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	testutil.RequireRoot(t)
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size="+size); err != nil {
		if testutil.InCI() {
			t.Fatalf("mount tmpfs: %v", err)
		}
		t.Skipf("mount tmpfs: %v", err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir
}

// TestThinOvercommitTmpfs: a 1 GiB sparse image on a 64 MiB tmpfs.
// Reservations stop at the host's free space with ErrNoSpace; everything
// written before reads back; releasing makes room again.
func TestThinOvercommitTmpfs(t *testing.T) {
	dir := mountTmpfs(t, "64m")
	f := openTestAt(t, filepath.Join(dir, "disk.img"), 1<<30, Options{})
	sp := f.Space()
	st := sp.Stats()
	if st.Capacity <= 0 || st.Capacity > 64<<20 || st.Capacity < 60<<20 {
		t.Fatalf("capacity %d on a 64 MiB tmpfs (stats %+v)", st.Capacity, st)
	}
	// Reserve 1 MiB pieces spread over the image until it fails.
	const chunk = 1 << 20
	var reserved []int64
	var lastErr error
	for i := int64(0); i < 1024; i++ {
		off := (i * 7 % 1024) * chunk
		if _, err := sp.Reserve(off, chunk); err != nil {
			lastErr = err
			break
		}
		reserved = append(reserved, off)
	}
	if !errors.Is(lastErr, device.ErrNoSpace) {
		t.Fatalf("Reserve beyond the host's free space: %v, want ErrNoSpace", lastErr)
	}
	if got := int64(len(reserved)) * chunk; got > st.Capacity || got < st.Capacity-chunk {
		t.Fatalf("reserved %d bytes before ENOSPC, capacity %d", got, st.Capacity)
	}
	// Write back half of what was reserved, as the cache would.
	model := map[int64][]byte{}
	for i, off := range reserved[:len(reserved)/2] {
		p := bytes.Repeat([]byte{byte(i + 1)}, chunk)
		if _, err := f.WriteAt(p, off); err != nil {
			t.Fatalf("WriteAt(%d) of reserved space: %v", off, err)
		}
		model[off] = p
	}
	if err := f.Flush(); err != nil {
		t.Fatal(err)
	}
	st = sp.Stats()
	if st.Allocated != int64(len(model))*chunk || st.Reserved != int64(len(reserved)-len(model))*chunk {
		t.Fatalf("after writeback: %+v", st)
	}
	// Still full (less than a chunk left): new bytes are refused,
	// overwrites of reserved ones are not.
	free := int64(0)
	for slices.Contains(reserved, free) {
		free += chunk
	}
	if _, err := sp.Reserve(free, chunk); !errors.Is(err, device.ErrNoSpace) {
		t.Fatalf("Reserve when full: %v, want ErrNoSpace", err)
	}
	if got, err := sp.Reserve(reserved[len(reserved)-1], chunk); err != nil || got != 0 {
		t.Fatalf("re-Reserve of reserved bytes = %d, %v", got, err)
	}
	// Releasing reservations makes room again.
	for _, off := range reserved[len(model):] {
		sp.Release(off, chunk)
	}
	if _, err := sp.Reserve(1000*chunk, 4*chunk); err != nil {
		t.Fatalf("Reserve after Release: %v", err)
	}
	// A write of unreserved fresh blocks beyond capacity fails cleanly.
	for off := int64(0); ; off += chunk {
		if off >= 1<<30 {
			t.Fatal("wrote 1 GiB into a 64 MiB tmpfs")
		}
		if _, ok := model[off]; ok {
			continue
		}
		if _, err := f.WriteAt(bytes.Repeat([]byte{0xee}, chunk), off); err != nil {
			if !errors.Is(err, device.ErrNoSpace) {
				t.Fatalf("WriteAt beyond capacity: %v, want ErrNoSpace", err)
			}
			break
		}
		model[off] = bytes.Repeat([]byte{0xee}, chunk)
	}
	buf := make([]byte, chunk)
	for off, want := range model {
		if _, err := f.ReadAt(buf, off); err != nil || !bytes.Equal(buf, want) {
			t.Fatalf("ReadAt(%d) after ENOSPC: data differs (%v)", off, err)
		}
	}
}

// TestHostENOSPCOnWrite: the host fills up behind a stale statfs, so the
// pwrite itself fails with ENOSPC. The error is ENOSPC to errors.Is (and
// device.ErrNoSpace), the allocation map is unchanged, the data written
// before still reads back, and the next Reserve sees the real free space.
func TestHostENOSPCOnWrite(t *testing.T) {
	dir := mountTmpfs(t, "64m")
	f := openTestAt(t, filepath.Join(dir, "disk.img"), 1<<30, Options{ReserveMargin: NoReserveMargin, StatfsInterval: time.Hour})
	data := bytes.Repeat([]byte{0x5a}, 4<<20)
	if _, err := f.WriteAt(data, 0); err != nil {
		t.Fatal(err)
	}
	// Another tenant fills the filesystem.
	filler := filepath.Join(dir, "filler")
	fill(t, filler)
	statsBefore := f.Space().Stats()
	extentsBefore := collectExtents(t, f, 0, 1<<30)

	_, err := f.WriteAt(bytes.Repeat([]byte{1}, 1<<20), 512<<20)
	if !errors.Is(err, syscall.ENOSPC) || !errors.Is(err, device.ErrNoSpace) {
		t.Fatalf("WriteAt on a full host: %v, want ENOSPC and device.ErrNoSpace", err)
	}
	_, err = f.WriteVAt([][]byte{make([]byte, 8192), make([]byte, 8192)}, 600<<20)
	if !errors.Is(err, syscall.ENOSPC) && !errors.Is(err, device.ErrNoSpace) {
		t.Fatalf("WriteVAt on a full host: %v, want ENOSPC", err)
	}
	after := f.Space().Stats()
	if after.Allocated != statsBefore.Allocated || after.Reserved != statsBefore.Reserved {
		t.Fatalf("failed writes changed the accounting: %+v -> %+v", statsBefore, after)
	}
	if got := collectExtents(t, f, 0, 1<<30); !slices.Equal(got, extentsBefore) {
		t.Fatalf("failed writes changed the map:\n got %v\nwant %v", got, extentsBefore)
	}
	if err := f.Space().Check(); err != nil {
		t.Fatal(err)
	}
	// The ENOSPC refreshed statfs: a new reservation now fails at once.
	if _, err := f.Space().Reserve(700<<20, 1<<20); !errors.Is(err, device.ErrNoSpace) {
		t.Fatalf("Reserve after host ENOSPC: %v, want ErrNoSpace", err)
	}
	buf := make([]byte, len(data))
	if _, err := f.ReadAt(buf, 0); err != nil || !bytes.Equal(buf, data) {
		t.Fatalf("data written before ENOSPC: %v", err)
	}
	// The tenant goes away: space is usable again without waiting out the
	// statfs interval.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Space().Reserve(700<<20, 1<<20); err != nil {
		t.Fatalf("Reserve after the host freed space: %v", err)
	}
	if err := f.Allocate(700<<20, 1<<20); err != nil {
		t.Fatalf("Allocate after the host freed space: %v", err)
	}
	if _, err := f.WriteAt(bytes.Repeat([]byte{2}, 1<<20), 700<<20); err != nil {
		t.Fatal(err)
	}
}

// fill writes a file until the filesystem is full.
func fill(t *testing.T, path string) {
	t.Helper()
	fh, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	buf := make([]byte, 1<<20)
	for {
		if _, err := fh.Write(buf); err != nil {
			if errors.Is(err, syscall.ENOSPC) {
				break
			}
			t.Fatal(err)
		}
	}
	for { // the last partial pages
		if _, err := fh.Write(buf[:4096]); err != nil {
			break
		}
	}
}
