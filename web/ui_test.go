//go:build linux

package web_test

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"html"
	"io/fs"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"testing/fstest"
	"time"

	"github.com/flowhound/flowhound/api"
	"github.com/flowhound/flowhound/baseline"
	"github.com/flowhound/flowhound/detector"
	"github.com/flowhound/flowhound/flow"
	"github.com/flowhound/flowhound/ingest"
	"github.com/flowhound/flowhound/rules"
	"github.com/flowhound/flowhound/signatures"
	"github.com/flowhound/flowhound/web"
)

// The screenshots under testdata/web/ are refreshed with
//
//	go test ./web -run TestUI -screenshots=../testdata/web
//
// and are otherwise written to a temporary directory, so that a plain test run leaves the
// tree clean.
var screenshots = flag.String("screenshots", "", "directory to write the UI screenshots to")

const chromiumPath = "/usr/bin/chromium"

var (
	edge1    = netip.MustParseAddr("10.0.0.1")
	edge2    = netip.MustParseAddr("10.0.0.2")
	victim   = netip.MustParseAddr("192.0.2.10")
	infected = netip.MustParseAddr("198.51.100.77")
	webPeer  = netip.MustParseAddr("203.0.113.5")
)

// memAnomalies is the API's anomaly source for the test: what the detector raised.
type memAnomalies struct{ list []detector.Anomaly }

func (m *memAnomalies) List(status string, since time.Time) ([]detector.Anomaly, error) {
	var out []detector.Anomaly
	for _, a := range m.list {
		if (status == "" || a.Status == status) && !a.Start.Before(since) {
			out = append(out, a)
		}
	}
	return out, nil
}

func (m *memAnomalies) Get(id string) (detector.Anomaly, bool, error) {
	for _, a := range m.list {
		if a.ID == id {
			return a, true, nil
		}
	}
	return detector.Anomaly{}, false, nil
}

// stream is one traffic source: flowsPerSec records a second of pkts packets each.
type stream struct {
	src, dst     netip.Addr
	exporter     netip.Addr
	inIf         uint32
	proto, flags uint8
	sport, dport uint16
	flowsPerSec  int
	pkts, size   uint64
	spoofed      bool // a fresh source address per flow
}

func (s stream) second(now int64, seq *uint32) []flow.Record {
	out := make([]flow.Record, 0, s.flowsPerSec)
	for i := range s.flowsPerSec {
		*seq++
		src := s.src
		if s.spoofed {
			src = netip.AddrFrom4([4]byte{100 + byte(*seq%50), byte(*seq >> 16), byte(*seq >> 8), byte(*seq)})
		}
		at := now + int64(i)*int64(time.Second)/int64(s.flowsPerSec)
		out = append(out, flow.Record{
			Received: at, Start: at - int64(time.Millisecond), End: at,
			Exporter: s.exporter, SrcAddr: src, DstAddr: s.dst, InIf: s.inIf,
			Proto: s.proto, TCPFlags: s.flags, SrcPort: s.sport + uint16(*seq%7), DstPort: s.dport,
			Packets: s.pkts, Bytes: s.pkts * s.size, Version: flow.VersionNetFlow5,
			Has: flow.HasSrcAddr | flow.HasDstAddr | flow.HasProto | flow.HasTCPFlags | flow.HasSrcPort |
				flow.HasDstPort | flow.HasPackets | flow.HasBytes | flow.HasInIf | flow.HasStart | flow.HasEnd,
		})
	}
	return out
}

// detect runs the real detector with the default rule pack over a minute of flow time
// ending now: a worm outbreak early on that has ended, then a SYN flood on a customer
// host, entering by two routers, that is still going on.
func detect(t *testing.T) (syn, slammer detector.Anomaly, all []detector.Anomaly) {
	t.Helper()
	set, err := signatures.Compile(rules.Default())
	if err != nil {
		t.Fatal(err)
	}
	cfg := detector.DefaultConfig()
	cfg.Networks = []detector.Network{{Name: "customers", Prefixes: []netip.Prefix{
		netip.MustParsePrefix("192.0.2.0/24"), netip.MustParsePrefix("198.51.100.0/24")}}}
	cfg.Exporters = []detector.Exporter{
		{Address: edge1, Name: "edge1", Interfaces: map[uint32]detector.Interface{3: {Name: "Gi0/0/3", Role: "external"}}},
		{Address: edge2, Name: "edge2", Interfaces: map[uint32]detector.Interface{
			7: {Name: "xe-0/1/0", Role: "external"}, 12: {Name: "ge-0/0/12", Role: "internal"}}},
	}
	cfg.Hold = 5 * time.Second
	byID := map[string]detector.Anomaly{}
	d, err := detector.New(cfg, detector.Deps{Rules: set, OnEvent: func(ev detector.Event) { byID[ev.Anomaly.ID] = ev.Anomaly }})
	if err != nil {
		t.Fatal(err)
	}

	web := stream{src: webPeer, dst: victim, exporter: edge1, inIf: 3, proto: flow.ProtoTCP,
		flags: flow.FlagSYN | flow.FlagACK | flow.FlagPSH | flow.FlagFIN, sport: 443, dport: 50000, flowsPerSec: 20, pkts: 40, size: 1200}
	worm := stream{src: infected, exporter: edge2, inIf: 12, proto: flow.ProtoUDP, sport: 3000, dport: 1434,
		flowsPerSec: 400, pkts: 2, size: 404}
	flood := func(exp netip.Addr, inIf uint32, fps int) stream {
		return stream{dst: victim, exporter: exp, inIf: inIf, proto: flow.ProtoTCP, flags: flow.FlagSYN,
			sport: 1024, dport: 443, flowsPerSec: fps, pkts: 1, size: 60, spoofed: true}
	}
	const seconds = 60
	t0 := time.Now().Truncate(time.Second).Add(-seconds * time.Second).UnixNano()
	var seq uint32
	for sec := range seconds {
		now := t0 + int64(sec)*int64(time.Second)
		d.Evaluate(now)
		on := []stream{web}
		if sec >= 3 && sec < 12 {
			on = append(on, worm)
		}
		if sec >= 25 {
			// The flood ramps up over a few seconds, as real ones do.
			ramp := min(1, float64(sec-24)/4)
			on = append(on, flood(edge1, 3, int(6000*ramp)), flood(edge2, 7, int(1500*ramp)))
		}
		for _, s := range on {
			d.Process(s.second(now, &seq))
		}
	}
	for _, a := range d.Active() {
		byID[a.ID] = a
	}
	for _, a := range byID {
		all = append(all, a)
		switch a.Rule {
		case "tcp-syn-flood":
			syn = a
		case "sql-slammer":
			slammer = a
		}
	}
	if syn.ID == "" || slammer.ID == "" {
		for _, a := range all {
			t.Logf("raised: %s", a.Summary())
		}
		t.Fatalf("want a tcp-syn-flood and a sql-slammer anomaly")
	}
	if syn.Status != detector.StatusOngoing || slammer.Status != detector.StatusEnded {
		t.Fatalf("statuses: syn flood %s, slammer %s; want ongoing and ended", syn.Status, slammer.Status)
	}
	if syn.Filters["bpf"] == "" || len(syn.Traceback) < 2 || len(syn.History) == 0 {
		t.Fatalf("the syn flood lacks evidence the page shows: %s", syn.JSON())
	}
	return syn, slammer, all
}

// fakeResources stands in for the baseline store with the shapes it serves.
type fakeResources struct{ now time.Time }

func (f fakeResources) Top(typ string, limit int) (any, error) {
	all := []baseline.Status{
		{Type: baseline.KindHost, Key: victim.String(), Name: "customers", Direction: baseline.DirIn,
			Current: baseline.Rates{BPS: 4.1e6, PPS: 7600, FPS: 7500}, Expected: baseline.Rates{BPS: 3.9e5, PPS: 40, FPS: 20}},
		{Type: baseline.KindPrefix, Key: "198.51.100.0/24", Name: "customers", Direction: baseline.DirIn,
			Current: baseline.Rates{BPS: 2.2e8, PPS: 31000, FPS: 900}, Expected: baseline.Rates{BPS: 2.0e8, PPS: 29000, FPS: 850}},
		{Type: baseline.KindInterface, Key: edge1.String() + ":3", Name: "edge1 Gi0/0/3", Direction: baseline.DirIn,
			Current: baseline.Rates{BPS: 9.1e8, PPS: 120000, FPS: 4000}, Expected: baseline.Rates{BPS: 8.7e8, PPS: 110000, FPS: 3900}},
		{Type: baseline.KindPort, Key: "tcp/443", Direction: baseline.DirIn, WarmingUp: true,
			Current: baseline.Rates{BPS: 1.2e7, PPS: 9000, FPS: 7600}, Expected: baseline.Rates{BPS: 1.1e6, PPS: 300, FPS: 60}},
	}
	var out []baseline.Status
	for _, s := range all {
		if typ == "" || s.Type.String() == typ {
			out = append(out, s)
		}
	}
	return out[:min(limit, len(out))], nil
}

func (f fakeResources) Detail(typ, key string) (any, bool, error) {
	if typ != "prefix" || key != "198.51.100.0/24" {
		return nil, false, nil
	}
	st, _ := f.Top("prefix", 1)
	d := baseline.DetailStatus{Status: st.([]baseline.Status)[0], Spread: baseline.Rates{BPS: 3e7, PPS: 4000, FPS: 120},
		Model: "seasonal", LearnedSlots: 60480}
	d.Buckets = []baseline.Bucket{
		{Name: "time_of_day", Cell: 86, Samples: 42, Expected: &baseline.Rates{BPS: 2.0e8, PPS: 29000, FPS: 850}, Spread: &baseline.Rates{BPS: 3e7, PPS: 4000, FPS: 120}},
		{Name: "day_of_week", Cell: 4, Samples: 6, Factor: &baseline.Rates{BPS: 1.04, PPS: 1.02, FPS: 1.01}},
	}
	for i := range 60 {
		at := f.now.Add(time.Duration(i-60) * 10 * time.Second)
		wave := 1 + 0.08*float64(i%9)/9
		d.Series = append(d.Series, baseline.Point{Time: at, Rates: baseline.Rates{BPS: 2.0e8 * wave, PPS: 29000 * wave, FPS: 850 * wave}})
	}
	for i := range 48 {
		at := f.now.Add(time.Duration(i-24) * 30 * time.Minute)
		d.Baseline = append(d.Baseline, baseline.Point{Time: at, Rates: baseline.Rates{BPS: 2.0e8, PPS: 29000, FPS: 850}})
	}
	return d, true, nil
}

func exporterStats(now time.Time) []ingest.ExporterStats {
	return []ingest.ExporterStats{
		{Exporter: edge1, Datagrams: 182340, Records: 5470200, LostFlows: 1200, Templates: 0,
			SamplingRate: 0, ClockSkew: 120 * time.Millisecond, LastSeen: now.Add(-time.Second).UnixNano(),
			Drops:   map[string]uint64{},
			Domains: []ingest.DomainStats{{Version: flow.VersionNetFlow5, Domain: 0, Datagrams: 182340, Records: 5470200, NextSequence: 5471400, LostFlows: 1200}}},
		{Exporter: edge2, Datagrams: 96012, Records: 2304288, Templates: 4, SamplingRate: 1000, SamplingSource: "options",
			ClockSkew: -3500 * time.Millisecond, LastSeen: now.Add(-2 * time.Second).UnixNano(),
			Drops: map[string]uint64{"no_template": 17}},
	}
}

// overlayFS adds test pages to the UI's files.
type overlayFS struct {
	fs.FS
	extra fstest.MapFS
}

func (o overlayFS) Open(name string) (fs.File, error) {
	if _, ok := o.extra[name]; ok {
		return o.extra.Open(name)
	}
	return o.FS.Open(name)
}

// serve starts the real API with the UI on loopback; token, when set, is required.
func serve(t *testing.T, store api.Anomalies, token string, ui fs.FS) string {
	t.Helper()
	now := time.Now()
	deps := api.Deps{
		Anomalies: store,
		Resources: fakeResources{now: now},
		Rules:     func() any { return rules.Default() },
		Exporters: func() any { return exporterStats(time.Now()) },
		UI:        ui,
	}
	srv, err := api.New(api.Config{Addr: "127.0.0.1:0", Token: token}, deps)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	return "http://" + srv.Addr() + "/"
}

// chromium runs headless Chromium with args and returns what it prints on stdout.
func chromium(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	base := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--disable-dev-shm-usage", "--hide-scrollbars", "--user-data-dir=" + t.TempDir(), "--virtual-time-budget=5000"}
	cmd := exec.CommandContext(ctx, chromiumPath, append(base, args...)...)
	// Chromium forks renderer and GPU helpers: run it in its own process group so that a
	// timeout kills all of them, not just the browser process.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if cmd.Process != nil {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // helpers left behind, if any
	}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		t.Fatalf("chromium %v timed out; stderr:\n%s", args, tail(stderr.String()))
	}
	if err != nil {
		t.Fatalf("chromium %v: %v; stderr:\n%s", args, err, tail(stderr.String()))
	}
	return stdout.String()
}

func tail(s string) string {
	if len(s) > 4000 {
		return "…" + s[len(s)-4000:]
	}
	return s
}

func dumpDOM(t *testing.T, url string) string {
	t.Helper()
	dom := chromium(t, "--dump-dom", url)
	if !strings.Contains(dom, `id="app"`) {
		t.Fatalf("no page in the dumped DOM of %s:\n%s", url, tail(dom))
	}
	return dom
}

func screenshot(t *testing.T, url, name string) {
	t.Helper()
	dir := *screenshots
	if dir == "" {
		dir = t.TempDir()
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path, err := filepath.Abs(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	os.Remove(path)
	chromium(t, "--screenshot="+path, "--window-size=1280,1600", url)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("no screenshot: %v", err)
	}
	if !bytes.HasPrefix(b, []byte("\x89PNG\r\n\x1a\n")) || len(b) < 20000 {
		t.Fatalf("%s: %d bytes, not a rendered PNG page", path, len(b))
	}
	t.Logf("screenshot %s (%d bytes)", path, len(b))
}

// between returns the text from the first from after start up to the next to.
func between(t *testing.T, s, from, to string) string {
	t.Helper()
	i := strings.Index(s, from)
	if i < 0 {
		t.Fatalf("%q not in the page:\n%s", from, tail(s))
	}
	s = s[i+len(from):]
	j := strings.Index(s, to)
	if j < 0 {
		t.Fatalf("no %q after %q", to, from)
	}
	return s[:j]
}

func TestUI(t *testing.T) {
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Skipf("%s not installed (apt-get install chromium): %v", chromiumPath, err)
	}
	syn, slammer, all := detect(t)

	// An anomaly whose names carry markup: the page must show it as text.
	inject := slammer
	inject.ID = "markup-test"
	inject.Resource.Name = `<img src=x id="injected">`
	inject.Description = `<script>document.title="pwned"</script>`
	inject.Traceback = []detector.Ingress{{Exporter: edge2.String(), ExporterName: `<b id="bold">edge2</b>`, InIf: 12, Share: 1}}
	base := serve(t, &memAnomalies{list: append(all, inject)}, "", web.FS())

	t.Run("anomaly page", func(t *testing.T) {
		t.Parallel()
		url := base + "#/anomaly/" + syn.ID
		dom := dumpDOM(t, url)
		head := between(t, dom, `id="anomaly-head"`, "</section>")
		for _, want := range []string{victim.String(), syn.SeverityText, "tcp-syn-flood", "ongoing", "customers", "incoming"} {
			if !strings.Contains(head, want) {
				t.Errorf("header lacks %q:\n%s", want, head)
			}
		}
		if !strings.Contains(head, `href="/api/anomalies/`+syn.ID+`?download=1"`) {
			t.Errorf("header lacks the JSON report link:\n%s", head)
		}
		if !strings.Contains(head, `href="#/anomaly/`+syn.ID+`/print"`) {
			t.Errorf("header lacks the printable page link:\n%s", head)
		}

		rows := strings.Split(between(t, between(t, dom, `<table class="traceback">`, "</table>"), "<tbody>", "</tbody>"), "</tr>")
		rows = rows[:len(rows)-1]
		if len(rows) != len(syn.Traceback) {
			t.Errorf("%d traceback rows, want %d", len(rows), len(syn.Traceback))
		}
		for _, want := range [][]string{{"edge1", edge1.String(), "Gi0/0/3"}, {"edge2", edge2.String(), "xe-0/1/0"}} {
			found := false
			for _, r := range rows {
				if strings.Contains(r, ">"+want[0]+"<") && strings.Contains(r, want[1]) && strings.Contains(r, ">"+want[2]+"<") {
					found = true
				}
			}
			if !found {
				t.Errorf("no traceback row with %q:\n%s", want, strings.Join(rows, "\n"))
			}
		}

		for name, text := range syn.Filters {
			f := between(t, dom, `data-filter="`+name+`"`, "</pre>") + "</pre>"
			if !strings.Contains(f, ">Copy</button>") {
				t.Errorf("filter %s has no copy button: %s", name, f)
			}
			got := html.UnescapeString(between(t, f, "<pre>", "</pre>"))
			if got != text {
				t.Errorf("filter %s shows\n%q\nwant\n%q", name, got, text)
			}
		}
		if _, ok := syn.Filters["bpf"]; !ok {
			t.Error("no bpf filter to check")
		}

		chart := between(t, dom, `<svg class="chart"`, "</svg>")
		want := []string{`class="series"`}
		for metric := range syn.Threshold {
			want = append(want, `class="limit"`, "limit "+metric)
		}
		for _, want := range want {
			if !strings.Contains(chart, want) {
				t.Errorf("rate chart lacks %s", want)
			}
		}
		snap := between(t, dom, `<table class="snapshot compact">`, "</table>")
		if n := strings.Count(snap, "<tr>") - 1; n != len(syn.Snapshot) {
			t.Errorf("snapshot shows %d flows, want %d", n, len(syn.Snapshot))
		}
		charac := between(t, dom, ">Characterization<", "</section>")
		for _, want := range []string{">tcp<", ">443<", ">S<", "Sources"} {
			if !strings.Contains(charac, want) {
				t.Errorf("characterization lacks %s", want)
			}
		}
		screenshot(t, url, "anomaly.png")
	})

	t.Run("anomaly list", func(t *testing.T) {
		t.Parallel()
		dom := dumpDOM(t, base+"#/")
		row := between(t, dom, `data-id="`+syn.ID+`"`, "</tr>")
		for _, want := range []string{victim.String(), ">tcp-syn-flood<", syn.SeverityText, ">ongoing<", ">high<", "customers"} {
			if !strings.Contains(row, want) {
				t.Errorf("list row of the syn flood lacks %q:\n%s", want, row)
			}
		}
		row = between(t, dom, `data-id="`+slammer.ID+`"`, "</tr>")
		for _, want := range []string{infected.String(), ">sql-slammer<", ">ended<", "outgoing"} {
			if !strings.Contains(row, want) {
				t.Errorf("list row of the worm lacks %q:\n%s", want, row)
			}
		}
		// Newest first: the flood started after the worm.
		if strings.Index(dom, `data-id="`+syn.ID+`"`) > strings.Index(dom, `data-id="`+slammer.ID+`"`) {
			t.Error("the list is not newest first")
		}
		screenshot(t, base+"#/", "anomalies.png")

		ended := dumpDOM(t, base+"#/?status=ended")
		if strings.Contains(ended, `data-id="`+syn.ID+`"`) || !strings.Contains(ended, `data-id="`+slammer.ID+`"`) {
			t.Error("the ended filter does not show just the ended anomalies")
		}
	})

	t.Run("markup in names is text", func(t *testing.T) {
		t.Parallel()
		for _, url := range []string{base + "#/", base + "#/anomaly/" + inject.ID} {
			dom := dumpDOM(t, url)
			if strings.Contains(dom, "<img") || strings.Contains(dom, `<b id="bold">`) || strings.Contains(dom, "<script>document") {
				t.Errorf("%s: markup from the API became elements:\n%s", url, tail(dom))
			}
			if !strings.Contains(dom, `&lt;img src=x id="injected"&gt;`) {
				t.Errorf("%s: the resource name is not shown as text", url)
			}
			if strings.Contains(url, inject.ID) {
				for _, want := range []string{`&lt;script&gt;document.title="pwned"&lt;/script&gt;`, `&lt;b id="bold"&gt;edge2&lt;/b&gt;`} {
					if !strings.Contains(dom, want) {
						t.Errorf("%s: %s is not shown as text", url, want)
					}
				}
			}
		}
	})

	t.Run("token", func(t *testing.T) {
		t.Parallel()
		// A page beside the UI stores the token in the tab's session storage, as the
		// token dialog does, and goes on to the anomaly list.
		ui := overlayFS{web.FS(), fstest.MapFS{"seed.html": {Data: []byte(
			`<script>sessionStorage.setItem("flowhound.token", "s3cret"); location.replace("/#/");</script>`)}}}
		base := serve(t, &memAnomalies{list: all}, "s3cret", ui)
		dom := dumpDOM(t, base+"seed.html")
		if !strings.Contains(dom, `data-id="`+syn.ID+`"`) || strings.Contains(dom, `class="token-dialog"`) {
			t.Errorf("with the token stored, the list is not shown:\n%s", tail(dom))
		}

		// Without a token the API answers 401 and the page asks for one.
		dom = dumpDOM(t, base+"#/")
		dialog := between(t, dom, `class="token-dialog"`, "</form>")
		for _, want := range []string{"API token", `type="password"`, ">Use token<"} {
			if !strings.Contains(dialog, want) {
				t.Errorf("the token dialog lacks %q: %s", want, dialog)
			}
		}
		if strings.Count(dom, `class="token-dialog"`) != 1 {
			t.Error("the token is asked for more than once")
		}
		if strings.Contains(dom, "data-id=") {
			t.Error("anomalies shown without the token")
		}
	})

	t.Run("other pages", func(t *testing.T) {
		t.Parallel()
		for _, p := range []struct {
			route, name string
			want        []string
		}{
			{"#/exporters", "exporters.png", []string{`data-exporter="` + edge1.String() + `"`, "5,470,200", "1:1000", "+120 ms", "-3.5 s"}},
			{"#/resources", "resources.png", []string{"198.51.100.0/24", "10.0.0.1:3", "warming up", "tcp/443"}},
			{"#/resource/prefix/" + "198.51.100.0%2F24", "resource.png", []string{"seasonal", "time_of_day", "day_of_week", `<svg class="chart"`, `class="expected"`}},
			{"#/rules", "rules.png", []string{`data-rule="tcp-syn-flood"`, `data-rule="sql-slammer"`, "syn_pps=2,000", "10s"}},
		} {
			dom := dumpDOM(t, base+p.route)
			if strings.Contains(dom, `role="alert"`) {
				t.Errorf("%s shows an error:\n%s", p.route, between(t, dom, `role="alert"`, "</div>"))
			}
			for _, want := range p.want {
				if !strings.Contains(dom, want) {
					t.Errorf("%s lacks %q", p.route, want)
				}
			}
			if *screenshots != "" {
				screenshot(t, base+p.route, p.name)
			}
		}
	})
}
