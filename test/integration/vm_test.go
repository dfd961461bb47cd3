package integration

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/extentd/extentd/internal/testutil"
)

// TestKernelClientVM runs test/vm/run.sh: a qemu guest attaches extentd
// with the Linux kernel nbd-client (two connections), puts ext2, ext4 and
// xfs on it, fscks and verifies them, runs fio with crc32c verification,
// and the script checks that the kernel sent FLUSH and FUA and that the
// server answered without error. It boots a VM (about 5 minutes under
// software emulation), so it runs only with EXTENTD_VM_TEST=1 (make
// vmtest); go test needs -timeout 15m for it.
func TestKernelClientVM(t *testing.T) {
	if os.Getenv("EXTENTD_VM_TEST") != "1" {
		t.Skip("boots a VM: set EXTENTD_VM_TEST=1 (make vmtest)")
	}
	testutil.RequireTool(t, "qemu-system-x86_64", "busybox", "apt-get", "dpkg")
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	_, file, _, _ := runtime.Caller(0)
	script := filepath.Join(filepath.Dir(file), "..", "vm", "run.sh")
	ctx, cancel := context.WithTimeout(context.Background(), 14*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, script)
	cmd.Env = append(os.Environ(), "EXTENTD_BIN="+bins["extentd"])
	out, err := cmd.CombinedOutput()
	t.Logf("%s", out)
	if err != nil {
		t.Fatalf("test/vm/run.sh: %v", err)
	}
}
