package detector

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"

	"github.com/flowhound/flowhound/flow"
)

// filterSpec is the narrowest description of the attack that its characterization
// supports; every generated filter is a rendering of it.
//
// Lengths are IP packet lengths as flow records count them (bytes/packets): the IPv4
// total length, and for IPv6 the 40-byte fixed header plus the payload length. Each
// dialect is given the field it really compares (tcpdump and nftables read the IPv6
// payload length field, so they get length-40).
//
// Fragments: a non-initial fragment carries no transport header, so a filter on ports
// never matches it, and flow exporters report such fragments with ports 0. A UDP filter
// with ports (reflection and amplification floods, whose large answers fragment) also
// takes the non-initial UDP fragments to the same addresses, in every dialect that can
// say so (see fragments). A filter on protocol alone takes fragments of that protocol as
// it is. A filter with an exact length (a worm's fingerprint) does not: a packet of a
// fixed small size is a whole datagram, and its fragments would not have that length.
type filterSpec struct {
	name     string
	v6       bool
	src, dst netip.Prefix
	proto    uint8 // 0: any
	srcPorts []uint16
	dstPorts []uint16
	synOnly  bool
	length   int // exact IP packet length, 0: any
}

// dominant returns the fewest values that carry 95% of the total, if there are few enough
// to write into a filter; otherwise nil (the field stays unconstrained).
func dominant[K comparable](m map[K]float64, total float64, maxN int) []K {
	if total <= 0 || len(m) == 0 {
		return nil
	}
	type kv struct {
		k K
		v float64
	}
	all := make([]kv, 0, len(m))
	for k, v := range m {
		all = append(all, kv{k, v})
	}
	sort.Slice(all, func(i, j int) bool { return all[i].v > all[j].v })
	var out []K
	var sum float64
	for _, e := range all {
		if len(out) == maxN {
			return nil
		}
		out = append(out, e.k)
		sum += e.v
		if sum >= 0.95*total {
			return out
		}
	}
	return nil
}

func buildFilters(a *Anomaly, ev *evidence) (map[string]string, *Coverage) {
	s, ok := specFor(a, ev)
	if !ok {
		return nil, nil
	}
	f := s.render()
	// Coverage is measured on the anomaly's flow sample: the share of its packets the
	// filter matches. The share of normal traffic it would drop needs the resource's
	// baseline flows and is not reported until that exists.
	var hit, all float64
	for i := range ev.sample {
		r := &ev.sample[i]
		pk := float64(r.Packets * r.Scale())
		all += pk
		if s.matches(r) {
			hit += pk
		}
	}
	var cov *Coverage
	if all > 0 {
		cov = &Coverage{AttackShare: roundTo(hit/all, 0.001)}
	}
	return f, cov
}

// specFor derives the filter from an anomaly on a host or prefix resource and its
// evidence; false when there is nothing to filter on.
func specFor(a *Anomaly, ev *evidence) (filterSpec, bool) {
	if ev.packets == 0 {
		return filterSpec{}, false
	}
	s := filterSpec{name: "flowhound-" + sanitize(a.Rule)}
	key := a.Resource.Key
	var p netip.Prefix
	switch a.Resource.Type {
	case "host":
		addr, err := netip.ParseAddr(key)
		if err != nil {
			return filterSpec{}, false
		}
		addr = addr.Unmap()
		p = netip.PrefixFrom(addr, addr.BitLen())
	case "prefix":
		q, err := netip.ParsePrefix(key)
		if err != nil {
			return filterSpec{}, false
		}
		if q.Addr().Is4In6() && q.Bits() >= 96 {
			q = netip.PrefixFrom(q.Addr().Unmap(), q.Bits()-96)
		}
		p = q.Masked()
	default:
		return filterSpec{}, false
	}
	if a.Direction == "outgoing" {
		s.src = p
	} else {
		s.dst = p
	}
	s.v6 = p.Addr().Is6()
	if ps := dominant(ev.protos, ev.packets, 1); len(ps) == 1 {
		s.proto = ps[0]
	}
	if s.proto == flow.ProtoTCP || s.proto == flow.ProtoUDP {
		// Non-initial UDP fragments are exported with ports 0; the fragment clause of a
		// UDP filter covers them, so port 0 is not written as a port. When only 0 is
		// left the filter stays on protocol alone, which takes them too.
		pick := func(m map[uint16]float64) []uint16 {
			ports := dominant(m, ev.portPkts, 6)
			if s.proto == flow.ProtoUDP {
				ports = withoutPort(ports, 0)
			}
			if len(ports) == 0 {
				return nil
			}
			return sortedPorts(ports)
		}
		if ports := pick(ev.dstPorts); ports != nil {
			s.dstPorts = ports
		} else if ports := pick(ev.srcPorts); ports != nil {
			s.srcPorts = ports
		}
	}
	if s.proto == flow.ProtoTCP {
		syn := 0.0
		for f, v := range ev.flags {
			if f&(flow.FlagSYN|flow.FlagACK) == flow.FlagSYN {
				syn += v
			}
		}
		s.synOnly = ev.flagPkts > 0 && syn >= 0.95*ev.flagPkts
	}
	// A fixed packet size is a worm's fingerprint (Slammer's 404 bytes). TCP sizes vary with
	// options from one stack to the next, so a TCP flood is not pinned to the size seen.
	minLen := 28.0
	if s.v6 {
		minLen = 48
	}
	if s.proto == flow.ProtoUDP && ev.sizeMin == ev.sizeMax && ev.sizeMin == float64(int(ev.sizeMin)) && ev.sizeMin >= minLen && ev.sizeMin <= 65535 {
		s.length = int(ev.sizeMin)
	}
	return s, true
}

// render returns every dialect, keyed as in the anomaly JSON.
func (s *filterSpec) render() map[string]string {
	return map[string]string{
		"bpf":             s.bpf(),
		"nftables":        s.nftables(),
		"cisco_acl":       s.ciscoACL(),
		"juniper":         s.juniper(),
		"flowspec_exabgp": s.exabgp(),
		"flowspec_gobgp":  s.gobgp(),
		"nfdump":          s.nfdump(),
	}
}

func (s *filterSpec) hasPorts() bool { return s.dstPorts != nil || s.srcPorts != nil }

// fragments says whether the filter also takes non-initial fragments by an extra clause,
// term, rule or route: a UDP filter on ports without an exact length.
func (s *filterSpec) fragments() bool {
	return s.proto == flow.ProtoUDP && s.hasPorts() && s.length == 0
}

// matches applies the spec to a flow record as the rendered filters apply it to packets.
// A record with ports 0 and 0 is taken as non-initial fragments (see filterSpec).
func (s *filterSpec) matches(r *flow.Record) bool {
	if s.dst.IsValid() && !s.dst.Contains(r.DstAddr.Unmap()) || s.src.IsValid() && !s.src.Contains(r.SrcAddr.Unmap()) {
		return false
	}
	if s.proto != 0 && r.Proto != s.proto {
		return false
	}
	if s.hasPorts() {
		ok := (s.dstPorts == nil || containsPort(s.dstPorts, r.DstPort)) && (s.srcPorts == nil || containsPort(s.srcPorts, r.SrcPort))
		if !ok && !(s.fragments() && r.SrcPort == 0 && r.DstPort == 0) {
			return false
		}
	}
	if s.synOnly && r.TCPFlags&(flow.FlagSYN|flow.FlagACK) != flow.FlagSYN {
		return false
	}
	if s.length > 0 && r.Packets > 0 && int(r.Bytes/r.Packets) != s.length {
		return false
	}
	return true
}

func containsPort(ps []uint16, p uint16) bool {
	for _, x := range ps {
		if x == p {
			return true
		}
	}
	return false
}

func withoutPort(ps []uint16, p uint16) []uint16 {
	out := ps[:0]
	for _, x := range ps {
		if x != p {
			out = append(out, x)
		}
	}
	return out
}

func sortedPorts(ps []uint16) []uint16 {
	sort.Slice(ps, func(i, j int) bool { return ps[i] < ps[j] })
	return ps
}

func sanitize(s string) string {
	var b strings.Builder
	for _, c := range s {
		if c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' {
			b.WriteRune(c)
		} else {
			b.WriteByte('-')
		}
	}
	return b.String()
}

// protoKeyword returns the protocol's name where every dialect below agrees on it, else "".
func protoKeyword(p uint8) string {
	switch p {
	case flow.ProtoTCP:
		return "tcp"
	case flow.ProtoUDP:
		return "udp"
	}
	return ""
}

func joinPorts(ps []uint16, sep, prefix string) string {
	parts := make([]string, len(ps))
	for i, p := range ps {
		parts[i] = fmt.Sprintf("%s%d", prefix, p)
	}
	return strings.Join(parts, sep)
}

// ---- tcpdump / libpcap ----
//
// libpcap's tcp, udp, port and tcp[] primitives read the IPv6 fixed header's next header
// only and tcp[] does not compile for IPv6 at all, so IPv6 filters index the packet
// (flags at ip6[53], the fragment header at ip6[40..47], its upper-layer ports at
// ip6[48:2] and ip6[50:2]); they assume no extension header other than one fragment
// header. IPv4 port primitives already refuse non-initial fragments.

func (s *filterSpec) bpf() string {
	fam := "ip"
	if s.v6 {
		fam = "ip6"
	}
	t := []string{fam}
	if s.dst.IsValid() {
		t = append(t, "dst net "+s.dst.String())
	}
	if s.src.IsValid() {
		t = append(t, "src net "+s.src.String())
	}
	var l4 []string
	if s.proto != 0 {
		p := s.bpfProto()
		if strings.Contains(p, " or ") && s.length > 0 {
			p = "(" + p + ")"
		}
		l4 = append(l4, p)
	}
	if s.dstPorts != nil {
		l4 = append(l4, "("+joinPorts(s.dstPorts, " or ", "dst port ")+")")
	}
	if s.srcPorts != nil {
		l4 = append(l4, "("+joinPorts(s.srcPorts, " or ", "src port ")+")")
	}
	if s.synOnly {
		if s.v6 {
			l4 = append(l4, "ip6[53] & 0x12 == 0x02")
		} else {
			l4 = append(l4, "tcp[tcpflags] & (tcp-syn|tcp-ack) == tcp-syn")
		}
	}
	if s.length > 0 {
		if s.v6 {
			l4 = append(l4, fmt.Sprintf("ip6[4:2] == %d", s.length-40))
		} else {
			l4 = append(l4, fmt.Sprintf("ip[2:2] == %d", s.length))
		}
	}
	l4s := strings.Join(l4, " and ")
	if s.fragments() {
		l4s = "((" + l4s + ") or (" + s.bpfFragments() + "))"
	} else if l4s != "" {
		l4s = "(" + l4s + ")"
	}
	if l4s != "" {
		t = append(t, l4s)
	}
	return strings.Join(t, " and ")
}

func (s *filterSpec) bpfProto() string {
	if !s.v6 {
		switch s.proto {
		case flow.ProtoTCP, flow.ProtoUDP:
			return protoKeyword(s.proto)
		case flow.ProtoICMP:
			return "icmp"
		}
		return fmt.Sprintf("ip proto %d", s.proto)
	}
	w := fmt.Sprintf("ip6 proto %d", s.proto)
	switch s.proto {
	case flow.ProtoTCP, flow.ProtoUDP:
		w = protoKeyword(s.proto)
	case flow.ProtoICMPv6:
		w = "icmp6"
	}
	if s.hasPorts() || s.synOnly {
		return w
	}
	// On protocol alone, fragments of that protocol belong to the attack too; behind a
	// fragment header the protocol is the fragment header's next header. libpcap 1.10
	// looks behind one fragment header for "ip6 proto" by itself, but pcap-filter(7)
	// documents that it does not follow the header chain, so it is written out.
	return fmt.Sprintf("%s or (ip6[6] == 44 and ip6[40] == %d)", w, s.proto)
}

// bpfFragments matches the UDP fragments that the port clause cannot: non-initial ones,
// and for IPv6 initial ones too when their ports are the attack's (libpcap's port
// primitives do not look behind the IPv6 fragment header).
func (s *filterSpec) bpfFragments() string {
	if !s.v6 {
		return "udp and ip[6:2] & 0x1fff != 0"
	}
	var first []string
	for _, p := range s.srcPorts {
		first = append(first, fmt.Sprintf("ip6[48:2] == %d", p))
	}
	for _, p := range s.dstPorts {
		first = append(first, fmt.Sprintf("ip6[50:2] == %d", p))
	}
	return "ip6[6] == 44 and ip6[40] == 17 and (ip6[42:2] & 0xfff8 != 0 or " + strings.Join(first, " or ") + ")"
}

// ---- nftables ----
//
// The chain hooks prerouting at priority -450, before the kernel's defragmentation
// (-400), so that a flood's fragments are dropped one by one instead of being reassembled
// first. tcp/udp port and flag matches take the transport header wherever it is (also
// behind IPv6 extension headers) and never match non-initial fragments; meta l4proto
// matches fragments of that protocol.

func (s *filterSpec) nftables() string {
	rules := []string{s.nftRule(false)}
	if s.fragments() {
		rules = append(rules, s.nftRule(true))
	}
	return fmt.Sprintf("table inet flowhound {\n\tchain %s {\n\t\ttype filter hook prerouting priority -450; policy accept;\n\t\t%s\n\t}\n}\n",
		strings.ReplaceAll(s.name, "-", "_"), strings.Join(rules, "\n\t\t"))
}

func (s *filterSpec) nftRule(frag bool) string {
	var m []string
	fam := "ip"
	if s.v6 {
		fam = "ip6"
	}
	if s.dst.IsValid() {
		m = append(m, fam+" daddr "+s.dst.String())
	}
	if s.src.IsValid() {
		m = append(m, fam+" saddr "+s.src.String())
	}
	if frag {
		if s.v6 {
			m = append(m, "frag nexthdr udp frag frag-off != 0")
		} else {
			m = append(m, "ip protocol udp ip frag-off & 0x1fff != 0")
		}
		return strings.Join(m, " ") + " counter drop"
	}
	if s.proto != 0 && !s.hasPorts() && !s.synOnly {
		m = append(m, "meta l4proto "+nftProto(s.proto))
	}
	word := protoKeyword(s.proto)
	nftPorts := func(ps []uint16) string {
		if len(ps) == 1 {
			return fmt.Sprint(ps[0])
		}
		return "{ " + joinPorts(ps, ", ", "") + " }"
	}
	if s.dstPorts != nil {
		m = append(m, word+" dport "+nftPorts(s.dstPorts))
	}
	if s.srcPorts != nil {
		m = append(m, word+" sport "+nftPorts(s.srcPorts))
	}
	if s.synOnly {
		m = append(m, "tcp flags & (syn | ack) == syn")
	}
	if s.length > 0 {
		if s.v6 {
			m = append(m, fmt.Sprintf("ip6 length %d", s.length-40))
		} else {
			m = append(m, fmt.Sprintf("ip length %d", s.length))
		}
	}
	return strings.Join(m, " ") + " counter drop"
}

func nftProto(p uint8) string {
	switch p {
	case flow.ProtoTCP, flow.ProtoUDP:
		return protoKeyword(p)
	case flow.ProtoICMP:
		return "icmp"
	case flow.ProtoICMPv6:
		return "icmpv6"
	}
	return fmt.Sprint(p)
}

// ---- Cisco IOS ----
//
// Extended IPv4 ACL and IPv6 ACL. An ACE with ports never matches a non-initial
// fragment, and the fragments keyword cannot share a line with ports, so UDP fragments
// get their own line. IOS ACLs have no packet-length match: a length is left out, which
// makes the ACL wider than the other dialects. IPv6 ACLs have no match-all, so SYN-only
// is written as a permit of ACK segments followed by a deny of SYN segments, which drops
// exactly those with SYN and without ACK.

func ciscoAddr(p netip.Prefix) string {
	if !p.IsValid() {
		return "any"
	}
	if p.IsSingleIP() {
		return "host " + p.Addr().String()
	}
	if p.Addr().Is6() {
		return p.String()
	}
	// IOS takes wildcard masks: the inverse of the netmask.
	m := ^uint32(0) >> p.Bits()
	return fmt.Sprintf("%s %d.%d.%d.%d", p.Addr(), m>>24, m>>16&0xff, m>>8&0xff, m&0xff)
}

func (s *filterSpec) ciscoProto() string {
	switch {
	case s.proto == 0 && s.v6:
		return "ipv6"
	case s.proto == 0:
		return "ip"
	case s.proto == flow.ProtoTCP || s.proto == flow.ProtoUDP:
		return protoKeyword(s.proto)
	case s.proto == flow.ProtoICMP && !s.v6, s.proto == flow.ProtoICMPv6 && s.v6:
		return "icmp" // in an IPv6 ACL, icmp is ICMPv6
	}
	return fmt.Sprint(s.proto)
}

func (s *filterSpec) ciscoACL() string {
	var b strings.Builder
	if s.v6 {
		fmt.Fprintf(&b, "ipv6 access-list %s\n", strings.ToUpper(s.name))
	} else {
		fmt.Fprintf(&b, "ip access-list extended %s\n", strings.ToUpper(s.name))
	}
	proto := s.ciscoProto()
	src, dst := ciscoAddr(s.src), ciscoAddr(s.dst)
	line := func(srcPort, dstPort string) {
		switch {
		case s.synOnly && s.v6:
			fmt.Fprintf(&b, " permit tcp %s%s %s%s ack\n", src, srcPort, dst, dstPort)
			fmt.Fprintf(&b, " deny tcp %s%s %s%s syn\n", src, srcPort, dst, dstPort)
		case s.synOnly:
			fmt.Fprintf(&b, " deny tcp %s%s %s%s match-all +syn -ack\n", src, srcPort, dst, dstPort)
		default:
			fmt.Fprintf(&b, " deny %s %s%s %s%s\n", proto, src, srcPort, dst, dstPort)
		}
	}
	switch {
	case s.dstPorts != nil:
		for _, p := range s.dstPorts {
			line("", fmt.Sprintf(" eq %d", p))
		}
	case s.srcPorts != nil:
		for _, p := range s.srcPorts {
			line(fmt.Sprintf(" eq %d", p), "")
		}
	default:
		line("", "")
	}
	if s.fragments() {
		fmt.Fprintf(&b, " deny udp %s %s fragments\n", src, dst)
	}
	if s.v6 {
		b.WriteString(" permit ipv6 any any\n")
	} else {
		b.WriteString(" permit ip any any\n")
	}
	return b.String()
}

// ---- Junos ----
//
// family inet matches protocol; family inet6 matches payload-protocol (the upper-layer
// protocol behind any extension headers, which Juniper recommends over next-header, the
// first header only). Non-initial fragments: is-fragment in inet (fragment offset not
// zero); inet6 has extension-header fragment, which also takes initial fragments, placed
// after the term on ports so that only fragments the first term did not take reach it.
// packet-length is the whole IP packet in both families.

func (s *filterSpec) junosProto() string {
	switch {
	case s.proto == flow.ProtoTCP || s.proto == flow.ProtoUDP:
		return protoKeyword(s.proto)
	case s.proto == flow.ProtoICMP && !s.v6:
		return "icmp"
	case s.proto == flow.ProtoICMPv6 && s.v6:
		return "icmp6"
	}
	return fmt.Sprint(s.proto)
}

func (s *filterSpec) juniper() string {
	addrs := func() []string {
		var from []string
		if s.dst.IsValid() {
			from = append(from, fmt.Sprintf("destination-address { %s; }", s.dst))
		}
		if s.src.IsValid() {
			from = append(from, fmt.Sprintf("source-address { %s; }", s.src))
		}
		return from
	}
	protoKey := "protocol"
	if s.v6 {
		protoKey = "payload-protocol"
	}
	from := addrs()
	if s.proto != 0 {
		from = append(from, protoKey+" "+s.junosProto()+";")
	}
	if s.dstPorts != nil {
		from = append(from, "destination-port [ "+joinPorts(s.dstPorts, " ", "")+" ];")
	}
	if s.srcPorts != nil {
		from = append(from, "source-port [ "+joinPorts(s.srcPorts, " ", "")+" ];")
	}
	if s.synOnly {
		from = append(from, `tcp-flags "syn & !ack";`)
	}
	if s.length > 0 {
		from = append(from, fmt.Sprintf("packet-length %d;", s.length))
	}
	fam := "inet"
	if s.v6 {
		fam = "inet6"
	}
	var b strings.Builder
	term := func(name, counter string, from []string) {
		fmt.Fprintf(&b, "            term %s {\n                from {\n                    %s\n                }\n                then {\n                    count %s;\n                    discard;\n                }\n            }\n",
			name, strings.Join(from, "\n                    "), counter)
	}
	fmt.Fprintf(&b, "firewall {\n    family %s {\n        filter %s {\n", fam, s.name)
	term("attack", s.name, from)
	if s.fragments() {
		ff := addrs()
		if s.v6 {
			ff = append(ff, "payload-protocol udp;", "extension-header fragment;")
		} else {
			ff = append(ff, "protocol udp;", "is-fragment;")
		}
		term("attack-fragments", s.name+"-fragments", ff)
	}
	b.WriteString("            term rest {\n                then accept;\n            }\n        }\n    }\n}\n")
	return b.String()
}

// ---- BGP flowspec (RFC 8955, RFC 8956) ----
//
// Components are ANDed; a route with port components never matches a non-initial
// fragment (it has no ports), so UDP fragments get a second route with the fragment
// component's IsF bit, which RFC 8955 defines as "fragment offset not zero". Neither
// route uses "not-a-fragment": RFC 8955 has no such bit and the tools encode it as the
// value 0, whose meaning then depends on the operator. SYN-only is two bitmask
// operations: SYN set AND NOT (ACK set). Packet length is the total IP packet length in
// both families (RFC 8956 does not redefine type 10).

func (s *filterSpec) exabgp() string {
	var m []string
	if s.src.IsValid() {
		m = append(m, fmt.Sprintf("source %s;", s.src))
	}
	if s.dst.IsValid() {
		m = append(m, fmt.Sprintf("destination %s;", s.dst))
	}
	protoKey := "protocol"
	if s.v6 {
		protoKey = "next-header"
	}
	frag := append([]string(nil), m...)
	if s.proto != 0 {
		m = append(m, fmt.Sprintf("%s =%d;", protoKey, s.proto))
	}
	if s.dstPorts != nil {
		m = append(m, "destination-port [ "+joinPorts(s.dstPorts, " ", "=")+" ];")
	}
	if s.srcPorts != nil {
		m = append(m, "source-port [ "+joinPorts(s.srcPorts, " ", "=")+" ];")
	}
	if s.synOnly {
		m = append(m, "tcp-flags [ syn&!ack ];")
	}
	if s.length > 0 {
		m = append(m, fmt.Sprintf("packet-length =%d;", s.length))
	}
	var b strings.Builder
	route := func(name string, m []string) {
		fmt.Fprintf(&b, "    route %s {\n        match {\n            %s\n        }\n        then {\n            discard;\n        }\n    }\n",
			name, strings.Join(m, "\n            "))
	}
	b.WriteString("flow {\n")
	route(s.name, m)
	if s.fragments() {
		frag = append(frag, fmt.Sprintf("%s =%d;", protoKey, flow.ProtoUDP), "fragment [ is-fragment ];")
		route(s.name+"-fragments", frag)
	}
	b.WriteString("}\n")
	return b.String()
}

// gobgp returns one command per route. GoBGP's CLI reads protocol names loosely (an
// unknown name can come out as another protocol), so anything but tcp, udp and icmp is
// written as a number.
func (s *filterSpec) gobgp() string {
	fam := "ipv4-flowspec"
	if s.v6 {
		fam = "ipv6-flowspec"
	}
	var m []string
	if s.dst.IsValid() {
		m = append(m, "destination "+s.dst.String())
	}
	if s.src.IsValid() {
		m = append(m, "source "+s.src.String())
	}
	frag := append([]string(nil), m...)
	proto := fmt.Sprint(s.proto)
	if w := protoKeyword(s.proto); w != "" {
		proto = w
	} else if s.proto == flow.ProtoICMP && !s.v6 {
		proto = "icmp"
	}
	if s.proto != 0 {
		m = append(m, "protocol "+proto)
	}
	if s.dstPorts != nil {
		m = append(m, "destination-port '"+joinPorts(s.dstPorts, " ", "==")+"'")
	}
	if s.srcPorts != nil {
		m = append(m, "source-port '"+joinPorts(s.srcPorts, " ", "==")+"'")
	}
	if s.synOnly {
		m = append(m, "tcp-flags 'S&!A'")
	}
	if s.length > 0 {
		m = append(m, fmt.Sprintf("packet-length '==%d'", s.length))
	}
	cmds := []string{fmt.Sprintf("gobgp global rib -a %s add match %s then discard", fam, strings.Join(m, " "))}
	if s.fragments() {
		frag = append(frag, "protocol udp", "fragment 'is-fragment'")
		cmds = append(cmds, fmt.Sprintf("gobgp global rib -a %s add match %s then discard", fam, strings.Join(frag, " ")))
	}
	return strings.Join(cmds, "\n")
}

// ---- nfdump ----
//
// nfdump filters flow records, not packets: there is no per-packet length, so an exact
// length is written as bytes per packet of the flow (bpp), which equals it when every
// packet of the flow has that length, as a worm's flows do. Non-initial fragments are
// the flows with ports 0 and 0. Flow TCP flags are the OR over the flow's packets, so
// "S and not A" takes flows that only ever carried SYN without ACK.

func (s *filterSpec) nfdump() string {
	var t []string
	if s.dst.IsValid() {
		t = append(t, "dst net "+s.dst.String())
	}
	if s.src.IsValid() {
		t = append(t, "src net "+s.src.String())
	}
	if s.proto != 0 {
		t = append(t, "proto "+nfdumpProto(s.proto))
	}
	var ports []string
	if s.dstPorts != nil {
		ports = append(ports, "dst port in [ "+joinPorts(s.dstPorts, " ", "")+" ]")
	}
	if s.srcPorts != nil {
		ports = append(ports, "src port in [ "+joinPorts(s.srcPorts, " ", "")+" ]")
	}
	if s.fragments() {
		t = append(t, "("+strings.Join(ports, " and ")+" or (src port 0 and dst port 0))")
	} else {
		t = append(t, ports...)
	}
	if s.synOnly {
		t = append(t, "flags S and not flags A")
	}
	if s.length > 0 {
		t = append(t, fmt.Sprintf("bpp %d", s.length))
	}
	return strings.Join(t, " and ")
}

func nfdumpProto(p uint8) string {
	switch p {
	case flow.ProtoTCP, flow.ProtoUDP:
		return protoKeyword(p)
	case flow.ProtoICMP:
		return "icmp"
	case flow.ProtoICMPv6:
		return "icmp6"
	}
	return fmt.Sprint(p)
}
