package gen

import (
	"fmt"
	"net/netip"
)

// The simulated network: two customer /24s behind N border routers. Each router has four
// external interfaces (transit and peering, ifindex 1-4), four customer-facing
// aggregation interfaces (10-13) and a core link (20). Customers are homed in /26 blocks
// on one router's aggregation interface; traffic from the Internet enters wherever the
// remote network's path leads (a hash of the remote address picks the router and
// uplink), and customer traffic enters on its home interface.
const (
	ifCore       = 20
	numUplinks   = 4
	numCustIfs   = 4
	customerMask = 24
)

// Well-known customer hosts of the scenarios.
var (
	resolverHost = addrU32(netip.MustParseAddr("198.51.100.53")) // busy recursive DNS resolver
	mailHost     = addrU32(netip.MustParseAddr("192.0.2.25"))    // inbound SMTP
)

// Documentation AS numbers (RFC 5398) stand for the Internet's networks.
var docASNs = [...]uint32{
	64496, 64497, 64498, 64499, 64500, 64501, 64502, 64503, 64504, 64505, 64506, 64507, 64508, 64509, 64510, 64511,
	65536, 65537, 65538, 65539, 65540, 65541, 65542, 65543, 65544, 65545, 65546, 65547, 65548, 65549, 65550, 65551,
}

var remoteMasks = [...]uint8{16, 19, 20, 22, 24, 24, 24, 24}

func addrU32(a netip.Addr) uint32 {
	b := a.Unmap().As4()
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

func u32Addr(a uint32) netip.Addr {
	return netip.AddrFrom4([4]byte{byte(a >> 24), byte(a >> 16), byte(a >> 8), byte(a)})
}

// isCustomer reports whether a is in 192.0.2.0/24 or 198.51.100.0/24.
func isCustomer(a uint32) bool {
	return a>>8 == 192<<16|0<<8|2 || a>>8 == 198<<16|51<<8|100
}

// network holds the addresses that traffic is drawn from.
type network struct {
	exporters int
	customers []uint32
	pick      [8192]uint16 // customer index by weight: a few busy hosts, many quiet ones

	web, resolvers, authDNS, ntp, mail, misc, speed, amplifiers []uint32
}

func newNetwork(r *rng, exporters int) *network {
	n := &network{exporters: exporters}
	for _, net := range []uint32{192<<24 | 0<<16 | 2<<8, 198<<24 | 51<<16 | 100<<8} {
		for h := uint32(1); h < 255; h++ {
			n.customers = append(n.customers, net|h)
		}
	}
	// Host weights: 8% busy (x4), a third quiet (x1/4), the rest ordinary. The cumulative
	// table maps a uniform draw to a host in O(1).
	w := make([]float64, len(n.customers))
	total := 0.0
	for i := range w {
		switch u := r.n(100); {
		case u < 8:
			w[i] = 4
		case u < 41:
			w[i] = 0.25
		default:
			w[i] = 1
		}
		total += w[i]
	}
	acc, j := 0.0, 0
	for i := range n.pick {
		for j < len(w)-1 && (acc+w[j])/total*float64(len(n.pick)) <= float64(i) {
			acc += w[j]
			j++
		}
		n.pick[i] = uint16(j)
	}
	pool := func(size int, fromDoc int) []uint32 {
		p := make([]uint32, size)
		for i := range p {
			if fromDoc > 0 && r.n(100) < fromDoc {
				p[i] = 203<<24 | 0<<16 | 113<<8 | uint32(r.between(1, 254))
			} else {
				p[i] = r.public()
			}
		}
		return p
	}
	n.web = pool(2000, 0)
	n.resolvers = pool(4, 0)
	n.authDNS = pool(3000, 0)
	n.ntp = pool(16, 0)
	n.mail = pool(300, 0)
	n.misc = pool(1000, 0)
	n.speed = pool(8, 0)
	n.amplifiers = pool(2500, 10)
	return n
}

func (n *network) customer(r *rng) uint32 {
	return n.customers[n.pick[r.u64()&uint64(len(n.pick)-1)]]
}

func (n *network) anyCustomer(r *rng) uint32 { return n.customers[r.n(len(n.customers))] }

// home returns the exporter and customer-facing ifindex a customer host is behind; a
// host outside the customer ranges (a -victim elsewhere) is placed by hash.
func (n *network) home(c uint32) (int, uint32) {
	var block int
	switch c >> 8 {
	case 192<<16 | 0<<8 | 2:
		block = int(c&0xFF) / 64
	case 198<<16 | 51<<8 | 100:
		block = 4 + int(c&0xFF)/64
	default:
		block = int(mix32(c) % 8)
	}
	return block % n.exporters, 10 + uint32(block/n.exporters)%numCustIfs
}

// inbound routes a flow from the Internet to a customer: the exporter and uplink the
// remote network's traffic arrives on, and the interface towards the customer.
func (n *network) inbound(remote, cust uint32) (int, uint32, uint32) {
	h := mix32(remote ^ 0x5bd1e995)
	exp := int(h % uint32(n.exporters))
	in := 1 + (h>>8)%numUplinks
	hexp, hif := n.home(cust)
	if hexp != exp {
		return exp, in, ifCore
	}
	return exp, in, hif
}

// outbound routes a flow from a customer to the Internet.
func (n *network) outbound(cust, remote uint32) (int, uint32, uint32) {
	exp, in := n.home(cust)
	return exp, in, 1 + (mix32(remote)>>8)%numUplinks
}

// Interface describes one interface of a simulated exporter.
type Interface struct {
	Index uint32
	Name  string
	Role  string // "external" (transit/peering) or "internal"
	Speed uint64 // bits per second
}

// ExporterInfo describes one simulated router, for configuring a collector with names.
type ExporterInfo struct {
	Addr       netip.Addr
	Name       string
	Domain     uint32 // v9 source ID / IPFIX domain / sFlow sub-agent; v5 engine ID
	Interfaces []Interface
}

func interfaces() []Interface {
	var out []Interface
	for i := range uint32(numUplinks) {
		out = append(out, Interface{Index: 1 + i, Name: fmt.Sprintf("Te0/0/0/%d", i), Role: "external", Speed: 10e9})
	}
	for i := range uint32(numCustIfs) {
		out = append(out, Interface{Index: 10 + i, Name: fmt.Sprintf("Te0/1/0/%d", i), Role: "internal", Speed: 10e9})
	}
	return append(out, Interface{Index: ifCore, Name: "Hu0/2/0/0", Role: "internal", Speed: 100e9})
}
