package alert

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/flowhound/flowhound/detector"
)

// sink delivers one event to one endpoint.
type sink interface {
	id() string   // stable, in outbox keys and delivery IDs
	kind() string // slack | webhook | exec, the metrics label
	wants(typ string) bool
	maxAttempts() int           // 0: until Retry.MaxAge
	minInterval() time.Duration // spacing between attempts
	// deliver returns nil when delivered, a *failure to say whether to retry, or any
	// other error (retried).
	deliver(ctx context.Context, d *delivery) error
}

// delivery is what a sink gets for one attempt.
type delivery struct {
	ID      string // idempotency key: anomaly id / event / sink id
	Event   string
	Anomaly detector.Anomaly
	Raw     []byte // the anomaly JSON
}

// failure is a failed attempt, classified.
type failure struct {
	reason     string // metrics label: short, from a small set
	permanent  bool
	retryAfter time.Duration // what the endpoint asked for, if anything
	err        error
}

func (f *failure) Error() string { return f.reason + ": " + f.err.Error() }
func (f *failure) Unwrap() error { return f.err }

func retry(reason string, err error) *failure { return &failure{reason: reason, err: err} }

func permanent(reason string, err error) *failure {
	return &failure{reason: reason, permanent: true, err: err}
}

// retryAfter reads a Retry-After header: seconds or an HTTP date, capped at an hour so a
// confused server cannot park the queue for days.
func retryAfter(h http.Header, now time.Time) time.Duration {
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return 0
	}
	var d time.Duration
	if secs, err := strconv.Atoi(v); err == nil {
		d = time.Duration(secs) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = t.Sub(now)
	}
	return min(max(d, 0), time.Hour)
}

// sinkMetrics are one sink kind's counters, resolved once.
type sinkMetrics struct {
	delivered *metrics.Counter
	retries   *metrics.Counter
}

func newSinkMetrics(kind string) *sinkMetrics {
	return &sinkMetrics{
		delivered: metrics.GetOrCreateCounter(`flowhound_alerts_delivered_total{sink="` + kind + `"}`),
		retries:   metrics.GetOrCreateCounter(`flowhound_alerts_retries_total{sink="` + kind + `"}`),
	}
}

var (
	failedMu sync.Mutex
	failed   = map[[2]string]*metrics.Counter{}
)

// failedCounter returns flowhound_alerts_failed_total{sink, reason}; failures are rare,
// and the map keeps them from formatting a name each time.
func failedCounter(kind, reason string) *metrics.Counter {
	failedMu.Lock()
	defer failedMu.Unlock()
	k := [2]string{kind, reason}
	c := failed[k]
	if c == nil {
		c = metrics.GetOrCreateCounter(fmt.Sprintf(`flowhound_alerts_failed_total{sink=%q,reason=%q}`, kind, reason))
		failed[k] = c
	}
	return c
}

var pendingGauge = sync.OnceValue(func() *metrics.Gauge {
	return metrics.GetOrCreateGauge("flowhound_alerts_pending", nil)
})

// unsavedGauge counts queued deliveries that are only in memory: the store refused them
// and they are written when it takes writes again (a restart meanwhile loses them).
var unsavedGauge = sync.OnceValue(func() *metrics.Gauge {
	return metrics.GetOrCreateGauge("flowhound_alerts_unsaved", nil)
})

var logMetrics = sync.OnceValue(func() *metrics.Counter {
	return metrics.GetOrCreateCounter(`flowhound_alerts_delivered_total{sink="log"}`)
})

func kindOfID(id string) string {
	if i := strings.IndexByte(id, '-'); i > 0 {
		return id[:i]
	}
	return id
}

// labelSafe keeps an endpoint-supplied reason (a Slack error code) to a short label.
func labelSafe(s string) string {
	b := []byte(s)
	if len(b) > 40 {
		b = b[:40]
	}
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			b[i] = '_'
		}
	}
	return string(b)
}
