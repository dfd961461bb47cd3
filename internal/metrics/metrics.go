package metrics

import (
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Namespace prefixes every metric name.
const Namespace = "extentd"

// Options configures New.
type Options struct {
	// Version is reported by extentd_build_info{version}. Empty means "dev".
	Version string
	// NoRuntimeCollectors leaves out the Go runtime and process collectors
	// (tests use it to keep the exposition small).
	NoRuntimeCollectors bool
}

// EnsureDefaults fills zero fields with their defaults.
func (o *Options) EnsureDefaults() {
	if o.Version == "" {
		o.Version = "dev"
	}
}

// Validate reports an invalid field. Every value is valid today; the method
// keeps the Options contract of the repository.
func (o *Options) Validate() error { return nil }

// ExportStats is one export's state at scrape time. Zero fields are reported
// as zero; a layer that is absent (no cache with --cache=none) leaves its
// fields zero.
type ExportStats struct {
	Size        int64  // export size in bytes
	Allocated   int64  // bytes allocated in the backing file
	Reserved    int64  // bytes reserved for dirty data not yet written back (delalloc)
	HostFree    int64  // free bytes on the host file system
	Dirty       int64  // dirty bytes in the cache
	Writeback   int64  // bytes under writeback
	Cached      int64  // bytes held by the cache (dirty + clean)
	Memory      int64  // page memory the cache has mapped, free pages included
	CacheHits   uint64 // reads served from memory
	CacheMisses uint64 // reads that went to the backing file
	OutOfSpace  bool   // the allocator refuses new reservations

	WriterWaits     uint64 // times a writer waited for dirty memory (back-pressure)
	FilledBytes     uint64 // bytes of holes writeback wrote as zeros to join dirty runs
	WritebackErrors uint64 // failed writes to the backing file
	HostStarts      uint64 // host writeback starts (sync_file_range WRITE) issued
	StartsDropped   uint64 // host writeback starts dropped because the starter was behind
	WriteThrough    uint64 // bytes of large writes sent straight to the backing file
	WritebackError  bool   // a writeback error is pending; the next flush reports it
}

// StatsFunc returns an export's state; it is called at every scrape and must
// be safe for concurrent use.
type StatsFunc func() ExportStats

// reqChildren are one command's request metrics, curried once.
type reqChildren struct {
	requests prometheus.Counter
	bytes    prometheus.Counter
	latency  prometheus.Observer
}

// Metrics holds every extentd metric and the registry they live on.
type Metrics struct {
	reg *prometheus.Registry

	requests    *prometheus.CounterVec
	bytes       *prometheus.CounterVec
	latency     *prometheus.HistogramVec
	errors      *prometheus.CounterVec
	connections *prometheus.GaugeVec
	connsTotal  *prometheus.CounterVec
	backWrite   *prometheus.HistogramVec
	backFlush   *prometheus.HistogramVec

	children sync.Map // command name → *reqChildren

	mu sync.Mutex // guards the following
	// exports maps an export name to its StatsFunc.
	exports map[string]StatsFunc
}

// New returns Metrics registered on a fresh registry.
func New(opts Options) *Metrics {
	opts.EnsureDefaults()
	m := &Metrics{
		reg:     prometheus.NewRegistry(),
		exports: make(map[string]StatsFunc),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "requests_total",
			Help: "NBD requests completed, by command.",
		}, []string{"command"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "request_bytes_total",
			Help: "Bytes covered by completed NBD requests (read, write, trim, zero...), by command.",
		}, []string{"command"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: Namespace, Name: "request_duration_seconds",
			Help:    "Time from request decode to reply, by command.",
			Buckets: prometheus.ExponentialBuckets(5e-6, 4, 12), // 5µs … ~21s
		}, []string{"command"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "request_errors_total",
			Help: "NBD requests answered with an error, by command and NBD error code.",
		}, []string{"command", "error"}),
		connections: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: Namespace, Name: "connections",
			Help: "Open NBD connections (past the handshake), by export.",
		}, []string{"export"}),
		connsTotal: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "connections_total",
			Help: "NBD connections accepted for an export since start.",
		}, []string{"export"}),
		backWrite: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: Namespace, Name: "backing_write_size_bytes",
			Help:    "Size of each write reaching the backing file (the writeback I/O size under the cache).",
			Buckets: prometheus.ExponentialBuckets(512, 4, 10), // 512B … 128MiB
		}, []string{"export"}),
		backFlush: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: Namespace, Name: "backing_flush_duration_seconds",
			Help:    "Duration of each flush (fdatasync) of the backing file.",
			Buckets: prometheus.ExponentialBuckets(1e-5, 4, 11), // 10µs … ~10s
		}, []string{"export"}),
	}
	build := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: Namespace, Name: "build_info",
		Help: "Always 1; the version label names the running build.",
	}, []string{"version"})
	build.WithLabelValues(opts.Version).Set(1)
	m.reg.MustRegister(m.requests, m.bytes, m.latency, m.errors, m.connections, m.connsTotal,
		m.backWrite, m.backFlush, build, (*stateCollector)(m))
	if !opts.NoRuntimeCollectors {
		m.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	return m
}

// Registry returns the registry every metric is on.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the registry in the Prometheus exposition format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// ConnOpened counts a connection that finished its handshake for export.
func (m *Metrics) ConnOpened(export string) {
	m.connections.WithLabelValues(export).Inc()
	m.connsTotal.WithLabelValues(export).Inc()
}

// ConnClosed counts the end of a connection opened with ConnOpened.
func (m *Metrics) ConnClosed(export string) {
	m.connections.WithLabelValues(export).Dec()
}

// Request records one completed request: its command name, the bytes it
// covered, how long it took, and its NBD error name ("" on success).
func (m *Metrics) Request(command string, bytes int64, d time.Duration, errName string) {
	c := m.childrenFor(command)
	c.requests.Inc()
	if bytes > 0 {
		c.bytes.Add(float64(bytes))
	}
	c.latency.Observe(d.Seconds())
	if errName != "" {
		m.errors.WithLabelValues(command, errName).Inc()
	}
}

func (m *Metrics) childrenFor(command string) *reqChildren {
	if c, ok := m.children.Load(command); ok {
		return c.(*reqChildren)
	}
	c := &reqChildren{
		requests: m.requests.WithLabelValues(command),
		bytes:    m.bytes.WithLabelValues(command),
		latency:  m.latency.WithLabelValues(command),
	}
	actual, _ := m.children.LoadOrStore(command, c)
	return actual.(*reqChildren)
}

// AddExport registers the StatsFunc read at scrape time for export.
func (m *Metrics) AddExport(export string, stats StatsFunc) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.exports[export]; ok {
		return fmt.Errorf("%w: %q", ErrDuplicateExport, export)
	}
	m.exports[export] = stats
	return nil
}

// snapshot returns the registered exports, outside m.mu for the caller.
func (m *Metrics) snapshot() map[string]StatsFunc {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[string]StatsFunc, len(m.exports))
	for k, v := range m.exports {
		out[k] = v
	}
	return out
}

// stateCollector reads every export's StatsFunc at scrape time.
type stateCollector Metrics

type gaugeDesc struct {
	desc    *prometheus.Desc
	kind    prometheus.ValueType
	extract func(ExportStats) float64
}

func newDesc(name, help string) *prometheus.Desc {
	return prometheus.NewDesc(prometheus.BuildFQName(Namespace, "", name), help, []string{"export"}, nil)
}

var stateDescs = []gaugeDesc{
	{newDesc("export_size_bytes", "Export size in bytes."), prometheus.GaugeValue, func(s ExportStats) float64 { return float64(s.Size) }},
	{newDesc("allocated_bytes", "Bytes allocated in the backing file."), prometheus.GaugeValue, func(s ExportStats) float64 { return float64(s.Allocated) }},
	{newDesc("reserved_bytes", "Bytes reserved for dirty data not yet allocated (delayed allocation)."), prometheus.GaugeValue, func(s ExportStats) float64 { return float64(s.Reserved) }},
	{newDesc("host_free_bytes", "Free bytes on the host file system holding the image."), prometheus.GaugeValue, func(s ExportStats) float64 { return float64(s.HostFree) }},
	{newDesc("dirty_bytes", "Dirty bytes in the write-back cache."), prometheus.GaugeValue, func(s ExportStats) float64 { return float64(s.Dirty) }},
	{newDesc("writeback_bytes", "Bytes being written back to the backing file."), prometheus.GaugeValue, func(s ExportStats) float64 { return float64(s.Writeback) }},
	{newDesc("cached_bytes", "Bytes held in memory by the cache."), prometheus.GaugeValue, func(s ExportStats) float64 { return float64(s.Cached) }},
	{newDesc("cache_memory_bytes", "Page memory the cache has mapped (dirty, kept and free pages); it grows with use and is kept for reuse."), prometheus.GaugeValue, func(s ExportStats) float64 { return float64(s.Memory) }},
	{newDesc("cache_hits_total", "Reads served from the cache."), prometheus.CounterValue, func(s ExportStats) float64 { return float64(s.CacheHits) }},
	{newDesc("cache_misses_total", "Reads that went to the backing file."), prometheus.CounterValue, func(s ExportStats) float64 { return float64(s.CacheMisses) }},
	{newDesc("writeback_fill_bytes_total", "Bytes of small holes writeback wrote as zeros so that dirty runs around them go out in one write and one extent (fill-gap)."), prometheus.CounterValue, func(s ExportStats) float64 { return float64(s.FilledBytes) }},
	{newDesc("writer_waits_total", "Times a writer waited for dirty memory (back-pressure at max-dirty)."), prometheus.CounterValue, func(s ExportStats) float64 { return float64(s.WriterWaits) }},
	{newDesc("host_writeback_starts_total", "Calls that started the host's writeback of written-back clusters of 1 MiB or more (sync_file_range WRITE; adjacent clusters merged)."), prometheus.CounterValue, func(s ExportStats) float64 { return float64(s.HostStarts) }},
	{newDesc("host_writeback_starts_dropped_total", "Host writeback starts dropped because the starter goroutine was behind (the next FLUSH then writes more)."), prometheus.CounterValue, func(s ExportStats) float64 { return float64(s.StartsDropped) }},
	{newDesc("write_through_bytes_total", "Bytes of large aligned writes sent straight to the backing file instead of the cache (write-through of writes of 1 MiB or more over a buffered image)."), prometheus.CounterValue, func(s ExportStats) float64 { return float64(s.WriteThrough) }},
	{newDesc("writeback_errors_total", "Failed writes to the backing file."), prometheus.CounterValue, func(s ExportStats) float64 { return float64(s.WritebackErrors) }},
	{newDesc("writeback_error_pending", "1 while a writeback error waits to be reported by the next flush."), prometheus.GaugeValue, func(s ExportStats) float64 { return b2f(s.WritebackError) }},
	{newDesc("out_of_space", "1 when the allocator refuses new reservations."), prometheus.GaugeValue, func(s ExportStats) float64 { return b2f(s.OutOfSpace) }},
}

// Describe implements prometheus.Collector.
func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range stateDescs {
		ch <- d.desc
	}
}

// Collect implements prometheus.Collector.
func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	for name, fn := range (*Metrics)(c).snapshot() {
		s := fn()
		for _, d := range stateDescs {
			ch <- prometheus.MustNewConstMetric(d.desc, d.kind, d.extract(s), name)
		}
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
