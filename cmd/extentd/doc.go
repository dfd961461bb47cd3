// Command extentd serves block devices over NBD from sparse image files
// through an extent-mapped write-back cache.
//
// main.go only wires flags and the config file into Options, calls the
// constructors (alloc.Open → extentcache.New → nbdserver.New) and runs
// Serve; the shutdown order is Server.Shutdown → Cache.Close → File.Close.
// The subcommands are serve, create, info and version; README.md and
// docs/configuration.md describe them.
package main
