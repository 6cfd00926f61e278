package alert

import (
	"errors"
	"fmt"
	"hash/fnv"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// Config is the `alerts:` section of the configuration file. The zero value sends nothing.
type Config struct {
	// Slack posts one message per anomaly and updates it as the anomaly goes on and ends.
	Slack *SlackConfig `yaml:"slack"`
	// Webhooks receive a signed JSON POST when an anomaly is raised and when it ends.
	Webhooks []WebhookConfig `yaml:"webhooks"`
	// Exec runs FastNetMon-compatible notify scripts: ban on raise, unban on end.
	Exec []ExecConfig `yaml:"exec"`
	// Log writes raised and ended anomalies to the engine's log.
	Log bool `yaml:"log"`
	// MinImportance is the lowest anomaly importance that is sent: low, medium or high
	// (default low). An anomaly that grows past it is sent when it does.
	MinImportance string `yaml:"min_importance"`
	// Retry spaces out redeliveries.
	Retry RetryConfig `yaml:"retry"`
	// MaxPending bounds the outbox (deliveries not yet made, over all sinks; default
	// 10000). Past it new events are refused and counted, so an endpoint that is down for
	// days cannot grow the store without limit.
	MaxPending int `yaml:"max_pending"`
}

// SlackConfig is the Slack sink.
type SlackConfig struct {
	// TokenEnv names the environment variable holding the bot token (default SLACK_TOKEN).
	TokenEnv string `yaml:"token_env"`
	// Channel is the channel name or ID to post in; required.
	Channel string `yaml:"channel"`
	// APIURL is Slack's Web API base (default https://slack.com/api/); set it for a test
	// server.
	APIURL string `yaml:"api_url"`
	// MinInterval spaces out messages (default 1s): Slack allows about one message per
	// second per channel and answers bursts with 429.
	MinInterval Duration `yaml:"min_interval"`
	// Timeout bounds one API call (default 10s).
	Timeout Duration `yaml:"timeout"`
}

// WebhookConfig is one webhook sink.
type WebhookConfig struct {
	// URL receives the POST; http or https.
	URL string `yaml:"url"`
	// SecretEnv names the environment variable holding the HMAC-SHA256 signing secret;
	// empty sends unsigned requests.
	SecretEnv string `yaml:"secret_env"`
	// Headers are added to every request (for example an Authorization header).
	Headers map[string]string `yaml:"headers"`
	// Timeout bounds one request (default 10s).
	Timeout Duration `yaml:"timeout"`
}

// ExecConfig is one notify script.
type ExecConfig struct {
	// Command is the program to run, a path or a name looked up in $PATH.
	Command string `yaml:"command"`
	// Args come before the FastNetMon arguments (IP direction pps ban|unban).
	Args []string `yaml:"args"`
	// Timeout bounds one run (default 30s); the script's process group is killed past it.
	Timeout Duration `yaml:"timeout"`
	// Attempts is how many runs an event gets before it is given up (default 3): a ban
	// script that keeps failing usually fails the same way every time.
	Attempts int `yaml:"attempts"`
}

// RetryConfig is the redelivery schedule: exponential backoff from Initial, doubling per
// failed attempt up to Max, with jitter; an event still undelivered after MaxAge is given
// up.
type RetryConfig struct {
	Initial Duration `yaml:"initial"` // default 2s
	Max     Duration `yaml:"max"`     // default 5m
	MaxAge  Duration `yaml:"max_age"` // default 24h
}

// Defaults.
const (
	DefaultSlackTokenEnv = "SLACK_TOKEN"
	DefaultSlackAPIURL   = "https://slack.com/api/"
	DefaultMaxPending    = 10000
)

var importanceRank = map[string]int{"low": 0, "medium": 1, "high": 2}

// Validate fills in defaults and checks the configuration, including that the named
// environment variables hold the secrets (a missing token is found at start, not at the
// first attack).
func (c *Config) Validate() error {
	var errs []error
	add := func(format string, a ...any) { errs = append(errs, fmt.Errorf("alerts."+format, a...)) }
	if c.MinImportance == "" {
		c.MinImportance = "low"
	}
	if _, ok := importanceRank[c.MinImportance]; !ok {
		add("min_importance: %q is not low, medium or high", c.MinImportance)
	}
	if c.MaxPending == 0 {
		c.MaxPending = DefaultMaxPending
	}
	if c.MaxPending < 0 {
		add("max_pending: %d is negative", c.MaxPending)
	}
	r := &c.Retry
	r.Initial.orDefault(2 * time.Second)
	r.Max.orDefault(5 * time.Minute)
	r.MaxAge.orDefault(24 * time.Hour)
	if r.Initial < 0 || r.Max < 0 || r.MaxAge < 0 {
		add("retry: durations must not be negative")
	}
	if r.Max < r.Initial {
		add("retry: max %s is below initial %s", r.Max, r.Initial)
	}
	if s := c.Slack; s != nil {
		if s.TokenEnv == "" {
			s.TokenEnv = DefaultSlackTokenEnv
		}
		if os.Getenv(s.TokenEnv) == "" {
			add("slack.token_env: $%s is empty; put the bot token there", s.TokenEnv)
		}
		if s.Channel == "" {
			add("slack.channel: required (a channel name such as \"#ddos\" or an ID)")
		}
		if s.APIURL == "" {
			s.APIURL = DefaultSlackAPIURL
		}
		if !strings.HasSuffix(s.APIURL, "/") {
			// slack-go joins method names onto the base without a separator.
			s.APIURL += "/"
		}
		if err := checkURL(s.APIURL); err != nil {
			add("slack.api_url: %v", err)
		}
		s.MinInterval.orDefault(time.Second)
		s.Timeout.orDefault(10 * time.Second)
	}
	seen := map[string]int{}
	for i := range c.Webhooks {
		w := &c.Webhooks[i]
		if err := checkURL(w.URL); err != nil {
			add("webhooks[%d].url: %v", i, err)
		}
		if j, dup := seen[w.URL]; dup {
			add("webhooks[%d].url: same as webhooks[%d]", i, j)
		}
		seen[w.URL] = i
		if w.SecretEnv != "" && os.Getenv(w.SecretEnv) == "" {
			add("webhooks[%d].secret_env: $%s is empty; set the secret or remove secret_env", i, w.SecretEnv)
		}
		for k := range w.Headers {
			if k == "" || strings.ContainsAny(k, " :\r\n") {
				add("webhooks[%d].headers: bad header name %q", i, k)
			}
		}
		w.Timeout.orDefault(10 * time.Second)
	}
	seen = map[string]int{}
	for i := range c.Exec {
		e := &c.Exec[i]
		if e.Command == "" {
			add("exec[%d].command: required", i)
		} else if _, err := exec.LookPath(e.Command); err != nil {
			add("exec[%d].command: %v", i, err)
		}
		id := execID(*e)
		if j, dup := seen[id]; dup {
			add("exec[%d]: same command and args as exec[%d]", i, j)
		}
		seen[id] = i
		e.Timeout.orDefault(30 * time.Second)
		if e.Attempts == 0 {
			e.Attempts = 3
		}
		if e.Attempts < 0 {
			add("exec[%d].attempts: %d is negative", i, e.Attempts)
		}
	}
	return errors.Join(errs...)
}

func checkURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return err
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%q is not an http or https URL", s)
	}
	return nil
}

// Sink IDs name a sink in outbox keys and delivery IDs. They come from what the sink
// points at, not its position in the list, so reordering the configuration does not send
// queued events to a different endpoint, and removing one drops exactly its entries.
func webhookID(w WebhookConfig) string { return "webhook-" + shortHash(w.URL) }

func execID(e ExecConfig) string {
	return "exec-" + shortHash(e.Command+"\x00"+strings.Join(e.Args, "\x00"))
}

func shortHash(s string) string {
	h := fnv.New32a()
	h.Write([]byte(s))
	return fmt.Sprintf("%08x", h.Sum32())
}

// Duration is a time.Duration read from YAML as "30s", "1m30s" or a bare number of
// seconds.
type Duration time.Duration

// UnmarshalText implements encoding.TextUnmarshaler, which the YAML decoders use.
func (d *Duration) UnmarshalText(b []byte) error {
	s := strings.TrimSpace(string(b))
	if v, err := time.ParseDuration(s); err == nil {
		*d = Duration(v)
		return nil
	}
	if secs, err := strconv.ParseFloat(s, 64); err == nil {
		*d = Duration(secs * float64(time.Second))
		return nil
	}
	return fmt.Errorf("bad duration %q (want e.g. 30s)", s)
}

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

func (d Duration) String() string { return time.Duration(d).String() }

func (d *Duration) orDefault(v time.Duration) {
	if *d == 0 {
		*d = Duration(v)
	}
}
