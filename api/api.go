// Package api serves flowhound's HTTP API, the Prometheus /metrics page and the web UI.
package api

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/flowhound/flowhound/detector"
)

// Anomalies is where the API reads anomalies from (the store, or the detector in the demo).
type Anomalies interface {
	// List returns anomalies that started at or after since, newest first; status "" is any.
	List(status string, since time.Time) ([]detector.Anomaly, error)
	Get(id string) (detector.Anomaly, bool, error)
}

// Resources is where the API reads tracked resources and their baselines from.
type Resources interface {
	// Top returns up to limit resources of a type ("" for all), highest expected bps first,
	// as JSON-ready values.
	Top(typ string, limit int) (any, error)
	// Detail returns one resource's rates and baseline series, or false if it is unknown.
	Detail(typ, key string) (any, bool, error)
}

// Notes are what operators add to anomalies: an acknowledgement and comments.
type Notes interface {
	Get(id string) (AnomalyNotes, error)
	Ack(id, by, note string) error
	Comment(id, by, text string) error
}

// AnomalyNotes is an anomaly's acknowledgement and comments.
type AnomalyNotes struct {
	Ack      *Note  `json:"ack,omitempty"`
	Comments []Note `json:"comments,omitempty"`
}

// Note is one acknowledgement or comment.
type Note struct {
	By   string    `json:"by"`
	At   time.Time `json:"at"`
	Text string    `json:"text,omitempty"`
}

// Suppression silences the alerts of anomalies that match it until it expires; the
// anomalies are still detected, stored and shown.
type Suppression struct {
	ID       string    `json:"id"`
	Rule     string    `json:"rule,omitempty"`     // empty: any rule
	Resource string    `json:"resource,omitempty"` // resource key; empty: any
	Until    time.Time `json:"until"`
	Reason   string    `json:"reason"`
	By       string    `json:"by"`
	Created  time.Time `json:"created"`
}

// Suppressions keeps the suppressions.
type Suppressions interface {
	List() ([]Suppression, error)
	Add(s Suppression) (Suppression, error)
	Delete(id string) (bool, error)
}

// Config says where the API listens.
type Config struct {
	Addr  string `yaml:"addr"`
	Token string `yaml:"-"` // from the environment variable the configuration names
}

// Deps are the API's read side of the engine. Any of them may be nil: the endpoint then
// answers 503 with a JSON error.
type Deps struct {
	Anomalies Anomalies
	Resources Resources
	Rules     func() any
	Exporters func() any
	Notes     Notes
	Suppress  Suppressions
	UI        fs.FS // static files served at /
	Log       *slog.Logger
}

// Server is the HTTP server.
type Server struct {
	cfg  Config
	deps Deps
	ln   net.Listener
	srv  *http.Server
}

// New binds the API's address so that its port is known before Run.
func New(cfg Config, deps Deps) (*Server, error) {
	if deps.Log == nil {
		deps.Log = slog.Default()
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("api: %w", err)
	}
	s := &Server{cfg: cfg, deps: deps, ln: ln}
	s.srv = &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second}
	return s, nil
}

// Addr returns the bound address.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Run serves until ctx ends.
func (s *Server) Run(ctx context.Context) error {
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.srv.Shutdown(sctx)
	}()
	if err := s.srv.Serve(s.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("api: %w", err)
	}
	return nil
}

// Handler returns the routes.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/anomalies", s.auth(s.listAnomalies))
	mux.HandleFunc("GET /api/anomalies/{id}", s.auth(s.getAnomaly))
	mux.HandleFunc("GET /api/resources", s.auth(s.listResources))
	mux.HandleFunc("GET /api/resources/{type}/{key...}", s.auth(s.getResource))
	mux.HandleFunc("GET /api/rules", s.auth(s.listRules))
	mux.HandleFunc("POST /api/anomalies/{id}/ack", s.auth(s.ack))
	mux.HandleFunc("POST /api/anomalies/{id}/comments", s.auth(s.comment))
	mux.HandleFunc("GET /api/suppressions", s.auth(s.listSuppressions))
	mux.HandleFunc("POST /api/suppressions", s.auth(s.addSuppression))
	mux.HandleFunc("DELETE /api/suppressions/{id}", s.auth(s.deleteSuppression))
	mux.HandleFunc("GET /api/exporters", s.auth(s.listExporters))
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		metrics.WritePrometheus(w, true)
	})
	mux.HandleFunc("/api/", s.auth(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "no such endpoint: "+r.Method+" "+r.URL.Path)
	}))
	if s.deps.UI != nil {
		mux.Handle("/", http.FileServerFS(s.deps.UI))
	}
	return mux
}

// auth requires the bearer token when one is configured. The UI fetches with the same
// token (it asks for it once and keeps it in the browser's session storage).
func (s *Server) auth(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if s.cfg.Token != "" {
			got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
			if !ok || subtle.ConstantTimeCompare([]byte(got), []byte(s.cfg.Token)) != 1 {
				w.Header().Set("WWW-Authenticate", `Bearer realm="flowhound"`)
				writeError(w, http.StatusUnauthorized, "missing or wrong bearer token")
				return
			}
		}
		h(w, r)
	}
}

func (s *Server) listAnomalies(w http.ResponseWriter, r *http.Request) {
	if s.deps.Anomalies == nil {
		writeError(w, http.StatusServiceUnavailable, "anomalies are not available")
		return
	}
	q := r.URL.Query()
	status := q.Get("status")
	switch status {
	case "", detector.StatusPending, detector.StatusOngoing, detector.StatusEnded:
	default:
		writeError(w, http.StatusBadRequest, "status: want pending, ongoing or ended")
		return
	}
	var since time.Time
	if v := q.Get("since"); v != "" {
		t, err := parseSince(v)
		if err != nil {
			writeError(w, http.StatusBadRequest, "since: "+err.Error())
			return
		}
		since = t
	}
	list, err := s.deps.Anomalies.List(status, since)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	if list == nil {
		list = []detector.Anomaly{}
	}
	sort.SliceStable(list, func(i, j int) bool { return list[i].Start.After(list[j].Start) })
	writeJSON(w, map[string]any{"anomalies": list})
}

// parseSince takes RFC 3339, Unix seconds, or a duration back from now ("1h").
func parseSince(v string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return t, nil
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		return time.Unix(n, 0), nil
	}
	if d, err := time.ParseDuration(v); err == nil && d > 0 {
		return time.Now().Add(-d), nil
	}
	return time.Time{}, fmt.Errorf("%q: want RFC 3339 time, Unix seconds or a duration such as 1h", v)
}

func (s *Server) getAnomaly(w http.ResponseWriter, r *http.Request) {
	if s.deps.Anomalies == nil {
		writeError(w, http.StatusServiceUnavailable, "anomalies are not available")
		return
	}
	a, ok, err := s.deps.Anomalies.Get(r.PathValue("id"))
	switch {
	case err != nil:
		writeError(w, http.StatusInternalServerError, err.Error())
	case !ok:
		writeError(w, http.StatusNotFound, "no anomaly "+strconv.Quote(r.PathValue("id")))
	default:
		if r.URL.Query().Get("download") != "" {
			w.Header().Set("Content-Disposition", `attachment; filename="anomaly-`+a.ID+`.json"`)
		}
		var notes AnomalyNotes
		if s.deps.Notes != nil {
			if notes, err = s.deps.Notes.Get(a.ID); err != nil {
				writeError(w, http.StatusInternalServerError, err.Error())
				return
			}
		}
		writeJSON(w, struct {
			detector.Anomaly
			AnomalyNotes
		}{a, notes})
	}
}

var resourceTypes = map[string]bool{"": true, "host": true, "prefix": true, "interface": true, "port": true, "global": true}

func (s *Server) listResources(w http.ResponseWriter, r *http.Request) {
	if s.deps.Resources == nil {
		writeError(w, http.StatusServiceUnavailable, "resources are not available")
		return
	}
	q := r.URL.Query()
	typ := q.Get("type")
	if !resourceTypes[typ] {
		writeError(w, http.StatusBadRequest, "type: want host, prefix, interface, port or global")
		return
	}
	limit := 100
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 || n > 100000 {
			writeError(w, http.StatusBadRequest, "limit: want a number from 1 to 100000")
			return
		}
		limit = n
	}
	list, err := s.deps.Resources.Top(typ, limit)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	writeJSON(w, map[string]any{"resources": list})
}

func (s *Server) getResource(w http.ResponseWriter, r *http.Request) {
	if s.deps.Resources == nil {
		writeError(w, http.StatusServiceUnavailable, "resources are not available")
		return
	}
	typ := r.PathValue("type")
	key, err := url.PathUnescape(r.PathValue("key"))
	if err != nil || typ == "" || !resourceTypes[typ] {
		writeError(w, http.StatusBadRequest, "want /api/resources/{host|prefix|interface|port|global}/{url-escaped key}")
		return
	}
	d, ok, err := s.deps.Resources.Detail(typ, key)
	switch {
	case err != nil:
		writeError(w, http.StatusBadRequest, err.Error())
	case !ok:
		writeError(w, http.StatusNotFound, "no resource "+typ+" "+strconv.Quote(key))
	default:
		writeJSON(w, d)
	}
}

func (s *Server) listRules(w http.ResponseWriter, r *http.Request) {
	if s.deps.Rules == nil {
		writeError(w, http.StatusServiceUnavailable, "rules are not available")
		return
	}
	writeJSON(w, map[string]any{"rules": s.deps.Rules()})
}

func (s *Server) listExporters(w http.ResponseWriter, r *http.Request) {
	if s.deps.Exporters == nil {
		writeError(w, http.StatusServiceUnavailable, "exporters are not available")
		return
	}
	writeJSON(w, map[string]any{"exporters": s.deps.Exporters()})
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	if err := enc.Encode(v); err != nil {
		slog.Default().Warn("api: encode", "err", err)
	}
}

func writeError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(map[string]string{"error": msg})
}

// maxBody bounds request bodies: notes are short.
const maxBody = 64 << 10

func readBody(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		writeError(w, http.StatusBadRequest, "body: "+err.Error())
		return false
	}
	return true
}

// annotated checks that the anomaly exists and notes are available.
func (s *Server) annotated(w http.ResponseWriter, id string) bool {
	if s.deps.Notes == nil || s.deps.Anomalies == nil {
		writeError(w, http.StatusServiceUnavailable, "notes are not available")
		return false
	}
	if _, ok, err := s.deps.Anomalies.Get(id); err != nil || !ok {
		writeError(w, http.StatusNotFound, "no anomaly "+strconv.Quote(id))
		return false
	}
	return true
}

func (s *Server) ack(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	var body struct {
		By   string `json:"by"`
		Note string `json:"note"`
	}
	if !s.annotated(w, id) || !readBody(w, r, &body) {
		return
	}
	if body.By == "" {
		writeError(w, http.StatusBadRequest, "by: who acknowledges is required")
		return
	}
	if err := s.deps.Notes.Ack(id, body.By, body.Note); err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	n, _ := s.deps.Notes.Get(id)
	writeJSON(w, n)
}

func (s *Server) comment(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	var body struct {
		By   string `json:"by"`
		Text string `json:"text"`
	}
	if !s.annotated(w, id) || !readBody(w, r, &body) {
		return
	}
	if body.By == "" || body.Text == "" {
		writeError(w, http.StatusBadRequest, "by and text are required")
		return
	}
	if err := s.deps.Notes.Comment(id, body.By, body.Text); err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	n, _ := s.deps.Notes.Get(id)
	writeJSON(w, n)
}

func (s *Server) listSuppressions(w http.ResponseWriter, r *http.Request) {
	if s.deps.Suppress == nil {
		writeError(w, http.StatusServiceUnavailable, "suppressions are not available")
		return
	}
	list, err := s.deps.Suppress.List()
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	if list == nil {
		list = []Suppression{}
	}
	writeJSON(w, map[string]any{"suppressions": list})
}

func (s *Server) addSuppression(w http.ResponseWriter, r *http.Request) {
	if s.deps.Suppress == nil {
		writeError(w, http.StatusServiceUnavailable, "suppressions are not available")
		return
	}
	var body struct {
		Rule     string `json:"rule"`
		Resource string `json:"resource"`
		For      string `json:"for"` // a duration, e.g. "2h"
		Reason   string `json:"reason"`
		By       string `json:"by"`
	}
	if !readBody(w, r, &body) {
		return
	}
	d, err := time.ParseDuration(body.For)
	if err != nil || d <= 0 || d > 90*24*time.Hour {
		writeError(w, http.StatusBadRequest, "for: want a duration up to 90 days, e.g. 2h")
		return
	}
	if body.Reason == "" || body.By == "" {
		writeError(w, http.StatusBadRequest, "reason and by are required")
		return
	}
	now := time.Now().UTC()
	sup, err := s.deps.Suppress.Add(Suppression{Rule: body.Rule, Resource: body.Resource, Until: now.Add(d), Reason: body.Reason, By: body.By, Created: now})
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusCreated)
	json.NewEncoder(w).Encode(sup)
}

func (s *Server) deleteSuppression(w http.ResponseWriter, r *http.Request) {
	if s.deps.Suppress == nil {
		writeError(w, http.StatusServiceUnavailable, "suppressions are not available")
		return
	}
	ok, err := s.deps.Suppress.Delete(r.PathValue("id"))
	switch {
	case err != nil:
		writeError(w, http.StatusInternalServerError, err.Error())
	case !ok:
		writeError(w, http.StatusNotFound, "no suppression "+strconv.Quote(r.PathValue("id")))
	default:
		w.WriteHeader(http.StatusNoContent)
	}
}
