package integration

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/extentd/extentd/internal/testutil"
)

// fsTreeMB is how much file data TestFilesystems writes per filesystem
// (EXTENTD_INTEG_FS_MB overrides it).
const fsTreeMB = 200

// attachment is the export seen as a block device on this host: nbdfuse
// exposes it as a file, a loop device turns that into a block device.
type attachment struct {
	t      *testing.T
	dir    string // nbdfuse mountpoint
	fuse   *exec.Cmd
	fdone  chan struct{}
	loop   string // /dev/loopN
	mnt    string // where the filesystem is mounted, "" if not
	closed bool
}

// attach exposes s's export as /dev/loopN. detach (also run at cleanup,
// in reverse order, on failure) undoes it.
func attach(t *testing.T, s *server) *attachment {
	t.Helper()
	a := &attachment{t: t, dir: t.TempDir()}
	t.Cleanup(func() { a.detach() })
	pidFile := filepath.Join(t.TempDir(), "nbdfuse.pid")
	a.fuse = exec.Command("nbdfuse", "-P", pidFile, filepath.Join(a.dir, "disk"), s.uri())
	var out strings.Builder
	a.fuse.Stdout, a.fuse.Stderr = &out, &out
	if err := a.fuse.Start(); err != nil {
		t.Fatal(err)
	}
	a.fdone = make(chan struct{})
	go func() { a.fuse.Wait(); close(a.fdone) }()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, err := os.Stat(pidFile); err == nil {
			if fi, err := os.Stat(filepath.Join(a.dir, "disk")); err == nil && fi.Size() == s.size {
				break
			}
		}
		select {
		case <-a.fdone:
			t.Fatalf("nbdfuse exited: %s", out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("nbdfuse: %s/disk did not appear in 20s: %s", a.dir, out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	a.loop = strings.TrimSpace(mustRun(t, 30*time.Second, "losetup", "-f", "--show", filepath.Join(a.dir, "disk")))
	return a
}

func (a *attachment) mount(fstype string) {
	a.t.Helper()
	mnt := a.t.TempDir()
	mustRun(a.t, 60*time.Second, "mount", "-t", fstype, a.loop, mnt)
	a.mnt = mnt
}

// umount unmounts the filesystem; every dirty page goes down to the loop
// device, through FUSE to nbdfuse and as NBD writes and flushes to s.
func (a *attachment) umount() {
	a.t.Helper()
	if a.mnt == "" {
		return
	}
	mustRun(a.t, 120*time.Second, "umount", a.mnt)
	a.mnt = ""
}

// detach unmounts, frees the loop device and unmounts nbdfuse. It keeps
// going past errors (it runs in cleanups) and reports them.
func (a *attachment) detach() {
	if a.closed {
		return
	}
	a.closed = true
	var errs []error
	if a.mnt != "" {
		if _, err := runCmd(120*time.Second, "umount", a.mnt); err != nil {
			errs = append(errs, err)
			runCmd(30*time.Second, "umount", "-l", a.mnt)
		}
		a.mnt = ""
	}
	if a.loop != "" {
		if _, err := runCmd(30*time.Second, "losetup", "-d", a.loop); err != nil {
			errs = append(errs, err)
		}
	}
	if _, err := runCmd(30*time.Second, "fusermount3", "-u", a.dir); err != nil {
		errs = append(errs, err)
		runCmd(30*time.Second, "fusermount3", "-uz", a.dir)
	}
	select {
	case <-a.fdone:
	case <-time.After(30 * time.Second):
		a.fuse.Process.Kill()
		<-a.fdone
		errs = append(errs, errors.New("nbdfuse did not exit after fusermount3 -u"))
	}
	if err := errors.Join(errs...); err != nil {
		a.t.Errorf("detach: %v", err)
	}
}

// fsck checks the unmounted filesystem read-only; it must be clean.
func (a *attachment) fsck(fstype string) {
	a.t.Helper()
	switch fstype {
	case "xfs":
		mustRun(a.t, 5*time.Minute, "xfs_repair", "-n", a.loop)
	default:
		mustRun(a.t, 5*time.Minute, "e2fsck", "-fn", a.loop)
	}
}

// writeTree writes random files of assorted sizes (mb MiB in all) under
// root and returns their SHA-256 sums by relative path.
func writeTree(t *testing.T, root string, mb int, seed uint64) map[string][sha256.Size]byte {
	t.Helper()
	r := rand.New(rand.NewPCG(seed, 3))
	sums := map[string][sha256.Size]byte{}
	sizes := []int{0, 1, 511, 4096, 4097, 65536, 100_000, 1 << 20, 3<<20 + 17, 8 << 20}
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, 4)
	var firstErr error
	total := 0
	for i := 0; total < mb<<20; i++ {
		dir := filepath.Join(fmt.Sprintf("d%d", i%7), fmt.Sprintf("e%d", i%3))
		name := filepath.Join(dir, "f"+strconv.Itoa(i))
		n := sizes[r.IntN(len(sizes))]
		total += n
		fseed := r.Uint64()
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			b := make([]byte, n)
			fill(fseed, b)
			err := os.MkdirAll(filepath.Join(root, dir), 0o755)
			if err == nil {
				err = os.WriteFile(filepath.Join(root, name), b, 0o644)
			}
			mu.Lock()
			defer mu.Unlock()
			if err != nil && firstErr == nil {
				firstErr = err
			}
			sums[name] = sha256.Sum256(b)
		}()
	}
	wg.Wait()
	if firstErr != nil {
		t.Fatal(firstErr)
	}
	return sums
}

// verifyTree checks that root holds exactly the files in sums.
func verifyTree(t *testing.T, root string, sums map[string][sha256.Size]byte) {
	t.Helper()
	seen := 0
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if rel == "lost+found" || strings.HasPrefix(rel, "lost+found/") {
			return nil
		}
		want, ok := sums[rel]
		if !ok {
			return fmt.Errorf("unexpected file %s", rel)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if sha256.Sum256(b) != want {
			return fmt.Errorf("%s: content differs from what was written (%d bytes read)", rel, len(b))
		}
		seen++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if seen != len(sums) {
		t.Fatalf("found %d of %d files", seen, len(sums))
	}
}

// TestFilesystems puts ext2, ext4 and xfs on the export (nbdfuse + loop device),
// writes a tree of random files, checks the filesystem with fsck, restarts
// the server (SIGTERM; for ext4 kill -9) and verifies every file.
func TestFilesystems(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireTool(t, "nbdfuse", "fusermount3", "losetup", "mount", "umount",
		"mkfs.ext2", "mkfs.ext4", "e2fsck", "mkfs.xfs", "xfs_repair")
	mb := fsTreeMB
	if v := os.Getenv("EXTENTD_INTEG_FS_MB"); v != "" {
		var err error
		if mb, err = strconv.Atoi(v); err != nil {
			t.Fatalf("EXTENTD_INTEG_FS_MB=%q: %v", v, err)
		}
	}
	for i, fstype := range []string{"ext2", "ext4", "xfs"} {
		t.Run(fstype, func(t *testing.T) {
			img := filepath.Join(t.TempDir(), "disk.img")
			s := startServer(t, serverUnderTest(t), img, 1<<30)

			a := attach(t, s)
			switch fstype {
			case "xfs":
				mustRun(t, 2*time.Minute, "mkfs.xfs", "-q", "-f", a.loop)
			default:
				mustRun(t, 2*time.Minute, "mkfs."+fstype, "-q", "-F", "-b", "4096", a.loop)
			}
			a.mount(fstype)
			start := time.Now()
			sums := writeTree(t, a.mnt, mb, uint64(i))
			a.umount()
			t.Logf("%s: wrote %d files (%d MiB) and unmounted in %v", fstype, len(sums), mb, time.Since(start).Round(time.Millisecond))
			a.fsck(fstype)
			a.detach()

			// ext4 restarts the hard way: what the filesystem, loop
			// device and nbdfuse flushed (umount, detach) must survive
			// kill -9. The others restart cleanly (SIGTERM, exit 0).
			if fstype == "ext4" {
				s.kill()
				s.start()
			} else {
				s.restart()
			}

			a = attach(t, s)
			a.fsck(fstype)
			a.mount(fstype)
			start = time.Now()
			verifyTree(t, a.mnt, sums)
			t.Logf("%s: verified after restart in %v", fstype, time.Since(start).Round(time.Millisecond))
			a.detach()
			if err := s.stop(); err != nil {
				t.Fatal(err)
			}
		})
	}
}
