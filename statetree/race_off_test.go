//go:build !race

package statetree

const raceEnabled = false
