package alloc

import (
	"testing"

	"github.com/extentd/extentd/device"
	"github.com/extentd/extentd/device/devicetest"
)

func TestConformanceBuffered(t *testing.T) {
	devicetest.Run(t, func(t *testing.T, size int64) device.Device {
		return openTest(t, size, Options{})
	})
}

func TestConformanceDirectIO(t *testing.T) {
	devicetest.Run(t, func(t *testing.T, size int64) device.Device {
		return openTest(t, size, Options{DirectIO: true})
	})
}
