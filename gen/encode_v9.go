package gen

import (
	"encoding/binary"
	"slices"

	"github.com/flowhound/flowhound/flow"
)

// Template IDs used by the v9 and IPFIX encoders: one template per address family, as
// routers export them.
const (
	TemplateIPv4 = 256
	TemplateIPv6 = 257
)

// setHeadLen is the length of a v9 FlowSet or IPFIX set header.
const setHeadLen = 4

// field is one (type, length) pair of a template.
type field struct{ id, length uint16 }

// v9Fields4 and v9Fields6 list the templates in the order putV9Record4/6 write them, with
// the classic Cisco lengths (4-byte counters, 4-byte interface indexes and AS numbers).
var v9Fields4 = []field{
	{8, 4}, {12, 4}, {15, 4}, // IPV4_SRC_ADDR, IPV4_DST_ADDR, IPV4_NEXT_HOP
	{10, 4}, {14, 4}, // INPUT_SNMP, OUTPUT_SNMP
	{2, 4}, {1, 4}, // IN_PKTS, IN_BYTES
	{22, 4}, {21, 4}, // FIRST_SWITCHED, LAST_SWITCHED
	{7, 2}, {11, 2}, // L4_SRC_PORT, L4_DST_PORT
	{6, 1}, {4, 1}, {5, 1}, // TCP_FLAGS, PROTOCOL, SRC_TOS
	{16, 4}, {17, 4}, // SRC_AS, DST_AS
	{9, 1}, {13, 1}, // SRC_MASK, DST_MASK
}

var v9Fields6 = []field{
	{27, 16}, {28, 16}, {62, 16}, // IPV6_SRC_ADDR, IPV6_DST_ADDR, IPV6_NEXT_HOP
	{10, 4}, {14, 4},
	{2, 4}, {1, 4},
	{22, 4}, {21, 4},
	{7, 2}, {11, 2},
	{6, 1}, {4, 1}, {5, 1},
	{16, 4}, {17, 4},
	{29, 1}, {30, 1}, // IPV6_SRC_MASK, IPV6_DST_MASK
}

var (
	v9Len4 = fieldsLen(v9Fields4)
	v9Len6 = fieldsLen(v9Fields6)
)

func fieldsLen(fs []field) int {
	n := 0
	for _, f := range fs {
		n += int(f.length)
	}
	return n
}

// appendTemplateRecord appends a template record (ID, field count, fields), the same
// layout in v9 and IPFIX.
func appendTemplateRecord(dst []byte, id uint16, fs []field) []byte {
	dst = be16(dst, id)
	dst = be16(dst, uint16(len(fs)))
	for _, f := range fs {
		dst = be16(dst, f.id)
		dst = be16(dst, f.length)
	}
	return dst
}

// AppendV9 appends one NetFlow v9 export packet and returns it with the number of recs
// consumed. With templates set, the packet starts with a template FlowSet carrying both
// templates (IPv4 256, IPv6 257), as an exporter sends before its first data and then
// periodically. Records go into data FlowSets, one per run of the same address family,
// padded to four bytes, until the packet would exceed MaxDatagram. h.Sequence is written
// as given (v9 counts export packets).
func AppendV9(dst []byte, h Header, templates bool, recs []flow.Record) ([]byte, int) {
	start := len(dst)
	dst = slices.Grow(dst, MaxDatagram)
	dst = be16(dst, 9)
	dst = be16(dst, 0) // count
	dst = be32(dst, h.uptime(h.Export))
	dst = be32(dst, uint32(h.Export/1e9))
	dst = be32(dst, h.Sequence)
	dst = be32(dst, h.Domain)
	count := 0
	if templates {
		fs := len(dst)
		dst = be32(dst, 0) // FlowSet ID 0, length set below
		dst = appendTemplateRecord(dst, TemplateIPv4, v9Fields4)
		dst = appendTemplateRecord(dst, TemplateIPv6, v9Fields6)
		binary.BigEndian.PutUint16(dst[fs+2:], uint16(len(dst)-fs))
		count += 2
	}
	n := 0
	set, setFamily4 := -1, false
	for n < len(recs) {
		r := &recs[n]
		v4 := is4(r.SrcAddr, r.DstAddr)
		rl := v9Len6
		if v4 {
			rl = v9Len4
		}
		need := rl + 3 // worst-case padding of the set
		if set < 0 || v4 != setFamily4 {
			need += setHeadLen
		}
		if len(dst)-start+need > MaxDatagram {
			break
		}
		if set < 0 || v4 != setFamily4 {
			dst = closeSet(dst, set, true)
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
			putV9Record4(dst[l:], &h, r)
		} else {
			putV9Record6(dst[l:], &h, r)
		}
		n++
		count++
	}
	dst = closeSet(dst, set, true)
	binary.BigEndian.PutUint16(dst[start+2:], uint16(count))
	return dst, n
}

// closeSet pads the set that starts at set (if any) to a multiple of four bytes when pad
// is set and writes its length.
func closeSet(dst []byte, set int, pad bool) []byte {
	if set < 0 {
		return dst
	}
	if pad {
		for (len(dst)-set)%4 != 0 {
			dst = append(dst, 0)
		}
	}
	binary.BigEndian.PutUint16(dst[set+2:], uint16(len(dst)-set))
	return dst
}

func putV9Record4(b []byte, h *Header, r *flow.Record) {
	_ = b[v9Len4-1]
	s, d, nh := addr4(r.SrcAddr), addr4(r.DstAddr), addr4(r.NextHop)
	copy(b[0:], s[:])
	copy(b[4:], d[:])
	copy(b[8:], nh[:])
	putV9Common(b[12:], h, r)
	b[51], b[52] = r.SrcMask, r.DstMask
}

func putV9Record6(b []byte, h *Header, r *flow.Record) {
	_ = b[v9Len6-1]
	s, d, nh := addr16(r.SrcAddr), addr16(r.DstAddr), addr16(r.NextHop)
	copy(b[0:], s[:])
	copy(b[16:], d[:])
	copy(b[32:], nh[:])
	putV9Common(b[48:], h, r)
	b[87], b[88] = r.SrcMask, r.DstMask
}

// putV9Common writes the 39 bytes shared by both templates, from INPUT_SNMP to DST_AS.
func putV9Common(b []byte, h *Header, r *flow.Record) {
	_ = b[38]
	be := binary.BigEndian
	first, last := times(r.Start, r.End, h.Export)
	be.PutUint32(b[0:], r.InIf)
	be.PutUint32(b[4:], r.OutIf)
	be.PutUint32(b[8:], sat32(r.Packets))
	be.PutUint32(b[12:], sat32(r.Bytes))
	be.PutUint32(b[16:], h.uptime(first))
	be.PutUint32(b[20:], h.uptime(last))
	be.PutUint16(b[24:], r.SrcPort)
	be.PutUint16(b[26:], r.DstPort)
	b[28], b[29], b[30] = r.TCPFlags, r.Proto, r.TOS
	be.PutUint32(b[31:], r.SrcAS)
	be.PutUint32(b[35:], r.DstAS)
}
