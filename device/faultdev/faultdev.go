package faultdev

import (
	"fmt"
	"io"
	"sync"

	"github.com/extentd/extentd/device"
)

// Op names an operation faults can be injected into.
type Op int

// Operations. OpWrite covers WriteAt and WriteVAt.
const (
	OpRead Op = iota
	OpWrite
	OpFlush
	OpSync
	OpAllocate
	OpTrim
	OpZero
	numOps
)

var opNames = [numOps]string{"read", "write", "flush", "sync", "allocate", "trim", "zero"}

// String returns the operation name.
func (o Op) String() string {
	if o >= 0 && o < numOps {
		return opNames[o]
	}
	return fmt.Sprintf("op%d", int(o))
}

// Kind is how an injected fault fails.
type Kind int

const (
	// Fail returns the error and does nothing.
	Fail Kind = iota
	// Short (writes only) writes the first half of the data, then returns
	// the error (io.ErrShortWrite if none was given) with the half count.
	Short
	// Drop (OpFlush and OpSync only) emulates a buffered file whose
	// fdatasync fails on Linux ("fsyncgate"): every change made through
	// the Dev since its last successful Flush or SyncRange is undone (the
	// wrapped device gets back what it held then, as if the kernel had
	// dropped the dirty pages and marked them clean), then the error is
	// returned. It needs RecordUndo to have been called before those
	// changes.
	Drop
)

// Stats counts calls and injected faults per operation.
type Stats struct {
	Calls  [numOps]int64
	Faults [numOps]int64
}

// Dev wraps a device.Device. It always offers every optional capability;
// where the wrapped device lacks one it returns device.ErrNotSupported
// (Trim, Zero, Extents), flushes (SyncRange), does nothing (Allocate,
// Prefetch) or loops over WriteAt (WriteVAt).
type Dev struct {
	lower device.Device

	mu sync.Mutex // guards the following
	// +checklocks:mu
	faults [numOps]fault
	// +checklocks:mu
	stats Stats
	// +checklocks:mu
	undo []undoRec // with recording: pre-images of changes since the last sync
	// +checklocks:mu
	recording bool
}

// undoRec is what [off, off+len(old)) held before a change.
type undoRec struct {
	off int64
	old []byte
}

type fault struct {
	kind  Kind
	err   error
	count int // < 0: until cleared
}

var (
	_ device.Device      = (*Dev)(nil)
	_ device.Trimmer     = (*Dev)(nil)
	_ device.Zeroer      = (*Dev)(nil)
	_ device.Extenter    = (*Dev)(nil)
	_ device.RangeSyncer = (*Dev)(nil)
	_ device.Prefetcher  = (*Dev)(nil)
)

// New wraps lower.
func New(lower device.Device) *Dev { return &Dev{lower: lower} }

// Inject makes the next count calls of op fail with err in the given way;
// count < 0 fails every call until Clear. err nil means EIO (or
// io.ErrShortWrite for Short). Injecting replaces the fault pending for op.
func (d *Dev) Inject(op Op, kind Kind, err error, count int) {
	if err == nil {
		err = EIO
		if kind == Short {
			err = io.ErrShortWrite
		}
	}
	d.mu.Lock()
	d.faults[op] = fault{kind: kind, err: err, count: count}
	d.mu.Unlock()
}

// Clear removes the pending fault of op.
func (d *Dev) Clear(op Op) {
	d.mu.Lock()
	d.faults[op] = fault{}
	d.mu.Unlock()
}

// ClearAll removes every pending fault.
func (d *Dev) ClearAll() {
	d.mu.Lock()
	d.faults = [numOps]fault{}
	d.mu.Unlock()
}

// RecordUndo makes the Dev keep the previous contents of every range it
// writes, trims or zeroes until the next successful Flush or SyncRange, so
// that a Drop fault can undo them. A successful SyncRange is treated as a
// full sync (as alloc's fdatasync is). Changes to one range must not run
// concurrently with each other (the cache never does that).
func (d *Dev) RecordUndo() {
	d.mu.Lock()
	d.recording = true
	d.mu.Unlock()
}

// saveUndo records the contents of [off, off+n) before a change.
func (d *Dev) saveUndo(off, n int64) {
	d.mu.Lock()
	rec := d.recording
	d.mu.Unlock()
	if !rec || n <= 0 {
		return
	}
	old := make([]byte, n)
	if _, err := d.lower.ReadAt(old, off); err != nil {
		return // the change will most likely fail too
	}
	d.mu.Lock()
	d.undo = append(d.undo, undoRec{off, old})
	d.mu.Unlock()
}

// synced ends a sync of the wrapped device: on success the recorded
// changes are durable; on a Drop fault they are undone, newest first.
func (d *Dev) synced(kind Kind, err error) error {
	d.mu.Lock()
	undo := d.undo
	d.undo = nil
	d.mu.Unlock()
	if err == nil || kind != Drop {
		if err != nil { // a plain failure: nothing dropped, still unsynced
			d.mu.Lock()
			d.undo = append(undo, d.undo...)
			d.mu.Unlock()
		}
		return err
	}
	for i := len(undo) - 1; i >= 0; i-- {
		_, _ = d.lower.WriteAt(undo[i].old, undo[i].off)
	}
	return err
}

// Stats returns a copy of the counters.
func (d *Dev) Stats() Stats {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.stats
}

// take counts a call of op and consumes its fault, if any.
func (d *Dev) take(op Op) (Kind, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.stats.Calls[op]++
	f := &d.faults[op]
	if f.count == 0 || f.err == nil {
		return Fail, nil
	}
	if f.count > 0 {
		f.count--
	}
	d.stats.Faults[op]++
	return f.kind, fmt.Errorf("%w: %s: %w", ErrInjected, op, f.err)
}

// Size returns the wrapped device's size.
func (d *Dev) Size() int64 { return d.lower.Size() }

// ReadAt reads from the wrapped device unless a read fault is pending.
func (d *Dev) ReadAt(p []byte, off int64) (int, error) {
	if _, err := d.take(OpRead); err != nil {
		return 0, err
	}
	return d.lower.ReadAt(p, off)
}

// WriteAt writes to the wrapped device unless a write fault is pending.
func (d *Dev) WriteAt(p []byte, off int64) (int, error) {
	kind, err := d.take(OpWrite)
	d.saveUndo(off, int64(len(p)))
	if err != nil {
		if kind == Short && len(p) > 1 {
			n, _ := d.lower.WriteAt(p[:len(p)/2], off)
			return n, err
		}
		return 0, err
	}
	return d.lower.WriteAt(p, off)
}

// WriteVAt writes bufs contiguously at off: with the wrapped device's
// WriteVAt if it has one, else one WriteAt per buffer. A Short fault writes
// the first half of the buffers.
func (d *Dev) WriteVAt(bufs [][]byte, off int64) (int, error) {
	kind, err := d.take(OpWrite)
	var n int64
	for _, b := range bufs {
		n += int64(len(b))
	}
	d.saveUndo(off, n)
	if err != nil {
		if kind == Short && len(bufs) > 0 {
			half := bufs[:(len(bufs)+1)/2]
			if len(bufs) == 1 {
				half = [][]byte{bufs[0][:len(bufs[0])/2]}
			}
			n, _ := d.writeV(half, off)
			return n, err
		}
		return 0, err
	}
	return d.writeV(bufs, off)
}

func (d *Dev) writeV(bufs [][]byte, off int64) (int, error) {
	if v, ok := d.lower.(interface {
		WriteVAt([][]byte, int64) (int, error)
	}); ok {
		return v.WriteVAt(bufs, off)
	}
	total := 0
	for _, b := range bufs {
		n, err := d.lower.WriteAt(b, off)
		total += n
		if err != nil {
			return total, err
		}
		off += int64(n)
	}
	return total, nil
}

// Flush flushes the wrapped device unless a flush fault is pending (see
// Drop for what a Drop fault does).
func (d *Dev) Flush() error {
	if kind, err := d.take(OpFlush); err != nil {
		return d.synced(kind, err)
	}
	return d.synced(Fail, d.lower.Flush())
}

// SyncRange syncs the range on the wrapped device (or flushes it) unless a
// sync fault is pending.
func (d *Dev) SyncRange(off, n int64) error {
	if kind, err := d.take(OpSync); err != nil {
		return d.synced(kind, err)
	}
	if s, ok := d.lower.(device.RangeSyncer); ok {
		return d.synced(Fail, s.SyncRange(off, n))
	}
	return d.synced(Fail, d.lower.Flush())
}

// Allocate allocates on the wrapped device if it can, unless an allocate
// fault is pending.
func (d *Dev) Allocate(off, n int64) error {
	if _, err := d.take(OpAllocate); err != nil {
		return err
	}
	if a, ok := d.lower.(interface{ Allocate(off, n int64) error }); ok {
		return a.Allocate(off, n)
	}
	return nil
}

// Trim trims the wrapped device unless a trim fault is pending.
func (d *Dev) Trim(off, n int64) error {
	if _, err := d.take(OpTrim); err != nil {
		return err
	}
	if t, ok := d.lower.(device.Trimmer); ok {
		d.saveUndo(off, n)
		return t.Trim(off, n)
	}
	return fmt.Errorf("faultdev: trim: %w", device.ErrNotSupported)
}

// Zero zeroes on the wrapped device unless a zero fault is pending.
func (d *Dev) Zero(off, n int64, mayTrim bool) error {
	if _, err := d.take(OpZero); err != nil {
		return err
	}
	if z, ok := d.lower.(device.Zeroer); ok {
		d.saveUndo(off, n)
		return z.Zero(off, n, mayTrim)
	}
	return fmt.Errorf("faultdev: zero: %w", device.ErrNotSupported)
}

// Extents forwards to the wrapped device.
func (d *Dev) Extents(off, n int64, yield func(device.Extent) bool) error {
	if e, ok := d.lower.(device.Extenter); ok {
		return e.Extents(off, n, yield)
	}
	return fmt.Errorf("faultdev: extents: %w", device.ErrNotSupported)
}

// Prefetch forwards to the wrapped device if it can prefetch.
func (d *Dev) Prefetch(off, n int64) error {
	if p, ok := d.lower.(device.Prefetcher); ok {
		return p.Prefetch(off, n)
	}
	return nil
}
