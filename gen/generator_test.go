package gen

import (
	"crypto/sha256"
	"fmt"
	"math"
	"net/netip"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/flowhound/flowhound/flow"
)

// rateMeter spreads each record's packets evenly over the seconds its flow lasted, per
// host, as a detector on flow time would see them.
type rateMeter struct {
	origin int64
	pps    map[hostSec]float64
}

type hostSec struct {
	host netip.Addr
	sec  int
}

func newRateMeter(origin int64) *rateMeter {
	return &rateMeter{origin: origin, pps: map[hostSec]float64{}}
}

func (m *rateMeter) add(host netip.Addr, r *flow.Record, scale float64) {
	s0, s1 := int((r.Start-m.origin)/1e9), int((r.End-m.origin)/1e9)
	n := float64(r.Packets) * scale / float64(s1-s0+1)
	for s := s0; s <= s1; s++ {
		m.pps[hostSec{host, s}] += n
	}
}

// min returns the smallest rate of host over seconds [from, to].
func (m *rateMeter) min(host netip.Addr, from, to int) float64 {
	v := m.pps[hostSec{host, from}]
	for s := from + 1; s <= to; s++ {
		v = min(v, m.pps[hostSec{host, s}])
	}
	return v
}

// busiest returns the highest rate of any host in seconds [from, to] and the host.
func (m *rateMeter) busiest(from, to int, skip func(netip.Addr) bool) (float64, netip.Addr) {
	var best float64
	var who netip.Addr
	for k, v := range m.pps {
		if k.sec >= from && k.sec <= to && v > best && !skip(k.host) {
			best, who = v, k.host
		}
	}
	return best, who
}

type ingressKey struct {
	exp netip.Addr
	in  uint32
}

// TestDemoV5 runs the demo scenario through the v5 encoder and checks the datagrams with
// an independent decoder, the exporter clocks and sequence numbers, the flow cache's
// timeouts, the attack rates and where each attack enters.
func TestDemoV5(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Scenario = ScenarioDemo
	g, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	origin := testEpoch.UnixNano()
	act, inact := int64(cfg.ActiveTimeout), int64(cfg.InactiveTimeout)
	meterDst := newRateMeter(origin)
	meterSrc := newRateMeter(origin)
	boots := map[netip.Addr]int64{}
	nextSeq := map[netip.Addr]uint32{}
	ingress := map[string]map[ingressKey]uint64{}
	firstAttack := map[string]int64{}
	var problems []string
	fail := func(format string, args ...any) {
		if len(problems) < 10 {
			problems = append(problems, fmt.Sprintf(format, args...))
		}
	}
	var datagrams, records int
	wormHost := netip.MustParseAddr("198.51.100.77")
	err = g.Simulate(testEpoch, 60*time.Second, func(d *Datagram) error {
		datagrams++
		h, recs, err := decodeV5(d.Payload)
		if err != nil {
			return err
		}
		if h.export() != d.Time {
			fail("header export time %d, datagram sent at %d", h.export(), d.Time)
		}
		if b, ok := boots[d.Exporter]; !ok {
			boots[d.Exporter] = h.boot()
		} else if b != h.boot() {
			fail("%v: boot time moved from %d to %d", d.Exporter, b, h.boot())
		}
		if h.seq != nextSeq[d.Exporter] {
			fail("%v: flow_sequence %d, want %d", d.Exporter, h.seq, nextSeq[d.Exporter])
		}
		nextSeq[d.Exporter] = h.seq + uint32(h.count)
		if h.count > MaxV5Records || h.count != len(d.Records) {
			fail("%d records in header, %d given", h.count, len(d.Records))
		}
		for i := range recs {
			got, want := &recs[i], &d.Records[i]
			records++
			if !sameV5(got, want) {
				fail("decoded %+v\nwant    %+v", *got, *want)
			}
			if want.Exporter != d.Exporter {
				fail("record exporter %v in a datagram from %v", want.Exporter, d.Exporter)
			}
			if want.Start > want.End || want.End > d.Time || want.End-want.Start > act {
				fail("record %v..%v exported at %v (active %v)", want.Start-origin, want.End-origin, d.Time-origin, act)
			}
			if late := d.Time - want.End; late > inact+int64(500*time.Millisecond+holdMax+2*tick) {
				fail("record ending at %v exported %v later", time.Duration(want.End-origin), time.Duration(late))
			}
			// Per-host rates for the customer hosts (and the worm's sender) only: the
			// spoofed sources of the floods would make millions of entries.
			if isCustomer(addrU32(want.DstAddr)) {
				meterDst.add(want.DstAddr, want, 1)
			}
			if want.SrcAddr == wormHost {
				meterSrc.add(want.SrcAddr, want, 1)
			}
			off := time.Duration(want.Start - origin)
			ph := g.phases[PhaseAt(g.phases, off)]
			if ph.Name == PhaseNormal || !isAttack(ph, want) {
				continue
			}
			if _, ok := firstAttack[ph.Name]; !ok {
				firstAttack[ph.Name] = d.Time - origin
			}
			if ingress[ph.Name] == nil {
				ingress[ph.Name] = map[ingressKey]uint64{}
			}
			ingress[ph.Name][ingressKey{d.Exporter, want.InIf}] += want.Packets
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Error(p)
	}
	t.Logf("%d datagrams, %d records", datagrams, records)

	if len(boots) != 3 {
		t.Errorf("datagrams from %d exporters, want 3", len(boots))
	}
	for a := range boots {
		if up := origin - boots[a]; up < int64(time.Hour) || up > 31*24*int64(time.Hour) {
			t.Errorf("%v: uptime %v at start", a, time.Duration(up))
		}
	}

	// Attack rates on flow time.
	v := func(s string) netip.Addr { return netip.MustParseAddr(s) }
	if r := meterDst.min(v("192.0.2.10"), 11, 19); r < 40_000 {
		t.Errorf("SYN flood victim at %.0f pps, want about 50k", r)
	}
	if r := meterSrc.min(v("198.51.100.77"), 26, 34); r < 2_000 || r > 5_000 {
		t.Errorf("slammer host sends %.0f pps, want 1k-5k", r)
	}
	if r := meterDst.min(v("198.51.100.20"), 41, 49); r < 20_000 {
		t.Errorf("amplification victim at %.0f pps, want about 30k", r)
	}
	// Normal traffic: realistic per-host rates outside the attacks.
	for _, span := range [][2]int{{1, 9}, {21, 24}, {51, 58}} {
		best, who := meterDst.busiest(span[0], span[1], func(netip.Addr) bool { return false })
		if best > 5000 {
			t.Errorf("seconds %v: %v receives %.0f pps in normal traffic", span, who, best)
		}
		if r := meterDst.pps[hostSec{v("192.0.2.10"), span[0] + 1}]; r > 1000 {
			t.Errorf("second %d: the SYN victim already receives %.0f pps", span[0]+1, r)
		}
	}
	var custRates []float64
	for k, r := range meterDst.pps {
		if k.sec == 5 && isCustomer(addrU32(k.host)) {
			custRates = append(custRates, r)
		}
	}
	sort.Float64s(custRates)
	if med := custRates[len(custRates)/2]; med < 5 || med > 500 {
		t.Errorf("median customer host at %.0f pps", med)
	}

	// The inactive timeout delays the first records of a flood of one-packet flows.
	s := int64(time.Second)
	for name, start := range map[string]int64{AttackSYN: 10 * s, AttackSlammer: 25 * s, AttackAmp: 40 * s} {
		first, ok := firstAttack[name]
		if !ok {
			t.Errorf("no %s records", name)
			continue
		}
		if first < start+inact || first > start+inact+int64(300*time.Millisecond) {
			t.Errorf("first %s record exported at %v, want inactive timeout %v after %v", name,
				time.Duration(first), cfg.InactiveTimeout, time.Duration(start))
		}
	}

	// Traceback: where each attack enters.
	share := func(name string, exp string, in uint32) float64 {
		var tot, n uint64
		for k, p := range ingress[name] {
			tot += p
			if k.exp == v(exp) && k.in == in {
				n += p
			}
		}
		return float64(n) / float64(max(tot, 1))
	}
	if s := share(AttackSYN, "127.0.0.11", 3); s < 0.8 || s > 0.9 {
		t.Errorf("SYN flood share via 127.0.0.11 if 3 = %.2f, want 0.85", s)
	}
	if s := share(AttackSYN, "127.0.0.12", 2); s < 0.1 || s > 0.2 {
		t.Errorf("SYN flood share via 127.0.0.12 if 2 = %.2f, want 0.15", s)
	}
	if s := share(AttackSlammer, "127.0.0.13", 11); s != 1 {
		t.Errorf("slammer share via 127.0.0.13 if 11 = %.2f, want 1", s)
	}
	if a, b := share(AttackAmp, "127.0.0.12", 1), share(AttackAmp, "127.0.0.13", 4); a+b < 0.99 || a < 0.5 || a > 0.7 {
		t.Errorf("amplification via 127.0.0.12 if 1: %.2f, 127.0.0.13 if 4: %.2f", a, b)
	}

	st := g.Stats()
	if st.Datagrams != uint64(datagrams) || st.Records != uint64(records) {
		t.Errorf("stats %d datagrams %d records, counted %d and %d", st.Datagrams, st.Records, datagrams, records)
	}
	for _, p := range st.Phases {
		if (p.Name == PhaseNormal) != (p.AttackRecords == 0) || p.Datagrams == 0 {
			t.Errorf("phase stats %+v", p)
		}
	}
}

// isAttack tells the attack's own flows from background ones during a phase.
func isAttack(p Phase, r *flow.Record) bool {
	switch p.Name {
	case AttackSYN:
		return r.DstAddr == p.Victim && r.TCPFlags == flow.FlagSYN
	case AttackSlammer:
		return r.SrcAddr == p.Victim && r.DstPort == 1434
	case AttackAmp:
		return r.DstAddr == p.Victim && r.Proto == flow.ProtoUDP && slices.Contains([]uint16{53, 123, 11211}, r.SrcPort) && r.Bytes >= 468*r.Packets
	case AttackICMP:
		return r.DstAddr == p.Victim && r.Proto == flow.ProtoICMP
	}
	return false
}

func sameV5(got, want *flow.Record) bool {
	return got.SrcAddr == want.SrcAddr && got.DstAddr == want.DstAddr && got.NextHop == want.NextHop &&
		got.SrcPort == want.SrcPort && got.DstPort == want.DstPort && got.Proto == want.Proto &&
		got.TCPFlags == want.TCPFlags && got.TOS == want.TOS && got.InIf == want.InIf && got.OutIf == want.OutIf &&
		got.Packets == want.Packets && got.Bytes == want.Bytes && got.Start == want.Start && got.End == want.End &&
		got.SrcAS == uint32(as16(want.SrcAS)) && got.DstAS == uint32(as16(want.DstAS)) &&
		got.SrcMask == want.SrcMask && got.DstMask == want.DstMask
}

// TestFormats runs a SYN flood in the template-based and sampled formats and checks
// sizes, sequence numbers, template refresh and the flood's rate.
func TestFormats(t *testing.T) {
	for _, format := range []string{"v9", "ipfix", "sflow"} {
		t.Run(format, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.Scenario = AttackSYN
			cfg.Format = format
			g, err := New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			origin := testEpoch.UnixNano()
			type expState struct {
				seq       uint32
				n         int
				lastTpl   int
				lastTplAt int64
			}
			exps := map[netip.Addr]*expState{}
			meter := newRateMeter(origin)
			var problems []string
			fail := func(format string, args ...any) {
				if len(problems) < 10 {
					problems = append(problems, fmt.Sprintf(format, args...))
				}
			}
			err = g.Simulate(testEpoch, 20*time.Second, func(d *Datagram) error {
				if len(d.Payload) > MaxDatagram {
					fail("datagram of %d bytes", len(d.Payload))
				}
				s := exps[d.Exporter]
				if s == nil {
					s = &expState{lastTpl: -1}
					if format == "sflow" {
						s.seq = 1
					}
					exps[d.Exporter] = s
				}
				var h seqHeader
				switch format {
				case "v9":
					h = parseV9Header(d.Payload)
					if time.Duration(int64(h.uptime)*1e6) > 31*24*time.Hour {
						fail("uptime %d ms", h.uptime)
					}
				case "ipfix":
					h = parseIPFIXHeader(d.Payload)
				case "sflow":
					h = parseSFlowHeader(d.Payload)
				}
				if h.seq != s.seq {
					fail("%v datagram %d: sequence %d, want %d", d.Exporter, s.n, h.seq, s.seq)
				}
				if h.export != 0 && h.export != d.Time/1e9 {
					fail("export time %d, sent at %d", h.export, d.Time/1e9)
				}
				switch format {
				case "ipfix":
					s.seq += uint32(h.dataRecs)
				default:
					s.seq++
				}
				if format != "sflow" {
					if h.templates {
						s.lastTpl, s.lastTplAt = s.n, d.Time
					}
					if s.lastTpl < 0 || s.n-s.lastTpl >= DefaultTemplateEvery || d.Time-s.lastTplAt >= int64(DefaultTemplateInterval) {
						fail("%v datagram %d: last templates in datagram %d", d.Exporter, s.n, s.lastTpl)
					}
				}
				if d.Records != nil && h.dataRecs != len(d.Records) {
					fail("%d records in the datagram, %d given", h.dataRecs, len(d.Records))
				}
				s.n++
				for i := range d.Records {
					r := &d.Records[i]
					meter.add(r.DstAddr, r, float64(r.Scale()))
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range problems {
				t.Error(p)
			}
			victim := netip.MustParseAddr("192.0.2.10")
			var sum float64
			for s := 11; s <= 18; s++ {
				sum += meter.pps[hostSec{victim, s}]
			}
			// sFlow's estimate is noisy per second; its average over eight seconds is not.
			if avg := sum / 8; avg < 40_000 || avg > 60_000 {
				t.Errorf("victim at %.0f pps (scaled by sampling), want about 50k", avg)
			}
		})
	}
}

func TestDeterministic(t *testing.T) {
	run := func(seed int64) [32]byte {
		cfg := DefaultConfig()
		cfg.Scenario = AttackAmp
		cfg.Seed = seed
		g, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		h := sha256.New()
		err = g.Simulate(testEpoch, 12*time.Second, func(d *Datagram) error {
			h.Write(d.Exporter.AsSlice())
			h.Write(d.Payload)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return [32]byte(h.Sum(nil))
	}
	a, b, c := run(7), run(7), run(8)
	if a != b {
		t.Error("the same seed gave different datagrams")
	}
	if a == c {
		t.Error("different seeds gave the same datagrams")
	}
}

// TestFlowCache checks the exporter's cache model with short timeouts: no record spans
// more than the active timeout, long transfers are cut into several records, one-packet
// flows leave after the inactive timeout, and FIN-ended TCP flows right away.
func TestFlowCache(t *testing.T) {
	cfg := DefaultConfig()
	cfg.ActiveTimeout = 2 * time.Second
	cfg.InactiveTimeout = 500 * time.Millisecond
	g, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	type fkey struct {
		src, dst     netip.Addr
		sport, dport uint16
	}
	parts := map[fkey]int{}
	var single, finNow, idle, problems int
	end := testEpoch.Add(15 * time.Second).UnixNano()
	err = g.Simulate(testEpoch, 15*time.Second, func(d *Datagram) error {
		if d.Time >= end {
			return nil // the final cache flush exports early by design
		}
		for i := range d.Records {
			r := &d.Records[i]
			if r.End-r.Start > int64(cfg.ActiveTimeout) {
				problems++
			}
			parts[fkey{r.SrcAddr, r.DstAddr, r.SrcPort, r.DstPort}]++
			late := time.Duration(d.Time - r.End)
			switch {
			case r.Packets == 1 && r.Proto == flow.ProtoUDP:
				single++
				if late < cfg.InactiveTimeout || late > cfg.InactiveTimeout+holdMax+2*tick {
					problems++
				}
			case r.Proto == flow.ProtoTCP && r.TCPFlags&flow.FlagFIN != 0:
				finNow++
				if late > holdMax+2*tick {
					problems++
				}
			case r.Proto == flow.ProtoTCP && r.TCPFlags&(flow.FlagFIN|flow.FlagRST) == 0 && r.End-r.Start < int64(time.Second):
				idle++
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	cut := 0
	for _, n := range parts {
		if n >= 3 {
			cut++
		}
	}
	t.Logf("single-packet %d, FIN %d, idle %d, flows cut in 3+ records %d", single, finNow, idle, cut)
	if problems > 0 {
		t.Errorf("%d records break the timeouts", problems)
	}
	if single == 0 || finNow == 0 || idle == 0 || cut == 0 {
		t.Error("a kind of flow is missing from normal traffic")
	}
}

func TestSimulateNeedsDuration(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Duration = 0
	g, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Simulate(testEpoch, 0, func(*Datagram) error { return nil }); err == nil {
		t.Error("unbounded Simulate accepted")
	}
	if err := g.Simulate(testEpoch, time.Second, func(*Datagram) error { return nil }); err != nil {
		t.Errorf("Simulate: %v", err)
	}
	if err := g.Simulate(testEpoch, time.Second, func(*Datagram) error { return nil }); err == nil {
		t.Error("a Generator ran twice")
	}
}

// TestAttacks runs each single-attack scenario briefly and checks the attack's rate on
// flow time and the interfaces it enters through.
func TestAttacks(t *testing.T) {
	tests := []struct {
		scenario string
		bySource bool // the anomaly is about the sender (the worm), not the target
	}{
		{AttackSYN, false},
		{AttackSlammer, true},
		{AttackAmp, false},
		{AttackICMP, false},
	}
	for _, tt := range tests {
		t.Run(tt.scenario, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.Scenario = tt.scenario
			g, err := New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			p := g.Phases()[1]
			meter := newRateMeter(testEpoch.UnixNano())
			via := map[ingressKey]uint64{}
			var total uint64
			err = g.Simulate(testEpoch, LeadIn+4*time.Second, func(d *Datagram) error {
				for i := range d.Records {
					r := &d.Records[i]
					if !isAttack(p, r) {
						continue
					}
					if tt.bySource {
						meter.add(r.SrcAddr, r, 1)
					} else {
						meter.add(r.DstAddr, r, 1)
					}
					via[ingressKey{d.Exporter, r.InIf}] += r.Packets
					total += r.Packets
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if r := meter.min(p.Victim, 11, 13); r < 0.8*float64(p.PPS) || r > 1.2*float64(p.PPS) {
				t.Errorf("%v at %.0f pps, want %d", p.Victim, r, p.PPS)
			}
			if r := meter.pps[hostSec{p.Victim, 8}]; r > 0.01*float64(p.PPS) {
				t.Errorf("attack traffic (%.0f pps) before the attack", r)
			}
			want := map[ingressKey]float64{}
			if ins, ok := attackIngress[tt.scenario]; ok {
				for _, in := range ins {
					want[ingressKey{g.exps[in.exp].addr, in.ifx}] = in.share
				}
			} else {
				exp, ifx := g.net.home(addrU32(p.Victim))
				want[ingressKey{g.exps[exp].addr, ifx}] = 1
			}
			for k, share := range want {
				if got := float64(via[k]) / float64(total); math.Abs(got-share) > 0.05 {
					t.Errorf("share via %v if %d: %.2f, want %.2f", k.exp, k.in, got, share)
				}
			}
			for k, n := range via {
				// Normal traffic that looks like the attack (a scanner's SYN, a large DNS
				// answer) comes in anywhere; the attack itself only where it should.
				if _, ok := want[k]; !ok && float64(n) > 0.005*float64(total) {
					t.Errorf("%d attack packets via %v if %d", n, k.exp, k.in)
				}
			}
		})
	}
}

// TestMixed checks that the mixed scenario runs its attacks one after another, each only
// in its own phase.
func TestMixed(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Scenario = ScenarioMixed
	cfg.Rate = 100
	cfg.AttackRate = 1000
	g, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ph := g.Phases()
	origin := testEpoch.UnixNano()
	seen, outside := map[string]int{}, map[string]int{}
	err = g.Simulate(testEpoch, 500*time.Second, func(d *Datagram) error {
		for i := range d.Records {
			r := &d.Records[i]
			at := time.Duration(r.Start - origin)
			for _, p := range ph {
				if p.Name == PhaseNormal || !isAttack(p, r) {
					continue
				}
				if p.Contains(at) {
					seen[p.Name]++
				} else {
					outside[p.Name]++ // normal traffic that looks like it
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{AttackSYN, AttackSlammer, AttackAmp, AttackICMP} {
		if seen[name] < 1000 || outside[name] > seen[name]/100 {
			t.Errorf("%s: %d flows in its phase, %d outside", name, seen[name], outside[name])
		}
	}
}

// TestOddConfigs runs configurations away from the defaults: one exporter, many
// exporters with their own source addresses, a victim outside the customer ranges.
func TestOddConfigs(t *testing.T) {
	many := make([]netip.Addr, 7)
	for i := range many {
		many[i] = netip.AddrFrom4([4]byte{127, 0, 1, byte(i + 1)})
	}
	tests := []struct {
		name string
		edit func(*Config)
	}{
		{"one exporter", func(c *Config) { c.Exporters = 1; c.Scenario = AttackSYN }},
		{"seven sources", func(c *Config) { c.Exporters = 0; c.Sources = many; c.Scenario = AttackAmp }},
		{"outside victim", func(c *Config) {
			c.Victims = []netip.Addr{netip.MustParseAddr("203.0.113.99")}
			c.Scenario = AttackICMP
			c.Format = "sflow"
		}},
		{"no background", func(c *Config) { c.Rate = 0; c.Scenario = AttackSlammer; c.Format = "ipfix" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := DefaultConfig()
			tt.edit(&cfg)
			g, err := New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			p := g.Phases()[1]
			exporters := map[netip.Addr]bool{}
			var attack int
			err = g.Simulate(testEpoch, LeadIn+3*time.Second, func(d *Datagram) error {
				exporters[d.Exporter] = true
				for i := range d.Records {
					if isAttack(p, &d.Records[i]) {
						attack++
					}
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if attack == 0 {
				t.Error("no attack records")
			}
			if len(exporters) > len(g.Exporters()) {
				t.Errorf("datagrams from %d exporters of %d", len(exporters), len(g.Exporters()))
			}
		})
	}
}
