package nbdserver

import (
	"fmt"
	"io"
	"syscall"
	"testing"
	"time"
)

// cpuTime returns the process's user+system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// reportCPU adds a cpu-ns/op metric: CPU time (client and server) per
// operation, which a loaded shared machine disturbs far less than wall time.
func reportCPU(b *testing.B, start time.Duration) {
	b.ReportMetric(float64(cpuTime()-start)/float64(b.N), "cpu-ns/op")
}

func BenchmarkDecodeRequest(b *testing.B) {
	var buf [sizeExtendedRequest]byte
	putRequest(buf[:], requestHeader{cmd: CmdWrite, flags: cmdFlagFUA, cookie: 42, off: 1 << 30, length: 4096}, false)
	n := negotiated{tflags: tflagHasFlags | tflagSendFlush | tflagSendFUA, size: 1 << 40, minBlock: 1, maxPayload: 32 << 20}
	b.ReportAllocs()
	for b.Loop() {
		h, ok := decodeRequest(buf[:], false)
		if errno, _ := validateRequest(&n, &h); !ok || errno != 0 {
			b.Fatal("decode failed")
		}
	}
}

func BenchmarkEncodeReply(b *testing.B) {
	var buf [64]byte
	b.Run("simple", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			putSimpleReply(buf[:], 0, 42)
		}
	})
	b.Run("structured", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			k := putChunkHeader(buf[:], false, replyFlagDone, replyTypeOffsetData, 42, 4096, 8+4096)
			putOffsetChunk(buf[k:], 4096, 0, false)
		}
	})
	b.Run("extended", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			k := putChunkHeader(buf[:], true, replyFlagDone, replyTypeOffsetData, 42, 4096, 8+4096)
			putOffsetChunk(buf[k:], 4096, 0, false)
		}
	})
}

// BenchmarkRoundTrip measures one READ or WRITE at queue depth 1 over a
// Unix socketpair against an in-memory device: latency of the whole server
// path (decode, worker hand-off, device copy, reply, flush).
func BenchmarkRoundTrip(b *testing.B) {
	for _, size := range []int{4 << 10, 64 << 10, 1 << 20} {
		for _, cmd := range []Command{CmdRead, CmdWrite} {
			b.Run(fmt.Sprintf("%s-%dk", cmd, size>>10), func(b *testing.B) {
				rc := benchConn(b, 64<<20, false)
				var rt *roundTrip
				if cmd == CmdWrite {
					rt = newRoundTrip(rc, requestHeader{cmd: cmd, cookie: 1, off: 4096, length: uint64(size)}, pattern(size, 1), 0)
				} else {
					rt = newRoundTrip(rc, requestHeader{cmd: cmd, cookie: 1, off: 4096, length: uint64(size)}, nil, size)
				}
				b.SetBytes(int64(size))
				b.ReportAllocs()
				start := cpuTime()
				for b.Loop() {
					rt.do(b)
				}
				reportCPU(b, start)
			})
		}
	}
}

// BenchmarkPipelined measures throughput with depth requests in flight:
// the client writes a batch of requests, then reads all replies.
func BenchmarkPipelined(b *testing.B) {
	const depth = 32
	for _, cmd := range []Command{CmdRead, CmdWrite} {
		b.Run(fmt.Sprintf("%s-4k-qd%d", cmd, depth), func(b *testing.B) {
			rc := benchConn(b, 64<<20, false)
			var reqs []byte
			replyLen := sizeSimpleReply
			payload := pattern(4096, 3)
			for i := range depth {
				h := requestHeader{cmd: cmd, cookie: uint64(i), off: uint64(i) * 4096, length: 4096}
				var hb [sizeRequest]byte
				putRequest(hb[:], h, false)
				reqs = append(reqs, hb[:]...)
				if cmd == CmdWrite {
					reqs = append(reqs, payload...)
				}
			}
			if cmd == CmdRead {
				replyLen += 4096
			}
			replies := make([]byte, depth*replyLen)
			b.SetBytes(depth * 4096)
			b.ReportAllocs()
			start := cpuTime()
			for b.Loop() {
				go rc.c.Write(reqs)
				if _, err := io.ReadFull(rc.c, replies); err != nil {
					b.Fatal(err)
				}
			}
			reportCPU(b, start)
		})
	}
}
