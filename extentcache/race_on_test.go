//go:build race

package extentcache

// raceEnabled: the race detector makes sync.Pool (used by ristretto) drop
// items at random, so allocation budgets are not meaningful.
const raceEnabled = true
