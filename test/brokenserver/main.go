// Command brokenserver is a deliberately broken NBD server for the
// integration tests: the same stack as `extentd serve` (alloc backing file,
// extentcache, nbdserver) with one durability bug injected, so that the
// tests in test/integration can show they detect lost data. It is test
// tooling only and is never built into extentd.
//
// Modes (-mode):
//
//	noflush    FLUSH and FUA return success without writing anything back
//	           (the device's Flush is a no-op and it hides RangeSyncer).
//	dropdirty  on SIGTERM the process exits 0 without the final writeback,
//	           discarding unflushed data that a clean stop must keep.
//	ok         no bug (a control: must pass the same tests as extentd).
//
// The cache is tuned so that nothing is written back by age or watermark
// during a test (WritebackAge 1h, large dirty limits): what reaches the
// image is exactly what FLUSH/FUA and a clean stop write back.
//
// Usage: brokenserver -mode MODE -addr-file FILE [-size N] [-listen ADDR] IMAGE
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/extentd/extentd/alloc"
	"github.com/extentd/extentd/device"
	"github.com/extentd/extentd/extentcache"
	"github.com/extentd/extentd/nbdserver"
)

// noFlush hides every capability of the device it wraps except Trim and
// turns Flush into a no-op.
type noFlush struct {
	device.Device
	trim device.Trimmer
}

func (d noFlush) Flush() error            { return nil }
func (d noFlush) Trim(off, n int64) error { return d.trim.Trim(off, n) }

func main() {
	mode := flag.String("mode", "noflush", "noflush, dropdirty or ok")
	addrFile := flag.String("addr-file", "", "write \"nbd nbd://ADDR/\" here once listening")
	size := flag.Int64("size", 1<<30, "size of a new image in bytes")
	listen := flag.String("listen", "127.0.0.1:0", "TCP address to listen on")
	flag.Parse()
	if flag.NArg() != 1 || *addrFile == "" {
		fmt.Fprintln(os.Stderr, "usage: brokenserver -mode MODE -addr-file FILE [-size N] IMAGE")
		os.Exit(2)
	}
	if err := run(*mode, *listen, *addrFile, *size, flag.Arg(0)); err != nil {
		fmt.Fprintln(os.Stderr, "brokenserver:", err)
		os.Exit(1)
	}
}

func run(mode, listen, addrFile string, size int64, image string) error {
	f, err := alloc.Open(image, alloc.Options{Size: size, Create: true})
	if err != nil {
		return err
	}
	cache, err := extentcache.New(f, extentcache.Options{
		Space:           f.Space(),
		MaxDirty:        1 << 30,
		DirtyBackground: 1 << 30,
		WritebackAge:    time.Hour,
	})
	if err != nil {
		return err
	}
	var dev device.Device = cache
	switch mode {
	case "noflush":
		dev = noFlush{Device: cache, trim: cache}
	case "dropdirty", "ok":
	default:
		return fmt.Errorf("unknown mode %q", mode)
	}
	srv, err := nbdserver.New(nbdserver.Options{
		Exports: []nbdserver.Export{{Name: "", Device: dev, MultiConn: true}},
	})
	if err != nil {
		return err
	}
	l, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	if err := os.WriteFile(addrFile+".tmp", fmt.Appendf(nil, "nbd nbd://%s/\n", l.Addr()), 0o644); err != nil {
		return err
	}
	if err := os.Rename(addrFile+".tmp", addrFile); err != nil {
		return err
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	select {
	case <-sig:
	case err := <-served:
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil && !errors.Is(err, nbdserver.ErrServerClosed) {
		return err
	}
	if mode == "dropdirty" {
		// The bug: skip cache.Close (the final writeback).
		return f.Close()
	}
	return errors.Join(cache.Close(), f.Close())
}
