# Integration test targets (owned by test/; included by the top Makefile).
#
#   make integ         the integration package alone (it also runs in `make race`)
#   make vmtest        the kernel-client VM test (qemu, ~5 min under TCG); part of make test
#   make vmtest-nbdkit the same VM test against nbdkit (reference run)
#   make vmtest-broken the VM test against test/brokenserver -mode noflush: must fail
#
# See docs/testing.md.

TEST_EXTRA += vmtest

.PHONY: integ vmtest vmtest-nbdkit

integ:
	$(GO) test -count=1 -timeout 15m -v ./test/integration/

vmtest:
	EXTENTD_VM_TEST=1 $(GO) test -count=1 -timeout 15m -run '^TestKernelClientVM$$' -v ./test/integration/

vmtest-nbdkit:
	EXTENTD_VM_SERVER=nbdkit test/vm/run.sh

# Must fail: the VM test against a server that ignores FLUSH (see docs/testing.md).
.PHONY: vmtest-broken
vmtest-broken:
	! EXTENTD_VM_SERVER=brokenserver-noflush test/vm/run.sh
