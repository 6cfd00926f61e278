// Package flow defines Record, the flow value that every stage of flowhound passes in batches.
package flow

import (
	"net/netip"
	"time"
)

// Version values for Record.Version. NetFlow and IPFIX use their header version number;
// sFlow, whose header version (5) collides with NetFlow v5, gets its own value.
const (
	VersionNetFlow1 uint8 = 1
	VersionNetFlow5 uint8 = 5
	VersionNetFlow7 uint8 = 7
	VersionNetFlow8 uint8 = 8
	VersionNetFlow9 uint8 = 9
	VersionIPFIX    uint8 = 10
	VersionSFlow5   uint8 = 0xF5
)

// Field bits for Record.Has. A bit says the exporter sent the field, so that a zero value
// ("TCP flags 0", "protocol 0") is told apart from a field the template did not carry.
// Decoders set whole masks at once (a v5 record has a fixed mask, a v9 template computes
// its mask when it is learned), so this costs nothing per field.
const (
	HasSrcAddr uint32 = 1 << iota
	HasDstAddr
	HasNextHop
	HasSrcPort
	HasDstPort
	HasProto
	HasTCPFlags
	HasTOS
	HasInIf
	HasOutIf
	HasPackets
	HasBytes
	HasFlows
	HasStart
	HasEnd
	HasSrcAS
	HasDstAS
	HasSrcMask
	HasDstMask
)

// Record is one flow as an exporter reported it. It is a value type: stages pass
// []Record batches and never keep pointers into them beyond a call.
//
// Counters are as exported, not multiplied by SamplingRate. Times are Unix nanoseconds
// (UTC) so that the record carries no pointers for its times and compares cheaply; zero
// means unknown.
type Record struct {
	Received int64 // arrival time of the datagram (engine clock: receive time or pcap timestamp)
	Start    int64 // flow start (exporter clock, converted to absolute time)
	End      int64 // flow end

	Exporter netip.Addr // address the datagram came from
	SrcAddr  netip.Addr
	DstAddr  netip.Addr
	NextHop  netip.Addr

	Packets uint64
	Bytes   uint64

	ObservationDomain uint32 // v9 source id, IPFIX domain, v5 engine_type<<8|engine_id, sFlow sub-agent
	InIf              uint32
	OutIf             uint32
	SrcAS             uint32
	DstAS             uint32
	Flows             uint32 // flows aggregated into this record (v8), else 0 (= one flow)
	SamplingRate      uint32 // 1 in N packets; 0 or 1 means unsampled
	Has               uint32 // Has* bits: which fields the exporter sent

	SrcPort  uint16
	DstPort  uint16
	Proto    uint8
	TCPFlags uint8
	TOS      uint8
	SrcMask  uint8
	DstMask  uint8
	Version  uint8 // Version* constants
	Agg      uint8 // NetFlow v8 aggregation scheme (1-14), 0 otherwise
}

// TCP flag bits as carried in Record.TCPFlags.
const (
	FlagFIN uint8 = 0x01
	FlagSYN uint8 = 0x02
	FlagRST uint8 = 0x04
	FlagPSH uint8 = 0x08
	FlagACK uint8 = 0x10
	FlagURG uint8 = 0x20
	FlagECE uint8 = 0x40
	FlagCWR uint8 = 0x80
)

// Protocol numbers used across packages.
const (
	ProtoICMP   uint8 = 1
	ProtoTCP    uint8 = 6
	ProtoUDP    uint8 = 17
	ProtoICMPv6 uint8 = 58
)

// Scale returns the sampling multiplier: SamplingRate, or 1 for unsampled records.
func (r *Record) Scale() uint64 {
	if r.SamplingRate > 1 {
		return uint64(r.SamplingRate)
	}
	return 1
}

// FlowCount returns how many flows the record stands for (v8 aggregates carry a count).
func (r *Record) FlowCount() uint64 {
	if r.Flows > 0 {
		return uint64(r.Flows)
	}
	return 1
}

// Duration returns the flow's duration as exported, or 0 when unknown or inverted.
func (r *Record) Duration() time.Duration {
	if r.Start == 0 || r.End <= r.Start {
		return 0
	}
	return time.Duration(r.End - r.Start)
}

// AggName returns the NetFlow v8 aggregation scheme's name as used in JSON ("as",
// "protocol_port", ...), or "" for records that are not v8 aggregates.
func (r *Record) AggName() string {
	if int(r.Agg) < len(aggNames) {
		return aggNames[r.Agg]
	}
	return ""
}

// aggNames are the Cisco NetFlow v8 aggregation schemes by number.
var aggNames = [...]string{
	0:  "",
	1:  "as",
	2:  "protocol_port",
	3:  "src_prefix",
	4:  "dst_prefix",
	5:  "prefix",
	6:  "dst_only",
	7:  "src_dst",
	8:  "full_flow",
	9:  "tos_as",
	10: "tos_proto_port",
	11: "tos_src_prefix",
	12: "tos_dst_prefix",
	13: "tos_prefix",
	14: "tos_prefix_port",
}

// SrcPrefix returns the source prefix of a v8 prefix aggregation (schemes that carry a
// source prefix), or an invalid prefix.
func (r *Record) SrcPrefix() netip.Prefix {
	switch r.Agg {
	case 3, 5, 11, 13, 14:
		if p, err := r.SrcAddr.Prefix(int(r.SrcMask)); err == nil {
			return p
		}
	}
	return netip.Prefix{}
}

// DstPrefix returns the destination prefix of a v8 prefix aggregation, or an invalid prefix.
func (r *Record) DstPrefix() netip.Prefix {
	switch r.Agg {
	case 4, 5, 12, 13, 14:
		if p, err := r.DstAddr.Prefix(int(r.DstMask)); err == nil {
			return p
		}
	}
	return netip.Prefix{}
}

// Batch is a reusable slice of records handed from ingest to detection. The producer
// takes one from a Pool and the consumer releases it when done, so steady-state ingest
// allocates nothing.
type Batch struct {
	Records []Record
	pool    *Pool
}

// Release returns the batch to its pool. The batch must not be used afterwards.
func (b *Batch) Release() {
	if b.pool != nil {
		b.Records = b.Records[:0]
		b.pool.put(b)
	}
}
