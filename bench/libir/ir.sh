#!/usr/bin/env bash
# Instructions per call of each workload in work.lua, stock Lua 5.4's
# function against moonbridge's, counted by valgrind (cachegrind): load on
# the machine does not change them. Needs valgrind, gcc, pkg-config,
# liblua5.4-dev, libuv1-dev.
#
#   bench/libir/ir.sh                 # every workload
#   bench/libir/ir.sh sort/1000 20    # one, with its own count of calls
set -euo pipefail
cd "$(dirname "$0")"
core=../../core
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# shellcheck disable=SC2046
gcc -O2 -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -I"$core" ir.c "$core/strlib.c" "$core/tablib.c" \
	"$core/limit.c" $(pkg-config --cflags --libs lua5.4 libuv) -o "$tmp/ir"
cp work.lua "$tmp/"
cd "$tmp"
count() { valgrind --tool=cachegrind --cache-sim=no --cachegrind-out-file=/dev/null ./ir "$@" 2>&1 |
	awk '/I *refs:/ { gsub(",", "", $NF); print $NF }'; }
run() {
	local w=$1 n=$2 s0 s1 o0 o1 stock ours
	s0=$(count stock "$w" 0); s1=$(count stock "$w" "$n")
	o0=$(count ours "$w" 0); o1=$(count ours "$w" "$n")
	stock=$(((s1 - s0) / n)); ours=$(((o1 - o0) / n))
	awk -v w="$w" -v s="$stock" -v o="$ours" 'BEGIN { printf "%-20s %12d %12d %+7.1f%%\n", w, s, o, 100 * (o - s) / s }'
}
printf '%-20s %12s %12s %8s\n' workload "stock Ir" "ours Ir" diff
if [[ $# -gt 0 ]]; then
	run "$1" "${2:-20000}"
	exit
fi
for w in find/plain find/pattern match/captures gmatch/words gsub/string gsub/function gsub/table \
	rep/100 sub/4 byte/1 upper/40 utf8.len/20 concat/100 insert/end remove/end unpack/10 move/100; do
	run "$w" 20000
done
run sort/1000 20
run "sort/1000 function" 20
