package nbdserver

import "testing"

func TestValidateRequest(t *testing.T) {
	const size = 1 << 20
	full := uint16(tflagHasFlags | tflagSendFlush | tflagSendFUA | tflagSendTrim | tflagSendWriteZeroes |
		tflagSendFastZero | tflagSendCache)
	simple := negotiated{tflags: full, size: size, minBlock: 1, maxPayload: 32 << 20}
	sr := simple
	sr.structured, sr.meta = true, true
	sr.tflags |= tflagSendDF
	ext := sr
	ext.extended = true
	ro := simple
	ro.tflags = tflagHasFlags | tflagReadOnly | tflagSendFlush | tflagSendFUA
	noZero := simple
	noZero.tflags = tflagHasFlags | tflagSendFlush | tflagSendFUA | tflagSendWriteZeroes
	noFUA := simple
	noFUA.tflags = tflagHasFlags | tflagSendFlush
	aligned := simple
	aligned.minBlock = 512

	for _, tc := range []struct {
		name string
		n    negotiated
		h    requestHeader
		want Errno
	}{
		{"read ok", simple, requestHeader{cmd: CmdRead, off: 4096, length: 4096}, 0},
		{"read zero length", simple, requestHeader{cmd: CmdRead, off: 0, length: 0}, 0},
		{"read to the end", simple, requestHeader{cmd: CmdRead, off: size - 1, length: 1}, 0},
		{"read past end", simple, requestHeader{cmd: CmdRead, off: size - 1, length: 2}, EINVAL},
		{"read offset past end", simple, requestHeader{cmd: CmdRead, off: size + 1}, EINVAL},
		{"read offset overflow", simple, requestHeader{cmd: CmdRead, off: 1<<64 - 1, length: 2}, EINVAL},
		{"read too long simple", simple, requestHeader{cmd: CmdRead, length: 32<<20 + 1}, EINVAL},
		{"read too long structured", sr, requestHeader{cmd: CmdRead, length: 32<<20 + 1}, EOVERFLOW},
		{"read FUA accepted", simple, requestHeader{cmd: CmdRead, flags: cmdFlagFUA, length: 1}, 0},
		{"read FUA not negotiated", noFUA, requestHeader{cmd: CmdRead, flags: cmdFlagFUA, length: 1}, EINVAL},
		{"read DF without SR", simple, requestHeader{cmd: CmdRead, flags: cmdFlagDF, length: 1}, EINVAL},
		{"read DF with SR", sr, requestHeader{cmd: CmdRead, flags: cmdFlagDF, length: 1}, 0},
		{"read NO_HOLE", simple, requestHeader{cmd: CmdRead, flags: cmdFlagNoHole, length: 1}, EINVAL},
		{"read unknown flag", simple, requestHeader{cmd: CmdRead, flags: 1 << 9, length: 1}, EINVAL},
		{"read PAYLOAD_LEN extended", ext, requestHeader{cmd: CmdRead, flags: cmdFlagPayloadLen, length: 8}, EINVAL},
		{"read unaligned", aligned, requestHeader{cmd: CmdRead, off: 1, length: 512}, EINVAL},
		{"read aligned", aligned, requestHeader{cmd: CmdRead, off: 512, length: 1024}, 0},

		{"write ok", simple, requestHeader{cmd: CmdWrite, off: 0, length: 4096}, 0},
		{"write FUA", simple, requestHeader{cmd: CmdWrite, flags: cmdFlagFUA, length: 4096}, 0},
		{"write past end", simple, requestHeader{cmd: CmdWrite, off: size, length: 1}, ENOSPC},
		{"write too long", simple, requestHeader{cmd: CmdWrite, length: 32<<20 + 1}, EINVAL},
		{"write read-only", ro, requestHeader{cmd: CmdWrite, length: 1}, EPERM},
		{"write PAYLOAD_LEN compact", simple, requestHeader{cmd: CmdWrite, flags: cmdFlagPayloadLen, length: 1}, EINVAL},
		{"write extended without PAYLOAD_LEN", ext, requestHeader{cmd: CmdWrite, length: 1}, EINVAL},
		{"write extended PAYLOAD_LEN", ext, requestHeader{cmd: CmdWrite, flags: cmdFlagPayloadLen, length: 1}, 0},
		{"write DF", sr, requestHeader{cmd: CmdWrite, flags: cmdFlagDF, length: 1}, EINVAL},
		{"write unaligned", aligned, requestHeader{cmd: CmdWrite, off: 512, length: 100}, EINVAL},

		{"flush", simple, requestHeader{cmd: CmdFlush}, 0},
		{"flush FUA", simple, requestHeader{cmd: CmdFlush, flags: cmdFlagFUA}, 0},
		{"flush with length", simple, requestHeader{cmd: CmdFlush, length: 1}, EINVAL},
		{"flush read-only", ro, requestHeader{cmd: CmdFlush}, 0},

		{"trim", simple, requestHeader{cmd: CmdTrim, off: 0, length: size}, 0},
		{"trim past end", simple, requestHeader{cmd: CmdTrim, off: 1, length: size}, EINVAL},
		{"trim not offered", noZero, requestHeader{cmd: CmdTrim, length: 1}, EINVAL},
		{"trim read-only", ro, requestHeader{cmd: CmdTrim, length: 1}, EPERM},
		{"trim NO_HOLE", simple, requestHeader{cmd: CmdTrim, flags: cmdFlagNoHole, length: 1}, EINVAL},

		{"cache", simple, requestHeader{cmd: CmdCache, length: 4096}, 0},
		{"cache past end", simple, requestHeader{cmd: CmdCache, off: size, length: 1}, EINVAL},
		{"cache unknown flag", simple, requestHeader{cmd: CmdCache, flags: cmdFlagReqOne, length: 1}, EINVAL},

		{"zero", simple, requestHeader{cmd: CmdWriteZeroes, length: size}, 0},
		{"zero huge extended", ext, requestHeader{cmd: CmdWriteZeroes, length: 1 << 40}, ENOSPC},
		{"zero NO_HOLE", simple, requestHeader{cmd: CmdWriteZeroes, flags: cmdFlagNoHole, length: 1}, 0},
		{"zero FAST_ZERO offered", simple, requestHeader{cmd: CmdWriteZeroes, flags: cmdFlagFastZero, length: 1}, 0},
		{"zero FAST_ZERO not offered", noZero, requestHeader{cmd: CmdWriteZeroes, flags: cmdFlagFastZero, length: 1}, EINVAL},
		{"zero not offered", noFUA, requestHeader{cmd: CmdWriteZeroes, length: 1}, EINVAL},
		{"zero past end", simple, requestHeader{cmd: CmdWriteZeroes, off: size, length: 1}, ENOSPC},
		{"zero read-only", ro, requestHeader{cmd: CmdWriteZeroes, length: 1}, EPERM},
		{"zero DF", sr, requestHeader{cmd: CmdWriteZeroes, flags: cmdFlagDF, length: 1}, EINVAL},

		{"block status", sr, requestHeader{cmd: CmdBlockStatus, length: 4096}, 0},
		{"block status REQ_ONE", sr, requestHeader{cmd: CmdBlockStatus, flags: cmdFlagReqOne, length: 4096}, 0},
		{"block status without meta", simple, requestHeader{cmd: CmdBlockStatus, length: 4096}, EINVAL},
		{"block status zero length", sr, requestHeader{cmd: CmdBlockStatus, length: 0}, EINVAL},
		{"block status past end", sr, requestHeader{cmd: CmdBlockStatus, off: 4096, length: size}, EINVAL},
		{"block status payload not offered", ext, requestHeader{cmd: CmdBlockStatus, flags: cmdFlagPayloadLen, length: 12}, EINVAL},
		{"REQ_ONE on read", sr, requestHeader{cmd: CmdRead, flags: cmdFlagReqOne, length: 1}, EINVAL},

		{"resize", simple, requestHeader{cmd: cmdResize}, EINVAL},
		{"unknown command", simple, requestHeader{cmd: 0xffff}, EINVAL},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, msg := validateRequest(&tc.n, &tc.h)
			if got != tc.want {
				t.Fatalf("validateRequest(%+v) = %v (%q), want %v", tc.h, got, msg, tc.want)
			}
			if (got == 0) != (msg == "") {
				t.Fatalf("errno %v with message %q", got, msg)
			}
		})
	}
}

func TestPayloadLen(t *testing.T) {
	compact := negotiated{}
	ext := negotiated{extended: true}
	for _, tc := range []struct {
		name string
		n    negotiated
		h    requestHeader
		want uint64
	}{
		{"compact write", compact, requestHeader{cmd: CmdWrite, length: 512}, 512},
		{"compact read", compact, requestHeader{cmd: CmdRead, length: 512}, 0},
		{"compact trim with PAYLOAD_LEN", compact, requestHeader{cmd: CmdTrim, flags: cmdFlagPayloadLen, length: 512}, 0},
		{"extended write", ext, requestHeader{cmd: CmdWrite, flags: cmdFlagPayloadLen, length: 512}, 512},
		{"extended write without flag", ext, requestHeader{cmd: CmdWrite, length: 512}, 0},
		{"extended block status payload", ext, requestHeader{cmd: CmdBlockStatus, flags: cmdFlagPayloadLen, length: 12}, 12},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := payloadLen(&tc.n, &tc.h); got != tc.want {
				t.Fatalf("payloadLen = %d, want %d", got, tc.want)
			}
		})
	}
}

func TestTransmissionFlags(t *testing.T) {
	mem := memExports(1 << 20)[0]
	for _, tc := range []struct {
		name       string
		e          Export
		structured bool
		want       uint16
	}{
		{"memdev", mem, false, tflagHasFlags | tflagSendFlush | tflagSendFUA | tflagSendCache | tflagSendTrim |
			tflagSendWriteZeroes | tflagSendFastZero | tflagCanMultiConn},
		{"memdev structured", mem, true, tflagHasFlags | tflagSendFlush | tflagSendFUA | tflagSendCache | tflagSendTrim |
			tflagSendWriteZeroes | tflagSendFastZero | tflagCanMultiConn | tflagSendDF},
		{"read-only", Export{Device: mem.Device, ReadOnly: true}, false,
			tflagHasFlags | tflagReadOnly | tflagSendFlush | tflagSendFUA | tflagSendCache},
		{"plain device", Export{Device: plainDevice{mem.Device}}, false,
			tflagHasFlags | tflagSendFlush | tflagSendFUA | tflagSendCache},
		{"slow zeroer", Export{Device: slowZeroDevice{plainDevice{mem.Device}}}, false,
			tflagHasFlags | tflagSendFlush | tflagSendFUA | tflagSendCache | tflagSendWriteZeroes},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := newExport(tc.e).transmissionFlags(tc.structured); got != tc.want {
				t.Fatalf("flags = %#x, want %#x", got, tc.want)
			}
		})
	}
}
