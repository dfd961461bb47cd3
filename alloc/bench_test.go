package alloc

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"
)

const (
	clusterSize  = 4 << 20
	clusterBlock = 4096
	benchImage   = 1 << 30
)

func benchFile(b *testing.B, direct bool) *File {
	b.Helper()
	return openTest(b, benchImage, Options{DirectIO: direct, Logger: zap.NewNop()})
}

func clusterBufs() [][]byte {
	bufs := make([][]byte, clusterSize/clusterBlock)
	for i := range bufs {
		bufs[i] = AlignedBuffer(clusterBlock)
		bufs[i][0] = byte(i)
	}
	return bufs
}

func modes() []struct {
	name   string
	direct bool
} {
	return []struct {
		name   string
		direct bool
	}{{"buffered", false}, {"direct", true}}
}

// BenchmarkWriteVAtCluster writes a 4 MiB cluster made of 1024 4 KiB
// buffers with one WriteVAt (one pwritev) per op.
func BenchmarkWriteVAtCluster(b *testing.B) {
	for _, m := range modes() {
		b.Run(m.name, func(b *testing.B) {
			f := benchFile(b, m.direct)
			bufs := clusterBufs()
			b.SetBytes(clusterSize)
			b.ReportAllocs()
			off := int64(0)
			for b.Loop() {
				if _, err := f.WriteVAt(bufs, off); err != nil {
					b.Fatal(err)
				}
				off = (off + clusterSize) % (256 << 20)
			}
		})
	}
}

// BenchmarkPwriteCluster writes the same 4 MiB cluster as 1024 WriteAt
// calls (1024 pwrites) per op.
func BenchmarkPwriteCluster(b *testing.B) {
	for _, m := range modes() {
		b.Run(m.name, func(b *testing.B) {
			f := benchFile(b, m.direct)
			bufs := clusterBufs()
			b.SetBytes(clusterSize)
			b.ReportAllocs()
			off := int64(0)
			for b.Loop() {
				for i, p := range bufs {
					if _, err := f.WriteAt(p, off+int64(i)*clusterBlock); err != nil {
						b.Fatal(err)
					}
				}
				off = (off + clusterSize) % (256 << 20)
			}
		})
	}
}

// BenchmarkWriteback is the write-back cache's pattern: 4 MiB clusters
// written with WriteVAt across a 1 GiB image, a Flush (fdatasync) after
// every 64 MiB. Bytes/s is the sustained writeback rate.
func BenchmarkWriteback(b *testing.B) {
	for _, m := range append(modes(), struct {
		name   string
		direct bool
	}{"buffered+startwb", false}) {
		b.Run(m.name, func(b *testing.B) {
			f := benchFile(b, m.direct)
			startWB := m.name == "buffered+startwb"
			bufs := clusterBufs()
			b.SetBytes(clusterSize)
			off, n := int64(0), 0
			for b.Loop() {
				if _, err := f.WriteVAt(bufs, off); err != nil {
					b.Fatal(err)
				}
				if startWB {
					if err := f.StartWriteback(off, clusterSize); err != nil {
						b.Fatal(err)
					}
				}
				off = (off + clusterSize) % benchImage
				if n++; n%16 == 0 {
					if err := f.Flush(); err != nil {
						b.Fatal(err)
					}
				}
			}
			if err := f.Flush(); err != nil {
				b.Fatal(err)
			}
		})
	}
}

// BenchmarkWritebackAllocate is BenchmarkWriteback as the cache does it:
// Allocate (fallocate KEEP_SIZE) each cluster, then WriteVAt. "fresh"
// writes into holes, "overwrite" into allocated blocks (Allocate skips the
// system call).
func BenchmarkWritebackAllocate(b *testing.B) {
	for _, m := range modes() {
		for _, overwrite := range []bool{false, true} {
			name := m.name + "-fresh"
			if overwrite {
				name = m.name + "-overwrite"
			}
			b.Run(name, func(b *testing.B) {
				f := benchFile(b, m.direct)
				bufs := clusterBufs()
				if overwrite {
					for off := int64(0); off < benchImage; off += clusterSize {
						if err := f.Allocate(off, clusterSize); err != nil {
							b.Fatal(err)
						}
					}
				}
				b.SetBytes(clusterSize)
				off, n := int64(0), 0
				for b.Loop() {
					if err := f.Allocate(off, clusterSize); err != nil {
						b.Fatal(err)
					}
					if _, err := f.WriteVAt(bufs, off); err != nil {
						b.Fatal(err)
					}
					off = (off + clusterSize) % benchImage
					if n++; n%16 == 0 {
						if err := f.Flush(); err != nil {
							b.Fatal(err)
						}
					}
				}
				if err := f.Flush(); err != nil {
					b.Fatal(err)
				}
			})
		}
	}
}

// BenchmarkRandomRead4K reads random 4 KiB blocks of a written 256 MiB
// region: the cache's miss path. "cold" drops the file's host page cache
// first (buffered reads are otherwise served from the host page cache:
// the double caching the write-back cache makes redundant).
func BenchmarkRandomRead4K(b *testing.B) {
	for _, m := range modes() {
		for _, cold := range []bool{false, true} {
			if m.direct && cold {
				continue
			}
			name := m.name
			if !m.direct {
				name = fmt.Sprintf("%s-cold=%v", name, cold)
			}
			b.Run(name, func(b *testing.B) {
				f := benchFile(b, m.direct)
				const region = 256 << 20
				bufs := clusterBufs()
				for off := int64(0); off < region; off += clusterSize {
					if _, err := f.WriteVAt(bufs, off); err != nil {
						b.Fatal(err)
					}
				}
				if err := f.Flush(); err != nil {
					b.Fatal(err)
				}
				if cold {
					if err := unix.Fadvise(f.fd, 0, 0, unix.FADV_DONTNEED); err != nil {
						b.Fatal(err)
					}
				}
				r := rand.New(rand.NewPCG(1, 2))
				buf := AlignedBuffer(4096)
				b.SetBytes(4096)
				b.ReportAllocs()
				for b.Loop() {
					if _, err := f.ReadAt(buf, int64(r.IntN(region/4096))*4096); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkUnalignedWrite is the bounce/read-modify-write cost of a
// 1000-byte write at an odd offset.
func BenchmarkUnalignedWrite(b *testing.B) {
	for _, m := range modes() {
		b.Run(m.name, func(b *testing.B) {
			f := benchFile(b, m.direct)
			p := make([]byte, 1000)
			b.SetBytes(int64(len(p)))
			b.ReportAllocs()
			off := int64(12345)
			for b.Loop() {
				if _, err := f.WriteAt(p, off); err != nil {
					b.Fatal(err)
				}
				off = (off + 8191) % (64 << 20)
			}
		})
	}
}

// BenchmarkFlushLatency writes 64 MiB of clusters and then Flushes; it
// reports the Flush alone as flush-ms (what an NBD FLUSH after a burst of
// writeback waits for).
func BenchmarkFlushLatency(b *testing.B) {
	for _, m := range append(modes(), struct {
		name   string
		direct bool
	}{"buffered+startwb", false}) {
		b.Run(m.name, func(b *testing.B) {
			f := benchFile(b, m.direct)
			startWB := m.name == "buffered+startwb"
			bufs := clusterBufs()
			b.SetBytes(64 << 20)
			var flush time.Duration
			off := int64(0)
			for b.Loop() {
				for range 16 {
					if _, err := f.WriteVAt(bufs, off); err != nil {
						b.Fatal(err)
					}
					if startWB {
						if err := f.StartWriteback(off, clusterSize); err != nil {
							b.Fatal(err)
						}
					}
					off = (off + clusterSize) % benchImage
				}
				start := time.Now()
				if err := f.Flush(); err != nil {
					b.Fatal(err)
				}
				flush += time.Since(start)
			}
			b.ReportMetric(float64(flush.Milliseconds())/float64(b.N), "flush-ms/op")
		})
	}
}

// BenchmarkSeqRead1M reads a written 256 MiB region sequentially in 1 MiB
// requests with a cold host page cache (buffered gets kernel readahead).
func BenchmarkSeqRead1M(b *testing.B) {
	for _, m := range modes() {
		b.Run(m.name, func(b *testing.B) {
			f := benchFile(b, m.direct)
			const region = 256 << 20
			bufs := clusterBufs()
			for off := int64(0); off < region; off += clusterSize {
				if _, err := f.WriteVAt(bufs, off); err != nil {
					b.Fatal(err)
				}
			}
			if err := f.Flush(); err != nil {
				b.Fatal(err)
			}
			if err := unix.Fadvise(f.fd, 0, 0, unix.FADV_DONTNEED); err != nil {
				b.Fatal(err)
			}
			buf := AlignedBuffer(1 << 20)
			b.SetBytes(1 << 20)
			off := int64(0)
			for b.Loop() {
				if _, err := f.ReadAt(buf, off); err != nil {
					b.Fatal(err)
				}
				if off += 1 << 20; off == region {
					off = 0
					b.StopTimer()
					_ = unix.Fadvise(f.fd, 0, 0, unix.FADV_DONTNEED)
					b.StartTimer()
				}
			}
		})
	}
}

// BenchmarkWriteAt4K is the per-call cost of a 4 KiB overwrite of an
// allocated block (page cache only, buffered): range check, accounting,
// pwrite, map update.
func BenchmarkWriteAt4K(b *testing.B) {
	f := benchFile(b, false)
	p := AlignedBuffer(4096)
	const region = 64 << 20
	for off := int64(0); off < region; off += 4096 {
		if _, err := f.WriteAt(p, off); err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(4096)
	b.ReportAllocs()
	off := int64(0)
	for b.Loop() {
		if _, err := f.WriteAt(p, off); err != nil {
			b.Fatal(err)
		}
		off = (off + 4096) % region
	}
}

// BenchmarkReadAtHole reads 4 KiB of a hole: served from the map, no
// system call.
func BenchmarkReadAtHole(b *testing.B) {
	f := benchFile(b, false)
	p := AlignedBuffer(4096)
	b.SetBytes(4096)
	b.ReportAllocs()
	off := int64(0)
	for b.Loop() {
		if _, err := f.ReadAt(p, off); err != nil {
			b.Fatal(err)
		}
		off = (off + 4096) % benchImage
	}
}

// BenchmarkRawPwrite4K is BenchmarkWriteAt4K without alloc: the bare
// pwrite(2), for comparison.
func BenchmarkRawPwrite4K(b *testing.B) {
	f := benchFile(b, false)
	p := AlignedBuffer(4096)
	const region = 64 << 20
	for off := int64(0); off < region; off += 4096 {
		if _, err := f.WriteAt(p, off); err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(4096)
	off := int64(0)
	for b.Loop() {
		if _, err := unix.Pwrite(f.fd, p, off); err != nil {
			b.Fatal(err)
		}
		off = (off + 4096) % region
	}
}
