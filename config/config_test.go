package config

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestREADMEExample parses the configuration shown in the README, so the documentation
// stays a file that works.
func TestREADMEExample(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?s)```yaml\n(listen:.*?)```").FindSubmatch(readme)
	if m == nil {
		t.Fatal("README has no configuration example")
	}
	t.Setenv("FLOWHOUND_TOKEN", "t")
	t.Setenv("SLACK_TOKEN", "xoxb-1")
	t.Setenv("HOOK_SECRET", "s")
	// The example's notify script need not exist here: point it at one that does.
	script := filepath.Join(t.TempDir(), "notify.sh")
	if err := os.WriteFile(script, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	text := strings.Replace(string(m[1]), "/usr/local/bin/notify.sh", script, 1)
	c, err := Parse("README.md", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Networks) != 1 || c.Networks[0].Thresholds["syn_pps"] != 2000 || c.Detector().Hold != 60*time.Second {
		t.Errorf("parsed %+v", c)
	}
}

func TestErrors(t *testing.T) {
	tests := []struct {
		name, yaml, want string
	}{
		{"unknown field", "listen:\n  netflow: \":2055\"\n  sflw: \":6343\"\n", "c.yaml:3:3:"},
		{"bad prefix", "networks:\n  - name: a\n    prefixes: [192.0.2.1/24]\n", "host bits"},
		{"unknown limit", "networks:\n  - name: a\n    prefixes: [192.0.2.0/24]\n    thresholds: {sin_pps: 5}\n", "unknown limits sin_pps"},
		{"public api without token", "api: \"0.0.0.0:8080\"\napi_token_env: NO_SUCH_TOKEN_VAR\n", "not loopback"},
		{"bad listen address", "listen:\n  netflow: \"2055\"\n", "listen.netflow"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("c.yaml", []byte(tt.yaml))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestDefaults(t *testing.T) {
	c, err := Parse("empty.yaml", nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen.NetFlow != ":2055" || c.Listen.IPFIX != ":4739" || c.Listen.SFlow != ":6343" || c.API != "127.0.0.1:8080" || c.Store != "./flowhound-data" {
		t.Errorf("defaults %+v", c)
	}
}

// TestDetectionBounds: the detector's window bounds come from the file, and the defaults
// stay when it sets none.
func TestDetectionBounds(t *testing.T) {
	for _, tt := range []struct {
		yaml              string
		windows, distinct int
	}{
		{"", 2_000_000, 20_000},
		{"detection: {max_windows: 500000, max_eager_windows: 1000}\n", 500_000, 1000},
	} {
		c, err := Parse("c.yaml", []byte(tt.yaml))
		if err != nil {
			t.Fatal(err)
		}
		if d := c.Detector(); d.MaxWindows != tt.windows || d.MaxEagerWindows != tt.distinct {
			t.Errorf("%q: max_windows %d, max_eager_windows %d; want %d, %d", tt.yaml, d.MaxWindows, d.MaxEagerWindows, tt.windows, tt.distinct)
		}
	}
}
