package ingest

import (
	"encoding/binary"
	"net/netip"
)

// Builders of datagrams for tests, benchmarks and fuzz seeds. They write what the
// specifications say, with no validation, so tests can also build broken input.

var be = binary.BigEndian

func u16(v int) []byte    { return be.AppendUint16(nil, uint16(v)) }
func u32(v uint32) []byte { return be.AppendUint32(nil, v) }

func cat(parts ...[]byte) []byte {
	var b []byte
	for _, p := range parts {
		b = append(b, p...)
	}
	return b
}

func ip4(s string) []byte {
	a := netip.MustParseAddr(s).As4()
	return a[:]
}

func ip6(s string) []byte {
	a := netip.MustParseAddr(s).As16()
	return a[:]
}

// v5Header builds a NetFlow v5 header.
func v5Header(count int, uptime, secs, nsecs, seq uint32, engineType, engineID byte, sampling uint16) []byte {
	b := cat(u16(5), u16(count), u32(uptime), u32(secs), u32(nsecs), u32(seq))
	b = append(b, engineType, engineID)
	return append(b, u16(int(sampling))...)
}

// v5Record builds one v5 record; i varies addresses and ports.
func v5Record(i int, first, last uint32) []byte {
	b := cat(ip4("10.0.0.1"), ip4("192.0.2.10"), ip4("10.0.0.254"))
	b[3] = byte(i)
	b = append(b, u16(3)...)
	b = append(b, u16(7)...)
	b = append(b, u32(uint32(10+i))...)
	b = append(b, u32(uint32(1500*(10+i)))...)
	b = append(b, u32(first)...)
	b = append(b, u32(last)...)
	b = append(b, u16(40000+i)...)
	b = append(b, u16(443)...)
	b = append(b, 0, 0x12, 6, 0x20) // pad, tcp flags SYN|ACK, proto, tos
	b = append(b, u16(64500)...)
	b = append(b, u16(64501)...)
	b = append(b, 24, 16, 0, 0)
	return b
}

func v5Datagram(count, present int, seq uint32, sampling uint16) []byte {
	b := v5Header(count, 100000, 1700000000, 0, seq, 1, 2, sampling)
	for i := 0; i < present; i++ {
		b = append(b, v5Record(i, 90000, 99000)...)
	}
	return b
}

type tfield struct {
	typ, len int
	pen      uint32
}

// v9Datagram builds a NetFlow v9 datagram; count is the header count.
func v9Datagram(count int, uptime, secs, seq, sourceID uint32, sets ...[]byte) []byte {
	return cat(u16(9), u16(count), u32(uptime), u32(secs), u32(seq), u32(sourceID), cat(sets...))
}

// set wraps a body as a FlowSet/Set with its id and length, padded to 4 bytes.
func set(id int, body []byte) []byte {
	for len(body)%4 != 0 {
		body = append(body, 0)
	}
	return cat(u16(id), u16(len(body)+4), body)
}

func v9Template(id int, fields ...tfield) []byte {
	b := cat(u16(id), u16(len(fields)))
	for _, f := range fields {
		b = append(b, u16(f.typ)...)
		b = append(b, u16(f.len)...)
	}
	return b
}

func v9OptionsTemplate(id int, scope, opts []tfield) []byte {
	b := cat(u16(id), u16(4*len(scope)), u16(4*len(opts)))
	for _, f := range append(append([]tfield{}, scope...), opts...) {
		b = append(b, u16(f.typ)...)
		b = append(b, u16(f.len)...)
	}
	return b
}

func ipfixMessage(exportTime, seq, domain uint32, sets ...[]byte) []byte {
	body := cat(sets...)
	return cat(u16(10), u16(16+len(body)), u32(exportTime), u32(seq), u32(domain), body)
}

func ipfixFields(fields []tfield) []byte {
	var b []byte
	for _, f := range fields {
		if f.pen != 0 {
			b = append(b, u16(f.typ|0x8000)...)
			b = append(b, u16(f.len)...)
			b = append(b, u32(f.pen)...)
		} else {
			b = append(b, u16(f.typ)...)
			b = append(b, u16(f.len)...)
		}
	}
	return b
}

func ipfixTemplate(id int, fields ...tfield) []byte {
	return cat(u16(id), u16(len(fields)), ipfixFields(fields))
}

func ipfixOptionsTemplate(id, scope int, fields ...tfield) []byte {
	return cat(u16(id), u16(len(fields)), u16(scope), ipfixFields(fields))
}

// A typical IPv4 flow template (the fields Cisco IOS exports), and a record for it.
var v9Fields = []tfield{
	{8, 4, 0}, {12, 4, 0}, {15, 4, 0}, {7, 2, 0}, {11, 2, 0}, {4, 1, 0}, {6, 1, 0}, {5, 1, 0},
	{10, 4, 0}, {14, 4, 0}, {2, 4, 0}, {1, 4, 0}, {22, 4, 0}, {21, 4, 0}, {16, 4, 0}, {17, 4, 0},
	{9, 1, 0}, {13, 1, 0},
}

func v9Record(i int) []byte {
	b := cat(ip4("10.0.0.1"), ip4("192.0.2.10"), ip4("10.0.0.254"))
	b[3] = byte(i)
	b = append(b, u16(40000+i)...)
	b = append(b, u16(443)...)
	b = append(b, 6, 0x02, 0)
	b = append(b, u32(3)...)
	b = append(b, u32(7)...)
	b = append(b, u32(uint32(10+i))...)
	b = append(b, u32(uint32(1500*(10+i)))...)
	b = append(b, u32(90000)...)
	b = append(b, u32(99000)...)
	b = append(b, u32(64500)...)
	b = append(b, u32(64501)...)
	b = append(b, 24, 16)
	return b
}

// sFlow.

func sflowDatagram(seq, subAgent uint32, samples ...[]byte) []byte {
	return cat(u32(5), u32(1), ip4("192.0.2.1"), u32(subAgent), u32(seq), u32(123456), u32(uint32(len(samples))), cat(samples...))
}

func sflowSample(format uint32, body []byte) []byte {
	return cat(u32(format), u32(uint32(len(body))), body)
}

func sflowFlowSampleB(seq, rate, in, out uint32, records ...[]byte) []byte {
	return sflowSample(1, cat(u32(seq), u32(3), u32(rate), u32(rate*seq), u32(0), u32(in), u32(out),
		u32(uint32(len(records))), cat(records...)))
}

func sflowRecord(format uint32, body []byte) []byte {
	for len(body)%4 != 0 {
		body = append(body, 0)
	}
	return cat(u32(format), u32(uint32(len(body))), body)
}

func sflowRawHeader(frameLen uint32, header []byte) []byte {
	return sflowRecord(1, cat(u32(1), u32(frameLen), u32(4), u32(uint32(len(header))), header))
}

// ethIPv4TCP builds an Ethernet/802.1Q/IPv4/TCP header.
func ethIPv4TCP(src, dst string, sport, dport int, flags byte) []byte {
	eth := cat([]byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}, u16(0x8100), u16(100), u16(0x0800))
	ip := cat([]byte{0x45, 0x10}, u16(40), u16(1), u16(0x4000), []byte{64, 6}, u16(0), ip4(src), ip4(dst))
	tcp := cat(u16(sport), u16(dport), u32(1), u32(0), []byte{0x50, flags}, u16(1024), u16(0), u16(0))
	return cat(eth, ip, tcp)
}

func sflowGenericCounters(ifIndex uint32, inOctets, outOctets uint64) []byte {
	b := cat(u32(ifIndex), u32(6), be.AppendUint64(nil, 1e9), u32(1), u32(3), be.AppendUint64(nil, inOctets))
	for i := 0; i < 6; i++ {
		b = append(b, u32(uint32(i+1))...)
	}
	b = append(b, be.AppendUint64(nil, outOctets)...)
	for i := 0; i < 6; i++ {
		b = append(b, u32(uint32(i+10))...)
	}
	return sflowRecord(1, b)
}
