package nbdtest

import (
	"errors"
	"fmt"
)

// Sentinel errors. Callers test them with errors.Is.
var (
	// ErrProtocol means the server broke the protocol (bad magic, a reply
	// for an unknown cookie, a chunk out of bounds, a missing DONE ...).
	// The connection is unusable afterwards.
	ErrProtocol = errors.New("nbdtest: server protocol violation")
	// ErrClosed means the connection is closed (by Close, by the server, or
	// after a protocol violation); pending calls fail with it.
	ErrClosed = errors.New("nbdtest: connection closed")
	// ErrNotNegotiated means the caller asked for something the handshake
	// did not set up (for example BlockStatus without a meta context).
	ErrNotNegotiated = errors.New("nbdtest: not negotiated")
)

// Errno is an NBD error value as carried in a simple reply or an error
// chunk. It implements error; the *Error the client returns matches it with
// errors.Is.
type Errno uint32

// Error returns the conventional name, e.g. "EINVAL".
func (e Errno) Error() string {
	switch e {
	case EPERM:
		return "EPERM"
	case EIO:
		return "EIO"
	case ENOMEM:
		return "ENOMEM"
	case EINVAL:
		return "EINVAL"
	case ENOSPC:
		return "ENOSPC"
	case EOVERFLOW:
		return "EOVERFLOW"
	case ENOTSUP:
		return "ENOTSUP"
	case ESHUTDOWN:
		return "ESHUTDOWN"
	}
	return fmt.Sprintf("errno %d", uint32(e))
}

// Error is a failed transmission request: the server answered with a
// non-zero error, in a simple reply or an error chunk.
type Error struct {
	Cmd     uint16 // NBD_CMD_* of the request
	Cookie  uint64
	Errno   Errno
	Message string // from an error chunk; empty for simple replies
	// Offset is set for NBD_REPLY_TYPE_ERROR_OFFSET (HasOffset true).
	Offset    uint64
	HasOffset bool
}

// Error formats the command, errno and message.
func (e *Error) Error() string {
	s := fmt.Sprintf("nbdtest: %s failed: %s", CmdName(e.Cmd), e.Errno)
	if e.HasOffset {
		s += fmt.Sprintf(" at offset %d", e.Offset)
	}
	if e.Message != "" {
		s += ": " + e.Message
	}
	return s
}

// Is reports whether target is the same Errno.
func (e *Error) Is(target error) bool {
	t, ok := target.(Errno)
	return ok && t == e.Errno
}

// RepErr is an option reply error type (NBD_REP_ERR_*). It implements error;
// *OptionError matches it with errors.Is.
type RepErr uint32

// Error returns the spec name without the NBD_ prefix.
func (r RepErr) Error() string { return RepName(uint32(r)) }

// OptionError is an option the server refused with an NBD_REP_ERR_* reply.
type OptionError struct {
	Option  uint32 // NBD_OPT_*
	Type    RepErr // NBD_REP_ERR_*
	Message string // the reply's optional payload
}

// Error formats the option, reply type and message.
func (e *OptionError) Error() string {
	s := fmt.Sprintf("nbdtest: %s refused: %s", OptName(e.Option), e.Type)
	if e.Message != "" {
		s += ": " + e.Message
	}
	return s
}

// Is reports whether target is the same RepErr.
func (e *OptionError) Is(target error) bool {
	t, ok := target.(RepErr)
	return ok && t == e.Type
}

func protoErrorf(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrProtocol}, args...)...)
}

// CmdName returns the spec name of a command, e.g. "NBD_CMD_READ".
func CmdName(c uint16) string {
	switch c {
	case CmdRead:
		return "NBD_CMD_READ"
	case CmdWrite:
		return "NBD_CMD_WRITE"
	case CmdDisc:
		return "NBD_CMD_DISC"
	case CmdFlush:
		return "NBD_CMD_FLUSH"
	case CmdTrim:
		return "NBD_CMD_TRIM"
	case CmdCache:
		return "NBD_CMD_CACHE"
	case CmdWriteZeroes:
		return "NBD_CMD_WRITE_ZEROES"
	case CmdBlockStatus:
		return "NBD_CMD_BLOCK_STATUS"
	case CmdResize:
		return "NBD_CMD_RESIZE"
	}
	return fmt.Sprintf("NBD_CMD_%d", c)
}

// OptName returns the spec name of an option, e.g. "NBD_OPT_GO".
func OptName(o uint32) string {
	names := map[uint32]string{
		OptExportName: "NBD_OPT_EXPORT_NAME", OptAbort: "NBD_OPT_ABORT", OptList: "NBD_OPT_LIST",
		OptPeekExport: "NBD_OPT_PEEK_EXPORT", OptStartTLS: "NBD_OPT_STARTTLS", OptInfo: "NBD_OPT_INFO",
		OptGo: "NBD_OPT_GO", OptStructuredReply: "NBD_OPT_STRUCTURED_REPLY",
		OptListMetaContext: "NBD_OPT_LIST_META_CONTEXT", OptSetMetaContext: "NBD_OPT_SET_META_CONTEXT",
		OptExtendedHeaders: "NBD_OPT_EXTENDED_HEADERS",
	}
	if n, ok := names[o]; ok {
		return n
	}
	return fmt.Sprintf("NBD_OPT_%d", o)
}

// RepName returns the spec name of an option reply type, e.g. "NBD_REP_ACK".
func RepName(t uint32) string {
	names := map[uint32]string{
		RepAck: "NBD_REP_ACK", RepServer: "NBD_REP_SERVER", RepInfo: "NBD_REP_INFO",
		RepMetaContext:      "NBD_REP_META_CONTEXT",
		uint32(RepErrUnsup): "NBD_REP_ERR_UNSUP", uint32(RepErrPolicy): "NBD_REP_ERR_POLICY",
		uint32(RepErrInvalid): "NBD_REP_ERR_INVALID", uint32(RepErrPlatform): "NBD_REP_ERR_PLATFORM",
		uint32(RepErrTLSReqd): "NBD_REP_ERR_TLS_REQD", uint32(RepErrUnknown): "NBD_REP_ERR_UNKNOWN",
		uint32(RepErrShutdown): "NBD_REP_ERR_SHUTDOWN", uint32(RepErrBlockSizeReqd): "NBD_REP_ERR_BLOCK_SIZE_REQD",
		uint32(RepErrTooBig): "NBD_REP_ERR_TOO_BIG", uint32(RepErrExtHeaderReqd): "NBD_REP_ERR_EXT_HEADER_REQD",
	}
	if n, ok := names[t]; ok {
		return n
	}
	return fmt.Sprintf("NBD_REP_%#x", t)
}
