package nbdtest

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"time"
)

// Handshake drives the option phase of one connection, option by option.
// It validates what the server sends (magics, reply option codes, lengths)
// but never what the caller asks it to send, so tests can send illegal
// options on purpose. It is not safe for concurrent use.
//
// After a successful Go or ExportName the connection is in transmission;
// call Client or Raw to continue.
type Handshake struct {
	conn net.Conn
	r    *bufio.Reader

	// ServerFlags are the handshake flags from the greeting.
	ServerFlags uint16
	// ClientFlags are the flags sent by SendClientFlags.
	ClientFlags uint32

	structured bool              // STRUCTURED_REPLY acknowledged
	extended   bool              // EXTENDED_HEADERS acknowledged
	tls        bool              // STARTTLS succeeded
	contexts   map[uint32]string // from the last SET_META_CONTEXT
	metaExport string            // export named by the last SET_META_CONTEXT
	requested  string            // export name sent in GO / EXPORT_NAME
	info       ExportInfo        // from GO or EXPORT_NAME
	inTransmit bool
}

// ExportInfo describes an export as reported by NBD_OPT_INFO, NBD_OPT_GO or
// NBD_OPT_EXPORT_NAME.
type ExportInfo struct {
	Name        string // NBD_INFO_NAME, or the requested name
	Description string // NBD_INFO_DESCRIPTION
	Size        uint64
	Flags       uint16 // transmission flags (TFlag*)
	// Block size constraints (NBD_INFO_BLOCK_SIZE); zero unless
	// HasBlockSize.
	MinBlock, PrefBlock, MaxBlock uint32
	HasBlockSize                  bool
	// InfoTypes lists the NBD_INFO_* types received, in order.
	InfoTypes []uint16
}

// Has reports whether all transmission flags f are set.
func (e ExportInfo) Has(f uint16) bool { return e.Flags&f == f }

// OptionReply is one raw option reply.
type OptionReply struct {
	Option uint32
	Type   uint32
	Data   []byte
}

// IsError reports whether the reply type has bit 31 set.
func (r OptionReply) IsError() bool { return r.Type&RepFlagError != 0 }

// MetaContext is one NBD_REP_META_CONTEXT reply.
type MetaContext struct {
	ID   uint32
	Name string
}

// NewHandshake reads the server greeting from conn. It fails with
// ErrProtocol if the greeting is not fixed-newstyle-capable newstyle.
func NewHandshake(conn net.Conn) (*Handshake, error) {
	h := &Handshake{conn: conn, r: bufio.NewReader(conn)}
	var g [18]byte
	if _, err := io.ReadFull(h.r, g[:]); err != nil {
		return nil, fmt.Errorf("nbdtest: read greeting: %w", err)
	}
	if m := binary.BigEndian.Uint64(g[0:]); m != MagicNBD {
		return nil, protoErrorf("greeting magic %#x, want NBDMAGIC", m)
	}
	switch m := binary.BigEndian.Uint64(g[8:]); m {
	case MagicIHaveOpt:
	case MagicOldstyle:
		return nil, protoErrorf("server speaks oldstyle negotiation")
	default:
		return nil, protoErrorf("greeting second magic %#x, want IHAVEOPT", m)
	}
	h.ServerFlags = binary.BigEndian.Uint16(g[16:])
	return h, nil
}

// DefaultClientFlags returns FIXED_NEWSTYLE plus NO_ZEROES if the server
// offered it.
func (h *Handshake) DefaultClientFlags() uint32 {
	f := ClientFlagFixedNewstyle
	if h.ServerFlags&FlagNoZeroes != 0 {
		f |= ClientFlagNoZeroes
	}
	return f
}

// SendClientFlags sends the 32-bit client flags verbatim.
func (h *Handshake) SendClientFlags(flags uint32) error {
	h.ClientFlags = flags
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], flags)
	return h.WriteRaw(b[:])
}

// Conn returns the current connection (the TLS one after StartTLS).
func (h *Handshake) Conn() net.Conn { return h.conn }

// Structured reports whether structured replies were negotiated.
func (h *Handshake) Structured() bool { return h.structured }

// Extended reports whether extended headers were negotiated.
func (h *Handshake) Extended() bool { return h.extended }

// WriteRaw writes b to the connection as is.
func (h *Handshake) WriteRaw(b []byte) error {
	if _, err := h.conn.Write(b); err != nil {
		return fmt.Errorf("nbdtest: write: %w", err)
	}
	return nil
}

// SendOptionHeader sends an option header declaring length bytes of data,
// followed by data as is (which may be shorter or longer than length).
func (h *Handshake) SendOptionHeader(opt, length uint32, data []byte) error {
	b := make([]byte, 16, 16+len(data))
	binary.BigEndian.PutUint64(b[0:], MagicIHaveOpt)
	binary.BigEndian.PutUint32(b[8:], opt)
	binary.BigEndian.PutUint32(b[12:], length)
	return h.WriteRaw(append(b, data...))
}

// SendOption sends a well-formed option with data.
func (h *Handshake) SendOption(opt uint32, data []byte) error {
	return h.SendOptionHeader(opt, uint32(len(data)), data)
}

// ReadOptionReply reads one option reply without interpreting it beyond
// the magic and a sanity cap on its length.
func (h *Handshake) ReadOptionReply() (OptionReply, error) {
	var b [20]byte
	if _, err := io.ReadFull(h.r, b[:]); err != nil {
		return OptionReply{}, fmt.Errorf("nbdtest: read option reply: %w", err)
	}
	if m := binary.BigEndian.Uint64(b[0:]); m != MagicOptionReply {
		return OptionReply{}, protoErrorf("option reply magic %#x", m)
	}
	rep := OptionReply{Option: binary.BigEndian.Uint32(b[8:]), Type: binary.BigEndian.Uint32(b[12:])}
	n := binary.BigEndian.Uint32(b[16:])
	if n > maxReplyPayload {
		return OptionReply{}, protoErrorf("option reply of %d bytes", n)
	}
	rep.Data = make([]byte, n)
	if _, err := io.ReadFull(h.r, rep.Data); err != nil {
		return OptionReply{}, fmt.Errorf("nbdtest: read option reply data: %w", err)
	}
	return rep, nil
}

// Option sends opt with data and reads replies up to and including the
// final one (an ACK or an error). It checks that every reply names opt and
// that reply types are plausible for opt. An error reply is returned as an
// *OptionError together with the replies read so far.
func (h *Handshake) Option(opt uint32, data []byte) ([]OptionReply, error) {
	if err := h.SendOption(opt, data); err != nil {
		return nil, err
	}
	return h.ReadReplies(opt)
}

// ReadReplies reads the replies to opt, as Option does after sending.
func (h *Handshake) ReadReplies(opt uint32) ([]OptionReply, error) {
	var reps []OptionReply
	for {
		rep, err := h.ReadOptionReply()
		if err != nil {
			return reps, err
		}
		if rep.Option != opt {
			return reps, protoErrorf("reply for %s while waiting for %s", OptName(rep.Option), OptName(opt))
		}
		if rep.IsError() {
			return reps, &OptionError{Option: opt, Type: RepErr(rep.Type), Message: string(rep.Data)}
		}
		switch rep.Type {
		case RepAck:
			if len(rep.Data) != 0 {
				return reps, protoErrorf("%s ACK with %d bytes of data", OptName(opt), len(rep.Data))
			}
			return reps, nil
		case RepServer:
			if opt != OptList {
				return reps, protoErrorf("NBD_REP_SERVER in reply to %s", OptName(opt))
			}
		case RepInfo:
			if opt != OptInfo && opt != OptGo {
				return reps, protoErrorf("NBD_REP_INFO in reply to %s", OptName(opt))
			}
		case RepMetaContext:
			if opt != OptListMetaContext && opt != OptSetMetaContext {
				return reps, protoErrorf("NBD_REP_META_CONTEXT in reply to %s", OptName(opt))
			}
		default:
			return reps, protoErrorf("unknown reply type %#x to %s", rep.Type, OptName(opt))
		}
		reps = append(reps, rep)
	}
}

// ExportEntry is one NBD_REP_SERVER reply to NBD_OPT_LIST.
type ExportEntry struct {
	Name    string
	Details string // implementation-specific text after the name
}

// List sends NBD_OPT_LIST and returns the exports.
func (h *Handshake) List() ([]ExportEntry, error) {
	reps, err := h.Option(OptList, nil)
	if err != nil {
		return nil, err
	}
	var out []ExportEntry
	for _, r := range reps {
		if len(r.Data) < 4 {
			return nil, protoErrorf("NBD_REP_SERVER of %d bytes", len(r.Data))
		}
		n := binary.BigEndian.Uint32(r.Data)
		if uint64(n) > uint64(len(r.Data)-4) {
			return nil, protoErrorf("NBD_REP_SERVER name length %d exceeds reply", n)
		}
		out = append(out, ExportEntry{Name: string(r.Data[4 : 4+n]), Details: string(r.Data[4+n:])})
	}
	return out, nil
}

// Abort sends NBD_OPT_ABORT and waits for the ACK (or for the server to
// close the connection, which older servers do). It then closes the
// connection.
func (h *Handshake) Abort() error {
	defer h.conn.Close()
	_, err := h.Option(OptAbort, nil)
	if errors.Is(err, io.EOF) {
		return nil
	}
	return err
}

// StructuredReply negotiates NBD_OPT_STRUCTURED_REPLY.
func (h *Handshake) StructuredReply() error {
	if _, err := h.Option(OptStructuredReply, nil); err != nil {
		return err
	}
	h.structured = true
	return nil
}

// ExtendedHeaders negotiates NBD_OPT_EXTENDED_HEADERS (which implies
// structured replies).
func (h *Handshake) ExtendedHeaders() error {
	if _, err := h.Option(OptExtendedHeaders, nil); err != nil {
		return err
	}
	h.extended = true
	h.structured = true
	return nil
}

// StartTLS sends NBD_OPT_STARTTLS and, on ACK, performs a TLS client
// handshake with cfg. On success all earlier negotiated state is forgotten,
// as the spec requires of both sides.
func (h *Handshake) StartTLS(ctx context.Context, cfg *tls.Config) error {
	if _, err := h.Option(OptStartTLS, nil); err != nil {
		return err
	}
	if h.r.Buffered() != 0 {
		return protoErrorf("server sent %d bytes after STARTTLS ACK", h.r.Buffered())
	}
	tc := tls.Client(h.conn, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		return fmt.Errorf("nbdtest: tls handshake: %w", err)
	}
	h.conn = tc
	h.r = bufio.NewReader(tc)
	h.tls = true
	h.structured, h.extended, h.contexts = false, false, nil
	return nil
}

func metaPayload(export string, queries []string) []byte {
	b := binary.BigEndian.AppendUint32(nil, uint32(len(export)))
	b = append(b, export...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(queries)))
	for _, q := range queries {
		b = binary.BigEndian.AppendUint32(b, uint32(len(q)))
		b = append(b, q...)
	}
	return b
}

func parseMeta(reps []OptionReply) ([]MetaContext, error) {
	var out []MetaContext
	for _, r := range reps {
		if len(r.Data) < 4 {
			return nil, protoErrorf("NBD_REP_META_CONTEXT of %d bytes", len(r.Data))
		}
		out = append(out, MetaContext{ID: binary.BigEndian.Uint32(r.Data), Name: string(r.Data[4:])})
	}
	return out, nil
}

// ListMetaContext sends NBD_OPT_LIST_META_CONTEXT for export with queries
// (none: list all).
func (h *Handshake) ListMetaContext(export string, queries ...string) ([]MetaContext, error) {
	reps, err := h.Option(OptListMetaContext, metaPayload(export, queries))
	if err != nil {
		return nil, err
	}
	return parseMeta(reps)
}

// SetMetaContext sends NBD_OPT_SET_META_CONTEXT for export with queries and
// remembers the selected contexts for BLOCK_STATUS. Context ids must be
// unique.
func (h *Handshake) SetMetaContext(export string, queries ...string) ([]MetaContext, error) {
	h.contexts, h.metaExport = nil, export // replaced even on failure
	reps, err := h.Option(OptSetMetaContext, metaPayload(export, queries))
	if err != nil {
		return nil, err
	}
	mc, err := parseMeta(reps)
	if err != nil {
		return nil, err
	}
	h.contexts = make(map[uint32]string)
	for _, m := range mc {
		if _, dup := h.contexts[m.ID]; dup {
			return nil, protoErrorf("meta context id %d used twice", m.ID)
		}
		h.contexts[m.ID] = m.Name
	}
	return mc, nil
}

// DefaultInfoRequests returns NAME, DESCRIPTION and BLOCK_SIZE, what Dial
// asks for in NBD_OPT_GO by default (a fresh slice each call).
func DefaultInfoRequests() []uint16 { return []uint16{InfoName, InfoDescription, InfoBlockSize} }

// InfoPayload encodes the data of NBD_OPT_INFO / NBD_OPT_GO.
func InfoPayload(name string, reqs []uint16) []byte {
	b := binary.BigEndian.AppendUint32(nil, uint32(len(name)))
	b = append(b, name...)
	b = binary.BigEndian.AppendUint16(b, uint16(len(reqs)))
	for _, r := range reqs {
		b = binary.BigEndian.AppendUint16(b, r)
	}
	return b
}

func parseInfo(name string, reps []OptionReply) (ExportInfo, error) {
	info := ExportInfo{Name: name}
	gotExport := false
	for _, r := range reps {
		if len(r.Data) < 2 {
			return info, protoErrorf("NBD_REP_INFO of %d bytes", len(r.Data))
		}
		t := binary.BigEndian.Uint16(r.Data)
		d := r.Data[2:]
		info.InfoTypes = append(info.InfoTypes, t)
		switch t {
		case InfoExport:
			if len(d) != 10 {
				return info, protoErrorf("NBD_INFO_EXPORT of %d bytes, want 12", len(r.Data))
			}
			info.Size = binary.BigEndian.Uint64(d)
			info.Flags = binary.BigEndian.Uint16(d[8:])
			gotExport = true
		case InfoName:
			info.Name = string(d)
		case InfoDescription:
			info.Description = string(d)
		case InfoBlockSize:
			if len(d) != 12 {
				return info, protoErrorf("NBD_INFO_BLOCK_SIZE of %d bytes, want 14", len(r.Data))
			}
			info.MinBlock = binary.BigEndian.Uint32(d)
			info.PrefBlock = binary.BigEndian.Uint32(d[4:])
			info.MaxBlock = binary.BigEndian.Uint32(d[8:])
			info.HasBlockSize = true
		default:
			// Unknown info types are to be ignored by clients.
		}
	}
	if !gotExport {
		return info, protoErrorf("no NBD_INFO_EXPORT before ACK")
	}
	if info.Flags&TFlagHasFlags == 0 {
		return info, protoErrorf("transmission flags %#x lack NBD_FLAG_HAS_FLAGS", info.Flags)
	}
	return info, nil
}

// Info sends NBD_OPT_INFO for name asking for reqs.
func (h *Handshake) Info(name string, reqs []uint16) (ExportInfo, error) {
	reps, err := h.Option(OptInfo, InfoPayload(name, reqs))
	if err != nil {
		return ExportInfo{}, err
	}
	return parseInfo(name, reps)
}

// Go sends NBD_OPT_GO for name asking for reqs. On success the connection
// is in transmission; continue with Client or Raw.
func (h *Handshake) Go(name string, reqs []uint16) (ExportInfo, error) {
	h.requested = name
	reps, err := h.Option(OptGo, InfoPayload(name, reqs))
	if err != nil {
		return ExportInfo{}, err
	}
	info, err := parseInfo(name, reps)
	if err != nil {
		return info, err
	}
	h.enterTransmission(info)
	return info, nil
}

// enterTransmission records the export. Meta contexts apply only if the
// last SET_META_CONTEXT named the same export (spec); otherwise none are
// active and a status reply would be a protocol violation.
func (h *Handshake) enterTransmission(info ExportInfo) {
	if h.metaExport != h.requested {
		h.contexts = nil
	}
	h.info, h.inTransmit = info, true
}

// ExportName sends NBD_OPT_EXPORT_NAME. The server either answers with the
// export size and flags (plus 124 zero bytes unless NO_ZEROES was
// negotiated) or closes the connection.
func (h *Handshake) ExportName(name string) (ExportInfo, error) {
	if err := h.SendOption(OptExportName, []byte(name)); err != nil {
		return ExportInfo{}, err
	}
	n := 10
	if h.ClientFlags&ClientFlagNoZeroes == 0 {
		n += exportNameZeroPad
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(h.r, b); err != nil {
		return ExportInfo{}, fmt.Errorf("nbdtest: read NBD_OPT_EXPORT_NAME reply: %w", err)
	}
	for i, c := range b[10:] {
		if c != 0 {
			return ExportInfo{}, protoErrorf("EXPORT_NAME padding byte %d is %#x", i, c)
		}
	}
	info := ExportInfo{Name: name, Size: binary.BigEndian.Uint64(b), Flags: binary.BigEndian.Uint16(b[8:])}
	if info.Flags&TFlagHasFlags == 0 {
		return info, protoErrorf("transmission flags %#x lack NBD_FLAG_HAS_FLAGS", info.Flags)
	}
	h.requested = name
	h.enterTransmission(info)
	return info, nil
}

// ExpectClosed reads until the server closes the connection or timeout
// elapses. It returns nil if the connection was closed (EOF or reset), and
// an error otherwise. Bytes the server sends before closing (an error reply,
// say) are discarded.
func (h *Handshake) ExpectClosed(timeout time.Duration) error {
	return expectClosed(h.conn, h.r, timeout)
}

func expectClosed(conn net.Conn, r *bufio.Reader, timeout time.Duration) error {
	if err := conn.SetReadDeadline(time.Now().Add(timeout)); err != nil {
		return nil // already closed
	}
	defer conn.SetReadDeadline(time.Time{})
	n, err := io.Copy(io.Discard, r)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return fmt.Errorf("nbdtest: connection still open after %v (%d bytes received)", timeout, n)
	}
	return nil
}

// Client switches a handshake that completed Go or ExportName to the
// asynchronous transmission client.
func (h *Handshake) Client() (*Client, error) {
	if !h.inTransmit {
		return nil, fmt.Errorf("nbdtest: handshake not finished: %w", ErrNotNegotiated)
	}
	return newClient(h), nil
}

// Raw switches a handshake that completed Go or ExportName to raw
// transmission mode.
func (h *Handshake) Raw() (*Raw, error) {
	if !h.inTransmit {
		return nil, fmt.Errorf("nbdtest: handshake not finished: %w", ErrNotNegotiated)
	}
	return &Raw{conn: h.conn, r: h.r, extended: h.extended, Info: h.info}, nil
}

// Close closes the connection.
func (h *Handshake) Close() error { return h.conn.Close() }
