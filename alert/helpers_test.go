package alert

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/flowhound/flowhound/detector"
)

// fastRetry keeps retry tests quick; the schedule's shape is the production one.
var fastRetry = RetryConfig{Initial: Duration(10 * time.Millisecond), Max: Duration(50 * time.Millisecond), MaxAge: Duration(time.Hour)}

var t0 = time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)

// synFlood is a raised anomaly as the detector reports it.
func synFlood(id string) detector.Anomaly {
	return detector.Anomaly{
		ID: id, Status: detector.StatusOngoing, Kind: "signature", Rule: "tcp-syn-flood",
		Description: "TCP SYN flood", Importance: "high", SeverityPct: 958.2,
		SeverityText: "958.2% of 3.40 Kpps", Direction: "incoming",
		Resource: detector.Resource{Type: "host", Key: "192.0.2.10", Name: "customers"},
		Start:    t0, LastUpdate: t0,
		Observed:  detector.Rates{BPS: 13.03e6, PPS: 32579.6, FPS: 800},
		Peak:      detector.Rates{BPS: 13.03e6, PPS: 32579.6, FPS: 800},
		Threshold: map[string]float64{"syn_pps": 3400},
		Traceback: []detector.Ingress{
			{Exporter: "198.51.100.1", ExporterName: "edge1", InIf: 3, InIfName: "Gi0/0/1", BPS: 10.5e6, PPS: 26390, Share: 0.81},
			{Exporter: "198.51.100.2", ExporterName: "edge2", InIf: 7, InIfName: "xe-0/0/7", BPS: 2.5e6, PPS: 6190, Share: 0.19},
		},
		Character: detector.Characterization{
			Protocols:  []detector.Count{{Value: "tcp", Share: 1}},
			DstPorts:   []detector.Count{{Value: "80", Share: 0.97}},
			TCPFlags:   []detector.Count{{Value: "S", Share: 0.99}},
			PacketSize: detector.SizeStats{Min: 40, Max: 60, Mean: 44}, SrcCountEstimate: 12000,
		},
		Filters: map[string]string{
			"bpf":             "dst host 192.0.2.10 and tcp and tcp[tcpflags] & tcp-syn != 0",
			"nftables":        "ip daddr 192.0.2.10 tcp flags & (syn|ack) == syn drop",
			"flowspec_exabgp": "flow route { match { destination 192.0.2.10/32; protocol tcp; tcp-flags [ syn ]; } then { discard; } }",
			"flowspec_gobgp":  "global rib -a ipv4-flowspec add match destination 192.0.2.10/32 protocol tcp tcp-flags S then discard",
			"cisco_acl":       "deny tcp any host 192.0.2.10 syn",
		},
	}
}

func endedOf(a detector.Anomaly) detector.Anomaly {
	end := a.Start.Add(5 * time.Minute)
	a.Status, a.End, a.LastUpdate = detector.StatusEnded, &end, end
	return a
}

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// start runs a's delivery loop until the test ends.
func start(t *testing.T, a *Alerter) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := a.Run(ctx); err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	t.Cleanup(func() { cancel(); wg.Wait() })
}

func notify(t *testing.T, a *Alerter, typ string, an detector.Anomaly) {
	t.Helper()
	if err := a.Notify(detector.Event{Type: typ, Anomaly: an}); err != nil {
		t.Fatalf("Notify %s: %v", typ, err)
	}
}

// waitFor polls cond until it holds or d passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// counter reads a metric; tests compare before and after, as the registry is global.
func counter(name string) uint64 { return metrics.GetOrCreateCounter(name).Get() }

func eventOf(typ string, an detector.Anomaly) detector.Event {
	return detector.Event{Type: typ, Anomaly: an}
}
