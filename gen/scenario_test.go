package gen

import (
	"net/netip"
	"testing"
	"time"
)

func TestScheduleDemo(t *testing.T) {
	ph := Schedule(ScenarioDemo)
	s := time.Second
	tests := []struct {
		at     time.Duration
		name   string
		victim string
	}{
		{0, PhaseNormal, ""},
		{9 * s, PhaseNormal, ""},
		{10 * s, AttackSYN, "192.0.2.10"},
		{19 * s, AttackSYN, "192.0.2.10"},
		{22 * s, PhaseNormal, ""},
		{25 * s, AttackSlammer, "198.51.100.77"},
		{34 * s, AttackSlammer, "198.51.100.77"},
		{37 * s, PhaseNormal, ""},
		{40 * s, AttackAmp, "198.51.100.20"},
		{49 * s, AttackAmp, "198.51.100.20"},
		{50 * s, PhaseNormal, ""},
		{10 * time.Minute, PhaseNormal, ""},
	}
	for _, tt := range tests {
		i := PhaseAt(ph, tt.at)
		if i < 0 {
			t.Fatalf("no phase at %v", tt.at)
		}
		p := ph[i]
		if p.Name != tt.name {
			t.Errorf("at %v: %s, want %s", tt.at, p.Name, tt.name)
		}
		if tt.victim != "" && p.Victim.String() != tt.victim {
			t.Errorf("at %v: victim %v, want %s", tt.at, p.Victim, tt.victim)
		}
		if (p.Name == PhaseNormal) != (p.PPS == 0) {
			t.Errorf("at %v: %s with %d pps", tt.at, p.Name, p.PPS)
		}
	}
}

func TestSchedules(t *testing.T) {
	for _, sc := range Scenarios() {
		t.Run(sc, func(t *testing.T) {
			ph := Schedule(sc)
			if len(ph) == 0 || ph[0].Start != 0 || ph[len(ph)-1].End != 0 {
				t.Fatalf("schedule %+v does not cover the run", ph)
			}
			for i := 1; i < len(ph); i++ {
				if ph[i].Start != ph[i-1].End || ph[i].Start <= ph[i-1].Start {
					t.Errorf("phase %d starts at %v after one that ends at %v", i, ph[i].Start, ph[i-1].End)
				}
			}
			switch sc {
			case AttackSYN, AttackSlammer, AttackAmp, AttackICMP:
				if len(ph) != 2 || ph[1].Name != sc || ph[1].Start != LeadIn {
					t.Errorf("single attack schedule %+v", ph)
				}
			}
		})
	}
	if Schedule("nope") != nil {
		t.Error("unknown scenario has a schedule")
	}
}

func TestPhasesFollowConfig(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Scenario = ScenarioMixed
	cfg.Victims = []netip.Addr{netip.MustParseAddr("192.0.2.99"), netip.MustParseAddr("198.51.100.9")}
	cfg.AttackRate = 12345
	g, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{AttackSYN: "192.0.2.99", AttackSlammer: "198.51.100.9", AttackAmp: "192.0.2.99", AttackICMP: "198.51.100.9"}
	for _, p := range g.Phases() {
		if p.Name == PhaseNormal {
			continue
		}
		if p.Victim.String() != want[p.Name] || p.PPS != 12345 {
			t.Errorf("%s: victim %v at %d pps, want %s at 12345", p.Name, p.Victim, p.PPS, want[p.Name])
		}
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		edit func(*Config)
		ok   bool
	}{
		{"default", func(*Config) {}, true},
		{"sflow", func(c *Config) { c.Format = "SFLOW" }, true},
		{"bad format", func(c *Config) { c.Format = "v7" }, false},
		{"bad scenario", func(c *Config) { c.Scenario = "ddos" }, false},
		{"bad to", func(c *Config) { c.To = "localhost" }, false},
		{"to", func(c *Config) { c.To = "127.0.0.1:2055" }, true},
		{"negative rate", func(c *Config) { c.Rate = -1 }, false},
		{"zero rate", func(c *Config) { c.Rate = 0 }, true},
		{"ipv6 victim", func(c *Config) { c.Victims = []netip.Addr{netip.MustParseAddr("2001:db8::1")} }, false},
		{"no exporters", func(c *Config) { c.Exporters = 0 }, false},
		{"sources", func(c *Config) { c.Exporters = 0; c.Sources = []netip.Addr{netip.MustParseAddr("127.0.0.20")} }, true},
		{"sources mismatch", func(c *Config) { c.Sources = []netip.Addr{netip.MustParseAddr("127.0.0.20")} }, false},
		{"short active", func(c *Config) { c.ActiveTimeout = time.Millisecond }, false},
		{"negative inactive", func(c *Config) { c.InactiveTimeout = -time.Second }, false},
		{"sampling 0", func(c *Config) { c.SamplingRate = 0 }, false},
		{"negative duration", func(c *Config) { c.Duration = -1 }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := DefaultConfig()
			tt.edit(&c)
			if err := c.Validate(); (err == nil) != tt.ok {
				t.Errorf("Validate() = %v, want ok=%v", err, tt.ok)
			}
		})
	}
}
