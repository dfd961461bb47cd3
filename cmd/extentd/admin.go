package main

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"go.uber.org/zap"

	"github.com/extentd/extentd/internal/metrics"
)

// infoPath serves the JSON state read by `extentd info`.
const infoPath = "/debug/extentd/info"

// serverInfo is the JSON document at infoPath.
type serverInfo struct {
	Version   string       `json:"version"`
	Pid       int          `json:"pid"`
	StartTime time.Time    `json:"start_time"`
	Uptime    float64      `json:"uptime_seconds"`
	Listen    []string     `json:"listen"`
	Exports   []exportInfo `json:"exports"`
}

// exportInfo is one export's state.
type exportInfo struct {
	Name          string  `json:"name"`
	Description   string  `json:"description,omitempty"`
	Image         string  `json:"image"`
	Cache         string  `json:"cache"`
	ReadOnly      bool    `json:"read_only"`
	Size          int64   `json:"size"`
	Allocated     int64   `json:"allocated"`
	Reserved      int64   `json:"reserved"`
	HostFree      int64   `json:"host_free"`
	Dirty         int64   `json:"dirty"`
	Writeback     int64   `json:"writeback"`
	Cached        int64   `json:"cached"`
	CacheHits     uint64  `json:"cache_hits"`
	CacheMisses   uint64  `json:"cache_misses"`
	CacheHitRatio float64 `json:"cache_hit_ratio"` // hits/(hits+misses); 0 before any read
	OutOfSpace    bool    `json:"out_of_space"`
}

// adminServer is the HTTP endpoint for /metrics and infoPath.
type adminServer struct {
	addr string
	srv  *http.Server
	done chan struct{}
}

func startAdmin(addr string, m *metrics.Metrics, exports []*export, listeners []net.Listener, log *zap.Logger) (*adminServer, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, errors.Join(errors.New("--admin-address"), err)
	}
	start := time.Now()
	listen := uris(listeners, "")
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", m.Handler())
	// Profiling, for the same operators the metrics are for: the admin
	// address is loopback by default.
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	mux.HandleFunc("GET "+infoPath, func(w http.ResponseWriter, r *http.Request) {
		info := serverInfo{
			Version: version, Pid: pid(), StartTime: start.UTC(),
			Uptime: time.Since(start).Seconds(), Listen: listen,
			Exports: make([]exportInfo, 0, len(exports)),
		}
		for _, x := range exports {
			s := x.stats()
			ei := exportInfo{
				Name: x.cfg.Name, Description: x.cfg.Description, Image: x.cfg.Image,
				Cache: x.cfg.Cache, ReadOnly: x.cfg.readOnly, Size: s.Size,
				Allocated: s.Allocated, Reserved: s.Reserved, HostFree: s.HostFree,
				Dirty: s.Dirty, Writeback: s.Writeback, Cached: s.Cached,
				CacheHits: s.CacheHits, CacheMisses: s.CacheMisses, OutOfSpace: s.OutOfSpace,
			}
			if t := s.CacheHits + s.CacheMisses; t > 0 {
				ei.CacheHitRatio = float64(s.CacheHits) / float64(t)
			}
			info.Exports = append(info.Exports, ei)
		}
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(info)
	})
	a := &adminServer{
		addr: l.Addr().String(),
		srv:  &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second},
		done: make(chan struct{}),
	}
	go func() {
		defer close(a.done)
		if err := a.srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("admin endpoint failed", zap.Error(err))
		}
	}()
	log.Info("admin endpoint", zap.String("metrics", "http://"+a.addr+"/metrics"), zap.String("info", "http://"+a.addr+infoPath))
	return a, nil
}

func (a *adminServer) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = a.srv.Shutdown(ctx)
	<-a.done
}
