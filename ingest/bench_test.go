package ingest

import (
	"testing"

	"github.com/flowhound/flowhound/flow"
)

// Decode benchmarks: full datagrams as exporters send them, templates already known
// (steady state), the destination slice reused. ns/record is the figure the budget
// speaks of (DESIGN.md, Budgets).

func benchDecode(b *testing.B, setup [][]byte, p []byte) {
	d := NewDecoder(DecoderConfig{})
	for _, s := range setup {
		if _, err := d.Decode(exp1, now, s, nil); err != nil {
			b.Fatal(err)
		}
	}
	dst, err := d.Decode(exp1, now, p, make([]flow.Record, 0, 64))
	if err != nil || len(dst) == 0 {
		b.Fatalf("%d records, %v", len(dst), err)
	}
	n := len(dst)
	b.ReportAllocs()
	b.SetBytes(int64(len(p)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		dst, _ = d.Decode(exp1, now, p, dst[:0])
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/record")
}

func BenchmarkDecodeV5(b *testing.B) {
	benchDecode(b, nil, v5Datagram(30, 30, 1, 0))
}

// v9: 27 records of the 18-field Cisco IOS template in one 1451-byte datagram.
func BenchmarkDecodeV9(b *testing.B) {
	var recs []byte
	for i := 0; i < 27; i++ {
		recs = append(recs, v9Record(i)...)
	}
	tmpl := v9Datagram(1, 100000, 1700000000, 0, 0, set(0, v9Template(256, v9Fields...)))
	benchDecode(b, [][]byte{tmpl}, v9Datagram(27, 100000, 1700000000, 1, 0, set(256, recs)))
}

// IPFIX: IPv6 flows with absolute millisecond times and 8-byte counters (IOS XR style),
// 20 records per message.
func BenchmarkDecodeIPFIX(b *testing.B) {
	fields := []tfield{{27, 16, 0}, {28, 16, 0}, {62, 16, 0}, {7, 2, 0}, {11, 2, 0}, {4, 1, 0}, {6, 1, 0},
		{5, 1, 0}, {10, 4, 0}, {14, 4, 0}, {2, 8, 0}, {1, 8, 0}, {152, 8, 0}, {153, 8, 0}, {16, 4, 0}, {17, 4, 0},
		{29, 1, 0}, {30, 1, 0}}
	rec := cat(ip6("2001:db8::1"), ip6("2001:db8:1::2"), ip6("2001:db8::fe"), u16(40000), u16(443), []byte{6, 0x12, 0},
		u32(3), u32(7), be.AppendUint64(nil, 12), be.AppendUint64(nil, 18000),
		be.AppendUint64(nil, 1700000000000-10000), be.AppendUint64(nil, 1700000000000-1000),
		u32(64500), u32(64501), []byte{48, 64})
	var recs []byte
	for i := 0; i < 20; i++ {
		recs = append(recs, rec...)
	}
	tmpl := ipfixMessage(1700000000, 0, 0, set(2, ipfixTemplate(256, fields...)))
	benchDecode(b, [][]byte{tmpl}, ipfixMessage(1700000000, 0, 0, set(256, recs)))
}

// IPFIX with a variable-length field (the slower path).
func BenchmarkDecodeIPFIXVarLen(b *testing.B) {
	fields := []tfield{{8, 4, 0}, {12, 4, 0}, {7, 2, 0}, {11, 2, 0}, {4, 1, 0}, {2, 8, 0}, {1, 8, 0},
		{152, 8, 0}, {153, 8, 0}, {82, varLen, 0}}
	rec := cat(ip4("198.51.100.1"), ip4("192.0.2.1"), u16(40000), u16(443), []byte{6},
		be.AppendUint64(nil, 12), be.AppendUint64(nil, 18000),
		be.AppendUint64(nil, 1700000000000-10000), be.AppendUint64(nil, 1700000000000-1000),
		[]byte{5}, []byte("Gi0/1"))
	var recs []byte
	for i := 0; i < 30; i++ {
		recs = append(recs, rec...)
	}
	tmpl := ipfixMessage(1700000000, 0, 0, set(2, ipfixTemplate(256, fields...)))
	benchDecode(b, [][]byte{tmpl}, ipfixMessage(1700000000, 0, 0, set(256, recs)))
}

// sFlow: 8 flow samples with 128-byte sampled headers (802.1Q, IPv4, TCP) and one
// counter sample, as switches send them.
func BenchmarkDecodeSFlow(b *testing.B) {
	hdr := ethIPv4TCP("198.51.100.9", "192.0.2.80", 5555, 80, 0x10)
	hdr = append(hdr, make([]byte, 128-len(hdr))...)
	var samples [][]byte
	for i := 0; i < 8; i++ {
		samples = append(samples, sflowFlowSampleB(uint32(i+1), 2048, 11, 12, sflowRawHeader(1514, hdr),
			sflowRecord(1001, cat(u32(100), u32(0), u32(100), u32(0)))))
	}
	samples = append(samples, sflowSample(2, cat(u32(1), u32(11), u32(1), sflowGenericCounters(11, 1e12, 2e12))))
	benchDecode(b, nil, sflowDatagram(1, 0, samples...))
}
