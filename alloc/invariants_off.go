//go:build !invariants

package alloc

// invariants turns on Space.Check after every Space mutation (go test
// -tags invariants); a violation panics naming it.
const invariants = false
