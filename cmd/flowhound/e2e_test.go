package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/flowhound/flowhound/alert"
	"github.com/flowhound/flowhound/config"
	"github.com/flowhound/flowhound/detector"
	"github.com/flowhound/flowhound/gen"
)

// TestEndToEnd runs the engine on a loopback UDP port and three synthetic exporter groups
// beside it, one per attack, in NetFlow v5 and v9: each attack must be raised on its
// victim with a traceback naming its ingress interface, and nothing else may be raised.
func TestEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("runs for about 15 s")
	}
	for _, format := range []string{"v5", "v9"} {
		t.Run(format, func(t *testing.T) {
			t.Parallel()
			endToEnd(t, format)
		})
	}
}

type attackCase struct {
	scenario string
	sources  []netip.Addr
	rule     string
	victim   string
	ingress  [2]uint32 // exporter index within sources, in_if
}

func endToEnd(t *testing.T, format string) {
	// Each attack comes from its own group of routers, so that their sequence numbers
	// and templates do not collide at the collector.
	addrs := func(base byte) []netip.Addr {
		return []netip.Addr{netip.AddrFrom4([4]byte{127, 0, 0, base}), netip.AddrFrom4([4]byte{127, 0, 0, base + 1}), netip.AddrFrom4([4]byte{127, 0, 0, base + 2})}
	}
	if format == "v9" {
		// The two formats run side by side: they use different routers too.
		addrs = func(base byte) []netip.Addr {
			return []netip.Addr{netip.AddrFrom4([4]byte{127, 0, 1, base}), netip.AddrFrom4([4]byte{127, 0, 1, base + 1}), netip.AddrFrom4([4]byte{127, 0, 1, base + 2})}
		}
	}
	cases := []attackCase{
		{scenario: gen.AttackSYN, sources: addrs(11), rule: "tcp-syn-flood", victim: "192.0.2.10", ingress: [2]uint32{0, 3}},
		{scenario: gen.AttackSlammer, sources: addrs(21), rule: "sql-slammer", victim: "198.51.100.77", ingress: [2]uint32{2, 11}},
		{scenario: gen.AttackAmp, sources: addrs(31), rule: "udp-amplification", victim: "198.51.100.20", ingress: [2]uint32{1, 1}},
	}
	const attackFor = 4 * time.Second
	cfg := config.Default()
	cfg.Listen = config.Listen{NetFlow: "127.0.0.1:0"}
	cfg.API = "127.0.0.1:0"
	cfg.Store = t.TempDir()
	slackSrv, hooks := alertReceivers(t, &cfg, format)
	cfg.Networks = []detector.Network{{Name: "customers", Prefixes: demoNetworks}}
	cfg.Detection.Hold = config.Duration(3 * time.Second)

	var gens []*gen.Generator
	var gcfgs []gen.Config
	for i, c := range cases {
		g := gen.DefaultConfig()
		g.Format = format
		g.Scenario = c.scenario
		g.Sources = c.sources
		g.Exporters = len(c.sources)
		g.Rate = 1000
		g.Seed = int64(i + 1)
		g.Duration = gen.LeadIn + attackFor
		info, err := gen.New(g)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range info.Exporters() {
			ex := detector.Exporter{Address: e.Addr, Name: c.scenario + "-" + e.Name, Interfaces: map[uint32]detector.Interface{}}
			for _, ifc := range e.Interfaces {
				ex.Interfaces[ifc.Index] = detector.Interface{Name: ifc.Name, Role: ifc.Role}
			}
			cfg.Exporters = append(cfg.Exporters, ex)
		}
		gcfgs = append(gcfgs, g)
	}

	var mu sync.Mutex
	var raised, ended []detector.Anomaly
	var firstRaise time.Time
	e, err := newEngine(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), func(ev detector.Event) {
		mu.Lock()
		defer mu.Unlock()
		switch ev.Type {
		case "raised":
			raised = append(raised, ev.Anomaly)
			if firstRaise.IsZero() {
				firstRaise = time.Now()
			}
		case "ended":
			ended = append(ended, ev.Anomaly)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer e.close()
	to := e.listeners[0].Addr().String()
	for _, g := range gcfgs {
		g.To = to
		gg, err := gen.New(g)
		if err != nil {
			t.Fatal(err)
		}
		gens = append(gens, gg)
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- e.run(ctx) }()

	// Bad datagrams on the same socket: counted and dropped, the engine goes on.
	sendBad(t, to)

	start := time.Now()
	var wg sync.WaitGroup
	for _, g := range gens {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := g.Run(ctx); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	// Let the last records through detection and the anomalies end.
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		mu.Lock()
		n := len(ended)
		mu.Unlock()
		if n >= len(cases) && len(e.det.Active()) == 0 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	// What an operator sees: the API lists the anomalies, alerts reached Slack and the webhook.
	listed := getJSON[struct{ Anomalies []detector.Anomaly }](t, "http://"+e.api.Addr()+"/api/anomalies?status=ended")
	if len(listed.Anomalies) != len(cases) {
		t.Errorf("API lists %d ended anomalies, want %d", len(listed.Anomalies), len(cases))
	}
	waitFor(t, 10*time.Second, func() bool { return hooks.count("ended") >= len(cases) && slackSrv.count("chat.update") >= len(cases) })
	if n := hooks.count("raised"); n != len(cases) {
		t.Errorf("webhook got %d raised events, want %d", n, len(cases))
	}
	if n := slackSrv.count("chat.postMessage"); n != len(cases) {
		t.Errorf("Slack got %d messages, want %d", n, len(cases))
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	mu.Lock()
	defer mu.Unlock()
	if !firstRaise.IsZero() && firstRaise.Sub(start) < gen.LeadIn {
		t.Errorf("first anomaly raised %v after start, during the normal lead-in", firstRaise.Sub(start))
	}
	for _, c := range cases {
		var got *detector.Anomaly
		for i := range raised {
			if raised[i].Rule == c.rule && raised[i].Resource.Key == c.victim {
				got = &raised[i]
			}
		}
		if got == nil {
			t.Errorf("%s: no %s anomaly on %s", c.scenario, c.rule, c.victim)
			continue
		}
		wantExp := c.sources[c.ingress[0]].String()
		if len(got.Traceback) == 0 || got.Traceback[0].Exporter != wantExp || got.Traceback[0].InIf != c.ingress[1] {
			t.Errorf("%s: traceback %+v, want %s in_if %d first", c.scenario, got.Traceback, wantExp, c.ingress[1])
		}
		if got.Traceback[0].ExporterName == "" || got.Traceback[0].InIfName == "" {
			t.Errorf("%s: traceback without configured names: %+v", c.scenario, got.Traceback[0])
		}
		if got.SeverityPct <= 100 {
			t.Errorf("%s: severity %.1f%%", c.scenario, got.SeverityPct)
		}
	}
	for _, a := range raised {
		ok := false
		for _, c := range cases {
			ok = ok || a.Rule == c.rule && a.Resource.Key == c.victim
		}
		if !ok {
			t.Errorf("unexpected anomaly: %s", a.Summary())
		}
	}
	if len(ended) != len(raised) {
		t.Errorf("%d raised, %d ended", len(raised), len(ended))
	}
	var buf bytes.Buffer
	metrics.WritePrometheus(&buf, false)
	for _, want := range []string{`flowhound_datagrams_dropped_total{exporter="127.0.0.1",reason=`} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

// sendBad sends a truncated v5 datagram, an unknown version and a v5 header whose count
// promises more records than it carries.
func sendBad(t *testing.T, to string) {
	t.Helper()
	c, err := net.Dial("udp", to)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	v5 := make([]byte, 24+48)
	v5[1] = 5
	v5[3] = 30 // count 30, one record present
	for _, d := range [][]byte{{0, 5, 0, 1}, {0, 42, 0, 0, 1, 2, 3, 4}, v5} {
		if _, err := c.Write(d); err != nil {
			t.Fatal(err)
		}
	}
}

// recorder counts requests by a label, for the Slack and webhook test servers.
type recorder struct {
	mu sync.Mutex
	n  map[string]int
}

func (r *recorder) add(k string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.n == nil {
		r.n = map[string]int{}
	}
	r.n[k]++
}

func (r *recorder) count(k string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n[k]
}

// alertReceivers starts a server that answers as Slack's Web API does and a webhook
// receiver, and points the configuration's alerts at them.
func alertReceivers(t *testing.T, cfg *config.Config, name string) (slackRec, hookRec *recorder) {
	slackRec, hookRec = &recorder{}, &recorder{}
	slack := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		method := strings.TrimPrefix(r.URL.Path, "/")
		if err := r.ParseForm(); err != nil || r.PostForm.Get("token") != "xoxb-e2e" {
			w.Write([]byte(`{"ok":false,"error":"invalid_auth"}`))
			return
		}
		slackRec.add(method)
		fmt.Fprintf(w, `{"ok":true,"channel":"C1","ts":"%d.000100"}`, time.Now().UnixNano())
	}))
	t.Cleanup(slack.Close)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hookRec.add(r.Header.Get("X-Flowhound-Event"))
	}))
	t.Cleanup(hook.Close)
	env := "FLOWHOUND_E2E_SLACK_" + strings.ToUpper(name)
	os.Setenv(env, "xoxb-e2e")
	t.Cleanup(func() { os.Unsetenv(env) })
	cfg.Alerts = alert.Config{
		Slack:    &alert.SlackConfig{TokenEnv: env, Channel: "#ddos", APIURL: slack.URL},
		Webhooks: []alert.WebhookConfig{{URL: hook.URL}},
	}
	return slackRec, hookRec
}

func getJSON[T any](t *testing.T, url string) T {
	t.Helper()
	var v T
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return v
}

func waitFor(t *testing.T, d time.Duration, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		if cond() {
			return
		}
	}
}
