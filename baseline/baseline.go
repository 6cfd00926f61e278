// Package baseline learns what traffic is normal for each interface, prefix, host, port and the whole network over several seasonal time scales, and says how far a rate departs from it.
package baseline

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/flowhound/flowhound/flow"
)

// Persister stores snapshots. Keys and values are opaque to it; a nil value deletes the
// key. store.Store implements it; plain byte slices keep store free of this package.
type Persister interface {
	SaveBaselines(keys, values [][]byte) error
	LoadBaselines(fn func(key, value []byte) error) error
}

// Deps are the collaborators of Baselines; all are optional.
type Deps struct {
	// Store receives snapshots and is read by New to restore them.
	Store Persister
	// Logger gets snapshot failures; nil means slog.Default().
	Logger *slog.Logger
	// Metrics receives the package's metrics; nil keeps them in a private set.
	Metrics *metrics.Set
	// Names gives display names (exporter and interface names) for keys that the
	// monitored networks do not name.
	Names func(Key) string
	// Ticker replaces time.NewTicker in Run, for tests.
	Ticker func(time.Duration) (<-chan time.Time, func())
}

// counters are one key's sums for one slot, already scaled by sampling.
type counters struct {
	bytes, pkts uint64
	flows       uint64
}

func (c *counters) zero() bool { return c.bytes|c.pkts|c.flows == 0 }

// profileTier holds the keys with the seasonal model: interfaces, prefixes, global.
type profileTier struct {
	ix   keyIndex
	keys []Key
	st   []*fullState // nil: free
	ring []counters   // index*ring + slot%ring
	free []int32
	live int
}

// compactTier holds hosts and ports.
type compactTier struct {
	ix      keyIndex // hosts
	pix     keyIndex // ports: few and hot, so kept apart from the million-host table
	keys    []Key    // Key{}: free
	st      []compactState
	ring    []counters
	touched [maxRing][]int32 // keys with counters in each ring position
	free    []int32
	live    int
}

const blockKeys = 64 // compact keys per snapshot record

// index returns the table that holds k: ports have their own.
func (t *compactTier) index(k Key) *keyIndex {
	if k.Kind == KindPort {
		return &t.pix
	}
	return &t.ix
}

// find returns the index of k, or -1.
func (t *compactTier) find(k Key) int32 {
	ix := t.index(k)
	return ix.find(t.keys, k, ix.hash(k))
}

func (t *profileTier) find(k Key) int32 { return t.ix.find(t.keys, k, t.ix.hash(k)) }

type flowSpan struct {
	pos               int
	bytes, pkts, flow uint64
}

type markSpan struct{ from, to int64 }

// Baselines learns per-key baselines from flows. All methods are safe for concurrent use;
// Update is meant to be called by one goroutine with batches.
type Baselines struct {
	cfg     Config
	deps    Deps
	log     *slog.Logger
	loc     *time.Location
	p       modelParams
	slotNs  int64
	posSlot int64 // the slot whose ring position is pos (ringPos)
	pos     int
	ring    int
	grace   int64

	mu      sync.Mutex
	now     int64 // latest engine time seen, ns
	cur     int64 // newest open slot
	learned int64 // newest closed slot
	skipTo  int64 // slots up to here close without being learned (partial first slot)
	tick    uint32
	started bool

	nets        netTable
	full        profileTier
	hosts       compactTier
	sum         summary
	global      [4]int32 // by direction
	marks       map[Key][]markSpan
	ops         []op
	look        [subBatch]sides
	hostp       [3 * subBatch]*int32 // page entries of a sub-batch's hosts and dense port entries, for prefetch
	blkp        [2 * subBatch]int32  // block profile indices of a sub-batch, for prefetch
	ports       [4][3][]int32        // port key indices by direction, tcp/udp/sctp, port
	portsOther  [4][256]int32        // by direction and protocol, for protocols without ports
	exps        map[netip.Addr]*expIfs
	lastExp     *expIfs
	lastExpAddr netip.Addr
	bspans      []flowSpan
	sink        uint64 // keeps the touching loads of flush alive
	lastSwp     uint32
	overflow    uint64 // flows added to the summary, not yet counted in metrics

	// persistence
	snapMu      sync.Mutex
	deleted     []Key    // evicted profiles whose records must go
	dirtyBlocks []uint64 // bitset of compact blocks
	forceAll    bool

	m struct {
		profiles, hosts           atomic.Int64
		summarised, evicted       *metrics.Counter
		snapshots, snapshotErrors *metrics.Counter
		snapshotRecords           *metrics.Counter
		snapshotBytes             *metrics.Counter
		snapshotSeconds           *metrics.Histogram
		learnSeconds              *metrics.Histogram
	}
}

// New returns baselines for cfg and restores the latest snapshot from deps.Store.
func New(cfg Config, deps Deps) (*Baselines, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	loc, _ := loadZone(cfg.TimeZone)
	b := &Baselines{
		cfg:    cfg,
		deps:   deps,
		log:    deps.Logger,
		loc:    loc,
		p:      newModelParams(cfg.Slot, cfg.WarmUp),
		slotNs: int64(cfg.Slot),
		ring:   cfg.ringSlots(),
		grace:  int64(max(cfg.Grace, cfg.Slot)),
		marks:  map[Key][]markSpan{},
	}
	if b.log == nil {
		b.log = slog.Default()
	}
	seed := rand.Uint64()
	b.full.ix = newKeyIndex(64, seed)
	b.hosts.ix = newKeyIndex(1024, seed^mixB)
	b.hosts.pix = newKeyIndex(64, seed^mixA)
	b.sum = newSummary(cfg.SummarySize, seed^mixC)
	b.initMetrics()

	for ni, n := range cfg.Networks {
		for _, p := range n.Prefixes {
			b.nets.prefixes = append(b.nets.prefixes, monPrefix{p: PrefixKey(p, DirIn).Prefix(), network: ni})
		}
	}
	for i := range b.nets.prefixes {
		mp := &b.nets.prefixes[i]
		mp.full = b.pinFull(PrefixKey(mp.p, DirIn))
		b.pinFull(PrefixKey(mp.p, DirOut))
	}
	b.nets.build()
	b.initDense()
	for d := DirIn; d <= DirInternal; d++ {
		b.global[d] = b.pinFull(GlobalKey(d))
	}
	if deps.Store != nil {
		if err := b.restore(); err != nil {
			return nil, fmt.Errorf("baseline: restoring snapshot: %w", err)
		}
	}
	return b, nil
}

func (b *Baselines) initMetrics() {
	s := b.deps.Metrics
	if s == nil {
		s = metrics.NewSet()
	}
	s.GetOrCreateGauge(`flowhound_baseline_keys{tier="profile"}`, func() float64 { return float64(b.m.profiles.Load()) })
	s.GetOrCreateGauge(`flowhound_baseline_keys{tier="host"}`, func() float64 { return float64(b.m.hosts.Load()) })
	b.m.summarised = s.GetOrCreateCounter(`flowhound_baseline_summarised_flows_total`)
	b.m.evicted = s.GetOrCreateCounter(`flowhound_baseline_evicted_keys_total`)
	b.m.snapshots = s.GetOrCreateCounter(`flowhound_baseline_snapshots_total`)
	b.m.snapshotErrors = s.GetOrCreateCounter(`flowhound_baseline_snapshot_errors_total`)
	b.m.snapshotRecords = s.GetOrCreateCounter(`flowhound_baseline_snapshot_records_total`)
	b.m.snapshotBytes = s.GetOrCreateCounter(`flowhound_baseline_snapshot_bytes_total`)
	b.m.snapshotSeconds = s.GetOrCreateHistogram(`flowhound_baseline_snapshot_duration_seconds`)
	b.m.learnSeconds = s.GetOrCreateHistogram(`flowhound_baseline_learn_duration_seconds`)
}

// pinFull creates a profile that is never evicted and not counted against MaxProfiles.
func (b *Baselines) pinFull(k Key) int32 {
	h := b.full.ix.hash(k)
	if idx := b.full.ix.find(b.full.keys, k, h); idx >= 0 {
		return idx
	}
	idx := b.newFull(k, h, true)
	return idx
}

func (b *Baselines) newFull(k Key, h uint64, pinned bool) int32 {
	t := &b.full
	if !pinned && t.live >= b.cfg.MaxProfiles+b.pinnedCount() {
		return -1
	}
	var idx int32
	if n := len(t.free); n > 0 {
		idx = t.free[n-1]
		t.free = t.free[:n-1]
		t.keys[idx] = k
	} else {
		idx = int32(len(t.keys))
		t.keys = append(t.keys, k)
		t.st = append(t.st, nil)
		t.ring = append(t.ring, make([]counters, b.ring)...)
	}
	f := newFullState()
	f.pinned = pinned
	f.hot = true
	f.active = b.tick
	t.st[idx] = f
	t.ix.insert(t.keys, h, idx)
	if !pinned {
		if p := b.denseSlot(k, true); p != nil {
			*p = idx
		}
	}
	t.live++
	b.m.profiles.Store(int64(t.live))
	return idx
}

func (b *Baselines) pinnedCount() int { return 2*len(b.nets.prefixes) + 3 }

func (b *Baselines) newCompact(k Key, h uint64) int32 {
	t := &b.hosts
	if t.live >= b.cfg.MaxHosts {
		return -1
	}
	var idx int32
	if n := len(t.free); n > 0 {
		idx = t.free[n-1]
		t.free = t.free[:n-1]
	} else {
		idx = int32(len(t.keys))
		t.keys = append(t.keys, Key{})
		t.st = append(t.st, compactState{})
		t.ring = append(t.ring, make([]counters, b.ring)...)
	}
	t.keys[idx] = k
	t.st[idx] = compactState{tick: b.tick} // n == 0: not learned yet; tick dates it for the sweep
	t.index(k).insert(t.keys, h, idx)
	if p := b.denseSlot(k, true); p != nil {
		*p = idx
	}
	t.live++
	b.m.hosts.Store(int64(t.live))
	b.markBlock(idx)
	return idx
}

func (b *Baselines) markBlock(idx int32) {
	blk := int(idx) / blockKeys
	for len(b.dirtyBlocks) <= blk/64 {
		b.dirtyBlocks = append(b.dirtyBlocks, 0)
	}
	b.dirtyBlocks[blk/64] |= 1 << (blk % 64)
}

// Update adds a batch of flows to the open slots. It allocates nothing once the keys it
// meets exist.
func (b *Baselines) Update(recs []flow.Record) {
	b.mu.Lock()
	for len(recs) > 0 {
		n := min(len(recs), subBatch)
		b.addBatch(recs[:n])
		recs = recs[n:]
	}
	if b.overflow > 0 {
		b.m.summarised.Add(int(b.overflow))
		b.overflow = 0
	}
	b.mu.Unlock()
}

// subBatch bounds the flows whose key updates are resolved together, so that the scratch
// space stays in cache.
const subBatch = 256

// Tiers of an op.
const (
	opFull uint8 = iota
	opHost
	opPort
)

// op is one key update of one flow. Updates are collected per sub-batch and resolved in
// passes (hash and touch the index slot, compare the key and touch its counters, add), so
// that the cache misses of a million-key table overlap instead of following one another:
// this is what keeps a lookup in a table far larger than the CPU cache affordable.
type op struct {
	key   Key
	h     uint64
	idx   int32 // >= 0 known, -2 to look up, -1 absent
	span0 uint16
	nspan uint8
	tier  uint8
}

func (b *Baselines) addBatch(recs []flow.Record) {
	b.prefetch(recs)
	for i := range recs {
		r := &recs[i]
		t := r.Received
		if t <= 0 {
			if !b.started {
				continue // no clock yet to place it by
			}
			t = b.now
		}
		if !b.started || t >= (b.cur+1)*b.slotNs {
			// Slots close in flow order: what came before belongs to them.
			b.flush()
			b.advance(t)
		}
		b.keyFlow(r, t, &b.look[i])
	}
	b.flush()
}

// sides is where the monitored-network lookup of a flow's two ends is kept between the
// prefetch passes and keyFlow.
type sides struct {
	dch, sch     []int32
	dhost, shost *int32 // the host's entry in its page; nil where there is no page
	dbix, sbix   *int32 // the block's entry in the page table; nil where there is none
	dblk, sblk   bool
}

// prefetch looks up both ends of every flow of the sub-batch and then, in passes, loads
// the host page entries, the block counters and the host counters the flows will update.
// Each load pass is a loop of a few instructions whose loads do not depend on one another,
// so the processor keeps as many misses in flight as it has buffers for; keyFlow then
// finds the lines in cache instead of waiting for them one after another, which in a
// table of a million hosts is most of the cost. The lookups are done apart from the loads
// because their instructions would otherwise fill the reorder window and leave only a
// few misses in flight.
func (b *Baselines) prefetch(recs []flow.Record) {
	if b.nets.empty() {
		return
	}
	hp := b.hostp[:0]
	nb := 0
	for i := range recs {
		r := &recs[i]
		l := &b.look[i]
		dst, src := r.DstAddr.Unmap(), r.SrcAddr.Unmap()
		l.dch, l.dblk = b.nets.lookup(dst)
		l.sch, l.sblk = b.nets.lookup(src)
		l.dhost, l.dbix = b.sideRef(dst, l.dch, 0)
		l.shost, l.sbix = b.sideRef(src, l.sch, 1)
		if l.dhost != nil {
			hp = append(hp, l.dhost)
		}
		if l.shost != nil {
			hp = append(hp, l.shost)
		}
		// The port key: most destination ports of a busy link are ephemeral, so their
		// counters are as scattered as the hosts'.
		var dir Direction
		switch {
		case len(l.dch) > 0 && len(l.sch) > 0:
			dir = DirInternal
		case len(l.dch) > 0:
			dir = DirIn
		case len(l.sch) > 0:
			dir = DirOut
		}
		if dir != 0 {
			if p := b.portRef(r.Proto, r.DstPort, dir); p != nil {
				hp = append(hp, p)
			}
		}
		if l.dblk && l.dbix != nil {
			b.blkp[nb] = *l.dbix
			nb++
		}
		if l.sblk && l.sbix != nil {
			b.blkp[nb] = *l.sbix
			nb++
		}
	}
	var sink uint64
	for _, p := range hp {
		sink += uint64(*p)
	}
	// A flow's spans may fall in any open slot: the first and last counters of a key's
	// ring cover every line the key's counters span.
	rl := b.ring - 1
	fr := b.full.ring
	for _, idx := range b.blkp[:nb] {
		if idx >= 0 {
			sink += fr[int(idx)*b.ring].bytes + fr[int(idx)*b.ring+rl].flows
		}
	}
	hr := b.hosts.ring
	for _, p := range hp {
		if idx := int(*p); idx >= 0 {
			sink += hr[idx*b.ring].bytes + hr[idx*b.ring+rl].flows
		}
	}
	b.sink += sink
}

// sideRef returns where the page table of a's prefix keeps a's host index and its block
// profile index in direction slot ds, nil where it has none. keyFlow reads them through
// these pointers rather than as copies, because a slot closing inside the sub-batch may
// evict keys.
func (b *Baselines) sideRef(a netip.Addr, chain []int32, ds int) (*int32, *int32) {
	ref := b.pageRef(a, chain)
	if ref == nil {
		return nil, nil
	}
	// Through a local the compiler knows pg is not nil; taking &ref.pg.host[...] would
	// load from the page to check, a cache miss this pass exists to leave for later.
	pg := ref.pg
	if pg == nil {
		return nil, &ref.block[ds]
	}
	return &pg.host[ds][addr4(a)&0xff], &ref.block[ds]
}

func (b *Baselines) keyFlow(r *flow.Record, t int64, l *sides) {
	span0 := len(b.bspans)
	b.makeSpans(r, t)
	spans := b.bspans[span0:]
	o := op{idx: -2, span0: uint16(span0), nspan: uint8(len(spans))}

	dst, src := r.DstAddr.Unmap(), r.SrcAddr.Unmap()
	var dir Direction
	dch, sch, dblk, sblk := l.dch, l.sch, l.dblk, l.sblk
	if b.nets.empty() {
		dir = DirIn
	} else {
		switch {
		case len(dch) > 0 && len(sch) > 0:
			dir = DirInternal
		case len(dch) > 0:
			dir = DirIn
		case len(sch) > 0:
			dir = DirOut
		}
	}
	if dir != 0 {
		b.addFullIdx(b.global[dir], spans)
		if idx := b.portIdx(r.Proto, r.DstPort, dir); idx >= 0 {
			b.addCompactIdx(idx, spans)
		} else {
			o.tier, o.key = opPort, PortKey(r.Proto, r.DstPort, dir)
			b.ops = append(b.ops, o)
		}
	}
	if r.Exporter.IsValid() {
		exp := r.Exporter.Unmap()
		o.tier = opFull
		if r.Has&flow.HasInIf != 0 || (r.Has == 0 && r.InIf != 0) {
			if idx := b.interfaceIdx(exp, r.InIf, 0); idx >= 0 {
				b.addFullIdx(idx, spans)
			} else {
				o.key = Key{Kind: KindInterface, Dir: DirIn, Addr: exp, Index: r.InIf}
				b.ops = append(b.ops, o)
			}
		}
		if r.Has&flow.HasOutIf != 0 || (r.Has == 0 && r.OutIf != 0) {
			if idx := b.interfaceIdx(exp, r.OutIf, 1); idx >= 0 {
				b.addFullIdx(idx, spans)
			} else {
				o.key = Key{Kind: KindInterface, Dir: DirOut, Addr: exp, Index: r.OutIf}
				b.ops = append(b.ops, o)
			}
		}
	}
	if b.nets.empty() {
		if dst.IsValid() {
			o.tier, o.key = opHost, Key{Kind: KindHost, Dir: DirIn, Addr: dst}
			b.ops = append(b.ops, o)
		}
		return
	}
	if len(dch) > 0 {
		b.keySide(&o, spans, dst, dch, dblk, DirIn, l.dhost, l.dbix)
	}
	if len(sch) > 0 {
		b.keySide(&o, spans, src, sch, sblk, DirOut, l.shost, l.sbix)
	}
}

// keySide keys the monitored end of a flow: its prefixes (known indices, added at once),
// its /24 or /64 block and the host.
func (b *Baselines) keySide(o *op, spans []flowSpan, a netip.Addr, chain []int32, block bool, d Direction, host *int32, bix *int32) {
	for _, id := range chain {
		idx := b.nets.prefixes[id].full
		if d == DirOut {
			idx++
		}
		b.addFullIdx(idx, spans)
	}
	if block && bix != nil {
		if idx := *bix; idx >= 0 {
			b.addFullIdx(idx, spans)
			block = false
		}
	}
	if host != nil {
		if idx := *host; idx >= 0 {
			b.addCompactIdx(idx, spans)
			if block {
				b.pushBlock(o, a, d)
			}
			return
		}
	}
	if block {
		b.pushBlock(o, a, d)
	}
	o.tier, o.key = opHost, Key{Kind: KindHost, Dir: d, Addr: a}
	b.ops = append(b.ops, *o)
}

func (b *Baselines) pushBlock(o *op, a netip.Addr, d Direction) {
	bits := 64
	if a.Is4() {
		bits = 24
	}
	p, _ := a.Prefix(bits)
	o.tier, o.key = opFull, Key{Kind: KindPrefix, Dir: d, Addr: p.Addr(), Bits: uint8(bits)}
	b.ops = append(b.ops, *o)
}

func (b *Baselines) addCompactIdx(idx int32, spans []flowSpan) {
	t := &b.hosts
	ring := t.ring[int(idx)*b.ring : int(idx+1)*b.ring]
	for j := range spans {
		s := &spans[j]
		c := &ring[s.pos]
		if c.zero() {
			t.touched[s.pos] = append(t.touched[s.pos], idx)
		}
		c.bytes += s.bytes
		c.pkts += s.pkts
		c.flows += s.flow
	}
}

func (b *Baselines) addFullIdx(idx int32, spans []flowSpan) {
	ring := b.full.ring[int(idx)*b.ring : int(idx+1)*b.ring]
	for j := range spans {
		s := &spans[j]
		c := &ring[s.pos]
		c.bytes += s.bytes
		c.pkts += s.pkts
		c.flows += s.flow
	}
}

// index returns the index and key slice an op tier looks up in.
func (b *Baselines) index(tier uint8) (*keyIndex, []Key) {
	switch tier {
	case opFull:
		return &b.full.ix, b.full.keys
	case opHost:
		return &b.hosts.ix, b.hosts.keys
	}
	return &b.hosts.pix, b.hosts.keys
}

// flush resolves and applies the pending ops.
func (b *Baselines) flush() {
	ops := b.ops
	var sink uint64
	for i := range ops {
		o := &ops[i]
		if o.idx == -2 {
			ix, _ := b.index(o.tier)
			o.h = ix.hash(o.key)
			sink += ix.slots[o.h&ix.mask]
		}
	}
	for i := range ops {
		o := &ops[i]
		if o.idx == -2 {
			ix, keys := b.index(o.tier)
			o.idx = ix.find(keys, o.key, o.h)
			if o.idx >= 0 {
				if o.tier == opFull {
					sink += b.full.ring[int(o.idx)*b.ring].bytes
				} else {
					sink += b.hosts.ring[int(o.idx)*b.ring].bytes
				}
			}
		}
	}
	b.sink = sink
	for i := range ops {
		o := &ops[i]
		spans := b.bspans[o.span0 : int(o.span0)+int(o.nspan)]
		if o.idx < 0 {
			// Not found, or created by an earlier op of this batch.
			ix, keys := b.index(o.tier)
			if o.idx = ix.find(keys, o.key, o.h); o.idx < 0 {
				if o.tier == opFull {
					o.idx = b.newFull(o.key, o.h, false)
				} else {
					o.idx = b.newCompact(o.key, o.h)
				}
				if o.idx < 0 {
					b.summarise(o.key, spans)
					continue
				}
			}
		}
		if o.tier == opFull {
			b.addFullIdx(o.idx, spans)
			continue
		}
		b.addCompactIdx(o.idx, spans)
	}
	b.ops = b.ops[:0]
	b.bspans = b.bspans[:0]
}

// makeSpans appends the flow's counters split over the slots its duration covers, ending
// at its arrival. Whatever lies before the oldest open slot goes into that slot, so a flow
// longer than the grace period is neither dropped nor bunched into its arrival slot.
func (b *Baselines) makeSpans(r *flow.Record, end int64) {
	scale := r.Scale()
	bytes, pkts, flows := r.Bytes*scale*8, r.Packets*scale, r.FlowCount()
	first := b.learned + 1
	// Flows come in time order, nearly all in the current slot and most of them starting
	// in it or the one before: slots by comparison, not division (three divisions were a
	// tenth of the baselines' time per flow).
	es := b.cur
	if lo := b.cur * b.slotNs; end < lo || end >= lo+b.slotNs {
		es = end / b.slotNs
	}
	if es < first {
		es, end = first, first*b.slotNs
	}
	ring := int64(b.ring)
	epos := b.ringPos(es)
	start := end
	if d := r.Duration(); d > 0 {
		start = end - int64(d)
	}
	var ss int64
	switch lo := es * b.slotNs; {
	case start >= lo:
		ss = es
	case start >= lo-b.slotNs:
		ss = es - 1
	default:
		ss = start / b.slotNs
	}
	if ss < first {
		ss = first
	}
	if ss >= es {
		b.bspans = append(b.bspans, flowSpan{pos: epos, bytes: bytes, pkts: pkts, flow: flows})
		return
	}
	total := float64(end - start)
	fb, fp := float64(bytes), float64(pkts)
	var sb, sp uint64
	pos := int64(epos) - (es-ss)%ring
	if pos < 0 {
		pos += ring
	}
	for s := ss; s < es; s++ {
		hi := (s + 1) * b.slotNs
		lo := s * b.slotNs
		if s == ss {
			lo = start
		}
		frac := float64(hi-lo) / total
		xb, xp := uint64(fb*frac), uint64(fp*frac)
		sb += xb
		sp += xp
		b.bspans = append(b.bspans, flowSpan{pos: int(pos), bytes: xb, pkts: xp})
		if pos++; pos == ring {
			pos = 0
		}
	}
	b.bspans = append(b.bspans, flowSpan{pos: epos, bytes: bytes - min(sb, bytes), pkts: pkts - min(sp, pkts), flow: flows})
}

// ringPos is slot s's position in the rings; the current slot's is kept.
func (b *Baselines) ringPos(s int64) int {
	if s != b.posSlot {
		b.posSlot, b.pos = s, int(s%int64(b.ring))
	}
	return b.pos
}

func (b *Baselines) summarise(k Key, spans []flowSpan) {
	var by, pk, fl uint64
	for i := range spans {
		by += spans[i].bytes
		pk += spans[i].pkts
		fl += spans[i].flow
	}
	b.sum.add(k, float64(by), float64(pk), float64(fl))
	b.overflow++
}

// Advance moves the engine clock to now (Unix ns), closes the slots whose grace period has
// passed and learns them. The engine calls it about every second; Update also moves the
// clock when flows arrive from a later slot.
func (b *Baselines) Advance(now int64) {
	b.mu.Lock()
	b.advance(now)
	b.mu.Unlock()
}

func (b *Baselines) advance(now int64) {
	if now > b.now {
		b.now = now
	}
	c := b.now / b.slotNs
	if !b.started {
		// The first slot after a start is only partly observed: learning it would teach
		// a dip at every restart.
		b.started = true
		b.cur, b.learned, b.skipTo = c, c-1, c
		if b.sum.since == 0 {
			b.sum.since = b.now
		}
		return
	}
	if c > b.cur {
		if c-b.cur >= int64(b.ring) {
			// Nobody watched the slots in between (downtime, a gap in a capture): close what
			// is open and skip them instead of learning silence.
			for b.learned < b.cur {
				b.learnSlot(b.learned + 1)
			}
			b.learned = c - 1
		}
		b.cur = c
	}
	target := (b.now-b.grace)/b.slotNs - 1
	if target > b.cur-1 {
		target = b.cur - 1
	}
	for b.learned < target {
		b.learnSlot(b.learned + 1)
	}
}

func (b *Baselines) learnSlot(s int64) {
	start := time.Now()
	b.learned = s
	b.tick++
	pos := int(s % int64(b.ring))
	learn := s > b.skipTo
	cal := makeCalendar(time.Unix(0, s*b.slotNs).In(b.loc))
	secs := float64(b.slotNs) / 1e9
	marks := len(b.marks) > 0

	ft := &b.full
	for idx, f := range ft.st {
		if f == nil {
			continue
		}
		c := &ft.ring[idx*b.ring+pos]
		r := [3]float32{float32(float64(c.bytes) / secs), float32(float64(c.pkts) / secs), float32(float64(c.flows) / secs)}
		f.hist[f.histPos] = r
		f.histPos = (f.histPos + 1) % histLen
		if f.histN < histLen {
			f.histN++
		}
		if !c.zero() {
			f.active = b.tick
		}
		if learn && !(marks && b.marked(ft.keys[idx], s)) {
			f.learn(rates3{math.Log1p(float64(r[0])), math.Log1p(float64(r[1])), math.Log1p(float64(r[2]))}, &cal, &b.p)
		}
		*c = counters{}
	}

	ht := &b.hosts
	for _, idx := range ht.touched[pos] {
		c := &ht.ring[int(idx)*b.ring+pos]
		if c.zero() {
			continue // evicted since, or listed twice
		}
		if learn && !(marks && b.marked(ht.keys[idx], s)) {
			y := rates3{math.Log1p(float64(c.bytes) / secs), math.Log1p(float64(c.pkts) / secs), math.Log1p(float64(c.flows) / secs)}
			ht.st[idx].learn(y, b.tick, &b.p)
			b.markBlock(idx)
		}
		*c = counters{}
	}
	ht.touched[pos] = ht.touched[pos][:0]

	if marks {
		for k, ms := range b.marks {
			n := 0
			for _, m := range ms {
				if m.to > s {
					ms[n] = m
					n++
				}
			}
			if n == 0 {
				delete(b.marks, k)
			} else {
				b.marks[k] = ms[:n]
			}
		}
	}
	if sweepEvery := uint32(time.Hour / b.cfg.Slot); b.tick-b.lastSwp >= sweepEvery {
		b.lastSwp = b.tick
		b.sweep()
	}
	b.m.learnSeconds.UpdateDuration(start)
}

func (b *Baselines) marked(k Key, s int64) bool {
	for _, m := range b.marks[k] {
		if s >= m.from && s <= m.to {
			return true
		}
	}
	return false
}

// MarkAnomalous keeps the slots of key that overlap [from, to] (Unix ns) from being learned,
// so that an attack does not teach itself as normal. Slots already learned stay learned; the
// grace period gives the detector that long to mark a slot after it ends. Marking again
// extends the range.
func (b *Baselines) MarkAnomalous(key Key, from, to int64) {
	if to < from {
		to = from
	}
	m := markSpan{from / b.slotNs, to / b.slotNs}
	b.mu.Lock()
	defer b.mu.Unlock()
	ms := b.marks[key]
	for i := range ms {
		if m.from <= ms[i].to+1 && m.to >= ms[i].from-1 {
			ms[i].from, ms[i].to = min(ms[i].from, m.from), max(ms[i].to, m.to)
			return
		}
	}
	b.marks[key] = append(ms, m)
}

// sweep drops idle keys and promotes heavy hitters from the summary into the room made.
func (b *Baselines) sweep() {
	idle := uint32(min(int64(b.cfg.IdleTimeout/b.cfg.Slot), math.MaxUint32))
	ht := &b.hosts
	for i := range ht.keys {
		if ht.keys[i].Kind != 0 && b.tick-ht.st[i].tick > idle {
			b.evictCompact(int32(i))
		}
	}
	ft := &b.full
	for i, f := range ft.st {
		if f != nil && !f.pinned && b.tick-f.active > idle {
			b.evictFull(int32(i))
		}
	}
	secs := float64(b.now-b.sum.since) / 1e9
	if secs <= 0 {
		secs = 1
	}
	cands := b.sum.top(-1)
	var needHost, needFull []summaryEntry
	for _, c := range cands {
		if c.bytes <= 0 {
			continue
		}
		if c.key.Kind == KindHost || c.key.Kind == KindPort {
			if ht.live < b.cfg.MaxHosts {
				b.newCompact(c.key, ht.index(c.key).hash(c.key))
			} else {
				needHost = append(needHost, c)
			}
		} else {
			if ft.live < b.cfg.MaxProfiles+b.pinnedCount() {
				b.newFull(c.key, ft.ix.hash(c.key), false)
			} else {
				needFull = append(needFull, c)
			}
		}
	}
	// A full tier keeps its keys unless a summarised key is clearly busier: evict the
	// quietest tracked keys for the heaviest candidates that carry over twice their rate.
	if len(needHost) > 0 {
		victims := b.quietest(len(needHost), func(yield func(int32, float64)) {
			for i := range ht.keys {
				if ht.keys[i].Kind != 0 {
					y, _, _ := ht.st[i].predict(b.tick, &b.p)
					yield(int32(i), math.Expm1(y[0]))
				}
			}
		})
		for i, v := range victims {
			if needHost[i].bytes/secs > 2*v.rate {
				b.evictCompact(v.idx)
				b.newCompact(needHost[i].key, ht.index(needHost[i].key).hash(needHost[i].key))
			}
		}
	}
	if len(needFull) > 0 {
		cal := makeCalendar(time.Unix(0, b.now).In(b.loc))
		victims := b.quietest(len(needFull), func(yield func(int32, float64)) {
			for i, f := range ft.st {
				if f != nil && !f.pinned {
					y, _, _ := f.predict(&cal)
					yield(int32(i), math.Expm1(y[0]))
				}
			}
		})
		for i, v := range victims {
			if needFull[i].bytes/secs > 2*v.rate {
				b.evictFull(v.idx)
				b.newFull(needFull[i].key, ft.ix.hash(needFull[i].key), false)
			}
		}
	}
	b.sum.reset(b.now)
}

type victim struct {
	idx  int32
	rate float64
}

// quietest returns the n keys with the lowest expected bps, quietest first.
func (b *Baselines) quietest(n int, each func(func(int32, float64))) []victim {
	h := make([]victim, 0, n) // max-heap on rate
	each(func(idx int32, rate float64) {
		if len(h) < n {
			h = append(h, victim{idx, rate})
			for i := len(h) - 1; i > 0; {
				p := (i - 1) / 2
				if h[p].rate >= h[i].rate {
					break
				}
				h[p], h[i] = h[i], h[p]
				i = p
			}
			return
		}
		if rate >= h[0].rate {
			return
		}
		h[0] = victim{idx, rate}
		for i := 0; ; {
			l, c := 2*i+1, i
			if l < len(h) && h[l].rate > h[c].rate {
				c = l
			}
			if l+1 < len(h) && h[l+1].rate > h[c].rate {
				c = l + 1
			}
			if c == i {
				break
			}
			h[c], h[i] = h[i], h[c]
			i = c
		}
	})
	for i := 1; i < len(h); i++ {
		for j := i; j > 0 && h[j].rate < h[j-1].rate; j-- {
			h[j], h[j-1] = h[j-1], h[j]
		}
	}
	return h
}

func (b *Baselines) evictCompact(idx int32) {
	t := &b.hosts
	k := t.keys[idx]
	ix := t.index(k)
	ix.remove(t.keys, k, ix.hash(k))
	if p := b.denseSlot(k, false); p != nil {
		*p = -1
	}
	t.keys[idx] = Key{}
	t.st[idx] = compactState{}
	clear(t.ring[int(idx)*b.ring : int(idx+1)*b.ring])
	t.free = append(t.free, idx)
	t.live--
	b.m.hosts.Store(int64(t.live))
	b.markBlock(idx)
	b.m.evicted.Inc()
}

func (b *Baselines) evictFull(idx int32) {
	t := &b.full
	k := t.keys[idx]
	t.ix.remove(t.keys, k, t.ix.hash(k))
	if p := b.denseSlot(k, false); p != nil {
		*p = -1
	}
	t.keys[idx] = Key{}
	t.st[idx] = nil
	clear(t.ring[int(idx)*b.ring : int(idx+1)*b.ring])
	t.free = append(t.free, idx)
	t.live--
	b.m.profiles.Store(int64(t.live))
	b.deleted = append(b.deleted, k)
	b.m.evicted.Inc()
}

// Expected returns what the baseline of key expects at t (Unix ns). ok is false for keys
// that are not tracked or have not learned a slot yet. Hosts and ports have no seasonal
// model: their expectation is their current level whatever t.
func (b *Baselines) Expected(key Key, t int64) (Expectation, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.expected(key, t)
}

func (b *Baselines) expected(key Key, t int64) (Expectation, bool) {
	if idx := b.full.find(key); idx >= 0 {
		f := b.full.st[idx]
		cal := makeCalendar(time.Unix(0, t).In(b.loc))
		y, s, ok := f.predict(&cal)
		if !ok {
			return Expectation{WarmingUp: true}, false
		}
		e, sp := toLinear(y, s)
		return Expectation{Rates: e, Spread: sp, WarmingUp: f.n < b.p.warmSlots}, true
	}
	if idx := b.hosts.find(key); idx >= 0 {
		st := &b.hosts.st[idx]
		y, s, ok := st.predict(b.tick, &b.p)
		if !ok {
			return Expectation{WarmingUp: true}, false
		}
		e, sp := toLinear(y, s)
		return Expectation{Rates: e, Spread: sp, WarmingUp: st.n < b.p.warmSlots}, true
	}
	return Expectation{}, false
}

// Current returns the rates of key over the last complete slot. Late flows may still add
// to it during the grace period.
func (b *Baselines) Current(key Key) Rates {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.current(key)
}

func (b *Baselines) current(key Key) Rates {
	pos := int((b.cur - 1) % int64(b.ring))
	var c *counters
	if idx := b.full.find(key); idx >= 0 {
		c = &b.full.ring[int(idx)*b.ring+pos]
	} else if idx := b.hosts.find(key); idx >= 0 {
		c = &b.hosts.ring[int(idx)*b.ring+pos]
	} else {
		return Rates{}
	}
	secs := float64(b.slotNs) / 1e9
	return Rates{float64(c.bytes) / secs, float64(c.pkts) / secs, float64(c.flows) / secs}
}

// Now returns the engine time the baselines have reached (Unix ns).
func (b *Baselines) Now() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.now
}

// Top returns the tracked keys of kind, busiest first by expected bps (ties by direction
// and address),
// at most limit of them (all when limit <= 0).
func (b *Baselines) Top(kind Kind, limit int) []Status {
	b.mu.Lock()
	defer b.mu.Unlock()
	var all []cand
	if kind == KindHost || kind == KindPort {
		for i, k := range b.hosts.keys {
			if k.Kind == kind {
				bps := 0.0
				if y, _, ok := b.hosts.st[i].predict(b.tick, &b.p); ok {
					bps = math.Expm1(y[0])
				}
				all = keepTop(all, cand{k, bps}, limit)
			}
		}
	} else {
		cal := makeCalendar(time.Unix(0, b.now).In(b.loc))
		for i, k := range b.full.keys {
			if k.Kind == kind && b.full.st[i] != nil {
				y, _, _ := b.full.st[i].predict(&cal)
				all = keepTop(all, cand{k, math.Expm1(y[0])}, limit)
			}
		}
	}
	slices.SortFunc(all, func(a, c cand) int {
		if a.before(c) {
			return -1
		}
		if c.before(a) {
			return 1
		}
		return 0
	})
	out := make([]Status, len(all))
	for i, c := range all {
		out[i] = b.status(c.k)
	}
	return out
}

type cand struct {
	k   Key
	bps float64
}

// before ranks busier keys first and breaks ties by direction and address, so that the
// order is the same after a restore.
func (a cand) before(c cand) bool {
	if a.bps != c.bps {
		return a.bps > c.bps
	}
	if a.k.Dir != c.k.Dir {
		return a.k.Dir < c.k.Dir
	}
	if x := a.k.Addr.Compare(c.k.Addr); x != 0 {
		return x < 0
	}
	if a.k.Bits != c.k.Bits {
		return a.k.Bits < c.k.Bits
	}
	if a.k.Proto != c.k.Proto {
		return a.k.Proto < c.k.Proto
	}
	return a.k.Index < c.k.Index
}

// keepTop adds c to h, a heap of at most limit candidates whose root ranks last, so that
// Top over a million hosts keeps only what it returns.
func keepTop(h []cand, c cand, limit int) []cand {
	if limit <= 0 {
		return append(h, c)
	}
	if len(h) < limit {
		h = append(h, c)
		for i := len(h) - 1; i > 0; {
			p := (i - 1) / 2
			if !h[p].before(h[i]) {
				break
			}
			h[p], h[i] = h[i], h[p]
			i = p
		}
		return h
	}
	if !c.before(h[0]) {
		return h
	}
	h[0] = c
	for i := 0; ; {
		l, m := 2*i+1, i
		if l < len(h) && h[m].before(h[l]) {
			m = l
		}
		if l+1 < len(h) && h[m].before(h[l+1]) {
			m = l + 1
		}
		if m == i {
			return h
		}
		h[m], h[i] = h[i], h[m]
		i = m
	}
}

func (b *Baselines) status(k Key) Status {
	e, ok := b.expected(k, b.now)
	return Status{
		Type:      k.Kind,
		Key:       k.String(),
		Name:      b.name(k),
		Direction: k.Dir,
		Current:   b.current(k),
		Expected:  e.Rates,
		WarmingUp: e.WarmingUp || !ok,
		ID:        k,
	}
}

func (b *Baselines) name(k Key) string {
	if (k.Kind == KindHost || k.Kind == KindPrefix) && !b.nets.empty() {
		if ch, _ := b.nets.lookup(k.Addr); len(ch) > 0 {
			return b.cfg.Networks[b.nets.prefixes[ch[len(ch)-1]].network].Name
		}
	}
	if b.deps.Names != nil {
		return b.deps.Names(k)
	}
	return ""
}

// Detail returns the state of one key for GET /api/resources/{type}/{key}.
func (b *Baselines) Detail(key Key) (DetailStatus, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	d := DetailStatus{Status: b.status(key)}
	secs := float64(b.slotNs) / 1e9
	if idx := b.full.find(key); idx >= 0 {
		f := b.full.st[idx]
		d.Model, d.LearnedSlots = "seasonal", f.n
		e, _ := b.expected(key, b.now)
		d.Spread = e.Spread
		cal := makeCalendar(time.Unix(0, b.now).In(b.loc))
		for s := range nSets {
			c := f.cell(s, &cal)
			bk := Bucket{Name: sets[s].name, Cell: int(cal.idx[s]), Samples: int(c.w)}
			var mean, dev rates3
			for m := range 3 {
				mean[m], dev[m] = c.get(m)
			}
			switch {
			case c.w == 0:
			case s <= setH12:
				ex, sp := toLinear(mean, rates3{madToSigma * dev[0], madToSigma * dev[1], madToSigma * dev[2]})
				bk.Expected, bk.Spread = &ex, &sp
			case s == setRes:
				y, _, _ := f.predict(&cal)
				_, sp := toLinear(y, rates3{madToSigma * mean[0], madToSigma * mean[1], madToSigma * mean[2]})
				bk.Spread = &sp
			default:
				bk.Factor = &Rates{math.Exp(mean[0]), math.Exp(mean[1]), math.Exp(mean[2])}
			}
			d.Buckets = append(d.Buckets, bk)
		}
		end := b.learned
		for i := int(f.histN) - 1; i >= 0; i-- {
			h := f.hist[(int(f.histPos)-1-i+2*histLen)%histLen]
			d.Series = append(d.Series, Point{time.Unix(0, (end-int64(i))*b.slotNs).UTC(), Rates{float64(h[0]), float64(h[1]), float64(h[2])}})
		}
		step := int64(30 * time.Minute)
		from := b.now - 12*int64(time.Hour)
		from -= from % step
		for t := from; t <= b.now+12*int64(time.Hour); t += step {
			c := makeCalendar(time.Unix(0, t).In(b.loc))
			if y, _, ok := f.predict(&c); ok {
				ex, _ := toLinear(y, rates3{})
				d.Baseline = append(d.Baseline, Point{time.Unix(0, t).UTC(), ex})
			}
		}
	} else if idx := b.hosts.find(key); idx >= 0 {
		st := &b.hosts.st[idx]
		d.Model, d.LearnedSlots = "level", st.n
		e, _ := b.expected(key, b.now)
		d.Spread = e.Spread
	} else {
		return DetailStatus{}, false
	}
	// Then the open slots, oldest first: the last complete one is Current, the newest is
	// still filling.
	var ring []counters
	if idx := b.full.find(key); idx >= 0 {
		ring = b.full.ring[int(idx)*b.ring : int(idx+1)*b.ring]
	} else if idx := b.hosts.find(key); idx >= 0 {
		ring = b.hosts.ring[int(idx)*b.ring : int(idx+1)*b.ring]
	}
	for s := b.learned + 1; s <= b.cur; s++ {
		c := ring[s%int64(b.ring)]
		d.Series = append(d.Series, Point{time.Unix(0, s*b.slotNs).UTC(), Rates{float64(c.bytes) / secs, float64(c.pkts) / secs, float64(c.flows) / secs}})
	}
	return d, true
}

// Run writes a snapshot every SnapshotInterval and a last one when ctx ends, whose error
// it returns. Without a store it only waits for ctx.
func (b *Baselines) Run(ctx context.Context) error {
	if b.deps.Store == nil {
		<-ctx.Done()
		return nil
	}
	tick := b.deps.Ticker
	if tick == nil {
		tick = func(d time.Duration) (<-chan time.Time, func()) {
			t := time.NewTicker(d)
			return t.C, t.Stop
		}
	}
	ch, stop := tick(b.cfg.SnapshotInterval)
	defer stop()
	for {
		select {
		case <-ctx.Done():
			return b.Snapshot()
		case <-ch:
			if err := b.Snapshot(); err != nil {
				b.log.Error("baseline snapshot failed; the next one rewrites everything", "err", err)
			}
		}
	}
}
