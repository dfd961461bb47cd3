package main

import (
	"errors"
	"testing"
)

func TestParseSize(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		bad  bool
	}{
		{in: "0", want: 0},
		{in: "512", want: 512},
		{in: "512b", want: 512},
		{in: "4k", want: 4096},
		{in: "4K", want: 4096},
		{in: "4KiB", want: 4096},
		{in: "4kib", want: 4096},
		{in: "64M", want: 64 << 20},
		{in: "64MiB", want: 64 << 20},
		{in: "10G", want: 10 << 30},
		{in: "10g", want: 10 << 30},
		{in: "1.5TiB", want: 3 << 39},
		{in: "1.5GiB", want: 3 << 29},
		{in: "0.5k", want: 512},
		{in: "2T", want: 2 << 40},
		{in: "1P", want: 1 << 50},
		{in: "7E", want: 7 << 60},
		{in: " 8k ", want: 8192},
		{in: "9223372036854775807", want: 9223372036854775807},
		{in: "", bad: true},
		{in: "k", bad: true},
		{in: "-1", bad: true},
		{in: "-4k", bad: true},
		{in: "1.5", bad: true},    // fractional bytes
		{in: "0.3k", bad: true},   // 307.2 bytes
		{in: "10X", bad: true},    // unknown unit
		{in: "10kB", bad: true},   // decimal unit rejected, not guessed
		{in: "10MB", bad: true},   //
		{in: "8E", bad: true},     // 2^63 overflows int64
		{in: "16384P", bad: true}, // overflow
		{in: "9223372036854775808", bad: true},
		{in: "1..5G", bad: true},
		{in: ".5G", bad: true},
		{in: "5.G", bad: true},
		{in: "1.2.3G", bad: true},
		{in: "1e3", bad: true},
		{in: "0x10", bad: true},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := parseSize(tc.in)
			if tc.bad {
				if err == nil {
					t.Fatalf("parseSize(%q) = %d, want an error", tc.in, got)
				}
				if !errors.Is(err, errBadSize) {
					t.Fatalf("parseSize(%q) error %v does not wrap errBadSize", tc.in, err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("parseSize(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
			}
		})
	}
}

func TestFormatSizeRoundTrip(t *testing.T) {
	for _, n := range []int64{0, 1, 511, 512, 1536, 4096, 1 << 30, 3 << 39, 1<<62 + 1} {
		s := formatSize(n)
		got, err := parseSize(s)
		if err != nil || got != n {
			t.Errorf("parseSize(formatSize(%d) = %q) = %d, %v", n, s, got, err)
		}
	}
	if got := formatSize(1 << 30); got != "1GiB" {
		t.Errorf("formatSize(1<<30) = %q, want 1GiB", got)
	}
}

func TestHumanSize(t *testing.T) {
	tests := map[int64]string{0: "0 B", 1023: "1023 B", 1024: "1.00 KiB", 3 << 29: "1.50 GiB"}
	for n, want := range tests {
		if got := humanSize(n); got != want {
			t.Errorf("humanSize(%d) = %q, want %q", n, got, want)
		}
	}
}
