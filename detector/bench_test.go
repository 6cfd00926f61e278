package detector

import (
	"math/rand/v2"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/flowhound/flowhound/flow"
)

// realisticMix is the flow mix of notes/libraries.md: mostly TCP/443 and UDP/53, some
// TCP/80 and NTP, a little of everything else, spread over 50,000 customer hosts.
func realisticMix(n int) []flow.Record {
	rng := rand.New(rand.NewPCG(1, 2))
	out := make([]flow.Record, n)
	for i := range out {
		host := rng.IntN(50000)
		dst := netip.AddrFrom4([4]byte{10, byte(host >> 16), byte(host >> 8), byte(host)})
		src := netip.AddrFrom4([4]byte{203, 0, byte(rng.IntN(256)), byte(rng.IntN(256))})
		r := flow.Record{
			Received: t0, Start: t0 - int64(2*time.Second), End: t0,
			Exporter: edge1, SrcAddr: src, DstAddr: dst, InIf: uint32(1 + rng.IntN(4)),
			SrcPort: uint16(1024 + rng.IntN(60000)), Packets: uint64(1 + rng.IntN(20)), Version: 5,
			Has: flow.HasSrcAddr | flow.HasDstAddr | flow.HasProto | flow.HasTCPFlags | flow.HasSrcPort | flow.HasDstPort | flow.HasPackets | flow.HasBytes,
		}
		switch p := rng.IntN(100); {
		case p < 60:
			r.Proto, r.SrcPort, r.TCPFlags = flow.ProtoTCP, 443, flow.FlagACK|flow.FlagPSH
		case p < 85:
			r.Proto, r.SrcPort = flow.ProtoUDP, 53
		case p < 90:
			r.Proto, r.DstPort, r.TCPFlags = flow.ProtoTCP, 80, flow.FlagSYN|flow.FlagACK|flow.FlagFIN
		case p < 95:
			r.Proto, r.SrcPort, r.DstPort = flow.ProtoUDP, 123, 123
		default:
			r.Proto = uint8(rng.IntN(50))
		}
		r.Bytes = r.Packets * uint64(60+rng.IntN(1400))
		out[i] = r
	}
	return out
}

// BenchmarkProcess is the detector's per-flow path: the default rule pack, direction,
// resource keying and window updates, once the windows exist.
func BenchmarkProcess(b *testing.B) {
	cfg := testConfig()
	cfg.Networks = []Network{{Name: "customers", Prefixes: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}}
	d, _ := newTestDetector(b, cfg)
	recs := realisticMix(4096)
	d.Process(recs) // create the windows
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		d.Process(recs)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(recs)), "ns/flow")
}

// BenchmarkEvaluate is one evaluation pass over the windows of 50,000 hosts.
func BenchmarkEvaluate(b *testing.B) {
	cfg := testConfig()
	cfg.Networks = []Network{{Name: "customers", Prefixes: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}}
	d, _ := newTestDetector(b, cfg)
	d.Process(realisticMix(200000))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		d.Evaluate(t0 + int64(time.Second)/2)
	}
	b.ReportMetric(float64(len(d.all)), "windows")
}

// BenchmarkMemoryHosts reports the detector's heap per active host: 1,000,000 hosts of a
// monitored /12, each with a TCP and a UDP flow, as the memory budget (DESIGN.md) counts
// them. Run with -benchtime 1x.
func BenchmarkMemoryHosts(b *testing.B) {
	const hosts = 1_000_000
	for b.Loop() {
		cfg := testConfig()
		cfg.Networks = []Network{{Name: "customers", Prefixes: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/12")}}}
		runtime.GC()
		var before runtime.MemStats
		runtime.ReadMemStats(&before)
		d, _ := newTestDetector(b, cfg)
		batch := make([]flow.Record, 0, 4096)
		for h := 0; h < hosts; h++ {
			dst := netip.AddrFrom4([4]byte{10, byte(h >> 16), byte(h >> 8), byte(h)})
			for _, p := range []uint8{flow.ProtoTCP, flow.ProtoUDP} {
				batch = append(batch, flow.Record{Received: t0, Exporter: edge1, InIf: 3, SrcAddr: netip.MustParseAddr("203.0.113.1"),
					DstAddr: dst, Proto: p, SrcPort: 443, DstPort: 40000, TCPFlags: flow.FlagACK | flow.FlagPSH, Packets: 10, Bytes: 5000,
					Has: flow.HasSrcAddr | flow.HasDstAddr | flow.HasProto | flow.HasTCPFlags | flow.HasSrcPort | flow.HasDstPort | flow.HasPackets | flow.HasBytes})
			}
			if len(batch) >= 4000 {
				d.Process(batch)
				batch = batch[:0]
			}
		}
		d.Process(batch)
		d.Evaluate(t0 + int64(time.Second)/2)
		runtime.GC()
		var after runtime.MemStats
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapInuse-before.HeapInuse)/hosts, "B/host")
		b.ReportMetric(float64(len(d.all)), "windows")
		runtime.KeepAlive(d)
	}
}
