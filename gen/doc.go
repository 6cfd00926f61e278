// Package gen synthesises NetFlow v5/v9, IPFIX and sFlow export from simulated routers, for demos, tests and load benchmarks.
package gen
