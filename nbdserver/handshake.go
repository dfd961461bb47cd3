package nbdserver

import (
	"crypto/tls"
	"encoding/binary"
	"fmt"
	"io"
	"strings"
	"time"

	"go.uber.org/zap"
)

// maxOptionDrain is the largest oversized option we read and discard to
// answer NBD_REP_ERR_TOO_BIG; anything larger ends the connection.
const maxOptionDrain = 4 << 20

// handshake runs the fixed newstyle negotiation. On success the connection
// has chosen c.exp and is ready for transmission.
func (c *conn) handshake() error {
	s := c.s
	c.nc.SetDeadline(time.Now().Add(s.opts.HandshakeTimeout))
	var greet [sizeGreeting]byte
	putGreeting(&greet)
	if _, err := c.bw.Write(greet[:]); err != nil {
		return err
	}
	if err := c.bw.Flush(); err != nil {
		return err
	}
	var cf [4]byte
	if _, err := io.ReadFull(c.br, cf[:]); err != nil {
		return err
	}
	cflags := binary.BigEndian.Uint32(cf[:])
	if cflags&^(cflagFixedNewstyle|cflagNoZeroes) != 0 {
		return fmt.Errorf("%w: %#x", errBadClientFlags, cflags)
	}
	c.noZeroes = cflags&cflagNoZeroes != 0
	if s.opts.RequireTLS && cflags&cflagFixedNewstyle == 0 {
		// TLS needs fixed newstyle; such a client can never upgrade.
		return errTLSRequired
	}

	for n := 0; ; n++ {
		if n >= s.opts.MaxOptions {
			return errTooManyOptions
		}
		var hb [sizeOptionHeader]byte
		if _, err := io.ReadFull(c.br, hb[:]); err != nil {
			return err
		}
		h := decodeOptionHeader(&hb)
		if h.magic != magicOpts {
			return fmt.Errorf("%w: option magic %#x", errBadMagic, h.magic)
		}
		if h.length > s.opts.MaxOptionLen {
			if h.option == optExportName || h.length > max(maxOptionDrain, s.opts.MaxOptionLen) {
				return fmt.Errorf("%w: option %d length %d", errOptionTooLong, h.option, h.length)
			}
			if _, err := io.CopyN(io.Discard, c.br, int64(h.length)); err != nil {
				return err
			}
			if err := c.optError(h.option, repErrTooBig, "option too long"); err != nil {
				return err
			}
			continue
		}
		data, err := c.readOption(h.length)
		if err != nil {
			return err
		}
		if s.shuttingDown.Load() && h.option != optAbort {
			if h.option == optExportName {
				return ErrServerClosed
			}
			if err := c.optError(h.option, repErrShutdown, "server is shutting down"); err != nil {
				return err
			}
			continue
		}
		if s.opts.RequireTLS && !c.tls && h.option != optStartTLS && h.option != optAbort {
			if h.option == optExportName {
				return errTLSRequired
			}
			if err := c.optError(h.option, repErrTLSReqd, "TLS is required"); err != nil {
				return err
			}
			continue
		}
		done, err := c.option(h.option, data)
		if err != nil || done {
			return err
		}
	}
}

// readOption reads an option payload of n <= MaxOptionLen bytes into a
// buffer reused across options.
func (c *conn) readOption(n uint32) ([]byte, error) {
	if cap(c.optBuf) < int(n) {
		c.optBuf = make([]byte, n)
	}
	b := c.optBuf[:n]
	_, err := io.ReadFull(c.br, b)
	return b, err
}

// option handles one option. done is true when transmission starts.
func (c *conn) option(opt uint32, data []byte) (done bool, err error) {
	switch opt {
	case optExportName:
		return c.optExportName(string(data))
	case optAbort:
		// Best effort: the client may already have hung up.
		c.optReply(opt, repAck, nil)
		return false, errAborted
	case optList:
		if len(data) != 0 {
			return false, c.optError(opt, repErrInvalid, "NBD_OPT_LIST takes no data")
		}
		return false, c.optList()
	case optStartTLS:
		return false, c.optStartTLS(data)
	case optInfo, optGo:
		return c.optInfoGo(opt, data)
	case optStructuredReply:
		switch {
		case len(data) != 0:
			return false, c.optError(opt, repErrInvalid, "NBD_OPT_STRUCTURED_REPLY takes no data")
		case c.extended:
			return false, c.optError(opt, repErrExtHeaderReq, "extended headers already negotiated")
		case c.structured:
			return false, c.optError(opt, repErrInvalid, "structured replies already negotiated")
		}
		c.structured = true
		return false, c.optReply(opt, repAck, nil)
	case optExtendedHeaders:
		switch {
		case len(data) != 0:
			return false, c.optError(opt, repErrInvalid, "NBD_OPT_EXTENDED_HEADERS takes no data")
		case c.extended:
			return false, c.optError(opt, repErrInvalid, "extended headers already negotiated")
		}
		c.extended, c.structured = true, true
		return false, c.optReply(opt, repAck, nil)
	case optListMetaContext, optSetMetaContext:
		return false, c.optMetaContext(opt, data)
	}
	return false, c.optError(opt, repErrUnsup, "option not supported")
}

// optReply sends one option reply with payload p.
func (c *conn) optReply(opt, typ uint32, p []byte) error {
	var h [sizeOptionReply]byte
	putOptionReply(&h, opt, typ, uint32(len(p)))
	c.bw.Write(h[:])
	c.bw.Write(p)
	return c.bw.Flush()
}

// optError sends an error reply carrying msg and logs it at debug level.
func (c *conn) optError(opt, typ uint32, msg string) error {
	if ce := c.log.Check(zap.DebugLevel, "option refused"); ce != nil {
		ce.Write(zap.Uint32("option", opt), zap.Uint32("reply", typ), zap.String("reason", msg))
	}
	return c.optReply(opt, typ, []byte(msg))
}

func (c *conn) optExportName(name string) (bool, error) {
	if c.extended {
		// The client promised not to; EXPORT_NAME cannot fail politely.
		return false, fmt.Errorf("%w: NBD_OPT_EXPORT_NAME after extended headers", errUnknownExport)
	}
	x := c.s.lookup(name)
	if x == nil {
		return false, fmt.Errorf("%w: %q", errUnknownExport, name)
	}
	c.choose(x, name)
	var b [sizeExportNameReply + sizeExportNameZeroes]byte
	binary.BigEndian.PutUint64(b[0:], uint64(x.size))
	binary.BigEndian.PutUint16(b[8:], c.tflags)
	n := sizeExportNameReply
	if !c.noZeroes {
		n += sizeExportNameZeroes
	}
	c.bw.Write(b[:n])
	return true, c.bw.Flush()
}

// choose makes x the connection's export.
func (c *conn) choose(x *export, name string) {
	c.exp = x
	c.tflags = x.transmissionFlags(c.structured)
	c.metaAlloc = c.metaAlloc && c.metaExport == name
}

func (c *conn) optList() error {
	for _, x := range c.s.exports {
		p := make([]byte, 4, 4+len(x.Name)+len(x.Description))
		binary.BigEndian.PutUint32(p, uint32(len(x.Name)))
		p = append(p, x.Name...)
		p = append(p, x.Description...)
		var h [sizeOptionReply]byte
		putOptionReply(&h, optList, repServer, uint32(len(p)))
		c.bw.Write(h[:])
		c.bw.Write(p)
	}
	return c.optReply(optList, repAck, nil)
}

func (c *conn) optStartTLS(data []byte) error {
	switch {
	case c.s.opts.TLSConfig == nil:
		return c.optError(optStartTLS, repErrUnsup, "TLS is not configured")
	case len(data) != 0:
		return c.optError(optStartTLS, repErrInvalid, "NBD_OPT_STARTTLS takes no data")
	case c.tls:
		return c.optError(optStartTLS, repErrInvalid, "TLS already negotiated")
	case c.br.Buffered() != 0:
		// The client sent more before our ACK: it cannot be plaintext
		// after the upgrade, so the stream is broken.
		return fmt.Errorf("nbdserver: data after NBD_OPT_STARTTLS")
	}
	if err := c.optReply(optStartTLS, repAck, nil); err != nil {
		return err
	}
	tc := tls.Server(c.nc, c.s.opts.TLSConfig)
	if err := tc.Handshake(); err != nil {
		return fmt.Errorf("nbdserver: TLS handshake: %w", err)
	}
	c.setConn(tc)
	c.tls = true
	// Forget everything negotiated in plaintext.
	c.structured, c.extended, c.metaAlloc, c.metaExport = false, false, false, ""
	c.log.Debug("TLS established", zap.Uint16("version", tc.ConnectionState().Version))
	return nil
}

// parseNameAndRest splits data into a 32-bit-length-prefixed name and the
// rest. ok is false if the name runs past data or is too long.
func parseNameAndRest(data []byte) (name string, rest []byte, ok bool) {
	if len(data) < 4 {
		return "", nil, false
	}
	n := binary.BigEndian.Uint32(data)
	if uint64(n) > uint64(len(data)-4) || n > maxStringLen {
		return "", nil, false
	}
	return string(data[4 : 4+n]), data[4+n:], true
}

func (c *conn) optInfoGo(opt uint32, data []byte) (bool, error) {
	name, rest, ok := parseNameAndRest(data)
	if !ok || len(rest) < 2 {
		return false, c.optError(opt, repErrInvalid, "malformed NBD_OPT_INFO/GO")
	}
	nreq := int(binary.BigEndian.Uint16(rest))
	rest = rest[2:]
	if len(rest) != 2*nreq {
		return false, c.optError(opt, repErrInvalid, "NBD_OPT_INFO/GO request count does not match length")
	}
	var wantName, wantDesc bool
	for i := range nreq {
		switch binary.BigEndian.Uint16(rest[2*i:]) {
		case infoName:
			wantName = true
		case infoDescription:
			wantDesc = true
		}
	}
	x := c.s.lookup(name)
	if x == nil {
		return false, c.optError(opt, repErrUnknown, "unknown export "+quoteForMsg(name))
	}
	tflags := x.transmissionFlags(c.structured)

	var b [sizeInfoBlockSize]byte
	binary.BigEndian.PutUint16(b[0:], infoExport)
	binary.BigEndian.PutUint64(b[2:], uint64(x.size))
	binary.BigEndian.PutUint16(b[10:], tflags)
	c.writeInfo(opt, b[:sizeInfoExport])

	binary.BigEndian.PutUint16(b[0:], infoBlockSize)
	binary.BigEndian.PutUint32(b[2:], x.MinBlock)
	binary.BigEndian.PutUint32(b[6:], x.PrefBlock)
	binary.BigEndian.PutUint32(b[10:], x.MaxBlock)
	c.writeInfo(opt, b[:sizeInfoBlockSize])

	if wantName {
		c.writeInfo(opt, append([]byte{0, infoName}, x.Name...))
	}
	if wantDesc && x.Description != "" {
		c.writeInfo(opt, append([]byte{0, infoDescription}, x.Description...))
	}
	if err := c.optReply(opt, repAck, nil); err != nil {
		return false, err
	}
	if opt == optGo {
		c.choose(x, name)
		return true, nil
	}
	return false, nil
}

// writeInfo buffers one NBD_REP_INFO reply; the caller flushes.
func (c *conn) writeInfo(opt uint32, p []byte) {
	var h [sizeOptionReply]byte
	putOptionReply(&h, opt, repInfo, uint32(len(p)))
	c.bw.Write(h[:])
	c.bw.Write(p)
}

// optMetaContext handles NBD_OPT_LIST_META_CONTEXT and
// NBD_OPT_SET_META_CONTEXT. The only context is base:allocation.
func (c *conn) optMetaContext(opt uint32, data []byte) error {
	set := opt == optSetMetaContext
	if set {
		// SET replaces the selection even when it fails.
		c.metaAlloc, c.metaExport = false, ""
	}
	if !c.structured {
		return c.optError(opt, repErrInvalid, "structured replies not negotiated")
	}
	name, rest, ok := parseNameAndRest(data)
	if !ok || len(rest) < 4 {
		return c.optError(opt, repErrInvalid, "malformed meta context request")
	}
	nq := binary.BigEndian.Uint32(rest)
	rest = rest[4:]
	match := !set && nq == 0 // LIST with no query lists everything
	for range nq {
		q, r, ok := parseNameAndRest(rest)
		if !ok {
			return c.optError(opt, repErrInvalid, "malformed meta context query")
		}
		rest = r
		switch {
		case q == metaBaseAllocation:
			match = true
		case q == metaBaseNamespace && !set:
			match = true
		}
	}
	if len(rest) != 0 {
		return c.optError(opt, repErrInvalid, "trailing data after meta context queries")
	}
	if c.s.lookup(name) == nil {
		return c.optError(opt, repErrUnknown, "unknown export "+quoteForMsg(name))
	}
	if match {
		var id uint32
		if set {
			id = metaBaseAllocationID
			c.metaAlloc, c.metaExport = true, name
		}
		p := binary.BigEndian.AppendUint32(nil, id)
		p = append(p, metaBaseAllocation...)
		var h [sizeOptionReply]byte
		putOptionReply(&h, opt, repMetaContext, uint32(len(p)))
		c.bw.Write(h[:])
		c.bw.Write(p)
	}
	return c.optReply(opt, repAck, nil)
}

// quoteForMsg quotes a client-supplied name for an error message, keeping
// the message short and valid UTF-8.
func quoteForMsg(s string) string {
	if len(s) > 64 {
		s = s[:64] + "..."
	}
	return fmt.Sprintf("%q", strings.ToValidUTF8(s, "?"))
}
