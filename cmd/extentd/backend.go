package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/extentd/extentd/alloc"
	"github.com/extentd/extentd/device"
	"github.com/extentd/extentd/internal/metrics"
	"github.com/extentd/extentd/nbdserver"
)

// createImage makes a new sparse image; an existing file is an error.
func createImage(path string, size int64) error {
	return alloc.Create(path, size)
}

// export is one opened export: the backing file, the cache over it (nil
// with --cache=none), and the device the server calls.
type export struct {
	cfg     resolved
	backing *alloc.File
	cache   cacheLayer
	dev     device.Device
	created bool // the image did not exist and was created
}

// openExport opens (creating if missing) the image and stacks the cache on
// it. m may be nil.
func openExport(r resolved, log *zap.Logger, m *metrics.Metrics) (*export, error) {
	x := &export{cfg: r}
	if _, err := os.Stat(r.Image); errors.Is(err, fs.ErrNotExist) {
		if r.readOnly {
			return nil, fmt.Errorf("export %q: image %s does not exist (a read-only export cannot create it)", r.Name, r.Image)
		}
		x.created = true
	}
	f, err := alloc.Open(r.Image, alloc.Options{
		Size:      int64(r.Size),
		Create:    !r.readOnly,
		ReadOnly:  r.readOnly,
		DirectIO:  r.directIO,
		ThinLimit: int64(r.ThinLimit),
		Logger:    log,
	})
	if err != nil {
		return nil, fmt.Errorf("export %q: %w", r.Name, err)
	}
	x.backing = f
	lower := device.Device(f)
	if m != nil {
		lower = m.Instrument(r.Name, f)
	}
	if r.Cache == cacheNone {
		x.dev = lower
		return x, nil
	}
	var space *alloc.Space
	if !r.readOnly {
		space = f.Space()
	}
	c, err := newCache(lower, r, space, log)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("export %q: %w", r.Name, errors.Join(err, errConfig))
	}
	x.cache, x.dev = c, c
	return x, nil
}

// nbdExport describes x to the server.
func (x *export) nbdExport() nbdserver.Export {
	e := nbdserver.Export{
		Name:        x.cfg.Name,
		Description: x.cfg.Description,
		Device:      x.dev,
		ReadOnly:    x.cfg.readOnly,
		MultiConn:   x.cfg.multiConn,
	}
	if x.cfg.BlockSize > 4096 && x.cfg.BlockSize <= 32<<20 {
		e.PrefBlock = uint32(x.cfg.BlockSize) // nbdkit raises preferred to its cache block
	}
	return e
}

// close writes back everything (cache.Close), then closes the image. It
// returns the first error; a cache error means data may be lost.
func (x *export) close() error {
	var errs []error
	if x.cache != nil {
		if err := x.cache.Close(); err != nil {
			errs = append(errs, fmt.Errorf("export %q: final writeback: %w", x.cfg.Name, err))
		}
	} else if !x.cfg.readOnly {
		if err := x.backing.Flush(); err != nil {
			errs = append(errs, fmt.Errorf("export %q: flush: %w", x.cfg.Name, err))
		}
	}
	if err := x.backing.Close(); err != nil {
		errs = append(errs, fmt.Errorf("export %q: close image: %w", x.cfg.Name, err))
	}
	return errors.Join(errs...)
}

// stats reads the export's state for /metrics and /debug/extentd/info.
func (x *export) stats() metrics.ExportStats {
	sp := x.backing.Space().Stats()
	s := metrics.ExportStats{
		Size:       x.dev.Size(),
		Allocated:  sp.Allocated,
		Reserved:   sp.Reserved,
		HostFree:   sp.HostFree,
		OutOfSpace: sp.OutOfSpace,
	}
	if x.cache != nil {
		fillCacheStats(&s, x.cache)
	}
	return s
}

// observer adapts metrics.Metrics to nbdserver.Observer.
type observer struct{ m *metrics.Metrics }

func (o observer) ConnOpened(export string) { o.m.ConnOpened(export) }
func (o observer) ConnClosed(export string) { o.m.ConnClosed(export) }
func (o observer) Request(cmd nbdserver.Command, n int64, d time.Duration, errno nbdserver.Errno) {
	o.m.Request(commandLabel(cmd), n, d, errnoLabel(errno))
}

// commandLabel names cmd for a metric label. Unknown command numbers (a
// hostile client can send 65536 of them) share one label, so they cannot
// blow up the number of series.
func commandLabel(cmd nbdserver.Command) string {
	s := cmd.String()
	if strings.ContainsAny(s, "()") {
		return "unknown"
	}
	return s
}

// errnoLabel names errno for a metric label: "" for success, "other" for
// values the server does not define.
func errnoLabel(e nbdserver.Errno) string {
	if e == 0 {
		return ""
	}
	s := e.String()
	if strings.ContainsAny(s, "()") {
		return "other"
	}
	return s
}

var _ nbdserver.Observer = observer{}
