package main

import (
	"errors"
	"fmt"
	"math"
	"math/big"
	"strconv"
	"strings"
)

// errBadSize is wrapped by every error parseSize returns.
var errBadSize = errors.New("invalid size")

// sizeUnits maps a lower-case suffix to its multiplier. Single letters are
// binary powers, as in qemu-img (k = 1024); the IEC forms (KiB) say the same
// explicitly. Decimal SI forms (kB, MB) are rejected rather than guessed.
var sizeUnits = map[string]int64{
	"":    1,
	"b":   1,
	"k":   1 << 10,
	"kib": 1 << 10,
	"m":   1 << 20,
	"mib": 1 << 20,
	"g":   1 << 30,
	"gib": 1 << 30,
	"t":   1 << 40,
	"tib": 1 << 40,
	"p":   1 << 50,
	"pib": 1 << 50,
	"e":   1 << 60,
	"eib": 1 << 60,
}

// parseSize parses a byte count such as "512", "4k", "10G" or "1.5TiB".
// Suffixes are case-insensitive binary powers; a fraction is allowed when the
// result is a whole number of bytes. The result is never negative.
func parseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	i := 0
	for i < len(t) && (t[i] >= '0' && t[i] <= '9' || t[i] == '.') {
		i++
	}
	num, unit := t[:i], strings.ToLower(strings.TrimSpace(t[i:]))
	if num == "" {
		return 0, fmt.Errorf("%w %q: want a number with an optional unit such as 512, 4k, 10G or 1.5TiB", errBadSize, s)
	}
	mult, ok := sizeUnits[unit]
	if !ok {
		return 0, fmt.Errorf("%w %q: unknown unit %q (use k, M, G, T, P, E or KiB, MiB, GiB, TiB; all are powers of 1024)", errBadSize, s, t[i:])
	}
	if !strings.Contains(num, ".") {
		n, err := strconv.ParseInt(num, 10, 64)
		if err != nil || n > math.MaxInt64/mult {
			return 0, fmt.Errorf("%w %q: too large", errBadSize, s)
		}
		return n * mult, nil
	}
	r, ok := new(big.Rat).SetString(num)
	if !ok || strings.Count(num, ".") != 1 || strings.HasSuffix(num, ".") || strings.HasPrefix(num, ".") {
		return 0, fmt.Errorf("%w %q: malformed number", errBadSize, s)
	}
	r.Mul(r, new(big.Rat).SetInt64(mult))
	if !r.IsInt() {
		return 0, fmt.Errorf("%w %q: not a whole number of bytes", errBadSize, s)
	}
	if !r.Num().IsInt64() {
		return 0, fmt.Errorf("%w %q: too large", errBadSize, s)
	}
	return r.Num().Int64(), nil
}

// formatSize renders n bytes with the largest binary unit that divides it
// exactly, e.g. 1073741824 → "1GiB", 1536 → "1.5KiB" is not produced (1536 →
// "1536"). It round-trips through parseSize.
func formatSize(n int64) string {
	units := []struct {
		suffix string
		mult   int64
	}{{"EiB", 1 << 60}, {"PiB", 1 << 50}, {"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}}
	for _, u := range units {
		if n != 0 && n%u.mult == 0 {
			return strconv.FormatInt(n/u.mult, 10) + u.suffix
		}
	}
	return strconv.FormatInt(n, 10)
}

// humanSize renders n bytes approximately for people, e.g. "1.50 GiB".
func humanSize(n int64) string {
	const unit = 1024
	if n < unit {
		return strconv.FormatInt(n, 10) + " B"
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 5; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.2f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// sizeValue is a pflag.Value holding a byte count parsed by parseSize, so a
// bad size is reported as a flag error naming the flag.
type sizeValue int64

func (v *sizeValue) String() string {
	if *v == 0 {
		return "0"
	}
	return formatSize(int64(*v))
}

func (v *sizeValue) Set(s string) error {
	n, err := parseSize(s)
	if err != nil {
		return err
	}
	*v = sizeValue(n)
	return nil
}

func (v *sizeValue) Type() string { return "size" }
