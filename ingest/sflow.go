package ingest

import (
	"encoding/binary"
	"net/netip"

	"github.com/flowhound/flowhound/flow"
)

// sFlow v5 (sflow.org/sflow_version_5.txt). Each flow sample becomes one record for
// the one sampled packet (packets=1, bytes=frame length, sampling_rate=the sample's
// rate), with addresses, ports and flags read from the sampled header. Counter samples
// update the per-exporter interface counters; other sample types are skipped by length.

const (
	sflowMinHeader     = 28 // with an IPv4 agent address
	sflowFlowSample    = 1
	sflowCounterSample = 2
	sflowFlowSampleX   = 3 // expanded
	sflowCounterX      = 4 // expanded

	sflowRecHeader  = 1
	sflowRecIPv4    = 3
	sflowRecIPv6    = 4
	sflowRecRouter  = 1002
	sflowRecGateway = 1003
	sflowCtrGeneric = 1

	// sFlow has no wall clock, only agent uptime, so records carry no start/end and
	// detection places them at their arrival.
	hasSFlowBase = flow.HasPackets
)

func (d *Decoder) decodeSFlow(ex *exporter, received int64, p []byte, dst []flow.Record) ([]flow.Record, error) {
	const proto = "sflow"
	if len(p) < sflowMinHeader {
		return dst, d.fail(ex, proto, ReasonShort, "%d bytes, header needs %d", len(p), sflowMinHeader)
	}
	off := 8
	switch at := binary.BigEndian.Uint32(p[4:]); at {
	case 1:
		ex.agent = netip.AddrFrom4([4]byte(p[8:12]))
		off = 12
	case 2:
		if len(p) < sflowMinHeader+12 {
			return dst, d.fail(ex, proto, ReasonShort, "%d bytes, header with an IPv6 agent needs %d", len(p), sflowMinHeader+12)
		}
		ex.agent = netip.AddrFrom16([16]byte(p[8:24]))
		off = 24
	default:
		return dst, d.fail(ex, proto, ReasonBadHeader, "agent address type %d (1 or 2)", at)
	}
	subAgent := binary.BigEndian.Uint32(p[off:])
	seq := binary.BigEndian.Uint32(p[off+4:])
	nsamples := binary.BigEndian.Uint32(p[off+12:])
	rest := p[off+16:]
	dom := ex.domain(flow.VersionSFlow5, subAgent)

	base := flow.Record{
		Received:          received,
		Exporter:          ex.addr,
		ObservationDomain: subAgent,
		Version:           flow.VersionSFlow5,
		Packets:           1,
		Has:               hasSFlowBase,
	}
	var err error
	before := len(dst)
	var i uint32
	for i = 0; i < nsamples && len(rest) > 0; i++ {
		if len(rest) < 8 {
			err = firstErr(err, d.fail(ex, proto, ReasonTruncated, "sample %d: %d bytes left", i+1, len(rest)))
			break
		}
		format := binary.BigEndian.Uint32(rest)
		l := binary.BigEndian.Uint32(rest[4:])
		if uint64(l) > uint64(len(rest)-8) {
			err = firstErr(err, d.fail(ex, proto, ReasonTruncated, "sample %d length %d, only %d bytes left", i+1, l, len(rest)-8))
			break
		}
		body := rest[8 : 8+l]
		rest = rest[8+l:]
		if format>>12 != 0 {
			continue // enterprise-specific sample
		}
		var e error
		switch format & 0xFFF {
		case sflowFlowSample, sflowFlowSampleX:
			dst, e = d.sflowFlowSample(ex, &base, body, format&0xFFF == sflowFlowSampleX, dst)
		case sflowCounterSample, sflowCounterX:
			e = d.sflowCounterSample(ex, received, body, format&0xFFF == sflowCounterX)
		}
		if e != nil {
			err = firstErr(err, e)
		}
	}
	if i < nsamples && err == nil {
		err = d.fail(ex, proto, ReasonTruncated, "header says %d samples, datagram holds %d", nsamples, i)
	} else if len(rest) > 0 && !allZero(rest) {
		ex.drops[ReasonCountMismatch]++ // bytes after the counted samples
	}
	n := len(dst) - before
	ex.records += uint64(n)
	dom.seqDatagrams(seq, uint32(n))
	return dst, err
}

// sflowFlowSample turns one (compact or expanded) flow sample into a record.
func (d *Decoder) sflowFlowSample(ex *exporter, base *flow.Record, b []byte, expanded bool, dst []flow.Record) ([]flow.Record, error) {
	r := *base
	var nrec uint32
	if expanded {
		if len(b) < 44 {
			return dst, d.fail(ex, "sflow", ReasonBadSample, "expanded flow sample of %d bytes", len(b))
		}
		r.SamplingRate = binary.BigEndian.Uint32(b[12:])
		if binary.BigEndian.Uint32(b[24:]) == 0 { // input format 0: ifIndex
			if v := binary.BigEndian.Uint32(b[28:]); v != 0 {
				r.InIf, r.Has = v, r.Has|flow.HasInIf
			}
		}
		if binary.BigEndian.Uint32(b[32:]) == 0 {
			if v := binary.BigEndian.Uint32(b[36:]); v != 0 {
				r.OutIf, r.Has = v, r.Has|flow.HasOutIf
			}
		}
		nrec = binary.BigEndian.Uint32(b[40:])
		b = b[44:]
	} else {
		if len(b) < 32 {
			return dst, d.fail(ex, "sflow", ReasonBadSample, "flow sample of %d bytes", len(b))
		}
		r.SamplingRate = binary.BigEndian.Uint32(b[8:])
		// Interfaces: top 2 bits format (0 = ifIndex), low 30 bits value; 0 means
		// unknown and 0x3FFFFFFF the agent itself.
		if in := binary.BigEndian.Uint32(b[20:]); in>>30 == 0 && in != 0 && in != 0x3FFFFFFF {
			r.InIf, r.Has = in, r.Has|flow.HasInIf
		}
		if out := binary.BigEndian.Uint32(b[24:]); out>>30 == 0 && out != 0 && out != 0x3FFFFFFF {
			r.OutIf, r.Has = out, r.Has|flow.HasOutIf
		}
		nrec = binary.BigEndian.Uint32(b[28:])
		b = b[32:]
	}
	switch {
	case ex.override != 0:
		r.SamplingRate = ex.override
	case r.SamplingRate > maxSamplingRate:
		ex.drops[ReasonBadSampling]++
		r.SamplingRate = 0
	case r.SamplingRate != 0:
		ex.setRate(r.SamplingRate, srcSFlow)
	}
	haveHeader := false
	for i := uint32(0); i < nrec && len(b) > 0; i++ {
		if len(b) < 8 {
			return dst, d.fail(ex, "sflow", ReasonBadSample, "flow record %d: %d bytes left", i+1, len(b))
		}
		format := binary.BigEndian.Uint32(b)
		l := binary.BigEndian.Uint32(b[4:])
		if uint64(l) > uint64(len(b)-8) {
			return dst, d.fail(ex, "sflow", ReasonBadSample, "flow record %d length %d, sample has %d bytes left", i+1, l, len(b)-8)
		}
		rec := b[8 : 8+l]
		b = b[8+l:]
		if format>>12 != 0 {
			continue
		}
		switch format & 0xFFF {
		case sflowRecHeader:
			if len(rec) < 16 {
				return dst, d.fail(ex, "sflow", ReasonBadSample, "sampled header record of %d bytes", len(rec))
			}
			hp := binary.BigEndian.Uint32(rec)
			r.Bytes, r.Has = uint64(binary.BigEndian.Uint32(rec[4:])), r.Has|flow.HasBytes
			hl := binary.BigEndian.Uint32(rec[12:])
			h := rec[16:]
			if uint64(hl) < uint64(len(h)) {
				h = h[:hl]
			}
			switch hp {
			case 1: // Ethernet
				parseEthernet(&r, h)
			case 11:
				parseIPv4(&r, h)
			case 12:
				parseIPv6(&r, h)
			}
			haveHeader = true
		case sflowRecIPv4:
			if len(rec) < 32 || haveHeader {
				continue
			}
			if r.Has&flow.HasBytes == 0 {
				r.Bytes, r.Has = uint64(binary.BigEndian.Uint32(rec)), r.Has|flow.HasBytes
			}
			r.Proto = uint8(binary.BigEndian.Uint32(rec[4:]))
			r.SrcAddr = netip.AddrFrom4([4]byte(rec[8:12]))
			r.DstAddr = netip.AddrFrom4([4]byte(rec[12:16]))
			r.SrcPort = uint16(binary.BigEndian.Uint32(rec[16:]))
			r.DstPort = uint16(binary.BigEndian.Uint32(rec[20:]))
			r.TCPFlags = uint8(binary.BigEndian.Uint32(rec[24:]))
			r.TOS = uint8(binary.BigEndian.Uint32(rec[28:]))
			r.Has |= flow.HasSrcAddr | flow.HasDstAddr | flow.HasProto | flow.HasSrcPort | flow.HasDstPort | flow.HasTCPFlags | flow.HasTOS
		case sflowRecIPv6:
			if len(rec) < 56 || haveHeader {
				continue
			}
			if r.Has&flow.HasBytes == 0 {
				r.Bytes, r.Has = uint64(binary.BigEndian.Uint32(rec)), r.Has|flow.HasBytes
			}
			r.Proto = uint8(binary.BigEndian.Uint32(rec[4:]))
			r.SrcAddr = netip.AddrFrom16([16]byte(rec[8:24])).Unmap()
			r.DstAddr = netip.AddrFrom16([16]byte(rec[24:40])).Unmap()
			r.SrcPort = uint16(binary.BigEndian.Uint32(rec[40:]))
			r.DstPort = uint16(binary.BigEndian.Uint32(rec[44:]))
			r.TCPFlags = uint8(binary.BigEndian.Uint32(rec[48:]))
			r.TOS = uint8(binary.BigEndian.Uint32(rec[52:]))
			r.Has |= flow.HasSrcAddr | flow.HasDstAddr | flow.HasProto | flow.HasSrcPort | flow.HasDstPort | flow.HasTCPFlags | flow.HasTOS
		case sflowRecRouter:
			nh, n := sflowAddr(rec)
			if n == 0 || len(rec) < n+8 {
				continue
			}
			r.NextHop = nh
			r.SrcMask = uint8(binary.BigEndian.Uint32(rec[n:]))
			r.DstMask = uint8(binary.BigEndian.Uint32(rec[n+4:]))
			r.Has |= flow.HasNextHop | flow.HasSrcMask | flow.HasDstMask
		case sflowRecGateway:
			sflowGateway(&r, rec)
		}
	}
	return append(dst, r), nil
}

// sflowAddr reads an sFlow address (type, then 4 or 16 bytes) and returns it with the
// bytes it took, or 0 when it does not parse.
func sflowAddr(b []byte) (netip.Addr, int) {
	if len(b) < 8 {
		return netip.Addr{}, 0
	}
	switch binary.BigEndian.Uint32(b) {
	case 1:
		return netip.AddrFrom4([4]byte(b[4:8])), 8
	case 2:
		if len(b) >= 20 {
			return netip.AddrFrom16([16]byte(b[4:20])).Unmap(), 20
		}
	}
	return netip.Addr{}, 0
}

// sflowGateway reads the extended gateway record: BGP next hop, source AS and the
// destination AS path, whose last AS is the destination AS.
func sflowGateway(r *flow.Record, b []byte) {
	nh, n := sflowAddr(b)
	if n == 0 || len(b) < n+16 {
		return
	}
	own := binary.BigEndian.Uint32(b[n:])
	srcAS := binary.BigEndian.Uint32(b[n+4:])
	segs := binary.BigEndian.Uint32(b[n+12:])
	p := b[n+16:]
	dstAS := own // an empty path means the destination is in the agent's own AS
	for i := uint32(0); i < segs; i++ {
		if len(p) < 8 {
			return
		}
		cnt := binary.BigEndian.Uint32(p[4:])
		if uint64(cnt)*4 > uint64(len(p)-8) {
			return
		}
		if cnt > 0 {
			dstAS = binary.BigEndian.Uint32(p[8+4*(cnt-1):])
		}
		p = p[8+4*cnt:]
	}
	if srcAS == 0 {
		srcAS = own
	}
	if r.Has&flow.HasNextHop == 0 {
		r.NextHop, r.Has = nh, r.Has|flow.HasNextHop
	}
	r.SrcAS, r.DstAS = srcAS, dstAS
	r.Has |= flow.HasSrcAS | flow.HasDstAS
}

// parseEthernet reads a sampled Ethernet frame: VLAN tags (802.1Q, 802.1ad, QinQ) and
// MPLS labels are skipped to reach IPv4 or IPv6.
func parseEthernet(r *flow.Record, h []byte) {
	if len(h) < 14 {
		return
	}
	et := binary.BigEndian.Uint16(h[12:])
	h = h[14:]
	for i := 0; i < 4 && (et == 0x8100 || et == 0x88A8 || et == 0x9100); i++ {
		if len(h) < 4 {
			return
		}
		et = binary.BigEndian.Uint16(h[2:])
		h = h[4:]
	}
	switch et {
	case 0x0800:
		parseIPv4(r, h)
	case 0x86DD:
		parseIPv6(r, h)
	case 0x8847, 0x8848:
		for i := 0; i < 8; i++ {
			if len(h) < 4 {
				return
			}
			bottom := h[2]&1 != 0
			h = h[4:]
			if bottom {
				break
			}
		}
		if len(h) > 0 {
			switch h[0] >> 4 {
			case 4:
				parseIPv4(r, h)
			case 6:
				parseIPv6(r, h)
			}
		}
	}
}

func parseIPv4(r *flow.Record, h []byte) {
	if len(h) < 20 || h[0]>>4 != 4 {
		return
	}
	ihl := int(h[0]&0x0F) * 4
	if ihl < 20 {
		return
	}
	r.TOS = h[1]
	r.Proto = h[9]
	r.SrcAddr = netip.AddrFrom4([4]byte(h[12:16]))
	r.DstAddr = netip.AddrFrom4([4]byte(h[16:20]))
	r.Has |= flow.HasSrcAddr | flow.HasDstAddr | flow.HasProto | flow.HasTOS
	if r.Has&flow.HasBytes == 0 {
		// No frame length (a PSAMP section without dataLinkFrameSize): the IP
		// packet's own length is the best measure of its size.
		r.Bytes, r.Has = uint64(binary.BigEndian.Uint16(h[2:])), r.Has|flow.HasBytes
	}
	if binary.BigEndian.Uint16(h[6:])&0x1FFF != 0 || len(h) < ihl {
		return // a later fragment has no transport header
	}
	parseL4(r, h[ihl:])
}

func parseIPv6(r *flow.Record, h []byte) {
	if len(h) < 40 || h[0]>>4 != 6 {
		return
	}
	r.TOS = uint8(binary.BigEndian.Uint16(h) >> 4)
	if r.Has&flow.HasBytes == 0 {
		r.Bytes, r.Has = 40+uint64(binary.BigEndian.Uint16(h[4:])), r.Has|flow.HasBytes
	}
	next := h[6]
	r.SrcAddr = netip.AddrFrom16([16]byte(h[8:24])).Unmap()
	r.DstAddr = netip.AddrFrom16([16]byte(h[24:40])).Unmap()
	r.Has |= flow.HasSrcAddr | flow.HasDstAddr | flow.HasProto | flow.HasTOS
	h = h[40:]
	l4 := true
ext:
	for i := 0; i < 8; i++ {
		switch next {
		case 0, 43, 60: // hop-by-hop, routing, destination options
			if len(h) < 8 {
				l4 = false
				break ext
			}
			l := (int(h[1]) + 1) * 8
			next = h[0]
			if len(h) < l {
				l4 = false
				break ext
			}
			h = h[l:]
		case 44: // fragment
			if len(h) < 8 {
				l4 = false
				break ext
			}
			next = h[0]
			if binary.BigEndian.Uint16(h[2:])>>3 != 0 {
				l4 = false
			}
			h = h[8:]
		case 51: // authentication header
			if len(h) < 8 {
				l4 = false
				break ext
			}
			l := (int(h[1]) + 2) * 4
			next = h[0]
			if len(h) < l {
				l4 = false
				break ext
			}
			h = h[l:]
		default:
			break ext
		}
	}
	r.Proto = next
	if l4 {
		parseL4(r, h)
	}
}

// parseL4 reads ports and TCP flags. ICMP type and code go into the destination port
// as type<<8|code, the convention of NetFlow v5 exporters, so that rules match ICMP the
// same way whatever the export protocol.
func parseL4(r *flow.Record, h []byte) {
	switch r.Proto {
	case flow.ProtoTCP:
		if len(h) < 4 {
			return
		}
		r.SrcPort = binary.BigEndian.Uint16(h)
		r.DstPort = binary.BigEndian.Uint16(h[2:])
		r.Has |= flow.HasSrcPort | flow.HasDstPort
		if len(h) >= 14 {
			r.TCPFlags = h[13]
			r.Has |= flow.HasTCPFlags
		}
	case flow.ProtoUDP, 132: // UDP, SCTP
		if len(h) < 4 {
			return
		}
		r.SrcPort = binary.BigEndian.Uint16(h)
		r.DstPort = binary.BigEndian.Uint16(h[2:])
		r.Has |= flow.HasSrcPort | flow.HasDstPort
	case flow.ProtoICMP, flow.ProtoICMPv6:
		if len(h) < 2 {
			return
		}
		r.SrcPort = 0
		r.DstPort = uint16(h[0])<<8 | uint16(h[1])
		r.Has |= flow.HasSrcPort | flow.HasDstPort
	}
}

// sflowCounterSample keeps the generic interface counters of a counter sample.
func (d *Decoder) sflowCounterSample(ex *exporter, received int64, b []byte, expanded bool) error {
	hl := 12
	if expanded {
		hl = 16
	}
	if len(b) < hl {
		return d.fail(ex, "sflow", ReasonBadSample, "counter sample of %d bytes", len(b))
	}
	nrec := binary.BigEndian.Uint32(b[hl-4:])
	b = b[hl:]
	for i := uint32(0); i < nrec && len(b) > 0; i++ {
		if len(b) < 8 {
			return d.fail(ex, "sflow", ReasonBadSample, "counter record %d: %d bytes left", i+1, len(b))
		}
		format := binary.BigEndian.Uint32(b)
		l := binary.BigEndian.Uint32(b[4:])
		if uint64(l) > uint64(len(b)-8) {
			return d.fail(ex, "sflow", ReasonBadSample, "counter record %d length %d, sample has %d bytes left", i+1, l, len(b)-8)
		}
		rec := b[8 : 8+l]
		b = b[8+l:]
		if format != sflowCtrGeneric || len(rec) < 88 {
			continue
		}
		ex.setInterface(rec, received)
	}
	return nil
}

func (ex *exporter) setInterface(b []byte, received int64) {
	idx := binary.BigEndian.Uint32(b)
	c := ex.ifaces[idx]
	if c == nil {
		if ex.ifaces == nil {
			ex.ifaces = make(map[uint32]*InterfaceCounters)
		}
		if len(ex.ifaces) >= ex.maxIfaces {
			return
		}
		c = &InterfaceCounters{}
		ex.ifaces[idx] = c
	}
	u32 := func(off int) uint64 { return uint64(binary.BigEndian.Uint32(b[off:])) }
	u64 := func(off int) uint64 { return binary.BigEndian.Uint64(b[off:]) }
	*c = InterfaceCounters{
		Index: idx, Type: uint32(u32(4)), Speed: u64(8), Direction: uint32(u32(16)), Status: uint32(u32(20)),
		InOctets: u64(24), InUcastPkts: u32(32), InMulticastPkts: u32(36), InBroadcastPkts: u32(40),
		InDiscards: u32(44), InErrors: u32(48), InUnknownProtos: u32(52),
		OutOctets: u64(56), OutUcastPkts: u32(64), OutMulticastPkts: u32(68), OutBroadcastPkts: u32(72),
		OutDiscards: u32(76), OutErrors: u32(80), Updated: received,
	}
}
