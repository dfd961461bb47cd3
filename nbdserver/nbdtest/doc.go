// Package nbdtest is an in-process NBD client for tests: a strict oracle
// for the server in package nbdserver and a tool for hostile tests.
//
// It is written from the protocol document (NetworkBlockDevice/nbd
// doc/proto.md), not from the server's code, and defines its own wire
// constants (proto.go) rather than importing the server's, so that a
// misreading of the spec on one side shows up as a test failure. Its
// constants and errno table (errors.go) repeat the server's on purpose:
// do not fold them into a shared package.
//
// # Layers
//
//   - Dial / Negotiate: connect, negotiate as Options say, return a *Client.
//   - Handshake: option by option (LIST, INFO, GO, EXPORT_NAME, ABORT,
//     STARTTLS, STRUCTURED_REPLY, EXTENDED_HEADERS, LIST/SET_META_CONTEXT),
//     plus raw option headers for illegal input.
//   - Client: asynchronous transmission with many requests in flight and
//     replies matched by cookie; every reply is validated (magic, cookie,
//     chunk bounds, overlap, coverage, DONE, descriptor rules) and a
//     violation fails the connection with ErrProtocol.
//   - Raw: transmission with no validation, for hostile tests.
//
// Server errors come back as *Error (transmission) or *OptionError
// (handshake); errors.Is matches them against Errno values (EINVAL, ...) and
// RepErr values (RepErrUnknown, ...).
//
// # Concurrency
//
// Client is safe for concurrent use; Handshake and Raw are not. Client runs
// one reader goroutine, stopped by Close or by a connection error.
//
// nbdtest imports only the standard library; it must not import nbdserver.
package nbdtest
