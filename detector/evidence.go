package detector

import (
	"math"
	"net/netip"
	"slices"
	"strconv"
	"time"

	"github.com/flowhound/flowhound/flow"
)

// evidenceRing keeps the latest matched flows with the windows each went into. Anomalies
// read their own flows from it at each evaluation, so the hot path pays one record copy per
// matched flow (however many rules matched it) and nothing per anomaly.
//
// The ring holds about a second of matched flows: above as many flows a second as it has
// records, it keeps each with probability 1/every (the detector sets it from the rate at
// each evaluation, and a turn of the ring that comes round too fast halves it at once).
// At random, not every n-th: exporters send records in fixed patterns (so many per
// datagram, routers in turn), and a fixed stride can fall in step with one and miss a
// flood's records altogether. A flood's characterization and a promoted window's first
// traceback are then a sample of the whole last second rather than all of its last
// milliseconds, and the copies, the ring's largest cost per flow (a record is three cache
// lines, written to memory the caches do not hold), do not grow with the rate.
type evidenceRing struct {
	recs  []flow.Record
	rmask uint64
	rseq  uint64 // next record write
	refs  []ringRef
	mask  uint64
	seq   uint64 // next reference write
	every uint64 // keep one matched flow in every, on average
	below uint64 // keep a flow when the next random number is below this
	rnd   uint64 // xorshift state, fixed at start so that replay repeats
	seen  uint64 // matched flows offered to the ring
	// turnedAt is when the records last started a turn of the ring (a flow's arrival).
	turnedAt int64
}

// ringRef says that record rec (a sequence number into recs) went into window w. A
// transit sighting (the same traffic reported again inside the network) counts for the
// traceback only.
type ringRef struct {
	w       *window
	rec     uint64
	transit bool
}

func newEvidenceRing(size int) evidenceRing {
	// A flow is referenced by every rule that matched it (about four), so the ring holds a
	// quarter as many records as references.
	return evidenceRing{recs: make([]flow.Record, size/4), rmask: uint64(size/4 - 1),
		refs: make([]ringRef, size), mask: uint64(size - 1), every: 1, below: math.MaxUint64, rnd: 0x9e3779b97f4a7c15}
}

// sample draws a uniform random number for the next matched flow and reports whether the
// flow goes into the ring. The number serves the flow's other sampling too.
func (r *evidenceRing) sample() (bool, uint64) {
	r.seen++
	x := r.rnd
	x ^= x << 13
	x ^= x >> 7
	x ^= x << 17
	r.rnd = x
	return x < r.below, x
}

// pace sets the sampling for a rate of matched flows a second: the ring keeps about a
// second of them.
func (r *evidenceRing) pace(rate float64) {
	r.setEvery(uint64(max(1, min(math.Ceil(rate/float64(len(r.recs))), maxEvery))))
}

func (r *evidenceRing) setEvery(n uint64) {
	r.every = n
	r.below = math.MaxUint64 / n
}

// maxEvery bounds the sampling interval, so that even at tens of millions of flows a second a
// flood of a thousandth of them is sampled.
const maxEvery = 1024

// record copies a flow into the ring and returns its sequence number.
func (r *evidenceRing) record(rec *flow.Record) uint64 {
	if r.rseq&r.rmask == 0 {
		// A turn of the ring in less than half a second (a flood, or the first second
		// before any evaluation set the pace): keep half as many from now on, rather than
		// wait for the next evaluation with a ring that holds too short a time.
		if r.rseq > 0 && rec.Received-r.turnedAt < int64(time.Second)/2 && r.every < maxEvery {
			r.setEvery(r.every * 2)
		}
		r.turnedAt = rec.Received
	}
	r.recs[r.rseq&r.rmask] = *rec
	r.rseq++
	return r.rseq - 1
}

func (r *evidenceRing) push(w *window, rec uint64, transit bool) {
	r.refs[r.seq&r.mask] = ringRef{w: w, rec: rec, transit: transit}
	r.seq++
}

// ingress rebuilds a newly promoted window's traceback table from its flows still in the
// ring since from (Unix ns): the light window kept only its counts.
func (r *evidenceRing) ingress(w *window, from int64, ids *ingressTable) bool {
	start := uint64(0)
	if size := uint64(len(r.refs)); r.seq > size {
		start = r.seq - size
	}
	oldest := uint64(0)
	if size := uint64(len(r.recs)); r.rseq > size {
		oldest = r.rseq - size
	}
	found := false
	for s := start; s < r.seq; s++ {
		e := &r.refs[s&r.mask]
		if e.w != w || e.rec < oldest {
			continue
		}
		rec := &r.recs[e.rec&r.rmask]
		if rec.Received < from {
			continue
		}
		scale := float64(rec.Scale())
		w.ingress.add(ids.id(rec.Exporter, rec.InIf), rec.Exporter, rec.InIf, float64(rec.Bytes)*scale, float64(rec.Packets)*scale)
		found = true
	}
	return found
}

// collect feeds ev with the window's flows referenced since ev last looked, skipping
// records the ring has already overwritten.
func (r *evidenceRing) collect(w *window, ev *evidence) {
	from := ev.seq
	if size := uint64(len(r.refs)); r.seq > size && from < r.seq-size {
		from = r.seq - size
	}
	oldest := uint64(0)
	if size := uint64(len(r.recs)); r.rseq > size {
		oldest = r.rseq - size
	}
	for s := from; s < r.seq; s++ {
		if e := &r.refs[s&r.mask]; e.w == w && e.rec >= oldest && !e.transit {
			ev.add(&r.recs[e.rec&r.rmask])
		}
	}
	ev.seq = r.seq
}

// maxValues bounds each characterization table; values past it still count in the total,
// so shares stay honest while memory stays bounded.
const maxValues = 4096

// evidence accumulates what an anomaly's flows look like.
type evidence struct {
	seq      uint64
	flows    int
	packets  float64
	bytes    float64
	protos   map[uint8]float64
	srcNets  map[netip.Prefix]float64
	srcPorts map[uint16]float64
	dstPorts map[uint16]float64
	flags    map[uint8]float64
	portPkts float64 // packets of flows that carry ports
	flagPkts float64 // packets of TCP flows that carry flags
	sizeMin  float64
	sizeMax  float64
	srcs     hll
	dsts     hll

	sample []flow.Record // reservoir sample of the flows: the raw evidence
	limit  int
	rng    uint64
}

func (ev *evidence) init(limit int, seed uint64) {
	ev.protos = map[uint8]float64{}
	ev.srcNets = map[netip.Prefix]float64{}
	ev.srcPorts = map[uint16]float64{}
	ev.dstPorts = map[uint16]float64{}
	ev.flags = map[uint8]float64{}
	ev.limit = limit
	ev.rng = seed | 1
}

func bump[K comparable](m map[K]float64, k K, v float64) {
	if _, ok := m[k]; ok || len(m) < maxValues {
		m[k] += v
	}
}

func (ev *evidence) add(r *flow.Record) {
	pk := float64(r.Packets * r.Scale())
	ev.flows++
	ev.packets += pk
	ev.bytes += float64(r.Bytes * r.Scale())
	bump(ev.protos, r.Proto, pk)
	bits := 24
	if r.SrcAddr.Is6() {
		bits = 48
	}
	if p, err := r.SrcAddr.Prefix(bits); err == nil {
		bump(ev.srcNets, p, pk)
	}
	if r.Has&(flow.HasSrcPort|flow.HasDstPort) != 0 && (r.Proto == flow.ProtoTCP || r.Proto == flow.ProtoUDP) {
		ev.portPkts += pk
		bump(ev.srcPorts, r.SrcPort, pk)
		bump(ev.dstPorts, r.DstPort, pk)
	}
	if r.Proto == flow.ProtoTCP && r.Has&flow.HasTCPFlags != 0 {
		ev.flagPkts += pk
		bump(ev.flags, r.TCPFlags, pk)
	}
	if r.Packets > 0 {
		size := float64(r.Bytes) / float64(r.Packets)
		if ev.flows == 1 || size < ev.sizeMin {
			ev.sizeMin = size
		}
		if size > ev.sizeMax {
			ev.sizeMax = size
		}
	}
	ev.srcs.add(hashAddr(r.SrcAddr))
	ev.dsts.add(hashAddr(r.DstAddr))
	// Reservoir sampling keeps every flow equally likely to be in the snapshot.
	if len(ev.sample) < ev.limit {
		ev.sample = append(ev.sample, *r)
	} else if ev.limit > 0 {
		ev.rng = ev.rng*6364136223846793005 + 1442695040888963407
		if j := int((ev.rng >> 33) % uint64(ev.flows)); j < ev.limit {
			ev.sample[j] = *r
		}
	}
}

func (ev *evidence) characterize() Characterization {
	c := Characterization{
		Protocols:        top(ev.protos, ev.packets, func(p uint8) string { return protoName(p) }),
		SrcPrefixes:      top(ev.srcNets, ev.packets, netip.Prefix.String),
		SrcPorts:         top(ev.srcPorts, ev.portPkts, portText),
		DstPorts:         top(ev.dstPorts, ev.portPkts, portText),
		TCPFlags:         top(ev.flags, ev.flagPkts, flagText),
		SrcCountEstimate: roundTo(ev.srcs.estimate(), 1),
		DstCountEstimate: roundTo(ev.dsts.estimate(), 1),
		SampledFlows:     ev.flows,
	}
	if ev.packets > 0 {
		c.PacketSize = SizeStats{Min: roundTo(ev.sizeMin, 0.1), Max: roundTo(ev.sizeMax, 0.1), Mean: roundTo(ev.bytes/ev.packets, 0.1)}
	}
	return c
}

func (ev *evidence) snapshot() []flow.Record { return ev.sample }

func portText(p uint16) string { return strconv.Itoa(int(p)) }

// flagText writes TCP flags as tcpdump does ("S", "SA", "FPA").
func flagText(f uint8) string {
	const letters = "FSRPAUEC"
	var b []byte
	for i := 0; i < 8; i++ {
		if f&(1<<i) != 0 {
			b = append(b, letters[i])
		}
	}
	if len(b) == 0 {
		return "none"
	}
	return string(b)
}

// top returns up to 5 values by share of total.
func top[K comparable](m map[K]float64, total float64, name func(K) string) []Count {
	if total <= 0 {
		return []Count{}
	}
	type kv struct {
		k K
		v float64
	}
	// The five best in one pass: sorting every value (and naming each for ties) cost more
	// than the rest of an evaluation for a flood from many sources.
	before := func(a, b kv) bool { return a.v > b.v || a.v == b.v && name(a.k) < name(b.k) }
	all := make([]kv, 0, 6)
	for k, v := range m {
		e := kv{k, v}
		i := len(all)
		for i > 0 && before(e, all[i-1]) {
			i--
		}
		if i < 5 {
			all = slices.Insert(all, i, e)
			all = all[:min(len(all), 5)]
		}
	}
	out := make([]Count, 0, 5)
	for i := 0; i < len(all) && i < 5; i++ {
		out = append(out, Count{Value: name(all[i].k), Share: roundTo(all[i].v/total, 0.0001)})
	}
	return out
}

func roundTo(v, step float64) float64 {
	if step <= 0 {
		return v
	}
	// Dividing by the inverse keeps 0.7 printing as 0.7, not 0.7000000000000001.
	inv := math.Round(1 / step)
	return math.Round(v*inv) / inv
}
