package statetree

import "errors"

// ErrCorrupt is wrapped by every error Check returns: an invariant of the
// tree does not hold.
var ErrCorrupt = errors.New("statetree: invariant violated")

// ErrInvalidOptions is wrapped by the errors Options.Validate returns.
var ErrInvalidOptions = errors.New("statetree: invalid options")
