package gen

import (
	"encoding/binary"
	"net/netip"

	"github.com/flowhound/flowhound/flow"
)

const (
	ethLen  = 14
	fcsLen  = 4
	minEth  = 64 // minimum Ethernet frame, FCS included
	ttlSeen = 57 // a TTL that says "a dozen hops away", as Internet traffic arrives
)

// l4Len is the transport header length that a packet of this protocol and size carries.
func l4Len(proto, flags uint8, ipPayload int) int {
	switch proto {
	case flow.ProtoTCP:
		// SYNs carry options (MSS, SACK, timestamps) in the bytes above 40; other TCP
		// packets of our synthetic flows carry data instead.
		if flags&flow.FlagSYN != 0 && ipPayload > 20 && ipPayload <= 60 {
			return ipPayload &^ 3
		}
		return 20
	case flow.ProtoUDP, flow.ProtoICMP, flow.ProtoICMPv6:
		return 8
	}
	return 0
}

// packetSize returns the IP length of one packet of the record: the average size, and
// never less than its headers.
func packetSize(r *flow.Record) int {
	n := int(r.Bytes)
	if r.Packets > 1 {
		n = int(r.Bytes / r.Packets)
	}
	v4 := is4(r.SrcAddr, r.DstAddr)
	ipl := 20
	if !v4 {
		ipl = 40
	}
	if hl := ipl + l4Len(r.Proto, r.TCPFlags, 60); n < hl {
		if r.Proto == flow.ProtoTCP {
			hl = ipl + 20
		}
		n = hl
	}
	return min(n, 65535)
}

// frameLen is the on-the-wire Ethernet frame length (FCS included) of an IP packet.
func frameLen(ipLen int) int {
	return max(ethLen+ipLen+fcsLen, minEth)
}

// appendSampledFrame appends the first snap bytes of the Ethernet frame that carries one
// packet of r (without the FCS, which agents strip), so that an sFlow collector can parse
// Ethernet, IP and the transport header. Payload bytes are zero. TCP/UDP/ICMP checksums are
// left zero since the payload is not all there; the IPv4 header checksum is valid.
func appendSampledFrame(dst []byte, r *flow.Record, ipLen, snap int, dmac, smac [6]byte) []byte {
	full := frameLen(ipLen) - fcsLen
	snap = min(snap, full)
	start := len(dst)
	dst = append(dst, make([]byte, snap)...)
	// Build into a scratch buffer large enough for every header, then copy what fits.
	var hb [ethLen + 40 + 60]byte
	h := hb[:]
	copy(h[0:6], dmac[:])
	copy(h[6:12], smac[:])
	be := binary.BigEndian
	ident := uint16(r.Start>>10) ^ r.SrcPort ^ r.DstPort<<3
	var l4 []byte
	v4 := is4(r.SrcAddr, r.DstAddr)
	if v4 {
		be.PutUint16(h[12:], 0x0800)
		ip := h[ethLen : ethLen+20]
		ip[0], ip[1] = 0x45, r.TOS
		be.PutUint16(ip[2:], uint16(ipLen))
		be.PutUint16(ip[4:], ident)
		if r.Proto == flow.ProtoTCP {
			be.PutUint16(ip[6:], 0x4000) // DF, as TCP stacks set it
		}
		ip[8], ip[9] = ttlSeen, r.Proto
		s, d := addr4(r.SrcAddr), addr4(r.DstAddr)
		copy(ip[12:], s[:])
		copy(ip[16:], d[:])
		be.PutUint16(ip[10:], ipChecksum(ip))
		l4 = h[ethLen+20:]
	} else {
		be.PutUint16(h[12:], 0x86DD)
		ip := h[ethLen : ethLen+40]
		ip[0], ip[1] = 0x60|r.TOS>>4, r.TOS<<4
		be.PutUint16(ip[4:], uint16(max(ipLen-40, 0)))
		ip[6], ip[7] = r.Proto, ttlSeen
		s, d := addr16(r.SrcAddr), addr16(r.DstAddr)
		copy(ip[8:], s[:])
		copy(ip[24:], d[:])
		l4 = h[ethLen+40:]
	}
	ipHdr := len(h) - len(l4) - ethLen
	tl := l4Len(r.Proto, r.TCPFlags, ipLen-ipHdr)
	switch r.Proto {
	case flow.ProtoTCP:
		be.PutUint16(l4[0:], r.SrcPort)
		be.PutUint16(l4[2:], r.DstPort)
		be.PutUint32(l4[4:], uint32(ident)<<16|uint32(r.SrcPort))
		if r.TCPFlags&flow.FlagACK != 0 {
			be.PutUint32(l4[8:], uint32(ident)<<8|uint32(r.DstPort))
		}
		l4[12] = byte(tl/4) << 4
		l4[13] = r.TCPFlags
		be.PutUint16(l4[14:], 64240)
		if tl > 20 {
			o := l4[20:tl]
			for i := range o {
				o[i] = 1 // NOP
			}
			o[0], o[1], o[2], o[3] = 2, 4, 0x05, 0xb4 // MSS 1460
		}
	case flow.ProtoUDP:
		be.PutUint16(l4[0:], r.SrcPort)
		be.PutUint16(l4[2:], r.DstPort)
		be.PutUint16(l4[4:], uint16(max(ipLen-ipHdr, 8)))
	case flow.ProtoICMP, flow.ProtoICMPv6:
		// NetFlow carries ICMP type and code in the destination port.
		l4[0], l4[1] = byte(r.DstPort>>8), byte(r.DstPort)
		be.PutUint16(l4[4:], ident)
		be.PutUint16(l4[6:], uint16(r.Start>>20))
	}
	copy(dst[start:], h[:ethLen+ipHdr+tl])
	return dst
}

// ipChecksum is the RFC 1071 checksum of an IPv4 header whose checksum field is zero.
func ipChecksum(h []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(h); i += 2 {
		s += uint32(h[i])<<8 | uint32(h[i+1])
	}
	for s > 0xFFFF {
		s = s>>16 + s&0xFFFF
	}
	return ^uint16(s)
}

// mac derives a locally administered MAC address from an address and a number, so that
// frames of one interface or one neighbour look alike across samples.
func mac(a netip.Addr, n uint32) [6]byte {
	b := addr16(a)
	return [6]byte{0x02, b[13] ^ byte(n>>16), b[14], b[15], byte(n >> 8), byte(n)}
}
