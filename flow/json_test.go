package flow

import (
	"encoding/json"
	"net/netip"
	"testing"
	"time"
)

func TestJSONRoundTrip(t *testing.T) {
	start := time.Date(2026, 11, 26, 12, 0, 0, 123456789, time.UTC).UnixNano()
	tests := []struct {
		name string
		rec  Record
		want string
	}{
		{"v5 with zero flags kept", Record{Exporter: netip.MustParseAddr("192.0.2.1"), Version: VersionNetFlow5,
			SrcAddr: netip.MustParseAddr("203.0.113.9"), DstAddr: netip.MustParseAddr("192.0.2.10"), Proto: 6, TCPFlags: 0,
			Packets: 1, Bytes: 40, Start: start, End: start,
			Has: HasSrcAddr | HasDstAddr | HasProto | HasTCPFlags | HasPackets | HasBytes | HasStart | HasEnd},
			`{"exporter":"192.0.2.1","version":5,"observation_domain":0,"src_addr":"203.0.113.9","dst_addr":"192.0.2.10","proto":6,"tcp_flags":0,"packets":1,"bytes":40,"start":"2026-11-26T12:00:00.123456789Z","end":"2026-11-26T12:00:00.123456789Z"}`},
		{"sflow without flags", Record{Exporter: netip.MustParseAddr("2001:db8::1"), Version: VersionSFlow5, SamplingRate: 1000,
			SrcAddr: netip.MustParseAddr("2001:db8::2"), Has: HasSrcAddr},
			`{"exporter":"2001:db8::1","version":"sflow5","observation_domain":0,"src_addr":"2001:db8::2","sampling_rate":1000}`},
		{"v8 prefix aggregation", Record{Version: VersionNetFlow8, Agg: 5, SrcAddr: netip.MustParseAddr("10.1.0.0"), SrcMask: 16,
			DstAddr: netip.MustParseAddr("192.0.2.0"), DstMask: 24, Flows: 7, Has: HasSrcAddr | HasDstAddr | HasSrcMask | HasDstMask | HasFlows},
			`{"version":8,"observation_domain":0,"src_addr":"10.1.0.0","dst_addr":"192.0.2.0","flows":7,"src_mask":16,"dst_mask":24,"agg":"prefix","src_prefix":"10.1.0.0/16","dst_prefix":"192.0.2.0/24"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := string(tt.rec.AppendJSON(nil))
			if got != tt.want {
				t.Fatalf("got  %s\nwant %s", got, tt.want)
			}
			if !json.Valid([]byte(got)) {
				t.Fatal("invalid JSON")
			}
			var back Record
			if err := json.Unmarshal([]byte(got), &back); err != nil {
				t.Fatal(err)
			}
			if string(back.AppendJSON(nil)) != got {
				t.Errorf("round trip: %s", back.AppendJSON(nil))
			}
		})
	}
}

func BenchmarkAppendJSON(b *testing.B) {
	r := Record{Exporter: netip.MustParseAddr("192.0.2.1"), Version: 5, SrcAddr: netip.MustParseAddr("203.0.113.9"),
		DstAddr: netip.MustParseAddr("192.0.2.10"), Proto: 6, Packets: 10, Bytes: 4000, Start: 1, End: 2,
		Has: HasSrcAddr | HasDstAddr | HasProto | HasPackets | HasBytes | HasStart | HasEnd}
	buf := make([]byte, 0, 512)
	b.ReportAllocs()
	for b.Loop() {
		buf = r.AppendJSON(buf[:0])
	}
}
