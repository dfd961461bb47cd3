// Package devicetest is the conformance suite every device.Device of
// extentd runs: Run(t, newDevice) checks read/write round trips (aligned
// and unaligned), range errors, zeros where nothing was written, Trim and
// Zero, the Extenter contract, Flush/SyncRange/Prefetch, concurrent
// disjoint writers (run the tests with -race) and a random model test
// against a flat []byte.
//
// Optional interfaces are tested only when the device implements them.
// The random sub-tests log their seed; set DEVICETEST_SEED to replay one.
//
// It imports only device and the standard library (testing included), so
// any package's tests may use it; non-test code must not.
package devicetest
