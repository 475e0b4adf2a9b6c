#!/usr/bin/env bash
# Runs the floor programs (floor/*.c) and every Go benchmark in this module,
# saves the raw output to out/latest.txt and prints a summary table of
# medians (workload x implementation) plus the floor lines.
#
# Environment:
#   COUNT      go test -count (default 3)
#   BENCHTIME  go test -benchtime (default 1s)
#   BENCH      go test -bench regexp for the workloads (default .)
#   IMPLS      implementations, each benchmarked in a process of its own so
#              that one's heap and GC state cannot slow another's
#              (default: gopherlua-default gopherlua-tuned moonbridge
#              lua5.4 lua-cjson dkjson; lua5.4 is stock Lua in a process
#              of its own, the floor of the VM workloads (Fib, Fib35,
#              StringBuild); the last two are the json module's peers and
#              run only the JSON workloads)
#   FLOOR_MS   target ms per floor repetition (default 300)
#   MB_SLEEPING_N  tasks per SleepingTasks batch (default 100000; the
#              1,000,000-task target: MB_SLEEPING_N=1000000)
#   GO         go binary (default: go on PATH, else /usr/local/go/bin/go)
#   CC         C compiler (default gcc)
set -euo pipefail

cd "$(dirname "$0")"
COUNT=${COUNT:-3}
BENCHTIME=${BENCHTIME:-1s}
BENCH=${BENCH:-.}
IMPLS=${IMPLS:-gopherlua-default gopherlua-tuned moonbridge lua5.4 lua-cjson dkjson}
CC=${CC:-gcc}
if [[ -z "${GO:-}" ]]; then
	if command -v go >/dev/null; then GO=go; else GO=/usr/local/go/bin/go; fi
fi

# ---- json peers ---------------------------------------------------------------
# Debian's lua-cjson (C) and dkjson (pure Lua), loaded with require into
# moonbridge's Lua 5.4 for the JSON workloads: installed when missing
# (apt-get as root, else the command to run is printed).
json_peers_present() {
	if command -v lua5.4 >/dev/null; then
		lua5.4 -e 'require("cjson"); require("dkjson")' >/dev/null 2>&1
	else
		dpkg -s lua-cjson lua-dkjson >/dev/null 2>&1
	fi
}
if [[ " $IMPLS " == *" lua-cjson "* || " $IMPLS " == *" dkjson "* ]] && ! json_peers_present; then
	if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null; then
		echo "installing lua-cjson lua-dkjson" >&2
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq lua-cjson lua-dkjson >/dev/null
	else
		echo "the JSON benchmarks need Debian's lua-cjson and lua-dkjson; install them with:" >&2
		echo "  sudo apt-get update && sudo apt-get install -y lua-cjson lua-dkjson" >&2
		exit 1
	fi
fi

mkdir -p out
raw=out/latest.txt
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

load_start=$(cut -d' ' -f1-3 /proc/loadavg)

# ---- floor ------------------------------------------------------------------
CFLAGS="-O2 -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror"
PKG=$(pkg-config --cflags --libs lua5.4 libuv)
: >"$tmp/floor.txt"
for src in floor/*.c; do
	bin="$tmp/$(basename "$src" .c)"
	# shellcheck disable=SC2086
	$CC $CFLAGS "$src" $PKG -lpthread -o "$bin"
	echo "floor: $(basename "$bin")" >&2
	"$bin" | tee -a "$tmp/floor.txt" >&2
done

# ---- go benchmarks ----------------------------------------------------------
{
	echo "# floor (C, median of 3)"
	sed 's/^/#floor /' "$tmp/floor.txt"
	echo
} >"$raw"
"$GO" test -c -o "$tmp/bench.test" .
status=0
for impl in $IMPLS; do
	# The parentheses keep an alternation in BENCH (A|B) from taking the
	# implementation filter for its last alternative only.
	echo "bench.test -test.bench '($BENCH)/^$impl\$' -test.count=$COUNT -test.benchtime=$BENCHTIME" >&2
	"$tmp/bench.test" -test.run '^$' -test.bench "($BENCH)/^$impl\$" -test.benchmem \
		-test.count="$COUNT" -test.benchtime="$BENCHTIME" -test.timeout 60m 2>&1 | tee -a "$raw" >&2 ||
		status=$?
done
load_end=$(cut -d' ' -f1-3 /proc/loadavg)
echo "# loadavg start: $load_start end: $load_end (cores: $(nproc))" >>"$raw"

# ---- summary ------------------------------------------------------------------
echo
echo "== medians of $COUNT runs (benchtime $BENCHTIME); raw: bench/$raw"
echo "   loadavg at start: $load_start, at end: $load_end on $(nproc) cores"
if awk -v a="${load_start%% *}" -v b="${load_end%% *}" -v c="$(nproc)" 'BEGIN { exit !(a > c / 2 || b > c / 2) }'; then
	echo "   WARNING: the machine was busy; figures are noisy"
fi
awk '
function median(key,   n, i, j, t, a) {
	n = cnt[key]
	for (i = 1; i <= n; i++) a[i] = val[key, i]
	for (i = 2; i <= n; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] > t; j--) a[j + 1] = a[j]; a[j + 1] = t }
	if (n % 2) return a[(n + 1) / 2]
	return (a[n / 2] + a[n / 2 + 1]) / 2
}
function fmt(v) {
	if (v >= 1e6) return sprintf("%.3gM", v / 1e6)
	if (v >= 1e4) return sprintf("%.0f", v)
	if (v >= 100) return sprintf("%.0f", v)
	return sprintf("%.3g", v)
}
BEGIN {
	# row: workload, metric in the output, scale, shown unit
	nrow = split("RoundTripSeq ns/op 1 ns/call;" \
		"RoundTripConcurrent trips/s 1 trips/s;" \
		"RoundTripConcurrent ns/op 1 ns/trip;" \
		"SyncCall ns/op 1 ns/call;" \
		"SpawnFinish ns/op 1 ns/spawn;" \
		"SpawnFinish B/op 1 B/spawn;" \
		"YieldSwitch ns/op 1 ns/switch;" \
		"CallFromGo ns/op 1 ns/call;" \
		"SuspendedMemory B/task 1 B/task;" \
		"SuspendedMemory stackB/task 1 stackB/task;" \
		"SuspendedMemory totalB/task 1 totalB/task;" \
		"Fib ns/op 1e-6 ms/run;" \
		"Fib35 ns/op 1e-6 ms/run;" \
		"StringBuild ns/op 1e-6 ms/run;" \
		"ChannelPingPong ns/op 1 ns/handoff;" \
		"SelectEight ns/op 1 ns/select;" \
		"PromiseChain ns/op 1 ns/step;" \
		"Pipeline3 ns/op 1 ns/item;" \
		"Pipeline3 items/s 1 items/s;" \
		"SleepingTasks B/task 1 B/task;" \
		"SleepingTasks ns/op 1 ns/task;" \
		"SleepingTasks firstns/task 1 ns/task(1st);" \
		"SleepingTasks rssB/task 1 rssB/task(1st);" \
		"StreamChunks ns/op 1 ns/chunk;" \
		"StreamChunks chunks/s 1 chunks/s;" \
		"FanOut ns/op 1e-6 ms/fanout;" \
		"GenerateAll ns/op 1 ns/request;" \
		"GenerateAll requests/s 1 requests/s;" \
		"GenerateAll conns/run 1 conns/run;" \
		"JSONEncodeLLM ns/op 1e-3 us/doc;" \
		"JSONDecodeLLM ns/op 1e-3 us/doc;" \
		"JSONEncodeSmall ns/op 1e-6 ms/run;" \
		"JSONDecodeSmall ns/op 1e-6 ms/run;" \
		"JSONEncodeLLM cpu-ns/op 1e-3 cpu-us/doc;" \
		"JSONDecodeLLM cpu-ns/op 1e-3 cpu-us/doc;" \
		"JSONEncodeSmall cpu-ns/op 1e-6 cpu-ms/run;" \
		"JSONDecodeSmall cpu-ns/op 1e-6 cpu-ms/run;" \
		"JSONEncodeLLM MB/s 1 MB/s;" \
		"JSONDecodeLLM MB/s 1 MB/s", rows, ";")
}
/^#floor / { floor[++nfloor] = substr($0, 8); next }
/^Benchmark[A-Za-z0-9]+\/[^ \t]+/ {
	name = $1; sub(/^Benchmark/, "", name); sub(/-[0-9]+$/, "", name)
	k = index(name, "/"); w = substr(name, 1, k - 1); impl = substr(name, k + 1)
	if (!(impl in seen)) { seen[impl] = 1; impls[++nimpl] = impl }
	for (i = 3; i < NF; i += 2) { key = w SUBSEP impl SUBSEP $(i + 1); val[key, ++cnt[key]] = $i }
}
END {
	line = sprintf("%-20s %-12s", "workload", "unit")
	for (c = 1; c <= nimpl; c++) line = line sprintf(" %18s", impls[c])
	print line
	for (r = 1; r <= nrow; r++) {
		split(rows[r], f, " ")
		line = sprintf("%-20s %-12s", f[1], f[4]); any = 0
		for (c = 1; c <= nimpl; c++) {
			key = f[1] SUBSEP impls[c] SUBSEP f[2]
			if (cnt[key]) { line = line sprintf(" %18s", fmt(median(key) * f[3])); any = 1 }
			else line = line sprintf(" %18s", "-")
		}
		if (any) print line
	}
	print ""
	print "floor (C, median of 3):"
	for (i = 1; i <= nfloor; i++) { split(floor[i], f, " "); printf "  %-24s %14s %s\n", f[1], f[2], f[3] }
}' "$raw"

if command -v benchstat >/dev/null; then
	echo
	benchstat "$raw" || true
fi
exit "$status"
