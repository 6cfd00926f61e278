package signatures

import (
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/vm"

	"github.com/flowhound/flowhound/rules"
)

// FuzzCompileMatch compiles arbitrary match and threshold expressions: each must compile
// or fail with a positioned error, and a compiled match must agree with its index.
func FuzzCompileMatch(f *testing.F) {
	for _, s := range []string{
		"proto == 6 && flag(tcp_flags, \"S\")", "dst_port in 1..1023 || src_port not in [53]",
		"in_net(src_addr, \"10.0.0.0/8\") ? bytes > 1 : packets < 2", "bitand(tcp_flags, 2) != 0",
		"(proto == 17 && dst_port == 53) || (proto == 6 && dst_port in [80, 443])", "1..3", "[1] == [1]",
		"let x = 1; x > proto", "proto ?? 1", "src_addr matches \"^1\"", "-(-dst_port) % 0 == 0",
	} {
		f.Add(s, "pps > 1")
	}
	for _, th := range []string{
		"pps > 100000 && fps > pps / 10", "pps > limits.udp_pps && (distinct_src > 10 || bytes_per_packet < 500)",
		"(pps > 10 || distinct_src > 3) && bps > 1e6", "pps > 1000 || distinct_dst > 5",
		"(bps > expected_bps + 4 * spread_bps && bps > 2 * expected_bps && bps > 100e6) || pps > 1e6",
		"!(pps < 100) && bps >= 1e6", "samples >= 20 && (pps > 5000 || bps > 1e9)",
	} {
		f.Add("", th)
	}
	f.Fuzz(func(t *testing.T, match, threshold string) {
		r := rules.Rule{Name: "f", Kind: "misuse", GroupBy: []string{"dst_addr"}, Direction: "incoming",
			Window: rules.Duration(10e9), Importance: "medium",
			Match:     rules.Expr{Source: match, Pos: rules.Position{File: "f", Line: 1, Column: 1}},
			Threshold: rules.Expr{Source: threshold, Pos: rules.Position{File: "f", Line: 2, Column: 1}}}
		set, err := Compile([]rules.Rule{r})
		if err != nil {
			return
		}
		// What the closure compiler accepts, expr must evaluate the same way.
		var prog *vm.Program
		if strings.TrimSpace(match) != "" {
			opts := append([]expr.Option{expr.Env(flowEnv{}), expr.AsBool()}, helperOptions()...)
			// expr's optimizer evaluates constants and fails on 1 % 0, which has no
			// result to compare with; anything else must compile in both.
			if prog, err = expr.Compile(match, opts...); err != nil && !strings.Contains(err.Error(), "divide by zero") && !strings.Contains(err.Error(), "negative shift") {
				t.Fatalf("%q compiles here but not in expr: %v", match, err)
			}
		}
		rng := rand.New(rand.NewPCG(uint64(len(match)), 1))
		var got []uint16
		for range 200 {
			fl := randomFlow(rng)
			got = set.Match(&fl, got[:0])
			closure := set.Matches(0, &fl)
			if slices.Contains(got, 0) != closure {
				t.Fatalf("index and closure disagree on %q for %+v", match, fl)
			}
			if prog == nil {
				continue
			}
			if out, err := expr.Run(prog, envOf(&fl)); err == nil && out.(bool) != closure {
				t.Fatalf("%q: expr %v, closure %v on %+v", match, out, closure, fl)
			}
		}
		th := set.Threshold(0)
		th.Check(&Aggregates{PPS: 5, BPS: 1e6})
		// A floor must be sound for any threshold: rates below a tenth of it never reach a
		// severity of 10 % (light windows skip Check on that promise).
		if f, ok := th.Floor(th.Defaults()); ok {
			inf := math.Inf(1)
			for range 200 {
				a := Aggregates{BPS: f.BPS * rng.Float64() / 10, PPS: f.PPS * rng.Float64() / 10, FPS: f.FPS * rng.Float64() / 10,
					Samples: f.Samples * rng.Float64() / 10, DistinctSrc: inf, DistinctDst: inf, DistinctSrcPort: inf, DistinctDstPort: inf,
					Limits: th.Defaults()}
				for _, v := range []*float64{&a.BPS, &a.PPS, &a.FPS, &a.Samples} {
					if math.IsInf(*v, 0) || math.IsNaN(*v) {
						*v = math.Exp(rng.Float64()*30 - 5)
					}
				}
				if !f.Below(&a, 10) {
					continue
				}
				if fired, sev, _, _ := th.Check(&a); fired || sev >= 10 {
					t.Fatalf("%q: floor %+v, yet %+v fires %v at %.1f %%", threshold, f, a, fired, sev)
				}
			}
		}
	})
}
