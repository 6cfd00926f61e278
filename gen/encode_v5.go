package gen

import (
	"encoding/binary"
	"slices"

	"github.com/flowhound/flowhound/flow"
)

const (
	v5HeaderLen = 24
	v5RecordLen = 48
)

// AppendV5 appends one NetFlow v5 datagram holding up to MaxV5Records of recs and returns
// it with the number of records consumed. IPv6 records cannot be expressed in v5; they are
// consumed and left out, as a v5 exporter leaves out traffic it cannot describe. The
// header's count is the number of records actually written; h.Sequence is written as
// given (the caller counts flows).
func AppendV5(dst []byte, h Header, recs []flow.Record) ([]byte, int) {
	n := min(len(recs), MaxV5Records)
	start := len(dst)
	dst = slices.Grow(dst, v5HeaderLen+n*v5RecordLen)
	b := dst[start : start+v5HeaderLen]
	be := binary.BigEndian
	be.PutUint16(b[0:], 5)
	be.PutUint32(b[4:], h.uptime(h.Export))
	be.PutUint32(b[8:], uint32(h.Export/1e9))
	be.PutUint32(b[12:], uint32(h.Export%1e9))
	be.PutUint32(b[16:], h.Sequence)
	b[20], b[21] = byte(h.Domain>>8), byte(h.Domain)
	be.PutUint16(b[22:], h.SamplingInterval)
	dst = dst[:start+v5HeaderLen]
	count := 0
	for i := range n {
		r := &recs[i]
		if !is4(r.SrcAddr, r.DstAddr) {
			continue
		}
		l := len(dst)
		dst = dst[:l+v5RecordLen]
		putV5Record(dst[l:l+v5RecordLen], &h, r)
		count++
	}
	be.PutUint16(dst[start+2:], uint16(count))
	return dst, n
}

// putV5Record writes one 48-byte record in place: the fixed layout makes direct stores
// several times faster than appending field by field, which matters when gen is the
// load generator.
func putV5Record(b []byte, h *Header, r *flow.Record) {
	_ = b[47]
	be := binary.BigEndian
	s, d, nh := addr4(r.SrcAddr), addr4(r.DstAddr), addr4(r.NextHop)
	first, last := times(r.Start, r.End, h.Export)
	copy(b[0:4], s[:])
	copy(b[4:8], d[:])
	copy(b[8:12], nh[:])
	be.PutUint16(b[12:], sat16(r.InIf))
	be.PutUint16(b[14:], sat16(r.OutIf))
	be.PutUint32(b[16:], sat32(r.Packets))
	be.PutUint32(b[20:], sat32(r.Bytes))
	be.PutUint32(b[24:], h.uptime(first))
	be.PutUint32(b[28:], h.uptime(last))
	be.PutUint16(b[32:], r.SrcPort)
	be.PutUint16(b[34:], r.DstPort)
	b[36], b[37], b[38], b[39] = 0, r.TCPFlags, r.Proto, r.TOS
	be.PutUint16(b[40:], as16(r.SrcAS))
	be.PutUint16(b[42:], as16(r.DstAS))
	b[44], b[45], b[46], b[47] = r.SrcMask, r.DstMask, 0, 0
}
