package nbdserver

import "errors"

// ErrServerClosed is returned by Serve after Shutdown has been called.
var ErrServerClosed = errors.New("nbdserver: server closed")

// Sentinel errors for protocol violations. They end a connection and are
// logged; they never reach a client as an NBD error code.
var (
	// errBadMagic means a request or option header had the wrong magic.
	errBadMagic = errors.New("nbdserver: bad magic")
	// errBadClientFlags means the client set a flag we did not offer.
	errBadClientFlags = errors.New("nbdserver: unknown client flags")
	// errTooManyOptions means the client sent more than Options.MaxOptions
	// options without choosing an export.
	errTooManyOptions = errors.New("nbdserver: too many options")
	// errOptionTooLong means an option's declared length exceeds what we
	// are willing to drain.
	errOptionTooLong = errors.New("nbdserver: option too long")
	// errPayloadTooLong means a request payload exceeds what we are willing
	// to drain.
	errPayloadTooLong = errors.New("nbdserver: request payload too long")
	// errUnknownExport means NBD_OPT_EXPORT_NAME named no export.
	errUnknownExport = errors.New("nbdserver: unknown export")
	// errTLSRequired means the client tried to enter transmission without TLS
	// while Options.RequireTLS is set.
	errTLSRequired = errors.New("nbdserver: TLS required")
	// errAborted means the client ended the handshake with NBD_OPT_ABORT.
	errAborted = errors.New("nbdserver: client aborted handshake")
)
