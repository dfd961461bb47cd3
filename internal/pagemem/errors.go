package pagemem

import "errors"

// ErrSize means a size given to Map is not a positive multiple of
// ChunkSize.
var ErrSize = errors.New("pagemem: size must be a positive multiple of ChunkSize")
