package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/flowhound/flowhound/detector"
	"github.com/flowhound/flowhound/gen"
)

// The scenario tests run whole attacks and a normal day through `flowhound replay` and
// check what an operator would be told: which rule, about which victim, in which
// direction, entering through which router interface and with what share, and nothing
// else. Flows come from two exporters:
//
//   - softflowd, a real NetFlow/IPFIX exporter, metering packet captures built here
//     (scenario_pcap_test.go) and exporting v5, v9 and IPFIX; its records are given the
//     interfaces of a border router with a transit and a peering uplink
//     (scenario_export_test.go);
//   - `flowhound gen -pcap`, the synthetic exporter, in v5, v9, IPFIX and sFlow.
//
// Every replay runs twice and must print the same bytes.

// scnWant is the one anomaly a scenario must raise.
type scnWant struct {
	rule      string
	resType   string
	key       string
	direction string
	exporter  string
	inIf      uint32
	share     float64
	group     string // the monitored network the resource is in
}

// shareTolerance bounds the difference between the traceback's first share and the share
// of the attack that the scenario sends through that interface.
const shareTolerance = 0.07

// delayBudget is DESIGN.md's worst case from the first exported flows of a flood reaching
// the engine to its anomaly. Budgets are measured by benchmarks; the scenarios log their
// delays and flag those over it.
const delayBudget = 2.0

var scnStart = time.Date(2025, 3, 10, 9, 0, 0, 0, time.UTC)

// scnAttackAt is when the attacks of the softflowd scenarios start: after more than a
// window (10 s) of exported background, so that a prefix's window is in its steady state
// when they begin.
const scnAttackAt = 12 * time.Second

type softflowdScenario struct {
	name  string
	seed  uint64
	build func(tr *scnTraffic)
	want  []scnWant // exactly these, nothing else
}

// The anomalies of the softflowd scenarios' attacks.
var (
	wantSYN = scnWant{rule: "tcp-syn-flood", resType: "host", key: "192.0.2.10", group: "hosting",
		direction: "incoming", exporter: "10.10.0.1", inIf: ifTransit, share: 0.8}
	wantSlammer = scnWant{rule: "sql-slammer", resType: "host", key: "198.51.100.77", group: "broadband",
		direction: "outgoing", exporter: "10.10.0.1", inIf: ifCustomerB, share: 1}
	wantAmp = scnWant{rule: "udp-amplification", resType: "host", key: "198.51.100.20", group: "broadband",
		direction: "incoming", exporter: "10.10.0.1", inIf: ifPeering, share: 0.75}
	wantICMP = scnWant{rule: "icmp-flood", resType: "host", key: "192.0.2.30", group: "hosting",
		direction: "incoming", exporter: "10.10.0.1", inIf: ifTransit, share: 0.65}
	// One anomaly on the prefix, none on its hosts.
	wantCarpet = scnWant{rule: "carpet-bombing", resType: "prefix", key: "192.0.2.0/24", group: "hosting",
		direction: "incoming", exporter: "10.10.0.1", inIf: ifPeering, share: 0.7}
)

func softflowdScenarios() []softflowdScenario {
	const span = 28 * time.Second
	from, to := scnAttackAt, scnAttackAt+3*time.Second
	return []softflowdScenario{{
		// A normal day, compressed: visitors of the customers' web servers, customers
		// browsing, a busy resolver (1150 queries/s, with DNSSEC-sized answers), NTP,
		// pings, and a subscriber's speed test over four TCP streams: 940 Mbit/s down for
		// 3 s, then 200 Mbit/s up for 6 s. The download is 350 MB in one record per
		// stream: counted in the second the records arrive instead of over the seconds
		// they cover, it would look like a 2.8 Gbit/s flood. The upload outlives the
		// exporter's active timeout (5 s), so its first records are cut before the
		// connections close, as a router's are.
		name: "normal-day",
		seed: 1,
		build: func(tr *scnTraffic) {
			tr.background(span, 1)
			tr.speedTest(6*time.Second, scnSpeedClient, 940, 200, 3*time.Second, 6*time.Second)
		},
	}, {
		name: "syn-flood",
		seed: 2,
		build: func(tr *scnTraffic) {
			tr.background(span, 0.3)
			tr.synFlood(from, to)
		},
		want: []scnWant{wantSYN},
	}, {
		name: "slammer",
		seed: 3,
		build: func(tr *scnTraffic) {
			tr.background(span, 0.3)
			tr.slammer(from, to+time.Second)
			tr.slammerFromOutside(0, span)
		},
		want: []scnWant{wantSlammer},
	}, {
		name: "udp-amp",
		seed: 4,
		build: func(tr *scnTraffic) {
			tr.background(span, 0.3)
			tr.amplification(from, to)
		},
		want: []scnWant{wantAmp},
	}, {
		name: "icmp-flood",
		seed: 5,
		build: func(tr *scnTraffic) {
			tr.background(span, 0.3)
			tr.pingFlood(from, to)
		},
		want: []scnWant{wantICMP},
	}, {
		name: "carpet-bombing",
		seed: 6,
		build: func(tr *scnTraffic) {
			tr.background(span, 0.3)
			tr.carpetBombing(from, from+4*time.Second)
		},
		want: []scnWant{wantCarpet},
	}, {
		// Everything at once, and the capture ends while the attacks are still on: the
		// anomalies are printed as ongoing at the end of input, in an order that must
		// not change from one replay to the next.
		name: "all-at-once",
		seed: 7,
		build: func(tr *scnTraffic) {
			tr.background(scnAttackAt+6*time.Second, 0.3)
			tr.synFlood(from, to)
			tr.slammer(from, to)
			tr.amplification(from, to)
			tr.pingFlood(from, to)
		},
		want: []scnWant{wantSYN, wantSlammer, wantAmp, wantICMP},
	}}
}

// TestScenarioSoftflowd meters each scenario's packets with softflowd in NetFlow v5, v9
// and IPFIX and replays the export.
func TestScenarioSoftflowd(t *testing.T) {
	if _, err := exec.LookPath("softflowd"); err != nil {
		t.Skip("softflowd is not installed")
	}
	cfg, err := filepath.Abs("../../testdata/scenarios/softflowd.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, sc := range softflowdScenarios() {
		t.Run(sc.name, func(t *testing.T) {
			t.Parallel()
			dir := scenarioDir(t, sc.name)
			tr := newTraffic(sc.seed, scnStart)
			sc.build(tr)
			packets := filepath.Join(dir, "packets.pcap")
			if err := tr.write(packets); err != nil {
				t.Fatal(err)
			}
			for _, v := range []int{5, 9, 10} {
				name := map[int]string{5: "v5", 9: "v9", 10: "ipfix"}[v]
				t.Run(name, func(t *testing.T) {
					ex := runSoftflowd(t, packets, v)
					if err := ex.rewrite(); err != nil {
						t.Fatal(err)
					}
					capture := filepath.Join(dir, "export-"+name+".pcap")
					if err := ex.writeCapture(capture); err != nil {
						t.Fatal(err)
					}
					got := replayTwice(t, cfg, capture)
					checkScenario(t, sc.name+"/"+name, got, sc.want, scnStart.Add(scnAttackAt))
				})
			}
		})
	}
}

// scenarioDir returns where a scenario writes its captures: a temporary directory, or
// $FLOWHOUND_SCENARIO_DIR/NAME when set, to keep them for flowhound decode, replay or
// tshark.
func scenarioDir(t *testing.T, name string) string {
	root := os.Getenv("FLOWHOUND_SCENARIO_DIR")
	if root == "" {
		return t.TempDir()
	}
	dir := filepath.Join(root, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Logf("captures in %s", dir)
	return dir
}

// genCase is a `flowhound gen` scenario and the anomaly it must raise (see `gen -h`).
type genCase struct {
	scenario string
	want     []scnWant
}

var genCases = []genCase{
	{gen.PhaseNormal, nil},
	{gen.AttackSYN, []scnWant{{rule: "tcp-syn-flood", resType: "host", key: "192.0.2.10", direction: "incoming", group: "customers", exporter: "127.0.0.11", inIf: 3, share: 0.85}}},
	{gen.AttackSlammer, []scnWant{{rule: "sql-slammer", resType: "host", key: "198.51.100.77", direction: "outgoing", group: "customers", exporter: "127.0.0.13", inIf: 11, share: 1}}},
	{gen.AttackAmp, []scnWant{{rule: "udp-amplification", resType: "host", key: "198.51.100.20", direction: "incoming", group: "customers", exporter: "127.0.0.12", inIf: 1, share: 0.6}}},
	{gen.AttackICMP, []scnWant{{rule: "icmp-flood", resType: "host", key: "192.0.2.30", direction: "incoming", group: "customers", exporter: "127.0.0.13", inIf: 2, share: 0.7}}},
}

// TestScenarioGen replays `flowhound gen -pcap` captures of each scenario in each format.
func TestScenarioGen(t *testing.T) {
	cfg := writeGenConfig(t)
	start := time.Date(2025, 3, 10, 10, 0, 0, 0, time.UTC)
	for _, format := range []string{"v5", "v9", "ipfix", "sflow"} {
		for _, c := range genCases {
			t.Run(format+"/"+c.scenario, func(t *testing.T) {
				t.Parallel()
				capture := filepath.Join(scenarioDir(t, "gen-"+format+"-"+c.scenario), "gen.pcap")
				args := []string{"-pcap", capture, "-scenario", c.scenario, "-format", format, "-seed", "7",
					"-start", start.Format(time.RFC3339), "-duration", "16s", "-q"}
				if err := runGen(context.Background(), args, io.Discard, io.Discard); err != nil {
					t.Fatalf("gen %v: %v", args, err)
				}
				got := replayTwice(t, cfg, capture)
				checkScenario(t, format+"/"+c.scenario, got, c.want, start.Add(gen.LeadIn))
			})
		}
	}
}

// writeGenConfig writes the collector configuration for gen's routers, with the names
// and interfaces gen says they have.
func writeGenConfig(t *testing.T) string {
	t.Helper()
	g, err := gen.New(gen.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	b.WriteString("networks:\n  - name: customers\n    prefixes: [192.0.2.0/24, 198.51.100.0/24]\nexporters:\n")
	for _, e := range g.Exporters() {
		fmt.Fprintf(&b, "  - address: %s\n    name: %s\n    interfaces:\n", e.Addr, e.Name)
		for _, ifc := range e.Interfaces {
			fmt.Fprintf(&b, "      %d: {name: %q, role: %s}\n", ifc.Index, ifc.Name, ifc.Role)
		}
	}
	b.WriteString("detection:\n  hold: 5s\n")
	path := filepath.Join(t.TempDir(), "gen.yaml")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// replayTwice runs `flowhound replay` on the capture twice, requires the same output
// both times and returns the anomalies.
func replayTwice(t *testing.T, cfg, capture string) []detector.Anomaly {
	t.Helper()
	var outs [2][]byte
	for i := range outs {
		var out, errOut bytes.Buffer
		if err := runReplay(context.Background(), []string{"-config", cfg, capture}, &out, &errOut); err != nil {
			t.Fatalf("replay: %v\n%s", err, errOut.String())
		}
		if errOut.Len() > 0 {
			t.Errorf("replay wrote to stderr: %s", errOut.String())
		}
		outs[i] = out.Bytes()
	}
	if !bytes.Equal(outs[0], outs[1]) {
		a, b := strings.Split(string(outs[0]), "\n"), strings.Split(string(outs[1]), "\n")
		if sa, sb := slices.Sorted(slices.Values(a)), slices.Sorted(slices.Values(b)); slices.Equal(sa, sb) {
			t.Errorf("replay is not repeatable: the same %d anomalies, printed in a different order", len(a)-1)
		}
		for i := range max(len(a), len(b)) {
			if i >= len(a) || i >= len(b) || a[i] != b[i] {
				t.Errorf("replay is not repeatable: %d and %d lines, first difference at line %d:\n%.400s\n%.400s",
					len(a), len(b), i+1, at(a, i), at(b, i))
				break
			}
		}
	}
	var got []detector.Anomaly
	sc := bufio.NewScanner(bytes.NewReader(outs[0]))
	sc.Buffer(nil, 16<<20)
	for sc.Scan() {
		var a detector.Anomaly
		if err := json.Unmarshal(sc.Bytes(), &a); err != nil {
			t.Fatalf("replay printed a line that is not an anomaly: %v: %.200s", err, sc.Text())
		}
		got = append(got, a)
	}
	return got
}

func at(lines []string, i int) string {
	if i < len(lines) {
		return lines[i]
	}
	return "(end of output)"
}

// checkScenario asserts that got holds exactly the wanted anomalies, one each, raised
// after the attacks began, and nothing else.
func checkScenario(t *testing.T, name string, got []detector.Anomaly, wants []scnWant, attackAt time.Time) {
	t.Helper()
	matched := make([]bool, len(got))
	for _, want := range wants {
		rule := want.rule
		var match []int
		for i, a := range got {
			if a.Rule == rule && a.Resource.Key == want.key {
				match = append(match, i)
				matched[i] = true
			}
		}
		if len(match) != 1 {
			t.Errorf("%d %s anomalies on %s, want 1", len(match), rule, want.key)
			if len(match) == 0 {
				continue
			}
		}
		checkAnomaly(t, name, &got[match[0]], &want, rule, attackAt)
	}
	for i, a := range got {
		if !matched[i] {
			t.Errorf("unexpected anomaly: %s (%s, start %v)", a.Summary(), a.Status, a.Start)
		}
	}
}

func checkAnomaly(t *testing.T, name string, a *detector.Anomaly, want *scnWant, rule string, attackAt time.Time) {
	t.Helper()
	if a.Resource.Type != want.resType || a.Resource.Name != want.group {
		t.Errorf("%s: resource %+v, want type %s in %s", rule, a.Resource, want.resType, want.group)
	}
	if a.Direction != want.direction {
		t.Errorf("%s: direction %s, want %s", rule, a.Direction, want.direction)
	}
	if a.Start.Before(attackAt) {
		t.Errorf("%s: raised at %v, before the attack began at %v", rule, a.Start, attackAt)
	}
	if len(a.Traceback) == 0 {
		t.Errorf("%s: no traceback", rule)
	} else {
		tb := a.Traceback[0]
		if tb.Exporter != want.exporter || tb.InIf != want.inIf || math.Abs(tb.Share-want.share) > shareTolerance {
			t.Errorf("%s: traceback first %s if %d share %.3f, want %s if %d share %.2f±%.2f (all: %+v)", rule,
				tb.Exporter, tb.InIf, tb.Share, want.exporter, want.inIf, want.share, shareTolerance, a.Traceback)
		}
		if tb.ExporterName == "" || tb.InIfName == "" {
			t.Errorf("%s: traceback without the configured names: %+v", rule, tb)
		}
	}
	if a.DetectionDelay <= 0 {
		t.Errorf("%s: detection delay %.3f s", rule, a.DetectionDelay)
	}
	over := ""
	if a.DetectionDelay > delayBudget {
		over = ", over the 2 s budget"
	}
	t.Logf("detection delay %-28s %-18s %.3f s (raised %.3f s after the attack began, %s%s)", name, rule,
		a.DetectionDelay, a.Start.Sub(attackAt).Seconds(), a.Status, over)
}
