package nbdtest_test

import (
	"net"
	"time"
)

type netDialer struct{}

func (netDialer) dial(sock string) (net.Conn, error) {
	return net.DialTimeout("unix", sock, 5*time.Second)
}
