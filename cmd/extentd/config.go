package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"gopkg.in/yaml.v3"
)

// Defaults of the serve command; docs/configuration.md lists them too.
const (
	defaultImage        = "extentd.img"
	defaultImageSize    = 1 << 30
	defaultAddress      = "127.0.0.1"
	defaultPort         = 10809
	defaultAdminAddress = "127.0.0.1:10810"
	defaultShutdown     = 60 * time.Second
)

// Cache modes.
const (
	cacheWriteback = "writeback" // extentcache over the backing file
	cacheNone      = "none"      // the backing file served directly
)

// Size is a byte count in the config file: an integer or a string such as
// "4k", "10G" or "1.5TiB" (see parseSize).
type Size int64

// UnmarshalYAML implements yaml.Unmarshaler.
func (s *Size) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: a size must be a number or a string like 10G", n.Line)
	}
	v, err := parseSize(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	*s = Size(v)
	return nil
}

// MarshalYAML implements yaml.Marshaler.
func (s Size) MarshalYAML() (any, error) { return formatSize(int64(s)), nil }

// Duration is a time.Duration written as "5s" or "250ms" in the config file.
type Duration time.Duration

// UnmarshalYAML implements yaml.Unmarshaler.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	if err != nil || v < 0 {
		return fmt.Errorf("line %d: invalid duration %q (want e.g. 5s or 250ms)", n.Line, n.Value)
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML implements yaml.Marshaler.
func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

// ExportConfig describes one export. Zero values take the value from
// Config.Defaults, then the built-in default.
type ExportConfig struct {
	Name        string `yaml:"name"`
	Description string `yaml:"description,omitempty"`
	// Image is the backing file; created sparse with Size if missing.
	Image string `yaml:"image"`
	// Size of a newly created image. An existing image keeps its size.
	Size     Size  `yaml:"size,omitempty"`
	ReadOnly *bool `yaml:"read-only,omitempty"`
	DirectIO *bool `yaml:"direct-io,omitempty"`
	// MultiConn advertises NBD_FLAG_CAN_MULTI_CONN (default true: one
	// flush covers every connection, see docs/architecture.md).
	MultiConn *bool `yaml:"multi-conn,omitempty"`
	// Cache is "writeback" (default) or "none".
	Cache             string   `yaml:"cache,omitempty"`
	CacheSize         Size     `yaml:"cache-size,omitempty"`
	BlockSize         Size     `yaml:"block-size,omitempty"`
	MaxDirty          Size     `yaml:"max-dirty,omitempty"`
	DirtyBackground   Size     `yaml:"dirty-background,omitempty"`
	MaxWritebackIO    Size     `yaml:"max-writeback-io,omitempty"`
	FillGap           *Size    `yaml:"fill-gap,omitempty"`
	WritebackAge      Duration `yaml:"writeback-age,omitempty"`
	WritebackInFlight int      `yaml:"writeback-inflight,omitempty"`
	ThinLimit         Size     `yaml:"thin-limit,omitempty"`
}

// TLSConfig names the certificate files.
type TLSConfig struct {
	Cert    string `yaml:"cert,omitempty"`
	Key     string `yaml:"key,omitempty"`
	CA      string `yaml:"ca,omitempty"` // client certificates are required and checked against it
	Require bool   `yaml:"require,omitempty"`
}

// LogConfig configures zap.
type LogConfig struct {
	Level  string `yaml:"level,omitempty"`  // debug, info, warn, error
	Format string `yaml:"format,omitempty"` // console or json
	File   string `yaml:"file,omitempty"`   // "" is stderr; reopened on SIGHUP
}

// Config is the serve command's whole configuration: the YAML file, then
// flags on top.
type Config struct {
	Address          string    `yaml:"address,omitempty"`
	Port             *int      `yaml:"port,omitempty"`
	Unix             string    `yaml:"unix,omitempty"`
	AdminAddress     *string   `yaml:"admin-address,omitempty"`
	PidFile          string    `yaml:"pid-file,omitempty"`
	HandshakeTimeout Duration  `yaml:"handshake-timeout,omitempty"`
	ShutdownTimeout  Duration  `yaml:"shutdown-timeout,omitempty"`
	Workers          int       `yaml:"workers,omitempty"`
	MaxInFlight      int       `yaml:"max-in-flight,omitempty"`
	TLS              TLSConfig `yaml:"tls,omitempty"`
	Log              LogConfig `yaml:"log,omitempty"`
	// Defaults apply to every export that leaves a field unset.
	Defaults ExportConfig   `yaml:"defaults,omitempty"`
	Exports  []ExportConfig `yaml:"exports,omitempty"`

	// tcpExplicit: an address or port was given (by flag or file), so a
	// Unix socket does not replace the TCP listener.
	tcpExplicit bool
	// adminExplicit: the admin address was given; if not, failing to bind
	// the default address is a warning, so a second server still starts.
	adminExplicit bool
}

// errConfig is wrapped by configuration errors; they exit with code 2.
var errConfig = errors.New("invalid configuration")

// loadConfig reads a YAML config file. Unknown keys are errors.
func loadConfig(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return parseConfig(path, data)
}

func parseConfig(name string, data []byte) (*Config, error) {
	var c Config
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	// An empty file is an empty config (io.EOF from the decoder).
	if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("config %s: %v: %w", name, err, errConfig)
	}
	if c.Defaults.Name != "" || c.Defaults.Image != "" {
		return nil, fmt.Errorf("config %s: defaults may not set name or image: %w", name, errConfig)
	}
	return &c, nil
}

func pick[T comparable](vals ...T) T {
	var zero T
	for _, v := range vals {
		if v != zero {
			return v
		}
	}
	return zero
}

func pickBool(def bool, vals ...*bool) bool {
	for _, v := range vals {
		if v != nil {
			return *v
		}
	}
	return def
}

// resolved is an ExportConfig with every default applied.
type resolved struct {
	ExportConfig
	readOnly, directIO, multiConn bool
}

// resolveExports applies Defaults and built-in defaults to every export and
// checks them. An empty list means the one default export.
func (c *Config) resolveExports() ([]resolved, error) {
	exports := c.Exports
	if len(exports) == 0 {
		exports = []ExportConfig{{Name: "", Image: defaultImage}}
	}
	d := c.Defaults
	out := make([]resolved, 0, len(exports))
	seen := map[string]bool{}
	images := map[string]string{}
	for i, e := range exports {
		r := resolved{ExportConfig: e}
		r.Description = pick(e.Description, d.Description)
		r.Size = pick(e.Size, d.Size, defaultImageSize)
		r.Cache = pick(e.Cache, d.Cache, cacheWriteback)
		r.CacheSize = pick(e.CacheSize, d.CacheSize)
		r.BlockSize = pick(e.BlockSize, d.BlockSize)
		r.MaxDirty = pick(e.MaxDirty, d.MaxDirty)
		r.DirtyBackground = pick(e.DirtyBackground, d.DirtyBackground)
		r.MaxWritebackIO = pick(e.MaxWritebackIO, d.MaxWritebackIO)
		if r.FillGap == nil {
			r.FillGap = d.FillGap
		}
		r.WritebackAge = pick(e.WritebackAge, d.WritebackAge)
		r.WritebackInFlight = pick(e.WritebackInFlight, d.WritebackInFlight)
		r.ThinLimit = pick(e.ThinLimit, d.ThinLimit)
		r.readOnly = pickBool(false, e.ReadOnly, d.ReadOnly)
		r.directIO = pickBool(false, e.DirectIO, d.DirectIO)
		r.multiConn = pickBool(true, e.MultiConn, d.MultiConn)
		where := fmt.Sprintf("exports[%d] (%q)", i, e.Name)
		switch {
		case r.Image == "":
			return nil, fmt.Errorf("%s: image is not set: %w", where, errConfig)
		case seen[r.Name]:
			return nil, fmt.Errorf("%s: duplicate export name: %w", where, errConfig)
		case images[r.Image] != "":
			return nil, fmt.Errorf("%s: image %s is already used by export %q: %w", where, r.Image, images[r.Image], errConfig)
		case r.Cache != cacheWriteback && r.Cache != cacheNone:
			return nil, fmt.Errorf("%s: cache %q: want writeback or none: %w", where, r.Cache, errConfig)
		case r.Size <= 0:
			return nil, fmt.Errorf("%s: size must be positive: %w", where, errConfig)
		case r.BlockSize != 0 && r.BlockSize&(r.BlockSize-1) != 0:
			return nil, fmt.Errorf("%s: block-size %d is not a power of two: %w", where, r.BlockSize, errConfig)
		case r.WritebackInFlight < 0:
			return nil, fmt.Errorf("%s: writeback-inflight is negative: %w", where, errConfig)
		}
		seen[r.Name] = true
		images[r.Image] = pick(r.Name, `""`)
		out = append(out, r)
	}
	// Default dirty budgets: a share of memory for each caching export.
	caching := 0
	for _, r := range out {
		if r.Cache == cacheWriteback && !r.readOnly {
			caching++
		}
	}
	for i := range out {
		r := &out[i]
		if r.Cache != cacheWriteback || r.readOnly || r.MaxDirty != 0 {
			continue
		}
		r.MaxDirty = Size(autoMaxDirty(caching))
	}
	return out, nil
}
