package baseline

import (
	"encoding/binary"
	"net/netip"
)

// Dense shortcuts for the keys most flows touch. A hash lookup in a table of a million hosts
// costs three dependent cache misses (slot, key, counters); these arrays cost one or two,
// and spare the hashing. They only cache indices: the hash tables stay the truth, and
// newFull/newCompact/evict keep the arrays in step.

// hostPage holds, for one /24 of a monitored IPv4 prefix, the index of each host per
// direction (0 in, 1 out); -1 where there is none.
type hostPage struct {
	host [2][256]int32
}

// pageRef is the entry of a /24 in its prefix's page table. The block profile's index sits
// here rather than in the page, so that keying a flow's block reads the small, cache-hot
// table instead of another line of a page.
type pageRef struct {
	pg    *hostPage
	block [2]int32 // -1 where there is none
}

func newHostPage() *hostPage {
	p := &hostPage{}
	for d := range p.host {
		for i := range p.host[d] {
			p.host[d][i] = -1
		}
	}
	return p
}

// maxDenseBits is the shortest IPv4 prefix that gets a page table (a /8 needs 65,536
// page pointers).
const maxDenseBits = 8

// maxDenseIf bounds the interface indices cached per exporter.
const maxDenseIf = 1 << 16

func dirSlot(d Direction) int {
	if d == DirOut {
		return 1
	}
	return 0
}

func addr4(a netip.Addr) uint32 {
	b := a.As4()
	return binary.BigEndian.Uint32(b[:])
}

// initDense sets up page tables for the monitored IPv4 prefixes and the port arrays.
func (b *Baselines) initDense() {
	for i := range b.nets.prefixes {
		mp := &b.nets.prefixes[i]
		if mp.p.Addr().Is4() && mp.p.Bits() >= maxDenseBits {
			mp.base = addr4(mp.p.Addr())
			mp.pages = make([]pageRef, 1<<max(0, 24-mp.p.Bits()))
			for j := range mp.pages {
				mp.pages[j].block = [2]int32{-1, -1}
			}
		}
	}
	for d := range b.portsOther {
		for i := range b.portsOther[d] {
			b.portsOther[d][i] = -1
		}
	}
	b.exps = map[netip.Addr]*expIfs{}
}

// pageRef returns the page table entry of a monitored IPv4 address whose prefix chain is
// chain; nil where no page table applies.
func (b *Baselines) pageRef(a netip.Addr, chain []int32) *pageRef {
	if len(chain) == 0 || !a.Is4() {
		return nil
	}
	mp := &b.nets.prefixes[chain[len(chain)-1]]
	if mp.pages == nil {
		return nil
	}
	return &mp.pages[(addr4(a)-mp.base)>>8]
}

// denseSlot returns where the dense arrays cache the index of k, creating room if asked;
// nil for keys without a dense cache.
func (b *Baselines) denseSlot(k Key, create bool) *int32 {
	switch k.Kind {
	case KindHost:
		if b.nets.empty() || !k.Addr.Is4() {
			return nil
		}
		ch, _ := b.nets.lookup(k.Addr)
		if ref := b.pageRef(k.Addr, ch); ref != nil {
			if ref.pg == nil {
				if !create {
					return nil
				}
				ref.pg = newHostPage()
			}
			return &ref.pg.host[dirSlot(k.Dir)][addr4(k.Addr)&0xff]
		}
	case KindPrefix:
		if k.Bits != 24 || !k.Addr.Is4() {
			return nil
		}
		ch, block := b.nets.lookup(k.Addr)
		if !block {
			return nil // a configured /24, not a block
		}
		if ref := b.pageRef(k.Addr, ch); ref != nil {
			return &ref.block[dirSlot(k.Dir)]
		}
	case KindInterface:
		if k.Index >= maxDenseIf {
			return nil
		}
		e := b.exps[k.Addr]
		if e == nil {
			if !create {
				return nil
			}
			e = &expIfs{}
			b.exps[k.Addr] = e
		}
		s := &e.idx[dirSlot(k.Dir)]
		if int(k.Index) >= len(*s) {
			if !create {
				return nil
			}
			n := max(int(k.Index)+1, 2*len(*s), 64)
			n = min(n, maxDenseIf)
			grown := make([]int32, n)
			copy(grown, *s)
			for i := len(*s); i < n; i++ {
				grown[i] = -1
			}
			*s = grown
		}
		return &(*s)[k.Index]
	case KindPort:
		if k.Dir > DirInternal {
			return nil
		}
		ps := protoSlot(k.Proto)
		if ps < 0 {
			return &b.portsOther[k.Dir][k.Proto]
		}
		s := &b.ports[k.Dir][ps]
		if *s == nil {
			if !create {
				return nil
			}
			*s = make([]int32, 1<<16)
			for i := range *s {
				(*s)[i] = -1
			}
		}
		return &(*s)[k.Index&0xffff]
	}
	return nil
}

func protoSlot(p uint8) int {
	switch p {
	case 6:
		return 0
	case 17:
		return 1
	case 132:
		return 2
	}
	return -1
}

// expIfs caches the interface profiles of one exporter by direction slot and ifIndex.
type expIfs struct {
	idx [2][]int32
}

// interfaceIdx returns the cached profile index of an exporter's interface, or -1.
func (b *Baselines) interfaceIdx(exp netip.Addr, ifIndex uint32, d int) int32 {
	e := b.lastExp
	if exp != b.lastExpAddr || e == nil {
		e = b.exps[exp]
		if e == nil {
			return -1
		}
		b.lastExp, b.lastExpAddr = e, exp
	}
	if s := e.idx[d]; int(ifIndex) < len(s) {
		return s[ifIndex]
	}
	return -1
}

// portIdx returns the cached index of a port key, or -1.
// portRef is where portIdx reads a dense port's index, nil for other protocols.
func (b *Baselines) portRef(proto uint8, port uint16, d Direction) *int32 {
	if ps := protoSlot(proto); ps >= 0 {
		if s := b.ports[d][ps]; s != nil {
			return &s[port]
		}
	}
	return nil
}

func (b *Baselines) portIdx(proto uint8, port uint16, d Direction) int32 {
	ps := protoSlot(proto)
	if ps < 0 {
		return b.portsOther[d][proto]
	}
	if s := b.ports[d][ps]; s != nil {
		return s[port]
	}
	return -1
}
