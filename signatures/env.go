package signatures

import (
	"net/netip"

	"github.com/flowhound/flowhound/flow"
)

// flowEnv is the match language's environment as expr-lang sees it: it type-checks rules
// against this struct, and tests run expr's own VM on it to prove the closures agree. The
// closures never build it; they read flow.Record directly through flowFields, which must
// describe the same names, types and values (TestFlowFieldsAgree).
//
// Integers are int because expr's literals are int: every comparison then has one integer
// type, and `in [..]` lists stay integer sets.
type flowEnv struct {
	Exporter          string  `expr:"exporter"`
	Version           int     `expr:"version"`
	ObservationDomain int     `expr:"observation_domain"`
	SrcAddr           string  `expr:"src_addr"`
	DstAddr           string  `expr:"dst_addr"`
	NextHop           string  `expr:"next_hop"`
	SrcPort           int     `expr:"src_port"`
	DstPort           int     `expr:"dst_port"`
	Proto             int     `expr:"proto"`
	TCPFlags          int     `expr:"tcp_flags"`
	TOS               int     `expr:"tos"`
	InIf              int     `expr:"in_if"`
	OutIf             int     `expr:"out_if"`
	Packets           int     `expr:"packets"`
	Bytes             int     `expr:"bytes"`
	Flows             int     `expr:"flows"`
	Duration          float64 `expr:"duration"`
	SrcAS             int     `expr:"src_as"`
	DstAS             int     `expr:"dst_as"`
	SrcMask           int     `expr:"src_mask"`
	DstMask           int     `expr:"dst_mask"`
	SamplingRate      int     `expr:"sampling_rate"`
	BytesPerPacket    float64 `expr:"bytes_per_packet"`
	IPVersion         int     `expr:"ip_version"`
	HasTCPFlags       bool    `expr:"has_tcp_flags"`
	HasProto          bool    `expr:"has_proto"`
	HasPorts          bool    `expr:"has_ports"`
}

// Derived values, shared by the closures and envOf so that both sides compute the same.

func addrText(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}

// protoOf is 0 when the exporter did not send the protocol, whatever the record holds, so
// that the index (which keys "not sent" apart) and the closures agree.
func protoOf(r *flow.Record) int64 {
	if r.Has&flow.HasProto == 0 {
		return 0
	}
	return int64(r.Proto)
}

func tcpFlagsOf(r *flow.Record) int64 {
	if r.Has&flow.HasTCPFlags == 0 {
		return 0
	}
	return int64(r.TCPFlags)
}

func durationOf(r *flow.Record) float64 { return r.Duration().Seconds() }

func bytesPerPacket(r *flow.Record) float64 {
	if r.Packets == 0 {
		return 0
	}
	return float64(r.Bytes) / float64(r.Packets)
}

// ipVersion is 4 or 6 from the source address (the destination when the source is
// missing), 0 for records without addresses (sFlow samples of non-IP frames).
func ipVersion(r *flow.Record) int64 {
	a := r.SrcAddr
	if !a.IsValid() {
		a = r.DstAddr
	}
	switch {
	case !a.IsValid():
		return 0
	case a.Is4() || a.Is4In6():
		return 4
	}
	return 6
}

const hasPorts = flow.HasSrcPort | flow.HasDstPort

// envOf builds the expr environment of a record (tests and diagnostics only: it allocates).
func envOf(r *flow.Record) flowEnv {
	return flowEnv{
		Exporter:          addrText(r.Exporter),
		Version:           int(r.Version),
		ObservationDomain: int(r.ObservationDomain),
		SrcAddr:           addrText(r.SrcAddr),
		DstAddr:           addrText(r.DstAddr),
		NextHop:           addrText(r.NextHop),
		SrcPort:           int(r.SrcPort),
		DstPort:           int(r.DstPort),
		Proto:             int(protoOf(r)),
		TCPFlags:          int(tcpFlagsOf(r)),
		TOS:               int(r.TOS),
		InIf:              int(r.InIf),
		OutIf:             int(r.OutIf),
		Packets:           int(r.Packets),
		Bytes:             int(r.Bytes),
		Flows:             int(r.FlowCount()),
		Duration:          durationOf(r),
		SrcAS:             int(r.SrcAS),
		DstAS:             int(r.DstAS),
		SrcMask:           int(r.SrcMask),
		DstMask:           int(r.DstMask),
		SamplingRate:      int(r.SamplingRate),
		BytesPerPacket:    bytesPerPacket(r),
		IPVersion:         int(ipVersion(r)),
		HasTCPFlags:       r.Has&flow.HasTCPFlags != 0,
		HasProto:          r.Has&flow.HasProto != 0,
		HasPorts:          r.Has&hasPorts == hasPorts,
	}
}

// Field bits of the flow environment. The index works on the first four groups.
const (
	fProto uint64 = 1 << iota
	fHasProto
	fDstPort
	fSrcPort
	fTCPFlags
	fHasTCPFlags
	fOther // every other field: never indexed
)

// flowFields describes the match environment for the closure compiler.
var flowFields = fieldTable[flow.Record]{
	"exporter":           addrField(fOther, func(r *flow.Record) netip.Addr { return r.Exporter }),
	"version":            intField(fOther, func(r *flow.Record) int64 { return int64(r.Version) }),
	"observation_domain": intField(fOther, func(r *flow.Record) int64 { return int64(r.ObservationDomain) }),
	"src_addr":           addrField(fOther, func(r *flow.Record) netip.Addr { return r.SrcAddr }),
	"dst_addr":           addrField(fOther, func(r *flow.Record) netip.Addr { return r.DstAddr }),
	"next_hop":           addrField(fOther, func(r *flow.Record) netip.Addr { return r.NextHop }),
	"src_port":           intField(fSrcPort, func(r *flow.Record) int64 { return int64(r.SrcPort) }),
	"dst_port":           intField(fDstPort, func(r *flow.Record) int64 { return int64(r.DstPort) }),
	"proto":              intField(fProto, protoOf),
	"tcp_flags":          intField(fTCPFlags, tcpFlagsOf),
	"tos":                intField(fOther, func(r *flow.Record) int64 { return int64(r.TOS) }),
	"in_if":              intField(fOther, func(r *flow.Record) int64 { return int64(r.InIf) }),
	"out_if":             intField(fOther, func(r *flow.Record) int64 { return int64(r.OutIf) }),
	"packets":            intField(fOther, func(r *flow.Record) int64 { return int64(r.Packets) }),
	"bytes":              intField(fOther, func(r *flow.Record) int64 { return int64(r.Bytes) }),
	"flows":              intField(fOther, func(r *flow.Record) int64 { return int64(r.FlowCount()) }),
	"duration":           floatField(fOther, durationOf),
	"src_as":             intField(fOther, func(r *flow.Record) int64 { return int64(r.SrcAS) }),
	"dst_as":             intField(fOther, func(r *flow.Record) int64 { return int64(r.DstAS) }),
	"src_mask":           intField(fOther, func(r *flow.Record) int64 { return int64(r.SrcMask) }),
	"dst_mask":           intField(fOther, func(r *flow.Record) int64 { return int64(r.DstMask) }),
	"sampling_rate":      intField(fOther, func(r *flow.Record) int64 { return int64(r.SamplingRate) }),
	"bytes_per_packet":   floatField(fOther, bytesPerPacket),
	"ip_version":         intField(fOther, ipVersion),
	"has_tcp_flags":      boolField(fHasTCPFlags, func(r *flow.Record) bool { return r.Has&flow.HasTCPFlags != 0 }),
	"has_proto":          boolField(fHasProto, func(r *flow.Record) bool { return r.Has&flow.HasProto != 0 }),
	"has_ports":          boolField(fOther, func(r *flow.Record) bool { return r.Has&hasPorts == hasPorts }),
}

// aggEnv is the threshold language's environment for expr's type checker (and tests).
type aggEnv struct {
	BPS              float64   `expr:"bps"`
	PPS              float64   `expr:"pps"`
	FPS              float64   `expr:"fps"`
	DistinctSrc      float64   `expr:"distinct_src"`
	DistinctDst      float64   `expr:"distinct_dst"`
	DistinctSrcPorts float64   `expr:"distinct_src_ports"`
	DistinctDstPorts float64   `expr:"distinct_dst_ports"`
	Samples          float64   `expr:"samples"`
	BytesPerPacket   float64   `expr:"bytes_per_packet"`
	ExpectedBPS      float64   `expr:"expected_bps"`
	ExpectedPPS      float64   `expr:"expected_pps"`
	ExpectedFPS      float64   `expr:"expected_fps"`
	SpreadBPS        float64   `expr:"spread_bps"`
	SpreadPPS        float64   `expr:"spread_pps"`
	SpreadFPS        float64   `expr:"spread_fps"`
	Limits           limitsEnv `expr:"limits"`
}

// limitsEnv mirrors Limits with the names rules use; TestLimitNames keeps it, Limits and
// rules.LimitNames in step.
type limitsEnv struct {
	PPS       float64 `expr:"pps"`
	BPS       float64 `expr:"bps"`
	FPS       float64 `expr:"fps"`
	SYNPPS    float64 `expr:"syn_pps"`
	RSTPPS    float64 `expr:"rst_pps"`
	ACKPPS    float64 `expr:"ack_pps"`
	UDPPPS    float64 `expr:"udp_pps"`
	ICMPPPS   float64 `expr:"icmp_pps"`
	FragPPS   float64 `expr:"frag_pps"`
	AmpBPS    float64 `expr:"amp_bps"`
	AmpPPS    float64 `expr:"amp_pps"`
	ScanDsts  float64 `expr:"scan_dsts"`
	ScanPorts float64 `expr:"scan_ports"`
}

// Aggregate field bits, for Needs and for telling metrics from limits in severity.
const (
	aBPS uint64 = 1 << iota
	aPPS
	aFPS
	aDistinctSrc
	aDistinctDst
	aDistinctSrcPorts
	aDistinctDstPorts
	aSamples
	aBytesPerPacket
	aExpected
	aLimit
)

// aggBytesPerPacket derives the mean packet size from the rates.
func aggBytesPerPacket(a *Aggregates) float64 {
	if a.PPS <= 0 {
		return 0
	}
	return a.BPS / 8 / a.PPS
}

var aggFields = fieldTable[Aggregates]{
	"bps":                floatField(aBPS, func(a *Aggregates) float64 { return a.BPS }),
	"pps":                floatField(aPPS, func(a *Aggregates) float64 { return a.PPS }),
	"fps":                floatField(aFPS, func(a *Aggregates) float64 { return a.FPS }),
	"distinct_src":       floatField(aDistinctSrc, func(a *Aggregates) float64 { return a.DistinctSrc }),
	"distinct_dst":       floatField(aDistinctDst, func(a *Aggregates) float64 { return a.DistinctDst }),
	"distinct_src_ports": floatField(aDistinctSrcPorts, func(a *Aggregates) float64 { return a.DistinctSrcPort }),
	"distinct_dst_ports": floatField(aDistinctDstPorts, func(a *Aggregates) float64 { return a.DistinctDstPort }),
	"samples":            floatField(aSamples, func(a *Aggregates) float64 { return a.Samples }),
	"bytes_per_packet":   floatField(aBytesPerPacket, aggBytesPerPacket),
	"expected_bps":       floatField(aExpected, func(a *Aggregates) float64 { return a.ExpectedBPS }),
	"expected_pps":       floatField(aExpected, func(a *Aggregates) float64 { return a.ExpectedPPS }),
	"expected_fps":       floatField(aExpected, func(a *Aggregates) float64 { return a.ExpectedFPS }),
	"spread_bps":         floatField(aExpected, func(a *Aggregates) float64 { return a.SpreadBPS }),
	"spread_pps":         floatField(aExpected, func(a *Aggregates) float64 { return a.SpreadPPS }),
	"spread_fps":         floatField(aExpected, func(a *Aggregates) float64 { return a.SpreadFPS }),
}
