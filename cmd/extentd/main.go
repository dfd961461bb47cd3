package main

import "os"

// version is stamped at build time:
//
//	go build -ldflags "-X main.version=v1.2.3" ./cmd/extentd
var version = "dev"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}
