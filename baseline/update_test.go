package baseline

import (
	"context"
	"encoding/json"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flowhound/flowhound/flow"
)

// slotCounters returns the open counters of key for the slot holding t.
func (b *Baselines) slotCounters(tb testing.TB, key Key, t int64) counters {
	tb.Helper()
	pos := int((t / b.slotNs) % int64(b.ring))
	if idx := b.full.find(key); idx >= 0 {
		return b.full.ring[int(idx)*b.ring+pos]
	}
	if idx := b.hosts.find(key); idx >= 0 {
		return b.hosts.ring[int(idx)*b.ring+pos]
	}
	tb.Fatalf("%v is not tracked", key)
	return counters{}
}

func TestFlowSpreadOverItsDuration(t *testing.T) {
	b, err := New(testConfig(), Deps{})
	if err != nil {
		t.Fatal(err)
	}
	sec := int64(time.Second)
	T := t0 + 1000*sec // start of a slot
	for now := T - 50*sec; now <= T+25*sec; now += sec {
		b.Advance(now) // the engine's tick; open slots then: [T, T+10s), [T+10s, T+20s), [T+20s, T+30s)
	}
	rec := func(received, dur int64, bytes, pkts uint64) flow.Record {
		r := flow.Record{Received: received, Exporter: exporter, SrcAddr: outside, DstAddr: victimAddr,
			Bytes: bytes, Packets: pkts, Proto: 6, DstPort: 80}
		if dur > 0 {
			r.Start, r.End = received-dur-2*sec, received-2*sec // exporter clock 2 s behind: only the duration counts
		}
		return r
	}
	tests := []struct {
		name  string
		rec   flow.Record
		want  [3]counters // slots T, T+10s, T+20s
		scale uint32
	}{
		{"a 30 s flow ends at its arrival; the part before the oldest open slot goes to it",
			rec(T+25*sec, 30*sec, 3000, 30), [3]counters{{12000, 15, 0}, {8000, 10, 0}, {4000, 5, 1}}, 0},
		{"a late flow within the grace period lands in its slot",
			rec(T+5*sec, 0, 100, 1), [3]counters{{800, 1, 1}, {}, {}}, 0},
		{"a flow later than the grace period lands in the oldest open slot",
			rec(T-100*sec, 0, 100, 1), [3]counters{{800, 1, 1}, {}, {}}, 0},
		{"sampled counters are scaled, flows are not",
			rec(T+15*sec, 0, 100, 1), [3]counters{{}, {800 * 1000, 1000, 1}, {}}, 1000},
		{"an hour-long flow is spread, not bunched",
			rec(T+29*sec, 3600*sec, 360000, 3600), [3]counters{{2840000, 3550, 0}, {80000, 100, 0}, {80000, 50 - 1 + 1, 1}}, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := [3]counters{}
			for i := range 3 {
				before[i] = b.slotCounters(t, custKey, T+int64(i)*10*sec)
			}
			r := tc.rec
			r.SamplingRate = tc.scale
			b.Update([]flow.Record{r})
			var total counters
			for i := range 3 {
				c := b.slotCounters(t, custKey, T+int64(i)*10*sec)
				d := counters{c.bytes - before[i].bytes, c.pkts - before[i].pkts, c.flows - before[i].flows}
				total.bytes += d.bytes
				total.pkts += d.pkts
				total.flows += d.flows
				w := tc.want[i]
				if tc.name == "an hour-long flow is spread, not bunched" {
					continue // checked on totals below; shares are rounded
				}
				if d != w {
					t.Errorf("slot %d: got %+v, want %+v", i, d, w)
				}
			}
			sc := r.Scale()
			if total.bytes != r.Bytes*8*sc || total.pkts != r.Packets*sc || total.flows != 1 {
				t.Errorf("totals %+v do not add up to the flow", total)
			}
		})
	}
}

func TestDirectionsAndKeys(t *testing.T) {
	cfg := testConfig()
	cfg.Networks = append(cfg.Networks, Network{Name: "dc", Prefixes: []netip.Prefix{
		netip.MustParsePrefix("10.0.0.0/16"), netip.MustParsePrefix("10.0.5.0/24"), netip.MustParsePrefix("2001:db8::/48")}})
	b, err := New(cfg, Deps{})
	if err != nil {
		t.Fatal(err)
	}
	a := netip.MustParseAddr
	p := netip.MustParsePrefix
	send := func(src, dst string) {
		b.Update([]flow.Record{{Received: t0, Exporter: exporter, SrcAddr: a(src), DstAddr: a(dst),
			Bytes: 100, Packets: 1, Proto: 17, DstPort: 53, InIf: 1, OutIf: 2, Has: flow.HasInIf | flow.HasOutIf}})
	}
	b.Advance(t0)
	send("192.0.2.10", "198.51.100.20")    // internal
	send("203.0.113.1", "203.0.113.2")     // transit
	send("203.0.113.1", "10.0.5.7")        // into a configured /24 inside a /16
	send("10.0.6.7", "203.0.113.1")        // out of a /16: its /24 block
	send("2001:db8::1", "2001:db8:0:1::1") // internal, v6 with a /64 block each
	want := []Key{
		HostKey(a("198.51.100.20"), DirIn), HostKey(a("192.0.2.10"), DirOut),
		PrefixKey(p("198.51.100.0/24"), DirIn), PrefixKey(p("192.0.2.0/24"), DirOut),
		GlobalKey(DirInternal), PortKey(17, 53, DirInternal),
		InterfaceKey(exporter, 1, DirIn), InterfaceKey(exporter, 2, DirOut),
		HostKey(a("10.0.5.7"), DirIn), PrefixKey(p("10.0.0.0/16"), DirIn), PrefixKey(p("10.0.5.0/24"), DirIn),
		GlobalKey(DirIn), PortKey(17, 53, DirIn),
		HostKey(a("10.0.6.7"), DirOut), PrefixKey(p("10.0.0.0/16"), DirOut), PrefixKey(p("10.0.6.0/24"), DirOut),
		GlobalKey(DirOut), PortKey(17, 53, DirOut),
		HostKey(a("2001:db8:0:1::1"), DirIn), HostKey(a("2001:db8::1"), DirOut),
		PrefixKey(p("2001:db8:0:1::/64"), DirIn), PrefixKey(p("2001:db8::/64"), DirOut),
	}
	for _, k := range want {
		if b.full.find(k) < 0 && b.hosts.find(k) < 0 {
			t.Errorf("%v %v is not tracked", k.Dir, k)
		}
	}
	notWanted := []Key{
		HostKey(a("203.0.113.2"), DirIn), HostKey(a("203.0.113.1"), DirOut),
		PrefixKey(p("203.0.113.0/24"), DirIn), // not monitored
	}
	for _, k := range notWanted {
		if b.full.find(k) >= 0 || b.hosts.find(k) >= 0 {
			t.Errorf("%v %v is tracked", k.Dir, k)
		}
	}
	b.Advance(t0 + int64(10*time.Second))
	if c := b.Current(GlobalKey(DirInternal)); c.BPS != 2*800/10.0 || c.PPS != 0.2 || c.FPS != 0.2 {
		t.Errorf("Current(global internal) = %+v", c)
	}
	// The interface counted all five flows, transit included.
	if c := b.Current(InterfaceKey(exporter, 1, DirIn)); c.FPS != 0.5 {
		t.Errorf("Current(in-interface) = %+v", c)
	}

	// Without monitored networks, every destination is an incoming host.
	b, _ = New(DefaultConfig(), Deps{})
	b.Advance(t0)
	send("192.0.2.10", "203.0.113.2")
	for _, k := range []Key{HostKey(a("203.0.113.2"), DirIn), GlobalKey(DirIn), PortKey(17, 53, DirIn)} {
		if b.full.find(k) < 0 && b.hosts.find(k) < 0 {
			t.Errorf("unmonitored: %v %v is not tracked", k.Dir, k)
		}
	}
	if b.hosts.find(HostKey(a("192.0.2.10"), DirOut)) >= 0 {
		t.Error("unmonitored: the source became a host")
	}
}

func TestBoundsSummaryAndPromotion(t *testing.T) {
	cfg := testConfig()
	cfg.MaxHosts = 5 // the udp/53 port key and four hosts
	cfg.IdleTimeout = 2 * time.Hour
	s := newSim(t, cfg, Deps{})
	quiet := func(i int) flow.Record {
		return flow.Record{Exporter: exporter, SrcAddr: outside, DstAddr: netip.AddrFrom4([4]byte{192, 0, 2, byte(i)}), Bytes: 100, Packets: 1, Proto: 17, DstPort: 53}
	}
	for range 10 {
		recs := make([]flow.Record, 10)
		for i := range recs {
			recs[i] = quiet(i)
			recs[i].Received = s.now + 1
		}
		s.b.Update(recs)
		s.now += s.slot
		s.b.Advance(s.now)
	}
	if got := len(s.b.Top(KindHost, 0)); got != 4 {
		t.Fatalf("tracking %d hosts with max_hosts 5", got)
	}
	heavy := netip.AddrFrom4([4]byte{192, 0, 2, 9})
	if s.b.hosts.find(HostKey(heavy, DirIn)) >= 0 {
		t.Fatal("the tenth host is tracked")
	}
	if e := s.b.sum.top(10); len(e) != 6 {
		t.Fatalf("summary holds %d entries, want the 6 untracked hosts", len(e))
	}
	// The tenth host turns busy; within the hourly sweep it replaces the quietest host.
	for range 400 {
		r := quiet(9)
		r.Received, r.Bytes = s.now+1, 1e6
		s.b.Update([]flow.Record{r, quiet(0)})
		s.now += s.slot
		s.b.Advance(s.now)
	}
	if s.b.hosts.find(HostKey(heavy, DirIn)) < 0 {
		t.Fatal("the busy summarised host was not promoted")
	}
	if got := len(s.b.Top(KindHost, 0)); got != 4 {
		t.Fatalf("tracking %d hosts after promotion", got)
	}
	// Hosts without traffic for the idle timeout are dropped.
	for range 1500 {
		s.b.Update([]flow.Record{{Received: s.now + 1, Exporter: exporter, SrcAddr: outside, DstAddr: heavy, Bytes: 1e6, Packets: 1, Proto: 17, DstPort: 53}})
		s.now += s.slot
		s.b.Advance(s.now)
	}
	if top := s.b.Top(KindHost, 0); len(top) != 1 || top[0].ID.Addr != heavy {
		t.Fatalf("after the idle timeout: %+v", top)
	}
}

func TestWarmUpAndFirstExpectation(t *testing.T) {
	cfg := testConfig()
	cfg.WarmUp = time.Hour
	s := newSim(t, cfg, Deps{})
	if _, ok := s.b.Expected(custKey, s.now); ok {
		t.Fatal("an expectation before any slot")
	}
	for range 4 { // the first slot after a start is partial and skipped, then grace
		s.feed(1e6)
	}
	e, ok := s.b.Expected(custKey, s.now)
	if !ok || !e.WarmingUp || e.BPS < 0.9e6 || e.BPS > 1.1e6 {
		t.Fatalf("after one learned slot: %+v %v", e, ok)
	}
	if IsAnomalous(Rates{BPS: 1e9, PPS: 1e9, FPS: 1e9}, e) {
		t.Fatal("anomalous while warming up")
	}
	for range 360 {
		s.feed(1e6)
	}
	if e, _ := s.b.Expected(custKey, s.now); e.WarmingUp || !IsAnomalous(Rates{BPS: 1e9}, e) {
		t.Fatalf("after the warm-up: %+v", e)
	}
}

func TestStatusJSON(t *testing.T) {
	s := newSim(t, testConfig(), Deps{Names: func(k Key) string {
		if k.Kind == KindInterface {
			return "edge1 Gi0/0/1"
		}
		return ""
	}})
	for range 8640 + 400 {
		s.feed(s.noisy(pattern(s.now)))
	}
	top := s.b.Top(KindPrefix, 1)
	if len(top) != 1 || top[0].Key != "192.0.2.0/24" || top[0].Name != "customers" {
		t.Fatalf("Top(prefix) = %+v", top)
	}
	b, _ := json.Marshal(map[string]any{"resources": top})
	var back struct {
		Resources []map[string]json.RawMessage `json:"resources"`
	}
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"type", "key", "name", "current", "expected", "warming_up"} {
		if _, ok := back.Resources[0][f]; !ok {
			t.Errorf("resource JSON lacks %q: %s", f, b)
		}
	}
	if !strings.Contains(string(b), `"type":"prefix"`) || !strings.Contains(string(b), `"expected":{"bps":`) {
		t.Errorf("resource JSON: %s", b)
	}
	if it := s.b.Top(KindInterface, 5); len(it) != 2 || it[0].Name != "edge1 Gi0/0/1" {
		t.Errorf("Top(interface) = %+v", it)
	}
	d, ok := s.b.Detail(custKey)
	if !ok || d.Model != "seasonal" || len(d.Buckets) != nSets || len(d.Series) < histLen || len(d.Baseline) < 40 {
		t.Fatalf("Detail = %+v", d)
	}
	if d.Buckets[0].Name != "5m" || d.Buckets[0].Expected == nil {
		t.Errorf("5m bucket: %+v", d.Buckets[0])
	}
	if _, err := json.Marshal(d); err != nil {
		t.Fatal(err)
	}
	if d, ok := s.b.Detail(hostKey); !ok || d.Model != "level" || len(d.Series) == 0 {
		t.Errorf("Detail(host) = %+v %v", d, ok)
	}
	if _, ok := s.b.Detail(HostKey(netip.MustParseAddr("192.0.2.99"), DirIn)); ok {
		t.Error("Detail of an unknown key")
	}
}

// syncStore is a memStore safe for Run's goroutine, which reports each save.
type syncStore struct {
	mu    sync.Mutex
	m     *memStore
	saved chan int
}

func (s *syncStore) SaveBaselines(keys, values [][]byte) error {
	s.mu.Lock()
	err := s.m.SaveBaselines(keys, values)
	s.mu.Unlock()
	s.saved <- len(keys)
	return err
}

func (s *syncStore) LoadBaselines(fn func(key, value []byte) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.m.LoadBaselines(fn)
}

func TestRunSnapshotsOnTicksAndAtEnd(t *testing.T) {
	st := &syncStore{m: newMemStore(), saved: make(chan int, 10)}
	tick := make(chan time.Time)
	var interval time.Duration
	s := newSim(t, testConfig(), Deps{Store: st, Ticker: func(d time.Duration) (<-chan time.Time, func()) {
		interval = d
		return tick, func() {}
	}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- s.b.Run(ctx) }()
	for range 5 {
		s.hostTraffic(0, 5)
	}
	tick <- time.Time{}
	if n := <-st.saved; n < 5 {
		t.Errorf("first snapshot wrote %d records", n)
	}
	cancel()
	<-st.saved
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if interval != time.Minute {
		t.Errorf("ticker interval %v", interval)
	}
}

// naiveSpans is makeSpans as plain arithmetic: a division for every slot and position.
func naiveSpans(b *Baselines, r *flow.Record, end int64) []flowSpan {
	var out []flowSpan
	scale := r.Scale()
	bytes, pkts, flows := r.Bytes*scale*8, r.Packets*scale, r.FlowCount()
	first := b.learned + 1
	es := end / b.slotNs
	if es < first {
		es, end = first, first*b.slotNs
	}
	start := end
	if d := r.Duration(); d > 0 {
		start = end - int64(d)
	}
	ss := max(start/b.slotNs, first)
	if ss >= es {
		return append(out, flowSpan{pos: int(es % int64(b.ring)), bytes: bytes, pkts: pkts, flow: flows})
	}
	total := float64(end - start)
	var sb, sp uint64
	for s := ss; s < es; s++ {
		lo := s * b.slotNs
		if s == ss {
			lo = start
		}
		frac := float64((s+1)*b.slotNs-lo) / total
		xb, xp := uint64(float64(bytes)*frac), uint64(float64(pkts)*frac)
		sb, sp = sb+xb, sp+xp
		out = append(out, flowSpan{pos: int(s % int64(b.ring)), bytes: xb, pkts: xp})
	}
	return append(out, flowSpan{pos: int(es % int64(b.ring)), bytes: bytes - min(sb, bytes), pkts: pkts - min(sp, pkts), flow: flows})
}

// TestSpans checks the division-free slot arithmetic of makeSpans against naiveSpans on
// flows in time order, late flows, flows from before learning began and flows longer than
// the ring.
func TestSpans(t *testing.T) {
	b, err := New(testConfig(), Deps{})
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(9, 10))
	now := time.Date(2026, 11, 26, 12, 0, 3, 0, time.UTC).UnixNano()
	b.advance(now)
	for i := range 200_000 {
		now += int64(rng.IntN(int(b.slotNs / 50)))
		if now >= (b.cur+1)*b.slotNs {
			b.advance(now)
		}
		end := now
		switch rng.IntN(20) {
		case 0: // late, by up to three slots
			end -= rng.Int64N(3 * b.slotNs)
		case 1: // in the future of the current slot's start, same slot
			end = b.cur*b.slotNs + rng.Int64N(b.slotNs)
		}
		var dur time.Duration
		switch rng.IntN(4) {
		case 0:
		case 1:
			dur = time.Duration(rng.Int64N(b.slotNs))
		case 2:
			dur = time.Duration(rng.Int64N(3 * b.slotNs))
		default:
			dur = time.Duration(rng.Int64N(int64(b.ring+3) * b.slotNs))
		}
		r := flow.Record{Received: end, End: end, Start: end - int64(dur), Has: flow.HasStart | flow.HasEnd,
			Packets: uint64(1 + rng.IntN(1000)), Bytes: uint64(64 + rng.IntN(1_000_000))}
		b.bspans = b.bspans[:0]
		b.makeSpans(&r, end)
		want := naiveSpans(b, &r, end)
		if !slices.Equal(b.bspans, want) {
			t.Fatalf("flow %d (end %d, duration %v, slot %d, learned %d): spans\n%v\nwant\n%v", i, end, dur, b.cur, b.learned, b.bspans, want)
		}
	}
}
