package flow

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"strconv"
	"time"
)

// AppendJSON appends the record's JSON object (DESIGN.md field names, absent fields
// omitted) to b. It is hand-written because `decode` prints millions of records and
// reflection-based encoding costs several allocations per record.
func (r *Record) AppendJSON(b []byte) []byte {
	b = append(b, '{')
	first := true
	key := func(name string) {
		if !first {
			b = append(b, ',')
		}
		first = false
		b = append(b, '"')
		b = append(b, name...)
		b = append(b, '"', ':')
	}
	addr := func(name string, a netip.Addr) {
		if a.IsValid() {
			key(name)
			b = append(b, '"')
			b = a.AppendTo(b)
			b = append(b, '"')
		}
	}
	uint := func(name string, bit uint32, v uint64) {
		if r.Has&bit != 0 {
			key(name)
			b = strconv.AppendUint(b, v, 10)
		}
	}
	tm := func(name string, bit uint32, ns int64) {
		if r.Has&bit != 0 && ns != 0 {
			key(name)
			b = append(b, '"')
			b = time.Unix(0, ns).UTC().AppendFormat(b, time.RFC3339Nano)
			b = append(b, '"')
		}
	}

	addr("exporter", r.Exporter)
	key("version")
	if r.Version == VersionSFlow5 {
		b = append(b, `"sflow5"`...)
	} else {
		b = strconv.AppendUint(b, uint64(r.Version), 10)
	}
	key("observation_domain")
	b = strconv.AppendUint(b, uint64(r.ObservationDomain), 10)
	addr("src_addr", r.SrcAddr)
	addr("dst_addr", r.DstAddr)
	addr("next_hop", r.NextHop)
	uint("src_port", HasSrcPort, uint64(r.SrcPort))
	uint("dst_port", HasDstPort, uint64(r.DstPort))
	uint("proto", HasProto, uint64(r.Proto))
	uint("tcp_flags", HasTCPFlags, uint64(r.TCPFlags))
	uint("tos", HasTOS, uint64(r.TOS))
	uint("in_if", HasInIf, uint64(r.InIf))
	uint("out_if", HasOutIf, uint64(r.OutIf))
	uint("packets", HasPackets, r.Packets)
	uint("bytes", HasBytes, r.Bytes)
	uint("flows", HasFlows, uint64(r.Flows))
	tm("start", HasStart, r.Start)
	tm("end", HasEnd, r.End)
	uint("src_as", HasSrcAS, uint64(r.SrcAS))
	uint("dst_as", HasDstAS, uint64(r.DstAS))
	uint("src_mask", HasSrcMask, uint64(r.SrcMask))
	uint("dst_mask", HasDstMask, uint64(r.DstMask))
	if r.SamplingRate > 0 {
		key("sampling_rate")
		b = strconv.AppendUint(b, uint64(r.SamplingRate), 10)
	}
	if name := r.AggName(); name != "" {
		key("agg")
		b = strconv.AppendQuote(b, name)
	}
	if p := r.SrcPrefix(); p.IsValid() {
		key("src_prefix")
		b = strconv.AppendQuote(b, p.String())
	}
	if p := r.DstPrefix(); p.IsValid() {
		key("dst_prefix")
		b = strconv.AppendQuote(b, p.String())
	}
	return append(b, '}')
}

// MarshalJSON implements json.Marshaler with AppendJSON.
func (r Record) MarshalJSON() ([]byte, error) { return r.AppendJSON(nil), nil }

// jsonRecord mirrors the JSON form for UnmarshalJSON; pointers tell absent from zero.
type jsonRecord struct {
	Exporter          netip.Addr      `json:"exporter"`
	Version           json.RawMessage `json:"version"`
	ObservationDomain uint32          `json:"observation_domain"`
	SrcAddr           netip.Addr      `json:"src_addr"`
	DstAddr           netip.Addr      `json:"dst_addr"`
	NextHop           netip.Addr      `json:"next_hop"`
	SrcPort           *uint16         `json:"src_port"`
	DstPort           *uint16         `json:"dst_port"`
	Proto             *uint8          `json:"proto"`
	TCPFlags          *uint8          `json:"tcp_flags"`
	TOS               *uint8          `json:"tos"`
	InIf              *uint32         `json:"in_if"`
	OutIf             *uint32         `json:"out_if"`
	Packets           *uint64         `json:"packets"`
	Bytes             *uint64         `json:"bytes"`
	Flows             *uint32         `json:"flows"`
	Start             *time.Time      `json:"start"`
	End               *time.Time      `json:"end"`
	SrcAS             *uint32         `json:"src_as"`
	DstAS             *uint32         `json:"dst_as"`
	SrcMask           *uint8          `json:"src_mask"`
	DstMask           *uint8          `json:"dst_mask"`
	SamplingRate      uint32          `json:"sampling_rate"`
	Agg               string          `json:"agg"`
}

// UnmarshalJSON reads the form AppendJSON writes (used by tools and tests that read
// `flowhound decode` output back).
func (r *Record) UnmarshalJSON(data []byte) error {
	var j jsonRecord
	if err := json.Unmarshal(data, &j); err != nil {
		return err
	}
	*r = Record{Exporter: j.Exporter, ObservationDomain: j.ObservationDomain,
		SrcAddr: j.SrcAddr, DstAddr: j.DstAddr, NextHop: j.NextHop, SamplingRate: j.SamplingRate}
	if r.SrcAddr.IsValid() {
		r.Has |= HasSrcAddr
	}
	if r.DstAddr.IsValid() {
		r.Has |= HasDstAddr
	}
	if r.NextHop.IsValid() {
		r.Has |= HasNextHop
	}
	if string(j.Version) == `"sflow5"` {
		r.Version = VersionSFlow5
	} else if len(j.Version) > 0 {
		v, err := strconv.ParseUint(string(j.Version), 10, 8)
		if err != nil {
			return fmt.Errorf("flow record: bad version %s", j.Version)
		}
		r.Version = uint8(v)
	}
	set := func(bit uint32, ok bool) {
		if ok {
			r.Has |= bit
		}
	}
	if j.SrcPort != nil {
		r.SrcPort = *j.SrcPort
	}
	set(HasSrcPort, j.SrcPort != nil)
	if j.DstPort != nil {
		r.DstPort = *j.DstPort
	}
	set(HasDstPort, j.DstPort != nil)
	if j.Proto != nil {
		r.Proto = *j.Proto
	}
	set(HasProto, j.Proto != nil)
	if j.TCPFlags != nil {
		r.TCPFlags = *j.TCPFlags
	}
	set(HasTCPFlags, j.TCPFlags != nil)
	if j.TOS != nil {
		r.TOS = *j.TOS
	}
	set(HasTOS, j.TOS != nil)
	if j.InIf != nil {
		r.InIf = *j.InIf
	}
	set(HasInIf, j.InIf != nil)
	if j.OutIf != nil {
		r.OutIf = *j.OutIf
	}
	set(HasOutIf, j.OutIf != nil)
	if j.Packets != nil {
		r.Packets = *j.Packets
	}
	set(HasPackets, j.Packets != nil)
	if j.Bytes != nil {
		r.Bytes = *j.Bytes
	}
	set(HasBytes, j.Bytes != nil)
	if j.Flows != nil {
		r.Flows = *j.Flows
	}
	set(HasFlows, j.Flows != nil)
	if j.Start != nil {
		r.Start = j.Start.UnixNano()
	}
	set(HasStart, j.Start != nil)
	if j.End != nil {
		r.End = j.End.UnixNano()
	}
	set(HasEnd, j.End != nil)
	if j.SrcAS != nil {
		r.SrcAS = *j.SrcAS
	}
	set(HasSrcAS, j.SrcAS != nil)
	if j.DstAS != nil {
		r.DstAS = *j.DstAS
	}
	set(HasDstAS, j.DstAS != nil)
	if j.SrcMask != nil {
		r.SrcMask = *j.SrcMask
	}
	set(HasSrcMask, j.SrcMask != nil)
	if j.DstMask != nil {
		r.DstMask = *j.DstMask
	}
	set(HasDstMask, j.DstMask != nil)
	for i, n := range aggNames {
		if n != "" && n == j.Agg {
			r.Agg = uint8(i)
		}
	}
	return nil
}
