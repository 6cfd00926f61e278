package detector

import (
	"encoding/binary"
	"math"
	"math/bits"
	"net/netip"

	"github.com/flowhound/flowhound/flow"
)

// slot holds one second of a window, already scaled by sampling.
type slot struct {
	sec     int64
	bytes   float64
	packets float64
	flows   float64
	samples float64 // sampled packets as exported, for the trust bound
}

// window is a sliding per-second window of one rule on one resource. It is updated per
// matching flow and evaluated every 500 ms, so a flood is seen as soon as its first
// seconds are in, not when a fixed window closes.
//
// Most resources are nowhere near any threshold: a million hosts each with a full window
// would cost gigabytes. So a window starts light, counting only its current second, and
// takes on its per-second slots, traceback table and sketches (its detail) the first time
// that second reaches promoteAt percent of the rule's threshold; it goes light again after
// a quiet window length. A flood's first second is carried over into the detail, so
// promotion costs no detection time.
type window struct {
	// The first 64 bytes are all that a flow into a light window touches, so that a
	// million light windows cost a flow one cache line each. The whole window is two
	// lines (checked in a test): the allocator's 128-byte class keeps them aligned.
	*detail     // nil while light
	cur         slot
	curOff      uint32 // when the current second's first flow came, ns into the second
	lastIngress uint32 // where the latest flow came in: Detector.ingresses index, 0 unknown
	// episodeStart is the arrival of the first flow since the window was last quiet; the
	// detection delay runs from it.
	episodeStart int64

	res     resource
	rule    int
	group   int   // monitored network index of the resource, -1 if none
	pos     int   // index in Detector.all
	firstNs int64 // earliest time that holds data: the window's span until it is full
	lastSec int64 // latest second that holds data, up to the light second (see seen)
}

// active is the window's anomaly, nil if none (a light window never has one).
func (w *window) active() *active {
	if w.detail == nil {
		return nil
	}
	return w.detail.anomaly
}

// curFirstNs is when the light second's first flow arrived.
func (w *window) curFirstNs() int64 { return w.cur.sec*1e9 + int64(w.curOff) }

// seen is the latest second that holds data.
func (w *window) seen() int64 { return max(w.lastSec, w.cur.sec) }

// detail is what a window keeps once it matters.
type detail struct {
	// What every flow touches comes first, in one cache line: the slots, the latest second
	// with its slot index, and the ingress ids (checked in a test).
	slots   []fullSlot // by second mod n; every second in (top-n, top] has its slot
	top     int64
	topIdx  int
	ingress ingressCounts
	// starts holds, per slot, the shares of longer flows that start in its second. They
	// sit apart from the slots because a long flow's start is any of the window's seconds:
	// in a compact array that random access touches a few lines of one window, not one of
	// the window's n.
	starts []spread
	base   spread // shares begun in slots since recycled and not yet ended
	// A busy window counts the ingress of a random one in ingressEvery of its flows (those
	// whose share.rnd is below ingressBelow), scaled up: the traceback needs shares, which
	// a thousand flows a second give as well as a million, and the table update is most
	// of what a flow costs a window with a hundred ingress points. Set at each evaluation.
	ingressBelow uint64
	ingressEvery float64
	// Distinct counters exist only for rules whose threshold asks for them.
	srcs, dsts, dports *hll
	quietSince         int64 // since when the window has been below promoteAt, for going light

	pendingSince int64 // when the threshold was first crossed, for a rule's `for`
	lastFired    int64 // last evaluation over threshold
	anomaly      *active
}

// fullSlot is one second of a window with its detail, one cache line. Besides the flows
// that arrived in it, it holds the per-second shares of longer flows that end with it
// (end; those that start in it are in detail.starts): a second's traffic is its own plus
// every share started at or before it and not ended before it.
type fullSlot struct {
	slot
	end spread
}

// spread is a per-second share of a flow's counters.
type spread struct{ bytes, packets, samples float64 }

func (s *spread) add(o spread, sign float64) {
	s.bytes += sign * o.bytes
	s.packets += sign * o.packets
	s.samples += sign * o.samples
}

// at returns the index of second s's slot, giving the seconds after the latest one their
// slots first; -1 if s is older than the window. Recycled slots' shares pass into the
// window's base. Every second of the window having its slot, a long flow's start needs no
// check of the slot it goes into, and no second's index needs a division.
func (d *detail) at(s int64) int {
	n := int64(len(d.slots))
	if s > d.top {
		if s-d.top >= n {
			// Everything in the window is older than the window: every share has ended.
			clear(d.starts)
			d.base = spread{}
			d.top, d.topIdx = s-n, int((s-n)%n)
			for i := range d.slots {
				d.slots[i] = fullSlot{}
			}
		}
		i := d.topIdx
		for t := d.top + 1; t <= s; t++ {
			if i++; i == int(n) {
				i = 0
			}
			sl := &d.slots[i]
			d.base.add(d.starts[i], 1)
			d.base.add(sl.end, -1)
			*sl = fullSlot{slot: slot{sec: t}}
			d.starts[i] = spread{}
		}
		d.top, d.topIdx = s, i
	}
	back := d.top - s
	if back >= n {
		return -1
	}
	i := int64(d.topIdx) - back
	if i < 0 {
		i += n
	}
	return int(i)
}

// promoteAt is the severity, in percent of the threshold, at which a window takes on its
// detail: below a tenth of a limit there is nothing to trace back.
const promoteAt = 10

const maxIngress = 8

// ingressCounts is where a window's traffic comes in: up to maxIngress (exporter, in_if)
// points with their counts. Counts decay each evaluation so the table follows the window;
// past maxIngress entries the smallest is replaced and its count inherited (space-saving),
// which overestimates newcomers and never loses a big one. Entries are laid out field by
// field and name their point by its ingressTable id, so that a flow finds its entry in one
// cache line of ids and a replacement writes no pointer: with a prefix reached by a hundred
// router interfaces, nearly every flow replaces an entry.
type ingressCounts struct {
	id      [maxIngress]uint16 // ingressTable id (< maxIngressIDs); 0 when that table was full (see keys)
	n       int                // entries in use
	packets [maxIngress]float64
	bytes   [maxIngress]float64
	// keys name the entries whose id is 0; written only then.
	keys [maxIngress]ingressKey
}

func (t *ingressCounts) add(id32 uint32, exp netip.Addr, inIf uint32, by, pk float64) {
	id := uint16(id32)
	for i := 0; i < t.n; i++ {
		if t.id[i] == id && (id != 0 || t.keys[i] == ingressKey{exporter: exp, inIf: inIf}) {
			t.bytes[i] += by
			t.packets[i] += pk
			return
		}
	}
	i := t.n
	if i < maxIngress {
		t.n++
	} else {
		i = 0
		for j := 1; j < maxIngress; j++ {
			if t.packets[j] < t.packets[i] {
				i = j
			}
		}
		by += t.bytes[i]
		pk += t.packets[i]
	}
	t.id[i], t.bytes[i], t.packets[i] = id, by, pk
	if id == 0 {
		t.keys[i] = ingressKey{exporter: exp, inIf: inIf}
	}
}

// sampleIngress makes the window count the ingress of one in every flows, at random.
func (d *detail) sampleIngress(every int) {
	d.ingressEvery = float64(every)
	d.ingressBelow = math.MaxUint64 / uint64(every)
}

// ingressSamples is how many flows a second a busy window's traceback counts at least.
const ingressSamples = 2000

// maxIngressEvery bounds the sampling, so that a window's traceback still sees one in so
// many of its flows however fast they come.
const maxIngressEvery = 64

// key is entry i's ingress point.
func (t *ingressCounts) key(i int, ids *ingressTable) ingressKey {
	if t.id[i] == 0 {
		return t.keys[i]
	}
	return ids.key(uint32(t.id[i]))
}

// share is what a flow adds to each window it falls into, worked out once per flow.
type share struct {
	now      int64 // second of arrival
	received int64
	dur      int64 // ns the flow lasted
	secs     int64 // seconds it covers, at least 1
	by, pk   float64
	fl, sm   float64
	per      spread // per-second part of by, pk, sm over secs
	ingress  uint32 // Detector.ingresses id
	rnd      uint64 // uniform random, drawn per flow: for sampling
}

// set works out r's share. It fills c in place: building a share and copying it would
// read back freshly written words in wider moves, which stalls store forwarding.
func (c *share) set(r *flow.Record, scale float64, ingress uint32, rnd uint64) {
	c.now, c.received, c.dur, c.secs, c.ingress, c.rnd = r.Received/1e9, r.Received, 0, 1, ingress, rnd
	c.by, c.pk = float64(r.Bytes)*scale, float64(r.Packets)*scale
	c.fl, c.sm = float64(r.FlowCount()), float64(r.Packets)
	f := 1.0
	if d := r.Duration(); d > 1e9 {
		c.dur = int64(d)
		c.secs = 1 + (c.dur-1)/1e9 // rounded up; adding first would overflow for absurd durations
		f = 1 / float64(c.secs)
	}
	c.per.bytes, c.per.packets, c.per.samples = c.by*f, c.pk*f, c.sm*f
}

// add puts a flow's scaled counters into the seconds it covers. A flow's packets are spread
// over its duration ending at its arrival (DESIGN.md Time): a 60 s flow cut by the active
// timeout is 60 s of traffic, not a one-second burst. The part older than the window is
// dropped with the seconds it belongs to.
func (w *window) add(r *flow.Record, c *share) {
	now := c.now
	if w.detail == nil {
		// The light second takes its share of the flow's duration, as a slot would.
		w.addLight(c)
		return
	}
	n := int64(len(w.slots))
	idx := w.at(now)
	if idx < 0 {
		return // a late flow for a second the window has passed
	}
	sl := &w.slots[idx]
	// A flow counts once, in the second it arrived.
	sl.flows += c.fl
	first := c.received
	if c.secs == 1 {
		sl.bytes += c.by
		sl.packets += c.pk
		sl.samples += c.sm
	} else {
		// A longer flow adds its per-second share to every second from its start to now:
		// kept as a share that starts in one slot and ends after another, so the cost does
		// not grow with the duration. Seconds already recycled for newer ones are dropped.
		back := max(min(c.secs, n, now-(w.top-n))-1, 0) // seconds before now it starts in
		i := idx - int(back)
		if i < 0 {
			i += int(n)
		}
		w.starts[i].add(c.per, 1)
		sl.end.add(c.per, 1)
		first -= min(c.dur, n*1e9)
	}
	if w.firstNs == 0 || first < w.firstNs {
		w.firstNs = first
	}
	if now > w.lastSec {
		w.lastSec = now
	}
	if w.episodeStart == 0 {
		w.episodeStart = c.received
	}
	w.addIngress(r, c)
	if w.srcs != nil {
		w.srcs.add(hashAddr(r.SrcAddr))
	}
	if w.dsts != nil {
		w.dsts.add(hashAddr(r.DstAddr))
	}
	if w.dports != nil {
		w.dports.add(mix64(uint64(r.DstPort) | uint64(r.Proto)<<16))
	}
}

// addIngress counts where a flow came in, or one in ingressEvery flows scaled up.
func (w *window) addIngress(r *flow.Record, c *share) {
	if c.rnd < w.ingressBelow {
		w.ingress.add(c.ingress, r.Exporter, r.InIf, c.by*w.ingressEvery, c.pk*w.ingressEvery)
	}
}

// addLight counts a flow's share of the current second. It writes nothing outside the
// window's first cache line.
func (w *window) addLight(c *share) {
	if w.cur.sec != c.now {
		if w.cur.sec > c.now {
			return // late for a second already gone
		}
		w.cur = slot{sec: c.now}
		w.curOff = uint32(c.received - c.now*1e9)
	}
	w.cur.bytes += c.per.bytes
	w.cur.packets += c.per.packets
	w.cur.flows += c.fl
	w.cur.samples += c.per.samples
	w.lastIngress = c.ingress
	if w.episodeStart == 0 {
		w.episodeStart = c.received
	}
}

// lightRates are the current second's rates, over the time it has run since its first
// flow; the previous second's counts serve for the half second after it ended.
func (w *window) lightRates(nowNs int64) (bps, pps, fps, samples float64) {
	sec := nowNs / 1e9
	if w.cur.sec != sec && w.cur.sec != sec-1 {
		return 0, 0, 0, 0
	}
	span := max(float64(nowNs-w.curFirstNs())/1e9, minSpan)
	if w.cur.sec == sec-1 {
		span = max(span, 1)
	}
	span = min(span, 2)
	return w.cur.bytes * 8 / span, w.cur.packets / span, w.cur.flows / span, w.cur.samples
}

// promote gives the window its detail, carrying the light second over into it.
func (w *window) promote(seconds int, srcs, dsts, dports bool, last ingressKey, lastID uint32) {
	d := &detail{slots: make([]fullSlot, seconds), starts: make([]spread, seconds)}
	d.sampleIngress(1)
	if srcs {
		d.srcs = &hll{}
	}
	if dsts {
		d.dsts = &hll{}
	}
	if dports {
		d.dports = &hll{}
	}
	w.detail = d
	// The seconds up to the latest seen get their slots, so that at's invariant holds.
	d.top = max(w.seen(), int64(seconds)) - int64(seconds)
	d.topIdx = int(d.top % int64(seconds))
	d.at(d.top + int64(seconds))
	if w.cur.sec > 0 {
		if i := d.at(w.cur.sec); i >= 0 {
			d.slots[i].slot = w.cur
		}
		w.firstNs = w.curFirstNs()
		w.lastSec = w.seen()
		if last.exporter.IsValid() {
			d.ingress.add(lastID, last.exporter, last.inIf, w.cur.bytes, w.cur.packets)
		}
	}
}

// demote drops the detail of a window that has been quiet for a window length.
func (w *window) demote() {
	w.detail = nil
	w.lastSec = w.seen()
	w.cur = slot{}
}

// totals returns the window's per-second rates and the sampled packets behind them.
//
// Rates are over the time the data really covers: the current second only as far as it
// has run, and before the window has filled, only the time since its first data. So a
// flood on a fresh resource shows its real rate within its first second instead of being
// averaged with empty seconds. On a resource that already carries traffic the full window
// would dilute a new flood for most of its length, so the last two seconds are measured
// too and the higher of the two rates counts: a flood is seen within a second or two,
// and it ends only when the whole window has calmed down.
func (w *window) totals(nowNs int64) (bps, pps, fps, samples float64) {
	now := nowNs / 1e9
	n := int64(len(w.slots))
	// Shares begun before the window and still running: the base, and slots older than the
	// window that no flow has recycled yet.
	run := w.base
	for i := range w.slots {
		if sl := &w.slots[i]; sl.sec <= now-n {
			run.add(w.starts[i], 1)
			run.add(sl.end, -1)
		}
	}
	var by, pk, fl, sBy, sPk, sFl float64
	for sec := now - n + 1; sec <= now; sec++ {
		i := ((sec % n) + n) % n
		sl := &w.slots[i]
		var own slot
		if sl.sec == sec {
			run.add(w.starts[i], 1)
			own = sl.slot
		}
		// Rounding can leave a share a hair below zero once it has ended.
		b, p, smp := own.bytes+max(run.bytes, 0), own.packets+max(run.packets, 0), own.samples+max(run.samples, 0)
		by += b
		pk += p
		fl += own.flows
		samples += smp
		if sec > now-shortSecs {
			sBy += b
			sPk += p
			sFl += own.flows
		}
		if sl.sec == sec {
			run.add(sl.end, -1)
		}
	}
	frac := float64(nowNs%1e9) / 1e9
	span := float64(n-1) + frac
	short := float64(min(shortSecs, n)-1) + frac
	if w.firstNs > 0 {
		since := float64(nowNs-w.firstNs) / 1e9
		span, short = min(span, since), min(short, since)
	}
	span, short = max(span, minSpan), max(short, minSpan)
	bps, pps, fps = by*8/span, pk/span, fl/span
	if n > shortSecs {
		bps, pps, fps = max(bps, sBy*8/short), max(pps, sPk/short), max(fps, sFl/short)
	}
	return bps, pps, fps, samples
}

// shortSecs is the span of the short rate, in seconds including the current one.
const shortSecs = 2

const minSpan = 0.5

// decay ages the ingress table by one evaluation step.
func (w *window) decay() {
	if w.detail == nil {
		return
	}
	k := 1 - 1/float64(len(w.slots))
	for i := range w.ingress.n {
		w.ingress.bytes[i] *= k
		w.ingress.packets[i] *= k
	}
}

// idle reports whether the window has had no data for n seconds (its length).
func (w *window) idle(now, n int64) bool { return w.seen() <= now-n }

// hll is a small HyperLogLog (64 registers, ~13% standard error) for distinct counts in
// bounded memory. It keeps the registers of its current and previous epoch and reports
// their union, so counts slide instead of dropping to zero when an epoch turns over.
type hll struct {
	cur, prev [64]uint8
	epoch     int64
}

func (h *hll) add(x uint64) {
	idx := x & 63
	rank := uint8(bits.LeadingZeros64(x|63)) + 1
	if rank > h.cur[idx] {
		h.cur[idx] = rank
	}
}

// roll moves to a new span when epoch changes.
func (h *hll) roll(epoch int64) {
	if epoch != h.epoch {
		if epoch == h.epoch+1 {
			h.prev = h.cur
		} else {
			h.prev = [64]uint8{}
		}
		h.cur = [64]uint8{}
		h.epoch = epoch
	}
}

func (h *hll) estimate() float64 {
	const m = 64.0
	var sum float64
	zeros := 0
	for i := range h.cur {
		r := max(h.cur[i], h.prev[i])
		if r == 0 {
			zeros++
		}
		sum += math.Ldexp(1, -int(r))
	}
	e := 0.709 * m * m / sum
	if e <= 2.5*m && zeros > 0 {
		e = m * math.Log(m/float64(zeros)) // linear counting for small sets
	}
	return e
}

func hashAddr(a netip.Addr) uint64 {
	if a.Is4() {
		b := a.As4()
		return mix64(uint64(binary.BigEndian.Uint32(b[:])))
	}
	b := a.As16()
	return mix64(binary.BigEndian.Uint64(b[:8]) ^ mix64(binary.BigEndian.Uint64(b[8:])))
}

// mix64 is SplitMix64's finalizer: cheap and well spread, enough for sketches.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// ingressKey is where traffic enters the network: a router and its input interface.
type ingressKey struct {
	exporter netip.Addr
	inIf     uint32
}

// ingressTable numbers ingress points so that a light window remembers its latest one in
// four bytes. Index 0 is "unknown"; past maxIngressIDs points (spoofed exporters, junk
// ifindexes) new ones read as unknown, which costs only a promoted window's first
// traceback entry. Flows come in datagrams, runs from one exporter, so the last
// exporter's table is kept at hand.
type ingressTable struct {
	exporters map[netip.Addr]*exporterIngress
	lastExp   netip.Addr
	last      *exporterIngress
	keys      []ingressKey
}

// exporterIngress numbers one exporter's interfaces: low ifindexes in an array.
type exporterIngress struct {
	low  [64]uint32
	high map[uint32]uint32
}

const maxIngressIDs = 1 << 16

func (t *ingressTable) id(exp netip.Addr, inIf uint32) uint32 {
	e := t.last
	if e == nil || exp != t.lastExp {
		if e = t.exporters[exp]; e == nil {
			if t.exporters == nil {
				t.exporters = map[netip.Addr]*exporterIngress{}
				t.keys = []ingressKey{{}}
			}
			if len(t.keys) >= maxIngressIDs {
				return 0
			}
			e = &exporterIngress{}
			t.exporters[exp] = e
		}
		t.lastExp, t.last = exp, e
	}
	var slot *uint32
	if inIf < uint32(len(e.low)) {
		slot = &e.low[inIf]
	} else if id, ok := e.high[inIf]; ok {
		return id
	}
	if slot != nil && *slot != 0 {
		return *slot
	}
	if len(t.keys) >= maxIngressIDs {
		return 0
	}
	id := uint32(len(t.keys))
	t.keys = append(t.keys, ingressKey{exporter: exp, inIf: inIf})
	if slot != nil {
		*slot = id
	} else {
		if e.high == nil {
			e.high = map[uint32]uint32{}
		}
		e.high[inIf] = id
	}
	return id
}

func (t *ingressTable) key(id uint32) ingressKey {
	if int(id) < len(t.keys) {
		return t.keys[id]
	}
	return ingressKey{}
}
