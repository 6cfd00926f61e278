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
	if ev.packets == 0 {
		return nil, nil
	}
	s := filterSpec{name: "flowhound-" + sanitize(a.Rule)}
	key := a.Resource.Key
	switch a.Resource.Type {
	case "host":
		addr, err := netip.ParseAddr(key)
		if err != nil {
			return nil, nil
		}
		p := netip.PrefixFrom(addr, addr.BitLen())
		if a.Direction == "outgoing" {
			s.src = p
		} else {
			s.dst = p
		}
		s.v6 = addr.Is6()
	case "prefix":
		p, err := netip.ParsePrefix(key)
		if err != nil {
			return nil, nil
		}
		if a.Direction == "outgoing" {
			s.src = p
		} else {
			s.dst = p
		}
		s.v6 = p.Addr().Is6()
	default:
		return nil, nil
	}
	if ps := dominant(ev.protos, ev.packets, 1); len(ps) == 1 {
		s.proto = ps[0]
	}
	if s.proto == flow.ProtoTCP || s.proto == flow.ProtoUDP {
		if ports := dominant(ev.dstPorts, ev.portPkts, 6); ports != nil {
			s.dstPorts = sortedPorts(ports)
		} else if ports := dominant(ev.srcPorts, ev.portPkts, 6); ports != nil {
			s.srcPorts = sortedPorts(ports)
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
	if s.proto == flow.ProtoUDP && ev.sizeMin == ev.sizeMax && ev.sizeMin == float64(int(ev.sizeMin)) && ev.sizeMin >= 28 {
		s.length = int(ev.sizeMin)
	}
	f := map[string]string{
		"bpf":             s.bpf(),
		"nftables":        s.nftables(),
		"cisco_acl":       s.ciscoACL(),
		"juniper":         s.juniper(),
		"flowspec_exabgp": s.exabgp(),
		"flowspec_gobgp":  s.gobgp(),
		"nfdump":          s.nfdump(),
	}
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

func (s *filterSpec) matches(r *flow.Record) bool {
	if s.dst.IsValid() && !s.dst.Contains(r.DstAddr) || s.src.IsValid() && !s.src.Contains(r.SrcAddr) {
		return false
	}
	if s.proto != 0 && r.Proto != s.proto {
		return false
	}
	if s.dstPorts != nil && !containsPort(s.dstPorts, r.DstPort) || s.srcPorts != nil && !containsPort(s.srcPorts, r.SrcPort) {
		return false
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

func protoWord(p uint8) string {
	switch p {
	case flow.ProtoTCP:
		return "tcp"
	case flow.ProtoUDP:
		return "udp"
	case flow.ProtoICMP:
		return "icmp"
	case flow.ProtoICMPv6:
		return "icmpv6"
	}
	return fmt.Sprint(p)
}

func joinPorts(ps []uint16, sep, prefix string) string {
	parts := make([]string, len(ps))
	for i, p := range ps {
		parts[i] = fmt.Sprintf("%s%d", prefix, p)
	}
	return strings.Join(parts, sep)
}

// bpf renders a tcpdump filter. A UDP filter also takes non-initial fragments, which carry
// no ports but are part of the same flood.
func (s *filterSpec) bpf() string {
	var t []string
	ipw := "ip"
	if s.v6 {
		ipw = "ip6"
	}
	t = append(t, ipw)
	if s.dst.IsValid() {
		t = append(t, "dst net "+s.dst.String())
	}
	if s.src.IsValid() {
		t = append(t, "src net "+s.src.String())
	}
	var l4 []string
	if s.proto != 0 {
		if s.v6 {
			l4 = append(l4, fmt.Sprintf("ip6 proto %d", s.proto))
		} else {
			l4 = append(l4, protoWord(s.proto))
			if s.proto == flow.ProtoICMPv6 {
				l4[len(l4)-1] = "icmp6"
			}
		}
	}
	if s.dstPorts != nil {
		l4 = append(l4, "("+joinPorts(s.dstPorts, " or ", "dst port ")+")")
	}
	if s.srcPorts != nil {
		l4 = append(l4, "("+joinPorts(s.srcPorts, " or ", "src port ")+")")
	}
	if s.synOnly && !s.v6 {
		l4 = append(l4, "tcp[tcpflags] & (tcp-syn|tcp-ack) == tcp-syn")
	}
	if s.length > 0 {
		if s.v6 {
			l4 = append(l4, fmt.Sprintf("ip6[4:2] == %d", s.length-40))
		} else {
			l4 = append(l4, fmt.Sprintf("ip[2:2] == %d", s.length))
		}
	}
	l4s := strings.Join(l4, " and ")
	if s.proto == flow.ProtoUDP && !s.v6 && (s.dstPorts != nil || s.srcPorts != nil) {
		l4s = "((" + l4s + ") or (udp and ip[6:2] & 0x1fff != 0))"
	} else if l4s != "" {
		l4s = "(" + l4s + ")"
	}
	if l4s != "" {
		t = append(t, l4s)
	}
	return strings.Join(t, " and ")
}

func (s *filterSpec) nftables() string {
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
	proto := protoWord(s.proto)
	if s.proto != 0 && s.dstPorts == nil && s.srcPorts == nil {
		if s.v6 {
			m = append(m, "meta l4proto "+proto)
		} else {
			m = append(m, "ip protocol "+proto)
		}
	}
	if s.dstPorts != nil {
		m = append(m, proto+" dport { "+joinPorts(s.dstPorts, ", ", "")+" }")
	}
	if s.srcPorts != nil {
		m = append(m, proto+" sport { "+joinPorts(s.srcPorts, ", ", "")+" }")
	}
	if s.synOnly {
		if s.dstPorts == nil && s.srcPorts == nil && s.v6 {
			m = append(m, "meta l4proto tcp")
		}
		m = append(m, "tcp flags & (syn | ack) == syn")
	}
	if s.length > 0 {
		if s.v6 {
			m = append(m, fmt.Sprintf("ip6 length %d", s.length-40))
		} else {
			m = append(m, fmt.Sprintf("ip length %d", s.length))
		}
	}
	return fmt.Sprintf("table inet flowhound {\n\tchain %s {\n\t\ttype filter hook prerouting priority -300; policy accept;\n\t\t%s counter drop\n\t}\n}\n",
		strings.ReplaceAll(s.name, "-", "_"), strings.Join(m, " "))
}

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

func (s *filterSpec) ciscoACL() string {
	var b strings.Builder
	proto := "ip"
	if s.v6 {
		proto = "ipv6"
	}
	if s.proto != 0 {
		proto = protoWord(s.proto)
	}
	if s.v6 {
		fmt.Fprintf(&b, "ipv6 access-list %s\n", strings.ToUpper(s.name))
	} else {
		fmt.Fprintf(&b, "ip access-list extended %s\n", strings.ToUpper(s.name))
	}
	tail := ""
	if s.synOnly {
		tail = " match-all +syn -ack"
	}
	line := func(srcPort, dstPort string) {
		fmt.Fprintf(&b, " deny %s %s%s %s%s%s\n", proto, ciscoAddr(s.src), srcPort, ciscoAddr(s.dst), dstPort, tail)
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
	if s.proto == flow.ProtoUDP && !s.v6 && (s.dstPorts != nil || s.srcPorts != nil) {
		fmt.Fprintf(&b, " deny udp %s %s fragments\n", ciscoAddr(s.src), ciscoAddr(s.dst))
	}
	if s.v6 {
		b.WriteString(" permit ipv6 any any\n")
	} else {
		b.WriteString(" permit ip any any\n")
	}
	return b.String()
}

func (s *filterSpec) juniper() string {
	var from []string
	if s.dst.IsValid() {
		from = append(from, fmt.Sprintf("destination-address { %s; }", s.dst))
	}
	if s.src.IsValid() {
		from = append(from, fmt.Sprintf("source-address { %s; }", s.src))
	}
	if s.proto != 0 {
		if s.v6 {
			from = append(from, "next-header "+protoWord(s.proto)+";")
		} else {
			from = append(from, "protocol "+protoWord(s.proto)+";")
		}
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
	return fmt.Sprintf("firewall {\n    family %s {\n        filter %s {\n            term attack {\n                from {\n                    %s\n                }\n                then {\n                    count %s;\n                    discard;\n                }\n            }\n            term rest {\n                then accept;\n            }\n        }\n    }\n}\n",
		fam, s.name, strings.Join(from, "\n                    "), s.name)
}

func (s *filterSpec) exabgp() string {
	var m []string
	if s.src.IsValid() {
		m = append(m, fmt.Sprintf("source %s;", s.src))
	}
	if s.dst.IsValid() {
		m = append(m, fmt.Sprintf("destination %s;", s.dst))
	}
	if s.proto != 0 {
		if s.v6 {
			m = append(m, fmt.Sprintf("next-header =%d;", s.proto))
		} else {
			m = append(m, fmt.Sprintf("protocol =%d;", s.proto))
		}
	}
	if s.dstPorts != nil {
		m = append(m, "destination-port [ "+joinPorts(s.dstPorts, " ", "=")+" ];")
	}
	if s.srcPorts != nil {
		m = append(m, "source-port [ "+joinPorts(s.srcPorts, " ", "=")+" ];")
	}
	if s.synOnly {
		m = append(m, "tcp-flags [ =syn ];")
	}
	if s.length > 0 {
		m = append(m, fmt.Sprintf("packet-length =%d;", s.length))
	}
	return fmt.Sprintf("flow {\n    route %s {\n        match {\n            %s\n        }\n        then {\n            discard;\n        }\n    }\n}\n",
		s.name, strings.Join(m, "\n            "))
}

func (s *filterSpec) gobgp() string {
	fam := "ipv4-flowspec"
	if s.v6 {
		fam = "ipv6-flowspec"
	}
	m := []string{}
	if s.dst.IsValid() {
		m = append(m, "destination "+s.dst.String())
	}
	if s.src.IsValid() {
		m = append(m, "source "+s.src.String())
	}
	if s.proto != 0 {
		m = append(m, "protocol "+protoWord(s.proto))
	}
	if s.dstPorts != nil {
		m = append(m, "destination-port '"+joinPorts(s.dstPorts, " ", "==")+"'")
	}
	if s.srcPorts != nil {
		m = append(m, "source-port '"+joinPorts(s.srcPorts, " ", "==")+"'")
	}
	if s.synOnly {
		m = append(m, "tcp-flags '=S'")
	}
	if s.length > 0 {
		m = append(m, fmt.Sprintf("packet-length '==%d'", s.length))
	}
	return fmt.Sprintf("gobgp global rib -a %s add match %s then discard", fam, strings.Join(m, " "))
}

func (s *filterSpec) nfdump() string {
	var t []string
	if s.dst.IsValid() {
		t = append(t, "dst net "+s.dst.String())
	}
	if s.src.IsValid() {
		t = append(t, "src net "+s.src.String())
	}
	if s.proto != 0 {
		t = append(t, "proto "+protoWord(s.proto))
	}
	if s.dstPorts != nil {
		t = append(t, "dst port in [ "+joinPorts(s.dstPorts, " ", "")+" ]")
	}
	if s.srcPorts != nil {
		t = append(t, "src port in [ "+joinPorts(s.srcPorts, " ", "")+" ]")
	}
	if s.synOnly {
		t = append(t, "flags S and not flags A")
	}
	if s.length > 0 {
		// nfdump filters on flow byte and packet counts, not packet length; bytes per packet
		// is as close as flow data gets.
		t = append(t, fmt.Sprintf("bpp %d", s.length))
	}
	return strings.Join(t, " and ")
}
