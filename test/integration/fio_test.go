package integration

import (
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/extentd/extentd/internal/testutil"
)

// fioJob is the fio command line shared by the write and verify runs: two
// jobs (two NBD connections) each own half of the device and write all of
// it once in random order (fio's random map), in mixed block sizes, each
// block carrying a crc32c verify header.
func fioJob(uri string, devSize int64, extra ...string) []string {
	half := devSize / 2
	args := []string{
		"--name=integrity", "--ioengine=nbd", "--uri=" + uri,
		"--rw=randwrite", "--bssplit=4k/30:16k/20:64k/20:256k/20:1m/10",
		"--numjobs=2", "--size=" + itoa(half), "--offset_increment=" + itoa(half),
		"--iodepth=16", "--verify=crc32c", "--verify_fatal=1",
		"--randrepeat=1", "--group_reporting", "--output-format=terse",
		"--verify_state_save=0", // no *-verify.state files left in the package folder
	}
	return append(args, extra...)
}

// TestFioVerify writes the whole device with fio from two connections,
// verifies it (served from the cache), flushes (end_fsync), then kill -9s
// the server, restarts it and verifies again with --verify_only: the data
// must have come back from the image file.
func TestFioVerify(t *testing.T) {
	testutil.RequireTool(t, "fio")
	const size = 256 << 20
	s := startServer(t, serverUnderTest(t), filepath.Join(t.TempDir(), "disk.img"), size)

	out, err := runCmd(5*time.Minute, "fio", fioJob(s.uri(), size, "--do_verify=1", "--end_fsync=1")...)
	if err != nil {
		t.Fatalf("fio write+verify: %v\nserver log:\n%s", err, s.log())
	}
	checkFioTerse(t, out)

	s.kill()
	s.start()
	out, err = runCmd(5*time.Minute, "fio", fioJob(s.uri(), size, "--verify_only=1")...)
	if err != nil {
		t.Fatalf("fio verify_only after kill -9: %v\nserver log:\n%s", err, s.log())
	}
	checkFioTerse(t, out)
	if err := s.stop(); err != nil {
		t.Fatal(err)
	}
}

// checkFioTerse fails on a terse line whose error field (5th) is not 0.
func checkFioTerse(t *testing.T, out string) {
	t.Helper()
	n := 0
	for _, line := range strings.Split(out, "\n") {
		f := strings.Split(line, ";")
		if len(f) < 5 || f[0] != "3" {
			continue
		}
		n++
		if f[4] != "0" {
			t.Fatalf("fio job %s reported error %s\n%s", f[2], f[4], out)
		}
	}
	if n == 0 {
		t.Fatalf("no fio result line:\n%s", out)
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
