// Package config reads flowhound's configuration file: one YAML document that composes
// each component's own configuration, strictly (unknown fields are errors with line:column).
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"

	"github.com/goccy/go-yaml"

	"github.com/flowhound/flowhound/alert"
	"github.com/flowhound/flowhound/baseline"
	"github.com/flowhound/flowhound/detector"
	"github.com/flowhound/flowhound/health"
)

// Config is the whole configuration file (DESIGN.md "Config").
type Config struct {
	Listen      Listen              `yaml:"listen"`
	API         string              `yaml:"api"`
	APITokenEnv string              `yaml:"api_token_env"`
	Store       string              `yaml:"store"`
	Networks    []detector.Network  `yaml:"networks"`
	Exporters   []detector.Exporter `yaml:"exporters"`
	Rules       []string            `yaml:"rules"`
	Detection   Detection           `yaml:"detection"`
	Alerts      alert.Config        `yaml:"alerts"`
	Baseline    baseline.Config     `yaml:"baseline"`
	Health      health.Config       `yaml:"health"`
}

// Listen holds the UDP listeners' addresses; an empty string disables one.
type Listen struct {
	NetFlow string `yaml:"netflow"`
	IPFIX   string `yaml:"ipfix"`
	SFlow   string `yaml:"sflow"`
}

// Detection tunes the detector beyond what rules say.
type Detection struct {
	Evaluate   Duration `yaml:"evaluate"`
	Hold       Duration `yaml:"hold"`
	MaxWindows int      `yaml:"max_windows"`
	// MaxEagerWindows bounds the full windows of scan and signature rules (detector.Config).
	MaxEagerWindows int `yaml:"max_eager_windows"`
}

// Default returns the configuration `flowhound serve` runs with when given no file.
func Default() Config {
	d := detector.DefaultConfig()
	return Config{
		Listen:      Listen{NetFlow: ":2055", IPFIX: ":4739", SFlow: ":6343"},
		API:         "127.0.0.1:8080",
		APITokenEnv: "FLOWHOUND_TOKEN",
		Store:       "./flowhound-data",
		Detection:   Detection{Evaluate: Duration(d.Evaluate), MaxWindows: d.MaxWindows, MaxEagerWindows: d.MaxEagerWindows},
		Baseline:    baseline.DefaultConfig(),
		Health:      health.DefaultConfig(),
	}
}

// Load reads a configuration file over the defaults; no path means the defaults alone.
func Load(path string) (Config, error) {
	if path == "" {
		return Default(), nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("config: %w", err)
	}
	return Parse(path, data)
}

// Parse reads configuration text over the defaults; errors name path:line:column.
func Parse(path string, data []byte) (Config, error) {
	c := Default()
	// An empty file is the defaults; decoding it would null the whole struct.
	if len(bytes.TrimSpace(data)) > 0 {
		dec := yaml.NewDecoder(bytes.NewReader(data), yaml.DisallowUnknownField())
		if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
			return Config{}, fmt.Errorf("%s:%s", path, positioned(err))
		}
	}
	if err := c.Validate(); err != nil {
		return Config{}, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// Detector returns the detector's part of the configuration.
func (c *Config) Detector() detector.Config {
	d := detector.DefaultConfig()
	d.Networks = c.Networks
	d.Exporters = c.Exporters
	if c.Detection.Evaluate > 0 {
		d.Evaluate = c.Detection.Evaluate.D()
	}
	d.Hold = c.Detection.Hold.D()
	if c.Detection.MaxWindows > 0 {
		d.MaxWindows = c.Detection.MaxWindows
	}
	if c.Detection.MaxEagerWindows > 0 {
		d.MaxEagerWindows = c.Detection.MaxEagerWindows
	}
	return d
}

// Validate checks the configuration as a whole.
func (c *Config) Validate() error {
	var errs []error
	for name, a := range map[string]string{"listen.netflow": c.Listen.NetFlow, "listen.ipfix": c.Listen.IPFIX, "listen.sflow": c.Listen.SFlow} {
		if a == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(a); err != nil {
			errs = append(errs, fmt.Errorf("%s: %q: %v", name, a, err))
		}
	}
	if c.API != "" {
		host, _, err := net.SplitHostPort(c.API)
		if err != nil {
			errs = append(errs, fmt.Errorf("api: %q: %v", c.API, err))
		} else if ip := net.ParseIP(host); (ip == nil || !ip.IsLoopback()) && host != "localhost" {
			if c.APITokenEnv == "" || os.Getenv(c.APITokenEnv) == "" {
				errs = append(errs, fmt.Errorf("api: %q is not loopback: set a token in $%s", c.API, c.APITokenEnv))
			}
		}
	}
	d := c.Detector()
	if err := d.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := c.Alerts.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := c.Health.Validate(); err != nil {
		errs = append(errs, err)
	}
	b := c.BaselineConfig()
	if err := b.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("baseline: %w", err))
	}
	return errors.Join(errs...)
}

// BaselineConfig returns the baselines' configuration with the monitored networks.
func (c *Config) BaselineConfig() baseline.Config {
	b := c.Baseline
	b.Networks = nil
	for _, n := range c.Networks {
		b.Networks = append(b.Networks, baseline.Network{Name: n.Name, Prefixes: n.Prefixes})
	}
	return b
}
