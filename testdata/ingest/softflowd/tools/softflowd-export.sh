#!/bin/bash
# Rebuilds files/softflowd__NAME.pcap: softflowd reads traffic.pcap and exports to
# 127.0.0.1:PORT while tcpdump captures the export on lo. Run as root from tools/,
# after `go run ./traffic > traffic.pcap` (run with GOFLAGS=-mod=mod outside the
# module: traffic/ lives under testdata, which the go tool ignores).
#
# usage: softflowd-export.sh NAME PORT softflowd-options...
#   e.g. softflowd-export.sh ipfix-ms 9104 -v 10 -6 -a -A milli
#
# softflowd 1.1.0 blocks on its control socket before reading a capture file, so the
# script pokes it with softflowctl, then shuts it down to expire every flow. -a makes
# softflowd stamp the export with the capture's clock, so flow times, export time and
# systemInitTime agree.
set -eu
name=$1; port=$2; shift 2
packets=$(capinfos -c -M traffic.pcap | awk '/Number/{print $NF}')
ctl=$(mktemp -u /tmp/softflowd.XXXXXX)
tcpdump -i lo -w "../files/softflowd__$name.pcap" -U "udp port $port" 2>/dev/null & tpid=$!
sleep 1
softflowd -d -r traffic.pcap -n "127.0.0.1:$port" -p "$ctl.pid" -c "$ctl" "$@" > /dev/null 2>&1 & spid=$!
sleep 0.5
for _ in $(seq 20); do
  softflowctl -c "$ctl" statistics 2>/dev/null | grep -q "Packets processed: $packets" && break
  sleep 0.3
done
softflowctl -c "$ctl" shutdown > /dev/null 2>&1 || true
sleep 1
kill "$spid" 2>/dev/null || true
kill "$tpid"; wait "$tpid" 2>/dev/null || true
TZ=UTC WIRESHARK_CONFIG_DIR=$(mktemp -d) tshark -r "../files/softflowd__$name.pcap" -2 \
  -d "udp.port==$port,cflow" -T json -J "cflow sflow" > "../oracle/softflowd__$name.pcap.json"
