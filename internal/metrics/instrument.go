package metrics

import (
	"time"

	"github.com/extentd/extentd/device"
	"github.com/prometheus/client_golang/prometheus"
)

// full is the set of capabilities Instrument forwards. A device lacking one
// of them is returned unwrapped, so wrapping never changes what the layers
// above detect by type assertion.
type full interface {
	device.Device
	device.Trimmer
	device.Zeroer
	device.Extenter
	device.RangeSyncer
}

// Instrument returns dev wrapped so that the size of every WriteAt and the
// duration of every Flush and SyncRange reaching it are observed under the
// export label. If dev does not implement Trimmer, Zeroer, Extenter and
// RangeSyncer, it is returned as is and nothing is observed.
func (m *Metrics) Instrument(export string, dev device.Device) device.Device {
	f, ok := dev.(full)
	if !ok {
		return dev
	}
	return &instrumented{
		full:  f,
		write: m.backWrite.WithLabelValues(export),
		flush: m.backFlush.WithLabelValues(export),
	}
}

// instrumented forwards every call to the device it wraps.
type instrumented struct {
	full
	write prometheus.Observer
	flush prometheus.Observer
}

var (
	_ device.FastZeroer = (*instrumented)(nil)
	_ device.Prefetcher = (*instrumented)(nil)
	_ full              = (*instrumented)(nil)
)

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

// FastZero reports what the wrapped device reports (false if it is not a
// FastZeroer).
func (d *instrumented) FastZero() bool {
	fz, ok := d.full.(device.FastZeroer)
	return ok && fz.FastZero()
}

// Prefetch forwards to the wrapped device, or does nothing.
func (d *instrumented) Prefetch(off, n int64) error {
	if p, ok := d.full.(device.Prefetcher); ok {
		return p.Prefetch(off, n)
	}
	return device.ErrNotSupported
}

// Unwrap returns the wrapped device.
func (d *instrumented) Unwrap() device.Device { return d.full }
