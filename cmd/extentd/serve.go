package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/extentd/extentd/internal/metrics"
	"github.com/extentd/extentd/internal/sdactivation"
	"github.com/extentd/extentd/nbdserver"
)

func newServeCmd() *cobra.Command {
	var f serveFlags
	c := &cobra.Command{
		Use:   "serve [flags] [IMAGE]",
		Short: "Serve an image file (or the exports of a config file) over NBD",
		Long: `serve exports IMAGE (default ./extentd.img, created as a 1 GiB sparse file if
missing; an existing image keeps its size) over NBD on 127.0.0.1:10809, through
an in-memory write-back cache. With --config, every export in the YAML file is
served; flags override the file.

Started by systemd with socket activation (LISTEN_FDS), it serves the passed
sockets and ignores -i/-p/-U.

SIGTERM or SIGINT: stop accepting, finish requests in flight, write back every
dirty byte and fsync the images, then exit 0. SIGHUP reopens --log-file.`,
		Example: `  extentd serve                                  # ./extentd.img on 127.0.0.1:10809
  extentd serve -p 10900 -e disk --size 20G disk.img
  extentd serve -U /run/extentd.sock -r golden.img # read-only, Unix socket
  extentd serve --cache=none disk.img              # no cache: serve the file directly
  extentd serve --cache-size 1G --max-dirty 512M disk.img
  extentd serve --config /etc/extentd/extentd.yaml
  extentd serve --tls-certificate srv.pem --tls-key srv.key --require-tls disk.img
  extentd serve -p 0 --addr-file /tmp/addr disk.img  # free port, written to /tmp/addr`,
		Args: wrapArgs(cobra.MaximumNArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := f.buildConfig(cmd, args)
			if err != nil {
				return err
			}
			return serve(cmd.Context(), cfg, f.addrFile)
		},
	}
	f.register(c.Flags())
	c.Flags().SortFlags = false
	return c
}

// serve runs the server until SIGTERM/SIGINT, then shuts down in order:
// server (finish in-flight requests) → caches (write back, sync) → images.
func serve(ctx context.Context, cfg *Config, addrFile string) error {
	exportCfgs, err := cfg.resolveExports()
	if err != nil {
		return err
	}
	log, logFile, err := newLogger(cfg.Log)
	if err != nil {
		return err
	}
	defer func() {
		_ = log.Sync()
		if logFile != nil {
			logFile.Close()
		}
	}()
	tlsConf, err := loadTLS(cfg.TLS)
	if err != nil {
		return err
	}
	if ctx == nil {
		ctx = context.Background()
	}

	// Signals first, so a SIGTERM during start-up is not lost.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer signal.Stop(sigs)

	m := metrics.New(metrics.Options{Version: version})
	var exports []*export
	closeAll := func() error {
		var errs []error
		for _, x := range exports {
			if err := x.close(); err != nil {
				log.Error("closing export failed; data written since the last flush may be lost", zap.String("export", x.cfg.Name), zap.Error(err))
				errs = append(errs, err)
			}
		}
		exports = nil
		return errors.Join(errs...)
	}
	defer closeAll()
	var nbdExports []nbdserver.Export
	for _, r := range exportCfgs {
		x, err := openExport(r, log, m)
		if err != nil {
			return err
		}
		exports = append(exports, x)
		nbdExports = append(nbdExports, x.nbdExport())
		if err := m.AddExport(r.Name, x.stats); err != nil {
			return err
		}
		log.Info("export ready",
			zap.String("export", r.Name), zap.String("image", r.Image), zap.Bool("created", x.created),
			zap.Int64("size", x.dev.Size()), zap.String("cache", r.Cache), zap.Bool("read_only", r.readOnly))
	}

	srv, err := nbdserver.New(nbdserver.Options{
		Exports:          nbdExports,
		TLSConfig:        tlsConf,
		RequireTLS:       cfg.TLS.Require,
		Logger:           log,
		HandshakeTimeout: time.Duration(cfg.HandshakeTimeout),
		MaxInFlight:      cfg.MaxInFlight,
		Workers:          cfg.Workers,
		Observer:         observer{m},
	})
	if err != nil {
		return errors.Join(err, errConfig)
	}

	listeners, err := listen(cfg, log)
	if err != nil {
		return err
	}
	var admin *adminServer
	if *cfg.AdminAddress != "" {
		admin, err = startAdmin(*cfg.AdminAddress, m, exports, listeners, log)
		if err != nil && !cfg.adminExplicit {
			log.Warn("admin endpoint not started (default address busy); pass --admin-address to choose another",
				zap.String("addr", *cfg.AdminAddress), zap.Error(err))
			admin, err = nil, nil
		}
		if err != nil {
			for _, l := range listeners {
				l.Close()
			}
			return err
		}
	}

	serveErr := make(chan error, len(listeners))
	for _, l := range listeners {
		go func() { serveErr <- srv.Serve(l) }()
	}
	if err := writeStartupFiles(cfg.PidFile, addrFile, listeners, admin, exportCfgs); err != nil {
		log.Error("writing pid/address file failed", zap.Error(err))
	}
	log.Info("extentd started", zap.String("version", version), zap.Strings("listen", uris(listeners, "")))

	var runErr error
wait:
	for {
		select {
		case sig := <-sigs:
			if sig == syscall.SIGHUP {
				if logFile != nil {
					if err := logFile.Reopen(); err != nil {
						log.Error("reopening log file failed", zap.Error(err))
					} else {
						log.Info("log file reopened")
					}
				}
				continue
			}
			log.Info("shutting down", zap.String("signal", sig.String()))
			break wait
		case err := <-serveErr:
			if !errors.Is(err, nbdserver.ErrServerClosed) {
				log.Error("listener failed", zap.Error(err))
				runErr = err
				break wait
			}
		case <-ctx.Done():
			break wait
		}
	}

	// Ordered shutdown. A second SIGTERM/SIGINT abandons it: whatever is
	// still dirty is lost, as with kill -9.
	go func() {
		for sig := range sigs {
			if sig != syscall.SIGHUP {
				log.Error("second signal during shutdown: exiting without finishing writeback; unflushed data is lost", zap.String("signal", sig.String()))
				_ = log.Sync()
				os.Exit(exitError)
			}
		}
	}()
	sctx, cancel := context.WithTimeout(context.Background(), time.Duration(cfg.ShutdownTimeout))
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		log.Warn("requests still in flight at the shutdown timeout were dropped", zap.Error(err))
	}
	if admin != nil {
		admin.close()
	}
	start := time.Now()
	if err := closeAll(); err != nil {
		return err
	}
	log.Info("stopped cleanly", zap.Duration("final_writeback", time.Since(start)))
	if cfg.PidFile != "" {
		os.Remove(cfg.PidFile)
	}
	return runErr
}

// listen returns the socket-activated listeners, or opens the configured
// Unix socket and/or TCP address.
func listen(cfg *Config, log *zap.Logger) ([]net.Listener, error) {
	activated, err := sdactivation.Listeners()
	if err != nil {
		return nil, err
	}
	if len(activated) > 0 {
		out := make([]net.Listener, len(activated))
		for i, l := range activated {
			out[i] = l.Listener
			log.Info("socket activation", zap.String("name", l.Name), zap.String("addr", l.Addr().String()))
		}
		return out, nil
	}
	var out []net.Listener
	if cfg.Unix != "" {
		if fi, err := os.Lstat(cfg.Unix); err == nil && fi.Mode()&fs.ModeSocket != 0 {
			if c, err := net.Dial("unix", cfg.Unix); err == nil {
				c.Close()
				return nil, fmt.Errorf("unix socket %s: another server is listening on it", cfg.Unix)
			}
			os.Remove(cfg.Unix) // stale socket of a dead server
		}
		l, err := net.Listen("unix", cfg.Unix)
		if err != nil {
			return nil, err
		}
		out = append(out, l)
	}
	if cfg.Unix == "" || cfg.tcpExplicit {
		l, err := net.Listen("tcp", net.JoinHostPort(cfg.Address, strconv.Itoa(*cfg.Port)))
		if err != nil {
			for _, o := range out {
				o.Close()
			}
			return nil, err
		}
		out = append(out, l)
	}
	return out, nil
}

// uris renders NBD URIs (RFC: nbd://host:port/name, nbd+unix:///name?socket=)
// for the listeners, usable by nbdinfo and qemu-img.
func uris(ls []net.Listener, exportName string) []string {
	out := make([]string, 0, len(ls))
	for _, l := range ls {
		switch a := l.Addr().(type) {
		case *net.UnixAddr:
			out = append(out, "nbd+unix:///"+url.PathEscape(exportName)+"?socket="+a.Name)
		default:
			out = append(out, "nbd://"+a.String()+"/"+url.PathEscape(exportName))
		}
	}
	return out
}

// writeStartupFiles writes the pid file and the address file, each
// atomically (temporary file, then rename), so a reader never sees half.
// The address file has one "nbd URI" line per listener and export and an
// "admin URL" line.
func writeStartupFiles(pidFile, addrFile string, ls []net.Listener, admin *adminServer, exports []resolved) error {
	var errs []error
	if pidFile != "" {
		errs = append(errs, writeAtomic(pidFile, strconv.Itoa(os.Getpid())+"\n"))
	}
	if addrFile != "" {
		var b strings.Builder
		for _, e := range exports {
			for _, u := range uris(ls, e.Name) {
				fmt.Fprintf(&b, "nbd %s\n", u)
			}
		}
		if admin != nil {
			fmt.Fprintf(&b, "admin http://%s\n", admin.addr)
		}
		errs = append(errs, writeAtomic(addrFile, b.String()))
	}
	return errors.Join(errs...)
}

func writeAtomic(path, content string) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".extentd-*")
	if err != nil {
		return err
	}
	if _, err := tmp.WriteString(content); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// loadTLS builds the server TLS config, or nil without a certificate.
func loadTLS(c TLSConfig) (*tls.Config, error) {
	if c.Cert == "" {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(c.Cert, c.Key)
	if err != nil {
		return nil, fmt.Errorf("--tls-certificate/--tls-key: %w", err)
	}
	conf := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if c.CA != "" {
		pem, err := os.ReadFile(c.CA)
		if err != nil {
			return nil, fmt.Errorf("--tls-ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--tls-ca %s: no PEM certificates: %w", c.CA, errConfig)
		}
		conf.ClientCAs = pool
		conf.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return conf, nil
}
