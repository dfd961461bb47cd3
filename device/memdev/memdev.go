package memdev

import (
	"fmt"
	"sync"

	"github.com/extentd/extentd/device"
)

// chunkSize is the allocation unit of a Dev: 64 KiB.
const chunkSize = 64 << 10

// Op names an operation for fault injection and statistics.
type Op int

// The operations of a Dev.
const (
	OpRead Op = iota
	OpWrite
	OpFlush
	OpTrim
	OpZero
	OpSync
	OpPrefetch
	numOps
)

var opNames = [numOps]string{"read", "write", "flush", "trim", "zero", "sync", "prefetch"}

// opErrPrefix holds the error-message prefix of each operation, built once so
// that validating a range allocates nothing.
var opErrPrefix = [numOps]string{"memdev: read", "memdev: write", "memdev: flush", "memdev: trim", "memdev: zero", "memdev: sync", "memdev: prefetch"}

// String returns the operation's name.
func (o Op) String() string {
	if o < 0 || o >= numOps {
		return fmt.Sprintf("op(%d)", int(o))
	}
	return opNames[o]
}

// Options configure a Dev. The zero value is a plain in-memory device.
type Options struct {
	// Crashable keeps the durable image apart from the current one, so
	// that Crash can return what a crash would leave.
	Crashable bool
}

// Stats counts completed calls per operation and bytes moved.
type Stats struct {
	Calls        [numOps]int64
	BytesRead    int64
	BytesWritten int64
}

// Dev is an in-memory sparse block device.
type Dev struct {
	size      int64
	crashable bool

	mu sync.Mutex // guards the following
	// data maps a chunk index to its bytes; a missing chunk reads as zeros.
	data map[int64][]byte
	// durable is the image a crash would leave (Crashable only).
	durable map[int64][]byte
	// unsynced holds the chunks changed since they were last made durable
	// (Crashable only).
	unsynced map[int64]bool
	faults   [numOps]fault
	stats    Stats
}

type fault struct {
	err   error
	count int
}

var (
	_ device.Device      = (*Dev)(nil)
	_ device.Trimmer     = (*Dev)(nil)
	_ device.FastZeroer  = (*Dev)(nil)
	_ device.Extenter    = (*Dev)(nil)
	_ device.RangeSyncer = (*Dev)(nil)
	_ device.Prefetcher  = (*Dev)(nil)
)

// New returns a Dev of size bytes reading as zeros.
func New(size int64, opts Options) *Dev {
	d := &Dev{size: size, crashable: opts.Crashable, data: make(map[int64][]byte)}
	if opts.Crashable {
		d.durable = make(map[int64][]byte)
		d.unsynced = make(map[int64]bool)
	}
	return d
}

// Size returns the device size in bytes.
func (d *Dev) Size() int64 { return d.size }

// InjectFault makes the next count calls of op fail with err (after
// validating their range, before changing anything). count < 0 fails every
// call until InjectFault is called again with count 0.
func (d *Dev) InjectFault(op Op, err error, count int) {
	d.mu.Lock()
	d.faults[op] = fault{err: err, count: count}
	d.mu.Unlock()
}

// Stats returns a copy of the call counters.
func (d *Dev) Stats() Stats {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.stats
}

// faultLocked consumes one injected fault for op, if any. d.mu must be held.
func (d *Dev) faultLocked(op Op) error {
	f := &d.faults[op]
	if f.count == 0 || f.err == nil {
		return nil
	}
	if f.count > 0 {
		f.count--
	}
	return fmt.Errorf("memdev: injected %s fault: %w", op, f.err)
}

// begin validates a range and consumes a fault. d.mu must be held.
func (d *Dev) beginLocked(op Op, off, n int64) error {
	if err := device.CheckRange(opErrPrefix[op], off, n, d.size); err != nil {
		return err
	}
	return d.faultLocked(op)
}

// ReadAt implements device.Device.
func (d *Dev) ReadAt(p []byte, off int64) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.beginLocked(OpRead, off, int64(len(p))); err != nil {
		return 0, err
	}
	readChunks(d.data, p, off)
	d.stats.Calls[OpRead]++
	d.stats.BytesRead += int64(len(p))
	return len(p), nil
}

func readChunks(m map[int64][]byte, p []byte, off int64) {
	for done := 0; done < len(p); {
		pos := off + int64(done)
		idx, in := pos/chunkSize, pos%chunkSize
		n := min(len(p)-done, int(chunkSize-in))
		if c := m[idx]; c != nil {
			copy(p[done:done+n], c[in:])
		} else {
			clear(p[done : done+n])
		}
		done += n
	}
}

// WriteAt implements device.Device.
func (d *Dev) WriteAt(p []byte, off int64) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.beginLocked(OpWrite, off, int64(len(p))); err != nil {
		return 0, err
	}
	d.writeLocked(p, off)
	d.stats.Calls[OpWrite]++
	d.stats.BytesWritten += int64(len(p))
	return len(p), nil
}

// writeLocked copies p to off; a nil p writes zeros. d.mu must be held.
func (d *Dev) writeLocked(p []byte, off int64) {
	d.zeroOrWriteLocked(p, off, int64(len(p)), false)
}

// zeroOrWriteLocked writes p (or n zeros when p is nil) at off. With punch,
// chunks wholly covered by zeros are released. d.mu must be held.
func (d *Dev) zeroOrWriteLocked(p []byte, off, n int64, punch bool) {
	for done := int64(0); done < n; {
		pos := off + done
		idx, in := pos/chunkSize, pos%chunkSize
		k := min(n-done, chunkSize-in)
		c := d.data[idx]
		switch {
		case p == nil && punch && k == chunkSize:
			delete(d.data, idx)
		case p == nil && c == nil && punch:
			// Already zero; nothing to allocate.
		default:
			if c == nil {
				c = make([]byte, chunkSize)
				d.data[idx] = c
			}
			if p == nil {
				clear(c[in : in+k])
			} else {
				copy(c[in:in+k], p[done:done+k])
			}
		}
		if d.crashable {
			d.unsynced[idx] = true
		}
		done += k
	}
}

// Flush implements device.Device: with Crashable, every change so far
// becomes part of the durable image.
func (d *Dev) Flush() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.faultLocked(OpFlush); err != nil {
		return err
	}
	d.syncLocked(0, d.size)
	d.stats.Calls[OpFlush]++
	return nil
}

// SyncRange implements device.RangeSyncer. Whole 64 KiB chunks become
// durable, so bytes next to the range may become durable too, as on a disk
// that writes back more than it was asked to.
func (d *Dev) SyncRange(off, n int64) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.beginLocked(OpSync, off, n); err != nil {
		return err
	}
	d.syncLocked(off, n)
	d.stats.Calls[OpSync]++
	return nil
}

// syncLocked copies the unsynced chunks overlapping [off, off+n) to the
// durable image. d.mu must be held.
func (d *Dev) syncLocked(off, n int64) {
	if !d.crashable || n <= 0 {
		return
	}
	first, last := off/chunkSize, (off+n-1)/chunkSize
	for idx := range d.unsynced {
		if idx < first || idx > last {
			continue
		}
		if c := d.data[idx]; c != nil {
			d.durable[idx] = append([]byte(nil), c...)
		} else {
			delete(d.durable, idx)
		}
		delete(d.unsynced, idx)
	}
}

// Crash returns a new Dev holding only the durable image of d, as a crash
// of the machine would leave it. It requires Options.Crashable. d itself is
// unchanged and may go on being used.
func (d *Dev) Crash() *Dev {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.crashable {
		panic("memdev: Crash requires Options.Crashable")
	}
	c := New(d.size, Options{Crashable: true})
	for idx, b := range d.durable {
		c.data[idx] = append([]byte(nil), b...)
		c.durable[idx] = append([]byte(nil), b...)
	}
	return c
}

// Trim implements device.Trimmer: the range reads as zeros and wholly
// covered chunks are released.
func (d *Dev) Trim(off, n int64) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.beginLocked(OpTrim, off, n); err != nil {
		return err
	}
	d.zeroOrWriteLocked(nil, off, n, true)
	d.stats.Calls[OpTrim]++
	return nil
}

// Zero implements device.Zeroer.
func (d *Dev) Zero(off, n int64, mayTrim bool) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.beginLocked(OpZero, off, n); err != nil {
		return err
	}
	d.zeroOrWriteLocked(nil, off, n, mayTrim)
	d.stats.Calls[OpZero]++
	return nil
}

// FastZero implements device.FastZeroer: zeroing memory is always fast.
func (d *Dev) FastZero() bool { return true }

// Prefetch implements device.Prefetcher; it only validates the range.
func (d *Dev) Prefetch(off, n int64) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.beginLocked(OpPrefetch, off, n); err != nil {
		return err
	}
	d.stats.Calls[OpPrefetch]++
	return nil
}

// Extents implements device.Extenter: allocated chunks are data, the rest
// are holes that read as zeros. Extents are reported at chunk granularity,
// clipped to the range start.
func (d *Dev) Extents(off, n int64, yield func(device.Extent) bool) error {
	d.mu.Lock()
	if err := device.CheckRange("memdev: extents", off, n, d.size); err != nil {
		d.mu.Unlock()
		return err
	}
	// Build the list under the lock, yield without it: yield may call back.
	var exts []device.Extent
	end := off + n
	for pos := off; pos < end; {
		idx := pos / chunkSize
		chunkEnd := min((idx+1)*chunkSize, d.size)
		var flags device.ExtentFlags
		if d.data[idx] == nil {
			flags = device.Hole | device.Zero
		}
		if k := len(exts); k > 0 && exts[k-1].Flags == flags {
			exts[k-1].Len += chunkEnd - pos
		} else {
			exts = append(exts, device.Extent{Off: pos, Len: chunkEnd - pos, Flags: flags})
		}
		pos = chunkEnd
	}
	d.mu.Unlock()
	for _, e := range exts {
		if !yield(e) {
			break
		}
	}
	return nil
}

// Allocated returns the number of bytes held in allocated chunks.
func (d *Dev) Allocated() int64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return int64(len(d.data)) * chunkSize
}
