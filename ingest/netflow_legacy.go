package ingest

import (
	"encoding/binary"
	"net/netip"

	"github.com/flowhound/flowhound/flow"
)

// Fixed-format NetFlow: v1, v5, v7 and the fourteen v8 router aggregations. Each
// version has one record layout (v8: one per aggregation), so records are read at fixed
// offsets straight into flow.Record, with the Has mask fixed per layout.

const (
	v1HeaderLen = 16
	v1RecordLen = 48
	v5HeaderLen = 24
	v5RecordLen = 48
	v7HeaderLen = 24
	v7RecordLen = 52
	v8HeaderLen = 28
)

const (
	hasV1 = flow.HasSrcAddr | flow.HasDstAddr | flow.HasNextHop | flow.HasInIf | flow.HasOutIf |
		flow.HasPackets | flow.HasBytes | flow.HasStart | flow.HasEnd | flow.HasSrcPort |
		flow.HasDstPort | flow.HasProto | flow.HasTOS | flow.HasTCPFlags
	hasV5 = hasV1 | flow.HasSrcAS | flow.HasDstAS | flow.HasSrcMask | flow.HasDstMask
	hasV7 = hasV5
)

// legacyHeader is the part of a v1/v5/v7/v8 header records need.
type legacyHeader struct {
	exportNs int64
	uptime   uint32
}

func (d *Decoder) decodeLegacy(ex *exporter, received int64, p []byte, dst []flow.Record) ([]flow.Record, error) {
	version := binary.BigEndian.Uint16(p)
	var proto string
	var hdrLen, recLen int
	switch version {
	case 1:
		proto, hdrLen, recLen = "v1", v1HeaderLen, v1RecordLen
	case 5:
		proto, hdrLen, recLen = "v5", v5HeaderLen, v5RecordLen
	case 7:
		proto, hdrLen, recLen = "v7", v7HeaderLen, v7RecordLen
	default:
		proto, hdrLen = "v8", v8HeaderLen
	}
	if len(p) < hdrLen {
		return dst, d.fail(ex, proto, ReasonShort, "%d bytes, header needs %d", len(p), hdrLen)
	}
	count := int(binary.BigEndian.Uint16(p[2:]))
	h := legacyHeader{
		uptime:   binary.BigEndian.Uint32(p[4:]),
		exportNs: int64(binary.BigEndian.Uint32(p[8:]))*1e9 + int64(binary.BigEndian.Uint32(p[12:])%1e9),
	}
	ex.setSkew(h.exportNs, received)

	var agg uint8
	if version == 8 {
		agg = p[22]
		if int(agg) >= len(v8Layouts) || v8Layouts[agg].len == 0 {
			return dst, d.fail(ex, proto, ReasonBadHeader, "unknown aggregation scheme %d", agg)
		}
		recLen = v8Layouts[agg].len
	}

	// The header count decides how many records to read, bounded by what the datagram
	// holds: a count larger than the datagram still yields the records present.
	body := p[hdrLen:]
	fit := len(body) / recLen
	n := min(count, fit)
	var err error
	switch {
	case count > fit:
		err = d.fail(ex, proto, ReasonTruncated, "header count %d, datagram holds %d records", count, fit)
	case len(body) > count*recLen:
		ex.drops[ReasonCountMismatch]++ // trailing bytes after the counted records
	}

	var domainID uint32
	var seq uint32
	switch version {
	case 5, 8:
		domainID = uint32(p[20])<<8 | uint32(p[21])
		seq = binary.BigEndian.Uint32(p[16:])
	case 7:
		seq = binary.BigEndian.Uint32(p[16:])
	}

	rate := ex.override
	if version == 5 && rate == 0 {
		// Low 14 bits: 1-in-N interval; top 2 bits: mode. Some exporters fill the
		// interval with mode 0, so the interval alone decides.
		if si := binary.BigEndian.Uint16(p[22:]) & 0x3FFF; si > 0 {
			rate = uint32(si)
			ex.setRate(rate, srcHeader)
		}
	}

	base := flow.Record{
		Received:          received,
		Exporter:          ex.addr,
		ObservationDomain: domainID,
		SamplingRate:      rate,
		Version:           uint8(version),
	}
	dst = grow(dst, n)
	switch version {
	case 1:
		dst = decodeV1(dst, &base, body[:n*recLen], h)
	case 5:
		dst = decodeV5(dst, &base, body[:n*recLen], h)
	case 7:
		dst = decodeV7(dst, &base, body[:n*recLen], h)
	case 8:
		dst = decodeV8(dst, &base, body[:n*recLen], h, agg)
	}
	ex.records += uint64(n)
	if version != 1 {
		dom := ex.domain(uint8(version), domainID)
		dom.seqFlows(seq, uint32(n))
	}
	return dst, err
}

func addr4(b []byte) netip.Addr { return netip.AddrFrom4([4]byte(b[:4])) }

func decodeV1(dst []flow.Record, base *flow.Record, body []byte, h legacyHeader) []flow.Record {
	base.Has = hasV1
	for ; len(body) >= v1RecordLen; body = body[v1RecordLen:] {
		b := body[:v1RecordLen]
		dst = append(dst, *base)
		r := &dst[len(dst)-1]
		r.SrcAddr = addr4(b[0:])
		r.DstAddr = addr4(b[4:])
		r.NextHop = addr4(b[8:])
		r.InIf = uint32(binary.BigEndian.Uint16(b[12:]))
		r.OutIf = uint32(binary.BigEndian.Uint16(b[14:]))
		r.Packets = uint64(binary.BigEndian.Uint32(b[16:]))
		r.Bytes = uint64(binary.BigEndian.Uint32(b[20:]))
		r.Start = relTime(h.exportNs, h.uptime, binary.BigEndian.Uint32(b[24:]))
		r.End = relTime(h.exportNs, h.uptime, binary.BigEndian.Uint32(b[28:]))
		r.SrcPort = binary.BigEndian.Uint16(b[32:])
		r.DstPort = binary.BigEndian.Uint16(b[34:])
		r.Proto = b[38]
		r.TOS = b[39]
		r.TCPFlags = b[40]
	}
	return dst
}

func decodeV5(dst []flow.Record, base *flow.Record, body []byte, h legacyHeader) []flow.Record {
	base.Has = hasV5
	for ; len(body) >= v5RecordLen; body = body[v5RecordLen:] {
		b := body[:v5RecordLen]
		dst = append(dst, *base)
		r := &dst[len(dst)-1]
		v5Fields(r, b, h)
	}
	return dst
}

// v5Fields reads the 48-byte v5 record layout, which v7 records begin with too.
func v5Fields(r *flow.Record, b []byte, h legacyHeader) {
	b = b[:v5RecordLen]
	r.SrcAddr = addr4(b[0:])
	r.DstAddr = addr4(b[4:])
	r.NextHop = addr4(b[8:])
	r.InIf = uint32(binary.BigEndian.Uint16(b[12:]))
	r.OutIf = uint32(binary.BigEndian.Uint16(b[14:]))
	r.Packets = uint64(binary.BigEndian.Uint32(b[16:]))
	r.Bytes = uint64(binary.BigEndian.Uint32(b[20:]))
	r.Start = relTime(h.exportNs, h.uptime, binary.BigEndian.Uint32(b[24:]))
	r.End = relTime(h.exportNs, h.uptime, binary.BigEndian.Uint32(b[28:]))
	r.SrcPort = binary.BigEndian.Uint16(b[32:])
	r.DstPort = binary.BigEndian.Uint16(b[34:])
	r.TCPFlags = b[37]
	r.Proto = b[38]
	r.TOS = b[39]
	r.SrcAS = uint32(binary.BigEndian.Uint16(b[40:]))
	r.DstAS = uint32(binary.BigEndian.Uint16(b[42:]))
	r.SrcMask = b[44]
	r.DstMask = b[45]
}

func decodeV7(dst []flow.Record, base *flow.Record, body []byte, h legacyHeader) []flow.Record {
	base.Has = hasV7
	for ; len(body) >= v7RecordLen; body = body[v7RecordLen:] {
		b := body[:v7RecordLen]
		dst = append(dst, *base)
		r := &dst[len(dst)-1]
		v5Fields(r, b, h)
	}
	return dst
}

// v8Layout places the fields of one v8 aggregation record. Offsets are from the start
// of the record; -1 means the scheme does not carry the field. The layouts follow
// Cisco's format description (as flow-tools and pmacct do): in schemes 5, 13 and 14 the
// destination mask comes before the source mask, and ToS-AS (9) puts input/output
// before ToS.
type v8Layout struct {
	len                              int
	flows, pkts, octets, first, last int
	src, dst, srcMask, dstMask       int
	srcPort, dstPort, proto, tos     int
	srcAS, dstAS, in, out            int
	has                              uint32
}

const none = -1

var v8Layouts = func() [15]v8Layout {
	var l [15]v8Layout
	// Common head of schemes that count flows: flows, dPkts, dOctets, First, Last.
	c := func(x v8Layout) v8Layout {
		x.flows, x.pkts, x.octets, x.first, x.last = 0, 4, 8, 12, 16
		return x
	}
	blank := v8Layout{flows: none, pkts: none, octets: none, first: none, last: none,
		src: none, dst: none, srcMask: none, dstMask: none, srcPort: none, dstPort: none,
		proto: none, tos: none, srcAS: none, dstAS: none, in: none, out: none}
	set := func(f func(*v8Layout)) v8Layout {
		x := blank
		f(&x)
		return x
	}
	l[1] = c(set(func(x *v8Layout) { // AS
		x.len, x.srcAS, x.dstAS, x.in, x.out = 28, 20, 22, 24, 26
	}))
	l[2] = c(set(func(x *v8Layout) { // protocol/port
		x.len, x.proto, x.srcPort, x.dstPort = 28, 20, 24, 26
	}))
	l[3] = c(set(func(x *v8Layout) { // source prefix
		x.len, x.src, x.srcMask, x.srcAS, x.in = 32, 20, 24, 26, 28
	}))
	l[4] = c(set(func(x *v8Layout) { // destination prefix
		x.len, x.dst, x.dstMask, x.dstAS, x.out = 32, 20, 24, 26, 28
	}))
	l[5] = c(set(func(x *v8Layout) { // prefix
		x.len, x.src, x.dst, x.dstMask, x.srcMask = 40, 20, 24, 28, 29
		x.srcAS, x.dstAS, x.in, x.out = 32, 34, 36, 38
	}))
	l[6] = set(func(x *v8Layout) { // destination only (Catalyst)
		x.len, x.dst, x.pkts, x.octets, x.first, x.last = 32, 0, 4, 8, 12, 16
		x.out, x.tos = 20, 22
	})
	l[7] = set(func(x *v8Layout) { // source-destination (Catalyst)
		x.len, x.dst, x.src, x.pkts, x.octets, x.first, x.last = 40, 0, 4, 8, 12, 16, 20
		x.out, x.in, x.tos = 24, 26, 28
	})
	l[8] = set(func(x *v8Layout) { // full flow (Catalyst)
		x.len, x.dst, x.src, x.dstPort, x.srcPort = 44, 0, 4, 8, 10
		x.pkts, x.octets, x.first, x.last = 12, 16, 20, 24
		x.out, x.in, x.tos, x.proto = 28, 30, 32, 33
	})
	l[9] = c(set(func(x *v8Layout) { // ToS-AS
		x.len, x.srcAS, x.dstAS, x.in, x.out, x.tos = 32, 20, 22, 24, 26, 28
	}))
	l[10] = c(set(func(x *v8Layout) { // ToS-protocol-port
		x.len, x.proto, x.tos, x.srcPort, x.dstPort, x.in, x.out = 32, 20, 21, 24, 26, 28, 30
	}))
	l[11] = c(set(func(x *v8Layout) { // ToS-source prefix
		x.len, x.src, x.srcMask, x.tos, x.srcAS, x.in = 32, 20, 24, 25, 26, 28
	}))
	l[12] = c(set(func(x *v8Layout) { // ToS-destination prefix
		x.len, x.dst, x.dstMask, x.tos, x.dstAS, x.out = 32, 20, 24, 25, 26, 28
	}))
	l[13] = c(set(func(x *v8Layout) { // ToS-prefix
		x.len, x.src, x.dst, x.dstMask, x.srcMask, x.tos = 40, 20, 24, 28, 29, 30
		x.srcAS, x.dstAS, x.in, x.out = 32, 34, 36, 38
	}))
	l[14] = c(set(func(x *v8Layout) { // ToS-prefix-port
		x.len, x.src, x.dst, x.dstMask, x.srcMask, x.tos, x.proto = 40, 20, 24, 28, 29, 30, 31
		x.srcPort, x.dstPort, x.in, x.out = 32, 34, 36, 38
	}))
	for i := 1; i < len(l); i++ {
		x := &l[i]
		bits := []struct {
			off int
			bit uint32
		}{
			{x.flows, flow.HasFlows}, {x.pkts, flow.HasPackets}, {x.octets, flow.HasBytes},
			{x.first, flow.HasStart}, {x.last, flow.HasEnd}, {x.src, flow.HasSrcAddr},
			{x.dst, flow.HasDstAddr}, {x.srcMask, flow.HasSrcMask}, {x.dstMask, flow.HasDstMask},
			{x.srcPort, flow.HasSrcPort}, {x.dstPort, flow.HasDstPort}, {x.proto, flow.HasProto},
			{x.tos, flow.HasTOS}, {x.srcAS, flow.HasSrcAS}, {x.dstAS, flow.HasDstAS},
			{x.in, flow.HasInIf}, {x.out, flow.HasOutIf},
		}
		for _, b := range bits {
			if b.off != none {
				x.has |= b.bit
			}
		}
	}
	return l
}()

// decodeV8 reads aggregated records. v8 is rare, so it uses the generic layout table
// rather than one hand-written loop per scheme.
func decodeV8(dst []flow.Record, base *flow.Record, body []byte, h legacyHeader, agg uint8) []flow.Record {
	l := &v8Layouts[agg]
	base.Has = l.has
	base.Agg = agg
	u16 := func(b []byte, off int) uint32 { return uint32(binary.BigEndian.Uint16(b[off:])) }
	u32 := func(b []byte, off int) uint32 { return binary.BigEndian.Uint32(b[off:]) }
	for ; len(body) >= l.len; body = body[l.len:] {
		b := body[:l.len]
		dst = append(dst, *base)
		r := &dst[len(dst)-1]
		if l.flows != none {
			r.Flows = u32(b, l.flows)
		}
		r.Packets = uint64(u32(b, l.pkts))
		r.Bytes = uint64(u32(b, l.octets))
		r.Start = relTime(h.exportNs, h.uptime, u32(b, l.first))
		r.End = relTime(h.exportNs, h.uptime, u32(b, l.last))
		if l.src != none {
			r.SrcAddr = addr4(b[l.src:])
		}
		if l.dst != none {
			r.DstAddr = addr4(b[l.dst:])
		}
		if l.srcMask != none {
			r.SrcMask = b[l.srcMask]
		}
		if l.dstMask != none {
			r.DstMask = b[l.dstMask]
		}
		if l.srcPort != none {
			r.SrcPort = uint16(u16(b, l.srcPort))
		}
		if l.dstPort != none {
			r.DstPort = uint16(u16(b, l.dstPort))
		}
		if l.proto != none {
			r.Proto = b[l.proto]
		}
		if l.tos != none {
			r.TOS = b[l.tos]
		}
		if l.srcAS != none {
			r.SrcAS = u16(b, l.srcAS)
		}
		if l.dstAS != none {
			r.DstAS = u16(b, l.dstAS)
		}
		if l.in != none {
			r.InIf = u16(b, l.in)
		}
		if l.out != none {
			r.OutIf = u16(b, l.out)
		}
	}
	return dst
}
