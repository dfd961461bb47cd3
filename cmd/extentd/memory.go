package main

import (
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// The default dirty budget follows the kernel's page cache, which is what
// the alternatives (nbdkit file, qemu-nbd, nbd-server) write into: up to
// vm.dirty_ratio (20 %) of memory may be dirty, and background writeback
// starts at vm.dirty_background_ratio (10 %). extentd keeps its dirty data
// in its own memory instead, so it takes the same share of the memory it
// may use (the cgroup limit in a container), split between the exports
// that cache. See docs/writeback.md, "Dirty budget".
const (
	dirtyShareDiv   = 5         // 1/5 = 20 % of memory
	minAutoMaxDirty = 256 << 20 // never less than the fixed default
)

// autoMaxDirty returns the default max-dirty for one of n caching exports:
// 20 % of usable memory divided by n, at least 256 MiB. Memory is taken only
// as data is written, so a budget above the export's size costs nothing.
func autoMaxDirty(n int) int64 {
	return max(usableMemory()/dirtyShareDiv/int64(max(n, 1)), minAutoMaxDirty)
}

// usableMemory is the physical memory, or the cgroup v2 memory limit of
// this process if lower. It returns 0 when neither can be read.
func usableMemory() int64 {
	var total int64
	var si unix.Sysinfo_t
	if unix.Sysinfo(&si) == nil {
		total = int64(si.Totalram) * int64(si.Unit)
	}
	if lim, ok := cgroupMemoryMax(); ok && (total == 0 || lim < total) {
		total = lim
	}
	return total
}

// cgroupMemoryMax reads memory.max of this process's cgroup (v2).
func cgroupMemoryMax() (int64, bool) {
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return 0, false
	}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		// cgroup v2: "0::/path"
		path, ok := strings.CutPrefix(line, "0::")
		if !ok {
			continue
		}
		v, err := os.ReadFile("/sys/fs/cgroup" + path + "/memory.max")
		if err != nil {
			v, err = os.ReadFile("/sys/fs/cgroup/memory.max") // namespaced view
		}
		if err != nil {
			return 0, false
		}
		n, err := strconv.ParseInt(strings.TrimSpace(string(v)), 10, 64)
		return n, err == nil // "max" means no limit
	}
	return 0, false
}
