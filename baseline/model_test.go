package baseline

import (
	"math"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"github.com/flowhound/flowhound/flow"
)

// t0 is a Monday, midnight UTC.
var t0 = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano()

var (
	exporter   = netip.MustParseAddr("192.0.2.1")
	victimAddr = netip.MustParseAddr("192.0.2.10")
	outside    = netip.MustParseAddr("203.0.113.5")
	custNet    = netip.MustParsePrefix("192.0.2.0/24")
	custKey    = PrefixKey(custNet, DirIn)
	hostKey    = HostKey(victimAddr, DirIn)
	ifKey      = InterfaceKey(exporter, 3, DirIn)
)

func testConfig() Config {
	c := DefaultConfig()
	c.Networks = []Network{{Name: "customers", Prefixes: []netip.Prefix{custNet, netip.MustParsePrefix("198.51.100.0/24")}}}
	return c
}

// sim drives a Baselines with a controlled clock: one flow per slot towards victimAddr at the
// rate a pattern asks for, then Advance to the end of the slot.
type sim struct {
	tb   testing.TB
	b    *Baselines
	slot int64
	now  int64
	rng  *rand.Rand
	rec  [1]flow.Record
}

func newSim(tb testing.TB, cfg Config, deps Deps) *sim {
	b, err := New(cfg, deps)
	if err != nil {
		tb.Fatal(err)
	}
	return &sim{tb: tb, b: b, slot: int64(cfg.Slot), now: t0, rng: rand.New(rand.NewPCG(1, 2))}
}

// feed sends one slot of traffic at bps (pps = bps/8000, fps = bps/1e5) and moves the
// clock to the start of the next slot.
func (s *sim) feed(bps float64) {
	r := &s.rec[0]
	bytes := bps * float64(s.slot) / 1e9 / 8
	*r = flow.Record{
		Received: s.now + s.slot/2,
		Exporter: exporter, SrcAddr: outside, DstAddr: victimAddr,
		Bytes: uint64(bytes), Packets: uint64(bytes / 1000), Flows: uint32(math.Max(1, bytes/12500)),
		InIf: 3, OutIf: 7, Proto: 17, DstPort: 53, Has: flow.HasInIf | flow.HasOutIf,
	}
	s.b.Update(s.rec[:])
	s.now += s.slot
	s.b.Advance(s.now)
}

// noisy multiplies v by a normal factor with a 10 % standard deviation.
func (s *sim) noisy(v float64) float64 { return v * math.Max(0.5, 1+0.1*s.rng.NormFloat64()) }

// pattern is a daily sine (day 1.6x, night 0.4x of the mean) with quieter weekends.
func pattern(t int64) float64 {
	tm := time.Unix(0, t).UTC()
	h := float64(tm.Hour()) + float64(tm.Minute())/60
	v := 100e6 * (1 + 0.6*math.Sin(2*math.Pi*(h-9)/24))
	if wd := tm.Weekday(); wd == time.Saturday || wd == time.Sunday {
		v *= 0.6
	}
	return v
}

func TestDailyWeeklyPattern(t *testing.T) {
	for _, key := range []Key{custKey, ifKey} {
		t.Run(key.Kind.String(), func(t *testing.T) {
			s := newSim(t, testConfig(), Deps{})
			weeks := int64(4)
			for s.now < t0+weeks*7*24*int64(time.Hour) {
				s.feed(s.noisy(pattern(s.now)))
			}
			// Fifth week: predict every slot before it is fed, as the detector would.
			var sumErr, maxErr, maxSpread float64
			var n, flagged int
			for end := s.now + 7*24*int64(time.Hour); s.now < end; {
				truth := pattern(s.now)
				e, ok := s.b.Expected(key, s.now+s.slot/2)
				if !ok || e.WarmingUp {
					t.Fatalf("no warm expectation after %d weeks: %+v %v", weeks, e, ok)
				}
				rel := math.Abs(e.BPS-truth) / truth
				sumErr += rel
				maxErr = max(maxErr, rel)
				maxSpread = max(maxSpread, e.Spread.BPS/e.BPS, e.Spread.PPS/e.PPS)
				n++
				s.feed(s.noisy(truth))
				if IsAnomalous(s.b.Current(key), e) {
					flagged++
				}
			}
			t.Logf("mean error %.1f%%, max error %.1f%%, max spread %.1f%%, false positives %d/%d",
				100*sumErr/float64(n), 100*maxErr, 100*maxSpread, flagged, n)
			if maxSpread > 0.25 {
				t.Errorf("spread up to %.1f%% of the expected value, want at most 25%%", 100*maxSpread)
			}
			if sumErr/float64(n) > 0.05 || maxErr > 0.2 {
				t.Errorf("expected values off by %.1f%% on average, %.1f%% at worst", 100*sumErr/float64(n), 100*maxErr)
			}
			if flagged > n/1000 {
				t.Errorf("%d of %d normal slots flagged", flagged, n)
			}
		})
	}
}

// learnWeeks feeds the noisy pattern times growth(t) for the given number of days.
func (s *sim) learnDays(days int, growth func(int64) float64) {
	for end := s.now + int64(days)*24*int64(time.Hour); s.now < end; {
		s.feed(s.noisy(pattern(s.now) * growth(s.now)))
	}
}

func flat(int64) float64 { return 1 }

func TestSurgeFlaggedWithinTwoSlots(t *testing.T) {
	portKey := PortKey(17, 53, DirIn)
	for _, key := range []Key{custKey, ifKey, GlobalKey(DirIn), hostKey, portKey} {
		t.Run(key.Kind.String(), func(t *testing.T) {
			s := newSim(t, testConfig(), Deps{})
			s.learnDays(16, flat) // into a Wednesday
			for range 14 * 360 {
				s.feed(s.noisy(pattern(s.now)))
			}
			for i := range 2 {
				e, ok := s.b.Expected(key, s.now+s.slot/2)
				if !ok || e.WarmingUp {
					t.Fatalf("no warm expectation: %+v", e)
				}
				s.feed(2 * s.noisy(pattern(s.now)))
				cur := s.b.Current(key)
				t.Logf("slot %d: current %.3g bps, expected %.3g ± %.3g, deviation %.1f", i+1, cur.BPS, e.BPS, e.Spread.BPS, Deviation(cur, e))
				if IsAnomalous(cur, e) {
					return
				}
			}
			t.Fatal("a 2x surge was not flagged within two slots")
		})
	}
}

func TestSlowRampLearned(t *testing.T) {
	// Traffic doubles every ten days, on top of the daily and weekly pattern.
	growth := func(ts int64) float64 { return math.Pow(2, float64(ts-t0)/float64(240*time.Hour)) }
	for _, key := range []Key{custKey, hostKey} {
		t.Run(key.Kind.String(), func(t *testing.T) {
			s := newSim(t, testConfig(), Deps{})
			s.learnDays(2, growth)
			var n, flagged int
			var maxDev float64
			for end := t0 + 28*24*int64(time.Hour); s.now < end; {
				e, ok := s.b.Expected(key, s.now+s.slot/2)
				s.feed(s.noisy(pattern(s.now) * growth(s.now)))
				if !ok {
					t.Fatal("no expectation")
				}
				cur := s.b.Current(key)
				maxDev = max(maxDev, Deviation(cur, e))
				if IsAnomalous(cur, e) {
					flagged++
				}
				n++
			}
			t.Logf("flagged %d of %d slots, largest deviation %.1f spreads", flagged, n, maxDev)
			if flagged > n/2000 {
				t.Errorf("a slow ramp was flagged in %d of %d slots", flagged, n)
			}
		})
	}
}

func TestAnomalousSlotsNotLearned(t *testing.T) {
	run := func(attack, mark bool) (Expectation, uint32) {
		s := newSim(t, testConfig(), Deps{})
		s.learnDays(9, flat)
		for range 12 * 360 {
			s.feed(s.noisy(pattern(s.now)))
		}
		// One hour at ten times the normal rate.
		for range 360 {
			v := s.noisy(pattern(s.now))
			if attack {
				v *= 10
				if mark {
					// The detector marks each slot while the anomaly lasts.
					s.b.MarkAnomalous(custKey, s.now, s.now+s.slot-1)
				}
			}
			s.feed(v)
		}
		for range 30 {
			s.feed(s.noisy(pattern(s.now)))
		}
		e, _ := s.b.Expected(custKey, s.now)
		d, _ := s.b.Detail(custKey)
		return e, d.LearnedSlots
	}
	control, nc := run(false, false)
	marked, nm := run(true, true)
	unmarked, _ := run(true, false)
	rel := func(e Expectation) float64 { return e.BPS/control.BPS - 1 }
	t.Logf("expected bps after the attack: control %.4g, marked %+.2f%%, unmarked %+.2f%%", control.BPS, 100*rel(marked), 100*rel(unmarked))
	if math.Abs(rel(marked)) > 0.03 {
		t.Errorf("marked attack moved the baseline by %+.2f%%", 100*rel(marked))
	}
	if nc-nm != 360 {
		t.Errorf("learned %d slots with the marked attack, %d without: want 360 fewer", nm, nc)
	}
	if rel(unmarked) < 0.05 {
		t.Errorf("unmarked attack moved the baseline by only %+.2f%%: the test does not show anything", 100*rel(unmarked))
	}
}
