package ingest

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"

	"github.com/flowhound/flowhound/flow"
)

// Template bounds. maxTemplateFields is far above what exporters send (the corpus
// tops out at 47) but keeps a hostile template from costing more than a few KiB.
const (
	maxTemplateFields = 256
	varLen            = 0xFFFF // IPFIX variable-length field marker
	maxSamplers       = 64     // sampler/selector ids remembered per observation domain
)

// fieldSpec is one (type, length, enterprise) entry of a template as the exporter sent
// it.
type fieldSpec struct {
	typ uint16 // information element number, without the enterprise bit
	len uint16 // varLen for variable-length fields
	pen uint32 // enterprise number, 0 for IETF elements
}

type tmplKey struct {
	version uint8
	domain  uint32
	id      uint16
}

// template is a learned template compiled for decoding: the fields flowhound uses are
// sorted by width into lists of (offset, slot), so that reading a record is a few
// tight loops of loads with no per-field branching, and the record is then assembled
// from the slots in straight-line code.
type template struct {
	key       tmplKey
	options   bool
	raw       []byte // the template record as sent, to tell a refresh from a change
	learnedAt int64  // arrival of the datagram that brought this shape, Unix ns
	specs     []fieldSpec
	recLen    int  // record length; the minimum length when variable
	variable  bool // has variable-length fields: offsets differ per record

	w1, w2, w4, w8, wn []rop // fields read as integers, by width (wn: 3, 5, 6, 7 bytes)
	a16                []rop // IPv6 addresses, read in place
	sec                []rop // PSAMP packet sections, parsed in place
	present            uint64
	cond6              uint64 // IPv6 slots used only when not :: (the IPv4 one is there too)
	has                uint32 // flow.Has* bits of the records it yields
	startMode, endMode uint8  // tm* time encodings
	obsMode            uint8  // tm* encoding of a PSAMP observation time
}

// rop is one field to read: where it is and which value slot it fills.
type rop struct {
	off uint16 // byte offset in a fixed-length record
	idx uint16 // field index (variable-length records)
	n   uint16 // field length (packet sections: up to 65535)
	tg  uint8  // value slot
	w   uint8  // width in bytes of an integer field
}

// Value slots: where a field's value goes while a record is read. When a template
// carries several elements for one slot (bytes as octetDeltaCount and
// octetTotalCount, say), the one with the lowest priority number is used.
const (
	tNone uint8 = iota
	tSrc4
	tDst4
	tNH4
	tSrc6
	tDst6
	tNH6
	tSrcPort
	tDstPort
	tProto
	tFlags
	tTOS
	tIn
	tOut
	tPkts
	tBytes
	tFlows
	tSrcAS
	tDstAS
	tSrcMask
	tDstMask
	tStart
	tEnd
	tRate
	tSampler
	tSysInit
	tObs   // PSAMP observation time: start and end of a one-packet record
	tSecL2 // PSAMP dataLinkFrameSection
	tSecIP // PSAMP ipHeaderPacketSection
	// options data
	tOptID
	tOptInterval
	tOptRandom
	tOptPInterval
	tOptPSpace
	tOptSize
	tOptPopulation
	tOptInit
	numTargets
)

// slots holds the values of one record; 64 entries so that indexing with tg&63 needs
// no bounds check.
type slots [64]uint64

const bit = uint64(1)

// Time encodings.
const (
	tmNone    uint8 = iota
	tmRel           // ms of sysUptime (FIRST/LAST_SWITCHED)
	tmSec           // dateTimeSeconds
	tmMs            // dateTimeMilliseconds
	tmNTP           // dateTimeMicro/Nanoseconds: 64-bit NTP timestamp
	tmDeltaUs       // microseconds before export time
)

// Allowed field lengths.
const (
	lenAddr4 uint8 = iota + 1
	lenAddr6
	lenUint // 1 to 8 bytes (reduced-size encoding)
	lenNTP  // 8 bytes
	lenAny  // any length, variable included (packet sections)
)

type ieInfo struct {
	target, prio, lens, mode uint8
}

var dataIEs, optionIEs map[uint16]ieInfo

func init() {
	dataIEs = map[uint16]ieInfo{
		8:   {tSrc4, 0, lenAddr4, 0},
		12:  {tDst4, 0, lenAddr4, 0},
		15:  {tNH4, 0, lenAddr4, 0},
		18:  {tNH4, 1, lenAddr4, 0}, // BGP next hop: only when the IP one is absent
		27:  {tSrc6, 0, lenAddr6, 0},
		28:  {tDst6, 0, lenAddr6, 0},
		62:  {tNH6, 0, lenAddr6, 0},
		63:  {tNH6, 1, lenAddr6, 0},
		7:   {tSrcPort, 0, lenUint, 0},
		180: {tSrcPort, 1, lenUint, 0},
		182: {tSrcPort, 1, lenUint, 0},
		11:  {tDstPort, 0, lenUint, 0},
		181: {tDstPort, 1, lenUint, 0},
		183: {tDstPort, 1, lenUint, 0},
		4:   {tProto, 0, lenUint, 0},
		6:   {tFlags, 0, lenUint, 0},
		5:   {tTOS, 0, lenUint, 0},
		10:  {tIn, 0, lenUint, 0},
		252: {tIn, 1, lenUint, 0},
		14:  {tOut, 0, lenUint, 0},
		253: {tOut, 1, lenUint, 0},
		2:   {tPkts, 0, lenUint, 0},
		86:  {tPkts, 1, lenUint, 0},
		24:  {tPkts, 2, lenUint, 0},
		298: {tPkts, 3, lenUint, 0},
		1:   {tBytes, 0, lenUint, 0},
		85:  {tBytes, 1, lenUint, 0},
		23:  {tBytes, 2, lenUint, 0},
		231: {tBytes, 3, lenUint, 0},
		3:   {tFlows, 0, lenUint, 0},
		16:  {tSrcAS, 0, lenUint, 0},
		17:  {tDstAS, 0, lenUint, 0},
		9:   {tSrcMask, 0, lenUint, 0},
		29:  {tSrcMask, 1, lenUint, 0},
		13:  {tDstMask, 0, lenUint, 0},
		30:  {tDstMask, 1, lenUint, 0},
		152: {tStart, 0, lenUint, tmMs},
		156: {tStart, 1, lenNTP, tmNTP},
		154: {tStart, 2, lenNTP, tmNTP},
		22:  {tStart, 3, lenUint, tmRel},
		150: {tStart, 4, lenUint, tmSec},
		158: {tStart, 5, lenUint, tmDeltaUs},
		153: {tEnd, 0, lenUint, tmMs},
		157: {tEnd, 1, lenNTP, tmNTP},
		155: {tEnd, 2, lenNTP, tmNTP},
		21:  {tEnd, 3, lenUint, tmRel},
		151: {tEnd, 4, lenUint, tmSec},
		159: {tEnd, 5, lenUint, tmDeltaUs},
		34:  {tRate, 0, lenUint, 0},
		50:  {tRate, 1, lenUint, 0},
		48:  {tSampler, 0, lenUint, 0},
		302: {tSampler, 1, lenUint, 0},
		160: {tSysInit, 0, lenUint, 0},
		// PSAMP packet reports (RFC 5476/5477): one sampled packet per record,
		// decoded from its header like an sFlow sample.
		315: {tSecL2, 0, lenAny, 0},
		313: {tSecIP, 0, lenAny, 0},
		312: {tBytes, 4, lenUint, 0}, // dataLinkFrameSize
		323: {tObs, 0, lenUint, tmMs},
		325: {tObs, 1, lenNTP, tmNTP},
		324: {tObs, 2, lenNTP, tmNTP},
		322: {tObs, 3, lenUint, tmSec},
	}
	optionIEs = map[uint16]ieInfo{
		48:  {tOptID, 0, lenUint, 0},
		302: {tOptID, 1, lenUint, 0},
		34:  {tOptInterval, 0, lenUint, 0},
		50:  {tOptRandom, 0, lenUint, 0},
		305: {tOptPInterval, 0, lenUint, 0},
		306: {tOptPSpace, 0, lenUint, 0},
		309: {tOptSize, 0, lenUint, 0},
		310: {tOptPopulation, 0, lenUint, 0},
		160: {tOptInit, 0, lenUint, 0},
	}
}

var targetHas = [numTargets]uint32{
	tSrc4: flow.HasSrcAddr, tSrc6: flow.HasSrcAddr,
	tDst4: flow.HasDstAddr, tDst6: flow.HasDstAddr,
	tNH4: flow.HasNextHop, tNH6: flow.HasNextHop,
	tSrcPort: flow.HasSrcPort, tDstPort: flow.HasDstPort,
	tProto: flow.HasProto, tFlags: flow.HasTCPFlags, tTOS: flow.HasTOS,
	tIn: flow.HasInIf, tOut: flow.HasOutIf,
	tPkts: flow.HasPackets, tBytes: flow.HasBytes, tFlows: flow.HasFlows,
	tSrcAS: flow.HasSrcAS, tDstAS: flow.HasDstAS,
	tSrcMask: flow.HasSrcMask, tDstMask: flow.HasDstMask,
	tStart: flow.HasStart, tEnd: flow.HasEnd,
}

func lenOK(lens uint8, n uint16) bool {
	switch lens {
	case lenAddr4:
		return n == 4
	case lenAddr6:
		return n == 16
	case lenUint:
		return n >= 1 && n <= 8
	case lenNTP:
		return n == 8
	case lenAny:
		return true
	}
	return false
}

// compile prepares t for decoding from t.specs. It returns refuse when the template
// cannot be used at all, and warn for fields it had to ignore. scope is the number of
// leading scope fields of an options template; v9 scope fields use their own type
// space (System, Interface, ...) and are never mapped.
func compile(t *template, proto string, scope int, v9 bool) (warn, refuse error) {
	var chosen [numTargets]struct {
		ok         bool
		prio, mode uint8
		o          rop
	}
	table := dataIEs
	if t.options {
		table = optionIEs
	}
	off, minLen := 0, 0
	t.variable = false
	for i, f := range t.specs {
		fieldOff := off
		if f.len == varLen {
			t.variable = true
			minLen++
		} else {
			minLen += int(f.len)
			off += int(f.len)
		}
		if f.len == 0 {
			if warn == nil {
				warn = &DecodeError{Proto: proto, Kind: ReasonBadField,
					Detail: fmt.Sprintf("template %d field %d length 0", t.key.id, i+1)}
			}
			continue
		}
		if f.pen != 0 || (v9 && i < scope) {
			continue // enterprise-specific: skipped by its length
		}
		info, ok := table[f.typ]
		if !ok {
			continue
		}
		if !lenOK(info.lens, f.len) {
			if warn == nil {
				warn = &DecodeError{Proto: proto, Kind: ReasonBadField,
					Detail: fmt.Sprintf("template %d field %d (type %d) length %d", t.key.id, i+1, f.typ, f.len)}
			}
			continue
		}
		c := &chosen[info.target]
		if c.ok && c.prio <= info.prio {
			continue
		}
		c.ok, c.prio, c.mode = true, info.prio, info.mode
		c.o = rop{off: uint16(min(fieldOff, 0xFFFF)), idx: uint16(i), n: f.len, tg: info.target, w: uint8(min(f.len, 0xFF))}
	}
	if minLen == 0 {
		return warn, &DecodeError{Proto: proto, Kind: ReasonBadTemplate,
			Detail: fmt.Sprintf("template %d: record length 0", t.key.id)}
	}
	if minLen > 0xFFFF-16 {
		return warn, &DecodeError{Proto: proto, Kind: ReasonBadTemplate,
			Detail: fmt.Sprintf("template %d: record length %d does not fit a datagram", t.key.id, minLen)}
	}
	t.recLen = minLen
	t.w1, t.w2, t.w4, t.w8, t.wn, t.a16, t.sec = nil, nil, nil, nil, nil, nil, nil
	t.present, t.cond6, t.has = 0, 0, 0
	for tg := range chosen {
		c := &chosen[tg]
		if !c.ok {
			continue
		}
		t.present |= bit << tg
		t.has |= targetHas[tg]
		if tg == int(tSecL2) || tg == int(tSecIP) {
			t.sec = append(t.sec, c.o)
			continue
		}
		switch c.o.w {
		case 1:
			t.w1 = append(t.w1, c.o)
		case 2:
			t.w2 = append(t.w2, c.o)
		case 4:
			t.w4 = append(t.w4, c.o)
		case 8:
			t.w8 = append(t.w8, c.o)
		case 16:
			t.a16 = append(t.a16, c.o)
		default:
			t.wn = append(t.wn, c.o)
		}
	}
	for _, p := range [][2]uint8{{tSrc4, tSrc6}, {tDst4, tDst6}, {tNH4, tNH6}} {
		if t.present&(bit<<p[0]) != 0 && t.present&(bit<<p[1]) != 0 {
			t.cond6 |= bit << p[1]
		}
	}
	t.startMode, t.endMode, t.obsMode = chosen[tStart].mode, chosen[tEnd].mode, chosen[tObs].mode
	if t.obsMode != tmNone && t.startMode == tmNone && t.endMode == tmNone {
		t.has |= flow.HasStart | flow.HasEnd
	}
	if len(t.sec) > 0 {
		// A packet report stands for the one packet it samples.
		t.has |= flow.HasPackets
	}
	return warn, nil
}

// learn stores a template received from ex, replacing an older one of the same key
// when its shape changed. raw is the template record as sent (copied when kept).
func (d *Decoder) learn(ex *exporter, proto string, key tmplKey, options bool, raw []byte, specs []fieldSpec, scope int) error {
	old := ex.templates[key]
	if old != nil && old.options == options && bytes.Equal(old.raw, raw) {
		return nil // a refresh: exporters resend templates every few seconds
	}
	if old == nil && len(ex.templates) >= d.cfg.MaxTemplates {
		return d.fail(ex, proto, ReasonTemplateLimit, "template %d refused: exporter already has %d templates", key.id, len(ex.templates))
	}
	if old == nil && d.shared.templates >= d.cfg.MaxTemplatesTotal {
		return d.fail(ex, proto, ReasonTemplateLimit, "template %d refused: %d templates held over all exporters", key.id, d.shared.templates)
	}
	t, warn, refuse := newTemplate(proto, key, options, raw, specs, scope)
	if warn != nil {
		ex.drops[ReasonBadField]++
	}
	if refuse != nil {
		ex.drops[ReasonBadTemplate]++
		if old != nil {
			// The id now names a shape that cannot be decoded: forget the old one
			// rather than misread new data with it.
			d.withdraw(ex, key)
		}
		return refuse
	}
	if old != nil {
		ex.templateChanges++
	} else {
		d.shared.templates++
	}
	t.learnedAt = ex.lastSeen
	ex.templates[key] = t
	d.learned = true
	d.saveGen++
	return warn
}

// newTemplate builds and compiles a template from a template record as sent (raw)
// and its fields as read (specs); raw and specs are copied.
func newTemplate(proto string, key tmplKey, options bool, raw []byte, specs []fieldSpec, scope int) (t *template, warn, refuse error) {
	t = &template{key: key, options: options}
	t.raw = append(t.raw, raw...)
	t.specs = append(t.specs, specs...)
	warn, refuse = compile(t, proto, scope, key.version == flow.VersionNetFlow9)
	return t, warn, refuse
}

// badTemplate is the error of a template record that is refused.
func badTemplate(proto, format string, args ...any) error {
	return &DecodeError{Proto: proto, Kind: ReasonBadTemplate, Detail: fmt.Sprintf(format, args...)}
}

// withdraw forgets a template (IPFIX template withdrawal).
func (d *Decoder) withdraw(ex *exporter, key tmplKey) {
	if _, ok := ex.templates[key]; ok {
		delete(ex.templates, key)
		d.shared.templates--
		d.saveGen++
	}
}

// dgram is what the records of one data set need from their datagram's header.
type dgram struct {
	ex        *exporter
	dom       *domain
	received  int64
	exportNs  int64  // export time, Unix ns
	uptime    uint32 // sysUptime at export (v9), ms
	hasUptime bool
	version   uint8
	proto     string
}

// dataSet decodes a data set for template id, or parks it when the template is not
// known yet. It returns the records appended and the number of data records seen (for
// IPFIX sequence accounting), or -1 when that number is unknown.
func (d *Decoder) dataSet(g *dgram, id uint16, body []byte, dst []flow.Record) ([]flow.Record, int, error) {
	t := g.ex.templates[tmplKey{g.version, g.dom.key.id, id}]
	if t == nil {
		return dst, -1, d.park(g, id, body)
	}
	return d.decodeSet(g, t, body, dst)
}

// decodeSet decodes every record of body with t. Bytes after the last record that are
// too few for one more are padding.
func (d *Decoder) decodeSet(g *dgram, t *template, body []byte, dst []flow.Record) ([]flow.Record, int, error) {
	if t.options {
		n, err := d.optionsSet(g, t, body)
		g.ex.optRecords += uint64(n)
		return dst, n, err
	}
	base := flow.Record{
		Received:          g.received,
		Exporter:          g.ex.addr,
		ObservationDomain: g.dom.key.id,
		Version:           g.version,
		Has:               t.has,
	}
	if g.ex.override != 0 {
		base.SamplingRate = g.ex.override
	} else {
		base.SamplingRate = g.dom.rate
	}
	start := len(dst)
	var err error
	if len(body) < t.recLen && !allZero(body) {
		// Not padding: a record longer than its set (an oversized field, or a set cut
		// short). Nothing can be decoded; say so rather than drop it silently.
		return dst, 0, d.fail(g.ex, g.proto, ReasonTruncated, "template %d: data set of %d bytes, shorter than one %d-byte record", t.key.id, len(body), t.recLen)
	}
	var v slots // slots a template does not fill stay 0 for all its records
	if !t.variable {
		n := len(body) / t.recLen
		dst = grow(dst, n)
		for i := 0; i < n; i++ {
			rec := body[i*t.recLen : (i+1)*t.recLen]
			for _, o := range t.w4 {
				v[o.tg&63] = uint64(binary.BigEndian.Uint32(rec[o.off:]))
			}
			for _, o := range t.w2 {
				v[o.tg&63] = uint64(binary.BigEndian.Uint16(rec[o.off:]))
			}
			for _, o := range t.w1 {
				v[o.tg&63] = uint64(rec[o.off])
			}
			for _, o := range t.w8 {
				v[o.tg&63] = binary.BigEndian.Uint64(rec[o.off:])
			}
			for _, o := range t.wn {
				v[o.tg&63] = uintN(rec[o.off : int(o.off)+int(o.w)])
			}
			dst = append(dst, base)
			t.assemble(&dst[len(dst)-1], &v, rec, nil, g)
		}
	} else {
		for len(body) >= t.recLen {
			offs, used, ok := d.walkVar(t, body)
			if !ok {
				if !allZero(body) {
					err = d.fail(g.ex, g.proto, ReasonTruncated, "template %d: variable-length record overruns its set", t.key.id)
				}
				break
			}
			rec := body[:used]
			t.readVar(&v, rec, offs)
			dst = append(dst, base)
			t.assemble(&dst[len(dst)-1], &v, rec, offs, g)
			body = body[used:]
		}
	}
	n := len(dst) - start
	g.ex.records += uint64(n)
	if n > 0 && g.ex.override == 0 {
		if r := dst[len(dst)-1].SamplingRate; r != 0 {
			src := srcOptions
			if t.present&(bit<<tRate|bit<<tSampler) != 0 {
				src = srcRecord
			}
			g.ex.setRate(r, src)
		}
	}
	return dst, n, err
}

// readFixed reads the fields of one fixed-length record (decodeSet has the same loops
// inline).
func (t *template) readFixed(v *slots, rec []byte) {
	for _, list := range [...][]rop{t.w1, t.w2, t.w4, t.w8, t.wn} {
		for _, o := range list {
			v[o.tg&63] = uintN(rec[o.off : int(o.off)+int(o.w)])
		}
	}
}

// readVar reads the fields of one variable-length record, whose field positions
// walkVar found.
func (t *template) readVar(v *slots, rec []byte, offs []uint32) {
	for _, list := range [...][]rop{t.w1, t.w2, t.w4, t.w8, t.wn} {
		for _, o := range list {
			i := 2 * int(o.idx)
			v[o.tg&63] = uintN(rec[offs[i]:offs[i+1]])
		}
	}
}

// walkVar finds where each field of one variable-length record starts and ends
// (pairs in d.offs) and how many bytes the record takes.
func (d *Decoder) walkVar(t *template, b []byte) ([]uint32, int, bool) {
	offs := d.offs[:0]
	p := 0
	for _, f := range t.specs {
		n := int(f.len)
		if f.len == varLen {
			if p >= len(b) {
				return nil, 0, false
			}
			n = int(b[p])
			p++
			if n == 255 {
				if p+2 > len(b) {
					return nil, 0, false
				}
				n = int(binary.BigEndian.Uint16(b[p:]))
				p += 2
			}
		}
		if p+n > len(b) {
			return nil, 0, false
		}
		offs = append(offs, uint32(p), uint32(p+n))
		p += n
	}
	d.offs = offs
	return offs, p, true
}

func addrU32(x uint64) netip.Addr {
	return netip.AddrFrom4([4]byte{byte(x >> 24), byte(x >> 16), byte(x >> 8), byte(x)})
}

// assemble fills r, which holds the set's base record, from the slots of one record.
// Slots the template lacks are 0, as are the fields of the base record, so every
// integer field is assigned unconditionally.
func (t *template) assemble(r *flow.Record, v *slots, rec []byte, offs []uint32, g *dgram) {
	r.SrcPort = uint16(v[tSrcPort])
	r.DstPort = uint16(v[tDstPort])
	r.Proto = uint8(v[tProto])
	// IPFIX tcpControlBits is 16 bits; the classic flags are its low byte.
	r.TCPFlags = uint8(v[tFlags])
	r.TOS = uint8(v[tTOS])
	r.InIf = uint32(v[tIn])
	r.OutIf = uint32(v[tOut])
	r.Packets = v[tPkts]
	r.Bytes = v[tBytes]
	r.Flows = uint32(v[tFlows])
	r.SrcAS = uint32(v[tSrcAS])
	r.DstAS = uint32(v[tDstAS])
	r.SrcMask = uint8(v[tSrcMask])
	r.DstMask = uint8(v[tDstMask])
	if p := t.present; p&(bit<<tSrc4|bit<<tDst4|bit<<tNH4) != 0 {
		if p&(bit<<tSrc4) != 0 {
			r.SrcAddr = addrU32(v[tSrc4])
		}
		if p&(bit<<tDst4) != 0 {
			r.DstAddr = addrU32(v[tDst4])
		}
		if p&(bit<<tNH4) != 0 {
			r.NextHop = addrU32(v[tNH4])
		}
	}
	for _, o := range t.a16 {
		off := int(o.off)
		if offs != nil {
			off = int(offs[2*int(o.idx)])
		}
		b := [16]byte(rec[off : off+16])
		if t.cond6&(bit<<o.tg) != 0 && b == [16]byte{} {
			continue
		}
		// IPv4-mapped addresses (Cisco puts IPv4 BGP next hops in the IPv6 field) are
		// unmapped, so that IPv4 prefixes and rules match them.
		a := netip.AddrFrom16(b).Unmap()
		switch o.tg {
		case tSrc6:
			r.SrcAddr = a
		case tDst6:
			r.DstAddr = a
		case tNH6:
			r.NextHop = a
		}
	}
	if len(t.sec) > 0 {
		t.sections(r, rec, offs)
	}
	if t.startMode|t.endMode|t.obsMode != 0 {
		t.times(r, v, g)
	}
	if t.present&(bit<<tRate|bit<<tSampler) != 0 && g.ex.override == 0 {
		if x := v[tRate]; x > 0 {
			if x <= maxSamplingRate {
				r.SamplingRate = uint32(x)
			} else {
				g.ex.drops[ReasonBadSampling]++
			}
		}
		if t.present&(bit<<tSampler) != 0 {
			if rate := g.dom.samplerRate(v[tSampler]); rate != 0 {
				r.SamplingRate = rate
			}
		}
	}
}

// sections decodes the sampled packet of a PSAMP packet report, unless the template
// also carries flow fields, which then take precedence.
func (t *template) sections(r *flow.Record, rec []byte, offs []uint32) {
	if r.Packets == 0 {
		r.Packets = 1
	}
	if t.present&(bit<<tSrc4|bit<<tSrc6|bit<<tDst4|bit<<tDst6) != 0 {
		return
	}
	for _, o := range t.sec {
		var b []byte
		if offs == nil {
			b = rec[o.off : int(o.off)+int(o.n)]
		} else {
			b = rec[offs[2*int(o.idx)]:offs[2*int(o.idx)+1]]
		}
		if len(b) == 0 {
			continue
		}
		if o.tg == tSecL2 {
			parseEthernet(r, b)
		} else if b[0]>>4 == 4 {
			parseIPv4(r, b)
		} else if b[0]>>4 == 6 {
			parseIPv6(r, b)
		}
		return
	}
}

func (t *template) times(r *flow.Record, v *slots, g *dgram) {
	uptime, hasUptime := g.uptime, g.hasUptime
	if ms := int64(v[tSysInit]); ms > 0 {
		uptime, hasUptime = uint32(g.exportNs/1e6-ms), true
	}
	if !hasUptime && (t.startMode == tmRel || t.endMode == tmRel) {
		// IPFIX without systemInitTimeMilliseconds: assume the flow ended when it was
		// exported, which keeps its duration and places it at the right time within
		// the exporter's active timeout.
		if t.endMode == tmRel {
			uptime = uint32(v[tEnd])
		} else {
			uptime = uint32(v[tStart])
		}
	}
	if t.startMode == tmNone && t.endMode == tmNone {
		r.Start = convTime(t.obsMode, v[tObs], uptime, g.exportNs)
		r.End = r.Start
		return
	}
	if t.startMode != tmNone {
		r.Start = convTime(t.startMode, v[tStart], uptime, g.exportNs)
	}
	if t.endMode != tmNone {
		r.End = convTime(t.endMode, v[tEnd], uptime, g.exportNs)
	}
}

func convTime(mode uint8, x uint64, uptime uint32, exportNs int64) int64 {
	switch mode {
	case tmRel:
		return relTime(exportNs, uptime, uint32(x))
	case tmSec:
		return int64(x) * 1e9
	case tmMs:
		return int64(x) * 1e6
	case tmNTP:
		return ntpTime(x)
	case tmDeltaUs:
		return exportNs - int64(x)*1e3
	}
	return 0
}

// ntpTime converts a 64-bit NTP timestamp (dateTimeMicroseconds/Nanoseconds, RFC 7011
// section 6.1.9/10) to Unix ns.
func ntpTime(x uint64) int64 {
	const ntpToUnix = 2208988800
	sec := int64(x>>32) - ntpToUnix
	return sec*1e9 + int64(((x&0xFFFFFFFF)*1e9)>>32)
}

// optionsSet reads options data: sampling parameters and system init time. It returns
// the number of records.
func (d *Decoder) optionsSet(g *dgram, t *template, body []byte) (int, error) {
	n := 0
	var v slots
	for len(body) >= t.recLen {
		var offs []uint32
		used := t.recLen
		if t.variable {
			var ok bool
			offs, used, ok = d.walkVar(t, body)
			if !ok {
				if !allZero(body) {
					return n, d.fail(g.ex, g.proto, ReasonTruncated, "options template %d: variable-length record overruns its set", t.key.id)
				}
				return n, nil
			}
		}
		if offs == nil {
			t.readFixed(&v, body[:used])
		} else {
			t.readVar(&v, body[:used], offs)
		}
		d.optionsRecord(g, t, &v)
		body = body[used:]
		n++
	}
	return n, nil
}

func (d *Decoder) optionsRecord(g *dgram, t *template, v *slots) {
	p := t.present
	// saveGen counts changes of what SaveTemplates writes; the stand-in for domains
	// beyond maxDomains keeps nothing, so its changes are not counted.
	kept := g.dom != &g.ex.spareDom
	if x := v[tOptInit]; x != 0 && int64(x) != g.dom.sysInitMs {
		g.dom.sysInitMs = int64(x)
		if kept {
			d.saveGen++
		}
	}
	if p&(bit<<tOptInterval|bit<<tOptRandom|bit<<tOptPInterval|bit<<tOptPSpace|bit<<tOptSize|bit<<tOptPopulation) == 0 {
		return
	}
	// The same rate is spelled several ways: n-out-of-N (309/310), interval and space
	// (305/306, RFC 5477), and Cisco's 1-in-N in samplingPacketInterval alone, or in
	// the v9 SAMPLING_INTERVAL / FLOW_SAMPLER_RANDOM_INTERVAL fields.
	var rate uint64
	size, population, pInterval := v[tOptSize], v[tOptPopulation], v[tOptPInterval]
	switch {
	case size > 0 && population > 0:
		rate = population / size
	case p&(bit<<tOptPSpace) != 0 && pInterval > 0:
		rate = (pInterval + v[tOptPSpace]) / pInterval
	case pInterval > 0:
		rate = pInterval
	case v[tOptInterval] > 0:
		rate = v[tOptInterval]
	case v[tOptRandom] > 0:
		rate = v[tOptRandom]
	}
	if rate == 0 {
		return
	}
	if rate > maxSamplingRate {
		g.ex.drops[ReasonBadSampling]++
		return
	}
	changed := false
	if p&(bit<<tOptID) != 0 {
		changed = g.dom.setSampler(v[tOptID], uint32(rate))
	} else if g.dom.rate != uint32(rate) {
		g.dom.rate, changed = uint32(rate), true
	}
	if changed && kept {
		d.saveGen++
	}
	if g.ex.override == 0 {
		g.ex.setRate(uint32(rate), srcOptions)
	}
}

// pendingSet is a data set that arrived before its template.
type pendingSet struct {
	used     bool
	version  uint8
	id       uint16
	domain   uint32
	order    uint64 // arrival order, to evict the oldest
	received int64
	exportNs int64
	uptime   uint32
	data     []byte // reused between sets, so a warmed-up buffer allocates nothing
}

// park keeps a data set until its template arrives, within MaxPending per exporter and
// MaxPendingBytes over all exporters.
func (d *Decoder) park(g *dgram, id uint16, body []byte) error {
	ex := g.ex
	if len(body) > d.cfg.MaxPendingBytes {
		return d.fail(ex, g.proto, ReasonNoTemplate, "data set %d (%d bytes) has no template and is too large to wait for it", id, len(body))
	}
	if ex.pending == nil {
		ex.pending = make([]pendingSet, d.cfg.MaxPending)
	}
	for d.pendingBytes+len(body) > d.cfg.MaxPendingBytes {
		if !d.evictOldest(ex) && !d.evictOldestAnywhere() {
			break
		}
	}
	slot := -1
	for i := range ex.pending {
		if !ex.pending[i].used {
			slot = i
			break
		}
	}
	if slot < 0 {
		d.evictOldest(ex)
		for i := range ex.pending {
			if !ex.pending[i].used {
				slot = i
				break
			}
		}
	}
	p := &ex.pending[slot]
	d.pendOrder++
	*p = pendingSet{used: true, version: g.version, id: id, domain: g.dom.key.id, order: d.pendOrder,
		received: g.received, exportNs: g.exportNs, uptime: g.uptime, data: append(p.data[:0], body...)}
	d.pendingBytes += len(body)
	d.npending++
	ex.npending++
	d.queue(ex, slot, d.pendOrder)
	return nil
}

func (d *Decoder) dropPending(ex *exporter, p *pendingSet) {
	ex.drops[ReasonNoTemplate]++
	d.release(ex, p)
}

func (d *Decoder) release(ex *exporter, p *pendingSet) {
	d.pendingBytes -= len(p.data)
	d.npending--
	ex.npending--
	p.used = false
	if cap(p.data) > 64<<10 {
		p.data = nil // do not hold a rare huge set's buffer forever
	} else {
		p.data = p.data[:0]
	}
}

func (d *Decoder) evictOldest(ex *exporter) bool {
	var old *pendingSet
	for i := range ex.pending {
		if p := &ex.pending[i]; p.used && (old == nil || p.order < old.order) {
			old = p
		}
	}
	if old == nil {
		return false
	}
	d.dropPending(ex, old)
	return true
}

// pendRef points at a parked set, in arrival order over all exporters, so that the
// byte bound can evict the oldest set anywhere without walking every exporter.
type pendRef struct {
	ex    *exporter
	slot  int
	order uint64
}

func (d *Decoder) evictOldestAnywhere() bool {
	for len(d.pendq) > 0 {
		r := d.pendq[0]
		d.pendq = d.pendq[1:]
		if p := &r.ex.pending[r.slot]; p.used && p.order == r.order {
			d.dropPending(r.ex, p)
			return true
		}
	}
	return false
}

// queue records a newly parked set, dropping references to sets that have gone since
// (decoded, evicted) once they outnumber the live ones.
func (d *Decoder) queue(ex *exporter, slot int, order uint64) {
	if len(d.pendq) >= 2*d.npending+64 {
		live := d.pendq[:0]
		for _, r := range d.pendq {
			if p := &r.ex.pending[r.slot]; p.used && p.order == r.order {
				live = append(live, r)
			}
		}
		clear(d.pendq[len(live):])
		d.pendq = live
	}
	d.pendq = append(d.pendq, pendRef{ex, slot, order})
}

// retryPending decodes the parked sets of ex whose template is now known, oldest
// first, and appends their records to dst.
func (d *Decoder) retryPending(ex *exporter, dst []flow.Record) ([]flow.Record, error) {
	var err error
	for ex.npending > 0 {
		var next *pendingSet
		for i := range ex.pending {
			p := &ex.pending[i]
			if !p.used || ex.templates[tmplKey{p.version, p.domain, p.id}] == nil {
				continue
			}
			if next == nil || p.order < next.order {
				next = p
			}
		}
		if next == nil {
			break
		}
		t := ex.templates[tmplKey{next.version, next.domain, next.id}]
		g := dgram{ex: ex, dom: ex.domain(next.version, next.domain), received: next.received,
			exportNs: next.exportNs, uptime: next.uptime, hasUptime: true,
			version: next.version, proto: protoName(next.version)}
		if next.version == flow.VersionIPFIX {
			g.ipfixUptime() // the init time may have come with the template
		}
		var e error
		dst, _, e = d.decodeSet(&g, t, next.data, dst)
		err = firstErr(err, e)
		d.release(ex, next)
	}
	return dst, err
}

func protoName(version uint8) string {
	switch version {
	case flow.VersionNetFlow9:
		return "v9"
	case flow.VersionIPFIX:
		return "ipfix"
	}
	return "v" + fmt.Sprint(version)
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
