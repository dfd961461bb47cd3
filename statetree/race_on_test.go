//go:build race

package statetree

// raceEnabled: the race detector slows the model test about tenfold, so it
// runs fewer sequences (the seed still reproduces them).
const raceEnabled = true
