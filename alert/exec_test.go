package alert

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flowhound/flowhound/detector"
)

// writeScript puts an executable shell script in dir.
func writeScript(t *testing.T, dir, body string) string {
	t.Helper()
	p := filepath.Join(dir, "notify.sh")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestExec(t *testing.T) {
	an := synFlood("18f2c-exec")
	cases := []struct {
		name     string
		script   string // %[1]s is the test's directory
		timeout  time.Duration
		attempts int
		runs     int    // how often the script runs
		failed   string // reason the event is given up with
	}{
		{
			name: "ban then unban, anomaly on stdin",
			script: `echo "$@" >> %[1]s/argv
cat > %[1]s/stdin.$FLOWHOUND_EVENT
echo "$FLOWHOUND_DELIVERY" >> %[1]s/ids
echo banned`,
			runs: 2,
		},
		{
			name: "non-zero exit is retried, then given up",
			script: `echo "$@" >> %[1]s/argv
echo "cannot reach the router" >&2
exit 3`,
			attempts: 3,
			runs:     3 + 3, // the raise's three attempts, then the end's
			failed:   "exit_status",
		},
		{
			name: "timeout kills the script and its children",
			script: `echo "$@" >> %[1]s/argv
sleep 30 &
sleep 30`,
			timeout:  200 * time.Millisecond,
			attempts: 1,
			runs:     2,
			failed:   "timeout",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			script := writeScript(t, dir, fmt.Sprintf(tc.script, dir))
			cfg := Config{Exec: []ExecConfig{{Command: script, Timeout: Duration(tc.timeout), Attempts: tc.attempts}}, Retry: fastRetry}
			a, err := New(cfg, Deps{Log: quietLog()})
			if err != nil {
				t.Fatal(err)
			}
			failedName := fmt.Sprintf(`flowhound_alerts_failed_total{sink="exec",reason=%q}`, tc.failed)
			failed := counter(failedName)
			start(t, a)
			began := time.Now()
			notify(t, a, Raised, an)
			notify(t, a, Ended, endedOf(an))
			waitFor(t, 15*time.Second, "an empty outbox", func() bool { return a.Pending() == 0 })
			// Two runs killed at 200 ms each; had the background sleep survived, each would
			// also wait out the 2 s WaitDelay for its output pipe.
			if tc.timeout > 0 && time.Since(began) > 3500*time.Millisecond {
				t.Errorf("took %s with a %s timeout: the script's children were not killed", time.Since(began), tc.timeout)
			}
			argv, _ := os.ReadFile(filepath.Join(dir, "argv"))
			lines := strings.Split(strings.TrimSpace(string(argv)), "\n")
			if len(lines) != tc.runs {
				t.Fatalf("script ran %d times, want %d:\n%s", len(lines), tc.runs, argv)
			}
			// Peak pps 32579.6, rounded.
			if lines[0] != "192.0.2.10 incoming 32580 ban" || lines[len(lines)-1] != "192.0.2.10 incoming 32580 unban" {
				t.Errorf("argv:\n%s\nwant ban first and unban last", argv)
			}
			if tc.failed != "" {
				if got := counter(failedName) - failed; got != 2 {
					t.Errorf("failed{exec,%s} grew by %d, want 2 (raise and end)", tc.failed, got)
				}
				return
			}
			for _, ev := range []string{Raised, Ended} {
				raw, err := os.ReadFile(filepath.Join(dir, "stdin."+ev))
				if err != nil {
					t.Fatal(err)
				}
				var got struct{ ID, Status string }
				if err := json.Unmarshal(raw, &got); err != nil || got.ID != an.ID {
					t.Errorf("stdin for %s: %s (%v)", ev, raw, err)
				}
				if want := map[string]string{Raised: "ongoing", Ended: "ended"}[ev]; got.Status != want {
					t.Errorf("stdin for %s has status %q", ev, got.Status)
				}
			}
			ids, _ := os.ReadFile(filepath.Join(dir, "ids"))
			id := execID(cfg.Exec[0])
			if want := an.ID + "/raised/" + id + "\n" + an.ID + "/ended/" + id + "\n"; string(ids) != want {
				t.Errorf("FLOWHOUND_DELIVERY:\n%s\nwant\n%s", ids, want)
			}
		})
	}
}

func TestExecArgsOtherResources(t *testing.T) {
	an := synFlood("x")
	an.Resource = detector.Resource{Type: "prefix", Key: "198.51.100.0/24"}
	an.Direction = "outgoing"
	an.Peak.PPS = 0
	if got := strings.Join(ExecArgs(Ended, &an), " "); got != "198.51.100.0/24 outgoing 32580 unban" {
		t.Errorf("args %q", got)
	}
}

// TestExecDoesNotSeeSecrets: the alert secrets' variables are taken out of the script's
// environment; the rest of it stays.
func TestExecDoesNotSeeSecrets(t *testing.T) {
	t.Setenv("TEST_EXEC_SECRET", "s3cret")
	t.Setenv("TEST_EXEC_OTHER", "kept")
	dir := t.TempDir()
	script := writeScript(t, dir, fmt.Sprintf(`echo "secret=$TEST_EXEC_SECRET other=$TEST_EXEC_OTHER" > %s/env`, dir))
	h := newHookReceiver(t, "s3cret")
	cfg := Config{
		Webhooks: []WebhookConfig{{URL: h.srv.URL, SecretEnv: "TEST_EXEC_SECRET"}},
		Exec:     []ExecConfig{{Command: script}},
		Retry:    fastRetry,
	}
	a, err := New(cfg, Deps{Log: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	start(t, a)
	notify(t, a, Raised, synFlood("18f2c-env"))
	waitFor(t, 15*time.Second, "delivery", func() bool { return a.Pending() == 0 })
	got, _ := os.ReadFile(filepath.Join(dir, "env"))
	if strings.TrimSpace(string(got)) != "secret= other=kept" {
		t.Errorf("script environment: %s", got)
	}
	if r := h.requests(); len(r) != 1 || !r[0].signed {
		t.Errorf("webhook requests %+v, want one signed", r)
	}
}
