package signatures

import (
	"fmt"
	"math"
	"math/rand/v2"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/vm"

	"github.com/flowhound/flowhound/flow"
	"github.com/flowhound/flowhound/rules"
)

func compileYAML(t testing.TB, src string) (*Set, error) {
	t.Helper()
	rs, err := rules.Parse("t.yaml", []byte(src))
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	return Compile(rs)
}

func TestCompileErrors(t *testing.T) {
	const limitList = "pps, bps, fps, syn_pps, rst_pps, ack_pps, udp_pps, icmp_pps, frag_pps, amp_bps, amp_pps, scan_dsts, scan_ports"
	// The match starts at line 2 column 10, the threshold at line 3 column 14.
	rule := func(match, threshold string) string {
		return "- name: r\n  match: " + match + "\n  threshold: " + threshold + "\n  limits: {syn_pps: 100}\n"
	}
	tests := []struct {
		name, src, want string
	}{
		{"ampersand", rule("proto == 6 & dst_port == 80", "pps > 1"),
			`t.yaml:2:21: unexpected token Operator("&"): expressions have no bitwise operators, use flag(tcp_flags, "S"), only_flags(tcp_flags, "S") or bitand(a, b)`},
		{"unknown name", rule("proto == 6 && bogus == 1", "pps > 1"),
			`t.yaml:2:24: unknown name bogus`},
		{"wrong type", rule(`proto == "tcp"`, "pps > 1"),
			`t.yaml:2:16: invalid operation: == (mismatched types int and string)`},
		{"logic on int", rule(`proto && has_ports`, "pps > 1"),
			`t.yaml:2:16: invalid operation: && (mismatched types int and bool)`},
		{"not boolean", rule("proto + 1", "pps > 1"),
			`t.yaml:2:10: match: must be a boolean expression, got int`},
		{"syntax", rule("proto ==", "pps > 1"),
			`t.yaml:2:17: unexpected token EOF`},
		{"bad CIDR", rule(`in_net(src_addr, "10.0.0/33")`, "pps > 1"),
			`t.yaml:2:27: in_net: "10.0.0/33" is not a prefix such as 192.0.2.0/24`},
		{"in_net on a port", rule(`in_net(dst_port, "10.0.0.0/8")`, "pps > 1"),
			`t.yaml:2:17: cannot use int as argument (type string) to call in_net `},
		{"computed CIDR", rule(`in_net(src_addr, port_class(dst_port))`, "pps > 1"),
			`t.yaml:2:10: in_net: the prefix must be a constant string`},
		{"bad flag letter", rule(`flag(tcp_flags, "SX")`, "pps > 1"),
			`t.yaml:2:26: flag: unknown flag letter 'X' in "SX" (use FSRPAUEC)`},
		{"ECN letter in only_flags", rule(`only_flags(tcp_flags, "SE")`, "pps > 1"),
			`t.yaml:2:32: only_flags: unknown flag letter 'E' in "SE" (use FSRPAU)`},
		{"empty flag", rule(`flag(tcp_flags, "")`, "pps > 1"),
			`t.yaml:2:26: flag: no flag letters given (use only_flags(tcp_flags, "") for none)`},
		{"bad address", rule(`src_addr == "10.0.0.256"`, "pps > 1"),
			`t.yaml:2:19: "10.0.0.256" is not an IP address`},
		{"ordered address", rule(`src_addr < "10.0.0.1"`, "pps > 1"),
			`t.yaml:2:19: addresses cannot be ordered with <: use in_net(addr, "192.0.2.0/24")`},
		{"address as text", rule(`src_addr startsWith "10."`, "pps > 1"),
			`t.yaml:2:19: startsWith on an address is not supported: use in_net(addr, "192.0.2.0/24")`},
		{"variable list", rule(`dst_port in [src_port, 80]`, "pps > 1"),
			"t.yaml:2:23: list elements in `in` must be constants"},
		{"unsupported builtin", rule(`len(src_addr) > 0`, "pps > 1"),
			`t.yaml:2:10: function len is not supported in rules`},
		{"quoted scalar", "- name: r\n  match: \"proto == 6 & x\"\n  threshold: pps > 1\n",
			`t.yaml:2:22: unexpected token Operator("&"): expressions have no bitwise operators, use flag(tcp_flags, "S"), only_flags(tcp_flags, "S") or bitand(a, b)`},
		{"block scalar", "- name: r\n  match: |\n    proto == 6\n      && bogus\n  threshold: pps > 1\n",
			`t.yaml:4:10: unknown name bogus`},
		{"unknown limit", rule("proto == 6", "pps > limits.sinpps"),
			`t.yaml:3:27: unknown limit limits.sinpps (known: ` + limitList + `)`},
		{"limit without default", rule("proto == 6", "pps > limits.rst_pps"),
			`t.yaml:3:27: limits.rst_pps has no default: add rst_pps to the rule's limits`},
		{"unknown aggregate", rule("proto == 6", "pss > 10"),
			`t.yaml:3:14: unknown name pss`},
		{"flow field in threshold", rule("proto == 6", "proto == 6"),
			`t.yaml:3:14: unknown name proto`},
		{"threshold not boolean", rule("proto == 6", "pps * 2"),
			`t.yaml:3:14: threshold: must be a boolean expression, got float`},
		{"errors in several rules", rule("bogus", "pps > 1") + "- name: s\n  match: proto == 6\n  threshold: pps >\n",
			"t.yaml:2:10: unknown name bogus\nt.yaml:7:18: unexpected token EOF"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := compileYAML(t, tt.src)
			if err == nil {
				t.Fatal("no error")
			}
			if got := err.Error(); got != tt.want {
				t.Errorf("error\n got: %s\nwant: %s", got, tt.want)
			}
		})
	}
}

func TestCompileChecksTheSet(t *testing.T) {
	rs := rules.Default()
	extra, err := rules.Parse("u.yaml", []byte("- name: tcp-syn-flood\n  threshold: pps > 1\n"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = Compile(append(rs, extra...))
	if err == nil || !strings.Contains(err.Error(), `u.yaml:1:3: name: duplicate rule "tcp-syn-flood" (first defined at rules/default/tcp.yaml:`) {
		t.Errorf("duplicate across sets: %v", err)
	}
	// rules.Merge is how an operator replaces a default rule.
	set, err := Compile(rules.Merge(rs, extra))
	if err != nil {
		t.Fatal(err)
	}
	if i := set.Index("tcp-syn-flood"); set.Rule(i).Pos.File != "u.yaml" {
		t.Errorf("merged rule from %s", set.Rule(i).Pos)
	}
}

// Flow builders for the tables below.

var (
	victim   = netip.MustParseAddr("192.0.2.10")
	attacker = netip.MustParseAddr("198.51.100.7")
)

const baseHas = flow.HasSrcAddr | flow.HasDstAddr | flow.HasProto | flow.HasSrcPort | flow.HasDstPort |
	flow.HasPackets | flow.HasBytes

// fl builds a flow; flags < 0 means the exporter sent no TCP flags field.
func fl(proto uint8, sport, dport uint16, flags int, packets, bytes uint64) flow.Record {
	r := flow.Record{SrcAddr: attacker, DstAddr: victim, Proto: proto, SrcPort: sport, DstPort: dport,
		Packets: packets, Bytes: bytes, Has: baseHas, Version: 9}
	if flags >= 0 {
		r.TCPFlags = uint8(flags)
		r.Has |= flow.HasTCPFlags
	}
	return r
}

func with(r flow.Record, f func(*flow.Record)) flow.Record { f(&r); return r }

func tcp(dport uint16, flags int) flow.Record { return fl(6, 40000, dport, flags, 1, 40) }
func udp(sport, dport uint16, packets, bytes uint64) flow.Record {
	return fl(17, sport, dport, -1, packets, bytes)
}

const (
	fF, fS, fR, fP, fA, fU, fE, fC = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80
)

// TestDefaultRulesMatch gives every default rule flows it must match and near misses it
// must not, through both Match (index + residual) and Matches (the whole closure).
func TestDefaultRulesMatch(t *testing.T) {
	type cases struct{ fire, miss []flow.Record }
	v6 := netip.MustParseAddr("2001:db8::10")
	tests := map[string]cases{
		"icmp-flood": {
			fire: []flow.Record{fl(1, 0, 0x0800, -1, 1, 84), fl(58, 0, 0x8000, -1, 1, 104)},
			miss: []flow.Record{fl(6, 0, 0x0800, -1, 1, 84), fl(17, 0, 0, -1, 1, 84),
				with(fl(1, 0, 0, -1, 1, 84), func(r *flow.Record) { r.Has &^= flow.HasProto })},
		},
		"host-total-traffic": {
			fire: []flow.Record{tcp(443, fA|fP), udp(53, 40000, 1, 100), {}},
			// It matches every flow by design: its threshold does the work.
		},
		"prefix-traffic-surge": {
			fire: []flow.Record{tcp(443, fA|fP), udp(53, 40000, 1, 100), {}},
		},
		"interface-traffic-surge": {
			fire: []flow.Record{tcp(443, fA|fP), udp(53, 40000, 1, 100), {}},
		},
		"tcp-flood": {
			fire: []flow.Record{tcp(443, fA|fP), tcp(80, fA|fP|fU)},
			miss: []flow.Record{udp(53, 40000, 1, 100), tcp(80, fS), tcp(80, fA), tcp(80, fR)},
		},
		"carpet-bombing": {
			fire: []flow.Record{tcp(443, fA|fP), udp(53, 40000, 1, 100), {}},
			// Like host-total-traffic it takes every flow: distinct_dst in its threshold tells
			// a spread flood from one busy host.
		},
		"land-attack": {
			fire: []flow.Record{with(tcp(80, fS), func(r *flow.Record) { r.SrcAddr = victim }),
				with(udp(7, 7, 1, 100), func(r *flow.Record) { r.SrcAddr, r.DstAddr = v6, v6 })},
			miss: []flow.Record{tcp(80, fS),
				with(tcp(80, fS), func(r *flow.Record) { r.SrcAddr = netip.MustParseAddr("127.0.0.1"); r.DstAddr = r.SrcAddr }),
				with(tcp(80, fS), func(r *flow.Record) { r.SrcAddr = netip.IPv6Loopback(); r.DstAddr = r.SrcAddr }),
				with(tcp(80, fS), func(r *flow.Record) { r.SrcAddr, r.DstAddr = netip.Addr{}, netip.Addr{} })},
		},
		"ipv4-protocol-0": {
			fire: []flow.Record{fl(0, 0, 0, -1, 1, 20)},
			miss: []flow.Record{
				with(fl(0, 0, 0, -1, 1, 20), func(r *flow.Record) { r.Has &^= flow.HasProto }),       // template without protocol
				with(fl(0, 0, 0, -1, 1, 60), func(r *flow.Record) { r.SrcAddr, r.DstAddr = v6, v6 }), // IPv6 hop-by-hop
				with(fl(0, 0, 0, -1, 1, 60), func(r *flow.Record) { r.SrcAddr, r.DstAddr = netip.Addr{}, netip.Addr{} }),
				fl(4, 0, 0, -1, 1, 20)},
		},
		"horizontal-scan": {
			fire: []flow.Record{tcp(22, fS), tcp(445, fS|fE|fC)},
			miss: []flow.Record{tcp(22, fS|fA), tcp(22, -1), tcp(22, fS|fR), udp(4000, 22, 1, 40)},
		},
		"vertical-scan": {
			fire: []flow.Record{tcp(1, fS), tcp(65535, fS)},
			miss: []flow.Record{tcp(1, fS|fA|fP|fF), tcp(1, fR|fA)},
		},
		"tcp-syn-flood": {
			fire: []flow.Record{tcp(80, fS), tcp(443, fS|fE|fC), tcp(80, fS|fF), with(tcp(80, fS), func(r *flow.Record) { r.Packets, r.Bytes = 1000, 60000 })},
			miss: []flow.Record{tcp(80, fS|fA), tcp(80, fS|fA|fP|fF), tcp(80, fA), udp(40000, 80, 1, 40),
				with(tcp(80, fS), func(r *flow.Record) { r.Has &^= flow.HasTCPFlags })},
		},
		"tcp-synack-flood": {
			fire: []flow.Record{tcp(40000, fS|fA), tcp(40000, fS|fA|fE)},
			miss: []flow.Record{tcp(40000, fS|fA|fP), tcp(40000, fS), tcp(40000, fA)},
		},
		"tcp-rst-flood": {
			fire: []flow.Record{tcp(80, fR), tcp(80, fR|fA)},
			miss: []flow.Record{tcp(80, fS|fR|fA), tcp(80, fR|fA|fP), tcp(80, fS|fR), fl(17, 1, 80, fR, 1, 40)},
		},
		"tcp-ack-flood": {
			fire: []flow.Record{tcp(80, fA), tcp(80, fF|fA)},
			miss: []flow.Record{tcp(80, fA|fP), tcp(80, fS|fA), tcp(80, fF), tcp(80, -1)},
		},
		"tcp-null-flood": {
			fire: []flow.Record{tcp(80, 0), fl(6, 1234, 80, 0, 10, 400)},
			miss: []flow.Record{tcp(80, -1), // a template without TCP flags is not a null scan
				fl(6, 1234, 80, 0, 10, 15000), // flags reported as 0 on data traffic
				tcp(80, fS), tcp(80, fA)},
		},
		"tcp-xmas-flood": {
			fire: []flow.Record{tcp(80, fF|fP|fU), tcp(80, 0xff)},
			miss: []flow.Record{tcp(80, fP|fU), tcp(80, fF|fP), tcp(80, fF|fU|fA)},
		},
		"udp-amplification": {
			fire: []flow.Record{
				udp(53, 40000, 10, 15000),   // DNS ANY/DNSSEC answers (first fragments)
				udp(123, 40000, 100, 46800), // NTP monlist, 468-byte replies
				udp(11211, 40000, 5, 7000),  // memcached
				udp(1900, 40000, 3, 960),    // SSDP
				udp(389, 40000, 2, 3000),    // CLDAP
				udp(19, 40000, 1, 1000),     // chargen
				udp(3702, 40000, 1, 1400),   // WS-Discovery
				udp(161, 40000, 1, 1200),    // SNMP GetBulk
			},
			miss: []flow.Record{
				udp(53, 40000, 10, 1200),       // a resolver's normal answers
				udp(53, 40000, 1, 900),         // a large DNSSEC answer, still normal
				udp(123, 40000, 1, 76),         // NTP time reply
				udp(5201, 40000, 1000, 1.47e6), // speed test
				udp(40000, 53, 10, 15000),      // to a DNS server, not from one
				fl(6, 53, 40000, fA, 10, 15000),
				udp(1900, 40000, 1, 90),
			},
		},
		"udp-flood": {
			fire: []flow.Record{udp(1234, 80, 1, 60), udp(0, 0, 1, 1500)},
			miss: []flow.Record{tcp(80, fS), fl(1, 0, 0, -1, 1, 60)},
		},
		"ip-fragment-flood": {
			fire: []flow.Record{udp(0, 0, 1, 1500), fl(6, 0, 0, -1, 1, 1500)},
			miss: []flow.Record{with(udp(0, 0, 1, 1500), func(r *flow.Record) { r.Has &^= flow.HasSrcPort | flow.HasDstPort }),
				udp(0, 53, 1, 1500), udp(53, 0, 1, 1500), fl(1, 0, 0, -1, 1, 1500), fl(47, 0, 0, -1, 1, 1500)},
		},
		"sql-slammer": {
			fire: []flow.Record{udp(40000, 1434, 1, 404), udp(1025, 1434, 3, 3*404), udp(1025, 1434, 2, 2*418),
				udp(1025, 1434, 1, 422), udp(1025, 1434, 1, 426)},
			miss: []flow.Record{udp(40000, 1435, 1, 404), udp(40000, 1434, 1, 405), udp(40000, 1434, 3, 3*404+1),
				fl(6, 40000, 1434, fS, 1, 404), udp(40000, 1434, 0, 0), udp(1434, 40000, 1, 404)},
		},
		"witty-worm": {
			fire: []flow.Record{udp(4000, 12345, 1, 796), udp(4000, 1, 1, 1307), udp(4000, 65000, 1, 1325)},
			miss: []flow.Record{udp(4001, 12345, 1, 1000), udp(4000, 12345, 1, 500), udp(4000, 12345, 1, 1400),
				fl(6, 4000, 12345, fS, 1, 1000), udp(12345, 4000, 1, 1000)},
		},
		"blaster-rpc-scan": {
			fire: []flow.Record{tcp(135, fS), tcp(135, fS|fA|fP)},
			miss: []flow.Record{tcp(135, fA), udp(40000, 135, 1, 60), tcp(139, fS), tcp(135, -1)},
		},
		"blaster": {
			fire: []flow.Record{tcp(4444, fS|fA|fP), udp(2000, 69, 1, 60)},
			miss: []flow.Record{tcp(69, fS), udp(2000, 4444, 1, 60), tcp(4445, fS), fl(1, 0, 69, -1, 1, 60)},
		},
	}
	set, err := Compile(rules.Default())
	if err != nil {
		t.Fatal(err)
	}
	for i := range set.Len() {
		r := set.Rule(i)
		tc, ok := tests[r.Name]
		if !ok {
			t.Errorf("%s: no test flows", r.Name)
			continue
		}
		if len(tc.fire) == 0 || len(tc.miss) == 0 && !r.Match.IsEmpty() {
			t.Errorf("%s: needs flows that fire and near misses", r.Name)
		}
		for j, f := range tc.fire {
			if !set.Matches(i, &f) || !slices.Contains(set.Match(&f, nil), uint16(i)) {
				t.Errorf("%s: fire[%d] not matched: %+v", r.Name, j, f)
			}
		}
		for j, f := range tc.miss {
			if set.Matches(i, &f) || slices.Contains(set.Match(&f, nil), uint16(i)) {
				t.Errorf("%s: miss[%d] matched: %+v", r.Name, j, f)
			}
		}
	}
	for name := range tests {
		if set.Index(name) < 0 {
			t.Errorf("test flows for %s, which is not in the pack", name)
		}
	}
}

// languageRules exercise the whole match language for the agreement test.
const languageRules = `
- {name: t-range, threshold: pps > 1, match: "dst_port in 1..1023 && src_port not in [53, 123] && !(proto in [1, 58])"}
- {name: t-arith, threshold: pps > 1, match: "bytes - 40 * packets > 100 || bytes / packets < 60.5 || bytes % 7 == 3 || packets * 2 + 1 == 7"}
- {name: t-float, threshold: pps > 1, match: "duration > 1.5 && bytes_per_packet >= 100 || flows > 1 || duration == 2"}
- {name: t-ternary, threshold: pps > 1, match: "(proto == 6 ? dst_port : src_port) == 80 || (has_ports ? 1.5 : 2.5) > 2"}
- {name: t-bits, threshold: pps > 1, match: "bitand(tcp_flags, 18) == 18 || bitor(tos, 4) == 4 || bitshr(dst_port, 8) == 8 || bitnot(proto) == -7 || bitxor(src_port, dst_port) == 0 || bitnand(tcp_flags, 2) == 16 || bitushr(in_if, 1) == 1 || bitshl(out_if, 2) == 8"}
- {name: t-net, threshold: pps > 1, match: "in_net(src_addr, \"10.0.0.0/8\") || in_net(dst_addr, \"2001:db8::/32\") && !in_net(next_hop, \"192.0.2.0/24\") || exporter == \"192.0.2.1\""}
- {name: t-addr, threshold: pps > 1, match: "src_addr == dst_addr || src_addr in [\"10.1.2.3\", \"192.0.2.10\"] || next_hop != \"\" && \"2001:db8::1\" != dst_addr"}
- {name: t-class, threshold: pps > 1, match: "port_class(src_port) == \"well-known\" && port_class(dst_port) != \"ephemeral\" || port_class(dst_port) in [\"registered\"] || port_class(tos) < \"f\""}
- {name: t-misc, threshold: pps > 1, match: "abs(src_as - dst_as) < 10 && max(src_mask, dst_mask) >= 24 || min(in_if, out_if) == 0 && sampling_rate > 1 || int(duration) == 2 || float(packets) == 1.0 || ceil(duration) == 3 || round(bytes_per_packet) == 404 || floor(duration) == 0 && ip_version == 6 || abs(-duration) > 3 || min(duration, 1.5) == 1.5"}
- {name: t-flags, threshold: pps > 1, match: "has_tcp_flags && only_flags(tcp_flags, \"SA\") || flag(tcp_flags, \"EC\") || !has_proto || has_ports && version == 9 && observation_domain == 0"}
- {name: t-neg, threshold: pps > 1, match: "-proto < -5 and +dst_port > 0 and src_port ** 2 > 100 and tos != 0 or not (bytes > 1000) and src_port ^ 2 < 400"}
- {name: t-float-in, threshold: pps > 1, match: "bytes_per_packet in [404, 418, 60.5] || packets in [1, 2.0, 3.5] || duration in 1..3"}
- {name: t-const, threshold: pps > 1, match: "1 + 2 == 3 && dst_port > 2 * 500 && (true || proto == 1)"}
- {name: t-mixed, threshold: pps > 1, match: "proto == 17 && (src_port == 53 && bytes > 512 || dst_port in [123, 1900]) && packets < 5"}
`

// randomFlow draws field values from the ones rules care about, with missing fields.
func randomFlow(rng *rand.Rand) flow.Record {
	pick := func(common []uint64, bound uint64) uint64 {
		if rng.IntN(4) > 0 {
			return common[rng.IntN(len(common))]
		}
		return rng.Uint64N(bound)
	}
	addrs := []netip.Addr{{}, victim, attacker, netip.MustParseAddr("10.1.2.3"), netip.MustParseAddr("127.0.0.1"),
		netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8::10"), netip.IPv6Loopback()}
	ports := []uint64{0, 1, 19, 53, 69, 80, 123, 135, 139, 389, 443, 1434, 1900, 4000, 4444, 11211, 40000, 65535}
	var r flow.Record
	r.Version = uint8(pick([]uint64{5, 9, 10, 0xF5}, 256))
	r.ObservationDomain = uint32(pick([]uint64{0, 1}, 1<<32))
	r.Exporter = addrs[rng.IntN(len(addrs))]
	r.SrcAddr = addrs[rng.IntN(len(addrs))]
	r.DstAddr = addrs[rng.IntN(len(addrs))]
	if rng.IntN(3) == 0 {
		r.DstAddr = r.SrcAddr
	}
	r.NextHop = addrs[rng.IntN(len(addrs))]
	r.SrcPort = uint16(pick(ports, 1<<16))
	r.DstPort = uint16(pick(ports, 1<<16))
	if rng.IntN(10) == 0 {
		r.SrcPort = r.DstPort // also 0/0, as fragments
	}
	r.Proto = uint8(pick([]uint64{0, 1, 6, 17, 47, 58}, 256))
	r.TCPFlags = uint8(pick([]uint64{0, fS, fS | fA, fA, fA | fP, fR, fR | fA, fF | fA, fF | fP | fU, fS | fE | fC, 0x1b}, 256))
	r.TOS = uint8(pick([]uint64{0, 4}, 256))
	r.InIf, r.OutIf = uint32(pick([]uint64{0, 1, 2, 3}, 1<<32)), uint32(pick([]uint64{0, 1, 2}, 1<<32))
	r.Packets = pick([]uint64{0, 1, 2, 3, 10, 1000}, 1<<20)
	size := pick([]uint64{40, 60, 76, 100, 404, 418, 422, 468, 796, 1000, 1325, 1500}, 2000)
	r.Bytes = r.Packets * size
	if rng.IntN(5) == 0 {
		r.Bytes += uint64(rng.IntN(7))
	}
	if rng.IntN(50) == 0 {
		r.Packets, r.Bytes = rng.Uint64(), rng.Uint64() // counters that lie
	}
	r.Flows = uint32(pick([]uint64{0, 1, 2}, 1000))
	if rng.IntN(2) == 0 {
		r.Start = 1_700_000_000_000_000_000
		r.End = r.Start + int64(pick([]uint64{0, 1e9, 15e8, 2e9, 3e9}, 1e11))
	}
	r.SrcAS, r.DstAS = uint32(pick([]uint64{0, 64500, 64505}, 1<<32)), uint32(pick([]uint64{0, 64500}, 1<<32))
	r.SrcMask, r.DstMask = uint8(pick([]uint64{0, 24, 32}, 129)), uint8(pick([]uint64{0, 16, 64}, 129))
	r.SamplingRate = uint32(pick([]uint64{0, 1, 1000}, 1<<32))
	for bit := uint32(1); bit <= flow.HasDstMask; bit <<= 1 {
		if rng.IntN(8) > 0 {
			r.Has |= bit
		}
	}
	return r
}

// TestMatchAgreesWithExpr is the property that makes the closure compiler and the index
// trustworthy: on random flows, Match returns exactly the rules whose closure accepts the
// flow, and those are exactly the rules expr-lang's own VM accepts on the same values.
func TestMatchAgreesWithExpr(t *testing.T) {
	extra, err := rules.Parse("lang.yaml", []byte(languageRules))
	if err != nil {
		t.Fatal(err)
	}
	rs := append(rules.Default(), extra...)
	set, err := Compile(rs)
	if err != nil {
		t.Fatal(err)
	}
	progs := make([]*vm.Program, set.Len())
	for i := range set.Len() {
		src := set.Rule(i).Match.Source
		if strings.TrimSpace(src) == "" {
			src = "true"
		}
		opts := append([]expr.Option{expr.Env(flowEnv{}), expr.AsBool()}, helperOptions()...)
		if progs[i], err = expr.Compile(src, opts...); err != nil {
			t.Fatalf("%s: expr: %v", set.Rule(i).Name, err)
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	n := 30000
	if testing.Short() {
		n = 5000
	}
	hits := make([]int, set.Len())
	vmErrors := 0
	var got []uint16
	for range n {
		r := randomFlow(rng)
		got = set.Match(&r, got[:0])
		env := envOf(&r)
		for i := range set.Len() {
			closure := set.Matches(i, &r)
			indexed := slices.Contains(got, uint16(i))
			if closure != indexed {
				t.Fatalf("%s: Match says %v, the closure %v, on %+v", set.Rule(i).Name, indexed, closure, r)
			}
			out, err := expr.Run(progs[i], env)
			if err != nil {
				vmErrors++ // x % 0 and negative shifts: expr has no result to compare with
				continue
			}
			if out.(bool) != closure {
				t.Fatalf("%s: expr says %v, the closure %v, on %+v (env %+v)", set.Rule(i).Name, out, closure, r, env)
			}
			if closure {
				hits[i]++
			}
		}
		if !slices.IsSorted(got) {
			t.Fatalf("Match result not in rule order: %v", got)
		}
	}
	if vmErrors > n*set.Len()/100 {
		t.Errorf("%d expr errors: the comparison is too thin", vmErrors)
	}
	// Every rule must be exercised both ways, or the property proves little about it.
	for i := range set.Len() {
		if hits[i] == 0 || hits[i] == n && !set.Rule(i).Match.IsEmpty() {
			t.Errorf("%s: matched %d of %d random flows", set.Rule(i).Name, hits[i], n)
		}
	}
}

// TestFlowFieldsAgree checks that the closures' field accessors read what envOf (and so
// expr) sees, name by name.
func TestFlowFieldsAgree(t *testing.T) {
	typ := reflect.TypeOf(flowEnv{})
	if typ.NumField() != len(flowFields) {
		t.Errorf("flowEnv has %d fields, flowFields %d", typ.NumField(), len(flowFields))
	}
	rng := rand.New(rand.NewPCG(3, 4))
	for range 2000 {
		r := randomFlow(rng)
		env := reflect.ValueOf(envOf(&r))
		for i := range typ.NumField() {
			name := typ.Field(i).Tag.Get("expr")
			f, ok := flowFields[name]
			if !ok {
				t.Fatalf("flowFields lacks %s", name)
			}
			var got any
			switch f.k {
			case kInt:
				got = int(f.i(&r))
			case kFloat:
				got = f.f(&r)
			case kBool:
				got = f.b(&r)
			case kAddr:
				got = addrText(f.a(&r))
			}
			want := env.Field(i).Interface()
			if fw, ok := want.(float64); ok && math.IsNaN(fw) {
				continue
			}
			if got != want {
				t.Fatalf("%s: closure %v, env %v", name, got, want)
			}
		}
	}
}

func TestLimitNames(t *testing.T) {
	names := rules.LimitNames()
	typ := reflect.TypeOf(limitsEnv{})
	var tags []string
	for i := range typ.NumField() {
		tags = append(tags, typ.Field(i).Tag.Get("expr"))
	}
	if !slices.Equal(tags, names) {
		t.Errorf("limitsEnv %v, rules.LimitNames %v", tags, names)
	}
	if len(limitFields) != len(names) || reflect.TypeOf(Limits{}).NumField() != len(names) {
		t.Errorf("Limits has %d fields and limitFields %d entries for %d names", reflect.TypeOf(Limits{}).NumField(), len(limitFields), len(names))
	}
	var l Limits
	for i, n := range names {
		if !l.Set(n, float64(i+1)) {
			t.Errorf("Set(%s) failed", n)
		}
	}
	seen := map[float64]bool{}
	for i, n := range names {
		v, ok := l.Get(n)
		if !ok || v != float64(i+1) || seen[v] {
			t.Errorf("Get(%s) = %v, %v", n, v, ok)
		}
		seen[v] = true
	}
	if l.Set("sin_pps", 1) {
		t.Error("Set accepted an unknown name")
	}
	base := Limits{SYNPPS: 2000, UDPPPS: 1e5}
	if got := base.Overlay(Limits{SYNPPS: 500}); got.SYNPPS != 500 || got.UDPPPS != 1e5 {
		t.Errorf("Overlay: %+v", got)
	}
	if _, err := LimitsOf(map[string]float64{"syn_pps": 1, "x": 2}); err == nil || !strings.HasPrefix(err.Error(), "unknown limits x (known: pps") {
		t.Errorf("LimitsOf: %v", err)
	}
}

func TestThresholdCheck(t *testing.T) {
	src := `
- {name: syn, match: proto == 6, threshold: pps > limits.syn_pps, limits: {syn_pps: 2000}}
- {name: slammer, match: proto == 17, threshold: pps > 50 || distinct_dst > 20}
- {name: both, threshold: pps > 1000 && bps >= 1e6}
- {name: guard, threshold: pps > 1000 && distinct_src < 3}
- {name: reversed, threshold: 1000 < pps}
- {name: bare, threshold: pps > 0}
- {name: profiled, kind: profiled, threshold: expected_pps > 0 && pps > 3 * expected_pps}
- {name: computed, threshold: bps / 8 > limits.bps / 8 * 2, limits: {bps: 8000}}
- {name: guard-only, threshold: distinct_src < 3}
`
	set, err := compileYAML(t, src)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		rule    string
		a       Aggregates
		fired   bool
		sev     float64
		metric  string
		limit   float64
		comment string
	}{
		{"syn", Aggregates{PPS: 19164}, true, 958.2, "pps", 2000, "the Peakflow example"},
		{"syn", Aggregates{PPS: 1500}, false, 75, "pps", 2000, "below: how close"},
		{"syn", Aggregates{PPS: 1500, Limits: Limits{SYNPPS: 1000}}, true, 150, "pps", 1000, "a group's limit wins"},
		{"syn", Aggregates{PPS: 1500, Limits: Limits{UDPPPS: 1}}, false, 75, "pps", 2000, "unset limits fall back to the rule's"},
		{"slammer", Aggregates{PPS: 100, DistinctDst: 100}, true, 500, "distinct_dst", 20, "||: the strongest reason"},
		{"slammer", Aggregates{PPS: 100, DistinctDst: 10}, true, 200, "pps", 50, "||: only the true side counts"},
		{"slammer", Aggregates{PPS: 10, DistinctDst: 10}, false, 50, "distinct_dst", 20, "||: the nearest side"},
		{"both", Aggregates{PPS: 5000, BPS: 2e6}, true, 200, "bps", 1e6, "&&: the binding side"},
		{"both", Aggregates{PPS: 5000, BPS: 5e5}, false, 50, "bps", 1e6, "&&: the blocking side"},
		{"guard", Aggregates{PPS: 3000, DistinctSrc: 1}, true, 300, "pps", 1000, "guards have no ratio"},
		{"guard", Aggregates{PPS: 3000, DistinctSrc: 5}, false, 0, "", 0, "blocked by a guard"},
		{"reversed", Aggregates{PPS: 2500}, true, 250, "pps", 1000, "limit on the left"},
		{"bare", Aggregates{PPS: 7}, true, 100, "pps", 0, "no ratio against 0"},
		{"bare", Aggregates{}, false, 0, "pps", 0, ""},
		{"profiled", Aggregates{PPS: 900, ExpectedPPS: 100}, true, 300, "pps", 300, "expected_* is limit-like"},
		{"profiled", Aggregates{PPS: 900}, false, 0, "", 0, "no baseline yet"},
		{"computed", Aggregates{BPS: 32000}, true, 200, "bps / 8", 2000, "arithmetic on both sides"},
		{"guard-only", Aggregates{DistinctSrc: 1}, true, 100, "", 0, "no comparison with a ratio"},
	}
	for _, tt := range tests {
		t.Run(tt.rule+"/"+tt.comment, func(t *testing.T) {
			th := set.Threshold(set.Index(tt.rule))
			fired, sev, metric, limit := th.Check(&tt.a)
			if fired != tt.fired || math.Abs(sev-tt.sev) > 1e-9 || metric != tt.metric || limit != tt.limit {
				t.Errorf("Check = %v, %.4g%%, %q, %v; want %v, %.4g%%, %q, %v",
					fired, sev, metric, limit, tt.fired, tt.sev, tt.metric, tt.limit)
			}
		})
	}
	if got := set.Threshold(set.Index("syn")).Defaults(); got != (Limits{SYNPPS: 2000}) {
		t.Errorf("Defaults = %+v", got)
	}
	needs := map[string]Needs{
		"slammer":  {DistinctDst: true},
		"guard":    {DistinctSrc: true},
		"profiled": {Expected: true},
		"syn":      {},
	}
	for name, want := range needs {
		if got := set.Threshold(set.Index(name)).Needs(); got != want {
			t.Errorf("%s: Needs = %+v, want %+v", name, got, want)
		}
	}
}

// TestThresholdAgreesWithExpr checks fired against expr's VM on random aggregates, for the
// default pack and a few thresholds that use the rest of the language.
func TestThresholdAgreesWithExpr(t *testing.T) {
	extra, err := rules.Parse("th.yaml", []byte(`
- {name: t1, threshold: "pps > limits.syn_pps * 2 && (bps / 8 > 1000 || distinct_src >= 10) || expected_pps > 0 && pps > 3 * expected_pps", limits: {syn_pps: 100}}
- {name: t2, threshold: "bytes_per_packet < 100 && samples >= 10 && fps > 1 || distinct_src_ports > 100 && !(distinct_dst_ports <= 2)"}
- {name: t3, threshold: "max(pps, bps / 8) > 500 || abs(expected_bps - bps) > 1e6 || round(fps) == 3"}
`))
	if err != nil {
		t.Fatal(err)
	}
	set, err := Compile(append(rules.Default(), extra...))
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(5, 6))
	val := func() float64 {
		switch rng.IntN(4) {
		case 0:
			return 0
		case 1:
			return float64(rng.IntN(30))
		}
		return math.Exp(rng.Float64() * 22)
	}
	for i := range set.Len() {
		r := set.Rule(i)
		opts := append([]expr.Option{expr.Env(aggEnv{}), expr.AsBool()}, helperOptions()...)
		prog, err := expr.Compile(r.Threshold.Source, opts...)
		if err != nil {
			t.Fatalf("%s: %v", r.Name, err)
		}
		th := set.Threshold(i)
		fires := 0
		for range 3000 {
			a := Aggregates{BPS: val(), PPS: val(), FPS: val(), DistinctSrc: val(), DistinctDst: val(),
				DistinctSrcPort: val(), DistinctDstPort: val(), Samples: val(),
				ExpectedBPS: val(), ExpectedPPS: val(), ExpectedFPS: val()}
			if rng.IntN(2) == 0 {
				a.Limits = Limits{SYNPPS: val(), AmpBPS: val(), PPS: val()}
			}
			env := aggEnvOf(&a, th.Defaults())
			want, err := expr.Run(prog, env)
			if err != nil {
				t.Fatal(err)
			}
			fired, _, _, _ := th.Check(&a)
			if fired != want.(bool) {
				t.Fatalf("%s: Check %v, expr %v on %+v", r.Name, fired, want, a)
			}
			if fired {
				fires++
			}
		}
		if fires == 0 || fires == 3000 {
			t.Errorf("%s: fired %d of 3000", r.Name, fires)
		}
	}
}

// aggEnvOf builds the threshold environment expr sees, with unset limits falling back to
// the rule's defaults as the closures do.
func aggEnvOf(a *Aggregates, defaults Limits) aggEnv {
	l := defaults.Overlay(a.Limits)
	return aggEnv{BPS: a.BPS, PPS: a.PPS, FPS: a.FPS, DistinctSrc: a.DistinctSrc, DistinctDst: a.DistinctDst,
		DistinctSrcPorts: a.DistinctSrcPort, DistinctDstPorts: a.DistinctDstPort, Samples: a.Samples,
		BytesPerPacket: aggBytesPerPacket(a), ExpectedBPS: a.ExpectedBPS, ExpectedPPS: a.ExpectedPPS,
		ExpectedFPS: a.ExpectedFPS, Limits: limitsEnv{PPS: l.PPS, BPS: l.BPS, FPS: l.FPS, SYNPPS: l.SYNPPS,
			RSTPPS: l.RSTPPS, ACKPPS: l.ACKPPS, UDPPPS: l.UDPPPS, ICMPPPS: l.ICMPPPS, FragPPS: l.FragPPS,
			AmpBPS: l.AmpBPS, AmpPPS: l.AmpPPS, ScanDsts: l.ScanDsts, ScanPorts: l.ScanPorts}}
}

func TestMatchDoesNotAllocate(t *testing.T) {
	set, err := Compile(rules.Default())
	if err != nil {
		t.Fatal(err)
	}
	flows := benchFlows(1000)
	dst := make([]uint16, 0, set.Len())
	allocs := testing.AllocsPerRun(10, func() {
		for i := range flows {
			dst = set.Match(&flows[i], dst[:0])
		}
	})
	if allocs != 0 {
		t.Errorf("Match allocates %.1f times per 1000 flows", allocs)
	}
}

// TestMatchManyRules covers the multi-word bitsets (more than 64 rules).
func TestMatchManyRules(t *testing.T) {
	var b strings.Builder
	for i := range 150 {
		fmt.Fprintf(&b, "- {name: r%d, threshold: pps > 1, match: \"proto == %d && dst_port == %d || src_port == %d\"}\n", i, i%3*11+6, i, 1000+i%7)
	}
	set, err := compileYAML(t, b.String())
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(7, 8))
	var got []uint16
	for range 20000 {
		r := fl(uint8([]int{6, 17, 28, 1}[rng.IntN(4)]), uint16(1000+rng.IntN(10)), uint16(rng.IntN(160)), -1, 1, 60)
		got = set.Match(&r, got[:0])
		var want []uint16
		for i := range set.Len() {
			if set.Matches(i, &r) {
				want = append(want, uint16(i))
			}
		}
		if !slices.Equal(got, want) {
			t.Fatalf("Match %v, closures %v on %+v", got, want, r)
		}
	}
}

// benchFlows is a realistic mix: 60% TCP/443, 25% UDP/53, 10% TCP/80 and UDP/123, 5% other,
// in both directions (clients' ephemeral ports on the other side).
func benchFlows(n int) []flow.Record {
	rng := rand.New(rand.NewPCG(9, 10))
	out := make([]flow.Record, n)
	for i := range out {
		eph := uint16(32768 + rng.IntN(28000))
		var r flow.Record
		switch p := rng.IntN(100); {
		case p < 60:
			r = fl(6, eph, 443, []int{fA | fP, fS | fA | fP | fF, fA, fS}[rng.IntN(4)], uint64(1+rng.IntN(40)), 0)
		case p < 85:
			r = fl(17, eph, 53, -1, 1, 0)
		case p < 90:
			r = fl(6, eph, 80, fS|fA|fP|fF, uint64(1+rng.IntN(20)), 0)
		case p < 95:
			r = fl(17, 123, 123, -1, 1, 0)
		default:
			r = fl([]uint8{1, 47, 50, 17, 6}[rng.IntN(5)], uint16(rng.IntN(65536)), uint16(rng.IntN(65536)), rng.IntN(256), 1, 0)
		}
		if rng.IntN(2) == 0 { // the reply direction
			r.SrcPort, r.DstPort = r.DstPort, r.SrcPort
			r.SrcAddr, r.DstAddr = r.DstAddr, r.SrcAddr
		}
		r.Bytes = r.Packets * uint64(40+rng.IntN(1460))
		out[i] = r
	}
	return out
}

func BenchmarkMatchDefaultPack(b *testing.B) {
	set, err := Compile(rules.Default())
	if err != nil {
		b.Fatal(err)
	}
	flows := benchFlows(1 << 14)
	dst := make([]uint16, 0, set.Len())
	matched := 0
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		dst = set.Match(&flows[i&(len(flows)-1)], dst[:0])
		matched += len(dst)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/flow")
	b.ReportMetric(float64(matched)/float64(b.N), "matches/flow")
}

// BenchmarkMatchAllClosures is the same mix without the index, to show what it saves.
func BenchmarkMatchAllClosures(b *testing.B) {
	set, err := Compile(rules.Default())
	if err != nil {
		b.Fatal(err)
	}
	flows := benchFlows(1 << 14)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		r := &flows[i&(len(flows)-1)]
		for j := range set.Len() {
			set.Matches(j, r)
		}
	}
}

func BenchmarkThresholdCheck(b *testing.B) {
	set, err := Compile(rules.Default())
	if err != nil {
		b.Fatal(err)
	}
	th := set.Threshold(set.Index("udp-amplification"))
	a := Aggregates{BPS: 2e8, PPS: 30000, Limits: Limits{AmpBPS: 5e7}}
	b.ReportAllocs()
	for b.Loop() {
		th.Check(&a)
	}
}

// scenario aggregates flows per rule and resource the simple way (the whole scenario is
// one window of `seconds`) and returns the rules whose threshold fires somewhere. It
// checks that the default thresholds are general: silent on busy normal traffic, loud on
// attacks, without knowing the scenarios.
func scenario(t *testing.T, set *Set, flows []flow.Record, seconds float64) []string {
	t.Helper()
	type key struct {
		rule int
		res  netip.Addr
	}
	type acc struct {
		a          Aggregates
		srcs, dsts map[netip.Addr]bool
		sp, dp     map[uint16]bool
	}
	accs := map[key]*acc{}
	var m []uint16
	for i := range flows {
		r := &flows[i]
		m = set.Match(r, m[:0])
		for _, ri := range m {
			res := r.DstAddr
			if set.Rule(int(ri)).GroupBy[0] == "src_addr" {
				res = r.SrcAddr
			}
			k := key{int(ri), res}
			x := accs[k]
			if x == nil {
				x = &acc{srcs: map[netip.Addr]bool{}, dsts: map[netip.Addr]bool{}, sp: map[uint16]bool{}, dp: map[uint16]bool{}}
				accs[k] = x
			}
			x.a.PPS += float64(r.Packets)
			x.a.BPS += float64(r.Bytes) * 8
			x.a.FPS++
			x.a.Samples += float64(r.Packets)
			x.srcs[r.SrcAddr], x.dsts[r.DstAddr], x.sp[r.SrcPort], x.dp[r.DstPort] = true, true, true, true
		}
	}
	var fired []string
	for k, x := range accs {
		a := x.a
		a.PPS, a.BPS, a.FPS = a.PPS/seconds, a.BPS/seconds, a.FPS/seconds
		a.DistinctSrc, a.DistinctDst = float64(len(x.srcs)), float64(len(x.dsts))
		a.DistinctSrcPort, a.DistinctDstPort = float64(len(x.sp)), float64(len(x.dp))
		r := set.Rule(k.rule)
		if r.Kind == "profiled" {
			// Profiled rules fire against a learned baseline, which the detector supplies
			// (and withholds while it warms up); detector tests cover them.
			continue
		}
		if ok, _, _, _ := set.Threshold(k.rule).Check(&a); ok && a.Samples >= float64(r.MinSamples) && !slices.Contains(fired, r.Name) {
			fired = append(fired, r.Name)
		}
	}
	// A compound rule needs its first stage to have fired (on any resource, here).
	all := slices.Clone(fired)
	fired = slices.DeleteFunc(fired, func(name string) bool {
		after := set.Rule(set.Index(name)).After
		return after != "" && !slices.Contains(all, after)
	})
	slices.Sort(fired)
	return fired
}

func TestDefaultThresholdsOnScenarios(t *testing.T) {
	set, err := Compile(rules.Default())
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(11, 12))
	addr := func(base string, i int) netip.Addr {
		a := netip.MustParseAddr(base).As4()
		a[2], a[3] = byte(i>>8), byte(i)
		return netip.AddrFrom4(a)
	}
	const secs = 10
	var resolver, udpSpeed, tcpDownload, synFlood, ntpAmp, slammer []flow.Record
	for range secs * 2000 { // a resolver receiving 20k answers/s from 3000 authoritative servers
		size := uint64(80 + rng.IntN(420))
		switch p := rng.IntN(100); {
		case p < 1:
			size = uint64(1000 + rng.IntN(450)) // DNSKEY and other large signed answers
		case p < 5:
			size = uint64(500 + rng.IntN(500))
		}
		r := udp(53, uint16(1024+rng.IntN(64000)), 10, 10*size)
		r.SrcAddr, r.DstAddr = addr("203.0.0.0", rng.IntN(3000)), victim
		resolver = append(resolver, r)
	}
	for range secs * 100 { // a 1 Gbit/s UDP test: one flow record per 10 ms
		udpSpeed = append(udpSpeed, udp(5201, 40000, 833, 833*1500))
	}
	for range secs * 100 { // a 1 Gbit/s TCP download and its ACKs, exported every 10 ms
		tcpDownload = append(tcpDownload, fl(6, 443, 40000, fA|fP, 833, 833*1500))
		ack := fl(6, 40000, 443, fA, 416, 416*52)
		ack.SrcAddr, ack.DstAddr = victim, attacker
		tcpDownload = append(tcpDownload, ack)
	}
	for range secs * 4000 { // 20 kpps of spoofed SYNs, each source retrying 5 times
		r := fl(6, 0, 80, fS, 5, 5*60)
		r.SrcAddr, r.SrcPort = addr("100.64.0.0", rng.IntN(65536)), uint16(rng.Uint32())
		synFlood = append(synFlood, r)
	}
	for range secs * 1000 { // 500 NTP reflectors, 100 monlist replies per record: 100 kpps
		r := udp(123, uint16(rng.Uint32()), 100, 100*468)
		r.SrcAddr = addr("198.18.0.0", rng.IntN(500))
		ntpAmp = append(ntpAmp, r)
	}
	for range secs * 200 { // an infected host sending Slammer to random addresses
		r := udp(1025, 1434, 1, 404)
		r.SrcAddr, r.DstAddr = victim, addr("100.64.0.0", rng.IntN(65536))
		slammer = append(slammer, r)
	}
	tests := []struct {
		name  string
		flows []flow.Record
		want  []string
	}{
		{"busy resolver", resolver, nil},
		{"UDP speed test", udpSpeed, nil},
		{"TCP download", tcpDownload, nil},
		{"SYN flood", synFlood, []string{"tcp-syn-flood"}},
		{"NTP amplification", ntpAmp, []string{"udp-amplification"}}, // 374 Mbit/s, under the volume limits
		{"Slammer", slammer, []string{"sql-slammer"}},
	}
	for _, tt := range tests {
		if got := scenario(t, set, tt.flows, secs); !slices.Equal(got, tt.want) {
			t.Errorf("%s: fired %v, want %v", tt.name, got, tt.want)
		}
	}
}

// TestMatchConcurrent: a Set is shared by the detector's goroutines (run with -race).
func TestMatchConcurrent(t *testing.T) {
	set, err := Compile(rules.Default())
	if err != nil {
		t.Fatal(err)
	}
	flows := benchFlows(2000)
	want := make([][]uint16, len(flows))
	for i := range flows {
		want[i] = set.Match(&flows[i], nil)
	}
	errs := make(chan error, 4)
	for range 4 {
		go func() {
			var got []uint16
			for i := range flows {
				got = set.Match(&flows[i], got[:0])
				set.Threshold(i % set.Len()).Check(&Aggregates{PPS: float64(i)})
				if !slices.Equal(got, want[i]) {
					errs <- fmt.Errorf("flow %d: %v, want %v", i, got, want[i])
					return
				}
			}
			errs <- nil
		}()
	}
	for range 4 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}

// TestFloor checks the detector's shortcut on the default pack: wherever Floor says a
// window is below 10 % of every limit, Check agrees, on random light-window aggregates
// (distinct counts unbounded) with and without group limits; and the rules that compare a
// distinct count have no floor.
func TestFloor(t *testing.T) {
	set, err := Compile(rules.Default())
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(3, 4))
	inf := math.Inf(1)
	floors := 0
	for i := 0; i < set.Len(); i++ {
		th := set.Threshold(i)
		for _, l := range []Limits{th.Defaults(), th.Defaults().Overlay(Limits{PPS: 50, BPS: 1e5, SYNPPS: 7, UDPPPS: 30})} {
			f, ok := th.Floor(l)
			if !ok {
				continue
			}
			floors++
			below := 0
			for n := 0; n < 20000; n++ {
				a := Aggregates{BPS: math.Exp(rng.Float64()*28 - 3), PPS: math.Exp(rng.Float64()*18 - 3), FPS: math.Exp(rng.Float64()*15 - 3),
					Samples: math.Exp(rng.Float64()*12 - 3), DistinctSrc: inf, DistinctDst: inf, DistinctSrcPort: inf, DistinctDstPort: inf, Limits: l}
				if !f.Below(&a, 10) {
					continue
				}
				below++
				if fired, sev, _, _ := th.Check(&a); fired || sev >= 10 {
					t.Fatalf("%s: floor %+v says below 10%% for %+v, Check: fired %v severity %.1f", th.Rule().Name, f, a, fired, sev)
				}
			}
			if below == 0 {
				t.Errorf("%s: no sample below the floor %+v: the test does not exercise it", th.Rule().Name, f)
			}
		}
	}
	if floors < 10 {
		t.Errorf("only %d rule/limit pairs have a floor", floors)
	}
	if _, ok := set.Threshold(set.Index("vertical-scan")).Floor(Limits{}); ok {
		t.Error("vertical-scan (a distinct count) has a floor")
	}
	for _, tc := range []struct {
		threshold string
		floor     bool
	}{
		{"pps > 1000 && fps > pps / 10", true}, // a guard beside a limit
		{"pps > limits.udp_pps && (distinct_src > 10 || bytes_per_packet < 500)", true},
		{"(pps > 10 || distinct_src > 3) && bps > 1e6", true},
		{"bps > 1e6 && pps > 500 && samples >= 20", true},
		{"(bps > expected_bps * 2 && bps > 1e8) || (pps > expected_pps * 2 && pps > 1e5)", true},
		{"pps > 1000 || distinct_dst > 5", false}, // either side can fire
		{"pps > 1000 || fps > pps / 10", false},
		{"fps > pps / 10", false},
		{"distinct_dst > 5 && distinct_src > 5", false},
	} {
		r := rules.Rule{Name: "floor", Kind: "misuse", GroupBy: []string{"dst_addr"}, Direction: "incoming",
			Window: rules.Duration(10e9), Importance: "medium", Limits: map[string]float64{"udp_pps": 3000},
			Threshold: rules.Expr{Source: tc.threshold, Pos: rules.Position{File: "t", Line: 1, Column: 1}}}
		s, err := Compile([]rules.Rule{r})
		if err != nil {
			t.Fatalf("%s: %v", tc.threshold, err)
		}
		th := s.Threshold(0)
		f, ok := th.Floor(th.Defaults())
		if ok != tc.floor {
			t.Errorf("%s: floor %v, want %v", tc.threshold, ok, tc.floor)
			continue
		}
		if !ok {
			continue
		}
		below := 0
		for n := 0; n < 50000; n++ {
			a := Aggregates{BPS: math.Exp(rng.Float64()*28 - 3), PPS: math.Exp(rng.Float64()*18 - 3), FPS: math.Exp(rng.Float64()*15 - 3),
				Samples: math.Exp(rng.Float64()*12 - 3), DistinctSrc: inf, DistinctDst: inf, DistinctSrcPort: inf, DistinctDstPort: inf,
				Limits: th.Defaults()}
			if !f.Below(&a, 10) {
				continue
			}
			below++
			if fired, sev, _, _ := th.Check(&a); fired || sev >= 10 {
				t.Fatalf("%s: floor %+v says below 10%% for %+v, Check: fired %v severity %.1f", tc.threshold, f, a, fired, sev)
			}
		}
		if below == 0 {
			t.Errorf("%s: no sample below the floor %+v", tc.threshold, f)
		}
	}
}
