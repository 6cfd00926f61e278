// Package health raises anomalies about the exporters themselves: one that falls silent,
// changes its sampling rate, loses flows to sequence gaps or whose clock drifts.
package health

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"net/netip"
	"time"

	"github.com/flowhound/flowhound/detector"
	"github.com/flowhound/flowhound/ingest"
)

// Config sets when an exporter is unhealthy. A detector blind to a router is worse than
// one that says so, so every check is on by default.
type Config struct {
	Interval  time.Duration `yaml:"interval"`   // how often exporters are checked
	Silent    time.Duration `yaml:"silent"`     // no datagram for this long after being seen
	LossRatio float64       `yaml:"loss_ratio"` // lost flows over sent flows within an interval
	MinLost   uint64        `yaml:"min_lost"`   // and at least this many lost, so one gap is not an alert
	ClockSkew time.Duration `yaml:"clock_skew"` // export time this far from arrival
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{Interval: 10 * time.Second, Silent: 60 * time.Second, LossRatio: 0.01, MinLost: 100, ClockSkew: 5 * time.Minute}
}

// Validate checks the configuration.
func (c *Config) Validate() error {
	var errs []error
	if c.Interval <= 0 {
		errs = append(errs, errors.New("health.interval: must be positive"))
	}
	if c.Silent < c.Interval {
		errs = append(errs, fmt.Errorf("health.silent: %v is shorter than the interval %v", c.Silent, c.Interval))
	}
	if c.LossRatio <= 0 || c.LossRatio >= 1 {
		errs = append(errs, fmt.Errorf("health.loss_ratio: %v: want between 0 and 1", c.LossRatio))
	}
	if c.ClockSkew <= 0 {
		errs = append(errs, errors.New("health.clock_skew: must be positive"))
	}
	return errors.Join(errs...)
}

// Deps are the monitor's inputs and output.
type Deps struct {
	Exporters func() []ingest.ExporterStats
	OnEvent   func(detector.Event)
	Names     map[netip.Addr]string // configured exporter names
	Now       func() time.Time
}

// Rule names of health anomalies.
const (
	RuleSilent   = "exporter-silent"
	RuleSampling = "exporter-sampling-changed"
	RuleLoss     = "exporter-flow-loss"
	RuleSkew     = "exporter-clock-skew"
)

// Monitor checks exporters on a ticker.
type Monitor struct {
	cfg    Config
	deps   Deps
	prev   map[netip.Addr]ingest.ExporterStats
	active map[string]*detector.Anomaly // by rule|exporter
}

// New returns a monitor.
func New(cfg Config, deps Deps) (*Monitor, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if deps.Now == nil {
		deps.Now = time.Now
	}
	return &Monitor{cfg: cfg, deps: deps, prev: map[netip.Addr]ingest.ExporterStats{}, active: map[string]*detector.Anomaly{}}, nil
}

// Run checks every interval until ctx ends.
func (m *Monitor) Run(ctx context.Context) error {
	t := time.NewTicker(m.cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			m.Check(m.deps.Now())
		}
	}
}

// Check compares every exporter with the previous check and raises or ends anomalies.
func (m *Monitor) Check(now time.Time) {
	firing := map[string]bool{}
	for _, s := range m.deps.Exporters() {
		if !s.Exporter.IsValid() {
			continue
		}
		prev, seen := m.prev[s.Exporter]
		m.prev[s.Exporter] = s
		if silent := now.Sub(time.Unix(0, s.LastSeen)); s.LastSeen > 0 && silent >= m.cfg.Silent {
			m.fire(firing, RuleSilent, s, now, "high",
				fmt.Sprintf("no datagram for %v", silent.Round(time.Second)), silent.Seconds(), m.cfg.Silent.Seconds(), "silent_seconds")
		}
		if skew := s.ClockSkew; skew > m.cfg.ClockSkew || -skew > m.cfg.ClockSkew {
			m.fire(firing, RuleSkew, s, now, "low",
				fmt.Sprintf("export clock %v off arrival time", skew.Round(time.Second)), math.Abs(skew.Seconds()), m.cfg.ClockSkew.Seconds(), "skew_seconds")
		}
		if !seen {
			continue
		}
		if prev.SamplingRate != s.SamplingRate && prev.SamplingRate > 0 && s.SamplingRate > 0 {
			// A changed rate rescales every rate this exporter feeds: worth a word, once.
			k := RuleSampling + "|" + s.Exporter.String()
			m.raise(k, RuleSampling, s, now, "medium",
				fmt.Sprintf("sampling changed from 1:%d to 1:%d", prev.SamplingRate, s.SamplingRate), float64(s.SamplingRate), float64(prev.SamplingRate), "sampling_rate")
			m.end(k, now)
		}
		lost := s.LostFlows - prev.LostFlows
		sent := s.Records - prev.Records + lost
		if lost >= m.cfg.MinLost && sent > 0 && float64(lost)/float64(sent) >= m.cfg.LossRatio {
			ratio := float64(lost) / float64(sent)
			m.fire(firing, RuleLoss, s, now, "medium",
				fmt.Sprintf("%d of %d flows lost to sequence gaps (%.1f%%)", lost, sent, 100*ratio), ratio, m.cfg.LossRatio, "loss_ratio")
		}
	}
	for k := range m.active {
		if !firing[k] {
			m.end(k, now)
		}
	}
}

func (m *Monitor) fire(firing map[string]bool, rule string, s ingest.ExporterStats, now time.Time, importance, text string, observed, limit float64, metric string) {
	k := rule + "|" + s.Exporter.String()
	firing[k] = true
	if a := m.active[k]; a != nil {
		a.LastUpdate = now.UTC()
		a.Description = text
		return
	}
	m.raise(k, rule, s, now, importance, text, observed, limit, metric)
}

func (m *Monitor) raise(k, rule string, s ingest.ExporterStats, now time.Time, importance, text string, observed, limit float64, metric string) {
	h := fnv.New64a()
	fmt.Fprintf(h, "%s|%d", k, now.UnixNano())
	a := &detector.Anomaly{
		ID:          fmt.Sprintf("%x-%016x", now.UnixMilli(), h.Sum64()),
		Status:      detector.StatusOngoing,
		Kind:        "health",
		Rule:        rule,
		Description: text,
		Importance:  importance,
		Direction:   "internal",
		Resource:    detector.Resource{Type: "exporter", Key: s.Exporter.String(), Name: m.deps.Names[s.Exporter]},
		Start:       now.UTC(),
		LastUpdate:  now.UTC(),
		Threshold:   map[string]float64{metric: limit},
	}
	if limit > 0 {
		a.SeverityPct = math.Round(observed/limit*1000) / 10
	}
	a.SeverityText = text
	m.active[k] = a
	m.deps.OnEvent(detector.Event{Type: "raised", Anomaly: *a})
}

func (m *Monitor) end(k string, now time.Time) {
	a := m.active[k]
	if a == nil {
		return
	}
	delete(m.active, k)
	end := now.UTC()
	a.Status, a.End, a.LastUpdate = detector.StatusEnded, &end, end
	m.deps.OnEvent(detector.Event{Type: "ended", Anomaly: *a})
}
