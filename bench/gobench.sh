#!/usr/bin/env bash
# Go micro-benchmarks of every hot path (written by the package owners:
# statetree, nbdserver decode/encode, extentcache read/write/writeback, ...),
# summarised with benchstat when it can be had.
#
#   bench/gobench.sh                      # every package with a Benchmark, -count=6
#   bench/gobench.sh -count 10 ./statetree/ ./extentcache/
#   bench/gobench.sh -quick               # -count=1 -benchtime=1x: does it run?
#   bench/gobench.sh -bench 'ReadAt' -benchtime 2s
#   bench/gobench.sh -compare OLD.txt     # benchstat OLD.txt NEW.txt
#
# Raw output: bench/results/gobench-STAMP.txt (git-ignored); the benchstat
# table goes to stdout and to gobench-STAMP.benchstat.txt next to it.
# benchstat: the one in PATH, else `go run golang.org/x/perf/cmd/benchstat@latest`
# (needs the Go module proxy once), else the raw lines are printed.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$here")
count=6 benchtime="" bench="." compare="" pkgs=()
while [ $# -gt 0 ]; do
  case $1 in
    -count|--count) count=$2; shift 2 ;;
    -benchtime|--benchtime) benchtime=$2; shift 2 ;;
    -bench|--bench) bench=$2; shift 2 ;;
    -compare|--compare) compare=$2; shift 2 ;;
    -quick|--quick) count=1 benchtime=1x; shift ;;
    -h|--help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "gobench.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    *) pkgs+=("$1"); shift ;;
  esac
done
cd "$repo"
command -v go >/dev/null || { echo "gobench.sh: needs Go (https://go.dev/dl or package golang)" >&2; exit 1; }
if [ ${#pkgs[@]} -eq 0 ]; then
  # packages whose tests define at least one Benchmark
  mapfile -t pkgs < <(grep -rl --include='*_test.go' -E '^func Benchmark' . |
    grep -v '/testdata/' | xargs -r -n1 dirname | sort -u)
fi
if [ ${#pkgs[@]} -eq 0 ]; then
  echo "gobench.sh: no package has a Benchmark yet" >&2; exit 1
fi
mkdir -p "$here/results"
stamp=$(date +%Y%m%d-%H%M%S)
out="$here/results/gobench-$stamp.txt"
args=(test -run='^$' -bench="$bench" -benchmem -count="$count")
[ -n "$benchtime" ] && args+=(-benchtime="$benchtime")
echo "go ${args[*]} ${pkgs[*]}  > $out" >&2
{
  echo "# $(date -u +%FT%TZ) $(go version) $(git log -1 --format='%h %s' 2>/dev/null || true)"
  echo "# load: $(cat /proc/loadavg)   nproc: $(nproc)"
} > "$out"
set +o pipefail
go "${args[@]}" "${pkgs[@]}" 2>&1 | tee -a "$out" | grep -E '^(Benchmark|ok|FAIL|---|panic)' >&2
rc=${PIPESTATUS[0]}
set -o pipefail
run_benchstat() {
  if type -P benchstat >/dev/null; then command benchstat "$@"
  else (cd /tmp && GOFLAGS= go run golang.org/x/perf/cmd/benchstat@latest "$@"); fi
}
files=("$out")
[ -n "$compare" ] && files=("$(realpath "$compare")" "$out")
if run_benchstat "${files[@]}" > "${out%.txt}.benchstat.txt" 2>/dev/null; then
  cat "${out%.txt}.benchstat.txt"
else
  echo "(benchstat unavailable: raw results)"; grep -E '^Benchmark' "$out" || true
fi
echo "raw: $out" >&2
exit $rc
