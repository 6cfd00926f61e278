// Package bench holds flowhound's end-to-end benchmarks and the measurements behind
// BENCHMARKS.md. It is a module of its own so that comparison-only dependencies (goflow2)
// stay out of the product's go.mod; go.work builds it against this working tree.
//
//   - run.sh: the side-by-side run against FastNetMon (throughput ladder, profiles,
//     detection delay, kill -9, memory with 1M hosts, decoders), driven by ./cmd/fhbench;
//     it writes out/DATE/results.md and results.json; results/ keeps published runs;
//   - decode_test.go: flowhound's NetFlow decoders against goflow2's on the same datagrams;
//   - ./cmd/hostload: a NetFlow v5 sender that spreads flows over N distinct hosts;
//   - ./cmd/pipeprof: the serve pipeline (UDP listener, decoder, detector, default rules,
//     baselines) in one process with CPU and heap profiles;
//   - ./fnm/rcvbuf.c: an LD_PRELOAD shim that gives FastNetMon's NetFlow socket the same
//     32 MiB receive buffer flowhound uses.
package bench
