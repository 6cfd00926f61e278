package detector

import (
	"math"
	"math/rand/v2"
	"net/netip"
	"testing"

	"github.com/flowhound/flowhound/flow"
)

// naiveSlots is the plain form of a full window's seconds: every flow adds its share to
// each second it covers. window.add must give the same totals at a cost independent of
// the flows' durations.
type naiveSlots struct {
	slots   []slot
	lastSec int64
}

func (w *naiveSlots) add(now, secs int64, by, pk, fl, sm float64) {
	n := int64(len(w.slots))
	span := min(secs, n)
	f := 1 / float64(secs)
	for s := now - span + 1; s <= now; s++ {
		if s <= w.lastSec-n {
			continue // recycled for a newer second
		}
		sl := &w.slots[s%n]
		if sl.sec != s {
			*sl = slot{sec: s}
		}
		sl.bytes += by * f
		sl.packets += pk * f
		sl.samples += sm * f
	}
	if sl := &w.slots[now%n]; sl.sec == now {
		sl.flows += fl
	}
	w.lastSec = max(w.lastSec, now)
}

func (w *naiveSlots) sums(now int64) (by, pk, fl, sm, sBy, sPk, sFl float64) {
	n := int64(len(w.slots))
	for _, sl := range w.slots {
		if sl.sec > now-n && sl.sec <= now {
			by, pk, fl, sm = by+sl.bytes, pk+sl.packets, fl+sl.flows, sm+sl.samples
			if sl.sec > now-shortSecs {
				sBy, sPk, sFl = sBy+sl.bytes, sPk+sl.packets, sFl+sl.flows
			}
		}
	}
	return by, pk, fl, sm, sBy, sPk, sFl
}

// TestWindowSpread feeds random flows (short and long, some late, with gaps longer than
// the window) to a full window and to naiveSlots and compares the window's rates.
func TestWindowSpread(t *testing.T) {
	for _, n := range []int{1, 2, 10, 30} {
		rng := rand.New(rand.NewPCG(uint64(n), 5))
		w := &window{rule: 0}
		w.promote(n, false, false, false, ingressKey{}, 0)
		ref := &naiveSlots{slots: make([]slot, n)}
		sec := int64(1_800_000_000)
		for step := 0; step < 20000; step++ {
			switch x := rng.IntN(100); {
			case x < 20:
				sec++
			case x < 21:
				sec += int64(rng.IntN(3 * n)) // a gap, sometimes longer than the window
			}
			now := sec
			if rng.IntN(20) == 0 {
				now -= int64(rng.IntN(n + 2)) // late
			}
			var dur int64
			if rng.IntN(2) == 0 {
				dur = int64(rng.IntN(4*n*1000)) * 1e6
			}
			r := flow.Record{Received: now*1e9 + int64(rng.IntN(1e9)), Packets: uint64(1 + rng.IntN(100)),
				Exporter: netip.MustParseAddr("192.0.2.1"), InIf: 1}
			r.Bytes = r.Packets * 100
			r.End = r.Received
			r.Start = r.End - dur
			r.Has = flow.HasStart | flow.HasEnd
			secs := int64(1)
			if d := r.Duration(); d > 1e9 {
				secs = (int64(d) + 999_999_999) / 1e9
			}
			late := now <= w.lastSec-int64(n)
			var c share
			c.set(&r, 1, 0, 0)
			w.add(&r, &c)
			if !late {
				ref.add(now, secs, float64(r.Bytes), float64(r.Packets), 1, float64(r.Packets))
			}
			if step%7 == 0 {
				at := sec*1e9 + int64(rng.IntN(1e9))
				by, pk, fl, sm, sBy, sPk, sFl := ref.sums(sec)
				w.firstNs = 0 // compare sums, not the young-window span
				gBps, gPps, gFps, gSm := w.totals(at)
				frac := float64(at%1e9) / 1e9
				span := max(float64(n-1)+frac, minSpan)
				short := max(float64(min(shortSecs, n)-1)+frac, minSpan)
				wantBps, wantPps, wantFps := by*8/span, pk/span, fl/span
				if n > shortSecs {
					wantBps, wantPps, wantFps = max(wantBps, sBy*8/short), max(wantPps, sPk/short), max(wantFps, sFl/short)
				}
				for _, c := range []struct {
					what      string
					got, want float64
				}{{"bps", gBps, wantBps}, {"pps", gPps, wantPps}, {"fps", gFps, wantFps}, {"samples", gSm, sm}} {
					if math.Abs(c.got-c.want) > 1e-6*max(1, math.Abs(c.want)) {
						t.Fatalf("n=%d step %d: %s = %v, want %v", n, step, c.what, c.got, c.want)
					}
				}
			}
		}
	}
}

// TestIngressCounts checks the traceback table against the plain space-saving algorithm
// over (exporter, in_if) keys, with ids from a real ingressTable, including points the id
// table had no room for.
func TestIngressCounts(t *testing.T) {
	for _, tc := range []struct {
		name          string
		points, flows int
		idRoom        int // ids the table still hands out
	}{
		{"few points", 3, 1000, maxIngressIDs},
		{"more points than entries", 40, 5000, maxIngressIDs},
		{"id table full", 40, 5000, 10},
		{"no ids at all", 20, 3000, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(7, uint64(tc.points)))
			var ids ingressTable
			ids.id(netip.MustParseAddr("10.255.0.1"), 1) // make the table
			for len(ids.keys) < maxIngressIDs-tc.idRoom {
				ids.keys = append(ids.keys, ingressKey{})
			}
			type ref struct {
				key         ingressKey
				by, packets float64
			}
			var want []ref
			var got ingressCounts
			for range tc.flows {
				// A few big points and a long tail, as a flood among normal traffic.
				p := rng.IntN(tc.points)
				if rng.IntN(3) == 0 {
					p = rng.IntN(2)
				}
				key := ingressKey{exporter: netip.AddrFrom4([4]byte{192, 0, 2, byte(1 + p/8)}), inIf: uint32(p % 8)}
				by, pk := float64(1+rng.IntN(1500)), float64(1+rng.IntN(10))
				got.add(ids.id(key.exporter, key.inIf), key.exporter, key.inIf, by, pk)
				found := false
				for i := range want {
					if want[i].key == key {
						want[i].by += by
						want[i].packets += pk
						found = true
						break
					}
				}
				if found {
					continue
				}
				if len(want) < maxIngress {
					want = append(want, ref{key, by, pk})
					continue
				}
				m := 0
				for i := range want {
					if want[i].packets < want[m].packets {
						m = i
					}
				}
				want[m] = ref{key, want[m].by + by, want[m].packets + pk}
			}
			if got.n != len(want) {
				t.Fatalf("%d entries, want %d", got.n, len(want))
			}
			for i := range want {
				if k := got.key(i, &ids); k != want[i].key || got.packets[i] != want[i].packets || got.bytes[i] != want[i].by {
					t.Errorf("entry %d: %v %v pk %v by %v, want %v %v pk %v by %v", i, k.exporter, k.inIf, got.packets[i], got.bytes[i],
						want[i].key.exporter, want[i].key.inIf, want[i].packets, want[i].by)
				}
			}
		})
	}
}

// TestIngressSampled checks that a window counting the ingress of one flow in n keeps the
// shares it would have counting all of them, also across a change of n: a point that
// carried the traffic while every flow counted must not outweigh a flood that came after.
func TestIngressSampled(t *testing.T) {
	var ids ingressTable
	a, b := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	idA, idB := ids.id(a, 1), ids.id(b, 2)
	var w window
	w.promote(10, false, false, false, ingressKey{}, 0)
	rng := rand.New(rand.NewPCG(11, 12))
	now := int64(1_800_000_000) * 1e9
	add := func(exp netip.Addr, id uint32, n int) {
		for range n {
			r := flow.Record{Received: now, Exporter: exp, Packets: 10, Bytes: 4000}
			var c share
			c.set(&r, 1, id, rng.Uint64())
			w.add(&r, &c)
		}
	}
	add(a, idA, 1000) // 10,000 packets from a, every flow counted
	w.sampleIngress(50)
	add(b, idB, 99_000) // 990,000 from b, one flow in 50 counted
	var pa, pb float64
	for i := range w.ingress.n {
		switch w.ingress.key(i, &ids).exporter {
		case a:
			pa = w.ingress.packets[i]
		case b:
			pb = w.ingress.packets[i]
		}
	}
	if share := pb / (pa + pb); math.Abs(share-0.99) > 0.005 {
		t.Errorf("b's share %.4f (a %.0f, b %.0f packets), want 0.99", share, pa, pb)
	}
}

// TestWindowAbsurdDuration feeds a full window flows whose exporters claim durations up to
// the largest a Record can hold (a corrupt or hostile record): they spread over the whole
// window instead of crashing the detector.
func TestWindowAbsurdDuration(t *testing.T) {
	for _, dur := range []int64{math.MaxInt64 - 1, math.MaxInt64 - 1e9 + 1, 1 << 62, 1e9 + 1} {
		var w window
		w.promote(10, false, false, false, ingressKey{}, 0)
		now := int64(1_800_000_000) * 1e9
		r := flow.Record{Received: now, End: now, Start: now - dur, Packets: 100, Bytes: 10_000, Has: flow.HasStart | flow.HasEnd}
		if r.Start >= r.End {
			r.Start, r.End = math.MinInt64+1, math.MinInt64+1+dur // keep End - Start = dur without overflow
		}
		var c share
		c.set(&r, 1, 0, 0)
		if c.secs < 1 {
			t.Fatalf("duration %d: %d seconds", dur, c.secs)
		}
		w.add(&r, &c)
		if _, pps, _, _ := w.totals(now + 5e8); pps < 0 || math.IsNaN(pps) {
			t.Errorf("duration %d: %.3f pps", dur, pps)
		}
	}
}
