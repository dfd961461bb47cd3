package nbdserver

import (
	"encoding/binary"
	"strconv"
)

// This file is the only place that knows the NBD wire format
// (NetworkBlockDevice/nbd doc/proto.md, including the extended-headers
// extension). Every constant carries its spec name in a trailing comment so
// that grepping the spec name finds it. All integers are big-endian.

// Magic numbers.
const (
	magicInitPasswd      = 0x4e42444d41474943 // NBDMAGIC (INIT_PASSWD)
	magicOpts            = 0x49484156454f5054 // IHAVEOPT
	magicOptReply        = 0x0003e889045565a9 // NBD_REP_MAGIC (option reply magic)
	magicRequest         = 0x25609513         // NBD_REQUEST_MAGIC
	magicExtendedRequest = 0x21e41c71         // NBD_EXTENDED_REQUEST_MAGIC
	magicSimpleReply     = 0x67446698         // NBD_SIMPLE_REPLY_MAGIC
	magicStructuredReply = 0x668e33ef         // NBD_STRUCTURED_REPLY_MAGIC
	magicExtendedReply   = 0x6e8a278c         // NBD_EXTENDED_REPLY_MAGIC
)

// Handshake flags (server, 16 bits).
const (
	hflagFixedNewstyle = 1 << 0 // NBD_FLAG_FIXED_NEWSTYLE
	hflagNoZeroes      = 1 << 1 // NBD_FLAG_NO_ZEROES
)

// Client flags (32 bits).
const (
	cflagFixedNewstyle = 1 << 0 // NBD_FLAG_C_FIXED_NEWSTYLE
	cflagNoZeroes      = 1 << 1 // NBD_FLAG_C_NO_ZEROES
)

// Transmission flags (16 bits).
const (
	tflagHasFlags           = 1 << 0  // NBD_FLAG_HAS_FLAGS
	tflagReadOnly           = 1 << 1  // NBD_FLAG_READ_ONLY
	tflagSendFlush          = 1 << 2  // NBD_FLAG_SEND_FLUSH
	tflagSendFUA            = 1 << 3  // NBD_FLAG_SEND_FUA
	tflagRotational         = 1 << 4  // NBD_FLAG_ROTATIONAL
	tflagSendTrim           = 1 << 5  // NBD_FLAG_SEND_TRIM
	tflagSendWriteZeroes    = 1 << 6  // NBD_FLAG_SEND_WRITE_ZEROES
	tflagSendDF             = 1 << 7  // NBD_FLAG_SEND_DF
	tflagCanMultiConn       = 1 << 8  // NBD_FLAG_CAN_MULTI_CONN
	tflagSendResize         = 1 << 9  // NBD_FLAG_SEND_RESIZE
	tflagSendCache          = 1 << 10 // NBD_FLAG_SEND_CACHE
	tflagSendFastZero       = 1 << 11 // NBD_FLAG_SEND_FAST_ZERO
	tflagBlockStatusPayload = 1 << 12 // NBD_FLAG_BLOCK_STATUS_PAYLOAD
)

// Option types.
const (
	optExportName      = 1  // NBD_OPT_EXPORT_NAME
	optAbort           = 2  // NBD_OPT_ABORT
	optList            = 3  // NBD_OPT_LIST
	optPeekExport      = 4  // NBD_OPT_PEEK_EXPORT (withdrawn)
	optStartTLS        = 5  // NBD_OPT_STARTTLS
	optInfo            = 6  // NBD_OPT_INFO
	optGo              = 7  // NBD_OPT_GO
	optStructuredReply = 8  // NBD_OPT_STRUCTURED_REPLY
	optListMetaContext = 9  // NBD_OPT_LIST_META_CONTEXT
	optSetMetaContext  = 10 // NBD_OPT_SET_META_CONTEXT
	optExtendedHeaders = 11 // NBD_OPT_EXTENDED_HEADERS
)

// Option reply types.
const (
	repAck             = 1          // NBD_REP_ACK
	repServer          = 2          // NBD_REP_SERVER
	repInfo            = 3          // NBD_REP_INFO
	repMetaContext     = 4          // NBD_REP_META_CONTEXT
	repErrUnsup        = 1<<31 + 1  // NBD_REP_ERR_UNSUP
	repErrPolicy       = 1<<31 + 2  // NBD_REP_ERR_POLICY
	repErrInvalid      = 1<<31 + 3  // NBD_REP_ERR_INVALID
	repErrPlatform     = 1<<31 + 4  // NBD_REP_ERR_PLATFORM
	repErrTLSReqd      = 1<<31 + 5  // NBD_REP_ERR_TLS_REQD
	repErrUnknown      = 1<<31 + 6  // NBD_REP_ERR_UNKNOWN
	repErrShutdown     = 1<<31 + 7  // NBD_REP_ERR_SHUTDOWN
	repErrBlockSizeReq = 1<<31 + 8  // NBD_REP_ERR_BLOCK_SIZE_REQD
	repErrTooBig       = 1<<31 + 9  // NBD_REP_ERR_TOO_BIG
	repErrExtHeaderReq = 1<<31 + 10 // NBD_REP_ERR_EXT_HEADER_REQD
)

// Information types for NBD_REP_INFO.
const (
	infoExport      = 0 // NBD_INFO_EXPORT
	infoName        = 1 // NBD_INFO_NAME
	infoDescription = 2 // NBD_INFO_DESCRIPTION
	infoBlockSize   = 3 // NBD_INFO_BLOCK_SIZE
)

// Command is an NBD request type.
type Command uint16

// Request types.
const (
	CmdRead        Command = 0 // NBD_CMD_READ
	CmdWrite       Command = 1 // NBD_CMD_WRITE
	CmdDisc        Command = 2 // NBD_CMD_DISC
	CmdFlush       Command = 3 // NBD_CMD_FLUSH
	CmdTrim        Command = 4 // NBD_CMD_TRIM
	CmdCache       Command = 5 // NBD_CMD_CACHE
	CmdWriteZeroes Command = 6 // NBD_CMD_WRITE_ZEROES
	CmdBlockStatus Command = 7 // NBD_CMD_BLOCK_STATUS
	cmdResize      Command = 8 // NBD_CMD_RESIZE (not implemented)
)

// String returns the command's lowercase name, e.g. "write_zeroes".
func (c Command) String() string {
	switch c {
	case CmdRead:
		return "read"
	case CmdWrite:
		return "write"
	case CmdDisc:
		return "disc"
	case CmdFlush:
		return "flush"
	case CmdTrim:
		return "trim"
	case CmdCache:
		return "cache"
	case CmdWriteZeroes:
		return "write_zeroes"
	case CmdBlockStatus:
		return "block_status"
	}
	return "cmd(" + strconv.Itoa(int(c)) + ")"
}

// Command flags (16 bits).
const (
	cmdFlagFUA        = 1 << 0 // NBD_CMD_FLAG_FUA
	cmdFlagNoHole     = 1 << 1 // NBD_CMD_FLAG_NO_HOLE
	cmdFlagDF         = 1 << 2 // NBD_CMD_FLAG_DF
	cmdFlagReqOne     = 1 << 3 // NBD_CMD_FLAG_REQ_ONE
	cmdFlagFastZero   = 1 << 4 // NBD_CMD_FLAG_FAST_ZERO
	cmdFlagPayloadLen = 1 << 5 // NBD_CMD_FLAG_PAYLOAD_LEN
)

// Structured and extended reply flags.
const (
	replyFlagDone = 1 << 0 // NBD_REPLY_FLAG_DONE
)

// Structured reply chunk types.
const (
	replyTypeNone           = 0         // NBD_REPLY_TYPE_NONE
	replyTypeOffsetData     = 1         // NBD_REPLY_TYPE_OFFSET_DATA
	replyTypeOffsetHole     = 2         // NBD_REPLY_TYPE_OFFSET_HOLE
	replyTypeBlockStatus    = 5         // NBD_REPLY_TYPE_BLOCK_STATUS
	replyTypeBlockStatusExt = 6         // NBD_REPLY_TYPE_BLOCK_STATUS_EXT
	replyTypeError          = 1<<15 + 1 // NBD_REPLY_TYPE_ERROR
	replyTypeErrorOffset    = 1<<15 + 2 // NBD_REPLY_TYPE_ERROR_OFFSET
)

// base:allocation status flags.
const (
	stateHole = 1 << 0 // NBD_STATE_HOLE
	stateZero = 1 << 1 // NBD_STATE_ZERO
)

// metaBaseAllocation is the one metadata context we serve, and
// metaBaseAllocationID the id we give it on every connection.
const (
	metaBaseAllocation   = "base:allocation" // base:allocation
	metaBaseNamespace    = "base:"
	metaBaseAllocationID = 1
)

// Sizes of fixed wire structures, in bytes.
const (
	sizeGreeting         = 18  // NBDMAGIC + IHAVEOPT + handshake flags
	sizeOptionHeader     = 16  // IHAVEOPT + option + length
	sizeOptionReply      = 20  // magic + option + type + length
	sizeExportNameReply  = 10  // size + transmission flags
	sizeExportNameZeroes = 124 // reserved zeroes unless NO_ZEROES
	sizeRequest          = 28  // compact request header
	sizeExtendedRequest  = 32  // extended request header
	sizeSimpleReply      = 16  // simple reply header
	sizeStructuredReply  = 20  // structured reply chunk header
	sizeExtendedReply    = 32  // extended reply chunk header
	sizeInfoExport       = 12  // NBD_INFO_EXPORT payload
	sizeInfoBlockSize    = 14  // NBD_INFO_BLOCK_SIZE payload
	sizeHoleChunk        = 12  // NBD_REPLY_TYPE_OFFSET_HOLE payload
	sizeErrorChunk       = 6   // NBD_REPLY_TYPE_ERROR payload before message
	maxStringLen         = 4096
)

// putGreeting encodes the server's first message.
func putGreeting(b *[sizeGreeting]byte) {
	binary.BigEndian.PutUint64(b[0:], magicInitPasswd)
	binary.BigEndian.PutUint64(b[8:], magicOpts)
	binary.BigEndian.PutUint16(b[16:], hflagFixedNewstyle|hflagNoZeroes)
}

// optionHeader is a client option request header.
type optionHeader struct {
	magic  uint64
	option uint32
	length uint32
}

func decodeOptionHeader(b *[sizeOptionHeader]byte) optionHeader {
	return optionHeader{
		magic:  binary.BigEndian.Uint64(b[0:]),
		option: binary.BigEndian.Uint32(b[8:]),
		length: binary.BigEndian.Uint32(b[12:]),
	}
}

// putOptionReply encodes an option reply header.
func putOptionReply(b *[sizeOptionReply]byte, option, typ, length uint32) {
	binary.BigEndian.PutUint64(b[0:], magicOptReply)
	binary.BigEndian.PutUint32(b[8:], option)
	binary.BigEndian.PutUint32(b[12:], typ)
	binary.BigEndian.PutUint32(b[16:], length)
}

// request is a decoded request header, compact or extended.
type requestHeader struct {
	flags  uint16
	cmd    Command
	cookie uint64
	off    uint64
	length uint64 // 32 bits on the wire unless extended
}

// decodeRequest decodes a request header from b, which must hold at least
// sizeRequest bytes (sizeExtendedRequest if extended). ok is false if the
// magic is wrong for the negotiated header style.
func decodeRequest(b []byte, extended bool) (h requestHeader, ok bool) {
	magic := binary.BigEndian.Uint32(b[0:])
	h.flags = binary.BigEndian.Uint16(b[4:])
	h.cmd = Command(binary.BigEndian.Uint16(b[6:]))
	h.cookie = binary.BigEndian.Uint64(b[8:])
	h.off = binary.BigEndian.Uint64(b[16:])
	if extended {
		h.length = binary.BigEndian.Uint64(b[24:])
		return h, magic == magicExtendedRequest
	}
	h.length = uint64(binary.BigEndian.Uint32(b[24:]))
	return h, magic == magicRequest
}

// putRequest encodes a request header (used by tests and fuzz seeds).
func putRequest(b []byte, h requestHeader, extended bool) int {
	binary.BigEndian.PutUint16(b[4:], h.flags)
	binary.BigEndian.PutUint16(b[6:], uint16(h.cmd))
	binary.BigEndian.PutUint64(b[8:], h.cookie)
	binary.BigEndian.PutUint64(b[16:], h.off)
	if extended {
		binary.BigEndian.PutUint32(b[0:], magicExtendedRequest)
		binary.BigEndian.PutUint64(b[24:], h.length)
		return sizeExtendedRequest
	}
	binary.BigEndian.PutUint32(b[0:], magicRequest)
	binary.BigEndian.PutUint32(b[24:], uint32(h.length))
	return sizeRequest
}

// putSimpleReply encodes a simple reply header into b[:sizeSimpleReply].
func putSimpleReply(b []byte, errno Errno, cookie uint64) int {
	binary.BigEndian.PutUint32(b[0:], magicSimpleReply)
	binary.BigEndian.PutUint32(b[4:], uint32(errno))
	binary.BigEndian.PutUint64(b[8:], cookie)
	return sizeSimpleReply
}

// putChunkHeader encodes a structured (extended false) or extended reply
// chunk header into b and returns its size. reqOff is the request's offset,
// echoed in extended headers; length is the payload length.
func putChunkHeader(b []byte, extended bool, flags, typ uint16, cookie, reqOff, length uint64) int {
	if extended {
		binary.BigEndian.PutUint32(b[0:], magicExtendedReply)
		binary.BigEndian.PutUint16(b[4:], flags)
		binary.BigEndian.PutUint16(b[6:], typ)
		binary.BigEndian.PutUint64(b[8:], cookie)
		binary.BigEndian.PutUint64(b[16:], reqOff)
		binary.BigEndian.PutUint64(b[24:], length)
		return sizeExtendedReply
	}
	binary.BigEndian.PutUint32(b[0:], magicStructuredReply)
	binary.BigEndian.PutUint16(b[4:], flags)
	binary.BigEndian.PutUint16(b[6:], typ)
	binary.BigEndian.PutUint64(b[8:], cookie)
	binary.BigEndian.PutUint32(b[16:], uint32(length))
	return sizeStructuredReply
}

// blockStatusHeaderSize is the size of the BLOCK_STATUS(_EXT) chunk payload
// before the descriptors: context id, plus descriptor count when extended.
func blockStatusHeaderSize(extended bool) int {
	if extended {
		return 8
	}
	return 4
}

// descriptorSize is the size of one block status descriptor.
func descriptorSize(extended bool) int {
	if extended {
		return 16
	}
	return 8
}

// putBlockStatusHeader encodes the context id (and count when extended).
func putBlockStatusHeader(b []byte, extended bool, id, count uint32) {
	binary.BigEndian.PutUint32(b[0:], id)
	if extended {
		binary.BigEndian.PutUint32(b[4:], count)
	}
}

// putDescriptor encodes one block status descriptor: 32-bit length and
// status, or 64-bit both when extended.
func putDescriptor(b []byte, extended bool, length uint64, flags uint32) {
	if extended {
		binary.BigEndian.PutUint64(b[0:], length)
		binary.BigEndian.PutUint64(b[8:], uint64(flags))
		return
	}
	binary.BigEndian.PutUint32(b[0:], uint32(length))
	binary.BigEndian.PutUint32(b[4:], flags)
}

// getDescriptor decodes one block status descriptor.
func getDescriptor(b []byte, extended bool) (length uint64, flags uint32) {
	if extended {
		return binary.BigEndian.Uint64(b[0:]), uint32(binary.BigEndian.Uint64(b[8:]))
	}
	return uint64(binary.BigEndian.Uint32(b[0:])), binary.BigEndian.Uint32(b[4:])
}

// putOffsetChunk encodes the start of an OFFSET_DATA or OFFSET_HOLE payload:
// the absolute offset, then for a hole its 32-bit size. It returns the
// number of bytes written.
func putOffsetChunk(b []byte, off uint64, holeSize uint32, hole bool) int {
	binary.BigEndian.PutUint64(b[0:], off)
	if hole {
		binary.BigEndian.PutUint32(b[8:], holeSize)
		return sizeHoleChunk
	}
	return 8
}

// putErrorChunk encodes the fixed part of an NBD_REPLY_TYPE_ERROR payload.
func putErrorChunk(b []byte, errno Errno, msgLen int) int {
	binary.BigEndian.PutUint32(b[0:], uint32(errno))
	binary.BigEndian.PutUint16(b[4:], uint16(msgLen))
	return sizeErrorChunk
}
