package main

import (
	"path/filepath"
	"reflect"
	"testing"

	"github.com/extentd/extentd/alloc"
	"github.com/extentd/extentd/internal/metrics"
)

// TestInstrumentedImageKeepsMethods: the layers above find the image's
// capabilities by type assertion, so the metrics wrapper around alloc.File
// must offer every one of its I/O methods. A method added to alloc.File that
// the wrapper lacks fails here instead of silently costing a capability.
func TestInstrumentedImageKeepsMethods(t *testing.T) {
	path := filepath.Join(t.TempDir(), "i.img")
	f, err := alloc.Open(path, alloc.Options{Size: 1 << 20, Create: true})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m := metrics.New(metrics.Options{NoRuntimeCollectors: true})
	wrapped := reflect.TypeOf(m.Instrument("x", f))
	// Accessors of the file itself, not device capabilities; cmd calls
	// them on the *alloc.File directly.
	notForwarded := map[string]bool{"Close": true, "Space": true, "Path": true, "DirectIO": true}
	ft := reflect.TypeOf(f)
	for i := 0; i < ft.NumMethod(); i++ {
		meth := ft.Method(i)
		if notForwarded[meth.Name] {
			continue
		}
		wm, ok := wrapped.MethodByName(meth.Name)
		if !ok {
			t.Errorf("the instrumented image lacks %s", meth.Name)
			continue
		}
		// Compare signatures without the receiver.
		if got, want := wm.Type.NumIn(), meth.Type.NumIn(); got != want {
			t.Errorf("%s: %d parameters, alloc.File has %d", meth.Name, got-1, want-1)
		}
	}
}
