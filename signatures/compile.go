package signatures

import (
	"cmp"
	"fmt"
	"math"
	"net/netip"
	"slices"

	"github.com/expr-lang/expr/ast"
)

// The closure compiler turns an expression that expr-lang has parsed and type-checked into
// typed Go closures over the environment T (flow.Record for match, Aggregates for
// thresholds). expr stays the single source of syntax, types and error positions; the
// closures are what runs per flow, at a few nanoseconds per node and no allocation, where
// expr's VM costs hundreds of nanoseconds and allocates (notes/libraries.md §1).
//
// Every construct compiled here must give exactly the result expr's VM gives on the same
// input; signatures_test checks that on random flows. Constructs that cannot be made fast
// or exact (strings from addresses, regexes, collections) are refused with a position.

type kind uint8

const (
	kBool kind = iota + 1
	kInt
	kFloat
	kStr
	kAddr
)

func (k kind) String() string {
	switch k {
	case kBool:
		return "bool"
	case kInt:
		return "int"
	case kFloat:
		return "float"
	case kStr:
		return "string"
	case kAddr:
		return "address"
	}
	return "?"
}

// fn is a compiled (sub)expression: one of the closures, chosen by k.
type fn[T any] struct {
	k    kind
	b    func(*T) bool
	i    func(*T) int64
	f    func(*T) float64
	s    func(*T) string
	a    func(*T) netip.Addr
	uses uint64 // field bits read; 0 means the value is a constant

	konst bool
	cb    bool
	ci    int64
	cf    float64
	cs    string
	ca    netip.Addr
}

type fieldTable[T any] map[string]fn[T]

func intField[T any](bit uint64, f func(*T) int64) fn[T] { return fn[T]{k: kInt, i: f, uses: bit} }
func floatField[T any](bit uint64, f func(*T) float64) fn[T] {
	return fn[T]{k: kFloat, f: f, uses: bit}
}
func boolField[T any](bit uint64, f func(*T) bool) fn[T] { return fn[T]{k: kBool, b: f, uses: bit} }
func addrField[T any](bit uint64, f func(*T) netip.Addr) fn[T] {
	return fn[T]{k: kAddr, a: f, uses: bit}
}

func constBool[T any](v bool) fn[T] {
	return fn[T]{k: kBool, konst: true, cb: v, b: func(*T) bool { return v }}
}
func constInt[T any](v int64) fn[T] {
	return fn[T]{k: kInt, konst: true, ci: v, i: func(*T) int64 { return v }}
}
func constFloat[T any](v float64) fn[T] {
	return fn[T]{k: kFloat, konst: true, cf: v, f: func(*T) float64 { return v }}
}
func constStr[T any](v string) fn[T] {
	return fn[T]{k: kStr, konst: true, cs: v, s: func(*T) string { return v }}
}
func constAddr[T any](v netip.Addr) fn[T] {
	return fn[T]{k: kAddr, konst: true, ca: v, a: func(*T) netip.Addr { return v }}
}

// fold evaluates a value that reads no field once, at compile time. Only field accessors
// dereference the environment, so calling with nil is safe when uses is 0.
func fold[T any](v fn[T]) fn[T] {
	if v.konst || v.uses != 0 {
		return v
	}
	switch v.k {
	case kBool:
		return constBool[T](v.b(nil))
	case kInt:
		return constInt[T](v.i(nil))
	case kFloat:
		return constFloat[T](v.f(nil))
	case kStr:
		return constStr[T](v.s(nil))
	case kAddr:
		return constAddr[T](v.a(nil))
	}
	return v
}

// posError is a compile error at a rune offset of the expression source.
type posError struct {
	off int
	msg string
}

func (e *posError) Error() string { return e.msg }

func errAt(n ast.Node, format string, args ...any) error {
	return &posError{off: n.Location().From, msg: fmt.Sprintf(format, args...)}
}

type compiler[T any] struct {
	fields fieldTable[T]
	// member resolves obj.prop (limits.syn_pps); nil when the environment has no members.
	member func(n *ast.MemberNode, obj, prop string) (fn[T], error)
	// fast, if set, may turn a severity comparison (metric against limit) into a faster node.
	fast func(node *sevNode, metric, limit ast.Node, lim fn[T], orEqual bool)
	// done remembers compiled nodes: the index and the severity tree compile subtrees
	// again, which would be quadratic in a long chain of || without it.
	done map[ast.Node]fn[T]
}

func (c *compiler[T]) compile(n ast.Node) (fn[T], error) {
	if v, ok := c.done[n]; ok {
		return v, nil
	}
	v, err := c.node(n)
	if err != nil {
		return v, err
	}
	v = fold(v)
	if c.done == nil {
		c.done = map[ast.Node]fn[T]{}
	}
	c.done[n] = v
	return v, nil
}

func (c *compiler[T]) node(n ast.Node) (fn[T], error) {
	switch n := n.(type) {
	case *ast.IdentifierNode:
		if f, ok := c.fields[n.Value]; ok {
			return f, nil
		}
		if _, ok := helperNames[n.Value]; ok {
			return fn[T]{}, errAt(n, "%s is a function: call it as %s(...)", n.Value, n.Value)
		}
		return fn[T]{}, errAt(n, "unknown name %s", n.Value)
	case *ast.IntegerNode:
		return constInt[T](int64(n.Value)), nil
	case *ast.FloatNode:
		return constFloat[T](n.Value), nil
	case *ast.BoolNode:
		return constBool[T](n.Value), nil
	case *ast.StringNode:
		return constStr[T](n.Value), nil
	case *ast.ConstantNode:
		switch v := n.Value.(type) {
		case bool:
			return constBool[T](v), nil
		case int:
			return constInt[T](int64(v)), nil
		case float64:
			return constFloat[T](v), nil
		case string:
			return constStr[T](v), nil
		}
	case *ast.UnaryNode:
		return c.unary(n)
	case *ast.BinaryNode:
		return c.binary(n)
	case *ast.MemberNode:
		obj, ok1 := n.Node.(*ast.IdentifierNode)
		prop, ok2 := n.Property.(*ast.StringNode)
		if ok1 && ok2 && c.member != nil {
			return c.member(n, obj.Value, prop.Value)
		}
		return fn[T]{}, errAt(n, "%s: member access is not supported here", n.String())
	case *ast.ChainNode:
		return c.node(n.Node)
	case *ast.CallNode:
		id, ok := n.Callee.(*ast.IdentifierNode)
		if !ok {
			return fn[T]{}, errAt(n, "%s: only the helper functions can be called", n.String())
		}
		return c.call(n, id.Value, n.Arguments)
	case *ast.BuiltinNode:
		return c.builtin(n)
	case *ast.ConditionalNode:
		return c.conditional(n)
	}
	return fn[T]{}, errAt(n, "%s is not supported in rules", describeNode(n))
}

func describeNode(n ast.Node) string {
	switch n.(type) {
	case *ast.ArrayNode:
		return "a list outside `in`"
	case *ast.MapNode:
		return "a map"
	case *ast.NilNode:
		return "nil"
	case *ast.PredicateNode, *ast.PointerNode:
		return "a predicate"
	case *ast.VariableDeclaratorNode:
		return "let"
	case *ast.SequenceNode:
		return "a sequence (;)"
	case *ast.SliceNode:
		return "slicing"
	}
	return fmt.Sprintf("%q", n.String())
}

func (c *compiler[T]) unary(n *ast.UnaryNode) (fn[T], error) {
	x, err := c.compile(n.Node)
	if err != nil {
		return x, err
	}
	switch n.Operator {
	case "!", "not":
		if x.k != kBool {
			return x, errAt(n, "%s needs a bool, got %s", n.Operator, x.k)
		}
		xb := x.b
		return fold(fn[T]{k: kBool, uses: x.uses, b: func(t *T) bool { return !xb(t) }}), nil
	case "-":
		switch x.k {
		case kInt:
			xi := x.i
			return fold(fn[T]{k: kInt, uses: x.uses, i: func(t *T) int64 { return -xi(t) }}), nil
		case kFloat:
			xf := x.f
			return fold(fn[T]{k: kFloat, uses: x.uses, f: func(t *T) float64 { return -xf(t) }}), nil
		}
	case "+":
		if x.k == kInt || x.k == kFloat {
			return x, nil
		}
	}
	return x, errAt(n, "operator %s is not supported on %s", n.Operator, x.k)
}

func (c *compiler[T]) binary(n *ast.BinaryNode) (fn[T], error) {
	if n.Operator == "in" {
		return c.in(n)
	}
	l, err := c.compile(n.Left)
	if err != nil {
		return l, err
	}
	r, err := c.compile(n.Right)
	if err != nil {
		return r, err
	}
	uses := l.uses | r.uses
	switch n.Operator {
	case "&&", "and", "||", "or":
		if l.k != kBool || r.k != kBool {
			return l, errAt(n, "%s needs bools, got %s and %s", n.Operator, l.k, r.k)
		}
		return logic(n.Operator == "&&" || n.Operator == "and", l, r), nil
	case "==", "!=":
		v, err := c.equal(n, l, r)
		if err != nil || n.Operator == "==" {
			return v, err
		}
		vb := v.b
		return fold(fn[T]{k: kBool, uses: v.uses, b: func(t *T) bool { return !vb(t) }}), nil
	case "<", "<=", ">", ">=":
		switch {
		case l.k == kInt && r.k == kInt:
			return fold(fn[T]{k: kBool, uses: uses, b: compare(n.Operator, l.i, r.i, l.konst, l.ci, r.konst, r.ci)}), nil
		case isNum(l.k) && isNum(r.k):
			lf, rf := toFloat(l), toFloat(r)
			return fold(fn[T]{k: kBool, uses: uses, b: compare(n.Operator, lf.f, rf.f, lf.konst, lf.cf, rf.konst, rf.cf)}), nil
		case l.k == kStr && r.k == kStr:
			return fold(fn[T]{k: kBool, uses: uses, b: compare(n.Operator, l.s, r.s, l.konst, l.cs, r.konst, r.cs)}), nil
		case l.k == kAddr || r.k == kAddr:
			return l, errAt(n, "addresses cannot be ordered with %s: use in_net(addr, \"192.0.2.0/24\")", n.Operator)
		}
	case "+", "-", "*":
		switch {
		case l.k == kInt && r.k == kInt:
			return fold(fn[T]{k: kInt, uses: uses, i: arith(n.Operator, l.i, r.i, l.konst, l.ci, r.konst, r.ci)}), nil
		case isNum(l.k) && isNum(r.k):
			lf, rf := toFloat(l), toFloat(r)
			return fold(fn[T]{k: kFloat, uses: uses, f: arith(n.Operator, lf.f, rf.f, lf.konst, lf.cf, rf.konst, rf.cf)}), nil
		}
	case "/":
		if isNum(l.k) && isNum(r.k) {
			lf, rf := toFloat(l).f, toFloat(r).f
			return fold(fn[T]{k: kFloat, uses: uses, f: func(t *T) float64 { return lf(t) / rf(t) }}), nil
		}
	case "%":
		if l.k == kInt && r.k == kInt {
			if r.konst && r.ci == 0 {
				return l, errAt(n, "integer divide by zero")
			}
			li, ri := l.i, r.i
			// expr fails the whole evaluation on a zero divisor; a rule must not fail per
			// flow, so x % 0 is 0 here (a divergence only where expr has no result at all).
			return fold(fn[T]{k: kInt, uses: uses, i: func(t *T) int64 {
				d := ri(t)
				if d == 0 {
					return 0
				}
				return li(t) % d
			}}), nil
		}
	case "**", "^":
		if isNum(l.k) && isNum(r.k) {
			lf, rf := toFloat(l).f, toFloat(r).f
			return fold(fn[T]{k: kFloat, uses: uses, f: func(t *T) float64 { return math.Pow(lf(t), rf(t)) }}), nil
		}
	case "matches", "contains", "startsWith", "endsWith":
		if l.k == kAddr {
			return l, errAt(n, "%s on an address is not supported: use in_net(addr, \"192.0.2.0/24\")", n.Operator)
		}
		return l, errAt(n, "operator %s is not supported in rules", n.Operator)
	default:
		return l, errAt(n, "operator %s is not supported in rules", n.Operator)
	}
	return l, errAt(n, "invalid operation: %s on %s and %s", n.Operator, l.k, r.k)
}

func isNum(k kind) bool { return k == kInt || k == kFloat }

func toFloat[T any](v fn[T]) fn[T] {
	if v.k == kFloat {
		return v
	}
	if v.konst {
		return constFloat[T](float64(v.ci))
	}
	vi := v.i
	return fn[T]{k: kFloat, uses: v.uses, f: func(t *T) float64 { return float64(vi(t)) }}
}

func logic[T any](and bool, l, r fn[T]) fn[T] {
	// Constants fold away; expressions have no side effects, so order does not matter.
	if l.konst {
		if l.cb != and {
			return constBool[T](!and)
		}
		return r
	}
	if r.konst {
		if r.cb != and {
			return constBool[T](!and)
		}
		return l
	}
	lb, rb := l.b, r.b
	if and {
		return fn[T]{k: kBool, uses: l.uses | r.uses, b: func(t *T) bool { return lb(t) && rb(t) }}
	}
	return fn[T]{k: kBool, uses: l.uses | r.uses, b: func(t *T) bool { return lb(t) || rb(t) }}
}

func (c *compiler[T]) equal(n *ast.BinaryNode, l, r fn[T]) (fn[T], error) {
	uses := l.uses | r.uses
	switch {
	case l.k == kInt && r.k == kInt:
		return fold(fn[T]{k: kBool, uses: uses, b: compare("==", l.i, r.i, l.konst, l.ci, r.konst, r.ci)}), nil
	case isNum(l.k) && isNum(r.k):
		lf, rf := toFloat(l), toFloat(r)
		return fold(fn[T]{k: kBool, uses: uses, b: compare("==", lf.f, rf.f, lf.konst, lf.cf, rf.konst, rf.cf)}), nil
	case l.k == kStr && r.k == kStr:
		return fold(fn[T]{k: kBool, uses: uses, b: compare("==", l.s, r.s, l.konst, l.cs, r.konst, r.cs)}), nil
	case l.k == kBool && r.k == kBool:
		lb, rb := l.b, r.b
		return fold(fn[T]{k: kBool, uses: uses, b: func(t *T) bool { return lb(t) == rb(t) }}), nil
	case l.k == kAddr || r.k == kAddr:
		if r.k != kAddr {
			l, r = r, l
		}
		// r is an address; l is an address or a constant naming one.
		if l.k == kStr {
			if !l.konst {
				return l, errAt(n, "an address can only be compared with an address or a constant such as \"192.0.2.1\"")
			}
			a, err := parseAddr(l.cs)
			if err != nil {
				return l, errAt(n, "%v", err)
			}
			l = constAddr[T](a)
		}
		if l.k != kAddr {
			return l, errAt(n, "cannot compare an address with %s", l.k)
		}
		ra := r.a
		if l.konst {
			ca := l.ca
			return fold(fn[T]{k: kBool, uses: uses, b: func(t *T) bool { return ra(t) == ca }}), nil
		}
		la := l.a
		return fold(fn[T]{k: kBool, uses: uses, b: func(t *T) bool { return la(t) == ra(t) }}), nil
	}
	return l, errAt(n, "invalid operation: %s between %s and %s", n.Operator, l.k, r.k)
}

// parseAddr reads an address constant; "" stands for a missing address, as in the
// environment where a missing address is the empty string.
func parseAddr(s string) (netip.Addr, error) {
	if s == "" {
		return netip.Addr{}, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return a, fmt.Errorf("%q is not an IP address", s)
	}
	return a, nil
}

// compare builds a comparison closure, with the constant side (if any) captured as a value
// rather than called: the common `field op constant` costs one closure call.
func compare[T any, V cmp.Ordered](op string, l, r func(*T) V, lk bool, lc V, rk bool, rc V) func(*T) bool {
	if lk && !rk {
		// c op x  ==  x op' c
		switch op {
		case "<":
			op = ">"
		case "<=":
			op = ">="
		case ">":
			op = "<"
		case ">=":
			op = "<="
		}
		l, r, lk, rk, lc, rc = r, l, rk, lk, rc, lc
	}
	if rk {
		c := rc
		switch op {
		case "==":
			return func(t *T) bool { return l(t) == c }
		case "<":
			return func(t *T) bool { return l(t) < c }
		case "<=":
			return func(t *T) bool { return l(t) <= c }
		case ">":
			return func(t *T) bool { return l(t) > c }
		case ">=":
			return func(t *T) bool { return l(t) >= c }
		}
	}
	switch op {
	case "==":
		return func(t *T) bool { return l(t) == r(t) }
	case "<":
		return func(t *T) bool { return l(t) < r(t) }
	case "<=":
		return func(t *T) bool { return l(t) <= r(t) }
	case ">":
		return func(t *T) bool { return l(t) > r(t) }
	case ">=":
		return func(t *T) bool { return l(t) >= r(t) }
	}
	panic("signatures: bad comparison " + op)
}

func arith[T any, V int64 | float64](op string, l, r func(*T) V, lk bool, lc V, rk bool, rc V) func(*T) V {
	switch {
	case rk:
		c := rc
		switch op {
		case "+":
			return func(t *T) V { return l(t) + c }
		case "-":
			return func(t *T) V { return l(t) - c }
		case "*":
			return func(t *T) V { return l(t) * c }
		}
	case lk:
		c := lc
		switch op {
		case "+":
			return func(t *T) V { return c + r(t) }
		case "-":
			return func(t *T) V { return c - r(t) }
		case "*":
			return func(t *T) V { return c * r(t) }
		}
	}
	switch op {
	case "+":
		return func(t *T) V { return l(t) + r(t) }
	case "-":
		return func(t *T) V { return l(t) - r(t) }
	case "*":
		return func(t *T) V { return l(t) * r(t) }
	}
	panic("signatures: bad arithmetic " + op)
}

// in compiles `x in [constants]` and `x in a..b`, the only forms a rule needs; the list is
// turned into a set once, here.
func (c *compiler[T]) in(n *ast.BinaryNode) (fn[T], error) {
	x, err := c.compile(n.Left)
	if err != nil {
		return x, err
	}
	if rng, ok := n.Right.(*ast.BinaryNode); ok && rng.Operator == ".." {
		lo, err1 := c.compile(rng.Left)
		hi, err2 := c.compile(rng.Right)
		if err1 != nil || err2 != nil || !lo.konst || !hi.konst || lo.k != kInt || hi.k != kInt {
			return x, errAt(rng, "a range in `in` needs constant integer bounds, as in 1..1023")
		}
		a, b := lo.ci, hi.ci
		switch x.k {
		case kInt:
			xi := x.i
			return fold(fn[T]{k: kBool, uses: x.uses, b: func(t *T) bool { v := xi(t); return v >= a && v <= b }}), nil
		case kFloat:
			// expr expands the range to integers and compares each: only whole values match.
			xf, fa, fb := x.f, float64(a), float64(b)
			return fold(fn[T]{k: kBool, uses: x.uses, b: func(t *T) bool {
				v := xf(t)
				return v >= fa && v <= fb && v == math.Trunc(v)
			}}), nil
		}
		return x, errAt(n, "a range holds integers, not %s values", x.k)
	}
	arr, ok := n.Right.(*ast.ArrayNode)
	if !ok {
		return x, errAt(n, "in needs a constant list such as [53, 123] or a range such as 1..1023")
	}
	elems := make([]fn[T], 0, len(arr.Nodes))
	for _, e := range arr.Nodes {
		v, err := c.compile(e)
		if err != nil {
			return v, err
		}
		if !v.konst {
			return v, errAt(e, "list elements in `in` must be constants")
		}
		elems = append(elems, v)
	}
	switch x.k {
	case kInt:
		var ints []int64
		var floats []float64
		for _, e := range elems {
			switch e.k {
			case kInt:
				ints = append(ints, e.ci)
			case kFloat:
				floats = append(floats, e.cf)
			}
		}
		if len(floats) > 0 {
			for _, v := range ints {
				floats = append(floats, float64(v))
			}
			xf := toFloat(x).f
			return fold(fn[T]{k: kBool, uses: x.uses, b: floatSet(xf, floats)}), nil
		}
		return fold(fn[T]{k: kBool, uses: x.uses, b: intSet(x.i, ints)}), nil
	case kFloat:
		var floats []float64
		for _, e := range elems {
			if isNum(e.k) {
				floats = append(floats, toFloat(e).cf)
			}
		}
		return fold(fn[T]{k: kBool, uses: x.uses, b: floatSet(x.f, floats)}), nil
	case kStr:
		var strs []string
		for _, e := range elems {
			if e.k == kStr {
				strs = append(strs, e.cs)
			}
		}
		xs := x.s
		return fold(fn[T]{k: kBool, uses: x.uses, b: func(t *T) bool { return slices.Contains(strs, xs(t)) }}), nil
	case kAddr:
		var addrs []netip.Addr
		for i, e := range elems {
			if e.k != kStr {
				return x, errAt(arr.Nodes[i], "an address list holds strings such as \"192.0.2.1\"")
			}
			a, err := parseAddr(e.cs)
			if err != nil {
				return x, errAt(arr.Nodes[i], "%v", err)
			}
			addrs = append(addrs, a)
		}
		xa := x.a
		return fold(fn[T]{k: kBool, uses: x.uses, b: func(t *T) bool { return slices.Contains(addrs, xa(t)) }}), nil
	case kBool:
		var hasT, hasF bool
		for _, e := range elems {
			if e.k == kBool {
				hasT = hasT || e.cb
				hasF = hasF || !e.cb
			}
		}
		xb := x.b
		return fold(fn[T]{k: kBool, uses: x.uses, b: func(t *T) bool {
			if xb(t) {
				return hasT
			}
			return hasF
		}}), nil
	}
	return x, errAt(n, "in is not supported on %s", x.k)
}

// intSet returns a membership test: a bitmap when the values are small non-negative
// numbers (ports, protocols), else a sorted slice.
func intSet[T any](x func(*T) int64, vals []int64) func(*T) bool {
	slices.Sort(vals)
	vals = slices.Compact(vals)
	switch {
	case len(vals) == 0:
		return func(*T) bool { return false }
	case len(vals) == 1:
		c := vals[0]
		return func(t *T) bool { return x(t) == c }
	case vals[0] >= 0 && vals[len(vals)-1] < 1<<16:
		bm := make([]uint64, vals[len(vals)-1]/64+1)
		for _, v := range vals {
			bm[v/64] |= 1 << (v % 64)
		}
		return func(t *T) bool {
			v := x(t)
			return uint64(v) < uint64(len(bm))*64 && bm[v/64]&(1<<(v%64)) != 0
		}
	}
	return func(t *T) bool { _, ok := slices.BinarySearch(vals, x(t)); return ok }
}

func floatSet[T any](x func(*T) float64, vals []float64) func(*T) bool {
	vals = slices.DeleteFunc(vals, math.IsNaN) // NaN equals nothing
	slices.Sort(vals)
	vals = slices.Compact(vals)
	return func(t *T) bool { _, ok := slices.BinarySearch(vals, x(t)); return ok }
}

func (c *compiler[T]) conditional(n *ast.ConditionalNode) (fn[T], error) {
	cond, err := c.compile(n.Cond)
	if err != nil {
		return cond, err
	}
	if cond.k != kBool {
		return cond, errAt(n.Cond, "a condition must be a bool, got %s", cond.k)
	}
	a, err := c.compile(n.Exp1)
	if err != nil {
		return a, err
	}
	b, err := c.compile(n.Exp2)
	if err != nil {
		return b, err
	}
	uses := cond.uses | a.uses | b.uses
	cb := cond.b
	if a.k != b.k {
		// expr keeps each branch's own type; only a bool or a comparison can use the
		// result without caring, so mixed branches are refused rather than guessed.
		return a, errAt(n, "both branches of ?: must have the same type, got %s and %s", a.k, b.k)
	}
	switch a.k {
	case kBool:
		x, y := a.b, b.b
		return fold(fn[T]{k: kBool, uses: uses, b: func(t *T) bool {
			if cb(t) {
				return x(t)
			}
			return y(t)
		}}), nil
	case kInt:
		x, y := a.i, b.i
		return fold(fn[T]{k: kInt, uses: uses, i: func(t *T) int64 {
			if cb(t) {
				return x(t)
			}
			return y(t)
		}}), nil
	case kFloat:
		x, y := a.f, b.f
		return fold(fn[T]{k: kFloat, uses: uses, f: func(t *T) float64 {
			if cb(t) {
				return x(t)
			}
			return y(t)
		}}), nil
	case kStr:
		x, y := a.s, b.s
		return fold(fn[T]{k: kStr, uses: uses, s: func(t *T) string {
			if cb(t) {
				return x(t)
			}
			return y(t)
		}}), nil
	}
	return a, errAt(n, "?: on %s values is not supported", a.k)
}

// call compiles the flowhound helpers. Their string arguments (CIDRs, flag letters) must be
// constants: they are parsed here, once, never per flow.
func (c *compiler[T]) call(n *ast.CallNode, name string, args []ast.Node) (fn[T], error) {
	if _, ok := helperNames[name]; !ok {
		return fn[T]{}, errAt(n, "unknown function %s", name)
	}
	vals := make([]fn[T], len(args))
	var uses uint64
	for i, a := range args {
		v, err := c.compile(a)
		if err != nil {
			return v, err
		}
		vals[i] = v
		uses |= v.uses
	}
	constStrArg := func(i int, what string) (string, error) {
		if i >= len(vals) || vals[i].k != kStr || !vals[i].konst {
			return "", errAt(n, "%s: the %s must be a constant string", name, what)
		}
		return vals[i].cs, nil
	}
	want := func(count int) error {
		if len(vals) != count {
			return errAt(n, "%s takes %d arguments, got %d", name, count, len(vals))
		}
		return nil
	}
	switch name {
	case "in_net":
		if err := want(2); err != nil {
			return fn[T]{}, err
		}
		if vals[0].k != kAddr {
			return fn[T]{}, errAt(args[0], "in_net: the first argument must be an address (src_addr, dst_addr, next_hop, exporter)")
		}
		cidr, err := constStrArg(1, "prefix")
		if err != nil {
			return fn[T]{}, err
		}
		p, err := parsePrefix(cidr)
		if err != nil {
			return fn[T]{}, errAt(args[1], "in_net: %v", err)
		}
		xa := vals[0].a
		return fold(fn[T]{k: kBool, uses: uses, b: func(t *T) bool { return p.Contains(xa(t)) }}), nil
	case "flag", "only_flags":
		if err := want(2); err != nil {
			return fn[T]{}, err
		}
		if vals[0].k != kInt {
			return fn[T]{}, errAt(args[0], "%s: the first argument must be an integer (tcp_flags)", name)
		}
		letters, err := constStrArg(1, "flag letters")
		if err != nil {
			return fn[T]{}, err
		}
		xi := vals[0].i
		if name == "flag" {
			m, err := flagMask(letters, flagLetters)
			if err != nil {
				return fn[T]{}, errAt(args[1], "flag: %v", err)
			}
			if m == 0 {
				return fn[T]{}, errAt(args[1], "flag: no flag letters given (use only_flags(tcp_flags, \"\") for none)")
			}
			mask := int64(m)
			return fold(fn[T]{k: kBool, uses: uses, b: func(t *T) bool { return xi(t)&mask == mask }}), nil
		}
		m, err := flagMask(letters, onlyFlagLetters)
		if err != nil {
			return fn[T]{}, errAt(args[1], "only_flags: %v", err)
		}
		want := int64(m)
		return fold(fn[T]{k: kBool, uses: uses, b: func(t *T) bool { return xi(t)&onlyFlagsMask == want }}), nil
	case "port_class":
		if err := want(1); err != nil {
			return fn[T]{}, err
		}
		if vals[0].k != kInt {
			return fn[T]{}, errAt(args[0], "port_class: the argument must be an integer (a port)")
		}
		xi := vals[0].i
		return fold(fn[T]{k: kStr, uses: uses, s: func(t *T) string { return portClass(xi(t)) }}), nil
	}
	return fn[T]{}, errAt(n, "unknown function %s", name)
}

// builtin compiles the numeric expr builtins a rule can use.
func (c *compiler[T]) builtin(n *ast.BuiltinNode) (fn[T], error) {
	vals := make([]fn[T], len(n.Arguments))
	var uses uint64
	for i, a := range n.Arguments {
		v, err := c.compile(a)
		if err != nil {
			return v, err
		}
		vals[i] = v
		uses |= v.uses
	}
	ints := func(count int) error {
		if len(vals) != count {
			return errAt(n, "%s takes %d arguments, got %d", n.Name, count, len(vals))
		}
		for i, v := range vals {
			if v.k != kInt {
				return errAt(n.Arguments[i], "%s needs integers, got %s", n.Name, v.k)
			}
		}
		return nil
	}
	one := func() error {
		if len(vals) != 1 || !isNum(vals[0].k) {
			return errAt(n, "%s takes one number", n.Name)
		}
		return nil
	}
	switch n.Name {
	case "bitand", "bitor", "bitxor", "bitnand", "bitshl", "bitshr", "bitushr":
		if err := ints(2); err != nil {
			return fn[T]{}, err
		}
		return fold(fn[T]{k: kInt, uses: uses, i: bitOp(n.Name, vals[0].i, vals[1].i)}), nil
	case "bitnot":
		if err := ints(1); err != nil {
			return fn[T]{}, err
		}
		x := vals[0].i
		return fold(fn[T]{k: kInt, uses: uses, i: func(t *T) int64 { return ^x(t) }}), nil
	case "abs":
		if err := one(); err != nil {
			return fn[T]{}, err
		}
		if vals[0].k == kInt {
			x := vals[0].i
			return fold(fn[T]{k: kInt, uses: uses, i: func(t *T) int64 {
				if v := x(t); v < 0 {
					return -v
				} else {
					return v
				}
			}}), nil
		}
		x := vals[0].f
		return fold(fn[T]{k: kFloat, uses: uses, f: func(t *T) float64 {
			if v := x(t); v < 0 {
				return -v
			} else {
				return v
			}
		}}), nil
	case "int":
		if err := one(); err != nil {
			return fn[T]{}, err
		}
		if vals[0].k == kInt {
			return vals[0], nil
		}
		x := vals[0].f
		return fold(fn[T]{k: kInt, uses: uses, i: func(t *T) int64 { return int64(int(x(t))) }}), nil
	case "float":
		if err := one(); err != nil {
			return fn[T]{}, err
		}
		return toFloat(vals[0]), nil
	case "ceil", "floor", "round":
		if err := one(); err != nil {
			return fn[T]{}, err
		}
		x := toFloat(vals[0]).f
		if vals[0].k == kInt {
			return fold(fn[T]{k: kFloat, uses: uses, f: x}), nil
		}
		op := map[string]func(float64) float64{"ceil": math.Ceil, "floor": math.Floor, "round": math.Round}[n.Name]
		return fold(fn[T]{k: kFloat, uses: uses, f: func(t *T) float64 { return op(x(t)) }}), nil
	case "min", "max":
		if len(vals) == 0 {
			return fn[T]{}, errAt(n, "%s needs arguments", n.Name)
		}
		k := vals[0].k
		for i, v := range vals {
			if v.k != k || !isNum(k) {
				return fn[T]{}, errAt(n.Arguments[i], "%s needs numbers of one type (all int or all float; use float(x))", n.Name)
			}
		}
		isMin := n.Name == "min"
		if k == kInt {
			fs := make([]func(*T) int64, len(vals))
			for i, v := range vals {
				fs[i] = v.i
			}
			return fold(fn[T]{k: kInt, uses: uses, i: minMax(isMin, fs)}), nil
		}
		fs := make([]func(*T) float64, len(vals))
		for i, v := range vals {
			fs[i] = v.f
		}
		return fold(fn[T]{k: kFloat, uses: uses, f: minMax(isMin, fs)}), nil
	}
	return fn[T]{}, errAt(n, "function %s is not supported in rules", n.Name)
}

func bitOp[T any](name string, x, y func(*T) int64) func(*T) int64 {
	switch name {
	case "bitand":
		return func(t *T) int64 { return x(t) & y(t) }
	case "bitor":
		return func(t *T) int64 { return x(t) | y(t) }
	case "bitxor":
		return func(t *T) int64 { return x(t) ^ y(t) }
	case "bitnand":
		return func(t *T) int64 { return x(t) &^ y(t) } // expr's bitnand is AND NOT
	}
	// Shifts: expr refuses a negative count with an error; a rule cannot fail per flow, so
	// the result is 0 there.
	shift := func(t *T) (int64, int64, bool) {
		s := y(t)
		return x(t), s, s >= 0
	}
	switch name {
	case "bitshl":
		return func(t *T) int64 {
			v, s, ok := shift(t)
			if !ok {
				return 0
			}
			return v << s
		}
	case "bitshr":
		return func(t *T) int64 {
			v, s, ok := shift(t)
			if !ok {
				return 0
			}
			return v >> s
		}
	}
	return func(t *T) int64 {
		v, s, ok := shift(t)
		if !ok {
			return 0
		}
		return int64(uint64(v) >> s)
	}
}

// minMax mirrors expr's min/max: the first argument, replaced by each later one that is
// smaller (larger), so NaN behaves as in expr.
func minMax[T any, V int64 | float64](isMin bool, fs []func(*T) V) func(*T) V {
	return func(t *T) V {
		m := fs[0](t)
		for _, f := range fs[1:] {
			v := f(t)
			if isMin && m > v || !isMin && m < v {
				m = v
			}
		}
		return m
	}
}
