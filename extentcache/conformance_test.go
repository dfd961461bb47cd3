package extentcache

import (
	"testing"

	"github.com/extentd/extentd/device"
	"github.com/extentd/extentd/device/devicetest"
	"github.com/extentd/extentd/device/faultdev"
	"github.com/extentd/extentd/device/memdev"
)

// TestConformance runs the shared device suite against the cache over
// memdev, and over faultdev (which adds WriteVAt and Allocate) with small
// limits so that writeback runs during the suite.
func TestConformance(t *testing.T) {
	t.Run("memdev", func(t *testing.T) {
		devicetest.Run(t, func(t *testing.T, size int64) device.Device {
			return newTestCache(t, memdev.New(size, memdev.Options{}), Options{})
		})
	})
	t.Run("small-limits", func(t *testing.T) {
		devicetest.Run(t, func(t *testing.T, size int64) device.Device {
			return newTestCache(t, faultdev.New(memdev.New(size, memdev.Options{})), testOptions(t))
		})
	})
}
