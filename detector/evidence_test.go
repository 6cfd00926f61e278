package detector

import (
	"cmp"
	"fmt"
	"math"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/flowhound/flowhound/flow"
)

// TestTop checks the one-pass top five against sorting every value, ties included.
func TestTop(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	name := func(k int) string { return fmt.Sprintf("v%03d", k) }
	for _, tc := range []struct {
		name   string
		values int
		levels int // distinct shares: few levels make many ties
	}{
		{"empty", 0, 1}, {"one", 1, 1}, {"fewer than five", 3, 100}, {"all tied", 40, 1},
		{"some ties", 200, 7}, {"distinct", 500, 1 << 30},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for range 20 {
				m := map[int]float64{}
				total := 0.0
				for range tc.values {
					k, v := rng.IntN(1000), float64(1+rng.IntN(tc.levels))
					m[k] = v
				}
				for _, v := range m {
					total += v
				}
				keys := make([]int, 0, len(m))
				for k := range m {
					keys = append(keys, k)
				}
				slices.SortFunc(keys, func(a, b int) int {
					switch {
					case m[a] > m[b]:
						return -1
					case m[a] < m[b]:
						return 1
					}
					return a - b // names sort like the keys here
				})
				got := top(m, max(total, 1), name)
				if len(got) != min(5, len(m)) {
					t.Fatalf("%d values, want %d", len(got), min(5, len(m)))
				}
				for i, c := range got {
					if c.Value != name(keys[i]) {
						t.Fatalf("place %d: %s, want %s (%v)", i, c.Value, name(keys[i]), got)
					}
				}
			}
		})
	}
}

// TestEvidenceSampled runs a SYN flood through two ingress points beside a background of
// 300,000 flows a second, fast enough that the evidence ring keeps only a sample of the
// matched flows and the flood's window counts the ingress of only some of its flows, and
// expects the anomaly's traceback and characterization to describe the flood as they do
// unsampled: both ingress points at their shares, SYN to port 80.
func TestEvidenceSampled(t *testing.T) {
	for _, tc := range []struct {
		name       string
		background int // flows a second
		wantEvery  uint64
	}{
		{"ring unsampled", 2000, 1},
		{"ring sampled", 300_000, 8},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, events := newTestDetector(t, testConfig())
			flood := func(exp netip.Addr, iface uint32, fps int) stream {
				return stream{dst: victim, exporter: exp, inIf: iface, proto: flow.ProtoTCP, flags: flow.FlagSYN,
					sport: 40000, dport: 80, flowsPerSec: fps, pkts: 1, bytesPerPk: 40, randomSrc: true}
			}
			var seq uint32
			next := t0 + int64(time.Second)/2
			for sec := 0; sec < 8; sec++ {
				now := t0 + int64(sec)*int64(time.Second)
				var recs []flow.Record
				for h := 0; h < 200; h++ {
					bg := stream{src: netip.MustParseAddr("203.0.113.5"), dst: netip.AddrFrom4([4]byte{198, 51, 100, byte(h)}),
						exporter: edge1, inIf: uint32(1 + h%4), proto: flow.ProtoTCP, flags: flow.FlagACK | flow.FlagPSH,
						sport: 443, dport: 50000, flowsPerSec: tc.background / 200, pkts: 1, bytesPerPk: 1000}
					recs = append(recs, bg.second(now, &seq)...)
				}
				if sec >= 4 {
					recs = append(recs, flood(edge1, 3, 6000).second(now, &seq)...)
					recs = append(recs, flood(edge2, 7, 4000).second(now, &seq)...)
				}
				slices.SortStableFunc(recs, func(a, b flow.Record) int { return cmp.Compare(a.Received, b.Received) })
				for len(recs) > 0 {
					n := min(len(recs), 4096)
					for next <= recs[n-1].Received {
						d.Evaluate(next)
						next += int64(time.Second) / 2
					}
					d.Process(recs[:n])
					recs = recs[n:]
				}
			}
			if d.ring.every < tc.wantEvery || tc.wantEvery == 1 && d.ring.every != 1 {
				t.Fatalf("the ring keeps one flow in %d, want %d", d.ring.every, tc.wantEvery)
			}
			var a *Anomaly
			for _, ev := range *events {
				if ev.Type == "raised" {
					if ev.Anomaly.Rule != "tcp-syn-flood" || a != nil {
						t.Fatalf("raised %s", ev.Anomaly.Summary())
					}
					a = &ev.Anomaly
				}
			}
			if a == nil {
				t.Fatal("the flood raised nothing")
			}
			for _, w := range d.all {
				// 10,000 flows a second: more than the traceback needs, in either case.
				if w.active() != nil && w.ingressEvery < 2 {
					t.Errorf("the flood's window counts the ingress of one flow in %v", w.ingressEvery)
				}
			}
			shares := map[uint32]float64{}
			for _, in := range a.Traceback {
				shares[in.InIf] += in.Share
			}
			if math.Abs(shares[3]-0.6) > 0.15 || math.Abs(shares[7]-0.4) > 0.15 {
				t.Errorf("traceback %+v, want in_if 3 at about 0.6 and 7 at about 0.4", a.Traceback)
			}
			c := a.Character
			if len(c.TCPFlags) == 0 || c.TCPFlags[0].Value != "S" || c.TCPFlags[0].Share < 0.95 ||
				len(c.DstPorts) == 0 || c.DstPorts[0].Value != "80" || c.DstPorts[0].Share < 0.95 || len(a.Snapshot) == 0 {
				t.Errorf("characterization %+v, %d snapshot flows; want SYN to port 80", c, len(a.Snapshot))
			}
		})
	}
}

// TestEvidenceRingTurn feeds the ring faster than it can hold for half a second, with no
// evaluation to set its pace: it keeps fewer flows as soon as a turn comes round too fast,
// and then holds at least half a second of them.
func TestEvidenceRingTurn(t *testing.T) {
	for _, tc := range []struct {
		name      string
		perSecond int
		wantEvery uint64
	}{
		{"slow", 20_000, 1},
		{"fast", 100_000, 2},
		{"flood", 1_000_000, 16},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newEvidenceRing(1 << 17)
			step := int64(time.Second) / int64(tc.perSecond)
			var newest int64
			for i := range 4 * tc.perSecond {
				rec := flow.Record{Received: t0 + int64(i)*step}
				if ok, _ := r.sample(); ok {
					r.record(&rec)
					newest = rec.Received
				}
			}
			if r.every != tc.wantEvery {
				t.Errorf("keeps one flow in %d, want %d", r.every, tc.wantEvery)
			}
			oldest := r.recs[r.rseq&r.rmask].Received // the next to be overwritten
			if r.rseq < uint64(len(r.recs)) {
				oldest = r.recs[0].Received
			}
			if span := time.Duration(newest - oldest); span < time.Second/2 {
				t.Errorf("the ring holds %v of flows, want half a second at least", span)
			}
		})
	}
}
