package detector

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/flowhound/flowhound/signatures"
)

// Config is the detector's part of the configuration file.
type Config struct {
	Networks  []Network  `yaml:"networks"`
	Exporters []Exporter `yaml:"exporters"`
	// Evaluate is how often windows are evaluated. DESIGN.md asks for at least every second;
	// twice a second halves the wait between a flood's first flows and its raise.
	Evaluate time.Duration `yaml:"evaluate"`
	// Hold overrides every rule's quiet hold when set (the demo uses a short one so that
	// anomalies end before it exits).
	Hold time.Duration `yaml:"hold"`
	// MaxWindows bounds the per-resource windows kept over all rules; past it the
	// quietest windows are dropped first.
	MaxWindows int `yaml:"max_windows"`
	// SnapshotFlows bounds the flows kept with each anomaly as evidence.
	SnapshotFlows int `yaml:"snapshot_flows"`
	// MaxEagerWindows bounds the full windows of rules that hold at any matching flow as a
	// light window sees it: scans (a light window cannot count distinct values) and
	// signatures. Such a window takes its detail (a few KB) at its first flow, so a sweep
	// of a network would otherwise give every host one. Past the bound they stay light
	// until others go; rate rules are not bounded by it (a window needs real traffic to
	// be promoted there).
	MaxEagerWindows int `yaml:"max_eager_windows"`
}

// Network is a monitored group of prefixes, like FastNetMon's hostgroups: its hosts are
// resources and its thresholds apply per host, its totals to the group as a whole.
type Network struct {
	Name     string         `yaml:"name"`
	Prefixes []netip.Prefix `yaml:"prefixes"`
	// Thresholds are per-host limits by name (pps, bps, fps, syn_pps, udp_pps, icmp_pps, ...:
	// rules.LimitNames); they override the rules' own defaults for this group's hosts.
	Thresholds map[string]float64 `yaml:"thresholds"`
	// Total are limits for the group as a whole (carpet bombing spread over many hosts).
	Total map[string]float64 `yaml:"total"`
}

// Exporter names a router and its interfaces for traceback.
type Exporter struct {
	Address    netip.Addr           `yaml:"address"`
	Name       string               `yaml:"name"`
	Sampling   uint32               `yaml:"sampling"`
	Interfaces map[uint32]Interface `yaml:"interfaces"`
}

// Interface is one exporter interface; Role external marks where the Internet enters.
type Interface struct {
	Name string `yaml:"name"`
	Role string `yaml:"role"` // external | internal
}

// DefaultConfig returns the detector's defaults.
func DefaultConfig() Config {
	return Config{Evaluate: 500 * time.Millisecond, MaxWindows: 2_000_000, SnapshotFlows: 50, MaxEagerWindows: 20_000}
}

// Validate checks the configuration.
func (c *Config) Validate() error {
	var errs []error
	if c.Evaluate <= 0 || c.Evaluate > time.Second {
		errs = append(errs, fmt.Errorf("evaluate: %v: must be in (0, 1s]", c.Evaluate))
	}
	if c.MaxWindows <= 0 {
		errs = append(errs, errors.New("max_windows: must be positive"))
	}
	if c.MaxEagerWindows <= 0 {
		errs = append(errs, errors.New("max_eager_windows: must be positive"))
	}
	names := map[string]bool{}
	for i, n := range c.Networks {
		if n.Name == "" {
			errs = append(errs, fmt.Errorf("networks[%d]: name is required", i))
		}
		if names[n.Name] {
			errs = append(errs, fmt.Errorf("networks[%d]: duplicate name %q", i, n.Name))
		}
		names[n.Name] = true
		if _, err := signatures.LimitsOf(n.Thresholds); err != nil {
			errs = append(errs, fmt.Errorf("networks[%d] (%s): thresholds: %v", i, n.Name, err))
		}
		if _, err := signatures.LimitsOf(n.Total); err != nil {
			errs = append(errs, fmt.Errorf("networks[%d] (%s): total: %v", i, n.Name, err))
		}
		if len(n.Prefixes) == 0 {
			errs = append(errs, fmt.Errorf("networks[%d] (%s): no prefixes", i, n.Name))
		}
		for _, p := range n.Prefixes {
			if !p.IsValid() || p != p.Masked() {
				errs = append(errs, fmt.Errorf("networks[%d] (%s): prefix %v has host bits set", i, n.Name, p))
			}
		}
	}
	for i, e := range c.Exporters {
		if !e.Address.IsValid() {
			errs = append(errs, fmt.Errorf("exporters[%d]: address is required", i))
		}
		for idx, ifc := range e.Interfaces {
			if ifc.Role != "" && ifc.Role != "external" && ifc.Role != "internal" {
				errs = append(errs, fmt.Errorf("exporters[%d].interfaces[%d]: role %q: want external or internal", i, idx, ifc.Role))
			}
		}
	}
	return errors.Join(errs...)
}
