package devicetest_test

import (
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
