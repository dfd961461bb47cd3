package main

import (
	"fmt"

	"github.com/spf13/cobra"
)

func newCreateCmd() *cobra.Command {
	size := sizeValue(0)
	c := &cobra.Command{
		Use:   "create IMAGE --size SIZE",
		Short: "Create a sparse image file",
		Long: `create makes a new sparse image file of the given size. It allocates nothing:
the file occupies no disk space until data is written. An existing file is
never overwritten.

Sizes are binary: k/K/KiB = 1024, M/MiB, G/GiB, T/TiB; fractions are allowed
when the result is a whole number of bytes (1.5TiB).`,
		Example: `  extentd create disk.img --size 10G
  extentd create big.img --size 1.5TiB
  extentd create small.img --size 64MiB && extentd serve small.img`,
		Args: wrapArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !cmd.Flags().Changed("size") {
				return usageErrorf("create: --size is required (for example --size 10G)")
			}
			if size <= 0 {
				return usageErrorf("create: --size must be positive")
			}
			if err := createImage(args[0], int64(size)); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "created %s: %s (%d bytes, sparse)\n", args[0], humanSize(int64(size)), int64(size))
			return nil
		},
	}
	c.Flags().VarP(&size, "size", "s", "image size, e.g. 512M, 10G, 1.5TiB (binary units)")
	return c
}
