package main

import (
	"fmt"
	"os"
	"sync"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// reopenFile is a zapcore.WriteSyncer over a log file that Reopen replaces
// with a freshly opened file of the same name (after logrotate moved it).
type reopenFile struct {
	path string

	mu sync.Mutex // guards the following
	f  *os.File
}

func openLogFile(path string) (*reopenFile, error) {
	r := &reopenFile{path: path}
	if err := r.Reopen(); err != nil {
		return nil, err
	}
	return r, nil
}

// Reopen opens the path again and closes the previous file.
func (r *reopenFile) Reopen() error {
	f, err := os.OpenFile(r.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return fmt.Errorf("log file: %w", err)
	}
	r.mu.Lock()
	old := r.f
	r.f = f
	r.mu.Unlock()
	if old != nil {
		return old.Close()
	}
	return nil
}

func (r *reopenFile) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.f.Write(p)
}

func (r *reopenFile) Sync() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.f.Sync()
}

func (r *reopenFile) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.f.Close()
}

// newLogger builds the process logger: readable console lines by default,
// JSON with format "json". The returned reopenFile is nil when logging to
// stderr.
func newLogger(cfg LogConfig) (*zap.Logger, *reopenFile, error) {
	level, err := zapcore.ParseLevel(pick(cfg.Level, "info"))
	if err != nil {
		return nil, nil, fmt.Errorf("--log-level %q: want debug, info, warn or error: %w", cfg.Level, errConfig)
	}
	var enc zapcore.Encoder
	switch pick(cfg.Format, "console") {
	case "console":
		ec := zap.NewDevelopmentEncoderConfig()
		ec.EncodeTime = zapcore.ISO8601TimeEncoder
		enc = zapcore.NewConsoleEncoder(ec)
	case "json":
		ec := zap.NewProductionEncoderConfig()
		ec.EncodeTime = zapcore.ISO8601TimeEncoder
		enc = zapcore.NewJSONEncoder(ec)
	default:
		return nil, nil, fmt.Errorf("--log-format %q: want console or json: %w", cfg.Format, errConfig)
	}
	var out zapcore.WriteSyncer = zapcore.Lock(os.Stderr)
	var rf *reopenFile
	if cfg.File != "" {
		rf, err = openLogFile(cfg.File)
		if err != nil {
			return nil, nil, err
		}
		out = rf
	}
	// Sampling bounds repeated messages (per message text, per second: the
	// first 20, then every 100th), so a client provoking one error per
	// request cannot flood the log; control-path lines never repeat that
	// fast.
	core := zapcore.NewSamplerWithOptions(zapcore.NewCore(enc, out, level), time.Second, 20, 100)
	return zap.New(core, zap.ErrorOutput(zapcore.Lock(os.Stderr))), rf, nil
}
