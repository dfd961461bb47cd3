package nbdserver

import (
	"github.com/extentd/extentd/device"
)

// plainDevice hides every optional capability of the device it wraps.
type plainDevice struct{ d device.Device }

func (p plainDevice) ReadAt(b []byte, off int64) (int, error)  { return p.d.ReadAt(b, off) }
func (p plainDevice) WriteAt(b []byte, off int64) (int, error) { return p.d.WriteAt(b, off) }
func (p plainDevice) Size() int64                              { return p.d.Size() }
func (p plainDevice) Flush() error                             { return p.d.Flush() }

// slowZeroDevice is a Zeroer that is not a fast zeroer: it writes zeros.
type slowZeroDevice struct{ plainDevice }

func (s slowZeroDevice) Zero(off, n int64, mayTrim bool) error {
	_, err := s.WriteAt(make([]byte, n), off)
	return err
}

// flatDevice is a minimal in-memory device that allocates nothing per call,
// for the allocation pin and benchmarks (memdev builds error strings).
type flatDevice struct{ b []byte }

func (f *flatDevice) ReadAt(p []byte, off int64) (int, error) {
	if err := device.CheckRange("flat: read", off, int64(len(p)), int64(len(f.b))); err != nil {
		return 0, err
	}
	return copy(p, f.b[off:]), nil
}

func (f *flatDevice) WriteAt(p []byte, off int64) (int, error) {
	if err := device.CheckRange("flat: write", off, int64(len(p)), int64(len(f.b))); err != nil {
		return 0, err
	}
	return copy(f.b[off:], p), nil
}

func (f *flatDevice) Size() int64  { return int64(len(f.b)) }
func (f *flatDevice) Flush() error { return nil }

// gateDevice blocks reads until gate is closed, to hold requests in flight.
type gateDevice struct {
	device.Device
	entered chan struct{}
	gate    chan struct{}
}

func (g *gateDevice) ReadAt(p []byte, off int64) (int, error) {
	g.entered <- struct{}{}
	<-g.gate
	return g.Device.ReadAt(p, off)
}

// flatExtDevice is a flatDevice whose first holeEnd bytes are reported as a
// hole (and read as zeros); it allocates nothing in Extents.
type flatExtDevice struct {
	flatDevice
	holeEnd int64
}

func (f *flatExtDevice) Extents(off, n int64, yield func(device.Extent) bool) error {
	end := off + n
	if off < f.holeEnd {
		if !yield(device.Extent{Off: off, Len: min(end, f.holeEnd) - off, Flags: device.Hole | device.Zero}) {
			return nil
		}
		off = f.holeEnd
	}
	if off < end {
		yield(device.Extent{Off: off, Len: int64(len(f.b)) - off})
	}
	return nil
}
