//go:build !invariants

package statetree

// invariants turns on an O(n) Check after every mutation (go test -tags
// invariants).
const invariants = false
