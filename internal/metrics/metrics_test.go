package metrics

import (
	"errors"
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/extentd/extentd/device"
	"github.com/extentd/extentd/device/memdev"
	dto "github.com/prometheus/client_model/go"
)

// find returns the metric family name's sample whose labels match.
func find(t *testing.T, m *Metrics, name string, labels map[string]string) *dto.Metric {
	t.Helper()
	fams, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
	next:
		for _, s := range f.GetMetric() {
			got := map[string]string{}
			for _, l := range s.GetLabel() {
				got[l.GetName()] = l.GetValue()
			}
			for k, v := range labels {
				if got[k] != v {
					continue next
				}
			}
			return s
		}
	}
	t.Fatalf("no sample %s%v", name, labels)
	return nil
}

func TestRequestMetrics(t *testing.T) {
	m := New(Options{NoRuntimeCollectors: true})
	m.Request("write", 4096, 2*time.Millisecond, "")
	m.Request("write", 8192, 3*time.Millisecond, "")
	m.Request("read", 512, time.Millisecond, "EIO")
	m.Request("flush", 0, 5*time.Millisecond, "")

	if got := find(t, m, "extentd_requests_total", map[string]string{"command": "write"}).GetCounter().GetValue(); got != 2 {
		t.Errorf("write requests = %v, want 2", got)
	}
	if got := find(t, m, "extentd_request_bytes_total", map[string]string{"command": "write"}).GetCounter().GetValue(); got != 12288 {
		t.Errorf("write bytes = %v, want 12288", got)
	}
	h := find(t, m, "extentd_request_duration_seconds", map[string]string{"command": "write"}).GetHistogram()
	if h.GetSampleCount() != 2 || h.GetSampleSum() < 0.0049 || h.GetSampleSum() > 0.0051 {
		t.Errorf("write latency count %d sum %v, want 2 and 0.005", h.GetSampleCount(), h.GetSampleSum())
	}
	if got := find(t, m, "extentd_request_errors_total", map[string]string{"command": "read", "error": "EIO"}).GetCounter().GetValue(); got != 1 {
		t.Errorf("read EIO errors = %v, want 1", got)
	}
}

func TestConnections(t *testing.T) {
	m := New(Options{NoRuntimeCollectors: true})
	m.ConnOpened("a")
	m.ConnOpened("a")
	m.ConnClosed("a")
	if got := find(t, m, "extentd_connections", map[string]string{"export": "a"}).GetGauge().GetValue(); got != 1 {
		t.Errorf("open connections = %v, want 1", got)
	}
	if got := find(t, m, "extentd_connections_total", map[string]string{"export": "a"}).GetCounter().GetValue(); got != 2 {
		t.Errorf("connections total = %v, want 2", got)
	}
}

func TestExportStatsReadAtScrape(t *testing.T) {
	m := New(Options{NoRuntimeCollectors: true})
	var dirty int64 = 100
	if err := m.AddExport("disk0", func() ExportStats {
		return ExportStats{Size: 1 << 30, Allocated: 4096, Reserved: 8192, Dirty: dirty, CacheHits: 3, CacheMisses: 1, OutOfSpace: true,
			HostStarts: 5, StartsDropped: 2, WriteThrough: 3 << 20}
	}); err != nil {
		t.Fatal(err)
	}
	if err := m.AddExport("disk0", func() ExportStats { return ExportStats{} }); !errors.Is(err, ErrDuplicateExport) {
		t.Fatalf("second AddExport error = %v, want ErrDuplicateExport", err)
	}
	lbl := map[string]string{"export": "disk0"}
	if got := find(t, m, "extentd_dirty_bytes", lbl).GetGauge().GetValue(); got != 100 {
		t.Errorf("dirty = %v, want 100", got)
	}
	dirty = 7
	if got := find(t, m, "extentd_dirty_bytes", lbl).GetGauge().GetValue(); got != 7 {
		t.Errorf("dirty after change = %v, want 7 (read at scrape time)", got)
	}
	if got := find(t, m, "extentd_reserved_bytes", lbl).GetGauge().GetValue(); got != 8192 {
		t.Errorf("reserved = %v", got)
	}
	if got := find(t, m, "extentd_cache_hits_total", lbl).GetCounter().GetValue(); got != 3 {
		t.Errorf("hits = %v", got)
	}
	if got := find(t, m, "extentd_host_writeback_starts_total", lbl).GetCounter().GetValue(); got != 5 {
		t.Errorf("host writeback starts = %v, want 5", got)
	}
	if got := find(t, m, "extentd_host_writeback_starts_dropped_total", lbl).GetCounter().GetValue(); got != 2 {
		t.Errorf("host writeback starts dropped = %v, want 2", got)
	}
	if got := find(t, m, "extentd_write_through_bytes_total", lbl).GetCounter().GetValue(); got != 3<<20 {
		t.Errorf("write-through bytes = %v, want %d", got, 3<<20)
	}
	if got := find(t, m, "extentd_out_of_space", lbl).GetGauge().GetValue(); got != 1 {
		t.Errorf("out_of_space = %v", got)
	}
}

func TestInstrument(t *testing.T) {
	m := New(Options{NoRuntimeCollectors: true})
	mem := memdev.New(1<<20, memdev.Options{})
	dev := m.Instrument("x", mem)
	for _, c := range []struct {
		name string
		ok   bool
	}{
		{"Trimmer", isA[device.Trimmer](dev)},
		{"Zeroer", isA[device.Zeroer](dev)},
		{"Extenter", isA[device.Extenter](dev)},
		{"RangeSyncer", isA[device.RangeSyncer](dev)},
	} {
		if !c.ok {
			t.Errorf("instrumented memdev lost %s", c.name)
		}
	}
	if _, err := dev.WriteAt(make([]byte, 65536), 0); err != nil {
		t.Fatal(err)
	}
	if err := dev.Flush(); err != nil {
		t.Fatal(err)
	}
	lbl := map[string]string{"export": "x"}
	h := find(t, m, "extentd_backing_write_size_bytes", lbl).GetHistogram()
	if h.GetSampleCount() != 1 || h.GetSampleSum() != 65536 {
		t.Errorf("write size count %d sum %v, want 1 and 65536", h.GetSampleCount(), h.GetSampleSum())
	}
	if n := find(t, m, "extentd_backing_flush_duration_seconds", lbl).GetHistogram().GetSampleCount(); n != 1 {
		t.Errorf("flush count %d, want 1", n)
	}
	if got := mem.Stats().Calls[memdev.OpFlush]; got != 1 {
		t.Errorf("flush did not reach the device: %d flushes", got)
	}

	// A device missing a capability is returned unwrapped.
	plain := struct{ device.Device }{mem}
	if got := m.Instrument("y", plain); got != device.Device(plain) {
		t.Errorf("Instrument wrapped a device lacking Trimmer")
	}
}

func isA[T any](d device.Device) bool { _, ok := d.(T); return ok }

// fileLike is memdev with the extras alloc.File has.
type fileLike struct {
	*memdev.Dev
	vecWrites, allocs, starts int
}

func (f *fileLike) WriteVAt(bufs [][]byte, off int64) (int, error) {
	f.vecWrites++
	n := 0
	for _, b := range bufs {
		if _, err := f.Dev.WriteAt(b, off+int64(n)); err != nil {
			return n, err
		}
		n += len(b)
	}
	return n, nil
}
func (f *fileLike) Allocate(off, n int64) error       { f.allocs++; return nil }
func (f *fileLike) StartWriteback(off, n int64) error { f.starts++; return nil }

// TestInstrumentKeepsFileExtras: callers find the file's WriteVAt, Allocate
// and StartWriteback by type assertion (the cache uses WriteVAt and
// StartWriteback); the wrapper must not hide them.
func TestInstrumentKeepsFileExtras(t *testing.T) {
	m := New(Options{NoRuntimeCollectors: true})
	f := &fileLike{Dev: memdev.New(1<<20, memdev.Options{})}
	dev := m.Instrument("f", f)
	v, ok := dev.(interface {
		WriteVAt([][]byte, int64) (int, error)
	})
	if !ok {
		t.Fatal("instrumented file lost WriteVAt")
	}
	if _, err := v.WriteVAt([][]byte{make([]byte, 4096), make([]byte, 8192)}, 0); err != nil {
		t.Fatal(err)
	}
	a, ok1 := dev.(interface{ Allocate(int64, int64) error })
	s, ok2 := dev.(interface{ StartWriteback(int64, int64) error })
	if !ok1 || !ok2 {
		t.Fatal("instrumented file lost Allocate or StartWriteback")
	}
	_ = a.Allocate(0, 4096)
	_ = s.StartWriteback(0, 4096)
	if f.vecWrites != 1 || f.allocs != 1 || f.starts != 1 {
		t.Errorf("calls not forwarded: %+v", f)
	}
	h := find(t, m, "extentd_backing_write_size_bytes", map[string]string{"export": "f"}).GetHistogram()
	if h.GetSampleCount() != 1 || h.GetSampleSum() != 12288 {
		t.Errorf("vectored write observed as count %d sum %v, want 1 and 12288", h.GetSampleCount(), h.GetSampleSum())
	}
	// A plain memdev does not gain the extras.
	if isA[interface {
		WriteVAt([][]byte, int64) (int, error)
	}](m.Instrument("m", memdev.New(4096, memdev.Options{}))) {
		t.Error("instrumented memdev claims WriteVAt")
	}
}

func TestHandlerExposition(t *testing.T) {
	m := New(Options{Version: "v9.9.9"})
	m.Request("read", 1, time.Microsecond, "")
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, want := range []string{`extentd_build_info{version="v9.9.9"} 1`, `extentd_requests_total{command="read"} 1`, "go_goroutines"} {
		if !strings.Contains(string(body), want) {
			t.Errorf("exposition lacks %q", want)
		}
	}
}
