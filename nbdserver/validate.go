package nbdserver

// negotiated is what one connection agreed on in the handshake; requests
// are validated against it, never against what the server could offer.
type negotiated struct {
	tflags     uint16 // transmission flags sent to the client
	structured bool   // structured replies (or extended headers)
	extended   bool   // extended headers
	meta       bool   // base:allocation selected for this export
	size       uint64 // export size in bytes
	minBlock   uint32 // alignment required of READ/WRITE/TRIM/WRITE_ZEROES
	maxPayload uint32 // largest READ/WRITE payload
}

// Request flags each command accepts (before negotiation is considered).
const (
	allCmdFlags = cmdFlagFUA | cmdFlagNoHole | cmdFlagDF | cmdFlagReqOne | cmdFlagFastZero | cmdFlagPayloadLen
)

// payloadLen returns how many payload bytes follow the request header on
// the wire. It depends only on the header style, so the stream stays in
// sync even for requests that are refused.
func payloadLen(n *negotiated, h *requestHeader) uint64 {
	if n.extended {
		if h.flags&cmdFlagPayloadLen != 0 {
			return h.length
		}
		return 0
	}
	if h.cmd == CmdWrite {
		return h.length
	}
	return 0
}

// validateRequest checks h against the negotiated state and returns the
// NBD error to answer with and a message for the client, or 0 and "".
// It is a pure function: the table test in validate_test.go covers it.
func validateRequest(n *negotiated, h *requestHeader) (Errno, string) {
	f := h.flags
	if f&^allCmdFlags != 0 {
		return EINVAL, "unknown command flags"
	}
	if f&cmdFlagFUA != 0 && n.tflags&tflagSendFUA == 0 {
		return EINVAL, "FUA flag not negotiated"
	}
	if f&cmdFlagPayloadLen != 0 && !n.extended {
		return EINVAL, "PAYLOAD_LEN flag without extended headers"
	}
	readOnly := n.tflags&tflagReadOnly != 0

	var allowed uint16 = cmdFlagFUA
	switch h.cmd {
	case CmdRead:
		allowed |= cmdFlagDF
		if f&cmdFlagDF != 0 && n.tflags&tflagSendDF == 0 {
			return EINVAL, "DF flag not negotiated"
		}
	case CmdWrite:
		allowed |= cmdFlagPayloadLen
		if n.extended && f&cmdFlagPayloadLen == 0 {
			return EINVAL, "WRITE without PAYLOAD_LEN under extended headers"
		}
	case CmdFlush, CmdCache:
	case CmdTrim:
		if !readOnly && n.tflags&tflagSendTrim == 0 {
			return EINVAL, "TRIM not supported by this export"
		}
	case CmdWriteZeroes:
		allowed |= cmdFlagNoHole
		if n.tflags&tflagSendFastZero != 0 {
			allowed |= cmdFlagFastZero
		}
		if !readOnly && n.tflags&tflagSendWriteZeroes == 0 {
			return EINVAL, "WRITE_ZEROES not supported by this export"
		}
	case CmdBlockStatus:
		allowed |= cmdFlagReqOne
		if !n.meta {
			return EINVAL, "no metadata context negotiated"
		}
	default:
		return EINVAL, "unknown command"
	}
	if f&^allowed != 0 {
		return EINVAL, "flag not valid for " + h.cmd.String()
	}

	switch h.cmd {
	case CmdWrite, CmdTrim, CmdWriteZeroes:
		if readOnly {
			return EPERM, "export is read-only"
		}
	}

	switch h.cmd {
	case CmdFlush:
		if h.off != 0 || h.length != 0 {
			return EINVAL, "FLUSH with nonzero offset or length"
		}
		return 0, ""
	case CmdRead:
		if h.length > uint64(n.maxPayload) {
			if n.structured {
				return EOVERFLOW, "READ longer than the maximum payload"
			}
			return EINVAL, "READ longer than the maximum payload"
		}
	case CmdWrite:
		if h.length > uint64(n.maxPayload) {
			return EINVAL, "WRITE longer than the maximum payload"
		}
	case CmdBlockStatus:
		if h.length == 0 {
			return EINVAL, "BLOCK_STATUS of zero length"
		}
	}

	if h.off > n.size || h.length > n.size-h.off {
		if h.cmd == CmdWrite || h.cmd == CmdWriteZeroes {
			return ENOSPC, "write beyond the end of the export"
		}
		return EINVAL, "request beyond the end of the export"
	}
	if m := uint64(n.minBlock); m > 1 {
		switch h.cmd {
		case CmdRead, CmdWrite, CmdTrim, CmdWriteZeroes:
			if h.off%m != 0 || h.length%m != 0 {
				return EINVAL, "request not aligned to the minimum block size"
			}
		}
	}
	return 0, ""
}
