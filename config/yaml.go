package config

import (
	"fmt"
	"strings"
	"time"

	"github.com/goccy/go-yaml"
)

// Duration reads "10s", "1m30s" or a bare number of seconds.
type Duration time.Duration

func (d *Duration) UnmarshalYAML(b []byte) error {
	s := strings.Trim(strings.TrimSpace(string(b)), `"'`)
	if v, err := time.ParseDuration(s); err == nil {
		*d = Duration(v)
		return nil
	}
	var secs float64
	if _, err := fmt.Sscanf(s, "%g", &secs); err == nil {
		*d = Duration(time.Duration(secs * float64(time.Second)))
		return nil
	}
	return fmt.Errorf("bad duration %q (want e.g. 10s)", s)
}

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// positioned turns goccy's "[3:5] message" into "3:5: message" plus its source excerpt.
func positioned(err error) string {
	s := yaml.FormatError(err, false, true)
	if strings.HasPrefix(s, "[") {
		if i := strings.Index(s, "]"); i > 0 {
			return s[1:i] + ":" + s[i+1:]
		}
	}
	return " " + s
}
