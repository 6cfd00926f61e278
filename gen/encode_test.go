package gen

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/flowhound/flowhound/flow"
)

// tsharkFields runs tshark over a capture and returns, for every field name inside the
// given protocol layer, its values in document order (duplicates kept: sFlow samples of
// different sources share names).
func tsharkFields(t *testing.T, pcap, layer string) map[string][]string {
	t.Helper()
	cmd := exec.Command("tshark", "-r", pcap, "-2", "-T", "json")
	cmd.Env = append(os.Environ(), "TZ=UTC", "WIRESHARK_CONFIG_DIR="+t.TempDir())
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("tshark: %v: %s", err, stderr.String())
	}
	fields := map[string][]string{}
	dec := json.NewDecoder(bytes.NewReader(out))
	var walk func(key string, in bool) error
	walk = func(key string, in bool) error {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		switch v := tok.(type) {
		case json.Delim:
			switch v {
			case '{':
				for dec.More() {
					kt, err := dec.Token()
					if err != nil {
						return err
					}
					k := kt.(string)
					if err := walk(k, in || k == layer); err != nil {
						return err
					}
				}
			case '[':
				for dec.More() {
					if err := walk(key, in); err != nil {
						return err
					}
				}
			}
			_, err = dec.Token() // closing delimiter
			return err
		case string:
			if in {
				fields[key] = append(fields[key], v)
			}
		}
		return nil
	}
	if err := walk("", false); err != nil && err != io.EOF {
		t.Fatalf("parsing tshark JSON: %v", err)
	}
	return fields
}

func writePCAP(t *testing.T, path string, src netip.Addr, port int, export int64, ds [][]byte) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w, err := NewPCAPWriter(f)
	if err != nil {
		t.Fatal(err)
	}
	dst := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(port))
	for _, d := range ds {
		if err := w.WriteDatagram(time.Unix(0, export), netip.AddrPortFrom(src, 50000), dst, d); err != nil {
			t.Fatal(err)
		}
	}
}

// fieldCheck compares one tshark field's values with the expected ones.
type fieldCheck struct {
	key  string
	want []string
	// num compares as numbers (hex or decimal, or seconds with a fraction, to the ms).
	num bool
}

func compareFields(t *testing.T, got map[string][]string, checks []fieldCheck) {
	t.Helper()
	for _, c := range checks {
		g := got[c.key]
		if len(g) != len(c.want) {
			t.Errorf("%s: tshark has %d values, want %d (%v)", c.key, len(g), len(c.want), g)
			continue
		}
		for i := range g {
			if g[i] == c.want[i] {
				continue
			}
			if c.num && numEqual(g[i], c.want[i]) {
				continue
			}
			t.Errorf("%s[%d] = %q, want %q", c.key, i, g[i], c.want[i])
			break
		}
	}
}

func numEqual(a, b string) bool {
	pa, ea := strconv.ParseFloat(a, 64)
	if ea != nil {
		ua, err := strconv.ParseUint(a, 0, 64)
		if err != nil {
			return false
		}
		pa = float64(ua)
	}
	pb, eb := strconv.ParseFloat(b, 64)
	if eb != nil {
		ub, err := strconv.ParseUint(b, 0, 64)
		if err != nil {
			return false
		}
		pb = float64(ub)
	}
	return math.Abs(pa-pb) < 0.0005
}

// collect builds the expected values of a field over the records that pass keep.
func collect(recs []flow.Record, keep func(*flow.Record) bool, val func(*flow.Record) string) []string {
	var out []string
	for i := range recs {
		if keep(&recs[i]) {
			out = append(out, val(&recs[i]))
		}
	}
	return out
}

func all(*flow.Record) bool  { return true }
func v4(r *flow.Record) bool { return r.SrcAddr.Is4() }
func v6(r *flow.Record) bool { return r.SrcAddr.Is6() }
func u(v uint64) string      { return strconv.FormatUint(v, 10) }

func TestEncodersAgainstTshark(t *testing.T) {
	if _, err := exec.LookPath("tshark"); err != nil {
		t.Skip("tshark not installed")
	}
	export := testEpoch.UnixNano()
	boot := export - 5*86400e9 - 123e6
	agent := netip.MustParseAddr("127.0.0.11")
	recs := testRecords(70, true, export)
	v4recs := collect(recs, v4, func(*flow.Record) string { return "" })
	uptimeSecs := func(ns int64) string { return fmt.Sprintf("%.3f", float64((ns-boot)/1e6)/1000) }
	absTime := func(ns int64) string {
		return time.Unix(0, ns).UTC().Format("Jan _2, 2006 15:04:05.000000000 MST")
	}

	// Fields that v5, v9 and IPFIX name alike.
	common := func(keep func(*flow.Record) bool, as func(uint32) string) []fieldCheck {
		return []fieldCheck{
			{key: "cflow.srcport", want: collect(recs, keep, func(r *flow.Record) string { return u(uint64(r.SrcPort)) })},
			{key: "cflow.dstport", want: collect(recs, keep, func(r *flow.Record) string { return u(uint64(r.DstPort)) })},
			{key: "cflow.protocol", want: collect(recs, keep, func(r *flow.Record) string { return u(uint64(r.Proto)) })},
			{key: "cflow.packets", want: collect(recs, keep, func(r *flow.Record) string { return u(r.Packets) })},
			{key: "cflow.octets", want: collect(recs, keep, func(r *flow.Record) string { return u(r.Bytes) })},
			{key: "cflow.tcpflags", num: true, want: collect(recs, keep, func(r *flow.Record) string { return u(uint64(r.TCPFlags)) })},
			{key: "cflow.tos", num: true, want: collect(recs, keep, func(r *flow.Record) string { return u(uint64(r.TOS)) })},
			{key: "cflow.inputint", want: collect(recs, keep, func(r *flow.Record) string { return u(uint64(r.InIf)) })},
			{key: "cflow.outputint", want: collect(recs, keep, func(r *flow.Record) string { return u(uint64(r.OutIf)) })},
			{key: "cflow.srcas", want: collect(recs, keep, func(r *flow.Record) string { return as(r.SrcAS) })},
			{key: "cflow.dstas", want: collect(recs, keep, func(r *flow.Record) string { return as(r.DstAS) })},
			{key: "cflow.srcaddr", want: collect(recs, func(r *flow.Record) bool { return keep(r) && v4(r) }, func(r *flow.Record) string { return r.SrcAddr.String() })},
			{key: "cflow.dstaddr", want: collect(recs, func(r *flow.Record) bool { return keep(r) && v4(r) }, func(r *flow.Record) string { return r.DstAddr.String() })},
			{key: "cflow.nexthop", want: collect(recs, func(r *flow.Record) bool { return keep(r) && v4(r) }, func(r *flow.Record) string { return r.NextHop.String() })},
			{key: "cflow.srcmask", want: collect(recs, func(r *flow.Record) bool { return keep(r) && v4(r) }, func(r *flow.Record) string { return u(uint64(r.SrcMask)) })},
		}
	}
	as16s := func(a uint32) string { return u(uint64(as16(a))) }
	as32s := func(a uint32) string { return u(uint64(a)) }
	v6checks := []fieldCheck{
		{key: "cflow.srcaddrv6", want: collect(recs, v6, func(r *flow.Record) string { return r.SrcAddr.String() })},
		{key: "cflow.dstaddrv6", want: collect(recs, v6, func(r *flow.Record) string { return r.DstAddr.String() })},
		{key: "cflow.nexthopv6", want: collect(recs, v6, func(r *flow.Record) string { return r.NextHop.String() })},
		{key: "cflow.srcmaskv6", want: collect(recs, v6, func(r *flow.Record) string { return u(uint64(r.SrcMask)) })},
	}
	uptimeChecks := func(keep func(*flow.Record) bool) []fieldCheck {
		return []fieldCheck{
			{key: "cflow.timestart", num: true, want: collect(recs, keep, func(r *flow.Record) string { return uptimeSecs(r.Start) })},
			{key: "cflow.timeend", num: true, want: collect(recs, keep, func(r *flow.Record) string { return uptimeSecs(r.End) })},
		}
	}

	type tc struct {
		name   string
		format Format
		checks func(ds [][]byte) []fieldCheck
	}
	tests := []tc{
		{"v5", FormatV5, func(ds [][]byte) []fieldCheck {
			var seqs, counts []string
			seq := 0
			for _, d := range ds {
				h, _, err := decodeV5(d)
				if err != nil {
					t.Fatal(err)
				}
				seqs = append(seqs, u(uint64(seq)))
				counts = append(counts, u(uint64(h.count)))
				seq += h.count
			}
			if seq != len(v4recs) {
				t.Errorf("v5 carried %d records, want the %d IPv4 ones", seq, len(v4recs))
			}
			c := append(common(v4, as16s), uptimeChecks(v4)...)
			return append(c,
				fieldCheck{key: "cflow.sequence", want: seqs},
				fieldCheck{key: "cflow.count", want: counts},
				fieldCheck{key: "cflow.engine_id", want: repeat("7", len(ds))},
				fieldCheck{key: "cflow.sysuptime", num: true, want: repeat(uptimeSecs(export), len(ds))},
			)
		}},
		{"v9", FormatV9, func(ds [][]byte) []fieldCheck {
			var seqs []string
			for i := range ds {
				seqs = append(seqs, u(uint64(i)))
			}
			c := append(common(all, as32s), v6checks...)
			c = append(c, uptimeChecks(all)...)
			return append(c,
				fieldCheck{key: "cflow.sequence", want: seqs},
				fieldCheck{key: "cflow.source_id", want: repeat("7", len(ds))},
				fieldCheck{key: "cflow.template_id", want: []string{"256", "257"}},
			)
		}},
		{"ipfix", FormatIPFIX, func(ds [][]byte) []fieldCheck {
			var seqs []string
			n := 0
			for _, d := range ds {
				seqs = append(seqs, u(uint64(n)))
				n += parseIPFIXHeader(d).dataRecs
			}
			if n != len(recs) {
				t.Errorf("IPFIX carried %d records, want %d", n, len(recs))
			}
			c := append(common(all, as32s), v6checks...)
			return append(c,
				fieldCheck{key: "cflow.sequence", want: seqs},
				fieldCheck{key: "cflow.od_id", want: repeat("7", len(ds))},
				fieldCheck{key: "cflow.abstimestart", want: collect(recs, all, func(r *flow.Record) string { return absTime(r.Start) })},
				fieldCheck{key: "cflow.abstimeend", want: collect(recs, all, func(r *flow.Record) string { return absTime(r.End) })},
			)
		}},
		{"sflow", FormatSFlow, func(ds [][]byte) []fieldCheck {
			var seqs []string
			for i := range ds {
				seqs = append(seqs, u(uint64(i+1)))
			}
			perSource := map[uint32]uint64{}
			tcp := func(r *flow.Record) bool { return r.Proto == flow.ProtoTCP }
			udp := func(r *flow.Record) bool { return r.Proto == flow.ProtoUDP }
			return []fieldCheck{
				{key: "sflow_245.sequence_number", want: seqs},
				{key: "sflow_245.agent", want: repeat(agent.String(), len(ds))},
				{key: "sflow.flow_sample.sequence_number", want: collect(recs, all, func(r *flow.Record) string {
					perSource[r.InIf]++
					return u(perSource[r.InIf])
				})},
				{key: "sflow.flow_sample.input_interface", want: collect(recs, all, func(r *flow.Record) string { return u(uint64(r.InIf)) })},
				{key: "sflow.flow_sample.sampling_rate", want: repeat("1", len(recs))},
				{key: "sflow_245.header.frame_length", want: collect(recs, all, func(r *flow.Record) string { return u(uint64(frameLen(packetSize(r)))) })},
				{key: "ip.src", want: collect(recs, v4, func(r *flow.Record) string { return r.SrcAddr.String() })},
				{key: "ip.dst", want: collect(recs, v4, func(r *flow.Record) string { return r.DstAddr.String() })},
				{key: "ip.proto", want: collect(recs, v4, func(r *flow.Record) string { return u(uint64(r.Proto)) })},
				{key: "ip.len", want: collect(recs, v4, func(r *flow.Record) string { return u(uint64(packetSize(r))) })},
				{key: "ip.dsfield", num: true, want: collect(recs, v4, func(r *flow.Record) string { return u(uint64(r.TOS)) })},
				{key: "ipv6.src", want: collect(recs, v6, func(r *flow.Record) string { return r.SrcAddr.String() })},
				{key: "ipv6.dst", want: collect(recs, v6, func(r *flow.Record) string { return r.DstAddr.String() })},
				{key: "tcp.srcport", want: collect(recs, tcp, func(r *flow.Record) string { return u(uint64(r.SrcPort)) })},
				{key: "tcp.dstport", want: collect(recs, tcp, func(r *flow.Record) string { return u(uint64(r.DstPort)) })},
				{key: "tcp.flags", num: true, want: collect(recs, tcp, func(r *flow.Record) string { return u(uint64(r.TCPFlags)) })},
				{key: "udp.srcport", want: collect(recs, udp, func(r *flow.Record) string { return u(uint64(r.SrcPort)) })},
				{key: "udp.dstport", want: collect(recs, udp, func(r *flow.Record) string { return u(uint64(r.DstPort)) })},
				{key: "icmp.type", want: collect(recs, func(r *flow.Record) bool { return r.Proto == flow.ProtoICMP }, func(*flow.Record) string { return "8" })},
				{key: "sflow_245.nexthop", want: collect(recs, v4, func(r *flow.Record) string { return r.NextHop.String() })},
				{key: "sflow_245.nexthop.src_mask", want: collect(recs, all, func(r *flow.Record) string { return u(uint64(r.SrcMask)) })},
			}
		}},
	}
	dir := t.TempDir()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel() // tshark's start-up dominates
			h := Header{Boot: boot, Export: export, Domain: 7, Agent: agent}
			ds, err := EncodeDatagrams(tt.format, h, recs)
			if err != nil {
				t.Fatal(err)
			}
			if len(ds) < 2 {
				t.Fatalf("%d datagrams; the test wants records split over several", len(ds))
			}
			for i, d := range ds {
				if limit := MaxDatagram; len(d) > limit && !(tt.format == FormatV5 && len(d) <= 24+30*48) {
					t.Errorf("datagram %d is %d bytes", i, len(d))
				}
			}
			path := filepath.Join(dir, tt.name+".pcap")
			writePCAP(t, path, agent, tt.format.Port(), export, ds)
			layer := "cflow"
			if tt.format == FormatSFlow {
				layer = "sflow"
			}
			got := tsharkFields(t, path, layer)
			compareFields(t, got, tt.checks(ds))
		})
	}

	t.Run("sflow-counters", func(t *testing.T) {
		t.Parallel()
		e := NewEncoder(FormatSFlow, Header{Boot: boot, Domain: 3, Agent: agent})
		cs := []IfCounters{
			{Index: 3, Speed: 10e9, InOctets: 1 << 40, InPackets: 123456, OutOctets: 98765, OutPackets: 77},
			{Index: 11, Speed: 100e9, InOctets: 5, InPackets: 1, OutOctets: 6, OutPackets: 2},
		}
		var ds [][]byte
		for range 2 {
			err := e.EncodeCounters(export, cs, func(p []byte, _ []flow.Record) error {
				ds = append(ds, append([]byte(nil), p...))
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
		}
		path := filepath.Join(dir, "counters.pcap")
		writePCAP(t, path, agent, PortSFlow, export, ds)
		compareFields(t, tsharkFields(t, path, "sflow"), []fieldCheck{
			{key: "sflow_245.sequence_number", want: []string{"1", "2"}},
			{key: "sflow.counters_sample.sequence_number", want: []string{"1", "1", "2", "2"}},
			{key: "sflow_245.ifindex", want: []string{"3", "11", "3", "11"}},
			{key: "sflow_245.ifspeed", want: []string{"10000000000", "100000000000", "10000000000", "100000000000"}},
			{key: "sflow_245.ifinoct", want: []string{"1099511627776", "5", "1099511627776", "5"}},
			{key: "sflow_245.ifinpkt", want: []string{"123456", "1", "123456", "1"}},
			{key: "sflow_245.ifoutoct", want: []string{"98765", "6", "98765", "6"}},
			{key: "sflow_245.ifoutpkt", want: []string{"77", "2", "77", "2"}},
			{key: "sflow_245.sysuptime", want: repeat(u(uint64((export-boot)/1e6)), 2)},
		})
	})
}

func repeat(s string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = s
	}
	return out
}
