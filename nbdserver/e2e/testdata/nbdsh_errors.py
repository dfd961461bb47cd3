# nbdsh script: with libnbd's strict mode off, send requests a polite
# client never sends and check the server's error codes; after each the
# connection must still work.
# Env: NBD_URI, NBD_URI_RO, NBD_URI_PLAIN.
import errno
import os

import nbd

SIZE = 64 * 1024 * 1024


def expect(fn, want, what):
    try:
        fn()
    except nbd.Error as e:
        assert e.errnum in want, "%s: got %s (%s), want %s" % (what, e.errnum, e.string, want)
        return
    raise AssertionError("%s: succeeded, want %s" % (what, want))


h.set_strict_mode(0)
h.add_meta_context(nbd.CONTEXT_BASE_ALLOCATION)
h.connect_uri(os.environ["NBD_URI"])
expect(lambda: h.pread(4096, SIZE - 1024), (errno.EINVAL,), "read past end")
expect(lambda: h.pwrite(b"x" * 1024, SIZE - 512), (errno.ENOSPC,), "write past end")
expect(lambda: h.trim(8192, SIZE - 4096), (errno.EINVAL,), "trim past end")
expect(lambda: h.zero(1024, SIZE - 512), (errno.ENOSPC,), "zero past end")
expect(lambda: h.pread(4096, 0, 1 << 9), (errno.EINVAL,), "read with unknown flag")
expect(lambda: h.pread(4096, 0, nbd.CMD_FLAG_REQ_ONE), (errno.EINVAL,), "read with REQ_ONE")
expect(lambda: h.pwrite(b"x" * 512, 0, nbd.CMD_FLAG_NO_HOLE), (errno.EINVAL,), "write with NO_HOLE")
expect(lambda: h.block_status(4096, SIZE, lambda *a: 0), (errno.EINVAL,), "block status past end")
# Legal requests still work on the same connection.
h.pwrite(b"\xab" * 4096, 0, nbd.CMD_FLAG_FUA)
assert h.pread(4096, 0) == b"\xab" * 4096
h.shutdown()

ro = nbd.NBD()
ro.set_strict_mode(0)
ro.connect_uri(os.environ["NBD_URI_RO"])
expect(lambda: ro.pwrite(b"x" * 4096, 0), (errno.EPERM,), "write on read-only")
expect(lambda: ro.trim(4096, 0), (errno.EPERM,), "trim on read-only")
expect(lambda: ro.zero(4096, 0), (errno.EPERM,), "zero on read-only")
assert ro.pread(4096, 0) == bytes(4096)
ro.shutdown()

plain = nbd.NBD()
plain.set_strict_mode(0)
plain.connect_uri(os.environ["NBD_URI_PLAIN"])
assert not plain.can_fast_zero()
expect(lambda: plain.zero(4096, 0, nbd.CMD_FLAG_FAST_ZERO), (errno.EINVAL,), "FAST_ZERO not advertised")
if not plain.can_trim():
    expect(lambda: plain.trim(4096, 0), (errno.EINVAL,), "TRIM not advertised")
expect(lambda: plain.block_status(4096, 0, lambda *a: 0), (errno.EINVAL,), "BLOCK_STATUS without meta context")
plain.pwrite(b"y" * 4096, 0)
assert plain.pread(4096, 0) == b"y" * 4096
plain.shutdown()
print("nbdsh errors: ok")
