package baseline

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/goccy/go-yaml"
)

func TestKeyText(t *testing.T) {
	tests := []struct {
		kind, text string
		key        Key
	}{
		{"host", "192.0.2.10", HostKey(netip.MustParseAddr("192.0.2.10"), DirIn)},
		{"host", "2001:db8::1", HostKey(netip.MustParseAddr("2001:db8::1"), DirIn)},
		{"prefix", "198.51.100.0/24", PrefixKey(netip.MustParsePrefix("198.51.100.0/24"), DirIn)},
		{"prefix", "2001:db8::/64", PrefixKey(netip.MustParsePrefix("2001:db8::/64"), DirIn)},
		{"interface", "192.0.2.1:3", InterfaceKey(netip.MustParseAddr("192.0.2.1"), 3, DirIn)},
		{"interface", "2001:db8::1:3", InterfaceKey(netip.MustParseAddr("2001:db8::1"), 3, DirIn)},
		{"port", "udp/53", PortKey(17, 53, DirIn)},
		{"port", "tcp/443", PortKey(6, 443, DirIn)},
		{"port", "icmp", PortKey(1, 0, DirIn)},
		{"port", "gre", PortKey(47, 0, DirIn)},
		{"port", "ip/89", PortKey(89, 0, DirIn)},
		{"global", "global", GlobalKey(DirIn)},
	}
	for _, tc := range tests {
		t.Run(tc.kind+" "+tc.text, func(t *testing.T) {
			if got := tc.key.String(); got != tc.text {
				t.Errorf("String() = %q, want %q", got, tc.text)
			}
			k, err := ParseKey(tc.kind, tc.text)
			if err != nil || k != tc.key {
				t.Errorf("ParseKey = %+v, %v; want %+v", k, err, tc.key)
			}
			for _, d := range []Direction{DirIn, DirOut, DirInternal} {
				kd := tc.key.WithDir(d)
				back, rest, err := readKey(kd.appendBinary(nil))
				if err != nil || back != kd || len(rest) != 0 {
					t.Errorf("binary round trip of %+v: %+v, %v", kd, back, err)
				}
			}
		})
	}
	// Bracketed IPv6 exporters are accepted too; a v4-mapped address is unmapped.
	if k, err := ParseKey("interface", "[2001:db8::1]:3"); err != nil || k.String() != "2001:db8::1:3" {
		t.Errorf("bracketed interface: %v %v", k, err)
	}
	if k := HostKey(netip.MustParseAddr("::ffff:192.0.2.7"), DirIn); k.String() != "192.0.2.7" {
		t.Errorf("mapped host: %v", k)
	}
	// The port of a portless protocol is ignored, so icmp keys are one class.
	if PortKey(1, 8, DirIn) != PortKey(1, 0, DirIn) {
		t.Error("icmp keys differ by port")
	}
}

func TestParseKeyErrors(t *testing.T) {
	tests := []struct{ kind, text, want string }{
		{"router", "x", "unknown resource type"},
		{"host", "192.0.2.300", "host key"},
		{"prefix", "192.0.2.1/24", "host bits set"},
		{"prefix", "192.0.2.0", "prefix key"},
		{"interface", "192.0.2.1", "EXPORTER:IFINDEX"},
		{"interface", "192.0.2.1:x", "ifindex"},
		{"port", "udp", "want udp/PORT"},
		{"port", "icmp/8", "has no ports"},
		{"port", "foo/1", "unknown protocol"},
		{"port", "tcp/70000", "port"},
		{"global", "everything", "want \"global\""},
	}
	for _, tc := range tests {
		if _, err := ParseKey(tc.kind, tc.text); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseKey(%q, %q) = %v, want an error containing %q", tc.kind, tc.text, err, tc.want)
		}
	}
}

func TestConfig(t *testing.T) {
	var file struct {
		Baseline Config `yaml:"baseline"`
	}
	file.Baseline = DefaultConfig()
	src := "baseline: {slot: 30s, snapshot_interval: 2m, max_hosts: 5000, warm_up: 48h, time_zone: Europe/Berlin}\n"
	if err := yaml.UnmarshalWithOptions([]byte(src), &file, yaml.DisallowUnknownField()); err != nil {
		t.Fatal(err)
	}
	c := file.Baseline
	if c.Slot != 30*time.Second || c.SnapshotInterval != 2*time.Minute || c.MaxHosts != 5000 || c.WarmUp != 48*time.Hour || c.TimeZone != "Europe/Berlin" || c.Grace != 20*time.Second {
		t.Fatalf("decoded %+v", c)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if err := yaml.UnmarshalWithOptions([]byte("baseline: {slots: 10s}\n"), &file, yaml.DisallowUnknownField()); err == nil {
		t.Error("an unknown field was accepted")
	}

	d := DefaultConfig()
	if d.Slot != 10*time.Second || d.SnapshotInterval != time.Minute || d.MaxHosts != 1_000_000 {
		t.Errorf("defaults %+v", d)
	}
	bad := []struct {
		mod  func(*Config)
		want string
	}{
		{func(c *Config) { c.Slot = 7 * time.Second }, "baseline.slot"},
		{func(c *Config) { c.Slot = 0 }, "baseline.slot"},
		{func(c *Config) { c.Grace = -time.Second }, "baseline.grace"},
		{func(c *Config) { c.Grace = time.Hour }, "baseline.grace"},
		{func(c *Config) { c.SnapshotInterval = 0 }, "baseline.snapshot_interval"},
		{func(c *Config) { c.MaxHosts = -1 }, "baseline.max_hosts"},
		{func(c *Config) { c.SummarySize = 0 }, "baseline.summary_size"},
		{func(c *Config) { c.WarmUp = -time.Second }, "baseline.warm_up"},
		{func(c *Config) { c.TimeZone = "Mars/Olympus" }, "baseline.time_zone"},
		{func(c *Config) {
			c.Networks = []Network{{Name: "a", Prefixes: []netip.Prefix{custNet}}, {Name: "b", Prefixes: []netip.Prefix{netip.MustParsePrefix("192.0.2.5/24")}}}
		}, "prefix 192.0.2.0/24 is also in a"},
		{func(c *Config) { c.Networks = []Network{{Prefixes: []netip.Prefix{custNet}}} }, "has no name"},
	}
	for _, tc := range bad {
		c := DefaultConfig()
		tc.mod(&c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Validate() = %v, want %q", err, tc.want)
		}
		if _, err := New(c, Deps{}); err == nil {
			t.Errorf("New accepted an invalid config (%s)", tc.want)
		}
	}
}
