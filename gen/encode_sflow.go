package gen

import (
	"encoding/binary"
	"slices"

	"github.com/flowhound/flowhound/flow"
)

// SFlowSnap is how many bytes of each sampled frame the agent copies, the usual default.
const SFlowSnap = 128

// SFlowSample is one sFlow flow sample: a sampled packet plus the counters of the data
// source (the input interface) that the sample carries.
type SFlowSample struct {
	// Packet describes the sampled packet: addresses, ports, protocol, TCP flags, TOS,
	// InIf/OutIf, NextHop and masks; Bytes/Packets is its IP length; SamplingRate is the
	// 1-in-N rate (0 is written as 1).
	Packet flow.Record
	Seq    uint32 // flow sample sequence number of the data source
	Pool   uint32 // packets the data source has seen (sample_pool)
	Drops  uint32
}

// IfCounters is one interface's generic counters for an sFlow counter sample.
type IfCounters struct {
	Index      uint32
	Seq        uint32 // counter sample sequence number of the data source
	Speed      uint64 // bits per second
	InOctets   uint64
	InPackets  uint32 // unicast
	OutOctets  uint64
	OutPackets uint32
}

// Datagram header lengths with an IPv4 or IPv6 agent address, and the length of a
// counter sample with one generic interface counters record (sample header 8, fixed
// fields 12, record header 8, counters 88).
const (
	sflowHeaderLen4 = 28
	sflowHeaderLen6 = 40
	sflowCounterLen = 8 + 12 + 8 + 88
)

// appendSFlowHeader writes the datagram header; the sample count is patched by the caller.
func appendSFlowHeader(dst []byte, h *Header) []byte {
	dst = be32(dst, 5)
	if h.Agent.Is4() || !h.Agent.IsValid() {
		a := addr4(h.Agent)
		dst = be32(dst, 1)
		dst = append(dst, a[:]...)
	} else {
		a := h.Agent.As16()
		dst = be32(dst, 2)
		dst = append(dst, a[:]...)
	}
	dst = be32(dst, h.Domain)
	dst = be32(dst, h.Sequence)
	dst = be32(dst, h.uptime(h.Export))
	return be32(dst, 0) // samples
}

// sflowSampleLen is the encoded length of a flow sample of this packet: sample header 8,
// fixed fields 32, raw packet header record 8+16+snap (padded), extended router record
// 8+16 (IPv4 next hop) or 8+28 (IPv6).
func sflowSampleLen(r *flow.Record) int {
	ipLen := packetSize(r)
	snap := min(frameLen(ipLen)-fcsLen, SFlowSnap)
	ext := 8 + 16
	if !is4(r.SrcAddr, r.DstAddr) {
		ext = 8 + 28
	}
	return 8 + 32 + 8 + 16 + (snap+3)&^3 + ext
}

// AppendSFlow appends one sFlow v5 datagram of flow samples and returns it with the
// number of samples consumed (as many as fit in MaxDatagram, at least one). Each sample
// carries the sampled frame's first SFlowSnap bytes (Ethernet, IP, TCP/UDP/ICMP headers
// rebuilt from the record) and an extended router record with next hop and masks. The
// data source is the input interface, as for ingress sampling. h.Sequence is the datagram
// sequence number.
func AppendSFlow(dst []byte, h Header, samples []SFlowSample) ([]byte, int) {
	start := len(dst)
	dst = slices.Grow(dst, MaxDatagram)
	dst = appendSFlowHeader(dst, &h)
	n := 0
	for n < len(samples) {
		s := &samples[n]
		r := &s.Packet
		sl := sflowSampleLen(r)
		if n > 0 && len(dst)-start+sl > MaxDatagram {
			break
		}
		ipLen := packetSize(r)
		fl := frameLen(ipLen)
		snap := min(fl-fcsLen, SFlowSnap)
		rate := max(r.SamplingRate, 1)
		dst = be32(dst, 1) // enterprise 0, flow_sample
		dst = be32(dst, uint32(sl-8))
		dst = be32(dst, s.Seq)
		dst = be32(dst, r.InIf&0xFFFFFF) // source type 0 (ifIndex)
		dst = be32(dst, rate)
		dst = be32(dst, s.Pool)
		dst = be32(dst, s.Drops)
		dst = be32(dst, r.InIf)
		dst = be32(dst, r.OutIf)
		dst = be32(dst, 2) // records
		// raw packet header
		dst = be32(dst, 1)
		dst = be32(dst, uint32(16+(snap+3)&^3))
		dst = be32(dst, 1) // header protocol: ETHERNET-ISO88023
		dst = be32(dst, uint32(fl))
		dst = be32(dst, fcsLen) // stripped
		dst = be32(dst, uint32(snap))
		dmac := mac(h.Agent, r.InIf)
		smac := mac(r.NextHop, r.InIf^0x8000)
		dst = appendSampledFrame(dst, r, ipLen, snap, dmac, smac)
		for len(dst)%4 != 0 {
			dst = append(dst, 0)
		}
		// extended router data: next hop and prefix lengths
		dst = be32(dst, 1002)
		if is4(r.SrcAddr, r.DstAddr) {
			nh := addr4(r.NextHop)
			dst = be32(dst, 16)
			dst = be32(dst, 1)
			dst = append(dst, nh[:]...)
		} else {
			nh := addr16(r.NextHop)
			dst = be32(dst, 28)
			dst = be32(dst, 2)
			dst = append(dst, nh[:]...)
		}
		dst = be32(dst, uint32(r.SrcMask))
		dst = be32(dst, uint32(r.DstMask))
		n++
	}
	binary.BigEndian.PutUint32(dst[start+sflowCountOff(&h):], uint32(n))
	return dst, n
}

// sflowCountOff is the offset of the sample count in the datagram header.
func sflowCountOff(h *Header) int {
	if h.Agent.Is4() || !h.Agent.IsValid() {
		return sflowHeaderLen4 - 4
	}
	return sflowHeaderLen6 - 4
}

// AppendSFlowCounters appends one sFlow v5 datagram of counter samples (generic
// interface counters) and returns it with the number of entries consumed.
func AppendSFlowCounters(dst []byte, h Header, cs []IfCounters) ([]byte, int) {
	start := len(dst)
	dst = slices.Grow(dst, MaxDatagram)
	dst = appendSFlowHeader(dst, &h)
	n := 0
	for n < len(cs) && len(dst)-start+sflowCounterLen <= MaxDatagram {
		c := &cs[n]
		dst = be32(dst, 2) // enterprise 0, counters_sample
		dst = be32(dst, sflowCounterLen-8)
		dst = be32(dst, c.Seq)
		dst = be32(dst, c.Index&0xFFFFFF)
		dst = be32(dst, 1) // records
		dst = be32(dst, 1) // generic interface counters
		dst = be32(dst, 88)
		dst = be32(dst, c.Index)
		dst = be32(dst, 6) // ethernetCsmacd
		dst = be64(dst, c.Speed)
		dst = be32(dst, 1) // full duplex
		dst = be32(dst, 3) // admin up, oper up
		dst = be64(dst, c.InOctets)
		dst = be32(dst, c.InPackets)
		dst = be32(dst, 0) // multicast
		dst = be32(dst, 0) // broadcast
		dst = be32(dst, 0) // discards
		dst = be32(dst, 0) // errors
		dst = be32(dst, 0) // unknown protos
		dst = be64(dst, c.OutOctets)
		dst = be32(dst, c.OutPackets)
		dst = be32(dst, 0)
		dst = be32(dst, 0)
		dst = be32(dst, 0)
		dst = be32(dst, 0)
		dst = be32(dst, 0) // promiscuous off
		n++
	}
	binary.BigEndian.PutUint32(dst[start+sflowCountOff(&h):], uint32(n))
	return dst, n
}
