#!/bin/sh
# flowhound side by side with FastNetMon, on loopback (BENCHMARKS.md explains each number).
#
#   bench/run.sh                     # the whole run, about 8-10 minutes
#   FHB_SKIP=memory,crash bench/run.sh
#   FHB_RATES=100000,1000000 bench/run.sh
#   FHB_TREE=head bench/run.sh       # measure the last commit (git archive), not the working tree
#   FHB_REPEAT=2 bench/run.sh        # each ladder step twice, the better kept (a shared machine)
#   FHB_NICE=-10 bench/run.sh        # engines and generators ahead of other work (root; both engines alike)
#   FHB_FNM_RCVBUF=0 bench/run.sh    # skip the ladder against FastNetMon with a 32 MiB socket buffer (-2 min)
#
# It builds flowhound and the bench tools, starts `flowhound serve` and FastNetMon
# (apt-get install -y fastnetmon; without it, flowhound is measured alone) on 127.0.0.1
# ports from FHB_PORT_BASE (default 29955: UDP base..base+3, TCP base+10..base+12), and
# runs bench/cmd/fhbench: the throughput ladder, a perf/pprof profile at 1M records/s,
# SYN-flood detection delay idle and under a 1M records/s background, kill -9, memory
# with 1,000,000 hosts, and the decoder benchmarks against goflow2. Results go to
# bench/out/DATE/ (results.md, results.json, logs, profiles). Everything it starts it
# stops again; every load is bounded, and so is the whole run (14 min hard limit).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
stamp=$(date -u +%Y%m%d-%H%M%S)
out=${FHB_OUT:-$here/out/$stamp}
bin=$out/bin
mkdir -p "$bin"

# The commit measured (read-only git; "+changes" when the working tree differs from it).
commit=$(cd "$root" && git rev-parse --short HEAD 2>/dev/null || echo unknown)
src=$root
if [ "${FHB_TREE:-work}" = head ]; then
	# The last commit, exported to the output directory, with this bench/ beside it.
	src=$out/src
	mkdir -p "$src"
	(cd "$root" && git archive HEAD) | tar -x -C "$src"
	rm -rf "$src/bench" && mkdir "$src/bench"
	(cd "$here" && tar -c --exclude=./out . ) | tar -x -C "$src/bench"
elif [ -n "$(cd "$root" && git status --porcelain --untracked-files=no 2>/dev/null | head -1)" ]; then
	commit="$commit+changes"
fi

echo "building $src into $bin"
(cd "$src" && GOWORK=off go build -o "$bin/flowhound" ./cmd/flowhound)
(cd "$src/bench" && go build -o "$bin/" ./cmd/fhbench ./cmd/hostload ./cmd/pipeprof)

fnm=/usr/sbin/fastnetmon
if [ ! -x "$fnm" ]; then
	echo "FastNetMon is not installed (apt-get install -y fastnetmon): measuring flowhound alone" >&2
	fnm=
fi
preload=
if [ -n "$fnm" ] && [ "${FHB_FNM_RCVBUF:-1}" = 1 ] && command -v cc >/dev/null; then
	cc -shared -fPIC -O2 -o "$bin/rcvbuf.so" "$src/bench/fnm/rcvbuf.c" -ldl
	preload=$bin/rcvbuf.so
fi

FHB_COMMIT=$commit FHB_NICE=${FHB_NICE:-0} timeout 15m nice -n "${FHB_NICE:-0}" "$bin/fhbench" \
	-flowhound "$bin/flowhound" -hostload "$bin/hostload" -pipeprof "$bin/pipeprof" \
	-fastnetmon "$fnm" -fnm-rcvbuf-preload "$preload" -out "$out" -bench-dir "$src/bench" \
	-rates "${FHB_RATES:-50000,100000,250000,500000,1000000,1250000,1500000,2000000}" \
	-port-base "${FHB_PORT_BASE:-29955}" -skip "${FHB_SKIP:-}" -repeat "${FHB_REPEAT:-1}"

echo
cat "$out/results.md"
