package baseline

import (
	"encoding/binary"
	"net/netip"
	"sort"
)

// monPrefix is one configured monitored prefix.
type monPrefix struct {
	p       netip.Prefix
	network int       // index into Config.Networks
	full    int32     // profile index of its incoming key; the outgoing one is full+1
	base    uint32    // IPv4 start, for pages
	pages   []pageRef // per /24, IPv4 prefixes of at least maxDenseBits only
}

// chainRef points at the prefixes containing an address range, outermost first.
type chainRef struct {
	off, n uint32
	block  bool // the innermost prefix is shorter than a /24 (v4) or /64 (v6) block
}

type u128 struct{ hi, lo uint64 }

func (a u128) less(b u128) bool { return a.hi < b.hi || (a.hi == b.hi && a.lo < b.lo) }

func addrU128(a netip.Addr) u128 {
	b := a.As16()
	return u128{binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])}
}

// netTable answers "which monitored prefixes contain this address" with a binary search
// over disjoint ranges, each carrying its chain of nested prefixes. Configured prefixes
// are few and fixed, so the table is built once.
type netTable struct {
	v4lo, v4hi []uint32
	v4ch       []chainRef
	v6lo, v6hi []u128
	v6ch       []chainRef
	chains     []int32
	prefixes   []monPrefix
}

func (t *netTable) empty() bool { return len(t.prefixes) == 0 }

// lookup returns the chain of monitored prefixes holding a (outermost first) and whether
// a /24 or /64 block key applies below the innermost one.
func (t *netTable) lookup(a netip.Addr) ([]int32, bool) {
	if a.Is4() {
		b := a.As4()
		x := binary.BigEndian.Uint32(b[:])
		lo := t.v4lo
		i, j := 0, len(lo)
		for i < j {
			h := int(uint(i+j) >> 1)
			if lo[h] <= x {
				i = h + 1
			} else {
				j = h
			}
		}
		if i == 0 || x > t.v4hi[i-1] {
			return nil, false
		}
		c := t.v4ch[i-1]
		return t.chains[c.off : c.off+c.n], c.block
	}
	if !a.IsValid() || len(t.v6lo) == 0 {
		return nil, false
	}
	x := addrU128(a)
	lo := t.v6lo
	i, j := 0, len(lo)
	for i < j {
		h := int(uint(i+j) >> 1)
		if !x.less(lo[h]) {
			i = h + 1
		} else {
			j = h
		}
	}
	if i == 0 || t.v6hi[i-1].less(x) {
		return nil, false
	}
	c := t.v6ch[i-1]
	return t.chains[c.off : c.off+c.n], c.block
}

type span128 struct {
	lo, hi u128
	id     int32
	bits   int
}

// buildNetTable fills the ranges of t from t.prefixes, which must be masked, unmapped and
// free of duplicates.
func (t *netTable) build() {
	var v4, v6 []span128
	for i, mp := range t.prefixes {
		p := mp.p
		lo := addrU128(p.Addr())
		hostBits := 128 - p.Bits()
		if p.Addr().Is4() {
			hostBits = 32 - p.Bits()
		}
		hi := lo
		switch {
		case hostBits >= 64:
			hi.lo = ^uint64(0)
			hi.hi |= (uint64(1) << (hostBits - 64)) - 1
			if hostBits == 128 {
				hi.hi = ^uint64(0)
			}
		default:
			hi.lo |= (uint64(1) << hostBits) - 1
		}
		s := span128{lo, hi, int32(i), p.Bits()}
		if p.Addr().Is4() {
			v4 = append(v4, s)
		} else {
			v6 = append(v6, s)
		}
	}
	r4 := t.sweep(v4, 24)
	for _, r := range r4 {
		t.v4lo = append(t.v4lo, uint32(r.lo.lo))
		t.v4hi = append(t.v4hi, uint32(r.hi.lo))
		t.v4ch = append(t.v4ch, r.ch)
	}
	for _, r := range t.sweep(v6, 64) {
		t.v6lo = append(t.v6lo, r.lo)
		t.v6hi = append(t.v6hi, r.hi)
		t.v6ch = append(t.v6ch, r.ch)
	}
}

type rangeChain struct {
	lo, hi u128
	ch     chainRef
}

// sweep cuts nested prefixes into disjoint ranges. Prefixes either nest or do not
// overlap, so a stack ordered outermost first holds the chain at every point.
func (t *netTable) sweep(spans []span128, blockBits int) []rangeChain {
	if len(spans) == 0 {
		return nil
	}
	sort.Slice(spans, func(i, j int) bool {
		if spans[i].lo != spans[j].lo {
			return spans[i].lo.less(spans[j].lo)
		}
		return spans[i].bits < spans[j].bits
	})
	var points []u128
	for _, s := range spans {
		points = append(points, s.lo)
		if n := (u128{s.hi.hi, s.hi.lo + 1}); s.hi.lo != ^uint64(0) {
			points = append(points, n)
		} else if s.hi.hi != ^uint64(0) {
			points = append(points, u128{s.hi.hi + 1, 0})
		}
	}
	sort.Slice(points, func(i, j int) bool { return points[i].less(points[j]) })
	var out []rangeChain
	var stack []span128
	j := 0
	for pi, p := range points {
		if pi > 0 && points[pi-1] == p {
			continue
		}
		for len(stack) > 0 && stack[len(stack)-1].hi.less(p) {
			stack = stack[:len(stack)-1]
		}
		for j < len(spans) && spans[j].lo == p {
			stack = append(stack, spans[j])
			j++
		}
		if len(stack) == 0 {
			continue
		}
		hi := stack[len(stack)-1].hi
		for _, q := range points[pi+1:] {
			if q != p {
				prev := q
				if prev.lo == 0 {
					prev.hi--
				}
				prev.lo--
				if prev.less(hi) {
					hi = prev
				}
				break
			}
		}
		ref := chainRef{off: uint32(len(t.chains)), n: uint32(len(stack)), block: stack[len(stack)-1].bits < blockBits}
		for _, s := range stack {
			t.chains = append(t.chains, s.id)
		}
		out = append(out, rangeChain{p, hi, ref})
	}
	return out
}
