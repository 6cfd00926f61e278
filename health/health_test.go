package health

import (
	"net/netip"
	"testing"
	"time"

	"github.com/flowhound/flowhound/detector"
	"github.com/flowhound/flowhound/ingest"
)

func TestMonitor(t *testing.T) {
	edge := netip.MustParseAddr("192.0.2.1")
	t0 := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	st := func(lastSeen time.Time, records, lost uint64, rate uint32, skew time.Duration) ingest.ExporterStats {
		return ingest.ExporterStats{Exporter: edge, LastSeen: lastSeen.UnixNano(), Records: records, LostFlows: lost, SamplingRate: rate, ClockSkew: skew}
	}
	tests := []struct {
		name   string
		checks []ingest.ExporterStats // one per 10 s check
		want   []string               // "raised RULE" / "ended RULE" in order
	}{
		{"healthy", []ingest.ExporterStats{st(at(0), 1000, 0, 1000, 0), st(at(10), 2000, 0, 1000, 0), st(at(20), 3000, 1, 1000, time.Second)}, nil},
		{"falls silent then comes back", []ingest.ExporterStats{st(at(0), 1000, 0, 0, 0), st(at(0), 1000, 0, 0, 0), st(at(0), 1000, 0, 0, 0),
			st(at(0), 1000, 0, 0, 0), st(at(0), 1000, 0, 0, 0), st(at(0), 1000, 0, 0, 0), st(at(0), 1000, 0, 0, 0), st(at(70), 1100, 0, 0, 0)},
			[]string{"raised exporter-silent", "ended exporter-silent"}},
		{"sampling changes", []ingest.ExporterStats{st(at(0), 1000, 0, 1000, 0), st(at(10), 2000, 0, 100, 0)},
			[]string{"raised exporter-sampling-changed", "ended exporter-sampling-changed"}},
		{"loses flows", []ingest.ExporterStats{st(at(0), 1000, 0, 0, 0), st(at(10), 2000, 500, 0, 0), st(at(20), 3000, 500, 0, 0)},
			[]string{"raised exporter-flow-loss", "ended exporter-flow-loss"}},
		{"a few lost flows are no alert", []ingest.ExporterStats{st(at(0), 1000, 0, 0, 0), st(at(10), 1100, 20, 0, 0)}, nil},
		{"clock years off", []ingest.ExporterStats{st(at(0), 1000, 0, 0, -3*365*24*time.Hour)}, []string{"raised exporter-clock-skew"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			i := 0
			m, err := New(DefaultConfig(), Deps{
				Exporters: func() []ingest.ExporterStats { return []ingest.ExporterStats{tt.checks[i]} },
				OnEvent: func(ev detector.Event) {
					got = append(got, ev.Type+" "+ev.Anomaly.Rule)
					if ev.Anomaly.Resource.Type != "exporter" || ev.Anomaly.Resource.Key != edge.String() || ev.Anomaly.Kind != "health" {
						t.Errorf("resource %+v kind %s", ev.Anomaly.Resource, ev.Anomaly.Kind)
					}
				},
			})
			if err != nil {
				t.Fatal(err)
			}
			for i = range tt.checks {
				m.Check(at(10 * i))
			}
			if len(got) != len(tt.want) {
				t.Fatalf("events %v, want %v", got, tt.want)
			}
			for j := range got {
				if got[j] != tt.want[j] {
					t.Fatalf("events %v, want %v", got, tt.want)
				}
			}
		})
	}
}
