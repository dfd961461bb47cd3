package nbdserver

import (
	"crypto/tls"
	"errors"
	"fmt"
	"math/bits"
	"time"

	"go.uber.org/zap"

	"github.com/extentd/extentd/device"
)

// Export is one named device offered to clients.
type Export struct {
	// Name is what clients ask for; "" is the default export. If no export
	// is named "", the empty name selects the first export.
	Name string
	// Description is shown by NBD_OPT_LIST and NBD_INFO_DESCRIPTION.
	Description string
	// Device serves the data. Its optional capabilities decide the
	// transmission flags (Trimmer: SEND_TRIM, Zeroer: SEND_WRITE_ZEROES,
	// FastZeroer: SEND_FAST_ZERO, Extenter: sparse reads and real
	// base:allocation answers).
	Device device.Device
	// ReadOnly advertises NBD_FLAG_READ_ONLY and answers writes with EPERM.
	ReadOnly bool
	// MultiConn advertises NBD_FLAG_CAN_MULTI_CONN: the device's Flush
	// covers writes completed on every connection.
	MultiConn bool
	// MinBlock, PrefBlock and MaxBlock are sent in NBD_INFO_BLOCK_SIZE.
	// Zero means 1, 4096 and 32 MiB. READ/WRITE/TRIM requests not aligned
	// to MinBlock get EINVAL.
	MinBlock, PrefBlock, MaxBlock uint32
}

// Options configure a Server. The zero value of each field is a usable
// default, applied by EnsureDefaults.
type Options struct {
	// Exports lists the exports; at least one. Names must be unique.
	Exports []Export
	// TLSConfig enables NBD_OPT_STARTTLS. Client-certificate checks are
	// whatever it says (ClientAuth, ClientCAs). nil: STARTTLS is answered
	// with NBD_REP_ERR_UNSUP.
	TLSConfig *tls.Config
	// RequireTLS refuses every option but STARTTLS and ABORT until TLS is
	// up (FORCEDTLS mode); needs TLSConfig.
	RequireTLS bool
	// Logger receives control-path logs and one line per failed request;
	// nil means no logging. It is named "nbdserver".
	Logger *zap.Logger
	// HandshakeTimeout bounds the whole handshake. 0 means 30s.
	HandshakeTimeout time.Duration
	// MaxOptionLen is the largest option payload accepted, in bytes. Larger
	// options are drained and refused with NBD_REP_ERR_TOO_BIG, or end the
	// connection if they are very large. 0 means 64 KiB.
	MaxOptionLen uint32
	// MaxOptions is the number of options a client may send before it
	// chooses an export. 0 means 32.
	MaxOptions int
	// MaxPayload is the largest READ or WRITE payload, in bytes. 0 means
	// 32 MiB.
	MaxPayload uint32
	// MaxInFlight bounds the requests being processed per connection. 0
	// means 64.
	MaxInFlight int
	// Workers is the number of goroutines doing device I/O per connection.
	// 0 means 8.
	Workers int
	// Observer receives per-request metrics; nil means none.
	Observer Observer
}

// Observer receives metrics events; implementations must be cheap and safe
// for concurrent use. They are called on the request path.
type Observer interface {
	// ConnOpened is called when a connection enters transmission.
	ConnOpened(export string)
	// ConnClosed is called when that connection ends.
	ConnClosed(export string)
	// Request is called once per completed request: bytes is the request
	// length, d the time from decoding to the reply being written to the
	// connection's buffer, errno 0 on success.
	Request(cmd Command, bytes int64, d time.Duration, errno Errno)
}

// Defaults.
const (
	defaultHandshakeTimeout = 30 * time.Second
	defaultMaxOptionLen     = 64 << 10
	defaultMaxOptions       = 32
	defaultMaxPayload       = 32 << 20
	defaultMaxInFlight      = 64
	defaultWorkers          = 8
	defaultMinBlock         = 1
	defaultPrefBlock        = 4096
	defaultMaxBlock         = 32 << 20
	// maxPayloadLimit caps Options.MaxPayload: a single request buffer.
	maxPayloadLimit = 1 << 30
)

// EnsureDefaults fills zero fields with their defaults. It copies Exports so
// the caller's slice is not modified.
func (o *Options) EnsureDefaults() {
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	if o.HandshakeTimeout == 0 {
		o.HandshakeTimeout = defaultHandshakeTimeout
	}
	if o.MaxOptionLen == 0 {
		o.MaxOptionLen = defaultMaxOptionLen
	}
	if o.MaxOptions == 0 {
		o.MaxOptions = defaultMaxOptions
	}
	if o.MaxPayload == 0 {
		o.MaxPayload = defaultMaxPayload
	}
	if o.MaxInFlight == 0 {
		o.MaxInFlight = defaultMaxInFlight
	}
	if o.Workers == 0 {
		o.Workers = defaultWorkers
	}
	o.Exports = append([]Export(nil), o.Exports...)
	for i := range o.Exports {
		e := &o.Exports[i]
		if e.MinBlock == 0 {
			e.MinBlock = defaultMinBlock
		}
		if e.PrefBlock == 0 {
			e.PrefBlock = max(defaultPrefBlock, e.MinBlock)
		}
		if e.MaxBlock == 0 {
			e.MaxBlock = max(min(defaultMaxBlock, o.MaxPayload), e.PrefBlock)
		}
	}
}

func isPow2(v uint32) bool { return v != 0 && bits.OnesCount32(v) == 1 }

// Validate reports the first invalid field, naming it.
func (o *Options) Validate() error {
	if len(o.Exports) == 0 {
		return errors.New("nbdserver: Options.Exports is empty")
	}
	payload := o.MaxPayload
	if payload == 0 {
		payload = defaultMaxPayload
	}
	seen := make(map[string]bool, len(o.Exports))
	for i, e := range o.Exports {
		switch {
		case e.Device == nil:
			return fmt.Errorf("nbdserver: Options.Exports[%d] (%q): Device is nil", i, e.Name)
		case seen[e.Name]:
			return fmt.Errorf("nbdserver: Options.Exports[%d]: duplicate name %q", i, e.Name)
		case len(e.Name) > maxStringLen:
			return fmt.Errorf("nbdserver: Options.Exports[%d]: Name longer than %d bytes", i, maxStringLen)
		case len(e.Description) > maxStringLen:
			return fmt.Errorf("nbdserver: Options.Exports[%d]: Description longer than %d bytes", i, maxStringLen)
		case e.Device.Size() < 0:
			return fmt.Errorf("nbdserver: Options.Exports[%d]: negative device size", i)
		case e.MinBlock != 0 && (!isPow2(e.MinBlock) || e.MinBlock > 64<<10):
			return fmt.Errorf("nbdserver: Options.Exports[%d]: MinBlock %d is not a power of two <= 64 KiB", i, e.MinBlock)
		case e.PrefBlock != 0 && (!isPow2(e.PrefBlock) || e.PrefBlock < max(e.MinBlock, 512)):
			return fmt.Errorf("nbdserver: Options.Exports[%d]: PrefBlock %d is not a power of two >= max(MinBlock, 512)", i, e.PrefBlock)
		case e.MaxBlock != 0 && e.MaxBlock < e.PrefBlock:
			return fmt.Errorf("nbdserver: Options.Exports[%d]: MaxBlock %d < PrefBlock %d", i, e.MaxBlock, e.PrefBlock)
		case e.MaxBlock != 0 && e.MaxBlock > payload:
			return fmt.Errorf("nbdserver: Options.Exports[%d]: MaxBlock %d > MaxPayload %d", i, e.MaxBlock, payload)
		}
		seen[e.Name] = true
	}
	switch {
	case o.RequireTLS && o.TLSConfig == nil:
		return errors.New("nbdserver: Options.RequireTLS needs TLSConfig")
	case o.HandshakeTimeout < 0:
		return errors.New("nbdserver: Options.HandshakeTimeout is negative")
	case o.MaxOptions < 0:
		return errors.New("nbdserver: Options.MaxOptions is negative")
	case o.MaxOptionLen != 0 && o.MaxOptionLen < 1024:
		return errors.New("nbdserver: Options.MaxOptionLen is below 1 KiB")
	case o.MaxPayload != 0 && (o.MaxPayload < 4096 || o.MaxPayload > maxPayloadLimit):
		return errors.New("nbdserver: Options.MaxPayload is outside [4 KiB, 1 GiB]")
	case o.MaxInFlight < 0:
		return errors.New("nbdserver: Options.MaxInFlight is negative")
	case o.Workers < 0:
		return errors.New("nbdserver: Options.Workers is negative")
	}
	return nil
}
