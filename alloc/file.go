package alloc

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/extentd/extentd/device"
)

// File is the backing device: a sparse raw image file.
//
// # Allocation map
//
// File keeps, in its Space, which host filesystem blocks of the image hold
// storage. Open builds it with SEEK_DATA/SEEK_HOLE; WriteAt, WriteVAt,
// Allocate and Zero mark the blocks they touch allocated after the system
// call succeeds; Trim and Zero with mayTrim mark the blocks wholly inside
// their range free before punching (so a write racing the punch is never
// hidden behind a stale hole), and allocated again if the punch fails.
// ReadAt fills
// ranges the map knows are holes with zeros without a system call, and
// Extents is answered from the map.
//
// The map is an estimate of the file, exact for what this File did: blocks
// preallocated by fallocate (unwritten extents) before Open scan as holes
// on most filesystems, and an all-zero write keeps its blocks allocated.
//
// # Direct I/O
//
// With Options.DirectIO the file is opened O_DIRECT and every pread/pwrite
// is aligned to DirectAlign: aligned requests from aligned buffers
// (AlignedBuffer) go straight to the file, others are bounced through
// pooled aligned buffers. Unaligned writes read, patch and write back their
// edge blocks while holding File.rmw exclusively; every other write, zero
// and punch holds it shared, so a read-modify-write never loses a
// concurrent write to the same block.
//
// # Errors
//
// Errors name the operation and range ("alloc: write [off,+n): ...") and
// wrap the cause: device.ErrOutOfRange, ErrReadOnly, ErrClosed, ErrNoSpace,
// or the syscall.Errno (EIO, ENOSPC, ...) of the failed call, visible to
// errors.Is. ENOSPC and EDQUOT wrap device.ErrNoSpace as well. After a
// failed write the map is unchanged.
type File struct {
	fd       int
	path     string
	size     int64
	readOnly bool
	direct   bool
	log      *zap.Logger
	space    *Space
	bounce   sync.Pool // *[]byte of bounceSize, aligned (DirectIO)
	iovPool  sync.Pool // *iovecs for WriteVAt
	zeros    []byte    // zeroBufSize aligned zero bytes, never written

	closeMu sync.RWMutex // guards the following; every operation holds it shared
	closed  bool         // +checklocks:closeMu

	// statMu keeps fd open while Space calls statfs on it (Space may do so
	// from any goroutine, after Close too). Lock order: closeMu → statMu.
	statMu sync.RWMutex

	// rmw orders DirectIO read-modify-writes against other writes: held
	// exclusively by unaligned writes, shared by every other write, zero
	// and punch. Unused without DirectIO.
	rmw sync.RWMutex

	// noZeroRange and noPunchAlloc record fallocate modes the host
	// filesystem lacks (probed at Open, updated on EOPNOTSUPP).
	noZeroRange  atomic.Bool
	noPunchAlloc atomic.Bool

	split int64 // buffered WriteVAt calls write(2) at most this much at a time (0: no limit)
}

var (
	_ device.Device      = (*File)(nil)
	_ device.Trimmer     = (*File)(nil)
	_ device.FastZeroer  = (*File)(nil)
	_ device.Extenter    = (*File)(nil)
	_ device.RangeSyncer = (*File)(nil)
	_ device.Prefetcher  = (*File)(nil)
)

const (
	bounceSize  = 1 << 20 // DirectIO bounce buffer
	zeroBufSize = 1 << 20 // zeros written per call when writing zeros
)

// Create creates a sparse image of size bytes at path, failing if the path
// exists (the error wraps fs.ErrExist). The file and its directory entry
// are synced.
func Create(path string, size int64) error {
	if size <= 0 {
		return fmt.Errorf("alloc: create %s: size %d must be > 0: %w", path, size, ErrInvalidOptions)
	}
	if err := createImage(path, size); err != nil {
		return fmt.Errorf("alloc: create %s: %w", path, err)
	}
	return nil
}

func createImage(path string, size int64) (err error) {
	fd, err := unix.Open(path, unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := unix.Close(fd); err == nil {
			err = cerr
		}
		if err != nil {
			_ = os.Remove(path)
		}
	}()
	if err := unix.Ftruncate(fd, size); err != nil {
		return err
	}
	if err := unix.Fsync(fd); err != nil {
		return err
	}
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// Open opens (or with Options.Create creates) the image at path. It takes
// an advisory flock (exclusive, shared when ReadOnly) so two servers never
// share an image, and fails with ErrLocked when one already does.
func Open(path string, opts Options) (*File, error) {
	opts.EnsureDefaults()
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	flags := unix.O_CLOEXEC
	if opts.ReadOnly {
		flags |= unix.O_RDONLY
	} else {
		flags |= unix.O_RDWR
	}
	if opts.DirectIO {
		flags |= unix.O_DIRECT
	}
	fd, err := openFile(path, flags)
	created := false
	if errors.Is(err, unix.ENOENT) && opts.Create {
		if opts.Size == 0 {
			return nil, fmt.Errorf("alloc: open %s: file does not exist and Options.Size is 0: %w", path, ErrInvalidOptions)
		}
		if err = createImage(path, opts.Size); err == nil || errors.Is(err, fs.ErrExist) {
			created = err == nil
			fd, err = openFile(path, flags)
		}
	}
	if err != nil {
		if opts.DirectIO && errors.Is(err, unix.EINVAL) {
			return nil, fmt.Errorf("alloc: open %s: O_DIRECT not supported by this filesystem?: %w", path, err)
		}
		return nil, fmt.Errorf("alloc: open %s: %w", path, err)
	}
	f, err := newFile(fd, path, opts)
	if err != nil {
		_ = unix.Close(fd)
		return nil, fmt.Errorf("alloc: open %s: %w", path, err)
	}
	if !created && opts.Size != 0 && opts.Size != f.size {
		f.log.Warn("image exists with another size; keeping its size",
			zap.String("path", path), zap.Int64("size", f.size), zap.Int64("requested_size", opts.Size))
	}
	st := f.space.Stats()
	f.log.Info("opened image",
		zap.String("path", path), zap.Int64("size", f.size), zap.Bool("created", created),
		zap.Bool("direct", f.direct), zap.Bool("read_only", f.readOnly),
		zap.Int64("allocated", st.Allocated), zap.Int64("capacity", st.Capacity),
		zap.Int64("block_size", f.space.blockSize), zap.Bool("fast_zero", f.FastZero()))
	return f, nil
}

func openFile(path string, flags int) (int, error) {
	for {
		fd, err := unix.Open(path, flags, 0)
		if err != unix.EINTR {
			return fd, err
		}
	}
}

// newFile sets up a File around an open fd; the caller closes fd on error.
func newFile(fd int, path string, opts Options) (*File, error) {
	how := unix.LOCK_EX
	if opts.ReadOnly {
		how = unix.LOCK_SH
	}
	if err := unix.Flock(fd, how|unix.LOCK_NB); err != nil {
		if err == unix.EWOULDBLOCK {
			return nil, ErrLocked
		}
		return nil, fmt.Errorf("flock: %w", err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, fmt.Errorf("fstat: %w", err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil, ErrNotRegular
	}
	if st.Size <= 0 {
		return nil, fmt.Errorf("image is empty: %w", ErrInvalidOptions)
	}
	if opts.DirectIO && st.Size%DirectAlign != 0 {
		return nil, fmt.Errorf("size %d is not a multiple of %d (needed by DirectIO): %w", st.Size, DirectAlign, ErrInvalidOptions)
	}
	_, bsize, total, err := hostStatfs(fd)
	if err != nil {
		return nil, fmt.Errorf("statfs: %w", err)
	}
	if bsize < 512 || bsize > 1<<20 || bsize&(bsize-1) != 0 {
		bsize = 4096
	}
	margin := opts.ReserveMargin
	switch margin {
	case 0:
		margin = min(DefaultMaxReserveMargin, total/100)
	case NoReserveMargin:
		margin = 0
	}
	f := &File{
		fd:       fd,
		path:     path,
		size:     st.Size,
		readOnly: opts.ReadOnly,
		direct:   opts.DirectIO,
		log:      opts.Logger.Named("alloc"),
		split:    max(opts.MaxBufferedWrite, 0),
	}
	f.bounce.New = func() any {
		b := AlignedBuffer(bounceSize)
		return &b
	}
	f.iovPool.New = func() any { return new(iovecs) }
	f.space = newSpace(spaceConfig{
		size:      st.Size,
		blockSize: bsize,
		thinLimit: opts.ThinLimit,
		margin:    margin,
		interval:  opts.StatfsInterval,
		statfs:    f.hostFree,
		log:       f.log,
	})
	var scanErr error
	f.space.mu.Lock()
	scanErr = scanData(fd, st.Size, f.space.markAllocatedLocked)
	f.space.mu.Unlock()
	if scanErr != nil {
		return nil, fmt.Errorf("scan allocation: %w", scanErr)
	}
	f.space.refresh()
	if !opts.ReadOnly {
		f.zeros = AlignedBuffer(zeroBufSize)
		f.probeFallocate()
	}
	return f, nil
}

// hostFree is Space's statfs: free bytes of the image's filesystem.
func (f *File) hostFree() (int64, error) {
	f.statMu.RLock()
	defer f.statMu.RUnlock()
	if f.fd < 0 {
		return 0, device.ErrClosed
	}
	free, _, _, err := hostStatfs(f.fd)
	return free, err
}

// probeFallocate finds out, on a scratch file beside the image, whether the
// host filesystem supports FALLOC_FL_ZERO_RANGE and punch+allocate, so
// FastZero is right before the first Zero. If no scratch file can be made
// both are assumed and learnt on first use.
func (f *File) probeFallocate() {
	tmp, err := os.CreateTemp(filepath.Dir(f.path), ".extentd-probe-*")
	if err != nil {
		return
	}
	defer func() {
		_ = tmp.Close()
		_ = os.Remove(tmp.Name())
	}()
	if tmp.Truncate(2*DirectAlign) != nil {
		return
	}
	fd := int(tmp.Fd())
	f.noZeroRange.Store(isNotSupported(fallocate(fd, modeZeroRange, 0, DirectAlign)))
	f.noPunchAlloc.Store(isNotSupported(fallocate(fd, modePunch, 0, DirectAlign)) ||
		isNotSupported(fallocate(fd, modeKeepSize, 0, DirectAlign)))
}

// Close closes the file after waiting for operations in progress. It does
// not flush: call Flush first for durability. Later calls of any method
// fail with device.ErrClosed.
func (f *File) Close() error {
	f.closeMu.Lock()
	defer f.closeMu.Unlock()
	if f.closed {
		return fmt.Errorf("alloc: close %s: %w", f.path, device.ErrClosed)
	}
	f.closed = true
	f.statMu.Lock()
	fd := f.fd
	f.fd = -1
	f.statMu.Unlock()
	if err := unix.Close(fd); err != nil {
		return fmt.Errorf("alloc: close %s: %w", f.path, err)
	}
	return nil
}

// Size returns the image size in bytes.
func (f *File) Size() int64 { return f.size }

// Space returns the allocation accounting of the image.
func (f *File) Space() *Space { return f.space }

// Path returns the image path given to Open.
func (f *File) Path() string { return f.path }

// DirectIO reports whether the image is open with O_DIRECT.
func (f *File) DirectIO() bool { return f.direct }

// enter starts an operation: it checks the range and holds closeMu shared
// until exit. It returns the error to return, already wrapped.
func (f *File) enter(op string, off, n int64, write bool) (fd int, err error) {
	if off < 0 || n < 0 || off > f.size || n > f.size-off { // no allocation when valid
		return -1, device.CheckRange("alloc: "+op, off, n, f.size)
	}
	if write && f.readOnly {
		return -1, fmt.Errorf("alloc: %s [%d,+%d): %w", op, off, n, device.ErrReadOnly)
	}
	f.closeMu.RLock()
	if f.closed {
		f.closeMu.RUnlock()
		return -1, fmt.Errorf("alloc: %s [%d,+%d): %w", op, off, n, device.ErrClosed)
	}
	return f.fd, nil
}

func (f *File) exit() { f.closeMu.RUnlock() }

// ioErr wraps the error of a system call on [off, off+n).
func ioErr(op string, off, n int64, err error) error {
	if isNoSpace(err) {
		return fmt.Errorf("alloc: %s [%d,+%d): %w: %w", op, off, n, device.ErrNoSpace, err)
	}
	return fmt.Errorf("alloc: %s [%d,+%d): %w", op, off, n, err)
}

func isNoSpace(err error) bool {
	var errno syscall.Errno
	return errors.As(err, &errno) && (errno == unix.ENOSPC || errno == unix.EDQUOT)
}

// writeErr is ioErr for calls that allocate: host ENOSPC means the cached
// statfs was wrong, so it is refreshed at once for the next Reserve.
func (f *File) writeErr(op string, off, n int64, err error) error {
	if isNoSpace(err) {
		f.space.refresh()
	}
	return ioErr(op, off, n, err)
}

// ReadAt implements device.Device. Ranges the allocation map knows are
// holes read as zeros without a system call.
func (f *File) ReadAt(p []byte, off int64) (int, error) {
	n := int64(len(p))
	fd, err := f.enter("read", off, n, false)
	if err != nil {
		return 0, err
	}
	defer f.exit()
	if err := f.readRange(fd, p, off); err != nil {
		return 0, ioErr("read", off, n, err)
	}
	return len(p), nil
}

// readRange fills p from off: holes from the map, data from the file.
func (f *File) readRange(fd int, p []byte, off int64) error {
	end := off + int64(len(p))
	for cur := off; cur < end; {
		ds, de, ok := f.space.nextData(cur, end)
		if !ok {
			clear(p[cur-off:])
			return nil
		}
		clear(p[cur-off : ds-off])
		if err := f.pread(fd, p[ds-off:de-off], ds); err != nil {
			return err
		}
		cur = de
	}
	return nil
}

// pread reads p at off from the file, bouncing unaligned DirectIO reads.
func (f *File) pread(fd int, p []byte, off int64) error {
	if !f.direct || isAligned(p, off) {
		return preadFull(fd, p, off)
	}
	bp := f.bounce.Get().(*[]byte)
	defer f.bounce.Put(bp)
	buf := *bp
	for done := int64(0); done < int64(len(p)); {
		pos := off + done
		as := alignDown(pos, DirectAlign)
		k := min(int64(len(p))-done, int64(len(buf))-(pos-as))
		ae := alignUp(pos+k, DirectAlign)
		if err := preadFull(fd, buf[:ae-as], as); err != nil {
			return err
		}
		copy(p[done:done+k], buf[pos-as:])
		done += k
	}
	return nil
}

// WriteAt implements device.Device. Blocks the write touches become
// allocated and their reservations are consumed; blocks neither reserved
// nor allocated are charged against the capacity first (ErrNoSpace beyond
// it).
func (f *File) WriteAt(p []byte, off int64) (int, error) {
	n := int64(len(p))
	fd, err := f.enter("write", off, n, true)
	if err != nil {
		return 0, err
	}
	defer f.exit()
	if n == 0 {
		return 0, nil
	}
	if err := f.write("write", off, n, func() error { return f.pwrite(fd, p, off) }); err != nil {
		return 0, err
	}
	return len(p), nil
}

// WriteVAt writes the buffers back to back at off, like WriteAt of their
// concatenation, with one pwritev(2) per 1024 buffers (short writes and
// EINTR are resumed). It returns the total written and nil, or 0 and an
// error. With DirectIO every buffer must be aligned (AlignedBuffer,
// multiple of DirectAlign long) to go in one call; otherwise each buffer
// is written in turn through the bounce path.
func (f *File) WriteVAt(bufs [][]byte, off int64) (int, error) {
	var n int64
	for _, b := range bufs {
		n += int64(len(b))
	}
	fd, err := f.enter("write", off, n, true)
	if err != nil {
		return 0, err
	}
	defer f.exit()
	if n == 0 {
		return 0, nil
	}
	if err := f.write("write", off, n, func() error { return f.pwritev(fd, bufs, off) }); err != nil {
		return 0, err
	}
	return int(n), nil
}

// write runs do, which writes [off, off+n), as a write of the map: the
// blocks are charged against the capacity first (ErrNoSpace beyond it)
// and become allocated if do succeeds. do's error is wrapped as op's.
func (f *File) write(op string, off, n int64, do func() error) error {
	if err := f.space.beginWrite(op, off, n); err != nil {
		return err
	}
	err := do()
	f.space.endWrite(off, n, err == nil)
	if err != nil {
		return f.writeErr(op, off, n, err)
	}
	return nil
}

func (f *File) pwritev(fd int, bufs [][]byte, off int64) error {
	iov := f.iovPool.Get().(*iovecs)
	defer f.iovPool.Put(iov)
	if !f.direct {
		if f.split > 0 {
			return pwritevSplit(fd, iov, bufs, off, f.split)
		}
		return pwritevFull(fd, iov, bufs, off)
	}
	pos := off
	aligned := true
	for _, b := range bufs {
		if len(b) > 0 && !isAligned(b, pos) {
			aligned = false
			break
		}
		pos += int64(len(b))
	}
	if aligned {
		f.rmw.RLock()
		defer f.rmw.RUnlock()
		return pwritevFull(fd, iov, bufs, off)
	}
	for _, b := range bufs {
		if err := f.pwrite(fd, b, off); err != nil {
			return err
		}
		off += int64(len(b))
	}
	return nil
}

// pwrite writes p at off, bouncing and read-modify-writing for DirectIO.
func (f *File) pwrite(fd int, p []byte, off int64) error {
	if !f.direct {
		return pwriteFull(fd, p, off)
	}
	if isAligned(p, off) {
		f.rmw.RLock()
		defer f.rmw.RUnlock()
		return pwriteFull(fd, p, off)
	}
	edges := off%DirectAlign != 0 || len(p)%DirectAlign != 0
	if edges {
		f.rmw.Lock()
		defer f.rmw.Unlock()
	} else {
		f.rmw.RLock()
		defer f.rmw.RUnlock()
	}
	bp := f.bounce.Get().(*[]byte)
	defer f.bounce.Put(bp)
	buf := *bp
	for done := int64(0); done < int64(len(p)); {
		pos := off + done
		as := alignDown(pos, DirectAlign)
		k := min(int64(len(p))-done, int64(len(buf))-(pos-as))
		ae := alignUp(pos+k, DirectAlign)
		// Edge blocks are read from the file, not through the map: a
		// write that finished its pwrite may not have marked its block
		// allocated yet, and its data must survive.
		if pos > as {
			if err := preadFull(fd, buf[:DirectAlign], as); err != nil {
				return err
			}
		}
		if tail := ae - DirectAlign; pos+k < ae && (tail > as || pos == as) {
			if err := preadFull(fd, buf[tail-as:ae-as], tail); err != nil {
				return err
			}
		}
		copy(buf[pos-as:], p[done:done+k])
		if err := pwriteFull(fd, buf[:ae-as], as); err != nil {
			return err
		}
		done += k
	}
	return nil
}

// Allocate preallocates the blocks covering [off, off+n) with
// fallocate(FALLOC_FL_KEEP_SIZE), so that host ENOSPC shows here and not in
// the middle of the write that follows. The blocks become allocated in the
// map and their reservations are consumed. A range the map already knows
// to be allocated costs no system call. On a filesystem without fallocate
// it returns an error wrapping device.ErrNotSupported.
func (f *File) Allocate(off, n int64) error {
	fd, err := f.enter("allocate", off, n, true)
	if err != nil {
		return err
	}
	defer f.exit()
	if n == 0 || f.space.allAllocated(off, n) {
		return nil // nothing to allocate: skip the system call
	}
	err = f.space.beginWrite("allocate", off, n)
	if err != nil {
		return err
	}
	start, end := f.space.roundOut(off, n)
	err = fallocate(fd, modeKeepSize, start, end-start)
	f.space.endWrite(off, n, err == nil)
	if isNotSupported(err) {
		return fmt.Errorf("alloc: allocate [%d,+%d): %w: %w", off, n, device.ErrNotSupported, err)
	}
	if err != nil {
		return f.writeErr("allocate", off, n, err)
	}
	return nil
}

// Trim implements device.Trimmer with fallocate(FALLOC_FL_PUNCH_HOLE |
// FALLOC_FL_KEEP_SIZE): the range reads as zeros and the blocks wholly
// inside it are released (partial blocks at the edges are zeroed in
// place). Reservations are not touched (see Space). Without punch support
// it writes zeros.
func (f *File) Trim(off, n int64) error {
	fd, err := f.enter("trim", off, n, true)
	if err != nil {
		return err
	}
	defer f.exit()
	if n == 0 {
		return nil
	}
	if err := f.punch(fd, off, n); err != nil {
		if !isNotSupported(err) {
			return ioErr("trim", off, n, err)
		}
		if err := f.writeZeros(fd, off, n); err != nil {
			return err
		}
	}
	return nil
}

// punch punches [off, off+n), updating the map.
func (f *File) punch(fd int, off, n int64) error {
	if f.direct {
		f.rmw.RLock()
		defer f.rmw.RUnlock()
	}
	f.space.markFree(off, n)
	err := fallocate(fd, modePunch, off, n)
	if err != nil {
		// The blocks may still hold data: say so rather than serve a
		// false hole (the allocated count may overstate until reopened).
		start, end := f.space.roundIn(off, n)
		f.space.mu.Lock()
		f.space.markAllocatedLocked(start, end)
		f.space.mu.Unlock()
	}
	return err
}

// Zero implements device.Zeroer. With mayTrim it punches a hole (as
// Trim). Otherwise the range stays allocated: FALLOC_FL_ZERO_RANGE, or
// where the filesystem lacks it a punch followed by fallocate, or where it
// lacks those too, writing zeros (then FastZero reports false).
func (f *File) Zero(off, n int64, mayTrim bool) error {
	fd, err := f.enter("zero", off, n, true)
	if err != nil {
		return err
	}
	defer f.exit()
	if n == 0 {
		return nil
	}
	if mayTrim {
		err := f.punch(fd, off, n)
		if err == nil {
			return nil
		}
		if !isNotSupported(err) {
			return f.writeErr("zero", off, n, err)
		}
	}
	return f.write("zero", off, n, func() error { return f.zeroAllocated(fd, off, n) })
}

// zeroAllocated zeros [off, off+n) leaving it allocated.
func (f *File) zeroAllocated(fd int, off, n int64) error {
	if !f.noZeroRange.Load() {
		err := f.fallocateShared(fd, modeZeroRange, off, n)
		if !isNotSupported(err) {
			return err
		}
		f.noZeroRange.Store(true)
	}
	if !f.noPunchAlloc.Load() {
		start, end := f.space.roundOut(off, n)
		err := f.fallocateShared(fd, modePunch, off, n)
		if err == nil {
			err = f.fallocateShared(fd, modeKeepSize, start, end-start)
		}
		if !isNotSupported(err) {
			return err
		}
		f.noPunchAlloc.Store(true)
	}
	return f.writeZerosRaw(fd, off, n)
}

func (f *File) fallocateShared(fd int, mode uint32, off, n int64) error {
	if f.direct {
		f.rmw.RLock()
		defer f.rmw.RUnlock()
	}
	return fallocate(fd, mode, off, n)
}

// writeZeros writes zeros over [off, off+n) as a write (charged, mapped).
func (f *File) writeZeros(fd int, off, n int64) error {
	return f.write("zero", off, n, func() error { return f.writeZerosRaw(fd, off, n) })
}

func (f *File) writeZerosRaw(fd int, off, n int64) error {
	for done := int64(0); done < n; {
		k := min(n-done, zeroBufSize)
		if err := f.pwrite(fd, f.zeros[:k], off+done); err != nil {
			return err
		}
		done += k
	}
	return nil
}

// FastZero implements device.FastZeroer: true unless Zero without mayTrim
// would have to write zero buffers (no ZERO_RANGE and no punch+fallocate on
// the host filesystem).
func (f *File) FastZero() bool {
	return !f.readOnly && (!f.noZeroRange.Load() || !f.noPunchAlloc.Load())
}

// Extents implements device.Extenter from the allocation map: allocated
// blocks are data (flags 0), the rest hole|zero. Extents are clipped to
// [off, off+n); no system call is made.
func (f *File) Extents(off, n int64, yield func(device.Extent) bool) error {
	if err := device.CheckRange("alloc: extents", off, n, f.size); err != nil {
		return err
	}
	f.closeMu.RLock()
	closed := f.closed
	f.closeMu.RUnlock()
	if closed {
		return fmt.Errorf("alloc: extents [%d,+%d): %w", off, n, device.ErrClosed)
	}
	end := off + n
	for cur := off; cur < end; {
		ds, de, ok := f.space.nextData(cur, end)
		if !ok {
			ds, de = end, end
		}
		if ds > cur && !yield(device.Extent{Off: cur, Len: ds - cur, Flags: device.Hole | device.Zero}) {
			return nil
		}
		if de > ds && !yield(device.Extent{Off: ds, Len: de - ds}) {
			return nil
		}
		cur = max(de, ds)
	}
	return nil
}

// Flush implements device.Device with fdatasync(2), which persists the
// data and the allocation metadata needed to read it back.
func (f *File) Flush() error {
	f.closeMu.RLock()
	defer f.closeMu.RUnlock()
	if f.closed {
		return fmt.Errorf("alloc: flush: %w", device.ErrClosed)
	}
	if err := fdatasync(f.fd); err != nil {
		return f.writeErr("flush", 0, f.size, err)
	}
	return nil
}

// SyncRange implements device.RangeSyncer. It calls fdatasync(2) for the
// whole file: sync_file_range(2) neither writes the metadata of newly
// allocated blocks nor flushes the disk's write cache, so it cannot make a
// range durable on its own (see docs/alloc.md).
func (f *File) SyncRange(off, n int64) error {
	fd, err := f.enter("sync", off, n, false)
	if err != nil {
		return err
	}
	defer f.exit()
	if err := fdatasync(fd); err != nil {
		return f.writeErr("sync", off, n, err)
	}
	return nil
}

// StartWriteback asks the kernel to start writing the host page cache
// pages of [off, off+n) to disk now, without waiting
// (sync_file_range(SYNC_FILE_RANGE_WRITE)). It makes nothing durable; it
// only shortens the next Flush, which otherwise writes every page dirtied
// since the last one. The write-back cache may call it after each cluster.
// It does nothing with DirectIO (no dirty pages).
func (f *File) StartWriteback(off, n int64) error {
	fd, err := f.enter("start writeback", off, n, false)
	if err != nil {
		return err
	}
	defer f.exit()
	if f.direct || n == 0 || f.readOnly {
		return nil
	}
	if err := startWriteback(fd, off, n); err != nil {
		return ioErr("start writeback", off, n, err)
	}
	return nil
}

// Prefetch implements device.Prefetcher with posix_fadvise(WILLNEED). It
// does nothing with DirectIO (there is no page cache to fill).
func (f *File) Prefetch(off, n int64) error {
	fd, err := f.enter("prefetch", off, n, false)
	if err != nil {
		return err
	}
	defer f.exit()
	if f.direct || n == 0 {
		return nil
	}
	if err := fadviseWillNeed(fd, off, n); err != nil {
		return ioErr("prefetch", off, n, err)
	}
	return nil
}
