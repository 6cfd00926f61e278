package gen

import (
	"encoding/binary"
	"slices"

	"github.com/flowhound/flowhound/flow"
)

// ipfixFields4 and ipfixFields6 follow what current IPFIX exporters send: 8-byte delta
// counters, absolute flowStart/EndMilliseconds (no sysUptime in IPFIX headers), and the
// two-byte tcpControlBits of RFC 7125.
var ipfixFields4 = []field{
	{8, 4}, {12, 4}, {15, 4}, // sourceIPv4Address, destinationIPv4Address, ipNextHopIPv4Address
	{10, 4}, {14, 4}, // ingressInterface, egressInterface
	{2, 8}, {1, 8}, // packetDeltaCount, octetDeltaCount
	{152, 8}, {153, 8}, // flowStartMilliseconds, flowEndMilliseconds
	{7, 2}, {11, 2}, {6, 2}, // sourceTransportPort, destinationTransportPort, tcpControlBits
	{4, 1}, {5, 1}, // protocolIdentifier, ipClassOfService
	{16, 4}, {17, 4}, // bgpSourceAsNumber, bgpDestinationAsNumber
	{9, 1}, {13, 1}, // sourceIPv4PrefixLength, destinationIPv4PrefixLength
}

var ipfixFields6 = []field{
	{27, 16}, {28, 16}, {62, 16}, // sourceIPv6Address, destinationIPv6Address, ipNextHopIPv6Address
	{10, 4}, {14, 4},
	{2, 8}, {1, 8},
	{152, 8}, {153, 8},
	{7, 2}, {11, 2}, {6, 2},
	{4, 1}, {5, 1},
	{16, 4}, {17, 4},
	{29, 1}, {30, 1}, // sourceIPv6PrefixLength, destinationIPv6PrefixLength
}

var (
	ipfixLen4 = fieldsLen(ipfixFields4)
	ipfixLen6 = fieldsLen(ipfixFields6)
)

// AppendIPFIX appends one IPFIX message and returns it with the number of recs consumed.
// With templates set, the message starts with a template set carrying both templates
// (IPv4 256, IPv6 257). Records go into data sets, one per run of the same address family
// (unpadded), until the message would exceed MaxDatagram. h.Sequence is written as given
// (IPFIX counts data records sent before this message).
func AppendIPFIX(dst []byte, h Header, templates bool, recs []flow.Record) ([]byte, int) {
	start := len(dst)
	dst = slices.Grow(dst, MaxDatagram)
	dst = be16(dst, 10)
	dst = be16(dst, 0) // length
	dst = be32(dst, uint32(h.Export/1e9))
	dst = be32(dst, h.Sequence)
	dst = be32(dst, h.Domain)
	if templates {
		ts := len(dst)
		dst = be32(dst, 2<<16) // set ID 2, length set below
		dst = appendTemplateRecord(dst, TemplateIPv4, ipfixFields4)
		dst = appendTemplateRecord(dst, TemplateIPv6, ipfixFields6)
		binary.BigEndian.PutUint16(dst[ts+2:], uint16(len(dst)-ts))
	}
	n := 0
	set, setFamily4 := -1, false
	for n < len(recs) {
		r := &recs[n]
		v4 := is4(r.SrcAddr, r.DstAddr)
		rl := ipfixLen6
		if v4 {
			rl = ipfixLen4
		}
		need := rl
		if set < 0 || v4 != setFamily4 {
			need += setHeadLen
		}
		if len(dst)-start+need > MaxDatagram {
			break
		}
		if set < 0 || v4 != setFamily4 {
			dst = closeSet(dst, set, false)
			set, setFamily4 = len(dst), v4
			id := uint16(TemplateIPv6)
			if v4 {
				id = TemplateIPv4
			}
			dst = be16(dst, id)
			dst = be16(dst, 0)
		}
		l := len(dst)
		dst = dst[:l+rl]
		if v4 {
			s, d, nh := addr4(r.SrcAddr), addr4(r.DstAddr), addr4(r.NextHop)
			copy(dst[l:], s[:])
			copy(dst[l+4:], d[:])
			copy(dst[l+8:], nh[:])
			putIPFIXCommon(dst[l+12:], &h, r)
			dst[l+68], dst[l+69] = r.SrcMask, r.DstMask
		} else {
			s, d, nh := addr16(r.SrcAddr), addr16(r.DstAddr), addr16(r.NextHop)
			copy(dst[l:], s[:])
			copy(dst[l+16:], d[:])
			copy(dst[l+32:], nh[:])
			putIPFIXCommon(dst[l+48:], &h, r)
			dst[l+104], dst[l+105] = r.SrcMask, r.DstMask
		}
		n++
	}
	dst = closeSet(dst, set, false)
	binary.BigEndian.PutUint16(dst[start+2:], uint16(len(dst)-start))
	return dst, n
}

// putIPFIXCommon writes the 56 bytes shared by both templates, from ingressInterface to
// bgpDestinationAsNumber.
func putIPFIXCommon(b []byte, h *Header, r *flow.Record) {
	_ = b[55]
	be := binary.BigEndian
	first, last := times(r.Start, r.End, h.Export)
	be.PutUint32(b[0:], r.InIf)
	be.PutUint32(b[4:], r.OutIf)
	be.PutUint64(b[8:], r.Packets)
	be.PutUint64(b[16:], r.Bytes)
	be.PutUint64(b[24:], uint64(first/1e6))
	be.PutUint64(b[32:], uint64(last/1e6))
	be.PutUint16(b[40:], r.SrcPort)
	be.PutUint16(b[42:], r.DstPort)
	be.PutUint16(b[44:], uint16(r.TCPFlags))
	b[46], b[47] = r.Proto, r.TOS
	be.PutUint32(b[48:], r.SrcAS)
	be.PutUint32(b[52:], r.DstAS)
}
