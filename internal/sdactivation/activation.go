package sdactivation

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// FirstFD is the first descriptor systemd passes (SD_LISTEN_FDS_START).
const FirstFD = 3

// Listener is one activated socket and the name systemd gave it
// (FileDescriptorName=, "unknown" when unnamed).
type Listener struct {
	net.Listener
	Name string
}

// Env is what Listeners reads from the process environment; tests fill it in
// directly.
type Env struct {
	Getenv   func(string) string
	Unsetenv func(string) error
	Pid      int // the current process id, compared with LISTEN_PID
	FirstFD  int // FirstFD in production
}

// Listeners returns the sockets passed to this process, or nil when the
// process was not socket-activated (LISTEN_FDS unset, or LISTEN_PID naming
// another process). It unsets the variables so that child processes do not
// inherit them, and marks the descriptors close-on-exec.
func Listeners() ([]Listener, error) {
	return ListenersFrom(Env{Getenv: os.Getenv, Unsetenv: os.Unsetenv, Pid: os.Getpid(), FirstFD: FirstFD})
}

// ListenersFrom is Listeners with an explicit environment.
func ListenersFrom(env Env) ([]Listener, error) {
	fdsStr := env.Getenv("LISTEN_FDS")
	if fdsStr == "" {
		return nil, nil
	}
	pidStr := env.Getenv("LISTEN_PID")
	names := env.Getenv("LISTEN_FDNAMES")
	if env.Unsetenv != nil {
		for _, k := range []string{"LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"} {
			_ = env.Unsetenv(k)
		}
	}
	if pidStr != "" {
		pid, err := strconv.Atoi(pidStr)
		if err != nil {
			return nil, fmt.Errorf("sdactivation: LISTEN_PID=%q: %w", pidStr, ErrBadEnvironment)
		}
		if pid != env.Pid {
			return nil, nil // meant for another process
		}
	}
	n, err := strconv.Atoi(fdsStr)
	if err != nil || n < 0 || n > 1024 {
		return nil, fmt.Errorf("sdactivation: LISTEN_FDS=%q: %w", fdsStr, ErrBadEnvironment)
	}
	var nameList []string
	if names != "" {
		nameList = strings.Split(names, ":")
	}
	out := make([]Listener, 0, n)
	for i := 0; i < n; i++ {
		fd := env.FirstFD + i
		syscall.CloseOnExec(fd)
		name := "unknown"
		if i < len(nameList) && nameList[i] != "" {
			name = nameList[i]
		}
		f := os.NewFile(uintptr(fd), "LISTEN_FD_"+strconv.Itoa(fd)+":"+name)
		l, err := net.FileListener(f)
		// FileListener dups the descriptor; the original is ours to close.
		f.Close()
		if err != nil {
			for _, prev := range out {
				prev.Close()
			}
			return nil, fmt.Errorf("sdactivation: descriptor %d (%s) is not a listening socket: %v: %w", fd, name, err, ErrBadEnvironment)
		}
		out = append(out, Listener{Listener: l, Name: name})
	}
	return out, nil
}
