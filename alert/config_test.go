package alert

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/goccy/go-yaml"
)

func TestConfigYAML(t *testing.T) {
	t.Setenv("TEST_YAML_SLACK", "xoxb-1")
	t.Setenv("TEST_YAML_HOOK", "secret")
	script := writeScript(t, t.TempDir(), "exit 0\n")
	doc := `
slack: {token_env: TEST_YAML_SLACK, channel: "#ddos", api_url: ""}
webhooks: [{url: "https://noc.example/hook", secret_env: TEST_YAML_HOOK, headers: {Authorization: "Bearer x"}}]
exec: [{command: ` + script + `, timeout: 5}]
min_importance: medium
retry: {initial: 500ms}
`
	var c Config
	if err := yaml.NewDecoder(bytes.NewReader([]byte(doc)), yaml.DisallowUnknownField()).Decode(&c); err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"slack.api_url default", c.Slack.APIURL, DefaultSlackAPIURL},
		{"slack.min_interval default", c.Slack.MinInterval.D(), time.Second},
		{"slack.timeout default", c.Slack.Timeout.D(), 10 * time.Second},
		{"webhook header", c.Webhooks[0].Headers["Authorization"], "Bearer x"},
		{"webhook timeout default", c.Webhooks[0].Timeout.D(), 10 * time.Second},
		{"exec timeout in bare seconds", c.Exec[0].Timeout.D(), 5 * time.Second},
		{"exec attempts default", c.Exec[0].Attempts, 3},
		{"retry.initial", c.Retry.Initial.D(), 500 * time.Millisecond},
		{"retry.max default", c.Retry.Max.D(), 5 * time.Minute},
		{"retry.max_age default", c.Retry.MaxAge.D(), 24 * time.Hour},
		{"max_pending default", c.MaxPending, DefaultMaxPending},
		{"min_importance", c.MinImportance, "medium"},
	}
	for _, ch := range checks {
		if ch.got != ch.want {
			t.Errorf("%s: %v, want %v", ch.name, ch.got, ch.want)
		}
	}
	var empty Config
	if err := empty.Validate(); err != nil || empty.MinImportance != "low" {
		t.Errorf("zero config: %v, min_importance %q", err, empty.MinImportance)
	}
}

func TestConfigErrors(t *testing.T) {
	t.Setenv("TEST_EMPTY_ENV", "")
	dir := t.TempDir()
	notExec := filepath.Join(dir, "plain.txt")
	os.WriteFile(notExec, []byte("x"), 0o644)
	cases := []struct {
		name string
		cfg  Config
		want string
	}{
		{"token missing", Config{Slack: &SlackConfig{TokenEnv: "TEST_EMPTY_ENV", Channel: "#x"}}, "alerts.slack.token_env: $TEST_EMPTY_ENV is empty"},
		{"channel missing", Config{Slack: &SlackConfig{}}, "alerts.slack.channel: required"},
		{"bad api url", Config{Slack: &SlackConfig{Channel: "#x", APIURL: "ftp://x"}}, "alerts.slack.api_url"},
		{"bad webhook url", Config{Webhooks: []WebhookConfig{{URL: "noc.example/hook"}}}, "alerts.webhooks[0].url"},
		{"duplicate webhook", Config{Webhooks: []WebhookConfig{{URL: "http://a/"}, {URL: "http://a/"}}}, "alerts.webhooks[1].url: same as webhooks[0]"},
		{"secret missing", Config{Webhooks: []WebhookConfig{{URL: "http://a/", SecretEnv: "TEST_EMPTY_ENV"}}}, "alerts.webhooks[0].secret_env"},
		{"exec command missing", Config{Exec: []ExecConfig{{}}}, "alerts.exec[0].command: required"},
		{"exec not executable", Config{Exec: []ExecConfig{{Command: notExec}}}, "alerts.exec[0].command"},
		{"importance", Config{MinImportance: "critical"}, `alerts.min_importance: "critical"`},
		{"retry order", Config{Retry: RetryConfig{Initial: Duration(time.Hour), Max: Duration(time.Minute)}}, "alerts.retry: max"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one containing %q", err, tc.want)
			}
			if _, err := New(tc.cfg, Deps{}); err == nil {
				t.Error("New accepted it")
			}
		})
	}
}

// TestOutboxBound: past max_pending an event is refused and counted, not queued.
func TestOutboxBound(t *testing.T) {
	h := newHookReceiver(t, "")
	a, err := New(Config{Webhooks: []WebhookConfig{{URL: h.srv.URL}}, MaxPending: 2, Retry: fastRetry}, Deps{Log: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	before := counter(`flowhound_alerts_failed_total{sink="webhook",reason="outbox_full"}`)
	for i, want := range []error{nil, nil, ErrOutboxFull} {
		err := a.Notify(eventOf(Raised, synFlood(killID(i))))
		if err != want {
			t.Errorf("Notify %d: %v, want %v", i, err, want)
		}
	}
	if got := counter(`flowhound_alerts_failed_total{sink="webhook",reason="outbox_full"}`) - before; got != 1 {
		t.Errorf("outbox_full grew by %d", got)
	}
	if err := a.Notify(eventOf("started", synFlood("x"))); err == nil {
		t.Error("unknown event type accepted")
	}
}

// TestEncodeEvent: the hand-built stored event reads back as encoding/json writes it.
func TestEncodeEvent(t *testing.T) {
	an := synFlood("18f2c-enc")
	raw, _ := json.Marshal(&an)
	at := time.Date(2024, 5, 1, 12, 0, 0, 123456789, time.FixedZone("x", 3600))
	var se storedEvent
	if err := json.Unmarshal(encodeEvent(Ended, at, raw), &se); err != nil {
		t.Fatal(err)
	}
	if se.Event != Ended || !se.Queued.Equal(at) || !bytes.Equal(se.Anomaly, raw) {
		t.Errorf("read back %s %s %d bytes", se.Event, se.Queued, len(se.Anomaly))
	}
}
