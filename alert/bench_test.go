package alert

import (
	"fmt"
	"testing"

	"github.com/flowhound/flowhound/detector"
	"github.com/flowhound/flowhound/flow"
	"github.com/flowhound/flowhound/store"
)

// BenchmarkNotify is the cost the detector goroutine pays per raised anomaly with two
// sinks and the badger outbox: encode the anomaly, write it and its entries, wait for the
// commit. The anomaly carries a 100-flow snapshot, as the detector sends.
func BenchmarkNotify(b *testing.B) {
	st, err := store.Open(b.TempDir(), store.DefaultOptions())
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	b.Setenv("BENCH_SLACK", "x")
	cfg := Config{
		Slack:      &SlackConfig{TokenEnv: "BENCH_SLACK", Channel: "#x", APIURL: "http://127.0.0.1:1/"},
		Webhooks:   []WebhookConfig{{URL: "http://127.0.0.1:1/hook"}},
		MaxPending: 1 << 30,
	}
	a, err := New(cfg, Deps{Store: st, Log: quietLog()})
	if err != nil {
		b.Fatal(err)
	}
	an := synFlood("")
	an.Snapshot = make([]flow.Record, 100)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		an.ID = fmt.Sprintf("bench-%d", i)
		i++
		if err := a.Notify(detector.Event{Type: Raised, Anomaly: an}); err != nil {
			b.Fatal(err)
		}
	}
}
