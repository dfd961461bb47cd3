package device

import "io"

// Device is a fixed-size block device.
//
// ReadAt fills p from [off, off+len(p)); holes and never-written bytes read
// as zeros. It returns len(p) and nil, or an error (never a short read with a
// nil error, and never io.EOF for an in-range request).
//
// WriteAt writes p at off. It returns len(p) and nil, or an error; after an
// error the contents of the range are unspecified but no other range
// changes. Written data is durable only after a later Flush returns nil.
//
// Size is constant for the life of the Device.
//
// Flush makes every write that completed before the call durable. It
// returns nil only if that is done.
type Device interface {
	io.ReaderAt
	io.WriterAt
	Size() int64
	Flush() error
}

// Trimmer is a Device that can discard a range (NBD_CMD_TRIM). After Trim the
// range reads as zeros on every Device in this project (stronger than NBD
// requires), and backing storage for it may be released.
type Trimmer interface {
	Trim(off, n int64) error
}

// Zeroer is a Device that can set a range to zeros without a data payload
// (NBD_CMD_WRITE_ZEROES). mayTrim allows the device to release storage for
// the range (the request had no NBD_CMD_FLAG_NO_HOLE); with mayTrim false
// the range stays allocated.
type Zeroer interface {
	Zero(off, n int64, mayTrim bool) error
}

// FastZeroer is a Zeroer whose Zero never falls back to writing zero buffers
// through the data path, so the server may advertise NBD_FLAG_SEND_FAST_ZERO.
type FastZeroer interface {
	Zeroer
	FastZero() bool
}

// Extenter is a Device that can describe which parts of a range are holes or
// read as zeros (NBD base:allocation). Extents calls yield for consecutive,
// non-overlapping extents starting exactly at off, in order, until the range
// is covered or yield returns false. The last extent may end past off+n.
type Extenter interface {
	Extents(off, n int64, yield func(Extent) bool) error
}

// RangeSyncer is a Device that can make one range durable without flushing
// everything (NBD_CMD_FLAG_FUA). When SyncRange returns nil, every write to
// [off, off+n) that completed before the call is durable. Devices without it
// get a full Flush for a FUA request.
type RangeSyncer interface {
	SyncRange(off, n int64) error
}

// Prefetcher is a Device that can be told a range will be read soon
// (NBD_CMD_CACHE). It is advisory: an error means only that nothing was done.
type Prefetcher interface {
	Prefetch(off, n int64) error
}

// NoWaiter is a Device that can often complete a read or a write at once,
// from memory, without waiting for I/O, for memory or for other requests (a
// write-back cache hit). A server may then answer the request on the
// goroutine that read it, without a hand-off. Each method either does what
// ReadAt or WriteAt would do with the same arguments and reports done (err
// being what ReadAt or WriteAt would return), or changes nothing and
// reports false with a nil error; TryReadAt may have written to p then. They
// never block, beyond a short lock.
type NoWaiter interface {
	TryReadAt(p []byte, off int64) (done bool, err error)
	TryWriteAt(p []byte, off int64) (done bool, err error)
}

// Idler is a Device with deferred work that a server may do on a goroutine
// that would otherwise wait for a client (a write-back cache writing back
// for clients that flush often). Idle does at most a small unit of it, never
// blocks beyond that unit's I/O, and reports whether it did anything.
type Idler interface {
	Idle() bool
}

// ExtentFlags describe an extent for base:allocation. The values match the
// NBD wire bits so the server can copy them.
type ExtentFlags uint32

const (
	// Hole means the extent has no backing storage (NBD_STATE_HOLE).
	Hole ExtentFlags = 1 << 0
	// Zero means the extent reads as zeros (NBD_STATE_ZERO).
	Zero ExtentFlags = 1 << 1
)

// String returns the flag names, e.g. "hole|zero" or "data".
func (f ExtentFlags) String() string {
	switch f {
	case 0:
		return "data"
	case Hole:
		return "hole"
	case Zero:
		return "zero"
	case Hole | Zero:
		return "hole|zero"
	}
	return "invalid"
}

// Extent is one run of bytes with the same allocation state.
type Extent struct {
	Off, Len int64
	Flags    ExtentFlags
}
