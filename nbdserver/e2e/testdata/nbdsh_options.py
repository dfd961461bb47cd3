# nbdsh script (run as: nbdsh -c "exec(open(path).read())").
# Option negotiation through libnbd's opt mode: LIST, INFO, meta contexts,
# GO, unknown export, flags of a writable and of a read-only export.
# Env: NBD_URI (default export), NBD_URI_RO (read-only export "ro").
import errno
import os

import nbd

uri = os.environ["NBD_URI"]
h.set_opt_mode(True)
h.set_full_info(True)
h.add_meta_context(nbd.CONTEXT_BASE_ALLOCATION)
h.connect_uri(uri)
assert h.get_protocol() == "newstyle-fixed", h.get_protocol()

exports = []
h.opt_list(lambda name, desc: exports.append((name, desc)))
names = sorted(n for n, _ in exports)
assert names == ["", "plain", "ro"], exports

contexts = []
n = h.opt_list_meta_context(lambda name: contexts.append(name))
assert nbd.CONTEXT_BASE_ALLOCATION in contexts, contexts

h.opt_info()
size = h.get_size()
assert size == 64 * 1024 * 1024, size
assert h.get_export_description() == "default test export", h.get_export_description()

# An unknown export is refused (NBD_REP_ERR_UNKNOWN maps to ENOENT) and
# negotiation goes on.
h.set_export_name("nosuch")
try:
    h.opt_info()
    raise AssertionError("opt_info on unknown export succeeded")
except nbd.Error as e:
    assert e.errnum == errno.ENOENT, (e.string, e.errnum)
try:
    h.opt_go()
    raise AssertionError("opt_go on unknown export succeeded")
except nbd.Error as e:
    assert e.errnum == errno.ENOENT, (e.string, e.errnum)

h.set_export_name("")
h.opt_go()
assert h.get_size() == size
assert h.get_structured_replies_negotiated()
assert h.can_meta_context(nbd.CONTEXT_BASE_ALLOCATION)
assert not h.is_read_only()
for cap in ("can_flush", "can_fua", "can_trim", "can_zero", "can_fast_zero", "can_multi_conn", "can_cache"):
    assert getattr(h, cap)(), cap
minimum = h.get_block_size(nbd.SIZE_MINIMUM)
preferred = h.get_block_size(nbd.SIZE_PREFERRED)
maximum = h.get_block_size(nbd.SIZE_MAXIMUM)
assert 1 <= minimum <= preferred <= maximum, (minimum, preferred, maximum)
h.shutdown()

ro = nbd.NBD()
ro.connect_uri(os.environ["NBD_URI_RO"])
assert ro.is_read_only()
assert ro.get_size() == 1024 * 1024, ro.get_size()
ro.shutdown()
print("nbdsh options: ok")
