package ingest

import (
	"cmp"
	"net/netip"
	"slices"
	"time"
)

// ExporterStats is the accounting of one exporter (the address datagrams come from).
// The entry whose Exporter is the zero Addr counts datagrams refused because the
// exporter table was full.
type ExporterStats struct {
	Exporter       netip.Addr `json:"exporter"`
	Datagrams      uint64     `json:"datagrams"`       // datagrams received, good or bad
	Records        uint64     `json:"records"`         // flow records decoded (before sampling scale-up)
	OptionsRecords uint64     `json:"options_records"` // v9/IPFIX options data records read (sampling, tables)

	// Drops counts, by reason, datagrams, sets, templates and records that were lost
	// or refused. Quirks counts, by reason, oddities that cost nothing (a header count
	// that disagrees with the records walked by length, trailing bytes, a field of an
	// impossible length that was skipped, an absurd sampling rate that was ignored).
	Drops  map[string]uint64 `json:"drops"`
	Quirks map[string]uint64 `json:"quirks"`

	// LostFlows counts flows lost to sequence gaps: exact where the sequence counts
	// flows (v5, v7, v8, IPFIX), estimated from the mean records per datagram where it
	// counts datagrams (v9, sFlow). LostDatagrams counts the gaps of the latter.
	LostFlows     uint64 `json:"lost_flows"`
	LostDatagrams uint64 `json:"lost_datagrams"`
	Restarts      uint64 `json:"restarts"`  // sequence restarted near zero: the exporter rebooted
	Reordered     uint64 `json:"reordered"` // datagrams older than the one before (late or duplicated)

	Templates       int    `json:"templates"`        // v9/IPFIX templates held
	TemplateChanges uint64 `json:"template_changes"` // templates replaced by a different shape under the same id
	Pending         int    `json:"pending"`          // data sets waiting for their template

	SamplingRate   uint32 `json:"sampling_rate"`   // latest rate applied (1 in N); 0 when unsampled
	SamplingSource string `json:"sampling_source"` // "config", "header" (v5), "options", "record", "sflow"

	ClockSkew time.Duration `json:"clock_skew"` // export time minus arrival time, latest datagram
	LastSeen  int64         `json:"last_seen"`  // arrival of the latest datagram, Unix ns

	SFlowAgent netip.Addr          `json:"sflow_agent"` // agent address an sFlow exporter reports
	Domains    []DomainStats       `json:"domains"`
	Interfaces []InterfaceCounters `json:"interfaces"` // from sFlow counter samples, by index
}

// DomainStats is the accounting of one sequence stream: a v5/v7/v8 engine, a v9 source
// id, an IPFIX observation domain or an sFlow sub-agent.
type DomainStats struct {
	Version       uint8  `json:"version"` // flow.Version* constant
	Domain        uint32 `json:"domain"`
	Datagrams     uint64 `json:"datagrams"`
	Records       uint64 `json:"records"`
	NextSequence  uint32 `json:"next_sequence"` // sequence number expected next
	LostFlows     uint64 `json:"lost_flows"`
	LostDatagrams uint64 `json:"lost_datagrams"`
	Restarts      uint64 `json:"restarts"`
	Reordered     uint64 `json:"reordered"`
	SamplingRate  uint32 `json:"sampling_rate"` // domain-wide rate from options data
}

// InterfaceCounters are the generic interface counters (sFlow counter record 0:1) of
// one interface, as last reported.
type InterfaceCounters struct {
	Index            uint32 `json:"index"`
	Type             uint32 `json:"type"`
	Speed            uint64 `json:"speed"`     // bits per second
	Direction        uint32 `json:"direction"` // 0 unknown, 1 full duplex, 2 half, 3 in, 4 out
	Status           uint32 `json:"status"`    // bit 0 admin up, bit 1 oper up
	InOctets         uint64 `json:"in_octets"`
	InUcastPkts      uint64 `json:"in_ucast_pkts"`
	InMulticastPkts  uint64 `json:"in_multicast_pkts"`
	InBroadcastPkts  uint64 `json:"in_broadcast_pkts"`
	InDiscards       uint64 `json:"in_discards"`
	InErrors         uint64 `json:"in_errors"`
	InUnknownProtos  uint64 `json:"in_unknown_protos"`
	OutOctets        uint64 `json:"out_octets"`
	OutUcastPkts     uint64 `json:"out_ucast_pkts"`
	OutMulticastPkts uint64 `json:"out_multicast_pkts"`
	OutBroadcastPkts uint64 `json:"out_broadcast_pkts"`
	OutDiscards      uint64 `json:"out_discards"`
	OutErrors        uint64 `json:"out_errors"`
	Updated          int64  `json:"updated"` // arrival of the sample, Unix ns
}

// quirk reports whether a reason costs nothing (counted under Quirks, not Drops).
func (r Reason) quirk() bool {
	return r == ReasonCountMismatch || r == ReasonLength || r == ReasonBadField || r == ReasonBadSampling
}

type samplingSource uint8

const (
	srcNone samplingSource = iota
	srcConfig
	srcHeader
	srcOptions
	srcRecord
	srcSFlow
)

var samplingSourceNames = [...]string{"", "config", "header", "options", "record", "sflow"}

// exporter is the state kept per exporter address.
type exporter struct {
	addr     netip.Addr
	override uint32 // DecoderConfig.Sampling

	datagrams, records, optRecords uint64
	drops                          [numReasons]uint64
	lastSeen, skew                 int64
	rate                           uint32
	rateSrc                        samplingSource
	agent                          netip.Addr

	templates       map[tmplKey]*template
	templateChanges uint64

	domains  map[domKey]*domain
	lastDom  *domain
	spareDom domain // stands in for domains beyond maxDomains: decodes, keeps nothing

	pending  []pendingSet // allocated on first use
	npending int

	ifaces    map[uint32]*InterfaceCounters
	maxIfaces int

	shared *shared
}

// maxDomains bounds the sequence streams per exporter and maxDomainsTotal over all
// exporters; further ones are decoded without sequence accounting.
const (
	maxDomains      = 256
	maxDomainsTotal = 65536
)

// shared holds the counts that are bounded over all exporters.
type shared struct {
	templates, domains int
}

func newExporter(addr netip.Addr, cfg DecoderConfig, sh *shared) *exporter {
	ex := &exporter{
		addr:      addr,
		shared:    sh,
		templates: make(map[tmplKey]*template),
		domains:   make(map[domKey]*domain),
		maxIfaces: cfg.MaxInterfaces,
	}
	if r, ok := cfg.Sampling[addr]; ok && r > 0 {
		ex.override = r
		ex.rate, ex.rateSrc = r, srcConfig
	}
	return ex
}

func (ex *exporter) setRate(r uint32, src samplingSource) {
	if ex.override == 0 {
		ex.rate, ex.rateSrc = r, src
	}
}

type domKey struct {
	version uint8
	id      uint32
}

// domain is the state of one sequence stream: sequence accounting and, for v9/IPFIX,
// what options data said about sampling and uptime.
type domain struct {
	key domKey

	seqOK                                       bool
	next                                        uint32
	datagrams, records                          uint64
	lostFlows, lostDatagrams, restarts, reorder uint64

	rate      uint32    // domain-wide sampling rate from options data
	samplers  []sampler // per sampler/selector id, from options data
	sysInitMs int64     // IPFIX systemInitTimeMilliseconds, 0 unknown
}

type sampler struct {
	id   uint64
	rate uint32
}

func (ex *exporter) domain(version uint8, id uint32) *domain {
	if dm := ex.lastDom; dm != nil && dm.key.version == version && dm.key.id == id {
		return dm
	}
	k := domKey{version, id}
	dm := ex.domains[k]
	if dm == nil {
		if len(ex.domains) >= maxDomains || ex.shared.domains >= maxDomainsTotal {
			ex.spareDom = domain{key: k}
			return &ex.spareDom
		}
		dm = &domain{key: k}
		ex.domains[k] = dm
		ex.shared.domains++
	}
	ex.lastDom = dm
	return dm
}

func (dm *domain) samplerRate(id uint64) uint32 {
	for i := range dm.samplers {
		if dm.samplers[i].id == id {
			return dm.samplers[i].rate
		}
	}
	return dm.rate
}

// setSampler records the rate of sampler id and reports whether that changed anything.
func (dm *domain) setSampler(id uint64, rate uint32) bool {
	for i := range dm.samplers {
		if dm.samplers[i].id == id {
			if dm.samplers[i].rate == rate {
				return false
			}
			dm.samplers[i].rate = rate
			return true
		}
	}
	if len(dm.samplers) >= maxSamplers {
		copy(dm.samplers, dm.samplers[1:])
		dm.samplers = dm.samplers[:len(dm.samplers)-1]
	}
	dm.samplers = append(dm.samplers, sampler{id, rate})
	return true
}

// Sequence accounting bounds. A forward jump below maxSeqGap is loss; a sequence that
// falls back below restartWindow is an exporter restart (not a 4-billion gap); other
// backward steps are late or duplicated datagrams; larger forward jumps resynchronise
// without counting, since no real outage loses 16 million datagrams or flows between
// two datagrams that both arrive.
const (
	maxSeqGap     = 1 << 24
	restartWindow = 1 << 16
)

// sequence checks seq against the number expected and returns the gap it counts as
// lost (0 when none).
func (dm *domain) sequence(seq uint32) uint32 {
	if !dm.seqOK {
		return 0
	}
	gap := seq - dm.next
	switch {
	case gap == 0:
		return 0
	case gap < maxSeqGap:
		return gap
	case seq < restartWindow:
		dm.restarts++
	case int32(gap) < 0:
		dm.reorder++
	}
	return 0
}

// seqFlows accounts a datagram whose sequence number counts flows (records), n of
// them in this datagram.
func (dm *domain) seqFlows(seq uint32, n uint32) {
	late := dm.seqOK && int32(seq-dm.next) < 0 && seq >= restartWindow
	dm.lostFlows += uint64(dm.sequence(seq))
	dm.datagrams++
	dm.records += uint64(n)
	if !late {
		dm.next, dm.seqOK = seq+n, true
	}
}

// seqDatagrams accounts a datagram whose sequence number counts datagrams.
func (dm *domain) seqDatagrams(seq uint32, n uint32) {
	late := dm.seqOK && int32(seq-dm.next) < 0 && seq >= restartWindow
	dm.lostDatagrams += uint64(dm.sequence(seq))
	dm.datagrams++
	dm.records += uint64(n)
	if !late {
		dm.next, dm.seqOK = seq+1, true
	}
}

// Exporters returns the accounting of every exporter seen, ordered by address.
func (d *Decoder) Exporters() []ExporterStats {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]ExporterStats, 0, len(d.exporters)+1)
	if d.overflow != nil && d.overflow.datagrams > 0 {
		out = append(out, d.overflow.stats())
	}
	for _, ex := range d.exporters {
		out = append(out, ex.stats())
	}
	slices.SortFunc(out, func(a, b ExporterStats) int { return a.Exporter.Compare(b.Exporter) })
	return out
}

func (ex *exporter) stats() ExporterStats {
	s := ExporterStats{
		Exporter:        ex.addr,
		Datagrams:       ex.datagrams,
		Records:         ex.records,
		OptionsRecords:  ex.optRecords,
		Drops:           map[string]uint64{},
		Quirks:          map[string]uint64{},
		Templates:       len(ex.templates),
		TemplateChanges: ex.templateChanges,
		Pending:         ex.npending,
		SamplingRate:    ex.rate,
		SamplingSource:  samplingSourceNames[ex.rateSrc],
		ClockSkew:       time.Duration(ex.skew),
		LastSeen:        ex.lastSeen,
		SFlowAgent:      ex.agent,
	}
	for r, n := range ex.drops {
		if n == 0 {
			continue
		}
		if Reason(r).quirk() {
			s.Quirks[Reason(r).String()] = n
		} else {
			s.Drops[Reason(r).String()] = n
		}
	}
	for _, dm := range ex.domains {
		ds := DomainStats{
			Version: dm.key.version, Domain: dm.key.id,
			Datagrams: dm.datagrams, Records: dm.records, NextSequence: dm.next,
			LostFlows: dm.lostFlows, LostDatagrams: dm.lostDatagrams,
			Restarts: dm.restarts, Reordered: dm.reorder, SamplingRate: dm.rate,
		}
		if dm.lostDatagrams > 0 && dm.datagrams > 0 {
			ds.LostFlows += dm.lostDatagrams * dm.records / dm.datagrams
		}
		s.Domains = append(s.Domains, ds)
		s.LostFlows += ds.LostFlows
		s.LostDatagrams += ds.LostDatagrams
		s.Restarts += ds.Restarts
		s.Reordered += ds.Reordered
	}
	slices.SortFunc(s.Domains, func(a, b DomainStats) int {
		return cmp.Or(cmp.Compare(a.Version, b.Version), cmp.Compare(a.Domain, b.Domain))
	})
	for _, c := range ex.ifaces {
		s.Interfaces = append(s.Interfaces, *c)
	}
	slices.SortFunc(s.Interfaces, func(a, b InterfaceCounters) int { return cmp.Compare(a.Index, b.Index) })
	return s
}

// setSkew records the exporter's clock skew from a header's export time.
func (ex *exporter) setSkew(exportNs, received int64) {
	if exportNs > 0 && received > 0 {
		ex.skew = exportNs - received
	}
}
