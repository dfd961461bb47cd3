// Package e2e is the end-to-end conformance suite for package nbdserver.
//
// Its tests start a real nbdserver.Server on 127.0.0.1:0 or a Unix socket
// over an in-memory device (device/memdev) and talk to it through:
//
//   - the in-process client nbdserver/nbdtest (every option and command,
//     the negative cases the spec defines, concurrency);
//   - raw sockets (hostile clients: bad magic, bad flags, huge lengths,
//     truncated payloads, connection floods);
//   - real clients as oracles (nbdinfo, nbdsh, nbdcopy, qemu-img, qemu-io,
//     fio), behind testutil.RequireTool: skipped on a laptop without
//     them, failing in CI.
//
// After every hostile test a fresh client must still work and data written
// earlier must be intact. See docs/conformance.md.
//
// The package has no non-test code besides this file.
package e2e
