// Package alert delivers anomaly events to Slack, webhooks and notify scripts through a durable outbox with retries.
package alert

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/flowhound/flowhound/detector"
	"github.com/flowhound/flowhound/store"
)

// Store namespaces.
const (
	// nsEvents holds each queued event once: key 8-byte sequence, value storedEvent.
	nsEvents = "alertev"
	// nsOutbox holds one entry per (event, sink) still to deliver: key sequence + sink ID,
	// value storedState. The event is deleted with its last entry.
	nsOutbox = "outbox"
	// nsSlackTS maps an anomaly ID to the Slack message that shows it.
	nsSlackTS = "slackts"
	// nsAlerted marks anomalies whose raise was sent, so that after a restart an update
	// of an ongoing anomaly is not mistaken for one that just grew past min_importance.
	nsAlerted = "alerted"
)

// keepMarks is how long Slack message references and alerted marks of anomalies that
// never ended (the engine stopped meanwhile) are kept.
const keepMarks = 14 * 24 * time.Hour

// Event types.
const (
	Raised  = "raised"
	Updated = "updated"
	Ended   = "ended"
)

// ErrOutboxFull is returned by Notify when max_pending deliveries are already queued.
var ErrOutboxFull = errors.New("alert: outbox full, event dropped")

// Deps are the Alerter's collaborators.
type Deps struct {
	// Store keeps the outbox; nil keeps it in memory only (nothing survives a restart).
	Store *store.Store
	// Log gets delivery failures and script output; nil means slog.Default().
	Log *slog.Logger
	// Now is the clock for queue times and ages; nil means time.Now.
	Now func() time.Time
	// HTTPClient sends webhook and Slack requests; nil means a plain client (each request
	// is bounded by its sink's timeout).
	HTTPClient *http.Client
}

// Alerter queues anomaly events durably and delivers them to the configured sinks.
type Alerter struct {
	cfg     Config
	log     *slog.Logger
	now     func() time.Time
	st      *store.Store
	queues  []*queue
	byID    map[string]*queue
	slack   *queue
	minRank int

	mu       sync.Mutex
	seq      uint64
	pending  int
	notified map[string]time.Time // anomalies whose raise was queued, and when
	running  bool
	// unsaved are the queued events the store refused (a full disk), in sequence order:
	// they are delivered from memory and written when the store takes writes again.
	unsaved []*event
}

// event is one queued anomaly event, shared by the sinks it goes to.
type event struct {
	seq     uint64
	typ     string
	queued  time.Time
	raw     []byte // the anomaly's JSON, as sent
	anomaly detector.Anomaly
	refs    int  // outbox entries still pointing at it
	saved   bool // in the store, so delivery and retries update it there
}

// item is one outbox entry: an event still to deliver to one sink.
type item struct {
	ev       *event
	attempts int
	next     time.Time
	inflight bool
}

// queue is one sink's part of the outbox, in sequence order.
type queue struct {
	s           sink
	items       []*item
	pausedUntil time.Time
	fails       int // consecutive transient failures, for the sink-wide pause
	lastTry     time.Time
	wake        chan struct{}
	seen        map[string]struct{}
	m           *sinkMetrics
}

type storedEvent struct {
	Event   string          `json:"event"`
	Queued  time.Time       `json:"queued"`
	Anomaly json.RawMessage `json:"anomaly"`
}

type storedState struct {
	Attempts int       `json:"attempts,omitempty"`
	Next     time.Time `json:"next,omitzero"`
}

// New validates cfg, builds the sinks and reloads the outbox left by a previous run.
func New(cfg Config, deps Deps) (*Alerter, error) {
	cfg.Webhooks = slices.Clone(cfg.Webhooks)
	cfg.Exec = slices.Clone(cfg.Exec)
	if cfg.Slack != nil {
		s := *cfg.Slack
		cfg.Slack = &s
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	a := &Alerter{
		cfg:      cfg,
		log:      deps.Log,
		now:      deps.Now,
		st:       deps.Store,
		byID:     map[string]*queue{},
		minRank:  importanceRank[cfg.MinImportance],
		notified: map[string]time.Time{},
	}
	if a.log == nil {
		a.log = slog.Default()
	}
	a.log = a.log.With("component", "alert")
	if a.now == nil {
		a.now = time.Now
	}
	client := deps.HTTPClient
	if client == nil {
		client = &http.Client{}
	}
	if cfg.Slack != nil {
		a.slack = a.addSink(newSlackSink(*cfg.Slack, client, a.st, a.now, a.log))
	}
	for _, w := range cfg.Webhooks {
		a.addSink(newWebhookSink(w, client))
	}
	var secretEnvs []string
	if cfg.Slack != nil {
		secretEnvs = append(secretEnvs, cfg.Slack.TokenEnv)
	}
	for _, w := range cfg.Webhooks {
		if w.SecretEnv != "" {
			secretEnvs = append(secretEnvs, w.SecretEnv)
		}
	}
	for _, e := range cfg.Exec {
		a.addSink(newExecSink(e, secretEnvs, a.log))
	}
	if cfg.Log {
		logMetrics() // the series exists from the start, as for the other sinks
	}
	if a.st != nil {
		if err := a.load(); err != nil {
			return nil, err
		}
	}
	if a.seq < uint64(a.now().UnixNano()) {
		// Sequences keep growing across restarts even when the outbox was empty, so
		// "updated" delivery IDs built from them are not reused.
		a.seq = uint64(a.now().UnixNano())
	}
	pendingGauge().Add(float64(a.pending))
	return a, nil
}

func (a *Alerter) addSink(s sink) *queue {
	q := &queue{s: s, wake: make(chan struct{}, 1), seen: map[string]struct{}{}, m: newSinkMetrics(s.kind())}
	a.queues = append(a.queues, q)
	a.byID[s.id()] = q
	return q
}

// nsKey is a store key with its namespace.
type nsKey struct {
	ns  string
	key []byte
}

// load rebuilds the in-memory outbox from the store.
func (a *Alerter) load() error {
	events := map[uint64]*event{}
	var drop []nsKey
	err := a.st.Scan(nsEvents, nil, func(k, v []byte) error {
		var se storedEvent
		var an detector.Anomaly
		if len(k) != 8 || json.Unmarshal(v, &se) != nil || json.Unmarshal(se.Anomaly, &an) != nil {
			a.log.Warn("dropping an unreadable outbox event", "key", fmt.Sprintf("%x", k))
			drop = append(drop, nsKey{nsEvents, slices.Clone(k)})
			return nil
		}
		seq := binary.BigEndian.Uint64(k)
		events[seq] = &event{seq: seq, typ: se.Event, queued: se.Queued, raw: slices.Clone([]byte(se.Anomaly)), anomaly: an, saved: true}
		a.seq = max(a.seq, seq)
		return nil
	})
	if err != nil {
		return fmt.Errorf("alert: reading the outbox: %w", err)
	}
	now := a.now()
	removed := map[string]int{}
	err = a.st.Scan(nsOutbox, nil, func(k, v []byte) error {
		var ev *event
		if len(k) > 8 {
			ev = events[binary.BigEndian.Uint64(k)]
		}
		if ev == nil {
			drop = append(drop, nsKey{nsOutbox, slices.Clone(k)})
			return nil
		}
		sinkID := string(k[8:])
		q := a.byID[sinkID]
		if q == nil {
			// The sink was removed from the configuration: its entries have nowhere to go.
			removed[sinkID]++
			drop = append(drop, nsKey{nsOutbox, slices.Clone(k)})
			return nil
		}
		var ss storedState
		_ = json.Unmarshal(v, &ss) // a damaged state only loses the retry schedule
		if lim := now.Add(a.cfg.Retry.Max.D()); ss.Next.After(lim) {
			ss.Next = lim
		}
		q.items = append(q.items, &item{ev: ev, attempts: ss.Attempts, next: ss.Next})
		ev.refs++
		a.pending++
		return nil
	})
	if err != nil {
		return fmt.Errorf("alert: reading the outbox: %w", err)
	}
	for id, n := range removed {
		a.log.Warn("dropping queued alerts for a sink that is no longer configured", "sink", id, "count", n)
		failedCounter(kindOfID(id), "sink_removed").Add(n)
	}
	for seq, ev := range events {
		if ev.refs == 0 {
			drop = append(drop, nsKey{nsEvents, seqKey(seq)})
		}
	}
	err = a.st.Scan(nsAlerted, nil, func(k, v []byte) error {
		if len(v) == 8 {
			a.notified[string(k)] = time.Unix(0, int64(binary.BigEndian.Uint64(v)))
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("alert: reading %s: %w", nsAlerted, err)
	}
	// On a full disk the cleaning waits for the next start (or sweep): it must not keep
	// the engine down.
	if err := a.deleteKeys(drop); err != nil && !errors.Is(err, store.ErrWrite) {
		return fmt.Errorf("alert: cleaning the outbox: %w", err)
	}
	if a.pending > 0 {
		a.log.Info("outbox reloaded", "pending", a.pending)
	}
	if err := a.sweep(now); err != nil && !errors.Is(err, store.ErrWrite) {
		return err
	}
	return nil
}

// sweep forgets Slack message references and alerted marks older than keepMarks: those
// of anomalies that ended long ago, or never ended because the engine stopped.
func (a *Alerter) sweep(now time.Time) error {
	old := now.Add(-keepMarks)
	a.mu.Lock()
	for id, at := range a.notified {
		if at.Before(old) {
			delete(a.notified, id)
		}
	}
	a.mu.Unlock()
	if a.st == nil {
		if a.slack != nil {
			a.slack.s.(*slackSink).sweepMem(old)
		}
		return nil
	}
	var drop []nsKey
	for _, ns := range []string{nsSlackTS, nsAlerted} {
		err := a.st.Scan(ns, nil, func(k, v []byte) error {
			var at time.Time
			if ns == nsAlerted {
				if len(v) == 8 {
					at = time.Unix(0, int64(binary.BigEndian.Uint64(v)))
				}
			} else {
				var ref slackRef
				_ = json.Unmarshal(v, &ref)
				at = ref.At
			}
			if at.Before(old) {
				drop = append(drop, nsKey{ns, slices.Clone(k)})
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("alert: reading %s: %w", ns, err)
		}
	}
	return a.deleteKeys(drop)
}

func (a *Alerter) deleteKeys(keys []nsKey) error {
	if len(keys) == 0 {
		return nil
	}
	b := a.st.NewBatch()
	for _, k := range keys {
		if err := b.Delete(k.ns, k.key); err != nil {
			b.Cancel()
			return err
		}
	}
	return b.Flush()
}

func seqKey(seq uint64) []byte { return binary.BigEndian.AppendUint64(nil, seq) }

func outboxKey(seq uint64, sinkID string) []byte { return append(seqKey(seq), sinkID...) }

// deliveryID is the idempotency key a sink sees: the same for every attempt at the same
// (anomaly, event, sink), across restarts.
func (it *item) deliveryID(sinkID string) string {
	if it.ev.typ == Updated {
		return fmt.Sprintf("%s/updated-%d/%s", it.ev.anomaly.ID, it.ev.seq, sinkID)
	}
	return it.ev.anomaly.ID + "/" + it.ev.typ + "/" + sinkID
}

// Notify queues ev for every sink that wants it and returns once the queue entries are in
// the store, so a kill right after it loses nothing. When the store refuses the write (a
// full disk) the entries are queued in memory all the same, delivered from there, and
// written when the store takes writes again. It never waits on a sink. "updated"
// events go to Slack only, and an update still queued is replaced by a newer one.
func (a *Alerter) Notify(ev detector.Event) error {
	typ := ev.Type
	switch typ {
	case Raised, Updated, Ended:
	default:
		return fmt.Errorf("alert: unknown event type %q", typ)
	}
	an := ev.Anomaly
	if an.ID == "" {
		return errors.New("alert: anomaly without an id")
	}
	rank, ok := importanceRank[an.Importance]
	if !ok {
		rank = importanceRank["medium"]
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	_, seen := a.notified[an.ID]
	switch typ {
	case Raised:
		if rank < a.minRank {
			return nil
		}
	case Updated:
		if !seen {
			if rank < a.minRank {
				return nil
			}
			// It grew past min_importance: this is the first the sinks hear of it.
			typ = Raised
		}
	case Ended:
		// Importance never falls, so an anomaly at or above the minimum now was sent
		// when raised or when it grew; one below it was never sent.
		if !seen && rank < a.minRank {
			return nil
		}
	}
	if a.cfg.Log && typ != Updated {
		logEvent(a.log, typ, &an)
	}
	var targets []*queue
	for _, q := range a.queues {
		// Ban scripts act on attack resources: an exporter's health is not an address
		// to block, and a FastNetMon script would take it for one.
		if q.s.wants(typ) && !(an.Kind == "health" && q.s.kind() == "exec") {
			targets = append(targets, q)
		}
	}
	if len(targets) == 0 {
		return nil
	}
	raw, err := json.Marshal(&an)
	if err != nil {
		return fmt.Errorf("alert: %w", err)
	}
	if typ == Updated && a.coalesce(an, raw) {
		return nil
	}
	if typ == Ended && a.slack != nil {
		// The end rewrites the whole message; updates still queued would only delay it.
		a.dropUpdates(an.ID)
	}
	if a.pending+len(targets) > a.cfg.MaxPending {
		for _, q := range targets {
			failedCounter(q.s.kind(), "outbox_full").Inc()
		}
		a.log.Error("alert outbox full: event dropped", "event", typ, "anomaly", an.ID, "pending", a.pending, "max_pending", a.cfg.MaxPending)
		return ErrOutboxFull
	}
	a.seq++
	e := &event{seq: a.seq, typ: typ, queued: a.now(), raw: raw, anomaly: an, refs: len(targets)}
	if a.st != nil {
		if len(a.unsaved) > 0 {
			// Written in order: a later event must not reach the store before an earlier one.
			a.saveLate()
		}
		if len(a.unsaved) == 0 {
			err = a.persist(e, targets, seen)
			e.saved = err == nil
			if err != nil && !errors.Is(err, store.ErrWrite) {
				a.log.Error("alert outbox: not stored, delivering from memory", "err", err)
			}
		}
		if !e.saved {
			a.unsaved = append(a.unsaved, e)
			unsavedGauge().Add(float64(len(targets)))
		}
	}
	switch typ {
	case Raised:
		a.notified[an.ID] = e.queued
	case Ended:
		delete(a.notified, an.ID)
	}
	for _, q := range targets {
		q.items = append(q.items, &item{ev: e})
		q.poke()
	}
	a.pending += len(targets)
	pendingGauge().Add(float64(len(targets)))
	return nil
}

// encodeEvent is json.Marshal(storedEvent{...}) without encoding/json's second pass over
// the anomaly, which is already valid, compact JSON: that pass was a fifth of Notify's
// CPU time.
func encodeEvent(typ string, queued time.Time, raw []byte) []byte {
	b := make([]byte, 0, len(raw)+80)
	b = append(b, `{"event":`...)
	b = strconv.AppendQuote(b, typ)
	b = append(b, `,"queued":"`...)
	b = queued.UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","anomaly":`...)
	b = append(b, raw...)
	return append(b, '}')
}

// persist writes a new event, its outbox entries and the alerted mark in one batch.
func (a *Alerter) persist(e *event, targets []*queue, seen bool) error {
	val := encodeEvent(e.typ, e.queued, e.raw)
	var err error
	b := a.st.NewBatch()
	put := func(ns string, k, v []byte) {
		if err == nil {
			err = b.Put(ns, k, v)
		}
	}
	put(nsEvents, seqKey(e.seq), val)
	for _, q := range targets {
		put(nsOutbox, outboxKey(e.seq, q.s.id()), []byte("{}"))
	}
	id := []byte(e.anomaly.ID)
	switch {
	case e.typ == Raised && !seen:
		put(nsAlerted, id, binary.BigEndian.AppendUint64(nil, uint64(e.queued.UnixNano())))
	case e.typ == Ended && err == nil:
		err = b.Delete(nsAlerted, id)
	}
	if err == nil {
		err = b.Flush()
	} else {
		b.Cancel()
	}
	if err != nil {
		return fmt.Errorf("alert: queueing %s %s: %w", e.typ, e.anomaly.ID, err)
	}
	return nil
}

// saveLate writes the events the store refused, with the outbox entries still queued, in
// order, and stops at the first failure. Called with a.mu held.
func (a *Alerter) saveLate() {
	done := 0
	for _, e := range a.unsaved {
		var targets []*queue
		for _, q := range a.queues {
			if slices.ContainsFunc(q.items, func(it *item) bool { return it.ev == e }) {
				targets = append(targets, q)
			}
		}
		if len(targets) > 0 {
			// The raise's mark is written while the anomaly is still marked as alerted.
			_, marked := a.notified[e.anomaly.ID]
			if a.persist(e, targets, !(e.typ == Raised && marked)) != nil {
				break
			}
			e.saved = true
		}
		unsavedGauge().Add(-float64(len(targets)))
		done++
	}
	a.unsaved = slices.Delete(a.unsaved, 0, done)
}

// coalesce replaces the payload of a Slack update still waiting for the same anomaly.
// Called with a.mu held.
func (a *Alerter) coalesce(an detector.Anomaly, raw []byte) bool {
	if a.slack == nil {
		return false
	}
	for _, it := range a.slack.items {
		if it.ev.typ != Updated || it.inflight || it.ev.anomaly.ID != an.ID || it.ev.refs != 1 {
			continue
		}
		if it.ev.saved && a.st.Put(nsEvents, seqKey(it.ev.seq), encodeEvent(Updated, it.ev.queued, raw)) != nil {
			return false // queue it as a new event instead
		}
		it.ev.raw, it.ev.anomaly = raw, an
		return true
	}
	return false
}

// dropUpdates removes Slack updates still waiting for an anomaly. Called with a.mu held.
func (a *Alerter) dropUpdates(id string) {
	q := a.slack
	var gone []*item
	q.items = slices.DeleteFunc(q.items, func(it *item) bool {
		if it.ev.typ == Updated && !it.inflight && it.ev.anomaly.ID == id {
			gone = append(gone, it)
			return true
		}
		return false
	})
	for _, it := range gone {
		a.forget(q, it)
	}
}

// forget accounts for an item already taken out of q.items and deletes it from the store.
// Called with a.mu held; the store write is small.
func (a *Alerter) forget(q *queue, it *item) {
	it.ev.refs--
	a.pending--
	pendingGauge().Dec()
	if !it.ev.saved {
		if a.st != nil {
			unsavedGauge().Dec()
		}
		return
	}
	b := a.st.NewBatch()
	err := b.Delete(nsOutbox, outboxKey(it.ev.seq, q.s.id()))
	if err == nil && it.ev.refs == 0 {
		err = b.Delete(nsEvents, seqKey(it.ev.seq))
	}
	if err == nil {
		err = b.Flush()
	} else {
		b.Cancel()
	}
	if err != nil && !errors.Is(err, store.ErrWrite) {
		// The entry comes back at the next start and is delivered again: at least once.
		a.log.Error("removing a delivered alert from the outbox", "err", err)
	}
}

func (q *queue) poke() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// Pending returns the number of deliveries queued and not yet made or given up.
func (a *Alerter) Pending() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.pending
}

// Run delivers the outbox until ctx ends, one worker per sink. Deliveries cut short by
// the end stay queued for the next run.
func (a *Alerter) Run(ctx context.Context) error {
	a.mu.Lock()
	if a.running {
		a.mu.Unlock()
		return errors.New("alert: Run is already running")
	}
	a.running = true
	a.mu.Unlock()
	var wg sync.WaitGroup
	for _, q := range a.queues {
		wg.Go(func() { a.work(ctx, q) })
	}
	tick := time.NewTicker(time.Hour)
	defer tick.Stop()
	late := time.NewTicker(time.Second)
	defer late.Stop()
	for done := false; !done; {
		select {
		case <-ctx.Done():
			done = true
		case <-tick.C:
			if err := a.sweep(a.now()); err != nil && !errors.Is(err, store.ErrWrite) {
				a.log.Warn("sweeping old alert marks", "err", err)
			}
		case <-late.C:
			a.mu.Lock()
			if len(a.unsaved) > 0 {
				a.saveLate()
			}
			a.mu.Unlock()
		}
	}
	wg.Wait()
	a.mu.Lock()
	a.running = false
	a.mu.Unlock()
	return nil
}

func (a *Alerter) work(ctx context.Context, q *queue) {
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		a.mu.Lock()
		it, wait := a.pick(q, a.now())
		var d delivery
		if it != nil {
			it.inflight = true
			d = delivery{ID: it.deliveryID(q.s.id()), Event: it.ev.typ, Anomaly: it.ev.anomaly, Raw: it.ev.raw}
		}
		a.mu.Unlock()
		if it == nil {
			if wait >= 0 {
				timer.Reset(wait)
			}
			select {
			case <-ctx.Done():
				return
			case <-q.wake:
			case <-timer.C:
			}
			timer.Stop()
			continue
		}
		err := q.s.deliver(ctx, &d)
		if ctx.Err() != nil {
			// Shutting down: whatever happened, the entry stays for the next run.
			a.mu.Lock()
			it.inflight = false
			a.mu.Unlock()
			return
		}
		a.settle(q, it, &d, err)
	}
}

// pick returns the next item of q to deliver, or how long to wait for one (-1: until
// woken). An anomaly's events go out in order: an item waits while an earlier one for
// the same anomaly is queued. Called with a.mu held.
func (a *Alerter) pick(q *queue, now time.Time) (*item, time.Duration) {
	if len(q.items) == 0 {
		return nil, -1
	}
	if now.Before(q.pausedUntil) {
		return nil, q.pausedUntil.Sub(now)
	}
	if iv := q.s.minInterval(); iv > 0 && now.Before(q.lastTry.Add(iv)) {
		return nil, q.lastTry.Add(iv).Sub(now)
	}
	clear(q.seen)
	var earliest time.Time
	for _, it := range q.items {
		id := it.ev.anomaly.ID
		if _, blocked := q.seen[id]; blocked {
			continue
		}
		q.seen[id] = struct{}{}
		if !it.next.After(now) {
			return it, 0
		}
		if earliest.IsZero() || it.next.Before(earliest) {
			earliest = it.next
		}
	}
	if earliest.IsZero() {
		return nil, -1
	}
	return nil, earliest.Sub(now)
}

// settle records the outcome of one delivery attempt.
func (a *Alerter) settle(q *queue, it *item, d *delivery, err error) {
	now := a.now()
	var f *failure
	if err != nil && !errors.As(err, &f) {
		f = &failure{reason: "error", err: err}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	it.inflight = false
	q.lastTry = now
	if f != nil {
		it.attempts++
	}
	if f != nil && !f.permanent {
		switch limit := q.s.maxAttempts(); {
		case limit > 0 && it.attempts >= limit:
			f.permanent = true // the reason stays that of the last attempt
		case now.Sub(it.ev.queued) >= a.cfg.Retry.MaxAge.D():
			f.permanent, f.reason = true, "expired"
		}
	}
	if f != nil && !f.permanent {
		q.fails++
		wait := max(a.backoff(it.attempts), jittered(f.retryAfter))
		it.next = now.Add(wait)
		// The whole sink pauses too, growing with consecutive failures: a down endpoint
		// gets one attempt per pause, not one per queued event.
		q.pausedUntil = now.Add(max(a.backoff(q.fails), jittered(f.retryAfter)))
		q.m.retries.Inc()
		a.log.Warn("alert delivery failed, will retry", "sink", q.s.id(), "delivery", d.ID,
			"reason", f.reason, "err", f.err, "attempt", it.attempts, "retry_in", wait.Round(time.Millisecond))
		if it.ev.saved {
			val, _ := json.Marshal(storedState{Attempts: it.attempts, Next: it.next})
			if err := a.st.Put(nsOutbox, outboxKey(it.ev.seq, q.s.id()), val); err != nil && !errors.Is(err, store.ErrWrite) {
				a.log.Error("saving the retry schedule", "err", err)
			}
		}
		return
	}
	// Delivered or given up: the next event gets its own attempt without waiting, and a
	// given-up event has been logged and counted.
	q.fails = 0
	q.pausedUntil = time.Time{}
	if i := slices.Index(q.items, it); i >= 0 {
		q.items = slices.Delete(q.items, i, i+1)
		a.forget(q, it)
	}
	if f == nil {
		q.m.delivered.Inc()
		return
	}
	failedCounter(q.s.kind(), f.reason).Inc()
	a.log.Error("alert not delivered, giving up", "sink", q.s.id(), "delivery", d.ID, "reason", f.reason,
		"err", f.err, "attempts", it.attempts, "anomaly", d.Anomaly.Summary())
}

// backoff is the wait after the nth consecutive failure: Initial doubling up to Max,
// with half of it random so that retries of many events spread out.
func (a *Alerter) backoff(n int) time.Duration {
	d := a.cfg.Retry.Initial.D()
	for i := 1; i < n && d < a.cfg.Retry.Max.D(); i++ {
		d *= 2
	}
	d = min(d, a.cfg.Retry.Max.D())
	if d <= 0 {
		return 0
	}
	return d/2 + rand.N(d/2+1)
}

// jittered adds up to 10% to a server-requested wait, never less than asked.
func jittered(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return d + rand.N(d/10+1)
}

func logEvent(log *slog.Logger, typ string, an *detector.Anomaly) {
	lvl := slog.LevelWarn
	if typ == Ended {
		lvl = slog.LevelInfo
	}
	log.Log(context.Background(), lvl, "anomaly "+typ, "summary", an.Summary(), "id", an.ID)
	logMetrics().Inc()
}
