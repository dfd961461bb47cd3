package devicetest_test

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/extentd/extentd/device"
	"github.com/extentd/extentd/device/devicetest"
	"github.com/extentd/extentd/device/memdev"
)

func TestMemdev(t *testing.T) {
	devicetest.Run(t, func(t *testing.T, size int64) device.Device {
		return memdev.New(size, memdev.Options{})
	})
}

func TestMemdevCrashable(t *testing.T) {
	devicetest.Run(t, func(t *testing.T, size int64) device.Device {
		return memdev.New(size, memdev.Options{Crashable: true})
	})
}

// Broken devices: each breaks one rule the suite must catch.
type (
	shortWrite  struct{ *memdev.Dev } // drops the last byte of odd-length writes
	trimNoop    struct{ *memdev.Dev } // Trim does nothing
	lyingZeros  struct{ *memdev.Dev } // Extents says everything is a zero hole
	rangeIgnore struct{ *memdev.Dev } // out-of-range reads succeed
)

func (d shortWrite) WriteAt(p []byte, off int64) (int, error) {
	if len(p)%2 == 1 {
		if _, err := d.Dev.WriteAt(p[:len(p)-1], off); err != nil {
			return 0, err
		}
		return len(p), nil
	}
	return d.Dev.WriteAt(p, off)
}

func (d trimNoop) Trim(off, n int64) error { return nil }

func (d lyingZeros) Extents(off, n int64, yield func(device.Extent) bool) error {
	if err := device.CheckRange("extents", off, n, d.Size()); err != nil {
		return err
	}
	yield(device.Extent{Off: off, Len: n, Flags: device.Hole | device.Zero})
	return nil
}

func (d rangeIgnore) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 || off+int64(len(p)) > d.Size() {
		clear(p)
		return len(p), nil
	}
	return d.Dev.ReadAt(p, off)
}

var broken = map[string]struct {
	newDevice devicetest.NewDevice
	failing   string // sub-test that must fail
}{
	"short-write":  {func(t *testing.T, size int64) device.Device { return shortWrite{memdev.New(size, memdev.Options{})} }, "RoundTripUnaligned"},
	"trim-noop":    {func(t *testing.T, size int64) device.Device { return trimNoop{memdev.New(size, memdev.Options{})} }, "Trim"},
	"lying-zeros":  {func(t *testing.T, size int64) device.Device { return lyingZeros{memdev.New(size, memdev.Options{})} }, "Extents"},
	"range-ignore": {func(t *testing.T, size int64) device.Device { return rangeIgnore{memdev.New(size, memdev.Options{})} }, "OutOfRange"},
}

// TestSuiteCatchesBrokenDevices runs the suite, in a child process,
// against devices that each break one rule, and checks it fails in the
// expected sub-test.
func TestSuiteCatchesBrokenDevices(t *testing.T) {
	if name := os.Getenv("DEVICETEST_BROKEN"); name != "" {
		devicetest.Run(t, broken[name].newDevice)
		return
	}
	for name, b := range broken {
		t.Run(name, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^TestSuiteCatchesBrokenDevices$", "-test.count=1")
			cmd.Env = append(os.Environ(), "DEVICETEST_BROKEN="+name)
			out, err := cmd.CombinedOutput()
			if err == nil {
				t.Fatalf("the suite passed a %s device:\n%s", name, out)
			}
			if want := "--- FAIL: TestSuiteCatchesBrokenDevices/" + b.failing; !strings.Contains(string(out), want) {
				t.Fatalf("%s device: output lacks %q:\n%s", name, want, out)
			}
		})
	}
}
