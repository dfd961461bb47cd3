package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
)

func pid() int { return os.Getpid() }

func newInfoCmd() *cobra.Command {
	var (
		addr     string
		addrFile string
		asJSON   bool
		timeout  time.Duration
	)
	c := &cobra.Command{
		Use:   "info",
		Short: "Show the state of a running server (size, allocated, dirty, cache hit ratio)",
		Long: `info asks a running extentd for its state through the admin endpoint
(` + infoPath + ` on --admin-address, default ` + defaultAdminAddress + `) and
prints, for each export: its size, the bytes allocated in the image file, the
bytes reserved for data not yet written back, dirty and writeback bytes, and the
cache hit ratio.`,
		Example: `  extentd info
  extentd info --admin-address 127.0.0.1:9100
  extentd info --addr-file /run/extentd/addr --json`,
		Args: wrapArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if addrFile != "" {
				a, err := adminFromAddrFile(addrFile)
				if err != nil {
					return err
				}
				addr = a
			}
			if addr == "" {
				return usageErrorf("info: --admin-address is empty")
			}
			info, raw, err := fetchInfo(cmd.Context(), addr, timeout)
			if err != nil {
				return err
			}
			if asJSON {
				_, err := cmd.OutOrStdout().Write(raw)
				return err
			}
			return printInfo(cmd.OutOrStdout(), info)
		},
	}
	c.Flags().StringVar(&addr, "admin-address", defaultAdminAddress, "admin endpoint of the running server")
	c.Flags().StringVar(&addrFile, "addr-file", "", "read the admin address from the server's --addr-file")
	c.Flags().BoolVar(&asJSON, "json", false, "print the raw JSON document")
	c.Flags().DurationVar(&timeout, "timeout", 5*time.Second, "give up after this long")
	return c
}

// adminFromAddrFile returns the admin address written by serve --addr-file.
func adminFromAddrFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if u, ok := strings.CutPrefix(sc.Text(), "admin http://"); ok {
			return u, nil
		}
	}
	return "", fmt.Errorf("%s has no admin line (was the server started with --admin-address=\"\"?)", path)
}

func fetchInfo(ctx context.Context, addr string, timeout time.Duration) (*serverInfo, []byte, error) {
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+infoPath, nil)
	if err != nil {
		return nil, nil, usageErrorf("--admin-address %q: %v", addr, err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, nil, fmt.Errorf("no extentd admin endpoint at %s (is the server running with --admin-address?): %w", addr, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, nil, fmt.Errorf("%s%s: %s", addr, infoPath, resp.Status)
	}
	var info serverInfo
	if err := json.Unmarshal(raw, &info); err != nil {
		return nil, nil, fmt.Errorf("%s%s: not an extentd info document: %w", addr, infoPath, err)
	}
	return &info, raw, nil
}

func printInfo(w io.Writer, info *serverInfo) error {
	fmt.Fprintf(w, "extentd %s, pid %d, up %s, listening on %s\n", info.Version, info.Pid,
		(time.Duration(info.Uptime) * time.Second).Round(time.Second), strings.Join(info.Listen, " "))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "EXPORT\tIMAGE\tCACHE\tSIZE\tALLOCATED\tRESERVED\tDIRTY\tWRITEBACK\tHIT RATIO")
	for _, e := range info.Exports {
		name := e.Name
		if name == "" {
			name = `""`
		}
		ratio := "-"
		if e.CacheHits+e.CacheMisses > 0 {
			ratio = fmt.Sprintf("%.1f%% (%d/%d)", 100*e.CacheHitRatio, e.CacheHits, e.CacheHits+e.CacheMisses)
		}
		mode := e.Cache
		if e.ReadOnly {
			mode += ",ro"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", name, e.Image, mode,
			humanSize(e.Size), humanSize(e.Allocated), humanSize(e.Reserved), humanSize(e.Dirty), humanSize(e.Writeback), ratio)
	}
	return tw.Flush()
}
