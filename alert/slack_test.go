package alert

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flowhound/flowhound/store"
)

// fakeSlack answers as Slack's Web API does: form-encoded POSTs to /chat.postMessage and
// /chat.update, the token as a form field, JSON replies.
type fakeSlack struct {
	srv *httptest.Server
	mu  sync.Mutex
	got []slackCall
	// reply answers call n (from 0); nil or a false second result means success.
	reply func(n int, w http.ResponseWriter) bool
	// gate, when set, holds every call until it is closed.
	gate chan struct{}
}

type slackCall struct {
	method string
	form   url.Values
	at     time.Time
}

func newFakeSlack(t *testing.T) *fakeSlack {
	f := &fakeSlack{}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if f.gate != nil {
			<-f.gate
		}
		if err := r.ParseForm(); err != nil || r.Method != http.MethodPost {
			t.Errorf("slack: bad request %s %s: %v", r.Method, r.URL, err)
		}
		f.mu.Lock()
		n := len(f.got)
		f.got = append(f.got, slackCall{method: strings.TrimPrefix(r.URL.Path, "/"), form: r.PostForm, at: time.Now()})
		reply := f.reply
		f.mu.Unlock()
		if reply != nil && reply(n, w) {
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"ok":true,"channel":"C1","ts":"1.2"}`)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeSlack) calls() []slackCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]slackCall(nil), f.got...)
}

func slackConfig(t *testing.T, apiURL string) Config {
	t.Setenv("TEST_SLACK_TOKEN", "xoxb-test")
	return Config{
		Slack: &SlackConfig{TokenEnv: "TEST_SLACK_TOKEN", Channel: "#ddos", APIURL: apiURL, MinInterval: Duration(time.Millisecond)},
		Retry: fastRetry,
	}
}

func TestSlack(t *testing.T) {
	anomaly := synFlood("18f2c-slack")
	cases := []struct {
		name      string
		reply     func(n int, w http.ResponseWriter) bool
		end       bool     // also notify the end
		methods   []string // the calls Slack sees, in order
		minGap    time.Duration
		delivered uint64
		failed    string // reason counted as a permanent failure
	}{
		{
			name:      "raise posts, end updates the same message",
			end:       true,
			methods:   []string{"chat.postMessage", "chat.update"},
			delivered: 2,
		},
		{
			name: "429 honours Retry-After",
			reply: func(n int, w http.ResponseWriter) bool {
				if n > 0 {
					return false
				}
				w.Header().Set("Retry-After", "1")
				w.WriteHeader(http.StatusTooManyRequests)
				return true
			},
			methods:   []string{"chat.postMessage", "chat.postMessage"},
			minGap:    time.Second,
			delivered: 1,
		},
		{
			name: "500 is retried",
			reply: func(n int, w http.ResponseWriter) bool {
				if n > 0 {
					return false
				}
				http.Error(w, "<html>oops</html>", http.StatusInternalServerError)
				return true
			},
			methods:   []string{"chat.postMessage", "chat.postMessage"},
			delivered: 1,
		},
		{
			name: "channel_not_found is permanent",
			reply: func(n int, w http.ResponseWriter) bool {
				fmt.Fprint(w, `{"ok":false,"error":"channel_not_found"}`)
				return true
			},
			methods: []string{"chat.postMessage"},
			failed:  "channel_not_found",
		},
		{
			name: "invalid_auth is permanent",
			reply: func(n int, w http.ResponseWriter) bool {
				fmt.Fprint(w, `{"ok":false,"error":"invalid_auth"}`)
				return true
			},
			methods: []string{"chat.postMessage"},
			failed:  "invalid_auth",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeSlack(t)
			f.reply = tc.reply
			a, err := New(slackConfig(t, f.srv.URL), Deps{Log: quietLog()})
			if err != nil {
				t.Fatal(err)
			}
			delivered := counter(`flowhound_alerts_delivered_total{sink="slack"}`)
			failedName := fmt.Sprintf(`flowhound_alerts_failed_total{sink="slack",reason=%q}`, tc.failed)
			failed := counter(failedName)
			start(t, a)
			notify(t, a, Raised, anomaly)
			if tc.end {
				notify(t, a, Ended, endedOf(anomaly))
			}
			waitFor(t, 15*time.Second, "an empty outbox", func() bool { return a.Pending() == 0 })
			time.Sleep(50 * time.Millisecond) // a wrongly scheduled retry would show up here
			calls := f.calls()
			var methods []string
			for _, c := range calls {
				methods = append(methods, c.method)
				if tok := c.form.Get("token"); tok != "xoxb-test" {
					t.Errorf("%s: token form field %q", c.method, tok)
				}
			}
			if strings.Join(methods, " ") != strings.Join(tc.methods, " ") {
				t.Fatalf("calls %v, want %v", methods, tc.methods)
			}
			if tc.minGap > 0 {
				if gap := calls[1].at.Sub(calls[0].at); gap < tc.minGap {
					t.Errorf("retried after %s, want at least %s", gap, tc.minGap)
				}
			}
			if tc.failed != "" {
				if got := counter(failedName) - failed; got != 1 {
					t.Errorf("failed{reason=%s} grew by %d, want 1", tc.failed, got)
				}
			}
			if got := counter(`flowhound_alerts_delivered_total{sink="slack"}`) - delivered; got != tc.delivered {
				t.Errorf("delivered grew by %d, want %d", got, tc.delivered)
			}

			post := calls[0].form
			if post.Get("channel") != "#ddos" {
				t.Errorf("posted to %q", post.Get("channel"))
			}
			blocks := blockTexts(t, post.Get("blocks"))
			for _, want := range []string{"192.0.2.10", "958.2% of 3.40 Kpps", "edge1", "Gi0/0/1", "81%",
				"tcp[tcpflags] &amp; tcp-syn != 0", "ip daddr 192.0.2.10", "flow route", "TCP SYN flood"} {
				if !strings.Contains(blocks, want) {
					t.Errorf("postMessage blocks lack %q:\n%s", want, blocks)
				}
			}
			if tc.end {
				up := calls[1].form
				if up.Get("channel") != "C1" || up.Get("ts") != "1.2" {
					t.Errorf("chat.update of channel %q ts %q, want C1 1.2", up.Get("channel"), up.Get("ts"))
				}
				if b := blockTexts(t, up.Get("blocks")); !strings.Contains(b, "Ended") || !strings.Contains(b, "lasted 5m0s") {
					t.Errorf("update does not say the anomaly ended:\n%s", b)
				}
			}
		})
	}
}

// TestSlackCoalescesUpdates holds Slack busy with the first post while three updates
// arrive: one chat.update with the last of them follows, then the end.
func TestSlackCoalescesUpdates(t *testing.T) {
	f := newFakeSlack(t)
	f.gate = make(chan struct{})
	a, err := New(slackConfig(t, f.srv.URL), Deps{Log: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	start(t, a)
	an := synFlood("18f2c-coalesce")
	notify(t, a, Raised, an)
	waitFor(t, 15*time.Second, "the post to be in flight", func() bool {
		a.mu.Lock()
		defer a.mu.Unlock()
		return len(a.slack.items) == 1 && a.slack.items[0].inflight
	})
	for i := 1; i <= 3; i++ {
		an.SeverityText = fmt.Sprintf("update %d", i)
		notify(t, a, Updated, an)
	}
	if n := a.Pending(); n != 2 {
		t.Errorf("pending %d while the post is in flight, want 2 (the post and one coalesced update)", n)
	}
	close(f.gate)
	waitFor(t, 15*time.Second, "the update", func() bool { return a.Pending() == 0 })
	notify(t, a, Ended, endedOf(an))
	waitFor(t, 15*time.Second, "the end", func() bool { return a.Pending() == 0 && len(f.calls()) == 3 })
	calls := f.calls()
	if calls[1].method != "chat.update" || !strings.Contains(calls[1].form.Get("blocks"), "update 3") {
		t.Errorf("second call %s with blocks %s, want chat.update with the last update", calls[1].method, calls[1].form.Get("blocks"))
	}
	if calls[2].method != "chat.update" || !strings.Contains(calls[2].form.Get("blocks"), "Ended") {
		t.Errorf("third call %s, want the end as chat.update", calls[2].method)
	}
}

// TestSlackMessageSurvivesRestart: the end after a restart updates the message posted
// before it, found through the store; an end delivered again (as after a kill between
// Slack's answer and the outbox update) updates it once more instead of posting.
func TestSlackMessageSurvivesRestart(t *testing.T) {
	f := newFakeSlack(t)
	dir := t.TempDir()
	an := synFlood("18f2c-restart")
	cfg := slackConfig(t, f.srv.URL)
	for _, ev := range []string{Raised, Ended, Ended} {
		st, err := store.Open(dir, store.DefaultOptions())
		if err != nil {
			t.Fatal(err)
		}
		a, err := New(cfg, Deps{Store: st, Log: quietLog()})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { a.Run(ctx); close(done) }()
		if ev == Raised {
			notify(t, a, ev, an)
		} else {
			notify(t, a, ev, endedOf(an))
		}
		waitFor(t, 15*time.Second, ev+" delivered", func() bool { return a.Pending() == 0 })
		cancel()
		<-done
		if err := st.Close(); err != nil {
			t.Fatal(err)
		}
	}
	calls := f.calls()
	if len(calls) != 3 || calls[0].method != "chat.postMessage" {
		t.Fatalf("calls %+v, want postMessage then two chat.update", calls)
	}
	for _, c := range calls[1:] {
		if c.method != "chat.update" || c.form.Get("ts") != "1.2" || c.form.Get("channel") != "C1" {
			t.Errorf("%s of %s %s, want chat.update of C1 1.2", c.method, c.form.Get("channel"), c.form.Get("ts"))
		}
	}
}

func TestMessageBlocksFitSlackLimits(t *testing.T) {
	an := synFlood("18f2c-long")
	an.Filters["bpf"] = strings.Repeat("(dst host 192.0.2.10 and src net 203.0.113.0/24) or\n", 200) + "tcp"
	an.Filters["nftables"] = strings.Repeat("x<y&", 2000)
	an.Rule = strings.Repeat("very-long-rule-name-", 20)
	for i := range 30 {
		an.Traceback = append(an.Traceback, an.Traceback[i%2])
	}
	raw, err := json.Marshal(MessageBlocks(Raised, &an))
	if err != nil {
		t.Fatal(err)
	}
	var blocks []struct {
		Type   string `json:"type"`
		Text   *struct{ Text string }
		Fields []struct{ Text string }
	}
	if err := json.Unmarshal(raw, &blocks); err != nil {
		t.Fatal(err)
	}
	if len(blocks) > 50 {
		t.Errorf("%d blocks, Slack takes 50", len(blocks))
	}
	codeBlocks := 0
	for _, b := range blocks {
		if b.Text == nil {
			continue
		}
		limit := slackSectionLimit
		if b.Type == "header" {
			limit = slackHeaderLimit
		}
		if len(b.Text.Text) > limit {
			t.Errorf("%s text of %d bytes, limit %d", b.Type, len(b.Text.Text), limit)
		}
		if strings.Count(b.Text.Text, "```")%2 != 0 {
			t.Errorf("unbalanced code fence in %q", b.Text.Text[max(0, len(b.Text.Text)-80):])
		}
		if strings.Contains(b.Text.Text, "```") {
			codeBlocks++
			if strings.Contains(b.Text.Text, "&amp") && !strings.HasSuffix(b.Text.Text, "```") {
				t.Errorf("code block does not end with its fence")
			}
		}
		for _, f := range b.Fields {
			if len(f.Text) > slackFieldLimit {
				t.Errorf("field of %d bytes", len(f.Text))
			}
		}
	}
	if codeBlocks != 4 {
		t.Errorf("%d filter code blocks, want bpf, nftables and both flowspecs", codeBlocks)
	}
	if !strings.Contains(string(raw), "cut here") || !strings.Contains(string(raw), "and 27 more") {
		t.Errorf("truncation is not said:\n%s", raw)
	}
	// A cut never splits an escape: every & in the text starts one.
	for _, part := range strings.Split(blockTexts(t, string(raw)), "&")[1:] {
		if !strings.HasPrefix(part, "amp;") && !strings.HasPrefix(part, "lt;") && !strings.HasPrefix(part, "gt;") {
			t.Fatalf("broken escape at &%.10s", part)
		}
	}
}

// blockTexts joins every "text" string of a Block Kit JSON document.
func blockTexts(t *testing.T, blocksJSON string) string {
	t.Helper()
	var v any
	if err := json.Unmarshal([]byte(blocksJSON), &v); err != nil {
		t.Fatalf("blocks are not JSON: %v\n%s", err, blocksJSON)
	}
	var b strings.Builder
	var walk func(any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				if s, ok := x.(string); ok && k == "text" {
					b.WriteString(s + "\n")
				} else {
					walk(x)
				}
			}
		case []any:
			for _, x := range v {
				walk(x)
			}
		}
	}
	walk(v)
	return b.String()
}
