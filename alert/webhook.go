package alert

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
)

type webhookSink struct {
	sinkID  string
	url     string
	secret  []byte
	headers map[string]string
	timeout time.Duration
	client  *http.Client
}

func newWebhookSink(c WebhookConfig, client *http.Client) *webhookSink {
	// A redirected POST turns into a GET in net/http; a hook that moved is a
	// configuration error to report, not to follow.
	cl := *client
	cl.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	w := &webhookSink{sinkID: webhookID(c), url: c.URL, headers: c.Headers, timeout: c.Timeout.D(), client: &cl}
	if c.SecretEnv != "" {
		w.secret = []byte(os.Getenv(c.SecretEnv))
	}
	return w
}

func (w *webhookSink) id() string                 { return w.sinkID }
func (w *webhookSink) kind() string               { return "webhook" }
func (w *webhookSink) wants(typ string) bool      { return typ == Raised || typ == Ended }
func (w *webhookSink) maxAttempts() int           { return 0 }
func (w *webhookSink) minInterval() time.Duration { return 0 }

// WebhookBody is the JSON a webhook receives.
type WebhookBody struct {
	Event   string          `json:"event"` // raised | ended
	Anomaly json.RawMessage `json:"anomaly"`
}

// Sign returns the X-Flowhound-Signature value for body: "sha256=" and the hex
// HMAC-SHA256 of the body with secret. Receivers compare it with hmac.Equal.
func Sign(secret, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

func (w *webhookSink) deliver(ctx context.Context, d *delivery) error {
	body, err := json.Marshal(WebhookBody{Event: d.Event, Anomaly: d.Raw})
	if err != nil {
		return permanent("encode", err)
	}
	ctx, cancel := context.WithTimeout(ctx, w.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.url, bytes.NewReader(body))
	if err != nil {
		return permanent("request", err)
	}
	for k, v := range w.headers {
		req.Header.Set(k, v)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "flowhound")
	req.Header.Set("X-Flowhound-Event", d.Event)
	req.Header.Set("X-Flowhound-Delivery", d.ID)
	if len(w.secret) > 0 {
		req.Header.Set("X-Flowhound-Signature", Sign(w.secret, body))
	}
	resp, err := w.client.Do(req)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return retry("timeout", redactURL(err))
		}
		return retry("network", redactURL(err))
	}
	defer resp.Body.Close()
	// Read a little of the body: it says why a request was refused, and reading to the end
	// lets the connection be reused.
	snippet, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	code := resp.StatusCode
	if code >= 200 && code < 300 {
		return nil
	}
	err = fmt.Errorf("POST %s: %s: %s", safeURL(w.url), resp.Status, strings.TrimSpace(string(snippet)))
	reason := fmt.Sprintf("http_%d", code)
	if code == http.StatusTooManyRequests || code == http.StatusRequestTimeout || code >= 500 {
		f := retry(reason, err)
		f.retryAfter = retryAfter(resp.Header, time.Now())
		return f
	}
	return permanent(reason, err)
}

// safeURL drops the query and user info of a URL for logs: hook URLs often carry tokens.
func safeURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(webhook)"
	}
	u.User, u.RawQuery, u.Fragment = nil, "", ""
	return u.String()
}

// redactURL rewrites a *url.Error so its message does not carry the full URL.
func redactURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return &url.Error{Op: ue.Op, URL: safeURL(ue.URL), Err: ue.Err}
	}
	return err
}
