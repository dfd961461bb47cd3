package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// enumValue is a pflag.Value accepting one of a fixed set of words, so a
// bad value is a flag error naming the flag.
type enumValue struct {
	val     string
	allowed []string
}

func newEnum(def string, allowed ...string) *enumValue {
	return &enumValue{val: def, allowed: allowed}
}

func (e *enumValue) String() string { return e.val }
func (e *enumValue) Type() string   { return "string" }
func (e *enumValue) Set(s string) error {
	for _, a := range e.allowed {
		if s == a {
			e.val = s
			return nil
		}
	}
	return fmt.Errorf("want one of %v", e.allowed)
}

// serveFlags holds the serve command's flags until they are laid over the
// config file.
type serveFlags struct {
	config       string
	address      string
	port         int
	unix         string
	readOnly     bool
	exportName   string
	description  string
	size         sizeValue
	cache        *enumValue
	cacheSize    sizeValue
	blockSize    sizeValue
	maxDirty     sizeValue
	dirtyBg      sizeValue
	maxWbIO      sizeValue
	fillGap      sizeValue
	wbAge        time.Duration
	wbInFlight   int
	thinLimit    sizeValue
	directIO     bool
	multiConn    bool
	tlsCert      string
	tlsKey       string
	tlsCA        string
	requireTLS   bool
	adminAddress string
	logLevel     *enumValue
	logFormat    *enumValue
	logFile      string
	pidFile      string
	addrFile     string
	workers      int
	maxInFlight  int
	handshake    time.Duration
	shutdown     time.Duration
}

func (f *serveFlags) register(fs *pflag.FlagSet) {
	f.cache = newEnum(cacheWriteback, cacheWriteback, cacheNone)
	f.logLevel = newEnum("info", "debug", "info", "warn", "error")
	f.logFormat = newEnum("console", "console", "json")
	f.size = sizeValue(defaultImageSize)

	fs.StringVarP(&f.config, "config", "c", "", "YAML config file (see docs/configuration.md); flags override it")
	fs.StringVarP(&f.address, "ipaddr", "i", defaultAddress, "TCP address to listen on")
	fs.IntVarP(&f.port, "port", "p", defaultPort, "TCP port to listen on (0 picks a free port; see --addr-file)")
	fs.StringVarP(&f.unix, "unix", "U", "", "listen on this Unix socket instead of TCP (add -p/-i to listen on both)")
	fs.BoolVarP(&f.readOnly, "read-only", "r", false, "export read-only")
	fs.StringVarP(&f.exportName, "export-name", "e", "", `name of the export served from IMAGE ("" is the default export)`)
	fs.StringVar(&f.description, "description", "", "export description shown to clients (nbdinfo --list)")
	fs.Var(&f.size, "size", "size of IMAGE when it is created; an existing image keeps its size")
	fs.Var(f.cache, "cache", "writeback (in-memory write-back cache) or none (serve the image file directly)")
	fs.Var(&f.cacheSize, "cache-size", "memory for clean cached blocks (default 64M; 0 keeps the default)")
	fs.Var(&f.blockSize, "block-size", "cache block size, a power of two (default 4k)")
	fs.Var(&f.maxDirty, "max-dirty", "hard limit on dirty memory; writers wait above it (default: 20% of memory, split between caching exports; at least 256M)")
	fs.Var(&f.dirtyBg, "dirty-background", "dirty bytes that start background writeback (default max-dirty/2)")
	fs.Var(&f.maxWbIO, "max-writeback-io", "largest single write to the image file (default 8M)")
	fs.Var(&f.fillGap, "fill-gap", "holes up to this size between dirty blocks are written as zeros to join them into one write and extent; 0 disables (default 64K)")
	fs.DurationVar(&f.wbAge, "writeback-age", 0, "dirty data older than this is written back (default 30s)")
	fs.IntVar(&f.wbInFlight, "writeback-inflight", 0, "writes to the image file kept in flight by writeback (default 4)")
	fs.Var(&f.thinLimit, "thin-limit", "most bytes the image may allocate (default: its size)")
	fs.BoolVar(&f.directIO, "direct-io", false, "open the image with O_DIRECT (bypass the host page cache)")
	fs.BoolVar(&f.multiConn, "multi-conn", true, "advertise NBD_FLAG_CAN_MULTI_CONN (a flush covers every connection)")
	fs.StringVar(&f.tlsCert, "tls-certificate", "", "TLS server certificate (PEM); enables STARTTLS")
	fs.StringVar(&f.tlsKey, "tls-key", "", "TLS private key (PEM)")
	fs.StringVar(&f.tlsCA, "tls-ca", "", "CA bundle (PEM) that client certificates must chain to; enables client verification")
	fs.BoolVar(&f.requireTLS, "require-tls", false, "refuse clients that do not start TLS")
	fs.StringVar(&f.adminAddress, "admin-address", defaultAdminAddress, `HTTP address for /metrics and /debug/extentd/info ("" disables)`)
	fs.Var(f.logLevel, "log-level", "debug, info, warn or error")
	fs.Var(f.logFormat, "log-format", "console (readable lines) or json")
	fs.StringVar(&f.logFile, "log-file", "", "log to this file instead of stderr; SIGHUP reopens it")
	fs.StringVarP(&f.pidFile, "pid-file", "P", "", "write the process id to this file once listening")
	fs.StringVar(&f.addrFile, "addr-file", "", "write the bound NBD URIs and admin URL to this file once listening")
	fs.IntVar(&f.workers, "workers", 0, "device I/O goroutines per connection (default 8)")
	fs.IntVar(&f.maxInFlight, "max-in-flight", 0, "requests in flight per connection (default 64)")
	fs.DurationVar(&f.handshake, "handshake-timeout", 0, "time a client has to finish the handshake (default 30s)")
	fs.DurationVar(&f.shutdown, "shutdown-timeout", defaultShutdown, "on SIGTERM, how long to wait for requests in flight")
}

// buildConfig loads the config file (if any) and lays the flags that were
// given on the command line over it.
func (f *serveFlags) buildConfig(cmd *cobra.Command, args []string) (*Config, error) {
	cfg := &Config{}
	if f.config != "" {
		var err error
		if cfg, err = loadConfig(f.config); err != nil {
			return nil, err
		}
	}
	set := cmd.Flags().Changed
	// Server-level settings. With a Unix socket, TCP is used too only when
	// an address or port was asked for explicitly.
	cfg.tcpExplicit = set("ipaddr") || set("port") || cfg.Address != "" || cfg.Port != nil
	if set("ipaddr") || cfg.Address == "" {
		cfg.Address = f.address
	}
	if set("port") || cfg.Port == nil {
		cfg.Port = &f.port
	}
	if set("unix") {
		cfg.Unix = f.unix
	}
	cfg.adminExplicit = set("admin-address") || cfg.AdminAddress != nil
	if set("admin-address") || cfg.AdminAddress == nil {
		cfg.AdminAddress = &f.adminAddress
	}
	if set("pid-file") {
		cfg.PidFile = f.pidFile
	}
	if set("tls-certificate") {
		cfg.TLS.Cert = f.tlsCert
	}
	if set("tls-key") {
		cfg.TLS.Key = f.tlsKey
	}
	if set("tls-ca") {
		cfg.TLS.CA = f.tlsCA
	}
	if set("require-tls") {
		cfg.TLS.Require = f.requireTLS
	}
	if set("log-level") || cfg.Log.Level == "" {
		cfg.Log.Level = f.logLevel.val
	}
	if set("log-format") || cfg.Log.Format == "" {
		cfg.Log.Format = f.logFormat.val
	}
	if set("log-file") {
		cfg.Log.File = f.logFile
	}
	if set("workers") {
		cfg.Workers = f.workers
	}
	if set("max-in-flight") {
		cfg.MaxInFlight = f.maxInFlight
	}
	if set("handshake-timeout") {
		cfg.HandshakeTimeout = Duration(f.handshake)
	}
	if set("shutdown-timeout") || cfg.ShutdownTimeout == 0 {
		cfg.ShutdownTimeout = Duration(f.shutdown)
	}
	switch {
	case cfg.Workers < 0:
		return nil, usageErrorf("--workers must not be negative")
	case cfg.MaxInFlight < 0:
		return nil, usageErrorf("--max-in-flight must not be negative")
	case *cfg.Port < 0 || *cfg.Port > 65535:
		return nil, usageErrorf("--port %d is not in [0, 65535]", *cfg.Port)
	case cfg.TLS.Require && cfg.TLS.Cert == "":
		return nil, usageErrorf("--require-tls needs --tls-certificate and --tls-key")
	case (cfg.TLS.Cert == "") != (cfg.TLS.Key == ""):
		return nil, usageErrorf("--tls-certificate and --tls-key go together")
	case cfg.TLS.CA != "" && cfg.TLS.Cert == "":
		return nil, usageErrorf("--tls-ca needs --tls-certificate and --tls-key")
	}

	// The export served from the positional IMAGE (or the default one).
	switch {
	case len(args) == 1:
		found := false
		for i := range cfg.Exports {
			if cfg.Exports[i].Name == f.exportName {
				cfg.Exports[i].Image, found = args[0], true
			}
		}
		if !found {
			cfg.Exports = append(cfg.Exports, ExportConfig{Name: f.exportName, Image: args[0]})
		}
	case len(cfg.Exports) == 0:
		cfg.Exports = []ExportConfig{{Name: f.exportName, Image: defaultImage}}
	case set("export-name"):
		return nil, usageErrorf("--export-name needs IMAGE when the config file lists exports")
	}
	if set("description") {
		for i := range cfg.Exports {
			if cfg.Exports[i].Name == f.exportName {
				cfg.Exports[i].Description = f.description
			}
		}
	}

	// Export-level flags override the config file for every export.
	ptr := func(b bool) *bool { return &b }
	for i := range cfg.Exports {
		e := &cfg.Exports[i]
		if set("read-only") {
			e.ReadOnly = ptr(f.readOnly)
		}
		if set("direct-io") {
			e.DirectIO = ptr(f.directIO)
		}
		if set("multi-conn") {
			e.MultiConn = ptr(f.multiConn)
		}
		if set("size") {
			e.Size = Size(f.size)
		}
		if set("cache") {
			e.Cache = f.cache.val
		}
		if set("cache-size") {
			e.CacheSize = Size(f.cacheSize)
		}
		if set("block-size") {
			e.BlockSize = Size(f.blockSize)
		}
		if set("max-dirty") {
			e.MaxDirty = Size(f.maxDirty)
		}
		if set("dirty-background") {
			e.DirtyBackground = Size(f.dirtyBg)
		}
		if set("max-writeback-io") {
			e.MaxWritebackIO = Size(f.maxWbIO)
		}
		if set("fill-gap") {
			v := Size(f.fillGap)
			e.FillGap = &v
		}
		if set("writeback-age") {
			e.WritebackAge = Duration(f.wbAge)
		}
		if set("writeback-inflight") {
			e.WritebackInFlight = f.wbInFlight
		}
		if set("thin-limit") {
			e.ThinLimit = Size(f.thinLimit)
		}
	}
	return cfg, nil
}
