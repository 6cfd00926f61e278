package alert

import (
	"crypto/hmac"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

// hookReceiver is a webhook endpoint: it checks each request as a receiver would and
// answers with the status its script gives for that request.
type hookReceiver struct {
	srv    *httptest.Server
	secret []byte
	status func(n int) int // nil: 200

	mu  sync.Mutex
	got []hookRequest
}

type hookRequest struct {
	delivery, event, custom string
	body                    WebhookBody
	signed                  bool // signature present and valid
	status                  int
}

func newHookReceiver(t *testing.T, secret string) *hookReceiver {
	h := &hookReceiver{secret: []byte(secret)}
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw, _ := io.ReadAll(r.Body)
		req := hookRequest{
			delivery: r.Header.Get("X-Flowhound-Delivery"),
			event:    r.Header.Get("X-Flowhound-Event"),
			custom:   r.Header.Get("X-Team"),
		}
		if sig := r.Header.Get("X-Flowhound-Signature"); sig != "" {
			req.signed = hmac.Equal([]byte(sig), []byte(Sign(h.secret, raw)))
		}
		if err := json.Unmarshal(raw, &req.body); err != nil || r.Header.Get("Content-Type") != "application/json" {
			t.Errorf("webhook body is not JSON (%v): %s", err, raw)
		}
		h.mu.Lock()
		req.status = http.StatusOK
		if h.status != nil {
			req.status = h.status(len(h.got))
		}
		h.got = append(h.got, req)
		h.mu.Unlock()
		if req.status != http.StatusOK {
			http.Error(w, "not now", req.status)
		}
	}))
	t.Cleanup(h.srv.Close)
	return h
}

func (h *hookReceiver) requests() []hookRequest {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]hookRequest(nil), h.got...)
}

func TestWebhook(t *testing.T) {
	an := synFlood("18f2c-hook")
	cases := []struct {
		name   string
		status func(n int) int
		end    bool
		// statuses the receiver answers, in order; every request of a case carries the
		// delivery IDs in want, in order.
		want      []string
		statuses  []int
		delivered uint64
		failed    string
	}{
		{
			name:      "raise and end, signed",
			end:       true,
			want:      []string{"raised", "ended"},
			statuses:  []int{200, 200},
			delivered: 2,
		},
		{
			name: "503 then 200 keeps the delivery id",
			status: func(n int) int {
				if n == 0 {
					return http.StatusServiceUnavailable
				}
				return http.StatusOK
			},
			want:      []string{"raised", "raised"},
			statuses:  []int{503, 200},
			delivered: 1,
		},
		{
			name:     "400 is permanent",
			status:   func(int) int { return http.StatusBadRequest },
			want:     []string{"raised"},
			statuses: []int{400},
			failed:   "http_400",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("TEST_HOOK_SECRET", "s3cret")
			h := newHookReceiver(t, "s3cret")
			h.status = tc.status
			cfg := Config{
				Webhooks: []WebhookConfig{{URL: h.srv.URL + "/hook?token=abc", SecretEnv: "TEST_HOOK_SECRET", Headers: map[string]string{"X-Team": "noc"}}},
				Retry:    fastRetry,
			}
			a, err := New(cfg, Deps{Log: quietLog()})
			if err != nil {
				t.Fatal(err)
			}
			sinkID := webhookID(cfg.Webhooks[0])
			delivered := counter(`flowhound_alerts_delivered_total{sink="webhook"}`)
			failedName := fmt.Sprintf(`flowhound_alerts_failed_total{sink="webhook",reason=%q}`, tc.failed)
			failed := counter(failedName)
			start(t, a)
			notify(t, a, Raised, an)
			if tc.end {
				notify(t, a, Ended, endedOf(an))
			}
			waitFor(t, 15*time.Second, "an empty outbox", func() bool { return a.Pending() == 0 })
			time.Sleep(50 * time.Millisecond)
			got := h.requests()
			if len(got) != len(tc.want) {
				t.Fatalf("receiver saw %d requests, want %d: %+v", len(got), len(tc.want), got)
			}
			for i, r := range got {
				wantID := an.ID + "/" + tc.want[i] + "/" + sinkID
				if r.delivery != wantID || r.event != tc.want[i] || r.body.Event != tc.want[i] {
					t.Errorf("request %d: delivery %q event %q/%q, want %q %q", i, r.delivery, r.event, r.body.Event, wantID, tc.want[i])
				}
				if !r.signed {
					t.Errorf("request %d: signature missing or wrong", i)
				}
				if r.custom != "noc" {
					t.Errorf("request %d: configured header X-Team = %q", i, r.custom)
				}
				if r.status != tc.statuses[i] {
					t.Errorf("request %d answered %d, want %d", i, r.status, tc.statuses[i])
				}
				var body struct {
					ID       string `json:"id"`
					Resource struct{ Key string }
					Filters  map[string]string
				}
				if err := json.Unmarshal(r.body.Anomaly, &body); err != nil || body.ID != an.ID || body.Resource.Key != "192.0.2.10" || body.Filters["cisco_acl"] == "" {
					t.Errorf("request %d: anomaly %s (%v)", i, r.body.Anomaly, err)
				}
			}
			if got := counter(`flowhound_alerts_delivered_total{sink="webhook"}`) - delivered; got != tc.delivered {
				t.Errorf("delivered grew by %d, want %d", got, tc.delivered)
			}
			if tc.failed != "" {
				if got := counter(failedName) - failed; got != 1 {
					t.Errorf("failed{reason=%s} grew by %d, want 1", tc.failed, got)
				}
			}
		})
	}
}

// TestSignatureWithWrongSecretFails guards the receiver check itself.
func TestSignatureWithWrongSecretFails(t *testing.T) {
	body := []byte(`{"event":"raised"}`)
	if hmac.Equal([]byte(Sign([]byte("a"), body)), []byte(Sign([]byte("b"), body))) {
		t.Fatal("signatures with different secrets match")
	}
	// The same value as `printf '{"event":"raised"}' | openssl dgst -sha256 -hmac key`,
	// so receivers in other languages can check their code against it.
	if got, want := Sign([]byte("key"), body), "sha256=54821c96aede33c3579cd9b83cd089a5f3c5aaae6fdf1f9e4940b5972459be6f"; got != want {
		t.Fatalf("signature %q, want %q", got, want)
	}
}

// TestMinImportance: an anomaly below the minimum is not sent; one that grows past it is
// raised then, and its end follows.
func TestMinImportance(t *testing.T) {
	h := newHookReceiver(t, "")
	a, err := New(Config{Webhooks: []WebhookConfig{{URL: h.srv.URL}}, MinImportance: "high", Retry: fastRetry}, Deps{Log: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	start(t, a)
	small := synFlood("18f2c-small")
	small.Importance = "medium"
	notify(t, a, Raised, small)
	notify(t, a, Ended, endedOf(small))

	grows := synFlood("18f2c-grows")
	grows.Importance = "medium"
	notify(t, a, Raised, grows)
	notify(t, a, Updated, grows)
	grows.Importance = "high"
	notify(t, a, Updated, grows)
	notify(t, a, Updated, grows) // already sent: updates go to Slack only
	notify(t, a, Ended, endedOf(grows))

	waitFor(t, 15*time.Second, "deliveries", func() bool { return a.Pending() == 0 })
	time.Sleep(30 * time.Millisecond)
	var got []string
	for _, r := range h.requests() {
		got = append(got, r.delivery)
	}
	id := webhookID(WebhookConfig{URL: h.srv.URL})
	want := []string{"18f2c-grows/raised/" + id, "18f2c-grows/ended/" + id}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("deliveries %v, want %v", got, want)
	}
	for _, r := range h.requests() {
		if r.signed {
			t.Error("signed without a secret")
		}
	}
}
