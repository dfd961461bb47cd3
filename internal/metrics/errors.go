package metrics

import "errors"

// ErrDuplicateExport means AddExport was called twice for one export name.
var ErrDuplicateExport = errors.New("metrics: export already registered")
