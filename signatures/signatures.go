// Package signatures compiles rule expressions into indexed Go closures and evaluates them per flow without allocating.
package signatures

import (
	"cmp"
	"errors"
	"fmt"
	"math/bits"
	"regexp"
	"slices"
	"strings"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/checker"
	"github.com/expr-lang/expr/conf"
	"github.com/expr-lang/expr/file"

	"github.com/flowhound/flowhound/flow"
	"github.com/flowhound/flowhound/rules"
)

// Set is a compiled rule set. It is immutable and safe for concurrent use.
type Set struct {
	rules      []rules.Rule
	byName     map[string]int
	match      []func(*flow.Record) bool // each rule's whole match; nil matches every flow
	residual   []func(*flow.Record) bool // what the index does not decide; nil when it decides all
	thresholds []*Threshold
	idx        index
}

// MaxRules is how many rules a Set holds: Match reports rules as uint16 indices.
const MaxRules = 1 << 16

// Compile validates and compiles a rule set (typically rules.Default() plus the operator's
// files). Every problem comes back at once as "file:line:col: message" lines
// (rules.ErrorList); positions inside expressions point at the offending character.
func Compile(rs []rules.Rule) (*Set, error) {
	if len(rs) > MaxRules {
		return nil, fmt.Errorf("signatures: %d rules, at most %d are supported", len(rs), MaxRules)
	}
	var errs rules.ErrorList
	if err := rules.CheckSet(rs); err != nil {
		var list rules.ErrorList
		if !errors.As(err, &list) {
			return nil, err
		}
		errs = append(errs, list...)
	}
	s := &Set{
		rules:      append([]rules.Rule(nil), rs...),
		byName:     make(map[string]int, len(rs)),
		match:      make([]func(*flow.Record) bool, len(rs)),
		residual:   make([]func(*flow.Record) bool, len(rs)),
		thresholds: make([]*Threshold, len(rs)),
	}
	analyses := make([]ruleIndex, len(rs))
	for i := range s.rules {
		r := &s.rules[i]
		s.byName[r.Name] = i
		m, ix, err := compileMatch(r)
		if err != nil {
			errs = append(errs, err)
		}
		s.match[i], s.residual[i], analyses[i] = m, ix.residual, ix
		t, err := compileThreshold(r)
		if err != nil {
			errs = append(errs, err)
		}
		s.thresholds[i] = t
	}
	if len(errs) > 0 {
		return nil, dedupe(errs)
	}
	s.idx = buildIndex(analyses)
	return s, nil
}

// dedupe drops repeated messages (a rule that fails validation may also fail to compile at
// the same place) and sorts by position.
func dedupe(errs rules.ErrorList) error {
	seen := map[string]bool{}
	out := errs[:0]
	for _, e := range errs {
		if k := e.Error(); !seen[k] {
			seen[k] = true
			out = append(out, e)
		}
	}
	slices.SortStableFunc(out, func(a, b *rules.Error) int {
		return cmp.Or(strings.Compare(a.Pos.File, b.Pos.File), cmp.Compare(a.Pos.Line, b.Pos.Line),
			cmp.Compare(a.Pos.Column, b.Pos.Column))
	})
	return out
}

// Len returns the number of rules.
func (s *Set) Len() int { return len(s.rules) }

// Rule returns rule i (as compiled; do not modify).
func (s *Set) Rule(i int) *rules.Rule { return &s.rules[i] }

// Index returns the index of the rule called name, or -1.
func (s *Set) Index(name string) int {
	if i, ok := s.byName[name]; ok {
		return i
	}
	return -1
}

// Threshold returns rule i's compiled threshold.
func (s *Set) Threshold(i int) *Threshold { return s.thresholds[i] }

// Matches reports whether rule i's match accepts r, evaluated in full without the index
// (for `rules test` and tests; Match is the fast path).
func (s *Set) Matches(i int, r *flow.Record) bool {
	m := s.match[i]
	return m == nil || m(r)
}

// Match appends to dst the indices of the rules whose match accepts r and returns it. Only
// the rules the index leaves as candidates for r's protocol, ports and TCP flags run any
// closure. It does not allocate when dst has room for the result.
func (s *Set) Match(r *flow.Record, dst []uint16) []uint16 {
	x := &s.idx
	pk, fk := 256, 256
	if r.Has&flow.HasProto != 0 {
		pk = int(r.Proto)
	}
	if r.Has&flow.HasTCPFlags != 0 {
		fk = int(r.TCPFlags)
	}
	if x.words == 1 {
		c := x.proto[pk] & x.flags[fk]
		if c == 0 {
			return dst
		}
		c &= x.dstPorts.rows[x.dstPorts.class(r.DstPort)] & x.srcPorts.rows[x.srcPorts.class(r.SrcPort)]
		for c != 0 {
			i := bits.TrailingZeros64(c)
			c &= c - 1
			if f := s.residual[i]; f == nil || f(r) {
				dst = append(dst, uint16(i))
			}
		}
		return dst
	}
	w := x.words
	p, f := x.proto[pk*w:pk*w+w], x.flags[fk*w:fk*w+w]
	d := x.dstPorts.class(r.DstPort) * w
	sp := x.srcPorts.class(r.SrcPort) * w
	dr, sr := x.dstPorts.rows[d:d+w], x.srcPorts.rows[sp:sp+w]
	for j := range w {
		c := p[j] & f[j] & dr[j] & sr[j]
		for c != 0 {
			i := j*64 + bits.TrailingZeros64(c)
			c &= c - 1
			if fn := s.residual[i]; fn == nil || fn(r) {
				dst = append(dst, uint16(i))
			}
		}
	}
	return dst
}

// Expression environments for expr's parser and type checker.
var (
	matchOptions     = append([]expr.Option{expr.Env(flowEnv{})}, helperOptions()...)
	thresholdOptions = append([]expr.Option{expr.Env(aggEnv{})}, helperOptions()...)
)

// check parses and type-checks src with expr. expr's optimizer is not run: the tree keeps
// the shape and positions of the source, and the closure compiler folds constants itself.
func check(src string, opts []expr.Option) (*ast.Node, error) {
	cfg := conf.CreateNew()
	for _, op := range opts {
		op(cfg)
	}
	tree, err := checker.ParseCheck(src, cfg)
	if err != nil {
		return nil, err
	}
	return &tree.Node, nil
}

// exprError places an expr or closure-compiler error inside the rule file.
func exprError(e rules.Expr, err error) *rules.Error {
	var fe *file.Error
	if errors.As(err, &fe) {
		return &rules.Error{Pos: e.PosAt(fe.From), Msg: cleanMessage(fe.Message)}
	}
	var pe *posError
	if errors.As(err, &pe) {
		return &rules.Error{Pos: e.PosAt(pe.off), Msg: pe.msg}
	}
	return &rules.Error{Pos: e.Pos, Msg: err.Error()}
}

var noFieldRE = regexp.MustCompile(`^type \S+ has no field (\S+)$`)

// cleanMessage rewords the expr messages that would otherwise confuse a rule author.
func cleanMessage(msg string) string {
	if m := noFieldRE.FindStringSubmatch(msg); m != nil {
		return fmt.Sprintf("unknown limit limits.%s (known: %s)", m[1], strings.Join(rules.LimitNames(), ", "))
	}
	if strings.Contains(msg, `Operator("&")`) || strings.Contains(msg, `Operator("|")`) {
		return msg + `: expressions have no bitwise operators, use flag(tcp_flags, "S"), only_flags(tcp_flags, "S") or bitand(a, b)`
	}
	return msg
}

func compileMatch(r *rules.Rule) (func(*flow.Record) bool, ruleIndex, *rules.Error) {
	if r.Match.IsEmpty() {
		return nil, ruleIndex{}, nil
	}
	root, err := check(r.Match.Source, matchOptions)
	if err != nil {
		return nil, ruleIndex{}, exprError(r.Match, err)
	}
	c := &compiler[flow.Record]{fields: flowFields}
	v, err := c.compile(*root)
	if err != nil {
		return nil, ruleIndex{}, exprError(r.Match, err)
	}
	if v.k != kBool {
		return nil, ruleIndex{}, &rules.Error{Pos: r.Match.Pos, Msg: fmt.Sprintf("match: must be a boolean expression, got %s", v.k)}
	}
	ix, err := analyze(c, *root)
	if err != nil {
		return nil, ruleIndex{}, exprError(r.Match, err)
	}
	return v.b, ix, nil
}

func compileThreshold(r *rules.Rule) (*Threshold, *rules.Error) {
	t := &Threshold{rule: r}
	var err error
	if t.defaults, err = LimitsOf(r.Limits); err != nil {
		return nil, &rules.Error{Pos: r.KeyPos("limits"), Msg: "limits: " + err.Error()}
	}
	if r.Threshold.IsEmpty() {
		return nil, nil // rules.Validate reports it
	}
	root, err := check(r.Threshold.Source, thresholdOptions)
	if err != nil {
		return nil, exprError(r.Threshold, err)
	}
	c := &compiler[Aggregates]{fields: aggFields, member: func(n *ast.MemberNode, obj, prop string) (fn[Aggregates], error) {
		if obj != "limits" {
			return fn[Aggregates]{}, errAt(n, "%s: member access is not supported here", n.String())
		}
		field, ok := limitFields[prop]
		if !ok {
			return fn[Aggregates]{}, errAt(n.Property, "unknown limit limits.%s", prop)
		}
		def, ok := r.Limits[prop]
		if !ok {
			return fn[Aggregates]{}, errAt(n.Property, "limits.%s has no default: add %s to the rule's limits", prop, prop)
		}
		// Zero is "not set" in Aggregates.Limits: the rule's own default applies then, so a
		// detector that only fills the limits it knows never compares against 0.
		return floatField(aLimit, func(a *Aggregates) float64 {
			if v := *field(&a.Limits); v > 0 {
				return v
			}
			return def
		}), nil
	}}
	v, err := c.compile(*root)
	if err != nil {
		return nil, exprError(r.Threshold, err)
	}
	if v.k != kBool {
		return nil, &rules.Error{Pos: r.Threshold.Pos, Msg: fmt.Sprintf("threshold: must be a boolean expression, got %s", v.k)}
	}
	// Comparisons of a plain aggregate with a constant or a limit skip the closures.
	c.fast = func(node *sevNode, metric, limit ast.Node, lim fn[Aggregates], orEqual bool) {
		id, ok := metric.(*ast.IdentifierNode)
		if !ok || aggIndex[id.Value] == 0 {
			return
		}
		switch l := limit.(type) {
		case *ast.MemberNode:
			obj, ok1 := l.Node.(*ast.IdentifierNode)
			prop, ok2 := l.Property.(*ast.StringNode)
			if !ok1 || !ok2 || obj.Value != "limits" {
				return
			}
			node.limField, node.limConst = limitFields[prop.Value], r.Limits[prop.Value]
		default:
			if lim.uses != 0 {
				return
			}
			node.limConst = toFloat(lim).f(nil)
		}
		node.op, node.field, node.orEqual = sevField, aggIndex[id.Value], orEqual
	}
	if t.root, err = sevTree(c, *root); err != nil {
		return nil, exprError(r.Threshold, err)
	}
	t.needs = Needs{
		DistinctSrc:     v.uses&aDistinctSrc != 0,
		DistinctDst:     v.uses&aDistinctDst != 0,
		DistinctSrcPort: v.uses&aDistinctSrcPorts != 0,
		DistinctDstPort: v.uses&aDistinctDstPorts != 0,
		Expected:        v.uses&aExpected != 0,
	}
	return t, nil
}
