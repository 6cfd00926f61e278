package signatures

import (
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/expr-lang/expr/ast"

	"github.com/flowhound/flowhound/rules"
)

// Aggregates are one rule's window over one resource, filled by the detector from the flows
// the rule matched. Rates are per second over the window and scaled by sampling; distinct
// counts are estimates over the whole window (not per second).
type Aggregates struct {
	BPS, PPS, FPS float64
	// distinct_src, distinct_dst, distinct_src_ports, distinct_dst_ports in expressions.
	DistinctSrc, DistinctDst, DistinctSrcPort, DistinctDstPort float64
	// Samples is the number of sampled packets behind the window (min_samples guards it).
	Samples float64
	// The resource's baseline for the current time (expected_bps, ...), 0 while it is
	// still learning; profiled rules compare against it.
	ExpectedBPS, ExpectedPPS, ExpectedFPS float64
	// The baseline's spread (spread_bps, ...): how far normal traffic strays from expected.
	SpreadBPS, SpreadPPS, SpreadFPS float64
	// Limits are the resource's limits (limits.NAME): the configuration's group thresholds
	// over the rule's defaults. A zero field means "not set" and reads as the rule's default.
	Limits Limits
}

// Limits are per-host thresholds, named in rules and configuration as in rules.LimitNames.
// Zero means not set.
type Limits struct {
	PPS, BPS, FPS       float64 // pps, bps, fps: all traffic
	SYNPPS              float64 // syn_pps: SYN and SYN-ACK floods
	RSTPPS              float64 // rst_pps
	ACKPPS              float64 // ack_pps: ACK and FIN-ACK floods
	UDPPPS              float64 // udp_pps
	ICMPPPS             float64 // icmp_pps
	FragPPS             float64 // frag_pps: IP fragments
	AmpBPS, AmpPPS      float64 // amp_bps, amp_pps: UDP reflection/amplification
	ScanDsts, ScanPorts float64 // scan_dsts, scan_ports: distinct destinations/ports per window
}

// limitFields maps limit names to Limits fields.
var limitFields = map[string]func(*Limits) *float64{
	"pps":        func(l *Limits) *float64 { return &l.PPS },
	"bps":        func(l *Limits) *float64 { return &l.BPS },
	"fps":        func(l *Limits) *float64 { return &l.FPS },
	"syn_pps":    func(l *Limits) *float64 { return &l.SYNPPS },
	"rst_pps":    func(l *Limits) *float64 { return &l.RSTPPS },
	"ack_pps":    func(l *Limits) *float64 { return &l.ACKPPS },
	"udp_pps":    func(l *Limits) *float64 { return &l.UDPPPS },
	"icmp_pps":   func(l *Limits) *float64 { return &l.ICMPPPS },
	"frag_pps":   func(l *Limits) *float64 { return &l.FragPPS },
	"amp_bps":    func(l *Limits) *float64 { return &l.AmpBPS },
	"amp_pps":    func(l *Limits) *float64 { return &l.AmpPPS },
	"scan_dsts":  func(l *Limits) *float64 { return &l.ScanDsts },
	"scan_ports": func(l *Limits) *float64 { return &l.ScanPorts },
}

// Get returns the limit called name (0 when unset); ok is false for an unknown name.
func (l *Limits) Get(name string) (v float64, ok bool) {
	f, ok := limitFields[name]
	if !ok {
		return 0, false
	}
	return *f(l), true
}

// Set sets the limit called name and reports whether the name is known.
func (l *Limits) Set(name string, v float64) bool {
	f, ok := limitFields[name]
	if ok {
		*f(l) = v
	}
	return ok
}

// Overlay returns l with every limit that over sets (non-zero) replaced: the detector puts
// a host group's thresholds over a rule's defaults with it.
func (l Limits) Overlay(over Limits) Limits {
	for _, f := range limitFields {
		if v := *f(&over); v > 0 {
			*f(&l) = v
		}
	}
	return l
}

// LimitsOf converts a name→value map (a rule's limits, a group's thresholds).
func LimitsOf(m map[string]float64) (Limits, error) {
	var l Limits
	var unknown []string
	for name, v := range m {
		if !l.Set(name, v) {
			unknown = append(unknown, name)
		}
	}
	if len(unknown) > 0 {
		slices.Sort(unknown)
		return l, fmt.Errorf("unknown limits %s (known: %s)", strings.Join(unknown, ", "), strings.Join(rules.LimitNames(), ", "))
	}
	return l, nil
}

// Needs says which costly aggregates a threshold reads, so that the detector only keeps
// distinct-count sketches and baselines for the rules that use them.
type Needs struct {
	DistinctSrc, DistinctDst, DistinctSrcPort, DistinctDstPort bool
	Expected                                                   bool
}

// Threshold is a rule's compiled threshold.
type Threshold struct {
	rule     *rules.Rule
	root     *sevNode
	defaults Limits
	needs    Needs
}

// Rule returns the rule the threshold belongs to.
func (t *Threshold) Rule() *rules.Rule { return t.rule }

// Defaults returns the rule's own limits, which apply where the configuration sets none.
func (t *Threshold) Defaults() Limits { return t.defaults }

// Needs reports which optional aggregates the threshold reads.
func (t *Threshold) Needs() Needs { return t.needs }

// Floor is, per rate, the smallest limit a threshold compares it with; +Inf where none.
type Floor struct{ BPS, PPS, FPS, Samples float64 }

// Below reports whether every rate is under pct percent of its floor.
func (f *Floor) Below(a *Aggregates, pct float64) bool {
	k := pct / 100
	return a.BPS < f.BPS*k && a.PPS < f.PPS*k && a.FPS < f.FPS*k && a.Samples < f.Samples*k
}

// Floor returns the threshold's floor under limits l, when Check's severity is bounded by
// comparisons of bps, pps, fps or samples with positive constants or limits: an || whose
// branches all have floors, or an && with at least one branch that has one (its severity,
// when it does not hold, is at most the smallest ratio among its false branches; other
// branches are guards and can only lower it). A window whose rates are all below pct
// percent of the floor then has a severity below pct, which lets the detector skip Check
// for the many windows far from any limit. Merging branch floors rate by rate with min
// only makes the floor stricter, never unsound.
func (t *Threshold) Floor(l Limits) (Floor, bool) {
	inf := math.Inf(1)
	none := Floor{BPS: inf, PPS: inf, FPS: inf, Samples: inf}
	merge := func(a, b Floor) Floor {
		return Floor{BPS: min(a.BPS, b.BPS), PPS: min(a.PPS, b.PPS), FPS: min(a.FPS, b.FPS), Samples: min(a.Samples, b.Samples)}
	}
	var walk func(n *sevNode) (Floor, bool)
	walk = func(n *sevNode) (Floor, bool) {
		switch n.op {
		case sevAnd, sevOr:
			f, any := none, false
			for _, k := range n.kids {
				kf, ok := walk(k)
				if !ok {
					if n.op == sevOr {
						return Floor{}, false
					}
					continue
				}
				f, any = merge(f, kf), true
			}
			return f, any
		case sevField:
			lim := n.limConst
			if n.limField != nil {
				if v := *n.limField(&l); v > 0 {
					lim = v
				}
			}
			if !(lim > 0) || math.IsInf(lim, 0) {
				return Floor{}, false
			}
			f := none
			switch n.field {
			case 1:
				f.BPS = lim
			case 2:
				f.PPS = lim
			case 3:
				f.FPS = lim
			case 8:
				f.Samples = lim
			default:
				return Floor{}, false // a distinct count: a light window reads it as unbounded
			}
			return f, true
		}
		return Floor{}, false
	}
	if t.root == nil {
		return Floor{}, false
	}
	return walk(t.root)
}

// Check evaluates the threshold on a window's aggregates. It reports whether it holds and
// how far: severityPct is observed over limit in percent ("958.2% of 3.40 Kpps") for the
// comparison that decides, metric names its observed side ("pps", "distinct_dst") and limit
// is the limit's value.
//
// The deciding comparison follows the boolean structure. Only `metric > limit` and
// `metric >= limit` (or `limit < metric`) count, where the limit side holds only constants,
// limits.* and expected_*; other terms are guards without a ratio. For `a || b` it is the
// true comparison with the highest ratio: the strongest reason it fires. For `a && b` it is
// the smallest ratio among the conjuncts: the one that would stop the rule firing first,
// so the reported severity never overstates how far past the threshold the window is.
// When the threshold does not hold, the same walk reports how close it is (below 100%:
// the blocking conjunct for &&, the nearest alternative for ||). A threshold without any
// such comparison reports 100% when it holds and 0 otherwise.
//
// The detector applies min_samples, for and after/within; Check is the expression alone.
func (t *Threshold) Check(a *Aggregates) (fired bool, severityPct float64, metric string, limit float64) {
	fired, r := t.root.run(a)
	switch {
	case r.has:
		severityPct = r.ratio * 100
	case fired:
		severityPct = 100
	}
	return fired, severityPct, r.metric, r.limit
}

type sevOp uint8

const (
	sevGuard sevOp = iota // a boolean term without a ratio
	sevCmp                // metric > limit
	sevField              // sevCmp of a plain aggregate against a constant or limits.NAME
	sevAnd
	sevOr
)

type sevNode struct {
	op       sevOp
	kids     []*sevNode
	eval     func(*Aggregates) bool
	obs, lim func(*Aggregates) float64
	metric   string

	// sevField: read without closures. The detector checks every active window twice a
	// second, most of them far below any limit, so this is a hot path of its own.
	field    uint8                  // aggIndex
	orEqual  bool                   // >= rather than >
	limConst float64                // the limit, or limits.NAME's default
	limField func(*Limits) *float64 // limits.NAME, nil for a constant
}

// aggIndex numbers the aggregates that a sevField comparison reads directly.
var aggIndex = map[string]uint8{"bps": 1, "pps": 2, "fps": 3, "distinct_src": 4, "distinct_dst": 5,
	"distinct_src_ports": 6, "distinct_dst_ports": 7, "samples": 8}

func (a *Aggregates) at(i uint8) float64 {
	switch i {
	case 1:
		return a.BPS
	case 2:
		return a.PPS
	case 3:
		return a.FPS
	case 4:
		return a.DistinctSrc
	case 5:
		return a.DistinctDst
	case 6:
		return a.DistinctSrcPort
	case 7:
		return a.DistinctDstPort
	case 8:
		return a.Samples
	}
	return math.NaN()
}

type sevResult struct {
	has    bool // ratio is meaningful
	ratio  float64
	metric string
	limit  float64
}

func (n *sevNode) run(a *Aggregates) (bool, sevResult) {
	switch n.op {
	case sevField:
		obs, lim := a.at(n.field), n.limConst
		if n.limField != nil {
			if v := *n.limField(&a.Limits); v > 0 {
				lim = v
			}
		}
		ok := obs > lim || n.orEqual && obs == lim
		r := sevResult{metric: n.metric, limit: lim}
		if lim > 0 && !math.IsInf(lim, 0) && !math.IsNaN(obs) {
			r.has, r.ratio = true, obs/lim
		}
		return ok, r
	case sevCmp:
		ok := n.eval(a)
		lim, obs := n.lim(a), n.obs(a)
		r := sevResult{metric: n.metric, limit: lim}
		if lim > 0 && !math.IsInf(lim, 0) && !math.IsNaN(obs) {
			r.has, r.ratio = true, obs/lim
		}
		return ok, r
	case sevAnd:
		all := true
		var least, blocking sevResult
		for _, k := range n.kids {
			ok, r := k.run(a)
			all = all && ok
			if !r.has {
				continue
			}
			if !least.has || r.ratio < least.ratio {
				least = r
			}
			if !ok && (!blocking.has || r.ratio < blocking.ratio) {
				blocking = r
			}
		}
		if all {
			return true, least
		}
		return false, blocking
	case sevOr:
		anyTrue := false
		var bestTrue, best sevResult
		for _, k := range n.kids {
			ok, r := k.run(a)
			anyTrue = anyTrue || ok
			if !r.has {
				continue
			}
			if ok && (!bestTrue.has || r.ratio > bestTrue.ratio) {
				bestTrue = r
			}
			if !best.has || r.ratio > best.ratio {
				best = r
			}
		}
		if anyTrue {
			return true, bestTrue
		}
		return false, best
	}
	return n.eval(a), sevResult{}
}

// limitLike are the aggregate bits a comparison's limit side may read.
const limitLike = aLimit | aExpected

// sevTree mirrors the threshold's &&/|| structure down to its comparisons.
func sevTree(c *compiler[Aggregates], n ast.Node) (*sevNode, error) {
	if b, ok := n.(*ast.BinaryNode); ok {
		switch b.Operator {
		case "&&", "and", "||", "or":
			op := sevAnd
			if b.Operator == "||" || b.Operator == "or" {
				op = sevOr
			}
			node := &sevNode{op: op}
			for _, side := range []ast.Node{b.Left, b.Right} {
				k, err := sevTree(c, side)
				if err != nil {
					return nil, err
				}
				if k.op == op {
					node.kids = append(node.kids, k.kids...) // a && b && c is one level
				} else {
					node.kids = append(node.kids, k)
				}
			}
			return node, nil
		case ">", ">=", "<", "<=":
			l, err := c.compile(b.Left)
			if err != nil {
				return nil, err
			}
			r, err := c.compile(b.Right)
			if err != nil {
				return nil, err
			}
			whole, err := c.compile(b)
			if err != nil {
				return nil, err
			}
			metric, lim, mnode := l, r, b.Left
			if b.Operator == "<" || b.Operator == "<=" {
				metric, lim, mnode = r, l, b.Right
			}
			if isNum(metric.k) && isNum(lim.k) && metric.uses&^limitLike != 0 && lim.uses&^limitLike == 0 {
				node := &sevNode{op: sevCmp, eval: whole.b, obs: toFloat(metric).f, lim: toFloat(lim).f,
					metric: mnode.String()}
				lnode := b.Right
				if mnode == b.Right {
					lnode = b.Left
				}
				if c.fast != nil {
					c.fast(node, mnode, lnode, lim, b.Operator == ">=" || b.Operator == "<=")
				}
				return node, nil
			}
		}
	}
	v, err := c.compile(n)
	if err != nil {
		return nil, err
	}
	return &sevNode{op: sevGuard, eval: v.b}, nil
}
