package detector

import (
	"cmp"
	"math"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/flowhound/flowhound/baseline"
	"github.com/flowhound/flowhound/flow"
	"github.com/flowhound/flowhound/rules"
	"github.com/flowhound/flowhound/signatures"
)

var (
	edge1    = netip.MustParseAddr("127.0.0.11")
	edge2    = netip.MustParseAddr("127.0.0.12")
	victim   = netip.MustParseAddr("192.0.2.10")
	infected = netip.MustParseAddr("198.51.100.77")
	t0       = time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC).UnixNano()
)

func testConfig() Config {
	c := DefaultConfig()
	c.Networks = []Network{{Name: "customers", Prefixes: []netip.Prefix{
		netip.MustParsePrefix("192.0.2.0/24"), netip.MustParsePrefix("198.51.100.0/24")}}}
	c.Exporters = []Exporter{{Address: edge1, Name: "edge1", Interfaces: map[uint32]Interface{3: {Name: "Gi0/0/3", Role: "external"}}}}
	c.Hold = 5 * time.Second
	return c
}

func newTestDetector(t testing.TB, cfg Config) (*Detector, *[]Event) {
	t.Helper()
	set, err := signatures.Compile(rules.Default())
	if err != nil {
		t.Fatal(err)
	}
	var events []Event
	d, err := New(cfg, Deps{Rules: set, OnEvent: func(ev Event) { events = append(events, ev) }})
	if err != nil {
		t.Fatal(err)
	}
	return d, &events
}

// traffic makes one second's records of a stream: n flows of pk packets of size bytes each.
type stream struct {
	src, dst         netip.Addr
	exporter         netip.Addr
	inIf             uint32
	proto, flags     uint8
	sport, dport     uint16
	flowsPerSec      int
	pkts, bytesPerPk uint64
	sampling         uint32
	randomSrc        bool
}

func (s stream) second(now int64, seq *uint32) []flow.Record {
	out := make([]flow.Record, 0, s.flowsPerSec)
	for i := 0; i < s.flowsPerSec; i++ {
		*seq++
		src := s.src
		if s.randomSrc {
			src = netip.AddrFrom4([4]byte{203, byte(*seq >> 16), byte(*seq >> 8), byte(*seq)})
		}
		out = append(out, flow.Record{
			Received: now + int64(i)*int64(time.Second)/int64(s.flowsPerSec),
			Start:    now - int64(time.Millisecond), End: now,
			Exporter: s.exporter, SrcAddr: src, DstAddr: s.dst, InIf: s.inIf,
			Proto: s.proto, TCPFlags: s.flags, SrcPort: s.sport, DstPort: s.dport,
			Packets: s.pkts, Bytes: s.pkts * s.bytesPerPk, SamplingRate: s.sampling,
			Version: flow.VersionNetFlow5,
			Has:     flow.HasSrcAddr | flow.HasDstAddr | flow.HasProto | flow.HasTCPFlags | flow.HasSrcPort | flow.HasDstPort | flow.HasPackets | flow.HasBytes | flow.HasInIf,
		})
	}
	return out
}

// run feeds the streams that are on during [from, to) seconds, evaluating every second.
func run(d *Detector, seconds int, on func(sec int) []stream) {
	var seq uint32
	for sec := 0; sec < seconds; sec++ {
		now := t0 + int64(sec)*int64(time.Second)
		d.Evaluate(now)
		for _, s := range on(sec) {
			d.Process(s.second(now, &seq))
		}
	}
}

func TestDetectorLifecycle(t *testing.T) {
	synFlood := func(iface uint32, exp netip.Addr, fps int) stream {
		return stream{dst: victim, exporter: exp, inIf: iface, proto: flow.ProtoTCP, flags: flow.FlagSYN,
			sport: 40000, dport: 80, flowsPerSec: fps, pkts: 1, bytesPerPk: 40, randomSrc: true}
	}
	web := stream{src: netip.MustParseAddr("203.0.113.5"), dst: victim, exporter: edge1, inIf: 3, proto: flow.ProtoTCP,
		flags: flow.FlagSYN | flow.FlagACK | flow.FlagPSH | flow.FlagFIN, sport: 443, dport: 50000, flowsPerSec: 20, pkts: 50, bytesPerPk: 1200}
	slammer := stream{src: infected, exporter: edge2, inIf: 12, proto: flow.ProtoUDP, sport: 3000, dport: 1434,
		flowsPerSec: 500, pkts: 2, bytesPerPk: 404}

	tests := []struct {
		name       string
		seconds    int
		on         func(sec int) []stream
		wantRule   string // "" = no anomaly
		wantKey    string
		wantIf     uint32
		wantShare  float64 // minimum share of the first traceback row
		maxDelay   float64 // seconds
		wantEnded  bool
		wantRaised int
	}{
		{
			name: "normal web traffic raises nothing", seconds: 30,
			on: func(int) []stream { return []stream{web} },
		},
		{
			name: "syn flood from two ingress interfaces", seconds: 30,
			on: func(sec int) []stream {
				if sec >= 5 && sec < 15 {
					return []stream{web, synFlood(3, edge1, 8000), synFlood(7, edge2, 2000)}
				}
				return []stream{web}
			},
			wantRule: "tcp-syn-flood", wantKey: "192.0.2.10", wantIf: 3, wantShare: 0.7, maxDelay: 1,
			wantEnded: true, wantRaised: 1,
		},
		{
			name: "a flood that pauses inside the hold is one anomaly", seconds: 40,
			on: func(sec int) []stream {
				if sec >= 5 && sec < 10 || sec >= 12 && sec < 18 {
					return []stream{synFlood(3, edge1, 10000)}
				}
				return nil
			},
			wantRule: "tcp-syn-flood", wantKey: "192.0.2.10", wantIf: 3, wantShare: 0.99, maxDelay: 1,
			wantEnded: true, wantRaised: 1,
		},
		{
			name: "outbound slammer", seconds: 40,
			on: func(sec int) []stream {
				if sec >= 3 && sec < 10 {
					return []stream{slammer}
				}
				return nil
			},
			wantRule: "sql-slammer", wantKey: "198.51.100.77", wantIf: 12, wantShare: 0.99, maxDelay: 1,
			wantEnded: true, wantRaised: 1,
		},
		{
			name: "a sampled flood with too few samples to trust stays quiet", seconds: 20,
			on: func(sec int) []stream {
				s := synFlood(3, edge1, 1)
				s.sampling = 100000 // one sampled packet a second stands for 100 kpps
				return []stream{s}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, events := newTestDetector(t, testConfig())
			run(d, tt.seconds, tt.on)
			var raised, ended []Anomaly
			for _, ev := range *events {
				switch ev.Type {
				case "raised":
					raised = append(raised, ev.Anomaly)
				case "ended":
					ended = append(ended, ev.Anomaly)
				}
			}
			if tt.wantRule == "" {
				for _, a := range raised {
					t.Errorf("unexpected anomaly: %s", a.Summary())
				}
				return
			}
			if len(raised) != tt.wantRaised {
				for _, a := range raised {
					t.Logf("raised: %s", a.Summary())
				}
				t.Fatalf("raised %d anomalies, want %d", len(raised), tt.wantRaised)
			}
			a := raised[0]
			if a.Rule != tt.wantRule || a.Resource.Key != tt.wantKey {
				t.Fatalf("raised %s on %s, want %s on %s", a.Rule, a.Resource.Key, tt.wantRule, tt.wantKey)
			}
			if a.DetectionDelay > tt.maxDelay {
				t.Errorf("detection delay %.2fs, want at most %.2fs", a.DetectionDelay, tt.maxDelay)
			}
			if len(a.Traceback) == 0 || a.Traceback[0].InIf != tt.wantIf || a.Traceback[0].Share < tt.wantShare {
				t.Errorf("traceback %+v, want in_if %d first with share >= %.2f", a.Traceback, tt.wantIf, tt.wantShare)
			}
			if a.SeverityPct <= 100 || !strings.Contains(a.SeverityText, "% of ") {
				t.Errorf("severity %.1f %q", a.SeverityPct, a.SeverityText)
			}
			if a.Filters["bpf"] == "" || a.Character.SampledFlows == 0 || len(a.Snapshot) == 0 {
				t.Errorf("missing evidence: filters %v, characterization %+v, %d snapshot flows", a.Filters, a.Character, len(a.Snapshot))
			}
			if tt.wantEnded != (len(ended) == 1) {
				t.Errorf("ended %d, want ended=%v", len(ended), tt.wantEnded)
			}
			if len(ended) == 1 && (ended[0].ID != a.ID || ended[0].End == nil) {
				t.Errorf("ended anomaly %s (end %v) is not the raised %s", ended[0].ID, ended[0].End, a.ID)
			}
		})
	}
}

func TestSYNFloodCharacterizationAndFilters(t *testing.T) {
	d, events := newTestDetector(t, testConfig())
	run(d, 4, func(int) []stream {
		return []stream{{dst: victim, exporter: edge1, inIf: 3, proto: flow.ProtoTCP, flags: flow.FlagSYN,
			sport: 40000, dport: 443, flowsPerSec: 5000, pkts: 1, bytesPerPk: 40, randomSrc: true}}
	})
	if len(*events) == 0 {
		t.Fatal("no anomaly")
	}
	a := (*events)[0].Anomaly
	c := a.Character
	if len(c.Protocols) == 0 || c.Protocols[0].Value != "tcp" || len(c.DstPorts) == 0 || c.DstPorts[0].Value != "443" ||
		len(c.TCPFlags) == 0 || c.TCPFlags[0].Value != "S" || c.PacketSize.Mean != 40 {
		t.Errorf("characterization %+v", c)
	}
	if c.SrcCountEstimate < 1000 {
		t.Errorf("src_count_estimate %.0f for thousands of spoofed sources", c.SrcCountEstimate)
	}
	want := map[string]string{
		"bpf":    "ip and dst net 192.0.2.10/32 and (tcp and (dst port 443) and tcp[tcpflags] & (tcp-syn|tcp-ack) == tcp-syn)",
		"nfdump": "dst net 192.0.2.10/32 and proto tcp and dst port in [ 443 ] and flags S and not flags A",
	}
	for k, v := range want {
		if a.Filters[k] != v {
			t.Errorf("%s filter:\n got %q\nwant %q", k, a.Filters[k], v)
		}
	}
	if a.FilterCoverage == nil || a.FilterCoverage.AttackShare != 1 {
		t.Errorf("filter coverage %+v", a.FilterCoverage)
	}
	if a.Traceback[0].ExporterName != "edge1" || a.Traceback[0].InIfName != "Gi0/0/3" {
		t.Errorf("traceback names %+v", a.Traceback[0])
	}
}

// TestProfiledSurge learns a prefix's normal traffic, then quadruples it below every fixed
// threshold: the profiled rule raises it against the baseline, with severity over expected.
func TestProfiledSurge(t *testing.T) {
	cfg := testConfig()
	bcfg := baseline.DefaultConfig()
	bcfg.WarmUp = 5 * time.Minute
	for _, n := range cfg.Networks {
		bcfg.Networks = append(bcfg.Networks, baseline.Network{Name: n.Name, Prefixes: n.Prefixes})
	}
	bl, err := baseline.New(bcfg, baseline.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	set, err := signatures.Compile(rules.Default())
	if err != nil {
		t.Fatal(err)
	}
	var events []Event
	d, err := New(cfg, Deps{Rules: set, Baselines: bl, OnEvent: func(ev Event) { events = append(events, ev) }})
	if err != nil {
		t.Fatal(err)
	}
	// 50 web hosts, 8 kpps in all; from minute 15 on, each host gets four times as much.
	web := func(host int, fps int) stream {
		return stream{src: netip.MustParseAddr("203.0.113.5"), dst: netip.AddrFrom4([4]byte{192, 0, 2, byte(100 + host)}),
			exporter: edge1, inIf: 3, proto: flow.ProtoTCP, flags: flow.FlagACK | flow.FlagPSH, sport: 443, dport: 50000,
			flowsPerSec: fps, pkts: 40, bytesPerPk: 1000}
	}
	const surgeAt = 15 * 60
	run(d, surgeAt+60, func(sec int) []stream {
		var out []stream
		for h := 0; h < 50; h++ {
			fps := 4
			if sec >= surgeAt {
				fps = 16
			}
			out = append(out, web(h, fps))
		}
		return out
	})
	// The surge all enters by one interface, so that interface's baseline sees it too.
	want := map[string]string{"prefix-traffic-surge": "192.0.2.0/24", "interface-traffic-surge": "127.0.0.11:3"}
	var a *Anomaly
	for _, ev := range events {
		if ev.Type != "raised" {
			continue
		}
		if want[ev.Anomaly.Rule] != ev.Anomaly.Resource.Key {
			t.Errorf("unexpected: %s", ev.Anomaly.Summary())
		}
		if ev.Anomaly.Rule == "prefix-traffic-surge" {
			a = &ev.Anomaly
		}
	}
	if a == nil {
		t.Fatal("no prefix-traffic-surge on 192.0.2.0/24")
	}
	if at := a.Start.Sub(time.Unix(0, t0)); at < surgeAt*time.Second {
		t.Errorf("raised at %v, before the surge", at)
	}
	if a.Expected.PPS < 6000 || a.Expected.PPS > 10000 {
		t.Errorf("expected %.0f pps, want about 8000", a.Expected.PPS)
	}
	if a.SeverityPct < 250 || a.SeverityPct > 600 {
		t.Errorf("severity %.1f%%, want about 400%% of expected", a.SeverityPct)
	}
}

// TestReload keeps the state of rules that survive a reload and ends the anomalies of
// rules that are gone.
func TestReload(t *testing.T) {
	d, events := newTestDetector(t, testConfig())
	flood := func(int) []stream {
		return []stream{{dst: victim, exporter: edge1, inIf: 3, proto: flow.ProtoTCP, flags: flow.FlagSYN,
			dport: 80, flowsPerSec: 5000, pkts: 1, bytesPerPk: 40, randomSrc: true}}
	}
	run(d, 3, flood)
	if len(*events) != 1 || (*events)[0].Type != "raised" {
		t.Fatalf("events %d, want one raise", len(*events))
	}
	same, _ := signatures.Compile(rules.Default())
	if err := d.Reload(same); err != nil {
		t.Fatal(err)
	}
	run(d, 3, flood)
	if len(*events) != 1 {
		t.Fatalf("a reload with the same rules raised again: %d events", len(*events))
	}
	var without []rules.Rule
	for _, r := range rules.Default() {
		if r.Name != "tcp-syn-flood" {
			without = append(without, r)
		}
	}
	set, _ := signatures.Compile(without)
	if err := d.Reload(set); err != nil {
		t.Fatal(err)
	}
	if last := (*events)[len(*events)-1]; last.Type != "ended" || last.Anomaly.Rule != "tcp-syn-flood" {
		t.Fatalf("after removing the rule, last event %s %s", last.Type, last.Anomaly.Rule)
	}
	if len(d.Active()) != 0 {
		t.Errorf("%d anomalies still active", len(d.Active()))
	}
}

// TestTransitCountsOnce: a flood that enters at the edge and crosses a core router is
// reported by both; its rate counts once, and both appear in the traceback with equal
// shares, also when the flood is fast enough for its window to sample the ingress.
func TestTransitCountsOnce(t *testing.T) {
	for _, fps := range []int{3000, 24000} {
		t.Run(strconv.Itoa(fps), func(t *testing.T) {
			cfg := testConfig()
			core := netip.MustParseAddr("127.0.0.21")
			cfg.Exporters = append(cfg.Exporters, Exporter{Address: core, Name: "core1", Interfaces: map[uint32]Interface{20: {Name: "Hu0/2/0/0", Role: "internal"}}})
			d, events := newTestDetector(t, cfg)
			flood := stream{dst: victim, exporter: edge1, inIf: 3, proto: flow.ProtoTCP, flags: flow.FlagSYN,
				dport: 80, flowsPerSec: fps, pkts: 1, bytesPerPk: 40, randomSrc: true}
			seen := flood
			seen.exporter, seen.inIf = core, 20
			// The two routers' records arrive interleaved, as they would at a collector.
			var seq uint32
			for sec := 0; sec < 5; sec++ {
				now := t0 + int64(sec)*int64(time.Second)
				d.Evaluate(now)
				recs := append(flood.second(now, &seq), seen.second(now, &seq)...)
				slices.SortStableFunc(recs, func(a, b flow.Record) int { return cmp.Compare(a.Received, b.Received) })
				d.Process(recs)
			}
			if len(*events) == 0 {
				t.Fatal("no anomaly")
			}
			a := (*events)[len(*events)-1].Anomaly
			if want := float64(fps); a.Observed.PPS > want*1.1 || a.Observed.PPS < want*0.9 {
				t.Errorf("observed %.0f pps, want about %.0f: the core router's copy counted again", a.Observed.PPS, want)
			}
			if len(a.Traceback) != 2 || math.Abs(a.Traceback[0].Share-0.5) > 0.1 {
				t.Errorf("traceback %+v, want the edge and the core at about half each", a.Traceback)
			}
		})
	}
}

// TestWindowLayout keeps what a flow into a light window writes in the window's first cache
// line, and the window two lines long, which the allocator's size class keeps aligned.
func TestWindowLayout(t *testing.T) {
	var w window
	if size := unsafe.Sizeof(w); size != 128 {
		t.Errorf("window is %d bytes, want two cache lines (128): a million hosts have two million windows", size)
	}
	for name, end := range map[string]uintptr{
		"cur":          unsafe.Offsetof(w.cur) + unsafe.Sizeof(w.cur),
		"curOff":       unsafe.Offsetof(w.curOff) + unsafe.Sizeof(w.curOff),
		"lastIngress":  unsafe.Offsetof(w.lastIngress) + unsafe.Sizeof(w.lastIngress),
		"episodeStart": unsafe.Offsetof(w.episodeStart) + unsafe.Sizeof(w.episodeStart),
	} {
		if end > 64 {
			t.Errorf("%s ends at byte %d, past the first cache line", name, end)
		}
	}
	// A flow into a full window reads its detail's first line, and one line more for the
	// ingress counts it adds to (each of its two count arrays is a line). Details are
	// allocated alone, in a size class that is a multiple of 64 bytes: lines are aligned.
	var d detail
	for name, end := range map[string]uintptr{
		"slots":      unsafe.Offsetof(d.slots) + unsafe.Sizeof(d.slots),
		"top":        unsafe.Offsetof(d.top) + unsafe.Sizeof(d.top),
		"topIdx":     unsafe.Offsetof(d.topIdx) + unsafe.Sizeof(d.topIdx),
		"ingress.id": unsafe.Offsetof(d.ingress) + unsafe.Offsetof(d.ingress.id) + unsafe.Sizeof(d.ingress.id),
		"ingress.n":  unsafe.Offsetof(d.ingress) + unsafe.Offsetof(d.ingress.n) + unsafe.Sizeof(d.ingress.n),
	} {
		if end > 64 {
			t.Errorf("detail.%s ends at byte %d, past the first cache line", name, end)
		}
	}
	for name, off := range map[string]uintptr{
		"packets": unsafe.Offsetof(d.ingress) + unsafe.Offsetof(d.ingress.packets),
		"bytes":   unsafe.Offsetof(d.ingress) + unsafe.Offsetof(d.ingress.bytes),
	} {
		if off%64 != 0 {
			t.Errorf("detail.ingress.%s starts at byte %d, not on a cache line", name, off)
		}
	}
}

// TestPassesMatchDirect runs the same flows through a detector counting flow by flow and one
// counting in passes (as it does past directMax resources) and expects the same anomalies
// and the same window totals: the tests with few hosts would not exercise the passes.
func TestPassesMatchDirect(t *testing.T) {
	cfg := testConfig()
	cfg.Networks = []Network{{Name: "customers", Prefixes: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}}
	direct, evDirect := newTestDetector(t, cfg)
	passes, evPasses := newTestDetector(t, cfg)
	passes.directMax = 0
	recs := realisticMix(60000)
	// A flood on one host and a scan over many, among the mix, arriving over 3 s.
	victim := netip.MustParseAddr("10.0.0.99")
	for i := 0; i < 20000; i++ {
		r := recs[i%len(recs)]
		r.DstAddr, r.Proto, r.TCPFlags, r.DstPort, r.Packets, r.Bytes = victim, flow.ProtoTCP, flow.FlagSYN, 80, 5, 300
		recs = append(recs, r)
	}
	for i := range recs {
		at := t0 + int64(i)*int64(3*time.Second)/int64(len(recs))
		recs[i].Received, recs[i].End = at, at
		if i%3 == 0 {
			recs[i].Start = at - int64(i%40)*int64(time.Second)/4
		} else {
			recs[i].Start = at
		}
	}
	for _, d := range []*Detector{direct, passes} {
		for i := 0; i < len(recs); i += 1000 {
			batch := append([]flow.Record(nil), recs[i:min(i+1000, len(recs))]...)
			d.Process(batch)
			if i%20000 == 0 {
				d.Evaluate(batch[0].Received)
			}
		}
		d.Evaluate(t0 + int64(3*time.Second))
	}
	if passes.table.used < 4096 || direct.table.used != passes.table.used {
		t.Fatalf("resources: direct %d, passes %d (want the same, and past 4096)", direct.table.used, passes.table.used)
	}
	if len(direct.all) != len(passes.all) {
		t.Fatalf("windows: direct %d, passes %d", len(direct.all), len(passes.all))
	}
	now := t0 + int64(3*time.Second)
	for i, w := range direct.all {
		v := passes.all[i]
		if w.res != v.res || w.rule != v.rule {
			t.Fatalf("window %d: direct %v rule %d, passes %v rule %d", i, w.res, w.rule, v.res, v.rule)
		}
		if (w.detail == nil) != (v.detail == nil) || w.cur != v.cur {
			t.Fatalf("window %d (%v): light state differs: %+v / %+v", i, w.res, w.cur, v.cur)
		}
		if w.detail != nil {
			a1, a2, a3, a4 := w.totals(now)
			b1, b2, b3, b4 := v.totals(now)
			if a1 != b1 || a2 != b2 || a3 != b3 || a4 != b4 {
				t.Fatalf("window %d (%v): totals %v %v %v %v / %v %v %v %v", i, w.res, a1, a2, a3, a4, b1, b2, b3, b4)
			}
		}
	}
	if len(*evDirect) == 0 || len(*evDirect) != len(*evPasses) {
		t.Fatalf("events: direct %d, passes %d", len(*evDirect), len(*evPasses))
	}
	for i := range *evDirect {
		a, b := (*evDirect)[i].Anomaly, (*evPasses)[i].Anomaly
		if a.ID != b.ID || a.SeverityPct != b.SeverityPct {
			t.Errorf("event %d: direct %s %.1f%%, passes %s %.1f%%", i, a.ID, a.SeverityPct, b.ID, b.SeverityPct)
		}
	}
}

// TestNetworkSweep sends one SYN to each of 30,000 hosts, as a scan of a network does: the
// vertical-scan rule counts distinct ports, which a light window cannot, so each of those
// windows would take its detail (a few KB). The full windows stay within
// MaxEagerWindows and the refused ones are counted.
func TestNetworkSweep(t *testing.T) {
	cfg := testConfig()
	cfg.Networks = []Network{{Name: "h", Prefixes: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/12")}}}
	cfg.MaxEagerWindows = 5000
	d, _ := newTestDetector(t, cfg)
	// Scans and the worm signatures are eager; carpet bombing counts distinct hosts but
	// needs rates too, as do the floods and the signatures with a pps threshold.
	eager := map[string]bool{"vertical-scan": true, "horizontal-scan": true, "sql-slammer": true, "witty-worm": true, "blaster-rpc-scan": true}
	for _, ri := range d.rules {
		want := eager[ri.rule.Name]
		if ri.eager != want {
			t.Errorf("%s: eager %v, want %v", ri.rule.Name, ri.eager, want)
		}
	}
	var recs []flow.Record
	for h := 0; h < 30000; h++ {
		recs = append(recs, flow.Record{Received: t0, Start: t0, End: t0, Exporter: edge1, InIf: 1,
			SrcAddr: netip.MustParseAddr("198.18.0.1"), DstAddr: netip.AddrFrom4([4]byte{10, byte(h >> 16), byte(h >> 8), byte(h)}),
			Proto: flow.ProtoTCP, TCPFlags: flow.FlagSYN, SrcPort: 40000, DstPort: 22, Packets: 1, Bytes: 60,
			Has: flow.HasSrcAddr | flow.HasDstAddr | flow.HasProto | flow.HasTCPFlags | flow.HasSrcPort | flow.HasDstPort | flow.HasPackets | flow.HasBytes | flow.HasInIf})
	}
	refused := promotionsRefused.Get()
	d.Process(recs)
	d.Evaluate(t0 + int64(time.Second)/2)
	full := 0
	for _, w := range d.all {
		if w.detail != nil && d.rules[w.rule].eager {
			full++
		}
	}
	if full != d.eagerFull || full > cfg.MaxEagerWindows {
		t.Errorf("full distinct windows: %d (counted %d), want at most %d", full, d.eagerFull, cfg.MaxEagerWindows)
	}
	if full < cfg.MaxEagerWindows {
		t.Errorf("only %d windows promoted: the sweep does not reach the bound", full)
	}
	if got := promotionsRefused.Get() - refused; got < 30000-uint64(cfg.MaxEagerWindows) {
		t.Errorf("refused promotions counted: %d, want %d", got, 30000-cfg.MaxEagerWindows)
	}
	// Once the sweep is over, the windows demote and others may promote again.
	for sec := int64(1); sec <= 70; sec++ {
		d.Evaluate(t0 + sec*int64(time.Second))
	}
	if d.eagerFull != 0 {
		t.Errorf("after the sweep: %d full distinct windows counted, want 0", d.eagerFull)
	}
}
