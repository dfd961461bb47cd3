//go:build !race

package extentcache

const raceEnabled = false
