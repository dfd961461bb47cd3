package integration

import (
	"path/filepath"
	"testing"
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
