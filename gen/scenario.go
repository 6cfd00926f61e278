package gen

import (
	"net/netip"
	"slices"
	"time"
)

// Phase is a stretch of a scenario's schedule during which one attack (or none) is on
// the wire, on top of the normal background that runs throughout.
type Phase struct {
	// Name is "normal" or the attack: "syn-flood", "slammer", "udp-amp", "icmp-flood".
	Name string
	// Start and End are offsets from the start of the run; End 0 means until the run
	// ends. Attack flows are exported up to the timeouts after End, as routers do.
	Start, End time.Duration
	// Victim is the address the attack is about: the target of a flood, or the infected
	// internal host that sends the worm. Invalid for normal phases.
	Victim netip.Addr
	// PPS is the attack's packet rate (0 for normal phases).
	PPS int
}

// Contains reports whether the offset t falls in the phase.
func (p Phase) Contains(t time.Duration) bool {
	return t >= p.Start && (p.End == 0 || t < p.End)
}

// Scenario and attack names.
const (
	PhaseNormal   = "normal"
	AttackSYN     = "syn-flood"
	AttackSlammer = "slammer"
	AttackAmp     = "udp-amp"
	AttackICMP    = "icmp-flood"
	ScenarioMixed = "mixed"
	ScenarioDemo  = "demo"
)

// Attack defaults. Each attack enters through fixed exporter interfaces (see
// attackIngress) so that traceback has a known answer.
var (
	defaultSYNVictim   = netip.MustParseAddr("192.0.2.10")
	defaultWormHost    = netip.MustParseAddr("198.51.100.77")
	defaultAmpVictim   = netip.MustParseAddr("198.51.100.20")
	defaultICMPVictim  = netip.MustParseAddr("192.0.2.30")
	defaultAttackPPS   = map[string]int{AttackSYN: 50_000, AttackSlammer: 3_000, AttackAmp: 30_000, AttackICMP: 20_000}
	defaultAttackAddrs = map[string]netip.Addr{AttackSYN: defaultSYNVictim, AttackSlammer: defaultWormHost, AttackAmp: defaultAmpVictim, AttackICMP: defaultICMPVictim}
)

// LeadIn is the normal traffic that single-attack scenarios run before the attack starts,
// so that a collector sees the exporters, templates and a background first.
const LeadIn = 10 * time.Second

// Scenarios lists the scenario names in the order `flowhound gen -h` shows them.
func Scenarios() []string {
	return []string{PhaseNormal, AttackSYN, AttackSlammer, AttackAmp, AttackICMP, ScenarioMixed, ScenarioDemo}
}

func knownScenario(s string) bool { return slices.Contains(Scenarios(), s) }

// Schedule returns the phases of a scenario with its default victims and rates, or nil
// for an unknown name:
//
//   - normal: normal throughout.
//   - syn-flood, slammer, udp-amp, icmp-flood: LeadIn of normal, then the attack until
//     the end.
//   - mixed: 60 s of normal between attacks of 60 s each: SYN flood at 60 s, slammer at
//     180 s, UDP amplification at 300 s, ICMP flood at 420 s, then normal.
//   - demo (about 60 s, what `flowhound demo` runs): 10 s normal, 10 s SYN flood, 5 s
//     quiet, 10 s slammer, 5 s quiet, 10 s UDP amplification, then normal.
func Schedule(scenario string) []Phase {
	return schedule(scenario, nil, 0)
}

func schedule(scenario string, victims []netip.Addr, pps int) []Phase {
	s := time.Second
	attack := func(i int, name string, start, end time.Duration) Phase {
		v := defaultAttackAddrs[name]
		if len(victims) > 0 {
			v = victims[i%len(victims)].Unmap()
		}
		rate := defaultAttackPPS[name]
		if pps > 0 {
			rate = pps
		}
		return Phase{Name: name, Start: start, End: end, Victim: v, PPS: rate}
	}
	normal := func(start, end time.Duration) Phase { return Phase{Name: PhaseNormal, Start: start, End: end} }
	switch scenario {
	case PhaseNormal:
		return []Phase{normal(0, 0)}
	case AttackSYN, AttackSlammer, AttackAmp, AttackICMP:
		return []Phase{normal(0, LeadIn), attack(0, scenario, LeadIn, 0)}
	case ScenarioMixed:
		return []Phase{
			normal(0, 60*s),
			attack(0, AttackSYN, 60*s, 120*s),
			normal(120*s, 180*s),
			attack(1, AttackSlammer, 180*s, 240*s),
			normal(240*s, 300*s),
			attack(2, AttackAmp, 300*s, 360*s),
			normal(360*s, 420*s),
			attack(3, AttackICMP, 420*s, 480*s),
			normal(480*s, 0),
		}
	case ScenarioDemo:
		return []Phase{
			normal(0, 10*s),
			attack(0, AttackSYN, 10*s, 20*s),
			normal(20*s, 25*s),
			attack(1, AttackSlammer, 25*s, 35*s),
			normal(35*s, 40*s),
			attack(2, AttackAmp, 40*s, 50*s),
			normal(50*s, 0),
		}
	}
	return nil
}

// PhaseAt returns the index of the phase that contains offset t, or -1.
func PhaseAt(phases []Phase, t time.Duration) int {
	for i, p := range phases {
		if p.Contains(t) {
			return i
		}
	}
	return -1
}

// ingress is one way an attack enters the network: exporter index, input ifindex and
// the share of the attack's packets.
type ingress struct {
	exp   int
	ifx   uint32
	share float64
}

// attackIngress says where each flood enters, to give traceback a known answer. The
// worm enters from its infected host's customer-facing interface instead (see home).
var attackIngress = map[string][]ingress{
	AttackSYN:  {{0, 3, 0.85}, {1, 2, 0.15}}, // 127.0.0.11 if 3 mostly, 127.0.0.12 if 2
	AttackAmp:  {{1, 1, 0.60}, {2, 4, 0.40}}, // 127.0.0.12 if 1, 127.0.0.13 if 4
	AttackICMP: {{2, 2, 0.70}, {0, 1, 0.30}}, // 127.0.0.13 if 2, 127.0.0.11 if 1
}
