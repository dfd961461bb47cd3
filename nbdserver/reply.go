package nbdserver

import (
	"strings"
	"unicode/utf8"
)

// maxErrorMsg caps error-chunk messages (the spec asks for strings of at most
// 256 bytes where possible, 4096 at most).
const maxErrorMsg = 256

// writeReplyLocked encodes r's reply into the buffered writer. c.wmu must
// be held. Errors are sticky in c.bw and surface at Flush.
//
// +checklocks:c.wmu
func (c *conn) writeReplyLocked(r *request) error {
	if r.errno != 0 {
		return c.writeErrorLocked(r)
	}
	b := c.whdr[:]
	if !c.neg.structured {
		n := putSimpleReply(b, 0, r.cookie)
		if r.cmd == CmdRead {
			return c.writeDataLocked(b[:n], r.data)
		}
		_, err := c.bw.Write(b[:n])
		return err
	}
	ext := c.neg.extended
	switch r.cmd {
	case CmdRead:
		if r.nsegs == 0 {
			break // zero-length read: NONE below
		}
		for i, sg := range r.segs[:r.nsegs] {
			var flags uint16
			if i == r.nsegs-1 {
				// All data was read before the reply started, so no error
				// can follow the last chunk.
				flags = replyFlagDone
			}
			if sg.hole {
				k := putChunkHeader(b, ext, flags, replyTypeOffsetHole, r.cookie, r.off, sizeHoleChunk)
				k += putOffsetChunk(b[k:], uint64(sg.off), uint32(sg.n), true)
				c.bw.Write(b[:k])
				continue
			}
			k := putChunkHeader(b, ext, flags, replyTypeOffsetData, r.cookie, r.off, 8+uint64(sg.n))
			k += putOffsetChunk(b[k:], uint64(sg.off), 0, false)
			start := sg.off - int64(r.off)
			if err := c.writeDataLocked(b[:k], r.data[start:start+sg.n]); err != nil {
				return err
			}
		}
		return nil
	case CmdBlockStatus:
		typ := uint16(replyTypeBlockStatus)
		if ext {
			typ = replyTypeBlockStatusExt
		}
		k := putChunkHeader(b, ext, replyFlagDone, typ, r.cookie, r.off, uint64(len(r.data)))
		c.bw.Write(b[:k])
		_, err := c.bw.Write(r.data)
		return err
	default:
		if !ext {
			// Structured replies allow a simple reply without payload;
			// it is shorter.
			n := putSimpleReply(b, 0, r.cookie)
			_, err := c.bw.Write(b[:n])
			return err
		}
	}
	k := putChunkHeader(b, ext, replyFlagDone, replyTypeNone, r.cookie, r.off, 0)
	_, err := c.bw.Write(b[:k])
	return err
}

// directData is the smallest READ payload written from the request's own
// buffer instead of being copied into the reply buffer first. Below it,
// the copy is cheaper than a system call, and it lets small replies share
// one write. Above it the copy is pure cost: nbdcopy's 256 KiB reads spent
// more CPU copying into the bufio.Writer than the write system calls took.
const directData = 64 << 10

// writeDataLocked writes header hdr (in c.whdr) and payload p: small
// payloads through the reply buffer, large ones straight from p in one
// writev with the header (after the replies already buffered, if any, go
// out in one write with hdr). c.wmu must be held.
//
// +checklocks:c.wmu
func (c *conn) writeDataLocked(hdr, p []byte) error {
	if len(p) < directData {
		c.bw.Write(hdr)
		_, err := c.bw.Write(p)
		return err
	}
	if c.bw.Buffered() > 0 {
		c.bw.Write(hdr)
		if err := c.bw.Flush(); err != nil {
			return err
		}
		hdr = nil
	}
	c.wbufs = append(c.wvec[:0], hdr, p)
	_, err := c.wbufs.WriteTo(c.nc)
	c.wvec = [2][]byte{} // do not pin the request's buffer
	return err
}

// writeErrorLocked sends r.errno: a simple reply without structured
// replies, otherwise an error chunk carrying r.msg. c.wmu must be held.
//
// +checklocks:c.wmu
func (c *conn) writeErrorLocked(r *request) error {
	b := c.whdr[:]
	if !c.neg.structured {
		n := putSimpleReply(b, r.errno, r.cookie)
		_, err := c.bw.Write(b[:n])
		return err
	}
	msg := errorMessage(r.msg)
	k := putChunkHeader(b, c.neg.extended, replyFlagDone, replyTypeError, r.cookie, r.off, uint64(sizeErrorChunk+len(msg)))
	k += putErrorChunk(b[k:], r.errno, len(msg))
	c.bw.Write(b[:k])
	_, err := c.bw.WriteString(msg)
	return err
}

// errorMessage trims msg to maxErrorMsg bytes of valid UTF-8.
func errorMessage(msg string) string {
	if len(msg) > maxErrorMsg {
		msg = msg[:maxErrorMsg]
		for len(msg) > 0 && !utf8.ValidString(msg) {
			msg = msg[:len(msg)-1]
		}
	}
	if !utf8.ValidString(msg) {
		msg = strings.ToValidUTF8(msg, "?")
	}
	return msg
}
