// Package integration holds extentd's integration tests: they build the
// extentd binary, run `extentd serve` as a subprocess on 127.0.0.1 with a
// fresh image, and drive it with real clients and real tools:
//
//   - filesystems (ext2, ext4, xfs) on a loop device over nbdfuse, checked with
//     e2fsck/xfs_repair and verified after a server restart (fs_test.go);
//   - fio with crc32c verification through its nbd engine (fio_test.go);
//   - kill -9 and SIGTERM loops that check every flushed (FLUSH or FUA)
//     byte, and every byte after a clean stop, survives (crash_test.go);
//   - the sparse image: writes allocate, TRIM frees (sparse_test.go);
//   - that those checks fail against test/brokenserver, a server that
//     ignores FLUSH or drops dirty data on SIGTERM (broken_test.go).
//
// The kernel-client test (nbd-client, ext2/ext4/xfs and fio inside a qemu
// guest) lives in test/vm and runs only with EXTENTD_VM_TEST=1 (vm_test.go).
//
// Tools come from the host; a missing tool or root skips a test on a
// developer machine and fails it in CI (internal/testutil). The server
// under test is extentd unless EXTENTD_INTEG_SERVER=nbdkit (a reference
// run of the same tests against nbdkit's file plugin). See docs/testing.md.
//
// This package contains only tests; it must not be imported.
package integration
