// Package sdactivation receives listening sockets passed by systemd socket
// activation (sd_listen_fds(3)): the environment variables LISTEN_PID,
// LISTEN_FDS and LISTEN_FDNAMES describe file descriptors starting at 3.
//
// It is used once at start-up by cmd/extentd, before any other file is
// opened, and holds no state. It imports only the standard library.
package sdactivation
