package signatures

import (
	"encoding/binary"

	"github.com/expr-lang/expr/ast"

	"github.com/flowhound/flowhound/flow"
)

// The index decides, from a flow's protocol, ports and TCP flags alone, which rules can
// match it. Most rules constrain those fields (proto == 17 && dst_port == 1434), so a flow
// runs the closures of a handful of candidates instead of the whole pack.
//
// Rather than recognising `==` and `in` patterns, the index evaluates: for each of four
// domains (protocol, destination port, source port, TCP flags) and each top-level
// conjunct, it works out the set of domain values the conjunct allows, by running the
// conjunct's own closure over every value when the conjunct reads only that domain's
// fields, and through && (intersection) and || (union) otherwise. Any condition on those
// fields is indexed this way (ranges, !=, port_class, flag()), and the index is exact by
// construction: a conjunct that reads only one domain is decided by the index and never
// runs per flow.

const (
	dProto = iota
	dDstPort
	dSrcPort
	dFlags
	numDomains
)

// notSent is the domain value of a protocol or TCP flags field the exporter did not send,
// so that "no flags" (a template without them) and "flags 0" (a null packet) differ.
const notSent = 256

type domain struct {
	uses uint64 // the field bits that belong to the domain
	size int
	set  func(r *flow.Record, v int)
}

var domains = [numDomains]domain{
	dProto: {uses: fProto | fHasProto, size: 257, set: func(r *flow.Record, v int) {
		if v != notSent {
			r.Has |= flow.HasProto
			r.Proto = uint8(v)
		}
	}},
	dDstPort: {uses: fDstPort, size: 1 << 16, set: func(r *flow.Record, v int) { r.DstPort = uint16(v) }},
	dSrcPort: {uses: fSrcPort, size: 1 << 16, set: func(r *flow.Record, v int) { r.SrcPort = uint16(v) }},
	dFlags: {uses: fTCPFlags | fHasTCPFlags, size: 257, set: func(r *flow.Record, v int) {
		if v != notSent {
			r.Has |= flow.HasTCPFlags
			r.TCPFlags = uint8(v)
		}
	}},
}

// bitset over a domain; nil means every value.
type bitset []uint64

func newBitset(n int) bitset    { return make(bitset, (n+63)/64) }
func (b bitset) has(v int) bool { return b == nil || b[v/64]&(1<<(v%64)) != 0 }
func (b bitset) add(v int)      { b[v/64] |= 1 << (v % 64) }
func emptySet(size int) bitset  { return newBitset(size) }
func intersect(a, b bitset) bitset {
	switch {
	case a == nil:
		return b
	case b == nil:
		return a
	}
	out := make(bitset, len(a))
	for i := range a {
		out[i] = a[i] & b[i]
	}
	return out
}

func union(a, b bitset) bitset {
	if a == nil || b == nil {
		return nil
	}
	out := make(bitset, len(a))
	for i := range a {
		out[i] = a[i] | b[i]
	}
	return out
}

// ruleIndex is what the analysis learns about one rule.
type ruleIndex struct {
	accept   [numDomains]bitset // nil: the rule accepts every value of the domain
	residual func(*flow.Record) bool
}

// analyze splits a match expression into what the index decides and the residual closure.
func analyze(c *compiler[flow.Record], root ast.Node) (ruleIndex, error) {
	var ix ruleIndex
	var rest []fn[flow.Record]
	for _, n := range conjuncts(root, nil) {
		v, err := c.compile(n)
		if err != nil {
			return ix, err
		}
		decided := false
		for d := range domains {
			s, err := need(c, n, d)
			if err != nil {
				return ix, err
			}
			ix.accept[d] = intersect(ix.accept[d], s)
			if v.uses&^domains[d].uses == 0 {
				decided = true // constants too: a false one empties every set above
			}
		}
		if !decided {
			rest = append(rest, v)
		}
	}
	if len(rest) > 0 {
		acc := rest[0]
		for _, v := range rest[1:] {
			acc = logic(true, acc, v)
		}
		ix.residual = acc.b
	}
	return ix, nil
}

// conjuncts flattens a top-level && chain.
func conjuncts(n ast.Node, out []ast.Node) []ast.Node {
	if b, ok := n.(*ast.BinaryNode); ok && (b.Operator == "&&" || b.Operator == "and") {
		out = conjuncts(b.Left, out)
		return conjuncts(b.Right, out)
	}
	return append(out, n)
}

// need returns the values of domain d that n allows (nil: all). It is sound: whenever n is
// true for a flow, the flow's value is in the set. It is exact when n reads only d.
func need(c *compiler[flow.Record], n ast.Node, d int) (bitset, error) {
	v, err := c.compile(n)
	if err != nil {
		return nil, err
	}
	dom := &domains[d]
	switch {
	case v.konst:
		if v.cb {
			return nil, nil
		}
		return emptySet(dom.size), nil
	case v.uses&^dom.uses == 0:
		s := newBitset(dom.size)
		r := new(flow.Record) // one record: the closure makes it escape
		for x := 0; x < dom.size; x++ {
			*r = flow.Record{}
			dom.set(r, x)
			if v.b(r) {
				s.add(x)
			}
		}
		return s, nil
	}
	if b, ok := n.(*ast.BinaryNode); ok {
		switch b.Operator {
		case "&&", "and", "||", "or":
			l, err := need(c, b.Left, d)
			if err != nil {
				return nil, err
			}
			r, err := need(c, b.Right, d)
			if err != nil {
				return nil, err
			}
			if b.Operator == "||" || b.Operator == "or" {
				return union(l, r), nil
			}
			return intersect(l, r), nil
		}
	}
	return nil, nil
}

// index holds the per-domain rule bitsets Match ANDs together. Protocol and flags have 257
// values and a row each. Ports have 65536 values but few distinct rows: each port maps to
// a row class through a two-level table (high byte, then low byte within a block), and
// since nearly all blocks are alike the whole thing stays a few kilobytes, in L1 beside
// the detector's state rather than 128 KiB per direction.
type index struct {
	words              int      // uint64 words per rule bitset
	proto, flags       []uint64 // 257 rows
	dstPorts, srcPorts portTable
}

type portTable struct {
	hi     [256]uint16 // high byte -> block
	blocks []uint16    // 256 classes per block
	rows   []uint64    // class -> rule bitset
}

// class returns the row class of a port.
func (p *portTable) class(port uint16) int {
	return int(p.blocks[int(p.hi[port>>8])<<8|int(port&0xff)])
}

func buildIndex(rs []ruleIndex) index {
	x := index{words: max((len(rs)+63)/64, 1)}
	x.proto = rows(rs, dProto, x.words)
	x.flags = rows(rs, dFlags, x.words)
	x.dstPorts = ports(rows(rs, dDstPort, x.words), x.words)
	x.srcPorts = ports(rows(rs, dSrcPort, x.words), x.words)
	return x
}

func ports(all []uint64, words int) portTable {
	var t portTable
	class, rows := classes(all, words)
	t.rows = rows
	ids := map[string]uint16{}
	key := make([]byte, 0, 512)
	for hi := range 256 {
		block := class[hi<<8 : hi<<8+256]
		key = key[:0]
		for _, c := range block {
			key = binary.LittleEndian.AppendUint16(key, c)
		}
		id, ok := ids[string(key)]
		if !ok {
			id = uint16(len(t.blocks) >> 8)
			ids[string(key)] = id
			t.blocks = append(t.blocks, block...)
		}
		t.hi[hi] = id
	}
	return t
}

// rows returns, for every value of domain d, the bitset of rules that accept it.
func rows(rs []ruleIndex, d, words int) []uint64 {
	size := domains[d].size
	out := make([]uint64, size*words)
	for i, ix := range rs {
		acc := ix.accept[d]
		for v := 0; v < size; v++ {
			if acc.has(v) {
				out[v*words+i/64] |= 1 << (i % 64)
			}
		}
	}
	return out
}

// classes interns identical rows: a port's row is then one small table lookup away.
func classes(all []uint64, words int) ([]uint16, []uint64) {
	n := len(all) / words
	class := make([]uint16, n)
	ids := map[string]uint16{}
	var out []uint64
	key := make([]byte, 0, 8*words)
	for v := range n {
		row := all[v*words : v*words+words]
		key = key[:0]
		for _, w := range row {
			key = binary.LittleEndian.AppendUint64(key, w)
		}
		id, ok := ids[string(key)]
		if !ok {
			id = uint16(len(out) / words)
			ids[string(key)] = id
			out = append(out, row...)
		}
		class[v] = id
	}
	return class, out
}
