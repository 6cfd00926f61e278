package gen

import (
	"testing"
	"time"

	"github.com/flowhound/flowhound/flow"
)

func benchAppend(b *testing.B, perDatagram int, enc func(dst []byte, h Header, recs []flow.Record) ([]byte, int)) {
	export := testEpoch.UnixNano()
	recs := testRecords(perDatagram, false, export)
	h := Header{Boot: export - int64(time.Hour), Export: export}
	buf := make([]byte, 0, 2048)
	b.ReportAllocs()
	b.ResetTimer()
	n := 0
	for b.Loop() {
		var k int
		buf, k = enc(buf[:0], h, recs)
		n += k
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "records/s")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n), "ns/record")
}

// BenchmarkEncodeV5 encodes full 30-record datagrams into a reused buffer.
func BenchmarkEncodeV5(b *testing.B) {
	benchAppend(b, MaxV5Records, AppendV5)
}

func BenchmarkEncodeV9(b *testing.B) {
	benchAppend(b, 25, func(dst []byte, h Header, recs []flow.Record) ([]byte, int) {
		return AppendV9(dst, h, false, recs)
	})
}

func BenchmarkEncodeIPFIX(b *testing.B) {
	benchAppend(b, 19, func(dst []byte, h Header, recs []flow.Record) ([]byte, int) {
		return AppendIPFIX(dst, h, false, recs)
	})
}

func BenchmarkEncodeSFlow(b *testing.B) {
	export := testEpoch.UnixNano()
	recs := testRecords(6, false, export)
	samples := make([]SFlowSample, len(recs))
	for i := range recs {
		samples[i] = SFlowSample{Packet: recs[i], Seq: uint32(i)}
	}
	h := Header{Boot: export - int64(time.Hour), Export: export}
	buf := make([]byte, 0, 2048)
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		var k int
		buf, k = AppendSFlow(buf[:0], h, samples)
		n += k
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "records/s")
}

// BenchmarkSimulateV5 measures the whole generator without sockets: 1M background flows
// per second through the flow cache and the v5 encoder. One op is one record.
func BenchmarkSimulateV5(b *testing.B) {
	cfg := DefaultConfig()
	cfg.Rate = 1_000_000
	g, err := New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	d := max(time.Duration(b.N)*time.Microsecond, 100*time.Millisecond)
	b.ReportAllocs()
	b.ResetTimer()
	n := 0
	err = g.Simulate(testEpoch, d, func(d *Datagram) error {
		n += len(d.Records)
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "records/s")
}
