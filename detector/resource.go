package detector

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	"github.com/flowhound/flowhound/flow"
)

// resourceType values; the names are the JSON "type".
const (
	resHost uint8 = iota
	resPrefix
	resInterface
	resPort
	resGlobal
)

var resourceTypeNames = [...]string{"host", "prefix", "interface", "port", "global"}

// resource is the comparable key of what an anomaly is about. It holds no pointer (a
// netip.Addr does), so the table of a million resources is never scanned by the garbage
// collector, and it is three whole words: the per-flow path writes a resource and soon
// reads it back, and reads that span several narrower writes stall the processor's store
// forwarding, where word-sized ones do not.
type resource struct {
	hi, lo uint64 // address (host, prefix, or exporter of an interface), 16 bytes big-endian
	meta   uint64 // index<<32 | bits<<24 | typ<<16 | fam
}

func (r *resource) index() uint32 { return uint32(r.meta >> 32) } // ifindex, or proto<<16|port
func (r *resource) bits() uint8   { return uint8(r.meta >> 24) }  // prefix length
func (r *resource) typ() uint8    { return uint8(r.meta >> 16) }
func (r *resource) fam() uint8    { return uint8(r.meta) } // 0 no address, 4 or 6

func newResource(typ uint8, a netip.Addr, index uint32, bits uint8) resource {
	var r resource
	setResource(&r, typ, a, index, bits)
	return r
}

// setResource writes a resource in place, a word at a time.
func setResource(r *resource, typ uint8, a netip.Addr, index uint32, bits uint8) {
	meta := uint64(index)<<32 | uint64(bits)<<24 | uint64(typ)<<16
	switch {
	case a.Is4():
		// As As16 would give it, ::ffff:a.b.c.d, without the copy and the byte swaps.
		b := a.As4()
		r.hi, r.lo, r.meta = 0, 0xffff<<32|uint64(binary.BigEndian.Uint32(b[:])), meta|4
	case a.IsValid():
		b := a.As16()
		r.hi, r.lo, r.meta = binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:]), meta|6
	default:
		r.hi, r.lo, r.meta = 0, 0, meta
	}
}

// eq is ==, a word at a time (the compiler's == would compare memory in wider pieces).
func (r *resource) eq(o *resource) bool { return r.lo == o.lo && r.hi == o.hi && r.meta == o.meta }

// set copies o, a word at a time.
func (r *resource) set(o *resource) { r.hi, r.lo, r.meta = o.hi, o.lo, o.meta }

// addr is the resource's address; the zero Addr for ports and global.
func (r *resource) addr() netip.Addr {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], r.hi)
	binary.BigEndian.PutUint64(b[8:], r.lo)
	switch r.fam() {
	case 4:
		return netip.AddrFrom16(b).Unmap()
	case 6:
		return netip.AddrFrom16(b)
	}
	return netip.Addr{}
}

func (r resource) String() string {
	switch r.typ() {
	case resHost:
		return r.addr().String()
	case resPrefix:
		return netip.PrefixFrom(r.addr(), int(r.bits())).String()
	case resInterface:
		return fmt.Sprintf("%s:%d", r.addr(), r.index())
	case resPort:
		return fmt.Sprintf("%s/%d", protoName(uint8(r.index()>>16)), r.index()&0xffff)
	}
	return "global"
}

func protoName(p uint8) string {
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
	return fmt.Sprintf("proto%d", p)
}

// groupBy says how a rule keys flows into resources.
type groupBy uint8

const (
	byDstAddr groupBy = iota
	bySrcAddr
	byDstPrefix // the monitored prefix holding the destination (carpet bombing)
	bySrcPrefix
	byInIf
	byDstPort
	byGlobal
	numGroupBy
)

func parseGroupBy(fields []string) (groupBy, error) {
	if len(fields) == 0 {
		return byDstAddr, nil
	}
	if len(fields) > 1 {
		return 0, fmt.Errorf("group_by: one field is supported, got %v", fields)
	}
	switch fields[0] {
	case "dst_addr", "dst_host":
		return byDstAddr, nil
	case "src_addr", "src_host":
		return bySrcAddr, nil
	case "dst_prefix", "dst_net", "network":
		return byDstPrefix, nil
	case "src_prefix", "src_net":
		return bySrcPrefix, nil
	case "in_if", "interface":
		return byInIf, nil
	case "dst_port", "port":
		return byDstPort, nil
	case "global":
		return byGlobal, nil
	}
	return 0, fmt.Errorf("group_by: unknown field %q", fields[0])
}

// networks answers which monitored network an address is in. A linear scan is right for
// the handful of groups an operator configures; the per-host state lives elsewhere.
type networks struct {
	prefixes []netip.Prefix
	group    []int      // index into Config.Networks per prefix
	res      []resource // each prefix as a resource
}

func newNetworks(ns []Network) networks {
	var n networks
	for gi, g := range ns {
		for _, p := range g.Prefixes {
			n.prefixes = append(n.prefixes, p.Masked())
			n.group = append(n.group, gi)
			n.res = append(n.res, newResource(resPrefix, p.Masked().Addr(), 0, uint8(p.Bits())))
		}
	}
	return n
}

// lookup returns the index of the most specific prefix holding a, or -1.
func (n *networks) lookup(a netip.Addr) int {
	best, bits := -1, -1
	for i, p := range n.prefixes {
		if p.Bits() > bits && p.Contains(a) {
			best, bits = i, p.Bits()
		}
	}
	return best
}

func (n *networks) empty() bool { return len(n.prefixes) == 0 }
