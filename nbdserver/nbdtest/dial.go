package nbdtest

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"time"
)

// Options configure Dial. The zero value connects to the default export
// ("") with FIXED_NEWSTYLE|NO_ZEROES, simple replies and NBD_OPT_GO asking
// for NAME, DESCRIPTION and BLOCK_SIZE.
type Options struct {
	// ExportName is the export to select.
	ExportName string
	// ClientFlags, if non-nil, are sent verbatim instead of the default
	// (FIXED_NEWSTYLE, plus NO_ZEROES when the server offers it).
	ClientFlags *uint32
	// TLSConfig, if non-nil, makes Dial send NBD_OPT_STARTTLS first and
	// run a TLS client handshake with it.
	TLSConfig *tls.Config
	// StructuredReplies negotiates NBD_OPT_STRUCTURED_REPLY.
	StructuredReplies bool
	// ExtendedHeaders negotiates NBD_OPT_EXTENDED_HEADERS (implies
	// structured replies).
	ExtendedHeaders bool
	// MetaContexts, if non-empty, are selected with
	// NBD_OPT_SET_META_CONTEXT (requires structured replies, which Dial
	// then negotiates).
	MetaContexts []string
	// UseExportName selects the export with NBD_OPT_EXPORT_NAME instead of
	// NBD_OPT_GO.
	UseExportName bool
	// InfoRequests are the NBD_INFO_* types to ask for in NBD_OPT_GO; nil
	// means DefaultInfoRequests, an empty non-nil slice asks for none.
	InfoRequests []uint16
	// HandshakeTimeout bounds the whole handshake; 0 means 10s.
	HandshakeTimeout time.Duration
	// Timeout bounds each synchronous request; 0 means 30s.
	Timeout time.Duration
}

// EnsureDefaults fills zero fields with their defaults.
func (o *Options) EnsureDefaults() {
	if o.InfoRequests == nil {
		o.InfoRequests = DefaultInfoRequests()
	}
	if o.HandshakeTimeout == 0 {
		o.HandshakeTimeout = 10 * time.Second
	}
	if o.Timeout == 0 {
		o.Timeout = 30 * time.Second
	}
	if len(o.MetaContexts) > 0 && !o.ExtendedHeaders {
		o.StructuredReplies = true
	}
}

// Validate reports options that cannot work together.
func (o *Options) Validate() error {
	if o.HandshakeTimeout < 0 || o.Timeout < 0 {
		return errors.New("nbdtest: Options.Timeout and HandshakeTimeout must not be negative")
	}
	if o.UseExportName && (len(o.MetaContexts) > 0) {
		// Allowed by the protocol, but then BLOCK_STATUS is usable only
		// if the server kept the contexts; we keep it simple.
		return errors.New("nbdtest: Options.MetaContexts needs NBD_OPT_GO, not UseExportName")
	}
	return nil
}

// Dial connects to addr, negotiates as opts say and returns a transmission
// client. network is "tcp" or "unix".
func Dial(ctx context.Context, network, addr string, opts Options) (*Client, error) {
	opts.EnsureDefaults()
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, fmt.Errorf("nbdtest: dial %s %s: %w", network, addr, err)
	}
	c, err := Negotiate(ctx, conn, opts)
	if err != nil {
		conn.Close()
		return nil, err
	}
	return c, nil
}

// Negotiate runs the handshake described by opts on conn.
func Negotiate(ctx context.Context, conn net.Conn, opts Options) (*Client, error) {
	opts.EnsureDefaults()
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	deadline := time.Now().Add(opts.HandshakeTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	if err := conn.SetDeadline(deadline); err != nil {
		return nil, err
	}
	h, err := NewHandshake(conn)
	if err != nil {
		return nil, err
	}
	flags := h.DefaultClientFlags()
	if opts.ClientFlags != nil {
		flags = *opts.ClientFlags
	}
	if err := h.SendClientFlags(flags); err != nil {
		return nil, err
	}
	if opts.TLSConfig != nil {
		if err := h.StartTLS(ctx, opts.TLSConfig); err != nil {
			return nil, err
		}
	}
	if opts.ExtendedHeaders {
		if err := h.ExtendedHeaders(); err != nil {
			return nil, err
		}
	} else if opts.StructuredReplies {
		if err := h.StructuredReply(); err != nil {
			return nil, err
		}
	}
	if len(opts.MetaContexts) > 0 {
		if _, err := h.SetMetaContext(opts.ExportName, opts.MetaContexts...); err != nil {
			return nil, err
		}
	}
	if opts.UseExportName {
		_, err = h.ExportName(opts.ExportName)
	} else {
		_, err = h.Go(opts.ExportName, opts.InfoRequests)
	}
	if err != nil {
		return nil, err
	}
	if err := h.Conn().SetDeadline(time.Time{}); err != nil {
		return nil, err
	}
	c, err := h.Client()
	if err != nil {
		return nil, err
	}
	c.Timeout = opts.Timeout
	return c, nil
}
