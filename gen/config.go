package gen

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"
)

// Config says what a Generator sends, where, and for how long. DefaultConfig fills every
// field; Validate checks them.
type Config struct {
	// To is the collector, HOST:PORT. Only Run needs it.
	To string
	// Format is v5, v9, ipfix or sflow.
	Format string
	// Scenario is one of Scenarios().
	Scenario string
	// Rate is the background (normal traffic) in flows started per second, spread over
	// the customer hosts. A few long-lived transfers (bulk downloads, speed tests) come on
	// top, scaled with it. Records per second are somewhat higher than Rate since flows
	// longer than ActiveTimeout are exported in several records.
	Rate int
	// AttackRate overrides each attack's packets per second; 0 keeps the scenario's.
	AttackRate int
	// Duration bounds the run; 0 runs until the context ends.
	Duration time.Duration
	// Victims replaces the scenario's default targets: single-attack scenarios use the
	// first; mixed and demo give the i-th attack Victims[i % len(Victims)]. For the
	// slammer attack the "victim" is the infected internal host that sends the worm.
	// IPv4 only.
	Victims []netip.Addr
	// Exporters is how many routers export. They send from Sources, by default
	// 127.0.0.11, 127.0.0.12, ... (Linux routes all of 127/8 to lo, and the engine tells
	// exporters apart by source address). For a collector that is not on loopback, give
	// Sources (addresses of this host); without them the exporters send from whatever
	// address the kernel picks and differ only by source port.
	Exporters int
	Sources   []netip.Addr
	// Seed makes runs repeatable: Simulate with the same Config and start time produces
	// the same datagrams.
	Seed int64
	// ActiveTimeout cuts long flows into records; InactiveTimeout exports a flow that has
	// been idle this long. DDoS-minded operators shorten both (5 s and 1 s here by
	// default): with Cisco's usual 60 s active / 15 s inactive, the first record of a
	// flood of short flows arrives 15 s late and a flood of long flows stays out of view
	// for a minute.
	ActiveTimeout, InactiveTimeout time.Duration
	// SamplingRate is sFlow's 1-in-N packet sampling rate.
	SamplingRate int
	// OnPhase, if set, is called from Run or Simulate as each phase of the schedule
	// starts, with the wall (or simulated) time it started.
	OnPhase func(p Phase, at time.Time)
}

// Defaults.
const (
	DefaultRate            = 2000
	DefaultDuration        = 60 * time.Second
	DefaultExporters       = 3
	DefaultActiveTimeout   = 5 * time.Second
	DefaultInactiveTimeout = 1 * time.Second
	DefaultSamplingRate    = 1000
)

// DefaultConfig returns the configuration of `flowhound gen` without flags (To empty).
func DefaultConfig() Config {
	return Config{
		Format:          "v5",
		Scenario:        "normal",
		Rate:            DefaultRate,
		Duration:        DefaultDuration,
		Exporters:       DefaultExporters,
		Seed:            1,
		ActiveTimeout:   DefaultActiveTimeout,
		InactiveTimeout: DefaultInactiveTimeout,
		SamplingRate:    DefaultSamplingRate,
	}
}

// Validate reports the first field that is out of range.
func (c *Config) Validate() error {
	if _, err := ParseFormat(c.Format); err != nil {
		return err
	}
	if !knownScenario(c.Scenario) {
		return fmt.Errorf("unknown scenario %q (want one of %v)", c.Scenario, Scenarios())
	}
	if c.To != "" {
		if _, _, err := net.SplitHostPort(c.To); err != nil {
			return fmt.Errorf("collector address %q: %w", c.To, err)
		}
	}
	if c.Rate < 0 || c.Rate > 20_000_000 {
		return fmt.Errorf("rate %d flows/s out of range 0..20000000", c.Rate)
	}
	if c.AttackRate < 0 || c.AttackRate > 20_000_000 {
		return fmt.Errorf("attack rate %d packets/s out of range 0..20000000", c.AttackRate)
	}
	if c.Duration < 0 {
		return errors.New("negative duration")
	}
	for _, v := range c.Victims {
		if !v.Unmap().Is4() {
			return fmt.Errorf("victim %v: only IPv4 victims are supported", v)
		}
	}
	if len(c.Sources) > 0 && c.Exporters != 0 && c.Exporters != len(c.Sources) {
		return fmt.Errorf("%d exporters but %d source addresses", c.Exporters, len(c.Sources))
	}
	if n := c.exporters(); n < 1 || n > 200 {
		return fmt.Errorf("exporters %d out of range 1..200", n)
	}
	for _, s := range c.Sources {
		if !s.IsValid() {
			return errors.New("invalid source address")
		}
	}
	if c.ActiveTimeout < time.Second || c.ActiveTimeout > 30*time.Minute {
		return fmt.Errorf("active timeout %v out of range 1s..30m", c.ActiveTimeout)
	}
	if c.InactiveTimeout < 0 || c.InactiveTimeout > 10*time.Minute {
		return fmt.Errorf("inactive timeout %v out of range 0..10m", c.InactiveTimeout)
	}
	if c.SamplingRate < 1 || c.SamplingRate > 1<<24 {
		return fmt.Errorf("sampling rate %d out of range 1..16777216", c.SamplingRate)
	}
	return nil
}

func (c *Config) exporters() int {
	if len(c.Sources) > 0 {
		return len(c.Sources)
	}
	return c.Exporters
}

// sources returns the exporters' addresses: Sources, or 127.0.0.11 onwards.
func (c *Config) sources() []netip.Addr {
	if len(c.Sources) > 0 {
		return c.Sources
	}
	out := make([]netip.Addr, c.Exporters)
	for i := range out {
		out[i] = netip.AddrFrom4([4]byte{127, 0, 0, byte(11 + i)})
	}
	return out
}
