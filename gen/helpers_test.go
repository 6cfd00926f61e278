package gen

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"time"

	"github.com/flowhound/flowhound/flow"
)

// testEpoch is a fixed start for simulations, so that runs are repeatable.
var testEpoch = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

// v5Header is a decoded NetFlow v5 header.
type v5Header struct {
	count        int
	uptime       uint32
	secs, nsecs  uint32
	seq          uint32
	engType, eng uint8
	sampling     uint16
}

// export returns the header's export time in Unix ns, and boot the exporter's boot time
// derived from it.
func (h v5Header) export() int64 { return int64(h.secs)*1e9 + int64(h.nsecs) }
func (h v5Header) boot() int64   { return h.export() - int64(h.uptime)*1e6 }

// decodeV5 is an independent, test-only NetFlow v5 decoder.
func decodeV5(b []byte) (v5Header, []flow.Record, error) {
	var h v5Header
	if len(b) < 24 || binary.BigEndian.Uint16(b) != 5 {
		return h, nil, fmt.Errorf("not v5")
	}
	be := binary.BigEndian
	h.count = int(be.Uint16(b[2:]))
	h.uptime = be.Uint32(b[4:])
	h.secs, h.nsecs = be.Uint32(b[8:]), be.Uint32(b[12:])
	h.seq = be.Uint32(b[16:])
	h.engType, h.eng = b[20], b[21]
	h.sampling = be.Uint16(b[22:])
	if len(b) != 24+48*h.count {
		return h, nil, fmt.Errorf("length %d for %d records", len(b), h.count)
	}
	boot := h.boot()
	recs := make([]flow.Record, h.count)
	for i := range recs {
		p := b[24+48*i:]
		r := &recs[i]
		r.SrcAddr = netip.AddrFrom4([4]byte(p[0:4]))
		r.DstAddr = netip.AddrFrom4([4]byte(p[4:8]))
		r.NextHop = netip.AddrFrom4([4]byte(p[8:12]))
		r.InIf, r.OutIf = uint32(be.Uint16(p[12:])), uint32(be.Uint16(p[14:]))
		r.Packets, r.Bytes = uint64(be.Uint32(p[16:])), uint64(be.Uint32(p[20:]))
		r.Start = boot + int64(be.Uint32(p[24:]))*1e6
		r.End = boot + int64(be.Uint32(p[28:]))*1e6
		r.SrcPort, r.DstPort = be.Uint16(p[32:]), be.Uint16(p[34:])
		r.TCPFlags, r.Proto, r.TOS = p[37], p[38], p[39]
		r.SrcAS, r.DstAS = uint32(be.Uint16(p[40:])), uint32(be.Uint16(p[42:]))
		r.SrcMask, r.DstMask = p[44], p[45]
	}
	return h, recs, nil
}

// header fields of the other formats that the tests check.
type seqHeader struct {
	seq       uint32
	export    int64 // Unix seconds (v9, IPFIX) or 0
	uptime    uint32
	templates bool
	dataRecs  int
}

func parseV9Header(b []byte) seqHeader {
	be := binary.BigEndian
	h := seqHeader{seq: be.Uint32(b[12:]), export: int64(be.Uint32(b[8:])), uptime: be.Uint32(b[4:])}
	h.dataRecs = int(be.Uint16(b[2:]))
	for off := 20; off+4 <= len(b); {
		id, l := be.Uint16(b[off:]), int(be.Uint16(b[off+2:]))
		if id == 0 {
			h.templates = true
			h.dataRecs -= 2
		}
		if l < 4 {
			break
		}
		off += l
	}
	return h
}

func parseIPFIXHeader(b []byte) seqHeader {
	be := binary.BigEndian
	h := seqHeader{seq: be.Uint32(b[8:]), export: int64(be.Uint32(b[4:]))}
	for off := 16; off+4 <= len(b); {
		id, l := be.Uint16(b[off:]), int(be.Uint16(b[off+2:]))
		switch id {
		case 2:
			h.templates = true
		case TemplateIPv4:
			h.dataRecs += (l - 4) / ipfixLen4
		case TemplateIPv6:
			h.dataRecs += (l - 4) / ipfixLen6
		}
		if l < 4 {
			break
		}
		off += l
	}
	return h
}

func parseSFlowHeader(b []byte) seqHeader {
	be := binary.BigEndian
	return seqHeader{seq: be.Uint32(b[16:]), uptime: be.Uint32(b[20:]), dataRecs: int(be.Uint32(b[24:]))}
}

// testRecords returns a varied set of records: TCP with assorted flags, UDP, ICMP,
// large counters and AS numbers, and (with v6) some IPv6 flows.
func testRecords(n int, v6 bool, export int64) []flow.Record {
	r := rng{s: 42}
	out := make([]flow.Record, 0, n)
	for i := range n {
		rec := flow.Record{
			SrcAddr: u32Addr(r.public()),
			DstAddr: u32Addr(192<<24 | 2<<8 | uint32(1+r.n(254))),
			NextHop: u32Addr(10<<24 | uint32(r.n(1<<16))),
			SrcPort: uint16(r.n(65536)), DstPort: uint16(r.n(65536)),
			InIf: uint32(1 + r.n(30)), OutIf: uint32(1 + r.n(30)),
			Packets: uint64(1 + r.n(5000)),
			TOS:     uint8(r.n(4)) << 5,
			SrcAS:   uint32(r.n(70000)), DstAS: uint32(r.n(70000)),
			SrcMask: uint8(8 + r.n(25)), DstMask: uint8(8 + r.n(25)),
		}
		rec.Bytes = rec.Packets * uint64(40+r.n(1460))
		rec.End = export - int64(r.n(2000))*1e6
		rec.Start = rec.End - int64(r.n(5000))*1e6
		switch i % 4 {
		case 0, 1:
			rec.Proto = flow.ProtoTCP
			rec.TCPFlags = []uint8{0x02, 0x12, 0x1b, 0x10, 0x18, 0x14}[r.n(6)]
		case 2:
			rec.Proto = flow.ProtoUDP
		case 3:
			rec.Proto, rec.SrcPort, rec.DstPort = flow.ProtoICMP, 0, 8<<8
		}
		if v6 && i%7 == 5 {
			rec.SrcAddr = netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 15: byte(i)})
			rec.DstAddr = netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0, 1, 15: byte(i)})
			rec.NextHop = netip.AddrFrom16([16]byte{0xfe, 0x80, 15: 1})
			if rec.Proto == flow.ProtoICMP {
				rec.Proto = flow.ProtoICMPv6
				rec.DstPort = 128 << 8
			}
		}
		out = append(out, rec)
	}
	return out
}
