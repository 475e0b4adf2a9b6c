#!/usr/bin/env bash
# Issue 18's call-path workloads, side by side in one invocation: the
# gopher-lua peer (both option sets), moonbridge from this tree, and
# optionally moonbridge at an earlier commit (BEFORE=<rev>: this bench/
# directory built against that commit's library, so the workloads are the
# same). Each implementation runs in a process of its own; then the Pool
# rows (one Runtime vs a Pool of GOMAXPROCS) for each moonbridge build.
#
#   bench/issue18.sh                      # peer and this tree
#   BEFORE=main COUNT=3 bench/issue18.sh  # and main's library too
#
# Raw output: bench/out/issue18.txt (benchstat format).
set -euo pipefail
cd "$(dirname "$0")"
COUNT=${COUNT:-3}
BENCHTIME=${BENCHTIME:-1s}
WORK='SyncCall|RoundTripSeq|RoundTripConcurrent|FanOut|SuspendedMemory'
if [[ -z "${GO:-}" ]]; then
	if command -v go >/dev/null; then GO=go; else GO=/usr/local/go/bin/go; fi
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p out
raw=out/issue18.txt
"$GO" test -c -o "$tmp/after.test" .
if [[ -n "${BEFORE:-}" ]]; then
	mkdir "$tmp/before"
	git -C .. archive "$BEFORE" | tar -x -C "$tmp/before"
	rm -rf "$tmp/before/bench" && mkdir "$tmp/before/bench"
	cp -r ./*.go go.mod go.sum floor libir ./*.lua "$tmp/before/bench/" 2>/dev/null || true
	(cd "$tmp/before/bench" && "$GO" test -c -o "$tmp/before.test" .)
fi
run() { # binary, bench regexp, label
	echo "# $3: $1 -test.bench '$2' -test.count=$COUNT -test.benchtime=$BENCHTIME" | tee -a "$raw" >&2
	"$1" -test.run '^$' -test.bench "$2" -test.benchmem -test.count="$COUNT" \
		-test.benchtime="$BENCHTIME" -test.timeout 60m 2>&1 | sed "s|^Benchmark|$3:Benchmark|" | tee -a "$raw" >&2
}
echo "# loadavg start: $(cut -d' ' -f1-3 /proc/loadavg) (cores: $(nproc)); $(date -u)" >"$raw"
for impl in gopherlua-default gopherlua-tuned; do
	run "$tmp/after.test" "($WORK)/^$impl\$" peer
done
[[ -n "${BEFORE:-}" ]] && run "$tmp/before.test" "($WORK)/^moonbridge\$" before
run "$tmp/after.test" "($WORK)/^moonbridge\$" after
[[ -n "${BEFORE:-}" ]] && run "$tmp/before.test" 'Pool' before
run "$tmp/after.test" 'Pool' after
echo "# loadavg end: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$raw"
echo "raw: bench/$raw" >&2
