package nbdserver

import (
	"github.com/extentd/extentd/device"
)

// handle performs a validated request on the device and records the result
// in r. It runs on a worker goroutine and holds no lock.
func (c *conn) handle(r *request) {
	x := c.exp
	off, n := int64(r.off), int64(r.length)
	var err error
	switch r.cmd {
	case CmdRead:
		err = c.read(r)
	case CmdWrite:
		if n > 0 {
			if _, err = x.Device.WriteAt(r.data, off); err == nil {
				err = c.fua(r)
			}
		}
	case CmdFlush:
		err = x.Device.Flush()
	case CmdTrim:
		if n > 0 {
			if err = x.trimmer.Trim(off, n); err == nil {
				err = c.fua(r)
			}
		}
	case CmdWriteZeroes:
		if n > 0 {
			if err = x.zeroer.Zero(off, n, r.flags&cmdFlagNoHole == 0); err == nil {
				err = c.fua(r)
			}
		}
	case CmdCache:
		if x.prefetcher != nil && n > 0 {
			err = x.prefetcher.Prefetch(off, n)
		}
	case CmdBlockStatus:
		err = c.blockStatus(r)
	}
	c.setErr(r, err)
}

// setErr records the device error of r, if any, as its NBD error and logs
// it.
func (c *conn) setErr(r *request, err error) {
	if err != nil {
		r.errno = errnoOf(err, r.cmd, r.flags)
		r.msg = r.errno.message()
		c.logFailed(r, err)
	}
}

// fua makes a completed write durable if the request asked for it.
func (c *conn) fua(r *request) error {
	if r.flags&cmdFlagFUA == 0 {
		return nil
	}
	if s := c.exp.syncer; s != nil {
		return s.SyncRange(int64(r.off), int64(r.length))
	}
	return c.exp.Device.Flush()
}

// minSparseRead is the smallest READ whose zero runs are looked for and sent
// as OFFSET_HOLE chunks. Below it the extent query (a second pass over the
// device's state per request) costs more than the zeros it could save.
const minSparseRead = 64 << 10

// sparseRead reports whether READ r is answered with hole chunks for its
// zero runs: structured replies, an Extenter device, no DF flag, and at
// least minSparseRead bytes.
func (c *conn) sparseRead(r *request) bool {
	return c.neg.structured && c.exp.extenter != nil && r.flags&cmdFlagDF == 0 && r.length >= minSparseRead
}

// read fills r.data. With structured replies, an Extenter device and no DF
// flag, zero runs of large reads become hole segments that are not read at
// all.
func (c *conn) read(r *request) error {
	n := int(r.length)
	if n == 0 {
		return nil
	}
	if r.buf == nil { // the inline path may have taken one already
		r.buf = c.s.pools.get(n)
	}
	r.data = (*r.buf)[:n]
	off := int64(r.off)
	x := c.exp
	if !c.sparseRead(r) {
		r.segs[0] = segment{off: off, n: int64(n)}
		r.nsegs = 1
		_, err := x.Device.ReadAt(r.data, off)
		return err
	}
	r.pos = off
	if err := x.extenter.Extents(off, int64(n), r.yield); err != nil {
		return err
	}
	if end := off + int64(n); r.pos < end {
		r.addSeg(r.pos, end-r.pos, false)
	}
	for _, sg := range r.segs[:r.nsegs] {
		if sg.hole {
			continue
		}
		if _, err := x.Device.ReadAt(r.data[sg.off-off:][:sg.n], sg.off); err != nil {
			return err
		}
	}
	return nil
}

// onExtent receives extents for a sparse READ or a BLOCK_STATUS.
func (r *request) onExtent(e device.Extent) bool {
	end := int64(r.off + r.length)
	if e.Off > r.pos {
		// A gap the device did not describe: treat it as data.
		if r.cmd != CmdRead {
			return false
		}
		r.addSeg(r.pos, min(e.Off, end)-r.pos, false)
	}
	lo, hi := max(e.Off, r.pos), min(e.Off+e.Len, end)
	if hi <= lo {
		return r.pos < end
	}
	r.pos = hi
	if r.cmd == CmdBlockStatus {
		return r.addDesc(hi-lo, uint32(e.Flags&(device.Hole|device.Zero))) && hi < end
	}
	r.addSeg(lo, hi-lo, e.Flags&device.Zero != 0 && hi-lo >= minHoleChunk)
	return hi < end
}

// addSeg appends [off, off+n) to the READ segments, merging with the last
// one when they are alike and turning the tail into data when full.
func (r *request) addSeg(off, n int64, hole bool) {
	if k := r.nsegs; k > 0 {
		last := &r.segs[k-1]
		if last.hole == hole || k == maxSegs {
			last.n = off + n - last.off
			last.hole = last.hole && hole
			return
		}
	}
	r.segs[r.nsegs] = segment{off: off, n: n, hole: hole}
	r.nsegs++
}

// maxDescriptors bounds the descriptors of one BLOCK_STATUS reply.
const maxDescriptors = 8192

// blockStatus builds the BLOCK_STATUS(_EXT) chunk payload in r.data.
func (c *conn) blockStatus(r *request) error {
	r.maxd = maxDescriptors
	if r.flags&cmdFlagReqOne != 0 {
		r.maxd = 1
	}
	ext := c.neg.extended
	hdr := blockStatusHeaderSize(ext)
	r.buf = c.s.pools.get(hdr + descriptorSize(ext)*r.maxd)
	r.data = (*r.buf)[:hdr]
	off := int64(r.off)
	if x := c.exp.extenter; x != nil {
		r.pos = off
		if err := x.Extents(off, int64(r.length), r.yield); err != nil {
			return err
		}
	}
	if r.ndesc == 0 {
		// No extenter, or it described nothing: everything is data.
		r.addDesc(int64(r.length), 0)
	}
	putBlockStatusHeader(r.data, ext, metaBaseAllocationID, uint32(r.ndesc))
	return nil
}

// addDesc appends one base:allocation descriptor, merging it with the
// previous one if the flags match. It returns false when no more fit.
func (r *request) addDesc(n int64, flags uint32) bool {
	ext := r.c.neg.extended
	size := descriptorSize(ext)
	if r.ndesc > 0 {
		p := r.data[len(r.data)-size:]
		if ln, fl := getDescriptor(p, ext); fl == flags {
			putDescriptor(p, ext, ln+uint64(n), flags)
			return true
		}
	}
	if r.ndesc >= r.maxd {
		return false
	}
	k := len(r.data)
	r.data = r.data[:k+size]
	putDescriptor(r.data[k:], ext, uint64(n), flags)
	r.ndesc++
	return r.ndesc < r.maxd
}
