package api

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flowhound/flowhound/detector"
)

type memAnomalies []detector.Anomaly

func (m memAnomalies) List(status string, since time.Time) ([]detector.Anomaly, error) {
	var out []detector.Anomaly
	for _, a := range m {
		if (status == "" || a.Status == status) && !a.Start.Before(since) {
			out = append(out, a)
		}
	}
	return out, nil
}

func (m memAnomalies) Get(id string) (detector.Anomaly, bool, error) {
	for _, a := range m {
		if a.ID == id {
			return a, true, nil
		}
	}
	return detector.Anomaly{}, false, nil
}

type memNotes struct {
	mu    sync.Mutex
	notes map[string]AnomalyNotes
	sups  []Suppression
}

func (m *memNotes) Get(id string) (AnomalyNotes, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.notes[id], nil
}

func (m *memNotes) Ack(id, by, note string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := m.notes[id]
	n.Ack = &Note{By: by, Text: note, At: time.Now()}
	m.notes[id] = n
	return nil
}

func (m *memNotes) Comment(id, by, text string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := m.notes[id]
	n.Comments = append(n.Comments, Note{By: by, Text: text, At: time.Now()})
	m.notes[id] = n
	return nil
}

func (m *memNotes) List() ([]Suppression, error) { return m.sups, nil }
func (m *memNotes) Add(s Suppression) (Suppression, error) {
	s.ID = "s1"
	m.sups = append(m.sups, s)
	return s, nil
}
func (m *memNotes) Delete(id string) (bool, error) {
	for i, s := range m.sups {
		if s.ID == id {
			m.sups = append(m.sups[:i], m.sups[i+1:]...)
			return true, nil
		}
	}
	return false, nil
}

func TestAPI(t *testing.T) {
	start := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	anoms := memAnomalies{
		{ID: "a1", Status: "ongoing", Rule: "tcp-syn-flood", Start: start, Resource: detector.Resource{Type: "host", Key: "192.0.2.10"}},
		{ID: "a2", Status: "ended", Rule: "sql-slammer", Start: start.Add(-time.Hour), Resource: detector.Resource{Type: "host", Key: "198.51.100.77"}},
	}
	notes := &memNotes{notes: map[string]AnomalyNotes{}}
	srv, err := New(Config{Addr: "127.0.0.1:0", Token: "s3cret"}, Deps{Anomalies: anoms, Notes: notes, Suppress: notes})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go srv.Run(ctx)
	base := "http://" + srv.Addr()

	tests := []struct {
		name, method, path, body string
		noToken                  bool
		wantCode                 int
		wantIn                   string // substring of the body
	}{
		{"list", "GET", "/api/anomalies", "", false, 200, `"id":"a1"`},
		{"list by status", "GET", "/api/anomalies?status=ended", "", false, 200, `"id":"a2"`},
		{"bad status", "GET", "/api/anomalies?status=burning", "", false, 400, `"error":"status: want`},
		{"bad since", "GET", "/api/anomalies?since=yesterday", "", false, 400, `"error":"since:`},
		{"unknown id", "GET", "/api/anomalies/nope", "", false, 404, `"error":"no anomaly`},
		{"missing token", "GET", "/api/anomalies", "", true, 401, `"error":"missing or wrong bearer token"`},
		{"unknown endpoint", "GET", "/api/nothing", "", false, 404, `"error":"no such endpoint`},
		{"resources unavailable", "GET", "/api/resources", "", false, 503, `"error"`},
		{"ack", "POST", "/api/anomalies/a1/ack", `{"by":"noc","note":"on it"}`, false, 200, `"ack":{"by":"noc"`},
		{"ack needs a name", "POST", "/api/anomalies/a1/ack", `{"note":"x"}`, false, 400, `"error":"by:`},
		{"ack unknown field", "POST", "/api/anomalies/a1/ack", `{"by":"x","sevrity":1}`, false, 400, `unknown field`},
		{"ack unknown anomaly", "POST", "/api/anomalies/zz/ack", `{"by":"noc"}`, false, 404, `no anomaly`},
		{"ack without token", "POST", "/api/anomalies/a1/ack", `{"by":"noc"}`, true, 401, `bearer`},
		{"comment", "POST", "/api/anomalies/a1/comments", `{"by":"noc","text":"customer called"}`, false, 200, `customer called`},
		{"anomaly with notes", "GET", "/api/anomalies/a1", "", false, 200, `"comments":[{"by":"noc"`},
		{"suppress", "POST", "/api/suppressions", `{"rule":"tcp-syn-flood","resource":"192.0.2.10","for":"2h","reason":"pen test","by":"noc"}`, false, 201, `"id":"s1"`},
		{"suppress bad duration", "POST", "/api/suppressions", `{"for":"forever","reason":"x","by":"y"}`, false, 400, `for:`},
		{"list suppressions", "GET", "/api/suppressions", "", false, 200, `"reason":"pen test"`},
		{"delete suppression", "DELETE", "/api/suppressions/s1", "", false, 204, ``},
		{"delete it again", "DELETE", "/api/suppressions/s1", "", false, 404, `no suppression`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(tt.method, base+tt.path, strings.NewReader(tt.body))
			if !tt.noToken {
				req.Header.Set("Authorization", "Bearer s3cret")
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tt.wantCode || !strings.Contains(string(body), tt.wantIn) {
				t.Errorf("%s %s: %d %s, want %d with %s", tt.method, tt.path, resp.StatusCode, body, tt.wantCode, tt.wantIn)
			}
			if resp.StatusCode >= 400 {
				var e map[string]string
				if json.Unmarshal(body, &e) != nil || e["error"] == "" {
					t.Errorf("error body is not a JSON error: %s", body)
				}
			}
		})
	}
}
