// Package detector keys flows into resources, scores their windows against the rules and
// runs each anomaly's life from raise to end, with traceback, characterization and filters.
package detector

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"math/bits"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/flowhound/flowhound/baseline"
	"github.com/flowhound/flowhound/flow"
	"github.com/flowhound/flowhound/rules"
	"github.com/flowhound/flowhound/signatures"
)

// Deps are what the detector needs from the rest of the engine.
type Deps struct {
	Rules *signatures.Set
	// Input carries batches from ingest; Run releases each batch after processing it.
	Input <-chan *flow.Batch
	// OnEvent is called for every raise, update and end, from the detector's goroutine.
	OnEvent func(Event)
	// Now is the clock for Run's evaluations; nil means time.Now.
	Now func() time.Time
	// Resume are the anomalies the last run left ongoing (from the store): the same
	// attack picks up its id again, the others end after their hold.
	Resume []Anomaly
	// Baselines, if set, learn from every flow, give profiled rules their expected rates
	// and are kept from learning attack traffic.
	Baselines *baseline.Baselines
}

// ruleInfo is what the detector derives once per rule.
type ruleInfo struct {
	rule      *rules.Rule
	threshold *signatures.Threshold
	by        groupBy
	direction string
	windowSec int
	hold      int64 // ns
	forDur    int64 // ns
	after     int   // compound: index of the rule that must have fired first, or -1
	within    int64 // ns
	minSample float64
	// limits per monitored network (index+1; 0 = no network): the config's thresholds over
	// the rule's own defaults.
	limits                                []signatures.Limits
	distinctSrc, distinctDst, distinctPrt bool
	expected                              bool // the threshold reads the baseline
	profiled                              bool
	// alwaysFull rules keep their detail from the start: a baseline or an earlier rule's
	// anomaly cannot be judged from one light second's counters.
	alwaysFull bool
	// floors per monitored network like limits, where the threshold has one: a light
	// window below promoteAt percent of every floor needs no Check.
	floors  []signatures.Floor
	floorOK []bool
	// eager rules hold at any matching flow, as seen from a light window: scans (judged on
	// distinct counts, which a light window reads as unbounded) and signatures. Their
	// windows promote at their first flow, so Config.MaxEagerWindows bounds how many are
	// full, and their first traceback is that flow's ingress rather than a ring read.
	eager bool
}

type windowKey struct {
	res  resource
	rule int
}

// Detector is the detection engine. Process and Evaluate are safe to call from different
// goroutines; Run does both from one.
type Detector struct {
	cfg   Config
	deps  Deps
	rules []ruleInfo
	nets  networks
	names map[netip.Addr]*Exporter
	roles bool // some interface is configured internal: dedupe transit sightings
	mu    sync.Mutex
	// table holds each resource's windows, one per rule that matched it; all lists every
	// window for the evaluation sweep, which a slice walks faster than a table.
	table   resTable
	all     []*window
	actives map[*window]*active
	recent  map[windowKey]int64 // last raise per rule and resource, for compound rules
	resume  map[string]Anomaly  // by rule|resource key
	// explained is, per monitored prefix, the traffic of host anomalies inside it.
	explained []Rates
	agg       signatures.Aggregates // scratch for evaluate
	prefixes  []*window             // prefix windows, evaluated after the hosts
	started   int64                 // first evaluation
	matched   []uint16
	ring      evidenceRing
	ingresses ingressTable
	hits      []hit
	// When the evidence ring's sampling was last set, and its count of flows then.
	paceAt    int64
	paceSeen  uint64
	orphans   []resource // resources left without windows in a chunk, removed after it
	directMax int        // directMax, or another bound in tests
	// eagerFull counts the full windows of eager rules.
	eagerFull int
	memo      []memo // per rule
	// flowHits' scratch: a flow's resource and group per kind of group_by.
	scratchRes   [numGroupBy]resource
	scratchGroup [numGroupBy]int
	sink         uint64 // keeps processChunk's reads from being optimised away
	lastEval     int64

	processed *metrics.Counter
	delay     *metrics.Histogram
}

// New builds a detector from the configuration and compiled rules.
func New(cfg Config, deps Deps) (*Detector, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if deps.Rules == nil {
		return nil, errors.New("detector: no rules")
	}
	if deps.OnEvent == nil {
		deps.OnEvent = func(Event) {}
	}
	if deps.Now == nil {
		deps.Now = time.Now
	}
	d := &Detector{
		cfg:       cfg,
		deps:      deps,
		nets:      newNetworks(cfg.Networks),
		names:     map[netip.Addr]*Exporter{},
		table:     newResTable(),
		actives:   map[*window]*active{},
		recent:    map[windowKey]int64{},
		ring:      newEvidenceRing(1 << 17),
		directMax: directMax,
		processed: metrics.GetOrCreateCounter("flowhound_flows_processed_total"),
		delay:     metrics.GetOrCreateHistogram("flowhound_detection_delay_seconds"),
	}
	for i := range cfg.Exporters {
		d.names[cfg.Exporters[i].Address] = &cfg.Exporters[i]
		for _, ifc := range cfg.Exporters[i].Interfaces {
			d.roles = d.roles || ifc.Role == "internal"
		}
	}
	var err error
	if d.rules, err = buildRules(cfg, deps.Rules); err != nil {
		return nil, err
	}
	d.resume = map[string]Anomaly{}
	for _, a := range deps.Resume {
		if a.Status != StatusEnded {
			d.resume[a.Rule+"|"+a.Resource.Key] = a
		}
	}
	return d, nil
}

// buildRules derives what the detector needs from each compiled rule.
func buildRules(cfg Config, set *signatures.Set) ([]ruleInfo, error) {
	if set.Len() > math.MaxUint16 {
		return nil, fmt.Errorf("detector: %d rules, at most %d", set.Len(), math.MaxUint16)
	}
	var infos []ruleInfo
	byName := map[string]int{}
	for i := 0; i < set.Len(); i++ {
		byName[set.Rule(i).Name] = i
	}
	for i := 0; i < set.Len(); i++ {
		r := set.Rule(i)
		by, err := parseGroupBy(r.GroupBy)
		if err != nil {
			return nil, fmt.Errorf("rule %s: %w", r.Name, err)
		}
		ri := ruleInfo{
			rule:      r,
			threshold: set.Threshold(i),
			by:        by,
			direction: r.Direction,
			windowSec: max(int(time.Duration(r.Window)/time.Second), 1),
			hold:      int64(time.Duration(r.Hold)),
			forDur:    int64(time.Duration(r.For)),
			after:     -1,
			within:    int64(time.Duration(r.Within)),
			minSample: float64(r.MinSamples),
		}
		if cfg.Hold > 0 {
			ri.hold = int64(cfg.Hold)
		}
		if r.After != "" {
			a, ok := byName[r.After]
			if !ok {
				return nil, fmt.Errorf("rule %s: after: no rule named %q", r.Name, r.After)
			}
			ri.after = a
		}
		needs := ri.threshold.Needs()
		ri.distinctSrc, ri.distinctDst, ri.distinctPrt = needs.DistinctSrc, needs.DistinctDst, needs.DistinctDstPort
		ri.expected, ri.profiled = needs.Expected, r.Kind == "profiled"
		ri.alwaysFull = ri.expected || ri.profiled || r.After != ""
		// A light window reads distinct counts as unbounded: a rule whose threshold holds
		// with no traffic at all (a scan, a signature) promotes at any flow.
		inf := math.Inf(1)
		light := signatures.Aggregates{DistinctSrc: inf, DistinctDst: inf, DistinctSrcPort: inf, DistinctDstPort: inf,
			Limits: ri.threshold.Defaults()}
		_, sev, _, _ := ri.threshold.Check(&light)
		ri.eager = sev >= promoteAt && !ri.alwaysFull
		// A host takes its group's per-host thresholds; a prefix resource (the group as a
		// whole) takes the group's totals.
		ri.limits = make([]signatures.Limits, len(cfg.Networks)+1)
		for g := range ri.limits {
			l := ri.threshold.Defaults()
			if g > 0 {
				m := cfg.Networks[g-1].Thresholds
				if by == byDstPrefix || by == bySrcPrefix {
					m = cfg.Networks[g-1].Total
				}
				over, _ := signatures.LimitsOf(m) // checked by Validate
				l = l.Overlay(over)
			}
			ri.limits[g] = l
			f, ok := ri.threshold.Floor(l)
			ri.floors = append(ri.floors, f)
			ri.floorOK = append(ri.floorOK, ok)
		}
		infos = append(infos, ri)
	}
	return infos, nil
}

// Reload swaps in a new rule set. Windows of rules that still exist (by name, with the same
// window length) keep their state and their anomalies; the anomalies of removed rules end.
// On error the old rules stay.
func (d *Detector) Reload(set *signatures.Set) error {
	infos, err := buildRules(d.cfg, set)
	if err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	byName := map[string]int{}
	for i := range infos {
		byName[infos[i].rule.Name] = i
	}
	remap := make([]int, len(d.rules))
	for i := range d.rules {
		j, ok := byName[d.rules[i].rule.Name]
		if !ok || infos[j].windowSec != d.rules[i].windowSec || infos[j].by != d.rules[i].by {
			j = -1
		}
		remap[i] = j
	}
	now := d.lastEval
	for i := 0; i < len(d.all); i++ {
		w := d.all[i]
		if j := remap[w.rule]; j >= 0 {
			w.rule = j
			if i := d.table.find(&w.res, d.table.hash(&w.res)); i >= 0 {
				d.table.state(i).setRule(w)
			}
			continue
		}
		if w.active() != nil {
			d.end(w, now)
		}
		d.drop(w)
		i--
	}
	recent := map[windowKey]int64{}
	for k, t := range d.recent {
		if j := remap[k.rule]; j >= 0 {
			recent[windowKey{res: k.res, rule: j}] = t
		}
	}
	d.recent = recent
	d.rules = infos
	d.deps.Rules = set
	d.eagerFull = 0
	for _, w := range d.all {
		if w.detail != nil && d.rules[w.rule].eager {
			d.eagerFull++
		}
	}
	return nil
}

// Run processes batches from deps.Input and evaluates on a ticker until ctx ends; the
// remaining ongoing anomalies stay ongoing (a restart picks them up from the store).
func (d *Detector) Run(ctx context.Context) error {
	t := time.NewTicker(d.cfg.Evaluate)
	defer t.Stop()
	// Baselines learn from the same batches on a goroutine of their own: on a machine with
	// cores to spare the two halves of the per-flow work run side by side. The batch goes
	// back to its pool when the baselines are done with it.
	var learn chan *flow.Batch
	if d.deps.Baselines != nil {
		learn = make(chan *flow.Batch, 16)
		done := make(chan struct{})
		defer func() { close(learn); <-done }()
		go func() {
			defer close(done)
			for b := range learn {
				start := time.Now()
				d.deps.Baselines.Update(b.Records)
				b.Release()
				stageBaseline.UpdateDuration(start)
			}
		}()
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case b, ok := <-d.deps.Input:
			if !ok {
				return nil
			}
			start := time.Now()
			d.process(b.Records)
			stageDetect.UpdateDuration(start)
			if learn != nil {
				learn <- b
			} else {
				b.Release()
			}
		case <-t.C:
			start := time.Now()
			d.Evaluate(d.deps.Now().UnixNano())
			stageEvaluate.UpdateDuration(start)
		}
	}
}

// Process runs a batch of flows through the rules and into their windows. It is the hot
// path: no allocation once the windows exist.
func (d *Detector) Process(recs []flow.Record) {
	if d.deps.Baselines != nil {
		d.deps.Baselines.Update(recs)
	}
	d.process(recs)
}

// process is Process without the baselines, which Run feeds on their own goroutine.
func (d *Detector) process(recs []flow.Record) {
	d.mu.Lock()
	defer d.mu.Unlock()
	// The memo of each rule's last window is good while the lock is held: windows are
	// dropped only by Evaluate and Reload.
	if len(d.memo) != len(d.rules) {
		d.memo = make([]memo, len(d.rules))
	}
	clear(d.memo)
	for len(recs) > 0 {
		n := min(len(recs), processChunk)
		d.processChunk(recs[:n])
		recs = recs[n:]
	}
}

// processChunk finds and counts a chunk's flows into their windows. While the detector's
// resources fit in a core's cache it does so flow by flow. Past that (a million hosts)
// nearly every step from a flow to its window (the table slot with the resource's state,
// then the window) is a cache miss, and a loop that goes from flow to window at once waits
// for each miss in turn; so the chunk goes through in passes instead, each taking one step for the
// whole chunk and reading what the next pass will need, which lets the processor fetch
// dozens of lines at the same time; the last pass counts the flows from cache. A chunk
// is small enough for what it touches to stay in the core's cache between the passes.
func (d *Detector) processChunk(recs []flow.Record) {
	noNets := d.nets.empty()
	if d.table.used < d.directMax {
		d.processDirect(recs, noNets)
		return
	}
	t := &d.table
	c := counting{last: -1}
	hits := d.hits[:0]
	var sink uint64
	// Pass 1: rules, direction and resource of each matched flow.
	for i := range recs {
		hits = d.flowHits(recs, int32(i), hits, noNets)
	}
	// The reads that fetch lines for the next pass run in loops of their own: a tight loop
	// of independent loads keeps many misses in flight, where loads spread through heavier
	// code wait for the processor's reorder window to reach them.
	for i := range hits {
		if hits[i].w == nil {
			sink += uint64(t.touch(hits[i].hash))
		}
	}
	// Pass 2: find (or add) each resource's slot, and in it (or make) the window.
	t.reserve(len(hits))
	for i := range hits {
		d.findState(hits, i)
		d.findWindow(&hits[i])
	}
	for i := range hits {
		if w := hits[i].w; w != nil {
			sink += uint64(w.cur.sec)
		}
	}
	d.sink = sink
	// Pass 3: count each flow into its windows.
	for i := range hits {
		d.count(recs, hits, i, &c)
	}
	clear(hits) // hold no windows between batches
	for i := range d.orphans {
		if j := t.find(&d.orphans[i], t.hash(&d.orphans[i])); j >= 0 && t.state(j).n == 0 {
			t.remove(&d.orphans[i])
		}
	}
	d.orphans = d.orphans[:0]
	d.hits = hits[:0]
	d.processed.Add(len(recs))
}

// directMax is how many resources the detector counts flow by flow; past it, in passes.
// Measured with BenchmarkPipeline and the generator's normal traffic: passes cost about a
// fifth more while everything is in cache and save a third at 100,000 hosts.
const directMax = 4096

// flowHits appends recs[i]'s hits: the rules it matched, their direction and resource.
func (d *Detector) flowHits(recs []flow.Record, i int32, hits []hit, noNets bool) []hit {
	r := &recs[i]
	d.matched = d.deps.Rules.Match(r, d.matched[:0])
	if len(d.matched) == 0 {
		return hits
	}
	srcNet, dstNet := -1, -1
	if !noNets {
		srcNet, dstNet = d.nets.lookup(r.SrcAddr), d.nets.lookup(r.DstAddr)
	}
	// Traffic from outside that a router reports entering by an internal interface was
	// already counted where it came in at the edge: it joins the traceback, not the rates.
	transit := d.roles && srcNet < 0 && d.internalIf(r.Exporter, r.InIf)
	first := len(hits)
	// A flow's rules mostly share a few resources (its host, prefix, interface): each kind
	// is keyed once per flow, in scratch space that needs no clearing.
	var known uint8
	ress, groups := &d.scratchRes, &d.scratchGroup
	for _, ri := range d.matched {
		info := &d.rules[ri]
		if !noNets && !directionOK(info.direction, srcNet, dstNet) {
			continue
		}
		if known&(1<<info.by) == 0 {
			groups[info.by] = d.resourceOf(info.by, r, srcNet, dstNet, &ress[info.by])
			known |= 1 << info.by
		}
		hits = append(hits, hit{})
		h := &hits[len(hits)-1]
		h.res.set(&ress[info.by])
		h.rec, h.rule, h.group, h.transit = i, ri, int32(groups[info.by]), transit
		prev := h
		if len(hits)-1 > first {
			prev = &hits[len(hits)-2]
			h.same = prev.res.eq(&h.res)
		}
		switch m := &d.memo[ri]; {
		case m.w != nil && m.res.eq(&h.res):
			// A prefix, interface or port that most flows go to: no lookup at all.
			h.w, h.state = m.w, -1
		case h.same && prev.w == nil:
			h.hash = prev.hash
		default:
			h.hash = d.table.hash(&h.res)
		}
	}
	return hits
}

// processDirect is processChunk flow by flow, for a detector whose resources fit in the
// core's cache: the same steps as flowHits, findState, findWindow and count, without the
// hit records between them, which cost more than they save when nothing misses.
func (d *Detector) processDirect(recs []flow.Record, noNets bool) {
	t := &d.table
	ress, groups := &d.scratchRes, &d.scratchGroup
	for i := range recs {
		r := &recs[i]
		d.matched = d.deps.Rules.Match(r, d.matched[:0])
		if len(d.matched) == 0 {
			continue
		}
		srcNet, dstNet := -1, -1
		if !noNets {
			srcNet, dstNet = d.nets.lookup(r.SrcAddr), d.nets.lookup(r.DstAddr)
		}
		transit := d.roles && srcNet < 0 && d.internalIf(r.Exporter, r.InIf)
		var known uint8
		state, stateRes := -1, (*resource)(nil)
		recID, recorded, sampled := uint64(0), false, false
		var c share
		for _, ri := range d.matched {
			info := &d.rules[ri]
			if !noNets && !directionOK(info.direction, srcNet, dstNet) {
				continue
			}
			if known&(1<<info.by) == 0 {
				groups[info.by] = d.resourceOf(info.by, r, srcNet, dstNet, &ress[info.by])
				known |= 1 << info.by
			}
			res := &ress[info.by]
			w := d.memo[ri].w
			if w == nil || !d.memo[ri].res.eq(res) {
				if state < 0 || !stateRes.eq(res) {
					state, stateRes = t.get(res, t.hash(res)), res
				}
				st := t.state(state)
				if w = st.window(int(ri)); w == nil {
					if len(d.all) >= d.cfg.MaxWindows {
						windowsDropped.Inc()
						if st.n == 0 {
							t.remove(res)
							state = -1
						}
						continue
					}
					w = d.newWindow(st, *res, int(ri), groups[info.by])
				}
				d.memo[ri].res.set(res)
				d.memo[ri].w = w
			}
			if !recorded {
				var x uint64
				recorded = true
				if sampled, x = d.ring.sample(); sampled {
					recID = d.ring.record(r)
				}
				c.set(r, float64(r.Scale()), d.ingresses.id(r.Exporter, r.InIf), bits.RotateLeft64(x, 32))
			}
			if sampled {
				d.ring.push(w, recID, transit)
			}
			if transit {
				// A transit sighting counts for the traceback only, sampled alike.
				if w.detail != nil {
					w.addIngress(r, &c)
				}
				continue
			}
			w.add(r, &c)
		}
	}
	d.processed.Add(len(recs))
}

// findState finds (or adds) the table slot, and so the resource state, of hits[i].
func (d *Detector) findState(hits []hit, i int) {
	h := &hits[i]
	switch {
	case h.w != nil:
	case h.same && hits[i-1].state >= 0:
		h.state = hits[i-1].state
	default:
		h.state = int32(d.table.get(&h.res, h.hash))
	}
}

// findWindow finds (or makes) the window of a hit; it stays nil when windows run out.
func (d *Detector) findWindow(h *hit) {
	if h.w != nil {
		return
	}
	st := d.table.state(int(h.state))
	w := st.window(int(h.rule))
	if w == nil {
		if len(d.all) >= d.cfg.MaxWindows {
			windowsDropped.Inc()
			return
		}
		w = d.newWindow(st, h.res, int(h.rule), int(h.group))
	}
	h.w = w
	d.memo[h.rule].res.set(&h.res)
	d.memo[h.rule].w = w
}

// counting is what count keeps from one hit to the next of the same flow.
type counting struct {
	last    int32 // the flow
	sampled bool  // it went into the evidence ring, as recID
	recID   uint64
	share   share
}

// count puts the flow of hits[i] into its window.
func (d *Detector) count(recs []flow.Record, hits []hit, i int, c *counting) {
	h := &hits[i]
	w := h.w
	if w == nil {
		// Out of windows: a resource left with none is forgotten again.
		// Removal shifts slots that later hits of the chunk point at: after the chunk.
		if st := d.table.state(int(h.state)); st.n == 0 && (i == 0 || hits[i-1].state != h.state || hits[i-1].w != nil) {
			d.orphans = append(d.orphans, h.res)
		}
		return
	}
	r := &recs[h.rec]
	if h.rec != c.last {
		c.last = h.rec
		var x uint64
		if c.sampled, x = d.ring.sample(); c.sampled {
			c.recID = d.ring.record(r)
		}
		// The ring's draw, turned so that the windows' sampling does not keep the same flows.
		c.share.set(r, float64(r.Scale()), d.ingresses.id(r.Exporter, r.InIf), bits.RotateLeft64(x, 32))
	}
	if c.sampled {
		d.ring.push(w, c.recID, h.transit)
	}
	if h.transit {
		// A transit sighting counts for the traceback only, sampled alike.
		if w.detail != nil {
			w.addIngress(r, &c.share)
		}
		return
	}
	w.add(r, &c.share)
}

// processChunk bounds a chunk's windows to what stays in a core's cache between passes.
const processChunk = 256

// memo is a rule's last window, for the resources that most flows share.
type memo struct {
	res resource
	w   *window
}

// hit is a flow's way into one window, found step by step by processChunk's passes.
type hit struct {
	res     resource
	hash    uint64
	w       *window
	rec     int32
	state   int32 // table slot while the chunk runs; -1 for a window from the memo
	group   int32
	rule    uint16
	transit bool
	same    bool // the same resource as the hit before, of the same flow
}

func (d *Detector) internalIf(exp netip.Addr, inIf uint32) bool {
	if e := d.names[exp]; e != nil {
		return e.Interfaces[inIf].Role == "internal"
	}
	return false
}

// resState is one resource's windows, by rule, in its slot of the resource table (one
// cache line with the key): a flow finds the window of each rule it matched without
// touching any other window, which with a million hosts is a cache miss saved per window
// passed over. Past resInline windows (a host hit by many rules) the rest chain into
// overflow nodes.
type resState struct {
	rules [resInline]uint16
	n     uint8
	used  bool // the slot holds a resource
	wins  [resInline]*window
	more  *resState
}

const resInline = 3

func (st *resState) window(rule int) *window {
	for ; st != nil; st = st.more {
		for i := range st.n {
			if int(st.rules[i]) == rule {
				return st.wins[i]
			}
		}
	}
	return nil
}

func (st *resState) add(w *window) {
	for st.n == resInline {
		if st.more == nil {
			st.more = &resState{}
		}
		st = st.more
	}
	st.rules[st.n], st.wins[st.n] = uint16(w.rule), w
	st.n++
}

// remove takes w out, moving the last window into its place; it reports whether the
// resource has no windows left.
func (st *resState) remove(w *window) bool {
	var at *resState
	idx := 0
	tail, prev := st, (*resState)(nil)
	for n := st; n != nil; n = n.more {
		for i := range n.n {
			if n.wins[i] == w {
				at, idx = n, int(i)
			}
		}
		if n.more != nil && n.more.n > 0 {
			prev, tail = n, n.more
		}
	}
	if at == nil {
		return st.n == 0
	}
	last := tail.n - 1
	at.rules[idx], at.wins[idx] = tail.rules[last], tail.wins[last]
	tail.rules[last], tail.wins[last] = 0, nil
	tail.n--
	if tail.n == 0 && prev != nil {
		prev.more = nil
	}
	return st.n == 0
}

// setRule renumbers w after a reload.
func (st *resState) setRule(w *window) {
	for n := st; n != nil; n = n.more {
		for i := range n.n {
			if n.wins[i] == w {
				n.rules[i] = uint16(w.rule)
			}
		}
	}
}

var (
	windowsDropped = metrics.NewCounter(`flowhound_windows_dropped_total`)
	// promotionsRefused counts windows of eager rules kept light by MaxEagerWindows.
	promotionsRefused = metrics.NewCounter(`flowhound_windows_promotions_refused_total`)
	// Per-stage timings: a batch through rules, windows and baselines; one evaluation pass.
	stageDetect   = metrics.NewHistogram(`flowhound_stage_seconds{stage="detect"}`)
	stageEvaluate = metrics.NewHistogram(`flowhound_stage_seconds{stage="evaluate"}`)
	stageBaseline = metrics.NewHistogram(`flowhound_stage_seconds{stage="baseline"}`)
)

func directionOK(dir string, srcNet, dstNet int) bool {
	switch dir {
	case "", "incoming":
		return dstNet >= 0
	case "outgoing":
		return srcNet >= 0
	case "internal":
		return srcNet >= 0 && dstNet >= 0
	}
	return true // any
}

// resourceOf writes the resource a rule grouped by `by` keys r into, and returns its
// monitored network group (-1 if none).
func (d *Detector) resourceOf(by groupBy, r *flow.Record, srcNet, dstNet int, out *resource) int {
	switch by {
	case bySrcAddr:
		setResource(out, resHost, r.SrcAddr, 0, 0)
		return d.groupOf(srcNet)
	case byDstPrefix, bySrcPrefix:
		a, n := r.DstAddr, dstNet
		if by == bySrcPrefix {
			a, n = r.SrcAddr, srcNet
		}
		if n >= 0 {
			out.set(&d.nets.res[n])
			return d.groupOf(n)
		}
		bitsN := 24
		if a.Is6() {
			bitsN = 64
		}
		p, _ := a.Prefix(bitsN)
		setResource(out, resPrefix, p.Addr(), 0, uint8(bitsN))
		return -1
	case byInIf:
		setResource(out, resInterface, r.Exporter, r.InIf, 0)
		return -1
	case byDstPort:
		setResource(out, resPort, netip.Addr{}, uint32(r.Proto)<<16|uint32(r.DstPort), 0)
		return -1
	case byGlobal:
		setResource(out, resGlobal, netip.Addr{}, 0, 0)
		return -1
	}
	setResource(out, resHost, r.DstAddr, 0, 0)
	return d.groupOf(dstNet)
}

func (d *Detector) groupOf(prefixIndex int) int {
	if prefixIndex < 0 {
		return -1
	}
	return d.nets.group[prefixIndex]
}

func (d *Detector) newWindow(st *resState, res resource, rule, group int) *window {
	info := &d.rules[rule]
	w := &window{res: res, rule: rule, group: group, pos: len(d.all)}
	if info.alwaysFull {
		w.promote(info.windowSec, info.distinctSrc, info.distinctDst, info.distinctPrt, ingressKey{}, 0)
	}
	st.add(w)
	d.all = append(d.all, w)
	return w
}

// drop forgets an idle window.
func (d *Detector) drop(w *window) {
	if w.detail != nil && d.rules[w.rule].eager {
		d.eagerFull--
	}
	last := d.all[len(d.all)-1]
	d.all[w.pos] = last
	last.pos = w.pos
	d.all = d.all[:len(d.all)-1]
	if i := d.table.find(&w.res, d.table.hash(&w.res)); i >= 0 && d.table.state(i).remove(w) {
		d.table.remove(&w.res)
	}
}

// Evaluate scores every window at time now (engine clock, Unix ns) and moves anomalies
// through their lifecycle. Serve calls it every second on the wall clock; replay in flow time.
func (d *Detector) Evaluate(now int64) {
	if d.deps.Baselines != nil {
		d.deps.Baselines.Advance(now)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.lastEval = now
	if d.started == 0 {
		d.started = now
	}
	// Over a second at least: evaluations can come in quick pairs (replay catching up).
	if dt := now - d.paceAt; dt >= int64(time.Second) || dt < 0 {
		if d.paceAt > 0 && dt > 0 {
			d.ring.pace(float64(d.ring.seen-d.paceSeen) * 1e9 / float64(dt))
		}
		d.paceAt, d.paceSeen = now, d.ring.seen
	}
	sec := now / 1e9
	// Hosts go first: their anomalies explain part of their prefix's traffic, and a prefix
	// is only carpet-bombed by what its host anomalies do not already account for.
	// One sweep over all windows evaluates the rest and sets the prefixes aside; the
	// explained rates add up in the sweep's order, which keeps replay repeatable.
	d.resetExplained()
	d.prefixes = d.prefixes[:0]
	for i := 0; i < len(d.all); i++ {
		w := d.all[i]
		if w.res.typ() == resPrefix {
			d.prefixes = append(d.prefixes, w)
			continue
		}
		if d.evaluate(w, now, sec) {
			i-- // the window was dropped and the last one moved into its place
			continue
		}
		d.explain(w)
	}
	for _, w := range d.prefixes {
		d.evaluate(w, now, sec)
	}
	clear(d.prefixes) // hold no windows between evaluations
	if len(d.resume) > 0 {
		d.endStale(now)
	}
	for k, t := range d.recent {
		if now-t > maxWithin {
			delete(d.recent, k)
		}
	}
}

// evaluate scores one window and moves its anomaly along; it reports whether the window
// was dropped as idle.
func (d *Detector) evaluate(w *window, now, sec int64) bool {
	info := &d.rules[w.rule]
	if w.active() == nil && w.idle(sec, int64(info.windowSec)) {
		d.drop(w)
		return true
	}
	if w.detail == nil && !d.promote(w, info, now) {
		return false
	}
	bps, pps, fps, samples := w.totals(now)
	w.sampleIngress(int(min(max(fps/ingressSamples, 1), maxIngressEvery)))
	bps, pps, fps = d.unexplained(w, bps, pps, fps)
	// The aggregates live in the detector: passed by pointer to the threshold's closures,
	// a local would escape and cost an allocation per window per evaluation.
	agg := &d.agg
	*agg = signatures.Aggregates{BPS: bps, PPS: pps, FPS: fps, Samples: samples,
		Limits: info.limits[w.group+1]}
	// Distinct sketches turn over every half window; the union of the current and the
	// previous half covers between a half and a whole window.
	epoch := sec / max(int64(len(w.slots))/2, 1)
	if w.srcs != nil {
		w.srcs.roll(epoch)
		agg.DistinctSrc = w.srcs.estimate()
	}
	if w.dsts != nil {
		w.dsts.roll(epoch)
		agg.DistinctDst = w.dsts.estimate()
	}
	if w.dports != nil {
		w.dports.roll(epoch)
		agg.DistinctDstPort = w.dports.estimate()
	}
	learned := true
	if info.expected || info.profiled {
		learned = d.expect(w, info, now, agg)
	}
	fired, sev, metric, limit := info.threshold.Check(agg)
	if info.profiled {
		fired = fired && learned
		sev, limit = profiledSeverity(metric, agg)
	}
	if fired && samples < info.minSample {
		// Too few sampled packets to trust a rate scaled up from them.
		fired = false
	}
	if fired && info.after >= 0 {
		last, ok := d.recent[windowKey{res: w.res, rule: info.after}]
		fired = ok && now-last <= info.within
	}
	switch {
	case fired && w.anomaly == nil:
		if w.pendingSince == 0 {
			w.pendingSince = now
		}
		w.lastFired = now
		if now-w.pendingSince >= info.forDur {
			d.raise(w, info, now, sev, metric, limit, *agg)
		}
	case fired:
		w.lastFired = now
		d.update(w.anomaly, w, info, now, sev, metric, limit, *agg)
	default:
		w.pendingSince = 0
		if a := w.anomaly; a != nil {
			if now-w.lastFired >= info.hold {
				d.end(w, now)
			} else {
				d.update(a, w, info, now, sev, metric, limit, *agg)
			}
		}
		if sev < 10 {
			w.episodeStart = 0
		}
	}
	w.decay()
	if w.anomaly == nil {
		switch {
		case sev >= promoteAt || info.alwaysFull:
			w.quietSince = 0
		case w.quietSince == 0:
			w.quietSince = now
		case now-w.quietSince > int64(info.windowSec)*1e9:
			w.demote()
			if info.eager {
				d.eagerFull--
			}
		}
	}
	return false
}

// promote decides whether a light window deserves its detail: its current second, net of
// explained traffic for prefixes, against the rule's threshold.
func (d *Detector) promote(w *window, info *ruleInfo, now int64) bool {
	if w.cur.sec < now/1e9-1 {
		// Nothing this second or the last: the common case for a million quiet hosts.
		w.episodeStart = 0
		return false
	}
	bps, pps, fps, samples := w.lightRates(now)
	bps, pps, fps = d.unexplained(w, bps, pps, fps)
	agg := &d.agg
	if g := w.group + 1; info.floorOK[g] {
		agg.BPS, agg.PPS, agg.FPS, agg.Samples = bps, pps, fps, samples
		if info.floors[g].Below(agg, promoteAt) {
			w.episodeStart = 0
			return false
		}
	}
	// A light window keeps no sketches: distinct counts read as unbounded, so that only the
	// rates can hold a window back (a scan rule, all distinct counts, promotes at once).
	inf := math.Inf(1)
	*agg = signatures.Aggregates{BPS: bps, PPS: pps, FPS: fps, Samples: samples, Limits: info.limits[w.group+1],
		DistinctSrc: inf, DistinctDst: inf, DistinctSrcPort: inf, DistinctDstPort: inf}
	_, sev, _, _ := info.threshold.Check(agg)
	if sev < promoteAt {
		if sev < 10 {
			w.episodeStart = 0
		}
		return false
	}
	if info.eager {
		if d.eagerFull >= d.cfg.MaxEagerWindows {
			promotionsRefused.Inc()
			return false
		}
		d.eagerFull++
	}
	seed := w.curFirstNs()
	w.promote(info.windowSec, info.distinctSrc, info.distinctDst, info.distinctPrt, d.ingresses.key(w.lastIngress), w.lastIngress)
	// The traceback starts from the flows of the promoting second that are still in the
	// evidence ring, rather than from the one ingress a light window remembers. Windows of
	// eager rules promote at their first flow, so the ingress they remember is the
	// traceback: reading the whole ring for each of them would stall the detector when a
	// sweep of a network promotes thousands at once. A rate rule's window needs real traffic
	// to promote, and its first traceback the ring.
	if !info.eager {
		saved := w.ingress
		w.ingress = ingressCounts{}
		if !d.ring.ingress(w, seed, &d.ingresses) {
			w.ingress = saved
		}
	}
	return true
}

// resetExplained clears, per monitored prefix, the traffic its host anomalies explain.
func (d *Detector) resetExplained() {
	if cap(d.explained) < len(d.nets.prefixes) {
		d.explained = make([]Rates, len(d.nets.prefixes))
	}
	d.explained = d.explained[:len(d.nets.prefixes)]
	clear(d.explained)
}

// unexplained takes from a prefix window's rates what its host anomalies account for.
func (d *Detector) unexplained(w *window, bps, pps, fps float64) (float64, float64, float64) {
	if w.res.typ() == resPrefix {
		if i := d.nets.lookup(w.res.addr()); i >= 0 && i < len(d.explained) {
			ex := d.explained[i]
			return max(bps-ex.BPS, 0), max(pps-ex.PPS, 0), max(fps-ex.FPS, 0)
		}
	}
	return bps, pps, fps
}

// explain adds a host anomaly's observed rates to its prefix's explained traffic.
func (d *Detector) explain(w *window) {
	if w.active() == nil || w.res.typ() != resHost || d.rules[w.rule].by != byDstAddr {
		return
	}
	if i := d.nets.lookup(w.res.addr()); i >= 0 {
		o := w.anomaly.a.Observed
		d.explained[i].BPS += o.BPS
		d.explained[i].PPS += o.PPS
		d.explained[i].FPS += o.FPS
	}
}

// maxWithin bounds how long a raise is remembered for compound rules.
const maxWithin = int64(time.Hour)

// EvaluateEvery is the evaluation period; replay steps flow time by it.
func (d *Detector) EvaluateEvery() time.Duration { return d.cfg.Evaluate }

// Active returns copies of the anomalies that have not ended.
func (d *Detector) Active() []Anomaly {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]Anomaly, 0, len(d.actives))
	for _, a := range d.actives {
		out = append(out, a.a)
	}
	return out
}

// Flush reports every anomaly that has not ended with status ongoing, as replay does at
// the end of its input.
func (d *Detector) Flush() []Anomaly {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]Anomaly, 0, len(d.actives))
	for w, a := range d.actives {
		d.finish(a, w)
		out = append(out, a.a)
	}
	// Replay must print the same thing twice: not in the map's order.
	slices.SortFunc(out, func(a, b Anomaly) int {
		return cmp.Or(a.Start.Compare(b.Start), cmp.Compare(a.Rule, b.Rule), cmp.Compare(a.Resource.Key, b.Resource.Key))
	})
	return out
}

func anomalyID(rule, key string, start int64) string {
	h := fnv.New64a()
	fmt.Fprintf(h, "%s|%s|%d", rule, key, start)
	return fmt.Sprintf("%x-%016x", start/1e6, h.Sum64())
}
