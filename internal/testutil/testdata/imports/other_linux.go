//go:build linux && ignoreme

package imports

// A file excluded by its build tags is checked all the same.
import _ "github.com/spf13/cobra"
