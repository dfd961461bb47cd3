// Package imports is a fixture for CheckImports: it is never built.
package imports

import (
	"fmt"

	"github.com/extentd/extentd/device"
	"github.com/extentd/extentd/nbdserver/nbdtest"
	"github.com/extentd/extentd/nbdserverx"
	"go.uber.org/zap"
)

var _, _, _, _, _ = fmt.Sprint, device.ErrClosed, nbdtest.Dial, nbdserverx.X, zap.NewNop
