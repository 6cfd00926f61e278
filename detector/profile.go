package detector

import (
	"net/netip"

	"github.com/flowhound/flowhound/baseline"
	"github.com/flowhound/flowhound/signatures"
)

// baselineKey is the baseline key of a window's resource, in the rule's direction.
func baselineKey(w *window, info *ruleInfo) baseline.Key {
	dir := baseline.DirIn
	switch info.direction {
	case "outgoing":
		dir = baseline.DirOut
	case "internal":
		dir = baseline.DirInternal
	}
	switch w.res.typ() {
	case resHost:
		return baseline.HostKey(w.res.addr(), dir)
	case resPrefix:
		return baseline.PrefixKey(netip.PrefixFrom(w.res.addr(), int(w.res.bits())), dir)
	case resInterface:
		return baseline.InterfaceKey(w.res.addr(), w.res.index(), baseline.DirIn)
	case resPort:
		return baseline.PortKey(uint8(w.res.index()>>16), uint16(w.res.index()), dir)
	}
	return baseline.GlobalKey(dir)
}

// expect fills the window's expected rates and spread from the baselines. It reports false
// while the resource's baseline is unknown or still warming up: a profiled rule must not
// fire on a baseline that has not learned what normal is.
func (d *Detector) expect(w *window, info *ruleInfo, now int64, agg *signatures.Aggregates) bool {
	if d.deps.Baselines == nil {
		return false
	}
	e, ok := d.deps.Baselines.Expected(baselineKey(w, info), now)
	if !ok {
		return false
	}
	agg.ExpectedBPS, agg.ExpectedPPS, agg.ExpectedFPS = e.BPS, e.PPS, e.FPS
	agg.SpreadBPS, agg.SpreadPPS, agg.SpreadFPS = e.Spread.BPS, e.Spread.PPS, e.Spread.FPS
	return !e.WarmingUp
}

// markAnomalous keeps an ongoing attack out of what the baselines learn: the resource
// itself, the global total in its direction and the interfaces it enters by.
func (d *Detector) markAnomalous(w *window, info *ruleInfo, from, to int64) {
	b := d.deps.Baselines
	if b == nil {
		return
	}
	k := baselineKey(w, info)
	b.MarkAnomalous(k, from, to)
	b.MarkAnomalous(baseline.GlobalKey(k.Dir), from, to)
	for i := range w.ingress.n {
		if in := w.ingress.key(i, &d.ingresses); in.exporter.IsValid() {
			b.MarkAnomalous(baseline.InterfaceKey(in.exporter, in.inIf, baseline.DirIn), from, to)
		}
	}
}

// profiledSeverity is observed over expected, in percent (DESIGN.md: profiled severity is
// against the baseline, not against the threshold expression's limit).
func profiledSeverity(metric string, agg *signatures.Aggregates) (pct, expected float64) {
	obs, exp := agg.PPS, agg.ExpectedPPS
	switch metric {
	case "bps":
		obs, exp = agg.BPS, agg.ExpectedBPS
	case "fps":
		obs, exp = agg.FPS, agg.ExpectedFPS
	}
	if exp <= 0 {
		return 0, 0
	}
	return obs / exp * 100, exp
}
