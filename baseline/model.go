package baseline

import (
	"math"
	"time"
)

// The model works on y = ln(1+rate) for each of bps, pps and fps. In log space a daily or
// weekly pattern is an additive offset whatever the traffic volume, multiplicative noise
// (±10 %) has the same spread at night as at noon, and a surge of 2x is the same distance
// from normal on a 1 Mbps host as on a 100 Gbps interface.
//
// A profile (interfaces, prefixes, global) predicts
//
//	ŷ(t) = D(t) + W(t) + λ·M(t) + λ·Y(t) + C
//
// D is the daily shape: the mean of the finest time-of-day bucket that has data for t (5 min,
// else 30 min, 1 h, 12 h). Coarse buckets fill 6 to 144 times faster than the 5-minute one,
// so they give a usable expectation during the first day and the fine one takes over as
// it fills. W is the day-of-week bucket (weekday × hour), which learns y − D: how this hour
// of this weekday differs from the daily shape. M and Y, the day-of-month and day-of-year
// buckets, learn once per day how that day's mean differed from the days around it (the
// difference minus its own running average, so a steady trend is not mistaken for a
// calendar effect); λ = n/(n+1) shrinks them while they have few observations. C is a
// level correction, an exponentially weighted mean of y − (D+W+λM+λY) with a time constant
// of one hour: it absorbs ramps and level shifts that the seasonal buckets, updated once
// per day or week, would otherwise lag behind, yet moves by only 1/360 of a surge per
// 10 s slot, so a 2x surge stands out for far longer than the two slots detection needs.
//
// Every bucket cell keeps an exponentially decayed mean and mean absolute deviation (MAD),
// updated once per visit of the cell (the slots of a 5-minute cell are averaged, then
// folded in with weight α): α = 0.2 for the time-of-day buckets (a daily cell forgets with
// a half-life of about three days), 0.3 for day-of-week and day-of-month and 0.5 for day of
// year, whose cells are visited once a year. Holt-Winters would need a smoothing factor
// and a full period of data per season before its first forecast, and RRDtool's variant
// (HWPREDICT) moves each seasonal coefficient once per period by a small gamma, so a level
// change takes weeks to follow. Decayed robust cells give an expectation after one slot,
// follow a ramp within an hour through C, and can be shown bucket by bucket.
//
// The spread is the MAD of the final prediction error per hour of day (the "residual"
// bucket), scaled by 1.2533 (√(π/2)) to the standard deviation it estimates for normal
// errors, with a floor of 3 %. Once a key is out of warm-up, observations further than
// 5 spreads from the prediction are clipped before they are learned (a Huber-type robust
// mean), so an attack that nobody marked anomalous moves the baseline only slowly.
//
// Hosts and ports (up to a million keys) use a compact model, 32 bytes instead of the
// profile's 11 KiB: an exponentially weighted level with a time constant of one hour and a
// MAD with a time constant of six hours. It follows a daily pattern with a lag (a spread of
// about 20 % on the test pattern, against 11 % for a profile) but not a weekly one. Such
// a key is learned only in slots where it had traffic; the idle slots in between are
// applied in closed form when it next has traffic, so idle keys cost no CPU and do not
// change between snapshots.

const (
	sigmaFloor = 0.03
	clipSigmas = 5.0
	madToSigma = 1.2533
	meanScale  = 1024 // fixed point of cell means (range ±32, i.e. up to e^32 per second)
	devScale   = 200  // fixed point of cell MADs (range 0-1.27)
	histLen    = 64   // recent slots kept per profile for the detail view
)

// Bucket sets of a profile. The time-of-day sets come first, finest first.
const (
	setM5 = iota
	setM30
	setH1
	setH12
	setDow
	setRes
	setDom
	setDoy
	nSets
)

// accDay is the accumulator index of the daily residual, which folds into both setDom and
// setDoy.
const (
	accDay = setDom
	nAcc   = setDom + 1
)

type setDesc struct {
	name  string
	off   int
	n     int
	alpha float64
}

var sets = [nSets]setDesc{
	setM5:  {"5m", 0, 288, 0.2},
	setM30: {"30m", 288, 48, 0.2},
	setH1:  {"1h", 336, 24, 0.2},
	setH12: {"12h", 360, 2, 0.2},
	setDow: {"day_of_week", 362, 168, 0.3},
	setRes: {"residual", 530, 24, 0.2},
	setDom: {"day_of_month", 554, 31, 0.3},
	setDoy: {"day_of_year", 585, 366, 0.5},
}

const (
	nCells    = 951
	pageCells = 32
	nPages    = (nCells + pageCells - 1) / pageCells
)

// cell is one bucket cell: the decayed mean and MAD of what the set learns, per metric, and
// the number of visits it has seen (saturating).
type cell struct {
	mean [3]int16
	dev  [3]uint8
	w    uint8
}

func (c *cell) get(m int) (mean, dev float64) {
	return float64(c.mean[m]) / meanScale, float64(c.dev[m]) / devScale
}

func (c *cell) set(m int, mean, dev float64) {
	c.mean[m] = int16(math.Round(math.Max(-32767, math.Min(32767, mean*meanScale))))
	c.dev[m] = uint8(math.Round(math.Max(0, math.Min(255, dev*devScale))))
}

// calendar holds the cell of every set for one instant.
type calendar struct {
	idx [nSets]int16
}

func makeCalendar(t time.Time) calendar {
	h, m, _ := t.Clock()
	mod := h*60 + m
	var c calendar
	c.idx[setM5] = int16(mod / 5)
	c.idx[setM30] = int16(mod / 30)
	c.idx[setH1] = int16(h)
	c.idx[setH12] = int16(h / 12)
	c.idx[setDow] = int16(int(t.Weekday())*24 + h)
	c.idx[setRes] = int16(h)
	c.idx[setDom] = int16(t.Day() - 1)
	c.idx[setDoy] = int16(t.YearDay() - 1)
	return c
}

// setAcc sums what a set learns over the slots of the cell being visited; the sum is
// folded into the cell when the visit ends.
type setAcc struct {
	cell int16 // -1: none
	aux  int16 // day accumulator: the day-of-month cell
	n    uint16
	sum  [3]float32
	abs  [3]float32
}

// rates3 are bps, pps and fps.
type rates3 [3]float64

// fullState is the seasonal model of one profile key.
type fullState struct {
	cells  [nCells]cell
	acc    [nAcc]setAcc
	dayAvg [3]float32 // running mean of daily residuals, so M and Y see only departures
	corr   [3]float32 // C
	level  [3]float32 // fallback before any cell has data
	spread [3]float32 // fallback MAD of the final error before the residual set has data
	dayOK  bool
	pinned bool   // monitored prefixes and global keys are never evicted
	hot    bool   // accumulators etc. changed since the last snapshot
	dirty  uint32 // pages changed since the last snapshot
	n      uint32 // slots learned
	active uint32 // tick of the last slot with traffic

	hist    [histLen][3]float32 // recent slot rates, newest at histPos-1
	histPos uint8
	histN   uint8
}

func newFullState() *fullState {
	f := &fullState{}
	for i := range f.acc {
		f.acc[i].cell = -1
	}
	return f
}

func (f *fullState) cell(s int, c *calendar) *cell {
	return &f.cells[sets[s].off+int(c.idx[s])]
}

// base returns D+W+λM+λY, D alone, whether D came from a fine (5 or 30 min) cell and whether
// any expectation exists.
func (f *fullState) base(c *calendar) (base, d rates3, fine, ok bool) {
	var dc *cell
	for s := setM5; s <= setH12; s++ {
		if x := f.cell(s, c); x.w > 0 {
			dc, fine = x, s <= setM30
			break
		}
	}
	if dc == nil {
		if f.n == 0 {
			return base, d, false, false
		}
		for m := range 3 {
			d[m] = float64(f.level[m])
		}
		return d, d, false, true
	}
	w := f.cell(setDow, c)
	dom, doy := f.cell(setDom, c), f.cell(setDoy, c)
	lm := float64(dom.w) / float64(dom.w+1)
	ly := float64(doy.w) / float64(doy.w+1)
	for m := range 3 {
		d[m], _ = dc.get(m)
		base[m] = d[m]
		if w.w > 0 {
			v, _ := w.get(m)
			base[m] += v
		}
		v, _ := dom.get(m)
		base[m] += lm * v
		v, _ = doy.get(m)
		base[m] += ly * v
	}
	return base, d, fine, true
}

// sigma is the spread of the final prediction error in log space.
func (f *fullState) sigma(c *calendar) rates3 {
	var s rates3
	r := f.cell(setRes, c)
	for m := range 3 {
		v := float64(f.spread[m])
		if r.w > 0 {
			v, _ = r.get(m)
		}
		s[m] = math.Max(sigmaFloor, madToSigma*v)
	}
	return s
}

// predict returns ŷ and σ for the instant of c.
func (f *fullState) predict(c *calendar) (y, sigma rates3, ok bool) {
	b, _, _, ok := f.base(c)
	if !ok {
		return y, sigma, false
	}
	for m := range 3 {
		y[m] = math.Max(0, b[m]+float64(f.corr[m]))
	}
	return y, f.sigma(c), true
}

// modelParams are the per-slot smoothing factors, which depend on the slot length.
type modelParams struct {
	corrA, levelA, spreadA float64 // profile: C, fallback level, fallback spread
	hostA, hostDevA        float64 // compact model: level, MAD
	warmSlots              uint32
}

func newModelParams(slot, warmUp time.Duration) modelParams {
	a := func(tau time.Duration) float64 { return 1 - math.Exp(-slot.Seconds()/tau.Seconds()) }
	return modelParams{
		corrA:     a(time.Hour),
		levelA:    a(30 * time.Minute),
		spreadA:   a(time.Hour),
		hostA:     a(time.Hour),
		hostDevA:  a(6 * time.Hour),
		warmSlots: uint32(min(int64(warmUp/slot), math.MaxUint32)),
	}
}

// learn adds one slot's observation y, taken at the instant of c.
func (f *fullState) learn(y rates3, c *calendar, p *modelParams) {
	f.hot = true
	base, d, fine, ok := f.base(c)
	if !ok {
		for m := range 3 {
			f.level[m] = float32(y[m])
		}
		f.accumulate(setM5, c, y)
		f.accumulate(setM30, c, y)
		f.accumulate(setH1, c, y)
		f.accumulate(setH12, c, y)
		f.n++
		return
	}
	sigma := f.sigma(c)
	warm := f.n >= p.warmSlots
	var yl, e, v rates3
	for m := range 3 {
		pred := base[m] + float64(f.corr[m])
		yl[m] = y[m]
		if warm {
			yl[m] = math.Max(pred-clipSigmas*sigma[m], math.Min(pred+clipSigmas*sigma[m], y[m]))
		}
		e[m] = math.Abs(yl[m] - pred)
	}
	f.accumulate(setM5, c, yl)
	f.accumulate(setM30, c, yl)
	f.accumulate(setH1, c, yl)
	f.accumulate(setH12, c, yl)
	f.accumulate(setRes, c, e)
	if fine {
		// Weekly and calendar offsets are learned against a real daily shape only; against
		// the warm-up fallback they would learn the shape itself and take weeks to unlearn.
		w := f.cell(setDow, c)
		for m := range 3 {
			v[m] = yl[m] - d[m]
		}
		f.accumulate(setDow, c, v)
		for m := range 3 {
			if w.w > 0 {
				dw, _ := w.get(m)
				v[m] -= dw
			}
		}
		f.accumulate(accDay, c, v)
	}
	for m := range 3 {
		f.corr[m] += float32(p.corrA * (yl[m] - base[m] - float64(f.corr[m])))
		f.level[m] += float32(p.levelA * (yl[m] - float64(f.level[m])))
		f.spread[m] += float32(p.spreadA * (e[m] - float64(f.spread[m])))
	}
	f.n++
}

func (f *fullState) accumulate(s int, c *calendar, v rates3) {
	a := &f.acc[s]
	idx := c.idx[s]
	if s == accDay {
		idx = c.idx[setDoy]
	}
	if a.cell != idx {
		f.fold(s)
		a.cell = idx
		a.aux = c.idx[setDom]
	}
	var cl *cell
	if s != accDay {
		cl = &f.cells[sets[s].off+int(idx)]
	}
	for m := range 3 {
		var ref float64
		switch {
		case cl != nil && cl.w > 0:
			ref, _ = cl.get(m)
		case a.n > 0:
			ref = float64(a.sum[m]) / float64(a.n)
		default:
			ref = v[m]
		}
		a.sum[m] += float32(v[m])
		a.abs[m] += float32(math.Abs(v[m] - ref))
	}
	if a.n < math.MaxUint16 {
		a.n++
	}
}

// fold ends the visit of the accumulator's cell and learns its mean and MAD.
func (f *fullState) fold(s int) {
	a := &f.acc[s]
	if a.n == 0 || a.cell < 0 {
		return
	}
	n := float64(a.n)
	if s == accDay {
		var rel rates3
		for m := range 3 {
			r := float64(a.sum[m]) / n
			if f.dayOK {
				rel[m] = r - float64(f.dayAvg[m])
				f.dayAvg[m] += float32(0.2 * rel[m])
			} else {
				f.dayAvg[m] = float32(r)
			}
		}
		if f.dayOK {
			f.foldCell(setDom, int(a.aux), rel, rates3{})
			f.foldCell(setDoy, int(a.cell), rel, rates3{})
		}
		f.dayOK = true
	} else {
		var mean, dev rates3
		for m := range 3 {
			mean[m] = float64(a.sum[m]) / n
			dev[m] = float64(a.abs[m]) / n
		}
		f.foldCell(s, int(a.cell), mean, dev)
	}
	a.n, a.sum, a.abs = 0, [3]float32{}, [3]float32{}
	f.hot = true
}

func (f *fullState) foldCell(s, idx int, mean, dev rates3) {
	i := sets[s].off + idx
	c := &f.cells[i]
	alpha := sets[s].alpha
	for m := range 3 {
		if c.w == 0 {
			c.set(m, mean[m], dev[m])
			continue
		}
		om, od := c.get(m)
		c.set(m, om+alpha*(mean[m]-om), od+alpha*(dev[m]-od))
	}
	if c.w < math.MaxUint8 {
		c.w++
	}
	f.dirty |= 1 << (i / pageCells)
}

// compactState is the model of one host or port key.
type compactState struct {
	level [3]float32
	dev   [3]float32
	tick  uint32 // tick of the last slot learned
	n     uint32 // slots learned, idle ones included
}

// catchUp returns level and MAD after k idle slots (y = 0) in closed form.
func (s *compactState) catchUp(k uint32, p *modelParams) (level, dev rates3) {
	bl, bd := 1-p.hostA, 1-p.hostDevA
	pl, pd := math.Pow(bl, float64(k)), math.Pow(bd, float64(k))
	for m := range 3 {
		l, d := float64(s.level[m]), float64(s.dev[m])
		level[m] = l * pl
		// dev_k = bd^k·dev + αd·level·Σ bd^(k-1-j)·bl^j
		dev[m] = pd*d + p.hostDevA*l*(pd-pl)/(bd-bl)
	}
	return level, dev
}

func (s *compactState) learn(y rates3, tick uint32, p *modelParams) {
	if s.n == 0 {
		for m := range 3 {
			s.level[m] = float32(y[m])
		}
		s.tick, s.n = tick, 1
		return
	}
	level, dev := rates3{}, rates3{}
	if k := tick - s.tick - 1; k > 0 && k < 1<<31 {
		level, dev = s.catchUp(k, p)
		s.n += k
	} else {
		for m := range 3 {
			level[m], dev[m] = float64(s.level[m]), float64(s.dev[m])
		}
	}
	warm := s.n >= p.warmSlots
	for m := range 3 {
		ym := y[m]
		if warm {
			sg := math.Max(sigmaFloor, madToSigma*dev[m])
			ym = math.Max(level[m]-clipSigmas*sg, math.Min(level[m]+clipSigmas*sg, ym))
		}
		dev[m] += p.hostDevA * (math.Abs(ym-level[m]) - dev[m])
		level[m] += p.hostA * (ym - level[m])
		s.level[m], s.dev[m] = float32(level[m]), float32(dev[m])
	}
	s.tick = tick
	s.n++
}

// predict returns ŷ and σ as of tick.
func (s *compactState) predict(tick uint32, p *modelParams) (y, sigma rates3, ok bool) {
	if s.n == 0 {
		return y, sigma, false
	}
	if k := tick - s.tick; k > 0 && k < 1<<31 {
		y, sigma = s.catchUp(k, p)
	} else {
		for m := range 3 {
			y[m], sigma[m] = float64(s.level[m]), float64(s.dev[m])
		}
	}
	for m := range 3 {
		sigma[m] = math.Max(sigmaFloor, madToSigma*sigma[m])
	}
	return y, sigma, true
}

// toLinear turns a log-space prediction into rates and spreads.
func toLinear(y, sigma rates3) (exp, spread Rates) {
	exp = Rates{math.Expm1(y[0]), math.Expm1(y[1]), math.Expm1(y[2])}
	spread = Rates{
		math.Expm1(y[0]+sigma[0]) - exp.BPS,
		math.Expm1(y[1]+sigma[1]) - exp.PPS,
		math.Expm1(y[2]+sigma[2]) - exp.FPS,
	}
	return exp, spread
}
