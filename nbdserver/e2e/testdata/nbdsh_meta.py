# nbdsh script: base:allocation answers for written, zeroed and
# never-written ranges, with and without REQ_ONE, plus sparse reads.
# Env: NBD_URI.
import os

import nbd

h.add_meta_context(nbd.CONTEXT_BASE_ALLOCATION)
h.connect_uri(os.environ["NBD_URI"])
MiB = 1024 * 1024
base = 16 * MiB
h.pwrite(b"\x01" * MiB, base)
h.zero(MiB, base + MiB)


def status(count, offset, flags=0):
    out = []

    def cb(metacontext, off, entries, err):
        assert metacontext == nbd.CONTEXT_BASE_ALLOCATION, metacontext
        assert off == offset, (off, offset)
        out.extend(zip(entries[0::2], entries[1::2]))
        return 0

    h.block_status(count, offset, cb, flags)
    return out


ext = status(4 * MiB, base)
assert ext, ext
assert ext[0][1] & (nbd.STATE_HOLE | nbd.STATE_ZERO) == 0, ("written data", ext)
covered = 0
zero_after = None
for length, flags in ext:
    if covered >= MiB and zero_after is None:
        zero_after = flags
    covered += length
assert zero_after is not None and zero_after & nbd.STATE_ZERO, ("zeroed range", ext)
one = status(4 * MiB, base, nbd.CMD_FLAG_REQ_ONE)
assert len(one) == 1, one
far = status(MiB, 40 * MiB)
assert far[0][1] & nbd.STATE_ZERO, ("never written", far)
assert h.pread(MiB, 40 * MiB) == bytes(MiB)
assert h.pread(MiB, base) == b"\x01" * MiB
h.shutdown()
print("nbdsh meta: ok")
