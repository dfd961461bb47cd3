package main

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"
)

// Exit codes.
const (
	exitOK    = 0
	exitError = 1 // a runtime failure (I/O, a port in use, a failed final writeback)
	exitUsage = 2 // a bad flag, argument or configuration value
)

// usageError marks an error caused by the command line; it exits with
// exitUsage.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usageErrorf(format string, args ...any) error {
	return usageError{fmt.Errorf(format, args...)}
}

// wrapArgs turns a positional-argument check into a usage error.
func wrapArgs(check cobra.PositionalArgs) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := check(cmd, args); err != nil {
			return usageError{err}
		}
		return nil
	}
}

// newRootCmd builds the command tree. It has no global state, so tests build
// a fresh one per case.
func newRootCmd(stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:   "extentd",
		Short: "NBD server with an extent-mapped write-back cache over sparse image files",
		Long: `extentd serves block devices over the Network Block Device protocol. Each
export is a sparse image file behind an in-memory write-back cache; FLUSH and
FUA are exact (data acknowledged by a flush survives a crash).`,
		Example: `  extentd serve                       # ./extentd.img (1 GiB, sparse) on 127.0.0.1:10809
  extentd create disk.img --size 10G
  extentd serve -p 10810 -e disk disk.img
  extentd info                        # ask the running server for its state
  nbdinfo nbd://127.0.0.1:10809`,
		SilenceErrors: true,
		SilenceUsage:  true,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usageErrorf("unknown command %q for extentd (try extentd --help)", args[0])
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error { return cmd.Help() },
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.CompletionOptions.DisableDefaultCmd = true
	root.AddCommand(newServeCmd(), newCreateCmd(), newInfoCmd(), newVersionCmd())
	for _, c := range root.Commands() {
		c.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	}
	return root
}

// run executes the command line and returns the process exit code. Errors
// are printed as one line on stderr.
func run(args []string, stdout, stderr io.Writer) int {
	root := newRootCmd(stdout, stderr)
	root.SetArgs(args)
	err := root.Execute()
	if err == nil {
		return exitOK
	}
	msg := strings.Join(strings.Fields(strings.ReplaceAll(err.Error(), "\n", "; ")), " ")
	fmt.Fprintf(stderr, "extentd: %s\n", msg)
	var ue usageError
	if errors.As(err, &ue) || errors.Is(err, errConfig) || errors.Is(err, errBadSize) {
		return exitUsage
	}
	return exitError
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "version",
		Short:   "Print the version",
		Example: "  extentd version",
		Args:    wrapArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := fmt.Fprintf(cmd.OutOrStdout(), "extentd %s\n", version)
			return err
		},
	}
}
