package sdactivation

import "errors"

// ErrBadEnvironment means LISTEN_FDS or LISTEN_PID is set but malformed, or
// a passed descriptor is not a usable listening socket.
var ErrBadEnvironment = errors.New("bad socket activation environment")
