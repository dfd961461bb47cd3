package metrics

import (
	"time"

	"github.com/extentd/extentd/device"
	"github.com/prometheus/client_golang/prometheus"
)

// full is the set of device capabilities the basic wrapper forwards.
type full interface {
	device.Device
	device.Trimmer
	device.FastZeroer
	device.Extenter
	device.RangeSyncer
	device.Prefetcher
}

// backingFile is full plus the extras that alloc.File offers: vectored
// writes and starting host writeback, which the cache finds by type
// assertion (hiding them would silently cost performance), and one-step
// allocation, which it no longer uses but callers may.
type backingFile interface {
	full
	WriteVAt(bufs [][]byte, off int64) (int, error)
	Allocate(off, n int64) error
	StartWriteback(off, n int64) error
}

// Instrument returns dev wrapped so that the size of every write reaching it
// and the duration of every Flush and SyncRange are observed under the
// export label. The wrapper offers exactly the capabilities of dev: it is
// returned for a device with every capability of full (and then also
// forwards WriteVAt, Allocate and StartWriteback if dev has all three, as
// alloc.File does); any other device is returned as is and nothing is
// observed.
func (m *Metrics) Instrument(export string, dev device.Device) device.Device {
	f, ok := dev.(full)
	if !ok {
		return dev
	}
	w := instrumented{
		full:  f,
		write: m.backWrite.WithLabelValues(export),
		flush: m.backFlush.WithLabelValues(export),
	}
	if bf, ok := dev.(backingFile); ok {
		return &instrumentedFile{instrumented: w, file: bf}
	}
	if hasAnyExtra(dev) {
		return dev // a partial set of extras: do not guess
	}
	return &w
}

func hasAnyExtra(dev device.Device) bool {
	_, v := dev.(interface {
		WriteVAt([][]byte, int64) (int, error)
	})
	_, a := dev.(interface{ Allocate(int64, int64) error })
	_, s := dev.(interface{ StartWriteback(int64, int64) error })
	return v || a || s
}

// instrumented forwards every call to the device it wraps.
type instrumented struct {
	full
	write prometheus.Observer
	flush prometheus.Observer
}

var _ full = (*instrumented)(nil)

func (d *instrumented) WriteAt(p []byte, off int64) (int, error) {
	d.write.Observe(float64(len(p)))
	return d.full.WriteAt(p, off)
}

func (d *instrumented) Flush() error {
	start := time.Now()
	err := d.full.Flush()
	d.flush.Observe(time.Since(start).Seconds())
	return err
}

func (d *instrumented) SyncRange(off, n int64) error {
	start := time.Now()
	err := d.full.SyncRange(off, n)
	d.flush.Observe(time.Since(start).Seconds())
	return err
}

// Unwrap returns the wrapped device.
func (d *instrumented) Unwrap() device.Device { return d.full }

// instrumentedFile is instrumented over a backingFile.
type instrumentedFile struct {
	instrumented
	file backingFile
}

var _ backingFile = (*instrumentedFile)(nil)

// WriteVAt observes the total size of the vectored write.
func (d *instrumentedFile) WriteVAt(bufs [][]byte, off int64) (int, error) {
	n := 0
	for _, b := range bufs {
		n += len(b)
	}
	d.write.Observe(float64(n))
	return d.file.WriteVAt(bufs, off)
}

func (d *instrumentedFile) Allocate(off, n int64) error { return d.file.Allocate(off, n) }

func (d *instrumentedFile) StartWriteback(off, n int64) error {
	return d.file.StartWriteback(off, n)
}
