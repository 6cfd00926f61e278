package main

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/flowhound/flowhound/config"
	"github.com/flowhound/flowhound/detector"
	"github.com/flowhound/flowhound/flow"
	"github.com/flowhound/flowhound/gen"
	"github.com/flowhound/flowhound/ingest"
)

// pipelineStream is one second of NetFlow v5 export at 1,000,000 flows/s from 8 edge
// routers: 100,000 monitored hosts in 10.0.0.0/12, 60 % TCP/443, 25 % UDP/53, 10 % TCP/80
// or UDP/123, 5 % other protocols; 80 % incoming, 15 % outgoing, 5 % internal; flows
// lasting up to 30 s. Each datagram is 30 records from one router, in the order the
// routers' datagrams would interleave at a collector.
type pipelineStream struct {
	dgrams    [][]byte
	exporters []netip.Addr // per datagram
	received  []int64      // per datagram, ns after the stream's start
	flows     int
}

// newPipelineStream builds the stream over the given number of monitored hosts, each flow's
// host drawn uniformly: the worst case for every cache. (Drawn by a Zipf law instead, the
// busiest hosts of a 1M flows/s stream get floods' rates and raise anomalies.)
func newPipelineStream(tb testing.TB, start int64, hosts int) *pipelineStream {
	const routers, flowsPerSec = 8, 1_000_000
	rng := rand.New(rand.NewPCG(1, 2))
	host := func() netip.Addr {
		var b [4]byte
		binary.BigEndian.PutUint32(b[:], 0x0a000000|uint32(rng.IntN(hosts))*13%(1<<20))
		return netip.AddrFrom4(b)
	}
	ext := func() netip.Addr {
		var b [4]byte
		binary.BigEndian.PutUint32(b[:], 0x40000000+rng.Uint32N(1<<28))
		return netip.AddrFrom4(b)
	}
	s := &pipelineStream{}
	perRouter := flowsPerSec / routers / gen.MaxV5Records * gen.MaxV5Records
	for e := 0; e < routers; e++ {
		exp := netip.AddrFrom4([4]byte{192, 0, 2, byte(1 + e)})
		recs := make([]flow.Record, perRouter)
		for i := range recs {
			r := &recs[i]
			src, dst := ext(), host()
			switch x := rng.IntN(100); {
			case x < 15:
				src, dst = dst, src
			case x < 20:
				src = host()
			}
			r.SrcAddr, r.DstAddr = src, dst
			r.InIf, r.OutIf = uint32(1+rng.IntN(16)), uint32(1+rng.IntN(16))
			r.SrcPort = uint16(1024 + rng.IntN(60000))
			switch x := rng.IntN(100); {
			case x < 60:
				r.Proto, r.DstPort, r.TCPFlags = flow.ProtoTCP, 443, flow.FlagACK|flow.FlagPSH
			case x < 85:
				r.Proto, r.DstPort = flow.ProtoUDP, 53
			case x < 90:
				r.Proto, r.DstPort, r.TCPFlags = flow.ProtoTCP, 80, flow.FlagSYN|flow.FlagACK|flow.FlagFIN
			case x < 95:
				r.Proto, r.SrcPort, r.DstPort = flow.ProtoUDP, 123, 123
			default:
				r.Proto, r.DstPort = uint8(rng.IntN(3)*5+1), uint16(rng.IntN(2000))
			}
			r.Packets = uint64(1 + rng.IntN(50))
			r.Bytes = r.Packets * uint64(64+rng.IntN(1400))
			r.End = start + int64(i)*int64(time.Second)/int64(perRouter)
			r.Start = r.End - int64(rng.IntN(30e3))*int64(time.Millisecond)
		}
		ds, err := gen.EncodeDatagrams(gen.FormatV5, gen.Header{Boot: start - int64(time.Hour), Export: start + int64(time.Second)}, recs)
		if err != nil {
			tb.Fatal(err)
		}
		for i, d := range ds {
			s.dgrams = append(s.dgrams, d)
			s.exporters = append(s.exporters, exp)
			s.received = append(s.received, int64(i)*int64(time.Second)/int64(len(ds)))
		}
		s.flows += perRouter
	}
	// Interleave the routers' datagrams by arrival time.
	order := make([]int, len(s.dgrams))
	for i := range order {
		order[i] = i
	}
	rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
	slices.SortStableFunc(order, func(a, b int) int { return cmp.Compare(s.received[a], s.received[b]) })
	dg, ex, rc := make([][]byte, len(order)), make([]netip.Addr, len(order)), make([]int64, len(order))
	for i, o := range order {
		dg[i], ex[i], rc[i] = s.dgrams[o], s.exporters[o], s.received[o]
	}
	s.dgrams, s.exporters, s.received = dg, ex, rc
	return s
}

// advance moves every datagram one second on, as the routers' next second of export: the
// header's export time and each router's flow sequence.
func (s *pipelineStream) advance(perRouter uint32) {
	for _, d := range s.dgrams {
		binary.BigEndian.PutUint32(d[8:], binary.BigEndian.Uint32(d[8:])+1)           // unix_secs
		binary.BigEndian.PutUint32(d[4:], binary.BigEndian.Uint32(d[4:])+1000)        // sysUptime, ms
		binary.BigEndian.PutUint32(d[16:], binary.BigEndian.Uint32(d[16:])+perRouter) // flow_sequence
		for r := 24; r+48 <= len(d); r += 48 {
			binary.BigEndian.PutUint32(d[r+24:], binary.BigEndian.Uint32(d[r+24:])+1000) // first
			binary.BigEndian.PutUint32(d[r+28:], binary.BigEndian.Uint32(d[r+28:])+1000) // last
		}
	}
}

// BenchmarkPipeline is the per-core budget of DESIGN.md in one goroutine: NetFlow v5
// datagrams decoded, matched against the default rule pack, keyed into the detector's
// windows and the baselines, with an evaluation every 500 ms of flow time, as serve runs
// them minus the sockets. One op is one flow. The stream runs at 1,000,000 flows/s of flow
// time over 1,000, 10,000 or 100,000 monitored hosts; the first second (creating every
// window and key) is not timed, nor is moving the datagrams on to the next second.
func BenchmarkPipeline(b *testing.B) {
	for _, hosts := range []int{1000, 10_000, 100_000} {
		b.Run(fmt.Sprintf("hosts=%d", hosts), func(b *testing.B) { benchmarkPipeline(b, hosts) })
	}
}

func benchmarkPipeline(b *testing.B, hosts int) {
	cfg := config.Default()
	cfg.Networks = []detector.Network{{Name: "customers", Prefixes: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/12")}}}
	if err := cfg.Validate(); err != nil {
		b.Fatal(err)
	}
	set, err := compileRules(cfg.Rules)
	if err != nil {
		b.Fatal(err)
	}
	bl, err := newBaselines(cfg, nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	det, err := detector.New(cfg.Detector(), detector.Deps{Rules: set, Baselines: bl})
	if err != nil {
		b.Fatal(err)
	}
	dec := ingest.NewDecoder(decoderConfig(cfg))
	start := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC).UnixNano()
	s := newPipelineStream(b, start, hosts)
	perRouter := uint32(s.flows / 8)
	batch := make([]flow.Record, 0, 4096)
	evalEvery := int64(500 * time.Millisecond)
	sec := int64(0)
	nextEval := start + evalEvery
	harness := int64(0) // CPU spent moving the stream on, not in the pipeline
	runSecond := func(limit int) int {
		done := 0
		base := start + sec*int64(time.Second)
		for i, d := range s.dgrams {
			if done >= limit {
				break
			}
			now := base + s.received[i]
			for now >= nextEval {
				det.Process(batch)
				batch = batch[:0]
				det.Evaluate(nextEval)
				nextEval += evalEvery
			}
			n := len(batch)
			batch, err = dec.Decode(s.exporters[i], now, d, batch)
			if err != nil {
				b.Fatal(err)
			}
			done += len(batch) - n
			if len(batch) > cap(batch)-gen.MaxV5Records {
				det.Process(batch)
				batch = batch[:0]
			}
		}
		det.Process(batch)
		batch = batch[:0]
		sec++
		b.StopTimer()
		c := processCPU()
		s.advance(perRouter)
		harness += processCPU() - c
		b.StartTimer()
		return done
	}
	runSecond(s.flows)
	b.ReportAllocs()
	b.ResetTimer()
	harness = 0
	cpu0 := processCPU()
	for done := 0; done < b.N; {
		done += runSecond(b.N - done)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/flow")
	// The machine is shared: process CPU time (GC included) is steadier than wall time.
	b.ReportMetric(float64(processCPU()-cpu0-harness)/float64(b.N), "cpu-ns/flow")
	b.ReportMetric(float64(len(det.Active())), "anomalies")
}

func processCPU() int64 {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return ru.Utime.Nano() + ru.Stime.Nano()
}
