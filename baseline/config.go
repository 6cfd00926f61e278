package baseline

import (
	"errors"
	"fmt"
	"net/netip"
	"time"
)

// Config is the `baseline:` section of the configuration file plus the monitored
// networks, which the caller copies from the top-level `networks:` section.
type Config struct {
	// Slot is the resolution of learning: counters are summed per slot and each closed slot
	// is one observation. It must divide 5 minutes.
	Slot time.Duration `yaml:"slot"`
	// Grace is how long a slot stays open after it ends, for flows that arrive late or whose
	// duration reaches back into it. A grace shorter than one slot counts as one slot.
	Grace time.Duration `yaml:"grace"`
	// SnapshotInterval is how often changed state is written to the store.
	SnapshotInterval time.Duration `yaml:"snapshot_interval"`
	// MaxHosts bounds the host and port keys tracked one by one; the rest are summarised.
	MaxHosts int `yaml:"max_hosts"`
	// MaxProfiles bounds interface and prefix keys, which carry the full seasonal model.
	// The configured monitored prefixes and the global keys always have one.
	MaxProfiles int `yaml:"max_profiles"`
	// SummarySize is the number of heavy-hitter counters for keys beyond the bounds.
	SummarySize int `yaml:"summary_size"`
	// WarmUp is how much traffic history a key needs before its profile may raise anomalies.
	WarmUp time.Duration `yaml:"warm_up"`
	// IdleTimeout drops keys (other than monitored prefixes and global) that have seen no
	// traffic for this long.
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// TimeZone names the zone (IANA, e.g. "Europe/Berlin") whose days, weeks and years
	// the seasonal buckets follow; empty means UTC.
	TimeZone string `yaml:"time_zone"`

	// Networks are the monitored networks. Direction comes from them: a flow whose
	// destination is monitored is incoming, whose source is monitored outgoing, both
	// internal. With none, every destination is an incoming host.
	Networks []Network `yaml:"-"`
}

// Network is a named group of monitored prefixes.
type Network struct {
	Name     string
	Prefixes []netip.Prefix
}

// DefaultConfig returns the defaults of DESIGN.md: 10 s slots, a snapshot a minute and up
// to a million hosts.
func DefaultConfig() Config {
	return Config{
		Slot:             10 * time.Second,
		Grace:            20 * time.Second,
		SnapshotInterval: 60 * time.Second,
		MaxHosts:         1_000_000,
		MaxProfiles:      20_000,
		SummarySize:      4096,
		WarmUp:           24 * time.Hour,
		IdleTimeout:      7 * 24 * time.Hour,
	}
}

// maxRing bounds the open slots so that a flow's spans fit a fixed array.
const maxRing = 16

// Validate reports the first invalid field, named as in the YAML file.
func (c *Config) Validate() error {
	switch {
	case c.Slot < time.Second || c.Slot > 5*time.Minute || (5*time.Minute)%c.Slot != 0:
		return fmt.Errorf("baseline.slot %v: must be between 1s and 5m and divide 5m", c.Slot)
	case c.Grace < 0:
		return fmt.Errorf("baseline.grace %v: must not be negative", c.Grace)
	case c.ringSlots() > maxRing:
		return fmt.Errorf("baseline.grace %v: at most %d slots", c.Grace, maxRing-1)
	case c.SnapshotInterval < time.Second:
		return fmt.Errorf("baseline.snapshot_interval %v: must be at least 1s", c.SnapshotInterval)
	case c.MaxHosts < 0 || c.MaxHosts > 1<<28:
		return fmt.Errorf("baseline.max_hosts %d: must be between 0 and %d", c.MaxHosts, 1<<28)
	case c.MaxProfiles < 0 || c.MaxProfiles > 1<<22:
		return fmt.Errorf("baseline.max_profiles %d: must be between 0 and %d", c.MaxProfiles, 1<<22)
	case c.SummarySize < 1 || c.SummarySize > 1<<20:
		return fmt.Errorf("baseline.summary_size %d: must be between 1 and %d", c.SummarySize, 1<<20)
	case c.WarmUp < 0:
		return fmt.Errorf("baseline.warm_up %v: must not be negative", c.WarmUp)
	case c.IdleTimeout < c.Slot:
		return fmt.Errorf("baseline.idle_timeout %v: must be at least one slot", c.IdleTimeout)
	}
	if _, err := loadZone(c.TimeZone); err != nil {
		return fmt.Errorf("baseline.time_zone %q: %w", c.TimeZone, err)
	}
	seen := map[netip.Prefix]string{}
	for _, n := range c.Networks {
		if n.Name == "" {
			return errors.New("networks: a network has no name")
		}
		for _, p := range n.Prefixes {
			if !p.IsValid() {
				return fmt.Errorf("networks %s: invalid prefix", n.Name)
			}
			m := PrefixKey(p, DirIn).Prefix()
			if other, ok := seen[m]; ok {
				return fmt.Errorf("networks %s: prefix %s is also in %s", n.Name, m, other)
			}
			seen[m] = n.Name
		}
	}
	return nil
}

// ringSlots is the number of open slots: the grace period rounded up to slots, plus the
// slot being filled.
func (c *Config) ringSlots() int {
	g := max(c.Grace, c.Slot)
	return int((g+c.Slot-1)/c.Slot) + 1
}

func loadZone(name string) (*time.Location, error) {
	if name == "" {
		return time.UTC, nil
	}
	return time.LoadLocation(name)
}
