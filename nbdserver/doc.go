// Package nbdserver serves device.Device exports over the Network Block
// Device protocol (fixed newstyle handshake, simple, structured and extended
// replies, base:allocation block status, STARTTLS). It owns the wire format,
// request validation and the mapping of device errors to NBD error codes; it
// knows nothing about caching or allocation.
//
// # Reading the source
//
// proto.go holds every wire constant and the header encoders and decoders;
// handshake.go negotiates options; conn.go runs one connection's
// transmission phase; validate.go checks a request against what this
// connection negotiated; handle.go calls the device; reply.go writes replies;
// errno.go is the one place device errors become NBD error codes.
//
// # Concurrency
//
// A Server is safe for concurrent use: Serve may run for several listeners
// at once and Shutdown may be called from any goroutine. Each connection has
// one reader goroutine (decode and validate), a bounded pool of worker
// goroutines (device I/O) and one writer goroutine that owns the socket's
// write side and coalesces replies that are ready together into one write.
// No lock is held across device I/O. Requests in flight per connection are
// bounded by Options.MaxInFlight; payload buffers come from per-size-class
// pools, so a READ or WRITE allocates nothing in steady state.
//
// # Imports
//
// nbdserver imports package device, zap and the standard library; it must
// not import the cache, allocator or state tree (see deps_test.go).
package nbdserver
