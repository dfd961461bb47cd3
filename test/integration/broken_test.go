package integration

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/extentd/extentd/internal/testutil"
)

// These tests show that the crash and clean-stop checks can fail: run
// against test/brokenserver, the same stack as extentd with one durability
// bug, they must report lost data. The "ok" mode of the same program is the
// control: without the bug the same checks pass, so what fails is the bug,
// not the harness.

func TestBrokenNoFlushIsDetected(t *testing.T) {
	s := startServer(t, brokenServer("noflush"), filepath.Join(t.TempDir(), "disk.img"), crashSize)
	err := crashLoop(t, s, 3, false, 11)
	if err == nil {
		t.Fatal("crash loop passed against a server that ignores FLUSH")
	}
	t.Logf("detected as expected: %v", err)

	s2 := startServer(t, brokenServer("noflush"), filepath.Join(t.TempDir(), "disk.img"), crashSize)
	err = crashLoop(t, s2, 3, true, 12)
	if err == nil {
		t.Fatal("FUA crash loop passed against a server that ignores FUA")
	}
	t.Logf("detected as expected: %v", err)
}

func TestBrokenDropDirtyIsDetected(t *testing.T) {
	s := startServer(t, brokenServer("dropdirty"), filepath.Join(t.TempDir(), "disk.img"), crashSize)
	err := sigtermLoop(t, s, 2, 13)
	if err == nil {
		t.Fatal("clean-stop check passed against a server that drops dirty data on SIGTERM")
	}
	t.Logf("detected as expected: %v", err)
}

func TestBrokenServerControl(t *testing.T) {
	// Each check starts from a fresh (zero) image, as its model does.
	fresh := func() *server {
		return startServer(t, brokenServer("ok"), filepath.Join(t.TempDir(), "disk.img"), crashSize)
	}
	if err := crashLoop(t, fresh(), 3, false, 11); err != nil {
		t.Fatalf("control (no bug), FLUSH: %v", err)
	}
	if err := crashLoop(t, fresh(), 3, true, 12); err != nil {
		t.Fatalf("control (no bug), FUA: %v", err)
	}
	if err := sigtermLoop(t, fresh(), 2, 13); err != nil {
		t.Fatalf("control (no bug), SIGTERM: %v", err)
	}
}

// TestBrokenFilesystemIsDetected runs TestFilesystems/ext4 (mkfs, files,
// umount, kill -9, verify) in a child test process against a server that
// ignores FLUSH: the child must fail. (Against -mode dropdirty it would
// pass: the filesystem, the loop device and nbdfuse flush before the
// restart, so the final writeback has nothing left to lose.)
func TestBrokenFilesystemIsDetected(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireTool(t, "nbdfuse", "fusermount3", "losetup", "mount", "umount", "mkfs.ext4", "e2fsck")
	for _, c := range []struct {
		mode     string
		wantFail bool
	}{{"noflush", true}, {"ok", false}} {
		cmd := exec.Command(os.Args[0], "-test.run", "^TestFilesystems$/^ext4$", "-test.count=1", "-test.v")
		cmd.Env = append(os.Environ(), "EXTENTD_INTEG_SERVER=brokenserver-"+c.mode, "EXTENTD_INTEG_FS_MB=32")
		out, err := cmd.CombinedOutput()
		failed := strings.Contains(string(out), "--- FAIL: TestFilesystems/ext4")
		ran := failed || strings.Contains(string(out), "--- PASS: TestFilesystems/ext4")
		switch {
		case !ran:
			t.Fatalf("mode %s: child did not run TestFilesystems/ext4 (%v):\n%s", c.mode, err, out)
		case c.wantFail && (!failed || err == nil):
			t.Fatalf("mode %s: TestFilesystems/ext4 passed against a server that ignores FLUSH:\n%s", c.mode, out)
		case !c.wantFail && (failed || err != nil):
			t.Fatalf("mode %s (control, no bug): TestFilesystems/ext4 failed (%v):\n%s", c.mode, err, out)
		}
		if c.wantFail {
			for _, line := range strings.Split(string(out), "\n") {
				if strings.Contains(line, "fs_test.go") && !strings.Contains(line, "wrote ") {
					t.Logf("detected as expected: %s", strings.TrimSpace(line))
				}
			}
		}
	}
}
