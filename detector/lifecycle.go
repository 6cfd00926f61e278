package detector

import (
	"fmt"
	"math"
	"sort"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/flowhound/flowhound/signatures"
)

// active is an anomaly that has not ended, with the evidence gathered for it.
type active struct {
	a          Anomaly
	ev         evidence
	lastReport int64
}

// updateEvery spaces out "updated" events: sinks want the peak and traceback as the attack
// goes on, not a message per second.
const updateEvery = 10 * int64(time.Second)

func (d *Detector) raise(w *window, info *ruleInfo, now int64, sev float64, metric string, limit float64, agg signatures.Aggregates) {
	r := info.rule
	key := w.res.String()
	act := &active{a: Anomaly{
		ID:          anomalyID(r.Name, key, now),
		Status:      StatusOngoing,
		Kind:        r.Kind,
		Rule:        r.Name,
		Description: r.Description,
		Direction:   directionName(info.direction),
		Resource:    Resource{Type: resourceTypeNames[w.res.typ()], Key: key, Name: d.resourceName(w)},
		Start:       time.Unix(0, now).UTC(),
	}}
	if w.episodeStart > 0 && w.episodeStart <= now {
		act.a.DetectionDelay = float64(now-w.episodeStart) / 1e9
		d.delay.Update(act.a.DetectionDelay)
	}
	act.ev.init(d.cfg.SnapshotFlows, uint64(now))
	// An anomaly that was ongoing when the engine last stopped goes on under its own id:
	// a restart is not a new attack, and its alerts were already sent.
	kind := "raised"
	if prev, ok := d.resume[r.Name+"|"+key]; ok {
		delete(d.resume, r.Name+"|"+key)
		act.a.ID, act.a.Start, act.a.Peak, act.a.SeverityPct = prev.ID, prev.Start, prev.Peak, prev.SeverityPct
		act.a.Threshold, act.a.SeverityText, act.a.History = prev.Threshold, prev.SeverityText, prev.History
		act.a.DetectionDelay = prev.DetectionDelay
		kind = "updated"
	}
	w.anomaly = act
	d.actives[w] = act
	d.recent[windowKey{res: w.res, rule: w.rule}] = now
	if kind == "raised" {
		metrics.GetOrCreateCounter(`flowhound_anomalies_total{rule="` + r.Name + `"}`).Inc()
	}
	d.refresh(act, w, info, now, sev, metric, limit, agg)
	act.lastReport = now
	d.deps.OnEvent(Event{Type: kind, Anomaly: act.copy()})
}

// endStale ends the anomalies left ongoing by the last run that have not come back within
// their rule's hold: their alerts get the end (and scripts their unban) they would have
// had without the restart.
func (d *Detector) endStale(now int64) {
	for k, a := range d.resume {
		hold := int64(defaultHold)
		if d.cfg.Hold > 0 {
			hold = int64(d.cfg.Hold)
		}
		for i := range d.rules {
			if d.rules[i].rule.Name == a.Rule && d.cfg.Hold == 0 {
				hold = d.rules[i].hold
			}
		}
		if now-d.started < hold {
			continue
		}
		delete(d.resume, k)
		end := time.Unix(0, now).UTC()
		a.Status, a.End, a.LastUpdate = StatusEnded, &end, end
		d.deps.OnEvent(Event{Type: "ended", Anomaly: a})
	}
}

const defaultHold = 60 * time.Second

func (d *Detector) update(act *active, w *window, info *ruleInfo, now int64, sev float64, metric string, limit float64, agg signatures.Aggregates) {
	d.refresh(act, w, info, now, sev, metric, limit, agg)
	if now-act.lastReport >= updateEvery {
		act.lastReport = now
		d.deps.OnEvent(Event{Type: "updated", Anomaly: act.copy()})
	}
}

// refresh brings the anomaly's rates, traceback and evidence up to date. Severity and
// observed rates follow the latest evaluation over threshold; the peak keeps the highest.
func (d *Detector) refresh(act *active, w *window, info *ruleInfo, now int64, sev float64, metric string, limit float64, agg signatures.Aggregates) {
	a := &act.a
	a.LastUpdate = time.Unix(0, now).UTC()
	a.Observed = Rates{BPS: agg.BPS, PPS: agg.PPS, FPS: agg.FPS}
	a.Peak = Rates{BPS: math.Max(a.Peak.BPS, agg.BPS), PPS: math.Max(a.Peak.PPS, agg.PPS), FPS: math.Max(a.Peak.FPS, agg.FPS)}
	// Severity is the highest seen, as Peakflow reported it: an attack is as bad as its peak,
	// and the observed rates beside it say where it is now.
	if metric != "" && now == w.lastFired && (sev > a.SeverityPct || a.Threshold == nil) {
		a.SeverityPct = math.Round(sev*10) / 10
		a.Threshold = map[string]float64{metric: limit}
		a.SeverityText = severityText(a.SeverityPct, metric, limit)
	}
	// Every anomaly shows what its resource normally carries, when the baseline knows.
	if !info.profiled && !info.expected {
		d.expect(w, info, now, &agg)
	}
	a.Expected = Rates{BPS: agg.ExpectedBPS, PPS: agg.ExpectedPPS, FPS: agg.ExpectedFPS}
	d.markAnomalous(w, info, now-int64(d.cfg.Evaluate)-int64(time.Second), now)
	a.History = appendHistory(a.History, Point{T: a.LastUpdate, BPS: agg.BPS, PPS: agg.PPS})
	a.Importance = importance(info.rule.Importance, a.SeverityPct)
	a.Traceback = d.traceback(w, agg)
	d.ring.collect(w, &act.ev)
	a.Character = act.ev.characterize()
	a.Snapshot = act.ev.snapshot()
	a.Filters, a.FilterCoverage = buildFilters(a, &act.ev)
}

func (d *Detector) end(w *window, now int64) {
	act := w.anomaly
	t := time.Unix(0, now).UTC()
	act.a.End = &t
	act.a.Status = StatusEnded
	act.a.LastUpdate = t
	d.finish(act, w)
	d.deps.OnEvent(Event{Type: "ended", Anomaly: act.copy()})
}

func (d *Detector) finish(act *active, w *window) {
	delete(d.actives, w)
	w.anomaly = nil
}

func (act *active) copy() Anomaly {
	a := act.a
	a.Traceback = append([]Ingress(nil), a.Traceback...)
	a.Snapshot = append(a.Snapshot[:0:0], a.Snapshot...)
	a.History = append(a.History[:0:0], a.History...)
	return a
}

// traceback lists the window's (exporter, in_if) pairs by share of packets, with the
// window's observed rates split by those shares.
func (d *Detector) traceback(w *window, agg signatures.Aggregates) []Ingress {
	var total float64
	for i := range w.ingress.n {
		total += w.ingress.packets[i]
	}
	if total == 0 {
		return nil
	}
	out := make([]Ingress, 0, maxIngress)
	for i := range w.ingress.n {
		in := w.ingress.key(i, &d.ingresses)
		if !in.exporter.IsValid() || w.ingress.packets[i] <= 0 {
			continue
		}
		share := w.ingress.packets[i] / total
		if share < 0.005 {
			continue
		}
		row := Ingress{Exporter: in.exporter.String(), InIf: in.inIf, PPS: agg.PPS * share,
			BPS: agg.BPS * share, Share: math.Round(share*1000) / 1000}
		if e := d.names[in.exporter]; e != nil {
			row.ExporterName = e.Name
			if ifc, ok := e.Interfaces[in.inIf]; ok {
				row.InIfName = ifc.Name
			}
		}
		out = append(out, row)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Share > out[j].Share })
	return out
}

func (d *Detector) resourceName(w *window) string {
	switch w.res.typ() {
	case resHost, resPrefix:
		if w.group >= 0 {
			return d.cfg.Networks[w.group].Name
		}
	case resInterface:
		if e := d.names[w.res.addr()]; e != nil {
			if ifc, ok := e.Interfaces[w.res.index()]; ok && ifc.Name != "" {
				return e.Name + " " + ifc.Name
			}
			return e.Name
		}
	}
	return ""
}

func directionName(dir string) string {
	switch dir {
	case "", "incoming":
		return "incoming"
	case "any":
		return "incoming"
	}
	return dir
}

// importance starts from the rule's and rises one step for a tenfold excess: a flood at
// 10x its threshold is worth waking someone for whatever the rule says.
func importance(base string, sevPct float64) string {
	levels := []string{"low", "medium", "high"}
	i := 1
	for j, l := range levels {
		if l == base {
			i = j
		}
	}
	if sevPct >= 1000 && i < 2 {
		i++
	}
	return levels[i]
}

func severityText(pct float64, metric string, limit float64) string {
	unit := metric
	switch metric {
	case "pps", "syn_pps", "udp_pps", "icmp_pps":
		unit = "pps"
	case "bps":
		unit = "bps"
	case "fps":
		unit = "fps"
	}
	return fmt.Sprintf("%.1f%% of %s", pct, HumanRate(limit, unit))
}

const maxHistory = 720

// appendHistory keeps at most maxHistory points by dropping every other one when full, so
// a long attack keeps its whole shape at a coarser step.
func appendHistory(h []Point, p Point) []Point {
	if len(h) >= maxHistory {
		n := 0
		for i := 0; i < len(h); i += 2 {
			h[n] = h[i]
			n++
		}
		h = h[:n]
	}
	return append(h, p)
}
