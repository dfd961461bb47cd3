package nbdtest

// Wire constants, written from doc/proto.md of NetworkBlockDevice/nbd. They
// are deliberately not imported from package nbdserver: this client is an
// independent oracle, so a wrong value on one side shows up as a failure
// instead of cancelling out. Each constant carries its spec name.

// Magic numbers.
const (
	MagicNBD            uint64 = 0x4e42444d41474943 // NBDMAGIC (INIT_PASSWD)
	MagicIHaveOpt       uint64 = 0x49484156454F5054 // IHAVEOPT
	MagicOldstyle       uint64 = 0x00420281861253   // cliserv_magic (oldstyle, rejected)
	MagicOptionReply    uint64 = 0x3e889045565a9    // option reply magic
	MagicRequest        uint32 = 0x25609513         // NBD_REQUEST_MAGIC
	MagicExtRequest     uint32 = 0x21e41c71         // NBD_EXTENDED_REQUEST_MAGIC
	MagicSimpleReply    uint32 = 0x67446698         // NBD_SIMPLE_REPLY_MAGIC
	MagicStructuredRepl uint32 = 0x668e33ef         // NBD_STRUCTURED_REPLY_MAGIC
	MagicExtReply       uint32 = 0x6e8a278c         // NBD_EXTENDED_REPLY_MAGIC
)

// Handshake flags (server, 16 bits).
const (
	FlagFixedNewstyle uint16 = 1 << 0 // NBD_FLAG_FIXED_NEWSTYLE
	FlagNoZeroes      uint16 = 1 << 1 // NBD_FLAG_NO_ZEROES
)

// Client flags (32 bits).
const (
	ClientFlagFixedNewstyle uint32 = 1 << 0 // NBD_FLAG_C_FIXED_NEWSTYLE
	ClientFlagNoZeroes      uint32 = 1 << 1 // NBD_FLAG_C_NO_ZEROES
)

// Option types.
const (
	OptExportName      uint32 = 1  // NBD_OPT_EXPORT_NAME
	OptAbort           uint32 = 2  // NBD_OPT_ABORT
	OptList            uint32 = 3  // NBD_OPT_LIST
	OptPeekExport      uint32 = 4  // NBD_OPT_PEEK_EXPORT (withdrawn)
	OptStartTLS        uint32 = 5  // NBD_OPT_STARTTLS
	OptInfo            uint32 = 6  // NBD_OPT_INFO
	OptGo              uint32 = 7  // NBD_OPT_GO
	OptStructuredReply uint32 = 8  // NBD_OPT_STRUCTURED_REPLY
	OptListMetaContext uint32 = 9  // NBD_OPT_LIST_META_CONTEXT
	OptSetMetaContext  uint32 = 10 // NBD_OPT_SET_META_CONTEXT
	OptExtendedHeaders uint32 = 11 // NBD_OPT_EXTENDED_HEADERS
)

// Option reply types. Errors have bit 31 set.
const (
	RepAck         uint32 = 1 // NBD_REP_ACK
	RepServer      uint32 = 2 // NBD_REP_SERVER
	RepInfo        uint32 = 3 // NBD_REP_INFO
	RepMetaContext uint32 = 4 // NBD_REP_META_CONTEXT

	RepFlagError uint32 = 1 << 31 // bit 31 marks NBD_REP_ERR_*
)

// Option reply error types. They implement error so that callers can write
// errors.Is(err, nbdtest.RepErrUnknown).
const (
	RepErrUnsup         RepErr = RepErr(RepFlagError | 1)  // NBD_REP_ERR_UNSUP
	RepErrPolicy        RepErr = RepErr(RepFlagError | 2)  // NBD_REP_ERR_POLICY
	RepErrInvalid       RepErr = RepErr(RepFlagError | 3)  // NBD_REP_ERR_INVALID
	RepErrPlatform      RepErr = RepErr(RepFlagError | 4)  // NBD_REP_ERR_PLATFORM
	RepErrTLSReqd       RepErr = RepErr(RepFlagError | 5)  // NBD_REP_ERR_TLS_REQD
	RepErrUnknown       RepErr = RepErr(RepFlagError | 6)  // NBD_REP_ERR_UNKNOWN
	RepErrShutdown      RepErr = RepErr(RepFlagError | 7)  // NBD_REP_ERR_SHUTDOWN
	RepErrBlockSizeReqd RepErr = RepErr(RepFlagError | 8)  // NBD_REP_ERR_BLOCK_SIZE_REQD
	RepErrTooBig        RepErr = RepErr(RepFlagError | 9)  // NBD_REP_ERR_TOO_BIG
	RepErrExtHeaderReqd RepErr = RepErr(RepFlagError | 10) // NBD_REP_ERR_EXT_HEADER_REQD
)

// Info types (NBD_OPT_INFO / NBD_OPT_GO).
const (
	InfoExport      uint16 = 0 // NBD_INFO_EXPORT
	InfoName        uint16 = 1 // NBD_INFO_NAME
	InfoDescription uint16 = 2 // NBD_INFO_DESCRIPTION
	InfoBlockSize   uint16 = 3 // NBD_INFO_BLOCK_SIZE
)

// Transmission flags (16 bits).
const (
	TFlagHasFlags           uint16 = 1 << 0  // NBD_FLAG_HAS_FLAGS
	TFlagReadOnly           uint16 = 1 << 1  // NBD_FLAG_READ_ONLY
	TFlagSendFlush          uint16 = 1 << 2  // NBD_FLAG_SEND_FLUSH
	TFlagSendFUA            uint16 = 1 << 3  // NBD_FLAG_SEND_FUA
	TFlagRotational         uint16 = 1 << 4  // NBD_FLAG_ROTATIONAL
	TFlagSendTrim           uint16 = 1 << 5  // NBD_FLAG_SEND_TRIM
	TFlagSendWriteZeroes    uint16 = 1 << 6  // NBD_FLAG_SEND_WRITE_ZEROES
	TFlagSendDF             uint16 = 1 << 7  // NBD_FLAG_SEND_DF
	TFlagCanMultiConn       uint16 = 1 << 8  // NBD_FLAG_CAN_MULTI_CONN
	TFlagSendResize         uint16 = 1 << 9  // NBD_FLAG_SEND_RESIZE
	TFlagSendCache          uint16 = 1 << 10 // NBD_FLAG_SEND_CACHE
	TFlagSendFastZero       uint16 = 1 << 11 // NBD_FLAG_SEND_FAST_ZERO
	TFlagBlockStatusPayload uint16 = 1 << 12 // NBD_FLAG_BLOCK_STATUS_PAYLOAD
)

// Commands.
const (
	CmdRead        uint16 = 0 // NBD_CMD_READ
	CmdWrite       uint16 = 1 // NBD_CMD_WRITE
	CmdDisc        uint16 = 2 // NBD_CMD_DISC
	CmdFlush       uint16 = 3 // NBD_CMD_FLUSH
	CmdTrim        uint16 = 4 // NBD_CMD_TRIM
	CmdCache       uint16 = 5 // NBD_CMD_CACHE
	CmdWriteZeroes uint16 = 6 // NBD_CMD_WRITE_ZEROES
	CmdBlockStatus uint16 = 7 // NBD_CMD_BLOCK_STATUS
	CmdResize      uint16 = 8 // NBD_CMD_RESIZE (extension)
)

// Command flags.
const (
	CmdFlagFUA        uint16 = 1 << 0 // NBD_CMD_FLAG_FUA
	CmdFlagNoHole     uint16 = 1 << 1 // NBD_CMD_FLAG_NO_HOLE
	CmdFlagDF         uint16 = 1 << 2 // NBD_CMD_FLAG_DF
	CmdFlagReqOne     uint16 = 1 << 3 // NBD_CMD_FLAG_REQ_ONE
	CmdFlagFastZero   uint16 = 1 << 4 // NBD_CMD_FLAG_FAST_ZERO
	CmdFlagPayloadLen uint16 = 1 << 5 // NBD_CMD_FLAG_PAYLOAD_LEN
)

// Structured reply chunk flags and types.
const (
	ReplyFlagDone uint16 = 1 << 0 // NBD_REPLY_FLAG_DONE

	ReplyTypeNone           uint16 = 0         // NBD_REPLY_TYPE_NONE
	ReplyTypeOffsetData     uint16 = 1         // NBD_REPLY_TYPE_OFFSET_DATA
	ReplyTypeOffsetHole     uint16 = 2         // NBD_REPLY_TYPE_OFFSET_HOLE
	ReplyTypeBlockStatus    uint16 = 5         // NBD_REPLY_TYPE_BLOCK_STATUS
	ReplyTypeBlockStatusExt uint16 = 6         // NBD_REPLY_TYPE_BLOCK_STATUS_EXT
	ReplyTypeError          uint16 = 1<<15 + 1 // NBD_REPLY_TYPE_ERROR
	ReplyTypeErrorOffset    uint16 = 1<<15 + 2 // NBD_REPLY_TYPE_ERROR_OFFSET
	replyTypeErrBit         uint16 = 1 << 15   // error chunk types have bit 15 set
)

// Errno values carried in replies. They implement error so that callers can
// write errors.Is(err, nbdtest.EINVAL).
const (
	EPERM     Errno = 1   // NBD_EPERM
	EIO       Errno = 5   // NBD_EIO
	ENOMEM    Errno = 12  // NBD_ENOMEM
	EINVAL    Errno = 22  // NBD_EINVAL
	ENOSPC    Errno = 28  // NBD_ENOSPC
	EOVERFLOW Errno = 75  // NBD_EOVERFLOW
	ENOTSUP   Errno = 95  // NBD_ENOTSUP
	ESHUTDOWN Errno = 108 // NBD_ESHUTDOWN
)

// base:allocation status bits.
const (
	StateHole uint64 = 1 << 0 // NBD_STATE_HOLE
	StateZero uint64 = 1 << 1 // NBD_STATE_ZERO
)

// ContextBaseAllocation is the one metadata context the spec defines.
const ContextBaseAllocation = "base:allocation"

// Sizes of fixed wire structures, in bytes.
const (
	requestLen        = 28  // compact request header
	extRequestLen     = 32  // extended request header
	simpleReplyLen    = 16  // simple reply header
	structuredHdrLen  = 20  // structured reply chunk header
	extReplyHdrLen    = 32  // extended reply chunk header
	exportNameZeroPad = 124 // zero padding after EXPORT_NAME without NO_ZEROES

	// maxReplyPayload caps what the client will allocate for one reply
	// chunk or option reply, so a hostile or broken server cannot make a
	// test allocate gigabytes.
	maxReplyPayload = 64 << 20
)
