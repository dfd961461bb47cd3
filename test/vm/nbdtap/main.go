// Command nbdtap relays one NBD connection between its stdin/stdout and a
// TCP server, and records what the client sent: the handshake options and
// every transmission request by command and flags. It is the qemu guestfwd
// command of test/vm/run.sh ("cmd:nbdtap -o FILE 127.0.0.1:PORT"), so the
// VM test sees exactly what the Linux kernel client sent, whatever server
// is behind it. Test tooling only; not part of extentd.
//
// At exit (and every second) it rewrites FILE.<pid> with lines such as
//
//	client_flags 0x3
//	option GO name="" info_requests=0
//	cmd write flags=fua 12
//	cmd flush flags= 40
package main

import (
	"encoding/binary"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"sort"
	"strings"
	"sync"
	"time"
)

const (
	optMagic     = 0x49484156454F5054 // IHAVEOPT
	requestMagic = 0x25609513         // NBD_REQUEST_MAGIC
	cmdWrite     = 1                  // NBD_CMD_WRITE
)

var cmdNames = map[uint16]string{0: "read", 1: "write", 2: "disc", 3: "flush", 4: "trim", 5: "cache", 6: "write_zeroes", 7: "block_status", 8: "resize"}
var optNames = map[uint32]string{1: "EXPORT_NAME", 2: "ABORT", 3: "LIST", 5: "STARTTLS", 6: "INFO", 7: "GO", 8: "STRUCTURED_REPLY", 9: "LIST_META_CONTEXT", 10: "SET_META_CONTEXT", 11: "EXTENDED_HEADERS"}
var flagNames = []string{"fua", "no_hole", "df", "req_one", "fast_zero", "payload_len"}

type tap struct {
	mu      sync.Mutex // guards the following
	lines   []string
	counts  map[string]int64
	outPath string
}

func (t *tap) note(s string) {
	t.mu.Lock()
	t.lines = append(t.lines, s)
	t.mu.Unlock()
}

func (t *tap) count(cmd, flags uint16) {
	var fs []string
	for i, n := range flagNames {
		if flags&(1<<i) != 0 {
			fs = append(fs, n)
		}
	}
	name := cmdNames[cmd]
	if name == "" {
		name = fmt.Sprintf("cmd%d", cmd)
	}
	key := fmt.Sprintf("cmd %s flags=%s", name, strings.Join(fs, ","))
	t.mu.Lock()
	t.counts[key]++
	t.mu.Unlock()
}

func (t *tap) save() {
	t.mu.Lock()
	var b strings.Builder
	for _, l := range t.lines {
		b.WriteString(l + "\n")
	}
	keys := make([]string, 0, len(t.counts))
	for k := range t.counts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(&b, "%s %d\n", k, t.counts[k])
	}
	t.mu.Unlock()
	tmp := t.outPath + ".tmp"
	if os.WriteFile(tmp, []byte(b.String()), 0o644) == nil {
		os.Rename(tmp, t.outPath)
	}
}

// parse reads the client's side of the conversation from r (a copy of what
// is relayed) and records it.
func (t *tap) parse(r io.Reader) error {
	var b [28]byte
	if _, err := io.ReadFull(r, b[:4]); err != nil {
		return err
	}
	t.note(fmt.Sprintf("client_flags 0x%x", binary.BigEndian.Uint32(b[:4])))
	for {
		if _, err := io.ReadFull(r, b[:4]); err != nil {
			return err
		}
		if binary.BigEndian.Uint32(b[:4]) == requestMagic {
			if _, err := io.ReadFull(r, b[4:28]); err != nil {
				return err
			}
			flags := binary.BigEndian.Uint16(b[4:])
			cmd := binary.BigEndian.Uint16(b[6:])
			length := binary.BigEndian.Uint32(b[24:])
			t.count(cmd, flags)
			if cmd == cmdWrite {
				if _, err := io.CopyN(io.Discard, r, int64(length)); err != nil {
					return err
				}
			}
			continue
		}
		if _, err := io.ReadFull(r, b[4:16]); err != nil {
			return err
		}
		if binary.BigEndian.Uint64(b[:8]) != optMagic {
			t.note(fmt.Sprintf("unparsed bytes % x", b[:16]))
			_, err := io.Copy(io.Discard, r)
			return err
		}
		opt := binary.BigEndian.Uint32(b[8:])
		data := make([]byte, binary.BigEndian.Uint32(b[12:]))
		if _, err := io.ReadFull(r, data); err != nil {
			return err
		}
		name := optNames[opt]
		if name == "" {
			name = fmt.Sprintf("opt%d", opt)
		}
		switch {
		case (opt == 6 || opt == 7) && len(data) >= 6:
			n := binary.BigEndian.Uint32(data)
			if int(n)+6 <= len(data) {
				t.note(fmt.Sprintf("option %s name=%q info_requests=%d", name, data[4:4+n], binary.BigEndian.Uint16(data[4+n:])))
				continue
			}
		case opt == 1:
			t.note(fmt.Sprintf("option %s name=%q", name, data))
			continue
		}
		t.note(fmt.Sprintf("option %s len=%d", name, len(data)))
	}
}

func main() {
	out := flag.String("o", "nbdtap", "record to this path with .<pid> appended")
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: nbdtap -o FILE HOST:PORT")
		os.Exit(2)
	}
	conn, err := net.Dial("tcp", flag.Arg(0))
	if err != nil {
		fmt.Fprintln(os.Stderr, "nbdtap:", err)
		os.Exit(1)
	}
	t := &tap{counts: map[string]int64{}, outPath: fmt.Sprintf("%s.%d", *out, os.Getpid())}
	pr, pw := io.Pipe()
	go func() {
		err := t.parse(pr)
		if err != nil && err != io.EOF && err != io.ErrUnexpectedEOF {
			t.note("parse error: " + err.Error())
		}
		io.Copy(io.Discard, pr)
	}()
	done := make(chan struct{}, 2)
	go func() {
		// Client to server, through the parser.
		io.Copy(io.MultiWriter(conn, pw), os.Stdin)
		pw.Close()
		conn.(*net.TCPConn).CloseWrite()
		done <- struct{}{}
	}()
	go func() {
		io.Copy(os.Stdout, conn)
		os.Stdout.Close()
		done <- struct{}{}
	}()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for n := 0; n < 2; {
		select {
		case <-done:
			n++
		case <-tick.C:
			t.save()
		}
	}
	t.save()
}
