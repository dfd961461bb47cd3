//go:build !invariants

package extentcache

// invariants is off in normal builds; build with -tags invariants to check
// the cache's invariants after every mutation.
const invariants = false
