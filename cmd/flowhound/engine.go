package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"sort"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/flowhound/flowhound/alert"
	"github.com/flowhound/flowhound/api"
	"github.com/flowhound/flowhound/baseline"
	"github.com/flowhound/flowhound/config"
	"github.com/flowhound/flowhound/detector"
	"github.com/flowhound/flowhound/flow"
	"github.com/flowhound/flowhound/health"
	"github.com/flowhound/flowhound/ingest"
	"github.com/flowhound/flowhound/rules"
	"github.com/flowhound/flowhound/signatures"
	"github.com/flowhound/flowhound/store"
	"github.com/flowhound/flowhound/web"
)

// engine is the running product: listeners → detector → book/store/sinks, and the API.
// serve, demo and the end-to-end tests build the same one.
type engine struct {
	mu        sync.Mutex // guards rules across reloads
	cfg       config.Config
	log       *slog.Logger
	rules     *signatures.Set
	listeners []*ingest.Listener
	decoders  []*ingest.Decoder
	// decoderKeys name each decoder's templates in the store: its listen address.
	decoderKeys []string
	stats       *ingest.Stats
	det         *detector.Detector
	book        *anomalyBook
	store       *store.Store
	api         *api.Server
	alerts      *alert.Alerter
	baselines   *baseline.Baselines
	health      *health.Monitor
	notes       *notebook
	onEvent     func(detector.Event)

	// unsaved holds the anomalies whose latest state the store refused (a full disk):
	// they are written again when it takes writes, so that a restart still finds them.
	unsavedMu sync.Mutex
	unsaved   map[string]struct{}
}

// newEngine binds the listeners and the API (so their ports are known), opens the store
// when one is configured, and builds the detector. onEvent, if set, sees every event after
// the engine has recorded it.
func newEngine(cfg config.Config, log *slog.Logger, onEvent func(detector.Event)) (e *engine, err error) {
	e = &engine{cfg: cfg, log: log, book: newAnomalyBook(), onEvent: onEvent, unsaved: map[string]struct{}{}}
	defer func() {
		if err != nil {
			e.close()
		}
	}()
	if e.rules, err = compileRules(cfg.Rules); err != nil {
		return nil, err
	}
	if cfg.Store != "" {
		opts := store.DefaultOptions()
		opts.Logger = log
		if e.store, err = store.Open(cfg.Store, opts); err != nil {
			return nil, err
		}
		if err := e.loadAnomalies(); err != nil {
			return nil, err
		}
	}
	if e.notes, err = newNotebook(e.store); err != nil {
		return nil, err
	}
	// The outbox lives in the store; without one (demo) it is in memory.
	if e.alerts, err = alert.New(cfg.Alerts, alert.Deps{Store: e.store, Log: log}); err != nil {
		return nil, err
	}
	pool := flow.NewPool(4096)
	// The queue absorbs the detector's pauses (an evaluation, a collection) at full rate: a
	// socket buffer holds fewer records than its size suggests, each datagram costing the
	// kernel several KB. 256 batches of 4096 records is about 0.7 s at 1.5 M/s (a queue of
	// 64 lost 2.5 % there); it is resident only while the detector is behind.
	batches := make(chan *flow.Batch, 256)
	e.stats = ingest.NewStats()
	seen := map[string]bool{}
	for _, addr := range []string{cfg.Listen.NetFlow, cfg.Listen.IPFIX, cfg.Listen.SFlow} {
		if addr == "" || seen[addr] {
			continue
		}
		seen[addr] = true
		// Each socket gets its own decoder: decoders are single-goroutine, and an exporter
		// sends each protocol to one port, so its template state is not split. Any port
		// takes any format: the decoder tells them apart by their headers.
		dec := ingest.NewDecoder(decoderConfig(cfg))
		if err := e.loadTemplates(addr, dec); err != nil {
			return nil, err
		}
		l, err := ingest.ListenUDP(addr, dec, batches, pool, e.stats)
		if err != nil {
			return nil, err
		}
		e.listeners = append(e.listeners, l)
		e.decoders = append(e.decoders, dec)
		e.decoderKeys = append(e.decoderKeys, addr)
	}
	e.stats.Watch(e.exporters)
	if e.baselines, err = newBaselines(cfg, e.store, log); err != nil {
		return nil, err
	}
	if e.det, err = detector.New(cfg.Detector(), detector.Deps{Rules: e.rules, Input: batches, OnEvent: e.event, Baselines: e.baselines, Resume: e.ongoing()}); err != nil {
		return nil, err
	}
	names := map[netip.Addr]string{}
	for _, x := range cfg.Exporters {
		names[x.Address] = x.Name
	}
	if e.health, err = health.New(cfg.Health, health.Deps{Exporters: e.exporters, OnEvent: e.healthEvent, Names: names}); err != nil {
		return nil, err
	}
	if cfg.API != "" {
		token := ""
		if cfg.APITokenEnv != "" {
			token = os.Getenv(cfg.APITokenEnv)
		}
		e.api, err = api.New(api.Config{Addr: cfg.API, Token: token}, api.Deps{
			Anomalies: e.book,
			Resources: resources{e.baselines},
			Notes:     e.notes,
			Suppress:  e.notes,
			Rules:     func() any { return ruleList(e.currentRules()) },
			Exporters: func() any { return e.exporters() },
			UI:        web.FS(),
			Log:       log,
		})
		if err != nil {
			return nil, err
		}
	}
	return e, nil
}

// event records an anomaly change in the book and the store, then passes it on.
func (e *engine) event(ev detector.Event) {
	// A suppressed anomaly is detected, stored and shown, but its alerts stay back; one
	// suppressed at its raise stays so to its end, so that no end arrives without a start.
	if prev, ok, _ := e.book.Get(ev.Anomaly.ID); ok && prev.Suppressed != "" {
		ev.Anomaly.Suppressed = prev.Suppressed
	} else if ev.Type == "raised" {
		ev.Anomaly.Suppressed = e.notes.suppressed(&ev.Anomaly, time.Now())
	}
	e.book.put(ev.Anomaly)
	if e.store != nil {
		e.saveAnomaly(ev.Anomaly.ID, ev.Anomaly.JSON())
	}
	if ev.Anomaly.Suppressed == "" {
		if err := e.alerts.Notify(ev); err != nil {
			e.log.Error("alerts: queueing", "id", ev.Anomaly.ID, "err", err)
		}
	}
	if e.onEvent != nil {
		e.onEvent(ev)
	}
}

// healthEvent records an exporter's health anomaly like any other. The monitor runs in its
// own goroutine; the book, store and outbox are safe for that.
func (e *engine) healthEvent(ev detector.Event) { e.event(ev) }

const nsAnomalies = "anomaly"

// saveAnomaly writes an anomaly's state, or marks it for resaveAnomalies. Detection goes
// on in memory either way: the store has logged and counted a failure.
func (e *engine) saveAnomaly(id string, b []byte) bool {
	err := e.store.Put(nsAnomalies, []byte(id), b)
	if err != nil && !errors.Is(err, store.ErrWrite) {
		e.log.Error("store: saving anomaly", "id", id, "err", err)
	}
	e.unsavedMu.Lock()
	defer e.unsavedMu.Unlock()
	if err != nil {
		// The book bounds the ids worth keeping: one it has dropped cannot be resaved.
		if len(e.unsaved) < maxBook {
			e.unsaved[id] = struct{}{}
		}
		return false
	}
	delete(e.unsaved, id)
	return true
}

// resaveAnomalies writes the anomalies the store refused, from the book, and stops at
// the first failure: the store is still full and the next round tries again.
func (e *engine) resaveAnomalies() {
	e.unsavedMu.Lock()
	ids := make([]string, 0, len(e.unsaved))
	for id := range e.unsaved {
		ids = append(ids, id)
	}
	e.unsavedMu.Unlock()
	for _, id := range ids {
		a, ok, _ := e.book.Get(id)
		if !ok {
			e.unsavedMu.Lock()
			delete(e.unsaved, id)
			e.unsavedMu.Unlock()
			continue
		}
		if !e.saveAnomaly(id, a.JSON()) {
			return
		}
	}
}

func (e *engine) loadAnomalies() error {
	var all []detector.Anomaly
	err := e.store.Scan(nsAnomalies, nil, func(_, val []byte) error {
		var a detector.Anomaly
		if err := json.Unmarshal(val, &a); err != nil {
			return fmt.Errorf("store: anomaly record: %w", err)
		}
		all = append(all, a)
		return nil
	})
	if err != nil {
		return err
	}
	sortByStart(all)
	for _, a := range all {
		e.book.put(a)
	}
	return nil
}

const nsTemplates = "templates"

// loadTemplates restores a decoder's v9/IPFIX templates, so that the first data after a
// restart decodes without waiting for the exporter to resend them. A bad record is logged
// and overwritten by the next save: it must not keep the daemon down.
func (e *engine) loadTemplates(key string, dec *ingest.Decoder) error {
	if e.store == nil {
		return nil
	}
	b, err := e.store.Get(nsTemplates, []byte(key))
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := dec.LoadTemplates(b); err != nil {
		e.log.Warn("templates: restoring", "listener", key, "err", err)
	}
	return nil
}

// keepStore saves the decoders' templates when they change (and once more at the end),
// and writes again what the store refused.
func (e *engine) keepStore(ctx context.Context) error {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	unsaved := make([]bool, len(e.decoders)) // the last save failed: try again
	save := func(force bool) {
		for i, dec := range e.decoders {
			if !force && !unsaved[i] && !dec.TemplatesChanged() {
				continue
			}
			_, b := dec.SaveTemplates()
			err := e.store.Put(nsTemplates, []byte(e.decoderKeys[i]), b)
			unsaved[i] = err != nil
			if err != nil && !errors.Is(err, store.ErrWrite) {
				e.log.Error("templates: saving", "listener", e.decoderKeys[i], "err", err)
			}
		}
	}
	for n := 1; ; n++ {
		select {
		case <-ctx.Done():
			save(true)
			e.resaveAnomalies()
			return nil
		case <-t.C:
			e.resaveAnomalies()
			if n%10 == 0 {
				save(false)
			}
		}
	}
}

// ongoing lists the stored anomalies that the last run left ongoing.
func (e *engine) ongoing() []detector.Anomaly {
	list, _ := e.book.List(detector.StatusOngoing, time.Time{})
	return list
}

func (e *engine) exporters() []ingest.ExporterStats {
	var out []ingest.ExporterStats
	for _, d := range e.decoders {
		out = append(out, d.Exporters()...)
	}
	return out
}

// reload recompiles the rule files and swaps them in; a bad file keeps the old rules.
func (e *engine) reload() error {
	set, err := compileRules(e.cfg.Rules)
	if err != nil {
		return fmt.Errorf("rules not reloaded, the old ones stay: %w", err)
	}
	if err := e.det.Reload(set); err != nil {
		return fmt.Errorf("rules not reloaded, the old ones stay: %w", err)
	}
	e.mu.Lock()
	e.rules = set
	e.mu.Unlock()
	return nil
}

func (e *engine) currentRules() *signatures.Set {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.rules
}

// run runs every component until ctx ends or one fails.
func (e *engine) run(ctx context.Context) error {
	eg, ctx := errgroup.WithContext(ctx)
	for _, l := range e.listeners {
		eg.Go(func() error { return l.Run(ctx) })
	}
	eg.Go(func() error { return e.det.Run(ctx) })
	eg.Go(func() error { return e.alerts.Run(ctx) })
	eg.Go(func() error { return e.baselines.Run(ctx) })
	eg.Go(func() error { return e.health.Run(ctx) })
	if e.api != nil {
		eg.Go(func() error { return e.api.Run(ctx) })
	}
	if e.store != nil {
		eg.Go(func() error { return e.keepStore(ctx) })
	}
	err := eg.Wait()
	if errors.Is(err, context.Canceled) {
		err = nil
	}
	return err
}

func (e *engine) close() {
	if e.stats != nil {
		e.stats.Close()
	}
	if e.store != nil {
		if err := e.store.Close(); err != nil {
			e.log.Error("store: close", "err", err)
		}
	}
}

// compileRules loads the embedded default pack plus the files the configuration names. A
// user rule named like a default one replaces it, so operators tune the pack by redefining
// a rule rather than by editing the binary's copy.
func compileRules(paths []string) (*signatures.Set, error) {
	all := rules.Default()
	if len(paths) > 0 {
		extra, err := rules.Load(paths...)
		if err != nil {
			return nil, err
		}
		all = rules.Merge(all, extra)
	}
	return signatures.Compile(all)
}

func ruleList(s *signatures.Set) []*rules.Rule {
	out := make([]*rules.Rule, s.Len())
	for i := range out {
		out[i] = s.Rule(i)
	}
	return out
}

func decoderConfig(cfg config.Config) ingest.DecoderConfig {
	var dc ingest.DecoderConfig
	for _, e := range cfg.Exporters {
		if e.Sampling > 0 {
			if dc.Sampling == nil {
				dc.Sampling = map[netip.Addr]uint32{}
			}
			dc.Sampling[e.Address] = e.Sampling
		}
	}
	return dc
}

// anomalyPrinter writes anomalies as JSON lines on stdout and, when human is set, a
// one-line summary on stderr. With live set it prints raises too (demo, serve); otherwise
// only ends (replay prints each anomaly once, when it is complete).
type anomalyPrinter struct {
	mu     sync.Mutex
	out    io.Writer
	human  io.Writer
	live   bool
	raised int
}

func newAnomalyPrinter(out, human io.Writer, live bool) *anomalyPrinter {
	return &anomalyPrinter{out: out, human: human, live: live}
}

func (p *anomalyPrinter) event(ev detector.Event) {
	switch {
	case ev.Type == "ended", ev.Type == "raised" && p.live:
		p.print(ev.Type, ev.Anomaly)
	}
}

func (p *anomalyPrinter) print(what string, a detector.Anomaly) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if what == "raised" {
		p.raised++
	}
	p.out.Write(append(a.JSON(), '\n'))
	if p.human != nil {
		fmt.Fprintf(p.human, "%-7s %s\n", what, a.Summary())
	}
}

func (p *anomalyPrinter) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.raised
}

// newBaselines builds the baselines, restored from the store when there is one. Names give
// resources the configured network and exporter names in the API.
func newBaselines(cfg config.Config, st *store.Store, log *slog.Logger) (*baseline.Baselines, error) {
	names := map[string]string{}
	for _, n := range cfg.Networks {
		for _, p := range n.Prefixes {
			names[p.String()] = n.Name
		}
	}
	exporters := map[netip.Addr]detector.Exporter{}
	for _, e := range cfg.Exporters {
		exporters[e.Address] = e
	}
	deps := baseline.Deps{Names: func(k baseline.Key) string {
		switch k.Kind {
		case baseline.KindInterface:
			if e, ok := exporters[k.Addr]; ok {
				if ifc, ok := e.Interfaces[k.Index]; ok && ifc.Name != "" {
					return e.Name + " " + ifc.Name
				}
				return e.Name
			}
		case baseline.KindPrefix, baseline.KindHost:
			for _, n := range cfg.Networks {
				for _, p := range n.Prefixes {
					if p.Contains(k.Addr) {
						return n.Name
					}
				}
			}
		}
		return ""
	}}
	if st != nil {
		deps.Store = st
	}
	if log != nil {
		deps.Logger = slog.New(quietStoreErrors{log.Handler()})
	}
	return baseline.New(cfg.BaselineConfig(), deps)
}

// resources serves the baselines to the API.
type resources struct{ b *baseline.Baselines }

func (r resources) Top(typ string, limit int) (any, error) {
	if typ == "" {
		var all []baseline.Status
		for _, k := range []baseline.Kind{baseline.KindInterface, baseline.KindPrefix, baseline.KindHost, baseline.KindPort, baseline.KindGlobal} {
			all = append(all, r.b.Top(k, limit)...)
		}
		sort.SliceStable(all, func(i, j int) bool { return all[i].Expected.BPS > all[j].Expected.BPS })
		if len(all) > limit {
			all = all[:limit]
		}
		return all, nil
	}
	k, err := baseline.ParseKind(typ)
	if err != nil {
		return nil, err
	}
	return r.b.Top(k, limit), nil
}

func (r resources) Detail(typ, key string) (any, bool, error) {
	k, err := baseline.ParseKey(typ, key)
	if err != nil {
		return nil, false, err
	}
	d, ok := r.b.Detail(k)
	return d, ok, nil
}

// quietStoreErrors drops log records whose error is a store write failure: the store logs
// the first of each episode and counts the others, while a component that retries on a
// timer (baseline snapshots) would repeat it every time.
type quietStoreErrors struct{ slog.Handler }

func (h quietStoreErrors) Handle(ctx context.Context, r slog.Record) error {
	quiet := false
	r.Attrs(func(a slog.Attr) bool {
		if err, ok := a.Value.Any().(error); ok && errors.Is(err, store.ErrWrite) {
			quiet = true
			return false
		}
		return true
	})
	if quiet {
		return nil
	}
	return h.Handler.Handle(ctx, r)
}

func (h quietStoreErrors) WithAttrs(as []slog.Attr) slog.Handler {
	return quietStoreErrors{h.Handler.WithAttrs(as)}
}

func (h quietStoreErrors) WithGroup(name string) slog.Handler {
	return quietStoreErrors{h.Handler.WithGroup(name)}
}
