package ingest

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/flowhound/flowhound/flow"
)

// TestInterop decodes every capture of the shared corpus and checks the records
// against tshark's decoding (the oracle): the number of flow records per file and,
// for every field both sides decode, the value. Where the two disagree because tshark
// is wrong, oracleExceptions says so and why.
func TestInterop(t *testing.T) {
	compared = map[string]int{}
	t.Run("shared", func(t *testing.T) { interopCorpus(t, capturesDir(t)) })
	// softflowd's exports, generated for flowhound (testdata/ingest/softflowd/README.md).
	t.Run("softflowd", func(t *testing.T) { interopCorpus(t, filepath.Join("..", "testdata", "ingest", "softflowd")) })
	// Every field must have been checked against tshark somewhere.
	for _, name := range fields {
		if compared[name] == 0 {
			t.Errorf("no %s was compared with tshark", name)
		}
	}
	t.Logf("fields compared with tshark: %v", compared)
}

// compared counts, per field, the values checked against the oracle.
var compared map[string]int

func interopCorpus(t *testing.T, dir string) {
	rows, err := readIndex(dir)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, row := range rows {
		seen[row.file] = true
		t.Run(strings.TrimSuffix(row.file, ".pcap"), func(t *testing.T) {
			checkCapture(t, dir, row)
		})
	}
	files, _ := filepath.Glob(filepath.Join(dir, "files", "*"))
	for _, f := range files {
		if !seen[filepath.Base(f)] {
			t.Errorf("%s is not in INDEX.tsv: the interop test would not cover it", filepath.Base(f))
		}
	}
	if filepath.Base(dir) == "captures" {
		for f := range oracleExceptions {
			if !seen[f] && !strings.HasPrefix(f, "softflowd__") {
				t.Errorf("oracleExceptions names %s, which is not in the corpus", f)
			}
		}
	}
}

// oracleException records where flowhound and tshark legitimately disagree on a file.
type oracleException struct {
	extra   int               // flow records flowhound decodes that tshark does not
	missing int               // flow records tshark decodes that flowhound does not
	fields  map[string]string // fields whose tshark value is wrong, and why
	why     string            // why the counts differ
	// wrap32, when set, says why times that differ from tshark's by exactly 2^32 ms
	// are right: tshark does not fold a sysUptime difference modulo 2^32.
	wrap32 string
}

var oracleExceptions = map[string]oracleException{
	// Counts: tshark trusts the v9 header count and stops reading FlowSets after it
	// (captures README, pitfall 3), or stops at the first bad field (pitfall 4).
	"graylog-netflow__netflow-v9-1.pcap": {extra: 2,
		why: "frame 1 says count=2 but holds 3 FlowSets; tshark skips the third (a data set of 2 records), flowhound walks FlowSet lengths"},
	"graylog-netflow__netflow9.pcap": {extra: 3,
		why: "frame 1 says count=1 but holds 5 FlowSets; tshark reads only the first, so it misses frame 1's data record and never learns template 2048 (data in frames 7 and 9)"},
	"logstash-netflow__netflow9_test_invalid01.pcap": {extra: 2,
		why: "count=2 but 6 FlowSets: tshark reads the 2 template FlowSets and stops; the data FlowSets hold 2 records"},
	"logstash-netflow__netflow9_test_h3c.pcap": {extra: 15,
		why: "template 3281 declares a field with length 2 where tshark expects an IPv4 address; tshark marks the datagram Malformed after the first record, flowhound skips that one field (counted as bad_field) and decodes all 16 records"},

	// Fields tshark decodes wrongly.
	"synthetic__netflow_v8_05_prefix.pcap":      v8MaskSwap,
	"synthetic__netflow_v8_13_tos_prefix.pcap":  v8MaskSwap,
	"synthetic__netflow_v8_14_prefix_port.pcap": v8MaskSwap,
	"synthetic__netflow_v8_09_tos_as.pcap": {fields: map[string]string{
		"tos":    "Cisco's ToS-AS layout is src_as, dst_as, input, output, tos, pad, reserved; tshark reads tos, pad, reserved before input, output (pitfall 7)",
		"in_if":  "same layout error in tshark",
		"out_if": "same layout error in tshark",
	}},
	"nxthdr-sflow__sflow.pcap": {fields: map[string]string{
		"tcp_flags": "the sampled-IPv4 record's tcp_flags is a 32-bit XDR integer holding 0x10 (ACK); tshark 4.0 reads the flag bits from its first byte, which is 0",
	}},

	// Times: sysUptime arithmetic.
	"logstash-netflow__netflow5.pcap": {wrap32: "softflowd stamps First=0xFFFFFFFF on flows that started one tick before its uptime counter " +
		"reached 0; taken modulo 2^32 that is 3.4 s before export, tshark puts it 49.7 days in the future"},
	"logstash-netflow__netflow5_test_invalid01.pcap": {wrap32: "corrupt records whose First/Last are hours after the header's sysUptime: " +
		"no reading is right; flowhound takes more than an hour ahead as an earlier turn of the 32-bit uptime counter (unsigned arithmetic, as goflow2), tshark as the future"},
	"logstash-netflow__netflow9_test_fortigate_fortios_521.pcap": {wrap32: "the data datagram's sysUptime (5.7 h) is 7.2 days behind its flows' " +
		"FIRST/LAST_SWITCHED (a spliced capture): flowhound reads them as an earlier turn of the 32-bit uptime counter, tshark as 7 days in the future"},
}

var v8MaskSwap = oracleException{fields: map[string]string{
	"src_mask": "Cisco's layout (flow-tools, pmacct) puts dst_mask before src_mask in aggregations 5, 13 and 14; tshark swaps them (pitfall 7)",
	"dst_mask": "see src_mask",
}}

// fields are the record fields both sides can express, in flow record JSON names.
var fields = []string{"src_addr", "dst_addr", "next_hop", "src_port", "dst_port", "proto",
	"tcp_flags", "tos", "in_if", "out_if", "packets", "bytes", "flows", "start", "end",
	"src_as", "dst_as", "src_mask", "dst_mask", "sampling_rate"}

type want struct {
	frame int    // oracle frame index (0-based)
	label string // where the record is in the oracle, for messages
	f     map[string]string
	alt   map[string][]string // other acceptable values (several time fields in one record)
}

type got struct {
	frame int
	f     map[string]string
	r     flow.Record
}

func checkCapture(t *testing.T, dir string, row indexRow) {
	frames, err := readOracle(filepath.Join(dir, "oracle", row.file+".json"))
	if err != nil {
		t.Fatal(err)
	}
	wants, datagrams := oracleRecords(frames)
	if datagrams != row.datagrams {
		t.Errorf("oracle has %d flow datagrams, INDEX.tsv says %d", datagrams, row.datagrams)
	}

	// Decode the capture; the n-th UDP frame we see is the n-th frame with a udp layer
	// in the oracle.
	var udpFrames []int
	for i, fr := range frames {
		if fr.udp {
			udpFrames = append(udpFrames, i)
		}
	}
	var gots []got
	dec := NewDecoder(DecoderConfig{})
	f, err := os.Open(filepath.Join(dir, "files", row.file))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	n := 0
	var recs []flow.Record
	err = ReadCapture(f, func(ts int64, src netip.Addr, payload []byte) error {
		if n >= len(udpFrames) {
			return fmt.Errorf("more UDP frames than the oracle has")
		}
		recs, _ = dec.Decode(src, ts, payload, recs[:0])
		for _, r := range recs {
			gots = append(gots, got{frame: udpFrames[n], f: recordFields(&r), r: r})
		}
		n++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n != len(udpFrames) {
		t.Errorf("read %d UDP frames, the oracle has %d", n, len(udpFrames))
	}

	exc := oracleExceptions[row.file]
	// Records are matched by their 5-tuple, first within their own frame, then
	// across frames: a data set that waited for its template comes out of a later
	// datagram than the one tshark (two-pass) shows it in.
	matched := make([]bool, len(wants))
	pair := make([]int, len(gots))
	for pass := 0; pass < 2; pass++ {
		for gi, g := range gots {
			if pass == 1 && pair[gi] >= 0 {
				continue
			}
			pair[gi] = -1
			k := matchKey(g.f)
			for i, w := range wants {
				if !matched[i] && (pass == 1 || w.frame == g.frame) && matchKey(w.f) == k {
					matched[i], pair[gi] = true, i
					break
				}
			}
		}
	}
	wraps := 0
	var extra []got
	for gi, g := range gots {
		if pair[gi] < 0 {
			extra = append(extra, g)
			continue
		}
		wraps += compareFields(t, wants[pair[gi]], g, exc)
	}
	if exc.wrap32 != "" && wraps == 0 {
		t.Errorf("exceptions table allows uptime-wrap differences, but none occurred")
	}
	var missing []want
	for i, m := range matched {
		if !m {
			missing = append(missing, wants[i])
		}
	}
	if len(extra) != exc.extra {
		t.Errorf("%d records decoded that tshark does not have (exceptions table: %d)", len(extra), exc.extra)
		for i, g := range extra {
			if i == 5 {
				break
			}
			t.Logf("  extra, frame %d: %s", g.frame+1, g.r.AppendJSON(nil))
		}
	}
	if len(missing) != exc.missing {
		t.Errorf("%d tshark records not decoded (exceptions table: %d)", len(missing), exc.missing)
		for i, w := range missing {
			if i == 5 {
				break
			}
			t.Logf("  missing, frame %d %s: %v", w.frame+1, w.label, w.f)
		}
	}
	if want := len(wants) + exc.extra - exc.missing; len(gots) != want {
		t.Errorf("decoded %d flow records, want %d (tshark %d, +%d -%d by the exceptions table)",
			len(gots), want, len(wants), exc.extra, exc.missing)
	}
}

func matchKey(f map[string]string) string {
	return f["src_addr"] + "|" + f["dst_addr"] + "|" + f["src_port"] + "|" + f["dst_port"] + "|" + f["proto"]
}

// compareFields checks every field both records have and returns how many times
// differed by exactly 2^32 ms where the exceptions allow it.
func compareFields(t *testing.T, w want, g got, exc oracleException) int {
	t.Helper()
	wraps := 0
	for _, name := range fields {
		wv, ok := w.f[name]
		if !ok {
			continue
		}
		if why, ok := exc.fields[name]; ok && why != "" {
			continue
		}
		gv, ok := g.f[name]
		if !ok {
			t.Errorf("frame %d %s: %s: tshark has %s, flowhound has none", w.frame+1, w.label, name, wv)
			continue
		}
		compared[name]++
		if gv == wv {
			continue
		}
		if alts, ok := w.alt[name]; ok && slices.Contains(alts, gv) {
			continue
		}
		if (name == "start" || name == "end") && exc.wrap32 != "" {
			a, _ := strconv.ParseInt(gv, 10, 64)
			b, _ := strconv.ParseInt(wv, 10, 64)
			if d := a - b; d == 1<<32*1e6 || d == -(1<<32)*1e6 {
				wraps++
				continue
			}
		}
		t.Errorf("frame %d %s: %s = %s, tshark says %s", w.frame+1, w.label, name, gv, wv)
	}
	return wraps
}

// recordFields renders the fields a record has, in the oracle's canonical form.
func recordFields(r *flow.Record) map[string]string {
	m := map[string]string{}
	addr := func(name string, bit uint32, a netip.Addr) {
		if r.Has&bit != 0 && a.IsValid() {
			m[name] = a.String()
		}
	}
	num := func(name string, bit uint32, v uint64) {
		if r.Has&bit != 0 {
			m[name] = strconv.FormatUint(v, 10)
		}
	}
	addr("src_addr", flow.HasSrcAddr, r.SrcAddr)
	addr("dst_addr", flow.HasDstAddr, r.DstAddr)
	addr("next_hop", flow.HasNextHop, r.NextHop)
	num("src_port", flow.HasSrcPort, uint64(r.SrcPort))
	num("dst_port", flow.HasDstPort, uint64(r.DstPort))
	num("proto", flow.HasProto, uint64(r.Proto))
	num("tcp_flags", flow.HasTCPFlags, uint64(r.TCPFlags))
	num("tos", flow.HasTOS, uint64(r.TOS))
	num("in_if", flow.HasInIf, uint64(r.InIf))
	num("out_if", flow.HasOutIf, uint64(r.OutIf))
	num("packets", flow.HasPackets, r.Packets)
	num("bytes", flow.HasBytes, r.Bytes)
	num("flows", flow.HasFlows, uint64(r.Flows))
	num("src_as", flow.HasSrcAS, uint64(r.SrcAS))
	num("dst_as", flow.HasDstAS, uint64(r.DstAS))
	num("src_mask", flow.HasSrcMask, uint64(r.SrcMask))
	num("dst_mask", flow.HasDstMask, uint64(r.DstMask))
	if r.Has&flow.HasStart != 0 {
		m["start"] = strconv.FormatInt(r.Start, 10)
	}
	if r.Has&flow.HasEnd != 0 {
		m["end"] = strconv.FormatInt(r.End, 10)
	}
	if r.SamplingRate > 0 {
		m["sampling_rate"] = strconv.FormatUint(uint64(r.SamplingRate), 10)
	}
	return m
}

// oracleRecords extracts tshark's flow records (not options data, not counter
// samples) in frame order, and counts the flow export datagrams.
func oracleRecords(frames []oracleFrame) ([]want, int) {
	// Options template ids per domain, from the whole file: with -2, tshark applies
	// templates that come later in the capture.
	optIDs := map[string]bool{}
	for _, fr := range frames {
		if fr.cflow == nil {
			continue
		}
		dom := domainOf(fr.cflow)
		for _, e := range fr.cflow {
			set, ok := e.Val.(jobj)
			if !ok {
				continue
			}
			for _, s := range set {
				if id, ok := strings.CutPrefix(s.Key, "Options Template (Id = "); ok {
					id, _, _ = strings.Cut(id, ")")
					optIDs[dom+"/"+id] = true
				}
			}
		}
	}
	var out []want
	datagrams := 0
	sysInit := map[string]int64{}
	for i, fr := range frames {
		if fr.cflow != nil {
			datagrams++
			out = append(out, cflowRecords(i, fr.cflow, optIDs, sysInit)...)
		}
		if fr.sflow != nil {
			datagrams++
			out = append(out, sflowRecords(i, fr.sflow)...)
		}
	}
	return out, datagrams
}

func domainOf(h jobj) string {
	if s, ok := h.str("cflow.source_id"); ok {
		return s
	}
	s, _ := h.str("cflow.od_id")
	return s
}

type cflowHeader struct {
	version  int
	exportNs int64
	uptimeNs int64
	rate     uint64
	dom      string
}

func cflowRecords(frame int, h jobj, optIDs map[string]bool, sysInit map[string]int64) []want {
	var hd cflowHeader
	v, _ := h.str("cflow.version")
	hd.version, _ = strconv.Atoi(v)
	hd.dom = domainOf(h)
	ts := h.obj("cflow.timestamp_tree")
	if s, ok := ts.str("cflow.unix_secs"); ok {
		sec, _ := strconv.ParseInt(s, 10, 64)
		nsec := int64(0)
		if s, ok := ts.str("cflow.unix_nsecs"); ok {
			nsec, _ = strconv.ParseInt(s, 10, 64)
		}
		hd.exportNs = sec*1e9 + nsec
	}
	if s, ok := ts.str("cflow.exporttime"); ok {
		sec, _ := strconv.ParseInt(s, 10, 64)
		hd.exportNs = sec * 1e9
	}
	if s, ok := h.str("cflow.sysuptime"); ok {
		hd.uptimeNs, _ = parseSeconds(s)
	}
	if s, ok := h.str("cflow.samplerate"); ok {
		hd.rate, _ = parseUint(s)
	}
	var out []want
	for _, e := range h {
		rec, ok := e.Val.(jobj)
		if !ok {
			continue
		}
		switch {
		case strings.HasPrefix(e.Key, "pdu "):
			f, alt := cflowFields(rec, hd, sysInit)
			out = append(out, want{frame: frame, label: e.Key, f: f, alt: alt})
		case strings.HasPrefix(e.Key, "FlowSet ") || strings.HasPrefix(e.Key, "Set "):
			id, _ := rec.str("cflow.flowset_id")
			options := optIDs[hd.dom+"/"+id]
			for _, r := range rec {
				fl, ok := r.Val.(jobj)
				if !ok || !strings.HasPrefix(r.Key, "Flow ") {
					continue
				}
				if options {
					if s, ok := fl.str("cflow.sys_init_time"); ok {
						if ns, ok := parseAbsTime(s); ok {
							sysInit[hd.dom] = ns
						}
					}
					continue
				}
				f, alt := cflowFields(fl, hd, sysInit)
				out = append(out, want{frame: frame, label: e.Key + " " + r.Key, f: f, alt: alt})
			}
		}
	}
	return out
}

func firstStr(o jobj, keys ...string) (string, bool) {
	for _, k := range keys {
		if s, ok := o.str(k); ok {
			return s, true
		}
	}
	return "", false
}

func canonAddr(s string) (string, bool) {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return "", false
	}
	return a.Unmap().String(), true
}

func cflowFields(o jobj, hd cflowHeader, sysInit map[string]int64) (map[string]string, map[string][]string) {
	m := map[string]string{}
	// Addresses: where a template has both an IPv4 and an IPv6 field, the record uses
	// the IPv6 one unless it is ::.
	pick := func(name string, v4, v6 []string) {
		if s, ok := firstStr(o, v6...); ok && s != "::" {
			if a, ok := canonAddr(s); ok {
				m[name] = a
				return
			}
		}
		if s, ok := firstStr(o, v4...); ok {
			if a, ok := canonAddr(s); ok {
				m[name] = a
			}
		}
	}
	pick("src_addr", []string{"cflow.srcaddr", "cflow.srcnet"}, []string{"cflow.srcaddrv6"})
	pick("dst_addr", []string{"cflow.dstaddr", "cflow.dstnet"}, []string{"cflow.dstaddrv6"})
	if _, ok := firstStr(o, "cflow.nexthop", "cflow.nexthopv6"); ok {
		pick("next_hop", []string{"cflow.nexthop"}, []string{"cflow.nexthopv6"})
	} else {
		pick("next_hop", []string{"cflow.bgpnexthop"}, []string{"cflow.bgpnexthopv6"})
	}
	num := func(name string, mask uint64, keys ...string) {
		if s, ok := firstStr(o, keys...); ok {
			if v, ok := parseUint(s); ok {
				if mask != 0 {
					v &= mask
				}
				m[name] = strconv.FormatUint(v, 10)
			}
		}
	}
	num("src_port", 0, "cflow.srcport")
	num("dst_port", 0, "cflow.dstport")
	num("proto", 0, "cflow.protocol")
	num("tcp_flags", 0xFF, "cflow.tcpflags")
	num("tos", 0, "cflow.tos")
	num("in_if", 0, "cflow.inputint")
	num("out_if", 0, "cflow.outputint")
	num("packets", 0, "cflow.packets", "cflow.permanent_packets", "cflow.post_packets")
	num("bytes", 0, "cflow.octets", "cflow.permanent_octets", "cflow.post_octets", "cflow.initiator_octets")
	num("flows", 0, "cflow.flows")
	num("src_as", 0, "cflow.srcas")
	num("dst_as", 0, "cflow.dstas")
	num("src_mask", 0, "cflow.srcmask", "cflow.srcmaskv6")
	num("dst_mask", 0, "cflow.dstmask", "cflow.dstmaskv6")
	if hd.version == 5 && hd.rate&0x3FFF > 0 {
		m["sampling_rate"] = strconv.FormatUint(hd.rate&0x3FFF, 10)
	}
	if hd.version >= 9 {
		if s, ok := o.str("cflow.sampling_interval"); ok {
			if v, ok := parseUint(s); ok && v > 0 {
				m["sampling_rate"] = strconv.FormatUint(v, 10)
			}
		}
	}

	// PSAMP packet reports: the sampled packet, which tshark dissects in place.
	for _, sec := range []string{"cflow.data_link_frame_section_tree", "cflow.ip_header_packet_section_tree"} {
		if tree := o.obj(sec); tree != nil {
			sampledHeader(tree, m)
			m["packets"] = "1"
			if _, ok := m["bytes"]; !ok {
				if v, ok := tree.find("ip.len"); ok {
					m["bytes"] = v
				} else if v, ok := tree.find("ipv6.plen"); ok {
					n, _ := strconv.Atoi(v)
					m["bytes"] = strconv.Itoa(n + 40)
				}
			}
			for _, k := range []string{"cflow.observation_time_milliseconds", "cflow.observation_time_microseconds",
				"cflow.observation_time_nanoseconds", "cflow.observation_time_seconds"} {
				if v, ok := o.str(k); ok {
					if ns, ok := parseAbsTime(v); ok {
						m["start"] = strconv.FormatInt(ns, 10)
						m["end"] = m["start"]
						break
					}
				}
			}
			break
		}
	}

	// A record can carry its times in several elements (uptime-relative, seconds,
	// milliseconds...), each shown by tshark in its own timedelta_tree. flowhound uses
	// one of them, so any of them is an acceptable value.
	alt := map[string][]string{}
	for _, e := range o {
		if e.Key != "cflow.timedelta_tree" {
			continue
		}
		td, _ := e.Val.(jobj)
		start, end := treeTimes(td, hd, sysInit)
		for _, x := range []struct {
			name, v string
		}{{"start", start}, {"end", end}} {
			if x.v == "" {
				continue
			}
			if _, ok := m[x.name]; !ok {
				m[x.name] = x.v
			} else {
				alt[x.name] = append(alt[x.name], x.v)
			}
		}
	}
	return m, alt
}

// treeTimes converts one timedelta_tree to absolute start and end (Unix ns, decimal).
func treeTimes(td jobj, hd cflowHeader, sysInit map[string]int64) (string, string) {
	var start, end string
	var relStart, relEnd int64
	var hasRelStart, hasRelEnd bool
	if s, ok := td.str("cflow.timestart"); ok {
		relStart, hasRelStart = parseSeconds(s)
	}
	if s, ok := td.str("cflow.timeend"); ok {
		relEnd, hasRelEnd = parseSeconds(s)
	}
	// tshark prints a sysUptime-relative time of 0 as the epoch: an absolute time
	// cannot be 0, so read the epoch as relative 0.
	if s, ok := td.str("cflow.abstimestart"); ok {
		if ns, ok := parseAbsTime(s); ok {
			if ns == 0 {
				relStart, hasRelStart = 0, true
			} else {
				start = strconv.FormatInt(ns, 10)
			}
		}
	}
	if s, ok := td.str("cflow.abstimeend"); ok {
		if ns, ok := parseAbsTime(s); ok {
			if ns == 0 {
				relEnd, hasRelEnd = 0, true
			} else {
				end = strconv.FormatInt(ns, 10)
			}
		}
	}
	if !hasRelStart && !hasRelEnd {
		return start, end
	}
	switch {
	case hd.version < 10:
		// Relative to sysUptime at export: start = export - (uptime - first).
		if hasRelStart {
			start = strconv.FormatInt(hd.exportNs-(hd.uptimeNs-relStart), 10)
		}
		if hasRelEnd {
			end = strconv.FormatInt(hd.exportNs-(hd.uptimeNs-relEnd), 10)
		}
	case sysInit[hd.dom] != 0:
		if hasRelStart {
			start = strconv.FormatInt(sysInit[hd.dom]+relStart, 10)
		}
		if hasRelEnd {
			end = strconv.FormatInt(sysInit[hd.dom]+relEnd, 10)
		}
	default:
		// IPFIX without systemInitTimeMilliseconds: flowhound takes the flow to end
		// at export time.
		if hasRelEnd {
			end = strconv.FormatInt(hd.exportNs, 10)
			if hasRelStart {
				start = strconv.FormatInt(hd.exportNs-(relEnd-relStart), 10)
			}
		} else if hasRelStart {
			start = strconv.FormatInt(hd.exportNs, 10)
		}
	}
	return start, end
}

func sflowRecords(frame int, h jobj) []want {
	var out []want
	for _, e := range h {
		s, ok := e.Val.(jobj)
		if !ok {
			continue
		}
		expanded := strings.HasPrefix(e.Key, "Expanded flow sample")
		if !expanded && !strings.HasPrefix(e.Key, "Flow sample") {
			continue
		}
		m := map[string]string{"packets": "1"}
		if v, ok := s.str("sflow.flow_sample.sampling_rate"); ok && v != "0" {
			m["sampling_rate"] = v
		}
		iface := func(name, format, value string) {
			f, _ := s.find(format)
			v, ok := s.find(value)
			if ok && (f == "0" || f == "") {
				if n, ok := parseUint(v); ok && n != 0 && n != 0x3FFFFFFF {
					m[name] = strconv.FormatUint(n, 10)
				}
			}
		}
		if expanded {
			iface("in_if", "sflow.flow_sample.input_interface_format", "sflow.flow_sample.input_interface_value")
			iface("out_if", "sflow.flow_sample.output_interface.format", "sflow.flow_sample.output_interface_value")
		} else {
			if v, ok := s.str("sflow.flow_sample.input_interface"); ok {
				if n, ok := parseUint(v); ok && n>>30 == 0 && n != 0 && n != 0x3FFFFFFF {
					m["in_if"] = strconv.FormatUint(n, 10)
				}
			}
			iface("out_if", "sflow.flow_sample.output_interface_format", "sflow.flow_sample.output_interface_value")
		}
		for _, r := range s {
			rec, ok := r.Val.(jobj)
			if !ok {
				continue
			}
			switch r.Key {
			case "Raw packet header":
				if v, ok := rec.str("sflow_245.header.frame_length"); ok {
					m["bytes"] = v
				}
				sampledHeader(rec.obj("sflow_245.header_tree"), m)
			case "IPv4 data", "IPv6 data":
				if _, ok := m["src_addr"]; ok {
					continue // a sampled header said it already
				}
				if v, ok := rec.str("sflow_245.ip.length"); ok {
					if _, ok := m["bytes"]; !ok {
						m["bytes"] = v
					}
				}
				if v, ok := firstStr(rec, "sflow_245.ipv4_src", "sflow_245.ipv6_src"); ok {
					m["src_addr"], _ = canonAddr(v)
				}
				if v, ok := firstStr(rec, "sflow_245.ipv4_dst", "sflow_245.ipv6_dst"); ok {
					m["dst_addr"], _ = canonAddr(v)
				}
				if v, ok := rec.str("sflow.ip_protocol"); ok {
					m["proto"] = v
				}
				if v, ok := rec.str("sflow_245.ip.source_port"); ok {
					m["src_port"] = v
				}
				if v, ok := rec.str("sflow.ip.destination_port"); ok {
					m["dst_port"] = v
				}
				flags := 0
				for i, f := range []string{"fin", "syn", "rst", "psh", "ack", "urg", "ece", "cwr"} {
					if v, _ := rec.str("sflow_245.ip.tcp_flag." + f); v == "1" {
						flags |= 1 << i
					}
				}
				m["tcp_flags"] = strconv.Itoa(flags)
			case "Extended router data":
				if v, ok := rec.str("sflow_245.nexthop"); ok {
					m["next_hop"], _ = canonAddr(v)
				}
				if v, ok := rec.str("sflow_245.nexthop.src_mask"); ok {
					m["src_mask"] = v
				}
				if v, ok := rec.str("sflow_245.nexthop.dst_mask"); ok {
					m["dst_mask"] = v
				}
			case "Extended gateway data":
				own, _ := rec.str("sflow_245.as")
				if v, ok := rec.str("sflow_245.srcAS"); ok {
					if v == "0" {
						v = own
					}
					m["src_as"] = v
				}
				dst := own
				for _, p := range rec.obj("sflow.as_type_tree") {
					if p.Key == "sflow_245.dstAS" {
						dst, _ = p.Val.(string)
					}
				}
				m["dst_as"] = dst
				if _, ok := m["next_hop"]; !ok {
					if v, ok := rec.str("sflow_245.nexthop"); ok {
						m["next_hop"], _ = canonAddr(v)
					}
				}
			}
		}
		out = append(out, want{frame: frame, label: e.Key, f: m})
	}
	return out
}

// sampledHeader reads the outer IP and transport headers of a sampled packet.
func sampledHeader(tree jobj, m map[string]string) {
	ipDone, l4Done := false, false
	for _, l := range tree {
		o, ok := l.Val.(jobj)
		if !ok {
			continue
		}
		switch {
		case l.Key == "ip" && !ipDone:
			ipDone = true
			if v, ok := o.str("ip.src"); ok {
				m["src_addr"], _ = canonAddr(v)
			}
			if v, ok := o.str("ip.dst"); ok {
				m["dst_addr"], _ = canonAddr(v)
			}
			if v, ok := o.str("ip.proto"); ok {
				m["proto"] = v
			}
			if v, ok := o.str("ip.dsfield"); ok {
				n, _ := parseUint(v)
				m["tos"] = strconv.FormatUint(n, 10)
			}
			if v, ok := o.str("ip.frag_offset"); ok && v != "0" {
				l4Done = true
			}
		case l.Key == "ipv6" && !ipDone:
			ipDone = true
			if v, ok := o.str("ipv6.src"); ok {
				m["src_addr"], _ = canonAddr(v)
			}
			if v, ok := o.str("ipv6.dst"); ok {
				m["dst_addr"], _ = canonAddr(v)
			}
			nxt, _ := o.str("ipv6.nxt")
			for _, ext := range []string{"ipv6.hopopts", "ipv6.routing", "ipv6.dstopts"} {
				if x := o.obj(ext); x != nil {
					if v, ok := x.find(ext + ".nxt"); ok {
						nxt = v
					}
				}
			}
			m["proto"] = nxt
			if v, ok := o.str("ipv6.tclass"); ok {
				n, _ := parseUint(v)
				m["tos"] = strconv.FormatUint(n, 10)
			}
		case (l.Key == "tcp" || l.Key == "udp") && ipDone && !l4Done:
			l4Done = true
			if v, ok := o.str(l.Key + ".srcport"); ok {
				m["src_port"] = v
			}
			if v, ok := o.str(l.Key + ".dstport"); ok {
				m["dst_port"] = v
			}
			if v, ok := o.str("tcp.flags"); ok && l.Key == "tcp" {
				n, _ := parseUint(v)
				m["tcp_flags"] = strconv.FormatUint(n&0xFF, 10)
			}
		case (l.Key == "icmp" || l.Key == "icmpv6") && ipDone && !l4Done:
			l4Done = true
			typ, _ := o.str(l.Key + ".type")
			code, _ := o.str(l.Key + ".code")
			t, _ := parseUint(typ)
			c, _ := parseUint(code)
			m["src_port"] = "0"
			m["dst_port"] = strconv.FormatUint(t<<8|c, 10)
		}
	}
}
