package baseline

import (
	"math"
	"time"
)

// Rates are per-second rates scaled by sampling: bits, packets and flows.
type Rates struct {
	BPS float64 `json:"bps"`
	PPS float64 `json:"pps"`
	FPS float64 `json:"fps"`
}

func (r Rates) get(m int) float64 {
	switch m {
	case 0:
		return r.BPS
	case 1:
		return r.PPS
	}
	return r.FPS
}

// Expectation is what a key's baseline expects at an instant.
type Expectation struct {
	Rates
	// Spread is one robust standard deviation above the expectation, in the same units:
	// the model's errors are multiplicative, so it is asymmetric and given upwards.
	Spread    Rates `json:"spread"`
	WarmingUp bool  `json:"warming_up"`
}

// Default scoring thresholds of IsAnomalous.
const (
	// AnomalousScore is the deviation, in spreads, above which a rate is anomalous.
	AnomalousScore = 4.0
	// AnomalousRatio is the least observed/expected ratio that may be anomalous, so that a
	// very regular key does not fire on a few percent.
	AnomalousRatio = 1.25
)

// Deviation returns how many spreads obs lies above (or, when negative, below) exp, taking
// the largest over bps, pps and fps. It is computed in log space, like the model, so it
// is the same for a 2x surge on a small host as on a large interface.
func Deviation(obs Rates, exp Expectation) float64 {
	best := math.Inf(-1)
	for m := range 3 {
		if z := score(obs.get(m), exp.Rates.get(m), exp.Spread.get(m)); z > best {
			best = z
		}
	}
	return best
}

func score(obs, exp, spread float64) float64 {
	sigma := math.Max(sigmaFloor, math.Log1p(spread/(1+exp)))
	return (math.Log1p(math.Max(0, obs)) - math.Log1p(exp)) / sigma
}

// IsAnomalous reports whether obs departs upwards from exp by at least AnomalousScore
// spreads and AnomalousRatio times in any of bps, pps and fps. It is false while the key
// is warming up.
func IsAnomalous(obs Rates, exp Expectation) bool {
	if exp.WarmingUp {
		return false
	}
	for m := range 3 {
		o, e := obs.get(m), exp.Rates.get(m)
		if o >= AnomalousRatio*e && score(o, e, exp.Spread.get(m)) >= AnomalousScore {
			return true
		}
	}
	return false
}

// Status is one resource as GET /api/resources lists it.
type Status struct {
	Type      Kind      `json:"type"`
	Key       string    `json:"key"`
	Name      string    `json:"name,omitempty"`
	Direction Direction `json:"direction"`
	Current   Rates     `json:"current"`
	Expected  Rates     `json:"expected"`
	WarmingUp bool      `json:"warming_up"`

	ID Key `json:"-"`
}

// DetailStatus is one resource as GET /api/resources/{type}/{key} shows it.
type DetailStatus struct {
	Status
	Spread Rates `json:"spread"`
	// Model is "seasonal" for interfaces, prefixes and global keys and "level" for hosts
	// and ports.
	Model        string `json:"model"`
	LearnedSlots uint32 `json:"learned_slots"`
	// Buckets shows each seasonal bucket's cell for now.
	Buckets []Bucket `json:"buckets,omitempty"`
	// Series are the most recent slots, oldest first.
	Series []Point `json:"series"`
	// Baseline is the expectation over the day around now, every 30 minutes.
	Baseline []Point `json:"baseline,omitempty"`
}

// Bucket is the cell of one seasonal bucket that applies now. Time-of-day buckets carry an
// expected rate and spread; day-of-week, day-of-month and day-of-year buckets carry the
// factor they apply to the daily shape; the residual bucket carries the spread.
type Bucket struct {
	Name     string `json:"name"`
	Cell     int    `json:"cell"`
	Samples  int    `json:"samples"`
	Expected *Rates `json:"expected,omitempty"`
	Spread   *Rates `json:"spread,omitempty"`
	Factor   *Rates `json:"factor,omitempty"`
}

// Point is a rate at an instant.
type Point struct {
	Time time.Time `json:"time"`
	Rates
}
