package nbdserver

import (
	"bytes"
	"testing"
)

// TestProtoValues checks every wire constant against the value printed in
// the NBD spec (doc/proto.md, with the extended-headers extension).
func TestProtoValues(t *testing.T) {
	for _, tc := range []struct {
		spec string
		got  uint64
		want uint64
	}{
		{"NBDMAGIC", magicInitPasswd, 0x4e42444d41474943},
		{"IHAVEOPT", magicOpts, 0x49484156454F5054},
		{"NBD_REP_MAGIC", magicOptReply, 0x3e889045565a9},
		{"NBD_REQUEST_MAGIC", magicRequest, 0x25609513},
		{"NBD_EXTENDED_REQUEST_MAGIC", magicExtendedRequest, 0x21e41c71},
		{"NBD_SIMPLE_REPLY_MAGIC", magicSimpleReply, 0x67446698},
		{"NBD_STRUCTURED_REPLY_MAGIC", magicStructuredReply, 0x668e33ef},
		{"NBD_EXTENDED_REPLY_MAGIC", magicExtendedReply, 0x6e8a278c},

		{"NBD_FLAG_FIXED_NEWSTYLE", hflagFixedNewstyle, 1},
		{"NBD_FLAG_NO_ZEROES", hflagNoZeroes, 2},
		{"NBD_FLAG_C_FIXED_NEWSTYLE", cflagFixedNewstyle, 1},
		{"NBD_FLAG_C_NO_ZEROES", cflagNoZeroes, 2},

		{"NBD_FLAG_HAS_FLAGS", tflagHasFlags, 1 << 0},
		{"NBD_FLAG_READ_ONLY", tflagReadOnly, 1 << 1},
		{"NBD_FLAG_SEND_FLUSH", tflagSendFlush, 1 << 2},
		{"NBD_FLAG_SEND_FUA", tflagSendFUA, 1 << 3},
		{"NBD_FLAG_ROTATIONAL", tflagRotational, 1 << 4},
		{"NBD_FLAG_SEND_TRIM", tflagSendTrim, 1 << 5},
		{"NBD_FLAG_SEND_WRITE_ZEROES", tflagSendWriteZeroes, 1 << 6},
		{"NBD_FLAG_SEND_DF", tflagSendDF, 1 << 7},
		{"NBD_FLAG_CAN_MULTI_CONN", tflagCanMultiConn, 1 << 8},
		{"NBD_FLAG_SEND_RESIZE", tflagSendResize, 1 << 9},
		{"NBD_FLAG_SEND_CACHE", tflagSendCache, 1 << 10},
		{"NBD_FLAG_SEND_FAST_ZERO", tflagSendFastZero, 1 << 11},
		{"NBD_FLAG_BLOCK_STATUS_PAYLOAD", tflagBlockStatusPayload, 1 << 12},

		{"NBD_OPT_EXPORT_NAME", optExportName, 1},
		{"NBD_OPT_ABORT", optAbort, 2},
		{"NBD_OPT_LIST", optList, 3},
		{"NBD_OPT_PEEK_EXPORT", optPeekExport, 4},
		{"NBD_OPT_STARTTLS", optStartTLS, 5},
		{"NBD_OPT_INFO", optInfo, 6},
		{"NBD_OPT_GO", optGo, 7},
		{"NBD_OPT_STRUCTURED_REPLY", optStructuredReply, 8},
		{"NBD_OPT_LIST_META_CONTEXT", optListMetaContext, 9},
		{"NBD_OPT_SET_META_CONTEXT", optSetMetaContext, 10},
		{"NBD_OPT_EXTENDED_HEADERS", optExtendedHeaders, 11},

		{"NBD_REP_ACK", repAck, 1},
		{"NBD_REP_SERVER", repServer, 2},
		{"NBD_REP_INFO", repInfo, 3},
		{"NBD_REP_META_CONTEXT", repMetaContext, 4},
		{"NBD_REP_ERR_UNSUP", repErrUnsup, 0x80000001},
		{"NBD_REP_ERR_POLICY", repErrPolicy, 0x80000002},
		{"NBD_REP_ERR_INVALID", repErrInvalid, 0x80000003},
		{"NBD_REP_ERR_PLATFORM", repErrPlatform, 0x80000004},
		{"NBD_REP_ERR_TLS_REQD", repErrTLSReqd, 0x80000005},
		{"NBD_REP_ERR_UNKNOWN", repErrUnknown, 0x80000006},
		{"NBD_REP_ERR_SHUTDOWN", repErrShutdown, 0x80000007},
		{"NBD_REP_ERR_BLOCK_SIZE_REQD", repErrBlockSizeReq, 0x80000008},
		{"NBD_REP_ERR_TOO_BIG", repErrTooBig, 0x80000009},
		{"NBD_REP_ERR_EXT_HEADER_REQD", repErrExtHeaderReq, 0x8000000a},

		{"NBD_INFO_EXPORT", infoExport, 0},
		{"NBD_INFO_NAME", infoName, 1},
		{"NBD_INFO_DESCRIPTION", infoDescription, 2},
		{"NBD_INFO_BLOCK_SIZE", infoBlockSize, 3},

		{"NBD_CMD_READ", uint64(CmdRead), 0},
		{"NBD_CMD_WRITE", uint64(CmdWrite), 1},
		{"NBD_CMD_DISC", uint64(CmdDisc), 2},
		{"NBD_CMD_FLUSH", uint64(CmdFlush), 3},
		{"NBD_CMD_TRIM", uint64(CmdTrim), 4},
		{"NBD_CMD_CACHE", uint64(CmdCache), 5},
		{"NBD_CMD_WRITE_ZEROES", uint64(CmdWriteZeroes), 6},
		{"NBD_CMD_BLOCK_STATUS", uint64(CmdBlockStatus), 7},
		{"NBD_CMD_RESIZE", uint64(cmdResize), 8},

		{"NBD_CMD_FLAG_FUA", cmdFlagFUA, 1 << 0},
		{"NBD_CMD_FLAG_NO_HOLE", cmdFlagNoHole, 1 << 1},
		{"NBD_CMD_FLAG_DF", cmdFlagDF, 1 << 2},
		{"NBD_CMD_FLAG_REQ_ONE", cmdFlagReqOne, 1 << 3},
		{"NBD_CMD_FLAG_FAST_ZERO", cmdFlagFastZero, 1 << 4},
		{"NBD_CMD_FLAG_PAYLOAD_LEN", cmdFlagPayloadLen, 1 << 5},

		{"NBD_REPLY_FLAG_DONE", replyFlagDone, 1},
		{"NBD_REPLY_TYPE_NONE", replyTypeNone, 0},
		{"NBD_REPLY_TYPE_OFFSET_DATA", replyTypeOffsetData, 1},
		{"NBD_REPLY_TYPE_OFFSET_HOLE", replyTypeOffsetHole, 2},
		{"NBD_REPLY_TYPE_BLOCK_STATUS", replyTypeBlockStatus, 5},
		{"NBD_REPLY_TYPE_BLOCK_STATUS_EXT", replyTypeBlockStatusExt, 6},
		{"NBD_REPLY_TYPE_ERROR", replyTypeError, 32769},
		{"NBD_REPLY_TYPE_ERROR_OFFSET", replyTypeErrorOffset, 32770},

		{"NBD_STATE_HOLE", stateHole, 1},
		{"NBD_STATE_ZERO", stateZero, 2},

		{"NBD_EPERM", uint64(EPERM), 1},
		{"NBD_EIO", uint64(EIO), 5},
		{"NBD_ENOMEM", uint64(ENOMEM), 12},
		{"NBD_EINVAL", uint64(EINVAL), 22},
		{"NBD_ENOSPC", uint64(ENOSPC), 28},
		{"NBD_EOVERFLOW", uint64(EOVERFLOW), 75},
		{"NBD_ENOTSUP", uint64(ENOTSUP), 95},
		{"NBD_ESHUTDOWN", uint64(ESHUTDOWN), 108},
	} {
		if tc.got != tc.want {
			t.Errorf("%s = %#x, spec says %#x", tc.spec, tc.got, tc.want)
		}
	}
}

func TestGreetingBytes(t *testing.T) {
	var g [sizeGreeting]byte
	putGreeting(&g)
	want := []byte("NBDMAGICIHAVEOPT\x00\x03")
	if !bytes.Equal(g[:], want) {
		t.Fatalf("greeting = %q, want %q", g, want)
	}
}

func TestDecodeRequest(t *testing.T) {
	for _, tc := range []struct {
		name     string
		wire     []byte
		extended bool
		want     requestHeader
		ok       bool
	}{
		{
			name: "compact write",
			wire: []byte{0x25, 0x60, 0x95, 0x13, 0x00, 0x01, 0x00, 0x01,
				1, 2, 3, 4, 5, 6, 7, 8,
				0, 0, 0, 0, 0, 0, 0x10, 0,
				0, 0, 0x02, 0},
			want: requestHeader{flags: cmdFlagFUA, cmd: CmdWrite, cookie: 0x0102030405060708, off: 4096, length: 512},
			ok:   true,
		},
		{
			name: "compact max length",
			wire: []byte{0x25, 0x60, 0x95, 0x13, 0, 0, 0, 0,
				0, 0, 0, 0, 0, 0, 0, 9,
				0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
				0xff, 0xff, 0xff, 0xff},
			want: requestHeader{cmd: CmdRead, cookie: 9, off: 1<<64 - 1, length: 1<<32 - 1},
			ok:   true,
		},
		{
			name: "extended magic in compact mode",
			wire: []byte{0x21, 0xe4, 0x1c, 0x71, 0, 0, 0, 0,
				0, 0, 0, 0, 0, 0, 0, 0,
				0, 0, 0, 0, 0, 0, 0, 0,
				0, 0, 0, 0},
			ok: false,
		},
		{
			name: "extended trim 64-bit length",
			wire: []byte{0x21, 0xe4, 0x1c, 0x71, 0, 0x20, 0, 4,
				0, 0, 0, 0, 0, 0, 0, 1,
				0, 0, 0, 0, 0, 0, 0, 0,
				0, 0, 0, 1, 0, 0, 0, 0},
			extended: true,
			want:     requestHeader{flags: cmdFlagPayloadLen, cmd: CmdTrim, cookie: 1, length: 1 << 32},
			ok:       true,
		},
		{
			name:     "compact magic in extended mode",
			wire:     append([]byte{0x25, 0x60, 0x95, 0x13}, make([]byte, 28)...),
			extended: true,
			ok:       false,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := decodeRequest(tc.wire, tc.extended)
			if ok != tc.ok {
				t.Fatalf("ok = %v, want %v", ok, tc.ok)
			}
			if ok && got != tc.want {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
			if ok {
				var b [sizeExtendedRequest]byte
				n := putRequest(b[:], got, tc.extended)
				if !bytes.Equal(b[:n], tc.wire) {
					t.Fatalf("re-encoded %x, want %x", b[:n], tc.wire)
				}
			}
		})
	}
}

func TestCommandString(t *testing.T) {
	want := map[Command]string{
		CmdRead: "read", CmdWrite: "write", CmdDisc: "disc", CmdFlush: "flush", CmdTrim: "trim",
		CmdCache: "cache", CmdWriteZeroes: "write_zeroes", CmdBlockStatus: "block_status", 99: "cmd(99)",
	}
	for c, s := range want {
		if c.String() != s {
			t.Errorf("Command(%d).String() = %q, want %q", uint16(c), c.String(), s)
		}
	}
}
