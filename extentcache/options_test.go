package extentcache

import (
	"errors"
	"testing"
)

func TestOptionsValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		mod  func(*Options)
		ok   bool
	}{
		{"defaults", func(*Options) {}, true},
		{"block not power of two", func(o *Options) { o.BlockSize = 3000 }, false},
		{"block too small", func(o *Options) { o.BlockSize = 256 }, false},
		{"block too large", func(o *Options) { o.BlockSize = 1 << 20 }, false},
		{"writeback io not multiple", func(o *Options) { o.MaxWritebackIO = 4097 }, false},
		{"max dirty below two clusters", func(o *Options) { o.MaxWritebackIO = 8 << 20; o.MaxDirty = 8 << 20 }, false},
		{"background over max", func(o *Options) { o.MaxDirty = 32 << 20; o.DirtyBackground = 64 << 20 }, false},
		{"in flight too many", func(o *Options) { o.WritebackInFlight = 5000 }, false},
		{"negative age", func(o *Options) { o.WritebackAge = -1 }, false},
		{"small but valid", func(o *Options) { o.MaxWritebackIO = 64 << 10; o.MaxDirty = 128 << 10 }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var o Options
			tc.mod(&o)
			o.EnsureDefaults()
			err := o.Validate()
			if (err == nil) != tc.ok || (err != nil && !errors.Is(err, ErrInvalidOptions)) {
				t.Fatalf("Validate: %v, want ok=%v", err, tc.ok)
			}
		})
	}
}
