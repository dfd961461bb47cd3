// Package testutil holds helpers shared by the project's tests. It is imported
// only from _test.go files.
package testutil
