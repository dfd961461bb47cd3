package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLoggerReopen(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "extentd.log")
	log, rf, err := newLogger(LogConfig{Format: "json", File: path})
	if err != nil {
		t.Fatal(err)
	}
	log.Info("first")
	if err := os.Rename(path, path+".1"); err != nil { // logrotate
		t.Fatal(err)
	}
	if err := rf.Reopen(); err != nil {
		t.Fatal(err)
	}
	log.Info("second")
	log.Debug("hidden at info level")
	_ = log.Sync()
	_ = rf.Close()

	old, _ := os.ReadFile(path + ".1")
	cur, _ := os.ReadFile(path)
	if !strings.Contains(string(old), `"msg":"first"`) || strings.Contains(string(old), "second") {
		t.Errorf("rotated file = %q, want only the first line", old)
	}
	if !strings.Contains(string(cur), `"msg":"second"`) || strings.Contains(string(cur), "hidden") {
		t.Errorf("new file = %q, want the second line only", cur)
	}
}

func TestLoggerBadValues(t *testing.T) {
	for _, cfg := range []LogConfig{{Level: "loud"}, {Format: "xml"}} {
		if _, _, err := newLogger(cfg); !errors.Is(err, errConfig) {
			t.Errorf("newLogger(%+v) error = %v, want errConfig", cfg, err)
		}
	}
}

func TestLoggerSamplesRepeats(t *testing.T) {
	path := filepath.Join(t.TempDir(), "extentd.log")
	log, rf, err := newLogger(LogConfig{Format: "json", File: path})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 1000; i++ {
		log.Warn("request failed")
	}
	log.Info("different message")
	_ = log.Sync()
	_ = rf.Close()
	b, _ := os.ReadFile(path)
	n := strings.Count(string(b), `"msg":"request failed"`)
	if n < 20 || n > 40 {
		t.Errorf("%d of 1000 identical lines logged, want about 20 + 1000/100", n)
	}
	if !strings.Contains(string(b), "different message") {
		t.Errorf("sampling dropped a different message")
	}
}
