package gen

import (
	"errors"
	"math"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/flowhound/flowhound/flow"
)

const (
	tick       = 10 * time.Millisecond  // simulation step
	holdMax    = 100 * time.Millisecond // longest a partly filled datagram waits for more records
	sflowChunk = 250 * time.Millisecond // sFlow: how often a long flow's packets are offered to the sampler
	// counterInterval is the sFlow counter polling interval per interface.
	counterInterval = 20 * time.Second
)

// Datagram is one export datagram as Simulate hands it out.
type Datagram struct {
	Exporter netip.Addr // the source address it is sent from
	Time     int64      // Unix ns when it is sent
	Payload  []byte
	// Records are the flows it carries, as the generator made them (for sFlow, the
	// sampled packets; nil for counter samples). Times are whole milliseconds.
	Records []flow.Record
}

// Stats counts what a Generator sent.
type Stats struct {
	Datagrams  uint64
	Records    uint64
	Bytes      uint64 // payload bytes
	SendErrors uint64
	// MaxLag is how far behind its schedule Run fell at worst (a sign that the host
	// cannot sustain the requested rate).
	MaxLag time.Duration
	Phases []PhaseStats
}

// PhaseStats counts per phase of the schedule.
type PhaseStats struct {
	Phase
	Datagrams uint64 // sent while the phase was on
	// Records and Packets count the records of flows that started in the phase;
	// AttackRecords and AttackPackets those of the attack's flows.
	Records, Packets             uint64
	AttackRecords, AttackPackets uint64
}

// Generator simulates the exporters of a scenario. A Generator runs once, with Run or
// Simulate.
type Generator struct {
	cfg      Config
	format   Format
	phases   []Phase
	net      *network
	exps     []*exporter
	rng      rng
	wheel    *wheel
	origin   int64
	k        int64 // next tick to process
	end      int64 // ticks to run; 0 = unbounded
	active   int64
	inactive int64
	sflow    bool
	lnq      float64 // log(1 - 1/N) for geometric sFlow skips
	ran      bool
	phase    int // current phase index; -1 before the first tick

	bgCarry, atkCarry float64
	bulk, speed       []longSession
	send              func(e *exporter, payload []byte, recs []flow.Record) error

	st  Stats // owned by the running goroutine
	mu  sync.Mutex
	pub Stats // published copy
}

// exporter is one simulated router's export process.
type exporter struct {
	g            *Generator
	idx          int
	addr         netip.Addr
	domain       uint32
	enc          *Encoder
	emit         EmitFunc
	pending      []flow.Record
	pendingSince int64
	now          int64
	skip         uint64 // sFlow: packets until the next sampled one
	ifs          [ifCore + 1]ifStat
	nextCounters int64
	counters     []IfCounters
}

type ifStat struct {
	inOctets, outOctets uint64
	inPkts, outPkts     uint64
}

// longSession is a recurring long transfer (bulk download, speed test).
type longSession struct {
	next  int64
	stage int
	host  uint32
}

// New checks cfg and builds a generator.
func New(cfg Config) (*Generator, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	f, _ := ParseFormat(cfg.Format)
	if len(cfg.Sources) > 0 {
		cfg.Exporters = len(cfg.Sources)
	}
	g := &Generator{
		cfg:      cfg,
		format:   f,
		phases:   schedule(cfg.Scenario, cfg.Victims, cfg.AttackRate),
		rng:      rng{s: uint64(cfg.Seed)*0x2545F4914F6CDD1D + 1},
		active:   int64(cfg.ActiveTimeout.Truncate(time.Millisecond)),
		inactive: int64(cfg.InactiveTimeout.Truncate(time.Millisecond)),
		sflow:    f == FormatSFlow,
		phase:    -1,
	}
	g.st.Phases = make([]PhaseStats, len(g.phases))
	for i, p := range g.phases {
		g.st.Phases[i].Phase = p
	}
	g.pub = g.snapshot()
	if cfg.SamplingRate > 1 {
		g.lnq = math.Log1p(-1 / float64(cfg.SamplingRate))
	}
	g.net = newNetwork(&g.rng, cfg.Exporters)
	for i, a := range cfg.sources() {
		e := &exporter{g: g, idx: i, addr: a.Unmap(), domain: uint32(i + 1)}
		e.emit = e.emitDatagram
		g.exps = append(g.exps, e)
	}
	return g, nil
}

// Phases returns the generator's schedule (the scenario's, with the configured victims
// and attack rate).
func (g *Generator) Phases() []Phase { return append([]Phase(nil), g.phases...) }

// Exporters describes the simulated routers.
func (g *Generator) Exporters() []ExporterInfo {
	out := make([]ExporterInfo, len(g.exps))
	for i, e := range g.exps {
		out[i] = ExporterInfo{Addr: e.addr, Name: "edge" + strconv.Itoa(i+1), Domain: e.domain, Interfaces: interfaces()}
	}
	return out
}

// Stats returns the counts so far. It is safe to call while Run runs.
func (g *Generator) Stats() Stats {
	g.mu.Lock()
	defer g.mu.Unlock()
	s := g.pub
	s.Phases = append([]PhaseStats(nil), s.Phases...)
	return s
}

func (g *Generator) snapshot() Stats {
	s := g.st
	s.Phases = append([]PhaseStats(nil), g.st.Phases...)
	return s
}

func (g *Generator) publish() {
	g.mu.Lock()
	g.pub.Datagrams, g.pub.Records, g.pub.Bytes = g.st.Datagrams, g.st.Records, g.st.Bytes
	g.pub.SendErrors, g.pub.MaxLag = g.st.SendErrors, g.st.MaxLag
	copy(g.pub.Phases, g.st.Phases)
	g.mu.Unlock()
}

// start prepares the simulation to begin at origin.
func (g *Generator) start(origin time.Time, d time.Duration) error {
	if g.ran {
		return errors.New("gen: a Generator runs only once")
	}
	g.ran = true
	g.origin = origin.Truncate(time.Millisecond).UnixNano()
	if d > 0 {
		g.end = int64((d + tick - 1) / tick)
	}
	horizon := g.active
	if g.sflow {
		horizon = int64(sflowChunk)
	}
	g.wheel = newWheel(g.origin, int64(tick), horizon+int64(time.Second))
	for _, e := range g.exps {
		// Routers have been up for a while: between an hour and 30 days, in whole
		// milliseconds so that uptimes convert back to the same instants.
		up := int64(g.rng.between(3600, 30*86400))*1e9 + int64(g.rng.n(1000))*1e6
		e.enc = NewEncoder(g.format, Header{Boot: g.origin - up, Domain: e.domain, Agent: e.addr})
		e.nextCounters = g.origin + int64(e.idx+1)*int64(2*time.Second)
	}
	if g.cfg.Rate > 0 {
		g.bulk = make([]longSession, (g.cfg.Rate+1999)/2000)
		for i := range g.bulk {
			g.bulk[i].next = g.origin + int64(i)*int64(7*time.Second)
		}
		g.speed = make([]longSession, (g.cfg.Rate+1999)/2000+1)
		for i := range g.speed {
			g.speed[i].next = g.origin + int64(g.rng.between(5, 40))*1e9
		}
	}
	return nil
}

func (g *Generator) done() bool { return g.end > 0 && g.k >= g.end }

// step simulates tick g.k: new flows, then the exports due, then the datagrams.
func (g *Generator) step() error {
	t0 := g.origin + g.k*int64(tick)
	t1 := t0 + int64(tick)
	off := time.Duration(t0 - g.origin)
	pi := g.phase
	if pi < 0 || !g.phases[pi].Contains(off) {
		pi = PhaseAt(g.phases, off)
		g.phase = pi
		if g.cfg.OnPhase != nil && pi >= 0 {
			g.cfg.OnPhase(g.phases[pi], time.Unix(0, t0))
		}
	}
	for _, e := range g.exps {
		e.now = t1
	}
	g.wheel.cur = g.k
	g.background(t0, uint8(pi))
	if p := &g.phases[pi]; p.Name != PhaseNormal {
		g.attack(p, t0, uint8(pi))
	}
	if err := g.expire(t1, false); err != nil {
		return err
	}
	if err := g.flush(t1, false); err != nil {
		return err
	}
	g.k++
	return nil
}

// expire handles the flows of the current slot at time now. With drain set it handles
// every flow in the cache instead, exporting what has happened up to now, as a router
// flushes its cache when export stops.
func (g *Generator) expire(now int64, drain bool) error {
	w := g.wheel
	first, last := w.cur, w.cur
	if drain {
		last = w.cur + int64(len(w.slots)) - 1
	}
	for k := first; k <= last; k++ {
		w.drain(k, func(f *gflow) {
			if g.handle(f, now, drain) {
				w.add(g.nextEvent(f), f)
			}
		})
		if drain {
			// Send full datagrams slot by slot rather than holding the whole cache's
			// records at once.
			if err := g.flush(now, false); err != nil {
				return err
			}
		}
	}
	return nil
}

// nextEvent is when the cache next looks at f: NetFlow exports a flow when its active
// timeout expires or, once it has ended, after the inactive timeout (TCP flows that
// ended with FIN or RST right away, as Cisco's cache does); sFlow offers packets to the
// sampler as they pass.
func (g *Generator) nextEvent(f *gflow) int64 {
	if g.sflow {
		return min(f.seg+int64(sflowChunk), f.end)
	}
	if f.end > f.seg+g.active {
		return f.seg + g.active
	}
	t := f.end + g.inactive
	if f.proto == flow.ProtoTCP && f.flags&(flow.FlagFIN|flow.FlagRST) != 0 {
		t = f.end
	}
	return min(t, f.seg+g.active)
}

// addFlow puts a new flow into the cache.
func (g *Generator) addFlow(f *gflow) {
	f.seg = f.start
	g.wheel.add(g.nextEvent(f), f)
}

// handle exports (or samples) the part of f that is due and reports whether f stays in
// the cache.
func (g *Generator) handle(f *gflow, now int64, drain bool) bool {
	if g.sflow {
		b := min(f.seg+int64(sflowChunk), f.end)
		if drain {
			b = min(now, f.end)
		}
		g.sample(f, f.cum(b))
		if drain || b >= f.end {
			return false
		}
		f.seg = b
		return true
	}
	if drain {
		g.record(f, f.cum(now))
		return false
	}
	if f.end > f.seg+g.active {
		b := f.seg + g.active
		g.record(f, f.cum(b))
		f.seg = b
		return true
	}
	g.record(f, f.pkts)
	return false
}

// record exports packets [f.done, k) of f as one flow record.
func (g *Generator) record(f *gflow, k uint32) {
	if k <= f.done {
		return
	}
	e := g.exps[f.exp]
	r := g.newRecord(e, f)
	r.Packets = uint64(k - f.done)
	r.Bytes = f.cumBytes(k) - f.cumBytes(f.done)
	r.Start, r.End = f.pktTime(f.done), f.pktTime(k-1)
	fl := f.flags
	if f.proto == flow.ProtoTCP {
		// SYN is seen in the first record of a long flow, FIN/RST in the last.
		if f.done > 0 {
			fl &^= flow.FlagSYN
		}
		if k < f.pkts {
			fl &^= flow.FlagFIN | flow.FlagRST
		}
	}
	r.TCPFlags = fl
	f.done = k
	g.countRecord(f, r.Packets)
}

// sample offers packets [f.done, k) to the exporter's sampler; each sampled packet
// becomes one record (an sFlow flow sample).
func (g *Generator) sample(f *gflow, k uint32) {
	if k <= f.done {
		return
	}
	e := g.exps[f.exp]
	m := uint64(k - f.done)
	b := f.cumBytes(k) - f.cumBytes(f.done)
	e.ifs[f.inIf].inPkts += m
	e.ifs[f.inIf].inOctets += b + m*(ethLen+fcsLen)
	e.ifs[f.outIf].outPkts += m
	e.ifs[f.outIf].outOctets += b + m*(ethLen+fcsLen)
	e.enc.SeenPackets(uint32(f.inIf), m)
	for e.skip < m {
		i := f.done + uint32(e.skip)
		r := g.newRecord(e, f)
		r.Packets = 1
		r.Bytes = f.cumBytes(i+1) - f.cumBytes(i)
		r.Start = f.pktTime(i)
		r.End = r.Start
		fl := f.flags
		if f.proto == flow.ProtoTCP && f.pkts > 1 {
			// One packet's flags: the handshake, the closing FIN/RST, or data.
			switch i {
			case 0:
				fl &= flow.FlagSYN | flow.FlagACK
			case f.pkts - 1:
				fl &= flow.FlagFIN | flow.FlagRST | flow.FlagACK
			default:
				fl = flow.FlagACK | fl&flow.FlagPSH
			}
		}
		r.TCPFlags = fl
		g.countRecord(f, 1)
		e.skip += g.gap()
	}
	e.skip -= m
	f.done = k
}

// gap draws the distance to the next sampled packet: geometric with mean N, which makes
// every packet sampled independently with probability 1/N.
func (g *Generator) gap() uint64 {
	if g.lnq == 0 {
		return 1
	}
	u := 1 - g.rng.float() // (0, 1]
	return 1 + uint64(math.Log(u)/g.lnq)
}

func (g *Generator) countRecord(f *gflow, pkts uint64) {
	ps := &g.st.Phases[f.phase]
	ps.Records++
	ps.Packets += pkts
	if f.attack {
		ps.AttackRecords++
		ps.AttackPackets += pkts
	}
}

var (
	hasNetFlow = flow.HasSrcAddr | flow.HasDstAddr | flow.HasNextHop | flow.HasSrcPort | flow.HasDstPort |
		flow.HasProto | flow.HasTCPFlags | flow.HasTOS | flow.HasInIf | flow.HasOutIf | flow.HasPackets |
		flow.HasBytes | flow.HasStart | flow.HasEnd | flow.HasSrcAS | flow.HasDstAS | flow.HasSrcMask | flow.HasDstMask
	hasSFlow = hasNetFlow &^ (flow.HasStart | flow.HasEnd | flow.HasSrcAS | flow.HasDstAS)
)

var versions = [...]uint8{FormatV5: flow.VersionNetFlow5, FormatV9: flow.VersionNetFlow9, FormatIPFIX: flow.VersionIPFIX, FormatSFlow: flow.VersionSFlow5}

// newRecord appends a record for f to the exporter's pending list and fills the fields
// that do not depend on which packets it covers.
func (g *Generator) newRecord(e *exporter, f *gflow) *flow.Record {
	if len(e.pending) == 0 {
		e.pendingSince = e.now
	}
	e.pending = append(e.pending, flow.Record{})
	r := &e.pending[len(e.pending)-1]
	r.Exporter = e.addr
	r.Version = versions[g.format]
	r.ObservationDomain = e.domain
	r.SrcAddr = u32Addr(f.src)
	r.DstAddr = u32Addr(f.dst)
	// Next hop: the upstream router for traffic leaving on an uplink, the aggregation
	// router for traffic towards customers.
	nh := uint32(10)<<24 | uint32(254)<<16 | uint32(f.exp)<<8 | uint32(f.outIf)
	if f.outIf <= numUplinks {
		nh |= 1 << 16
	}
	r.NextHop = u32Addr(nh)
	r.InIf, r.OutIf = uint32(f.inIf), uint32(f.outIf)
	r.SrcPort, r.DstPort = f.sport, f.dport
	r.Proto, r.TOS = f.proto, f.tos
	r.SrcMask, r.SrcAS = maskAS(f.src)
	r.DstMask, r.DstAS = maskAS(f.dst)
	if g.sflow {
		r.Has = hasSFlow
		r.SamplingRate = uint32(g.cfg.SamplingRate)
		r.SrcAS, r.DstAS = 0, 0
	} else {
		r.Has = hasNetFlow
	}
	return r
}

// maskAS returns the prefix length and origin AS a router's routing table gives an
// address: the customer /24s are local (AS 0, as NetFlow reports the own AS).
func maskAS(a uint32) (uint8, uint32) {
	if isCustomer(a) {
		return customerMask, 0
	}
	h := mix32(a)
	return remoteMasks[h&7], docASNs[h>>8%uint32(len(docASNs))]
}

// flush encodes the exporters' pending records: full datagrams always, partly filled
// ones once they have waited holdMax (or when all is set).
func (g *Generator) flush(now int64, all bool) error {
	for _, e := range g.exps {
		if g.sflow && now >= e.nextCounters {
			e.nextCounters += int64(counterInterval)
			if err := e.enc.EncodeCounters(now, e.ifCounters(), e.emit); err != nil {
				return err
			}
		}
		if len(e.pending) == 0 {
			continue
		}
		partial := all || now-e.pendingSince >= int64(holdMax)
		n, err := e.enc.Encode(now, e.pending, partial, e.emit)
		rest := copy(e.pending, e.pending[n:])
		e.pending = e.pending[:rest]
		if n > 0 && rest > 0 {
			e.pendingSince = now
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func (e *exporter) ifCounters() []IfCounters {
	e.counters = e.counters[:0]
	for _, it := range interfaces() {
		s := &e.ifs[it.Index]
		e.counters = append(e.counters, IfCounters{
			Index: it.Index, Speed: it.Speed,
			InOctets: s.inOctets, InPackets: uint32(s.inPkts),
			OutOctets: s.outOctets, OutPackets: uint32(s.outPkts),
		})
	}
	return e.counters
}

func (e *exporter) emitDatagram(p []byte, recs []flow.Record) error {
	g := e.g
	g.st.Datagrams++
	g.st.Records += uint64(len(recs))
	g.st.Bytes += uint64(len(p))
	if g.phase >= 0 {
		g.st.Phases[g.phase].Datagrams++
	}
	return g.send(e, p, recs)
}

// Simulate runs the scenario for d (the configured Duration when d is 0) in simulated
// time from start, as fast as it can, handing each datagram to emit instead of sending
// it. The Datagram and its slices are only valid during the call. With a fixed Seed and
// start, the output is the same on every run.
func (g *Generator) Simulate(start time.Time, d time.Duration, emit func(*Datagram) error) error {
	if d == 0 {
		d = g.cfg.Duration
	}
	if d <= 0 {
		return errors.New("gen: Simulate needs a duration")
	}
	if err := g.start(start, d); err != nil {
		return err
	}
	var dg Datagram
	g.send = func(e *exporter, p []byte, recs []flow.Record) error {
		dg = Datagram{Exporter: e.addr, Time: e.now, Payload: p, Records: recs}
		return emit(&dg)
	}
	for !g.done() {
		if err := g.step(); err != nil {
			return err
		}
	}
	err := g.finish(g.origin + g.k*int64(tick))
	g.publish()
	return err
}

// finish drains the flow cache and sends what is left.
func (g *Generator) finish(now int64) error {
	g.wheel.cur = g.k
	for _, e := range g.exps {
		e.now = now
	}
	if err := g.expire(now, true); err != nil {
		return err
	}
	return g.flush(now, true)
}
