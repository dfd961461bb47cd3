package e2e

import (
	"bytes"
	"flag"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/extentd/extentd/nbdserver/nbdtest"
)

var modelSeed = flag.Uint64("model.seed", 0, "seed for TestModel (0: time-based)")

// TestModel runs random unaligned WRITE/TRIM/WRITE_ZEROES/READ/
// BLOCK_STATUS requests (several in flight) in every header style and
// checks every read against a flat []byte model. It also checks that
// block status never calls a range ZERO that the model says holds data,
// which is what a client like nbdcopy relies on to skip reading it.
func TestModel(t *testing.T) {
	seed := *modelSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("seed %d (rerun with -model.seed=%d)", seed, seed)
	const size = 4 << 20
	e := newEnv(t)
	for si, hs := range headerStyles {
		t.Run(hs.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, uint64(si)))
			c := e.dial(hs.opts)
			base := int64(si) * size // disjoint areas per style
			model := make([]byte, size)
			span := func() (int64, int64) {
				n := int64(1 + rng.IntN(128<<10))
				if rng.IntN(4) == 0 {
					n = int64(1 + rng.IntN(4096))
				}
				return rng.Int64N(size - n + 1), n
			}
			for op := 0; op < 300; op++ {
				off, n := span()
				switch k := rng.IntN(10); {
				case k < 4:
					p := pattern(byte(rng.Uint32()), int(n))
					flags := uint16(0)
					if rng.IntN(5) == 0 {
						flags = nbdtest.CmdFlagFUA
					}
					if _, err := c.WriteAtFlags(p, base+off, flags); err != nil {
						t.Fatalf("op %d write [%d,+%d): %v", op, off, n, err)
					}
					copy(model[off:], p)
				case k < 5:
					if err := c.Trim(base+off, n, 0); err != nil {
						t.Fatalf("op %d trim: %v", op, err)
					}
					clear(model[off : off+n]) // this project's devices read trimmed ranges as zeros
				case k < 6:
					flags := []uint16{0, nbdtest.CmdFlagNoHole, nbdtest.CmdFlagFastZero}[rng.IntN(3)]
					if err := c.Zero(base+off, n, flags); err != nil {
						t.Fatalf("op %d zero flags %#x: %v", op, flags, err)
					}
					clear(model[off : off+n])
				case k < 9:
					// A batch of reads in flight at once.
					var calls []*nbdtest.Call
					var offs []int64
					for j := 0; j < 4; j++ {
						o, l := span()
						call, err := c.Submit(nbdtest.Request{Type: nbdtest.CmdRead, Offset: uint64(base + o), Length: uint64(l)})
						if err != nil {
							t.Fatal(err)
						}
						calls, offs = append(calls, call), append(offs, o)
					}
					for j, call := range calls {
						if err := call.Wait(20 * time.Second); err != nil {
							t.Fatalf("op %d read: %v", op, err)
						}
						o := offs[j]
						if !bytes.Equal(call.Data, model[o:o+int64(len(call.Data))]) {
							t.Fatalf("op %d read [%d,+%d) differs from model (chunks %+v)", op, o, len(call.Data), call.Chunks)
						}
					}
				default:
					if !c.Structured() {
						continue
					}
					st, err := c.BlockStatus(base+off, n, 0)
					if err != nil {
						t.Fatalf("op %d block status: %v", op, err)
					}
					pos := off
					for _, x := range st[nbdtest.ContextBaseAllocation] {
						end := min(pos+int64(x.Length), int64(size))
						if x.Flags&nbdtest.StateZero != 0 && !bytes.Equal(model[pos:end], make([]byte, end-pos)) {
							t.Fatalf("op %d: [%d,%d) reported ZERO but holds data", op, pos, end)
						}
						pos = end
					}
				}
			}
			got := make([]byte, size)
			for o := 0; o < size; o += 1 << 20 {
				if _, err := c.ReadAt(got[o:o+1<<20], base+int64(o)); err != nil {
					t.Fatal(err)
				}
			}
			if !bytes.Equal(got, model) {
				t.Fatal("final image differs from model")
			}
		})
	}
}

// TestMaxPayload: 32 MiB reads and writes (the default maximum) work;
// the spec says no client should be refused for them. The write goes
// through extended headers, the reads through simple and structured
// replies (one 32 MiB payload each, to keep the race-enabled run short).
func TestMaxPayload(t *testing.T) {
	e := newEnv(t)
	p := pattern(40, 32<<20)
	if _, err := e.dial(headerStyles[2].opts).WriteAt(p, 16<<20); err != nil {
		t.Fatalf("32 MiB write: %v", err)
	}
	got := make([]byte, len(p))
	for _, hs := range headerStyles[:2] {
		clear(got)
		if _, err := e.dial(hs.opts).ReadAt(got, 16<<20); err != nil || !bytes.Equal(got, p) {
			t.Fatalf("%s: 32 MiB read: %v", hs.name, err)
		}
	}
}
