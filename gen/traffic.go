package gen

import (
	"time"

	"github.com/flowhound/flowhound/flow"
)

const (
	msNs   = int64(time.Millisecond)
	tickMs = int(tick / time.Millisecond)
	tickS  = float64(tick) / float64(time.Second)
)

// Kinds of background session. A session is one exchange between a customer host and
// the Internet and makes one or two flows (one per direction).
const (
	sWeb = iota
	sQUIC
	sDNS
	sResolver
	sNTP
	sMailIn
	sMailOut
	sSSH
	sPing
	sScan
	sMiscUDP
	numSessionKinds
)

// sessionWeights is the background mix by session, roughly that of an access network:
// mostly web and DNS, a busy resolver, some mail, remote access, scans from the
// Internet's background radiation, and a little of everything else.
var sessionWeights = [numSessionKinds]float64{
	sWeb: 30, sQUIC: 8, sDNS: 15, sResolver: 12, sNTP: 1.5, sMailIn: 1.5,
	sMailOut: 2, sSSH: 2, sPing: 2, sScan: 3, sMiscUDP: 3,
}

var sessionCDF = func() (c [numSessionKinds]uint64) {
	total := 0.0
	for _, w := range sessionWeights {
		total += w
	}
	acc := 0.0
	for i, w := range sessionWeights {
		acc += w
		c[i] = uint64(acc / total * (1 << 32))
	}
	c[numSessionKinds-1] = 1 << 32
	return
}()

func (g *Generator) eph() uint16 { return uint16(32768 + g.rng.n(28232)) }

// dur returns how long pkts packets take at pps, in whole milliseconds, at most ten
// minutes.
func dur(pkts uint32, pps float64) int64 {
	if pkts <= 1 {
		return 0
	}
	return min(int64(float64(pkts-1)*1000/pps), 600_000) * msNs
}

func clampU(v float64, lo, hi uint32) uint32 {
	return uint32(min(max(v, float64(lo)), float64(hi)))
}

// in routes a flow from the Internet (src) to a customer (dst) and caches it.
func (g *Generator) in(f *gflow) {
	exp, i, o := g.net.inbound(f.src, f.dst)
	f.exp, f.inIf, f.outIf = uint8(exp), uint8(i), uint8(o)
	g.addFlow(f)
}

// out routes a flow from a customer (src) to the Internet (dst) and caches it.
func (g *Generator) out(f *gflow) {
	exp, i, o := g.net.outbound(f.src, f.dst)
	f.exp, f.inIf, f.outIf = uint8(exp), uint8(i), uint8(o)
	g.addFlow(f)
}

// pair makes the two directions of a session between customer c and remote host s:
// down (s to c) and up (c to s), with their own packet counts and sizes, over the same
// time.
func (g *Generator) pair(c, s uint32, cport, sport uint16, proto, flags uint8, start, d int64,
	downPkts uint32, downBytes uint64, upPkts uint32, upBytes uint64, phase uint8) {
	down := gflow{src: s, dst: c, sport: sport, dport: cport, proto: proto, flags: flags,
		start: start, end: start + d, pkts: downPkts, bytes: downBytes, phase: phase}
	if downPkts <= 1 {
		down.end = down.start
	}
	up := down
	up.src, up.dst, up.sport, up.dport = c, s, cport, sport
	up.pkts, up.bytes = upPkts, upBytes
	up.end = start + d
	if upPkts <= 1 {
		up.end = up.start
	}
	g.in(&down)
	g.out(&up)
}

// background starts this tick's normal sessions: -rate flows per second, plus the long
// transfers.
func (g *Generator) background(t0 int64, phase uint8) {
	if g.cfg.Rate == 0 {
		return
	}
	g.bgCarry += float64(g.cfg.Rate) * tickS
	for g.bgCarry >= 1 {
		g.bgCarry -= float64(g.session(t0+int64(g.rng.n(tickMs))*msNs, phase))
	}
	for i := range g.bulk {
		if s := &g.bulk[i]; t0 >= s.next {
			s.next = g.bulkDownload(t0, phase)
		}
	}
	for i := range g.speed {
		if s := &g.speed[i]; t0 >= s.next {
			s.next = g.speedTest(s, t0, phase)
		}
	}
}

// session starts one background session at start and returns how many flows it made.
func (g *Generator) session(start int64, phase uint8) int {
	r, n := &g.rng, g.net
	u := r.u64() >> 32
	kind := 0
	for u >= sessionCDF[kind] {
		kind++
	}
	c := n.customer(r)
	switch kind {
	case sWeb:
		// Page loads and downloads: data down at 800-1200 bytes a packet on average,
		// ACKs and requests up.
		s := n.web[r.skewed(len(n.web))]
		sport := uint16(443)
		if r.n(5) == 0 {
			sport = 80
		}
		pd := clampU(r.lognormal(14, 1.4), 3, 50_000)
		pu := max(3, pd/2+uint32(r.n(3)))
		pps := min(max(r.lognormal(120, 0.9), 10), 2500)
		flags := flow.FlagSYN | flow.FlagACK | flow.FlagPSH | flow.FlagFIN
		switch v := r.n(100); {
		case v < 4:
			flags = flow.FlagSYN | flow.FlagACK | flow.FlagPSH | flow.FlagRST
		case v < 10:
			flags = flow.FlagSYN | flow.FlagACK | flow.FlagPSH // still open, idles out
		}
		g.pair(c, s, g.eph(), sport, flow.ProtoTCP, flags, start, dur(pd, pps),
			pd, uint64(pd)*uint64(r.between(800, 1200)), pu, uint64(pu)*uint64(r.between(52, 110))+uint64(r.between(300, 900)), phase)
		return 2
	case sQUIC:
		s := n.web[r.skewed(len(n.web))]
		pd := clampU(r.lognormal(20, 1.3), 2, 20_000)
		pu := max(1, pd/4)
		pps := min(max(r.lognormal(150, 0.8), 10), 3000)
		g.pair(c, s, g.eph(), 443, flow.ProtoUDP, 0, start, dur(pd, pps),
			pd, uint64(pd)*uint64(r.between(1150, 1350)), pu, uint64(pu)*uint64(r.between(60, 120)), phase)
		return 2
	case sDNS:
		g.dnsExchange(c, n.resolvers[r.n(len(n.resolvers))], start, phase)
		return 2
	case sResolver:
		g.dnsExchange(resolverHost, n.authDNS[r.skewed(len(n.authDNS))], start, phase)
		return 2
	case sNTP:
		s := n.ntp[r.n(len(n.ntp))]
		q := gflow{src: c, dst: s, sport: 123, dport: 123, proto: flow.ProtoUDP, start: start, end: start, pkts: 1, bytes: 76, phase: phase}
		g.out(&q)
		a := q
		a.src, a.dst = s, c
		a.start = start + int64(r.between(5, 80))*msNs
		a.end = a.start
		a.bytes = 76
		if r.n(5) == 0 {
			a.bytes = 90
		}
		g.in(&a)
		return 2
	case sMailIn:
		s := n.mail[r.n(len(n.mail))]
		p := clampU(r.lognormal(15, 1), 4, 2000)
		back := max(3, p*2/3)
		f := gflow{src: s, dst: mailHost, sport: g.eph(), dport: 25, proto: flow.ProtoTCP,
			flags: flow.FlagSYN | flow.FlagACK | flow.FlagPSH | flow.FlagFIN, start: start,
			pkts: p, bytes: uint64(p) * uint64(r.between(300, 900)), phase: phase}
		f.end = start + dur(p, r.lognormal(30, 0.5))
		g.in(&f)
		b := f
		b.src, b.dst, b.sport, b.dport = mailHost, s, 25, f.sport
		b.pkts, b.bytes = back, uint64(back)*uint64(r.between(60, 120))
		g.out(&b)
		return 2
	case sMailOut:
		s := n.mail[r.n(len(n.mail))]
		p := clampU(r.lognormal(12, 1), 4, 5000)
		port, big, small := uint16(587), p, max(3, p*2/3)
		if r.n(2) == 0 {
			port, big, small = 993, max(3, p*2/3), p // IMAPS: mail comes down
		}
		g.pair(c, s, g.eph(), port, flow.ProtoTCP, flow.FlagSYN|flow.FlagACK|flow.FlagPSH|flow.FlagFIN,
			start, dur(max(big, small), r.lognormal(40, 0.5)),
			small, uint64(small)*uint64(r.between(400, 1200)), big, uint64(big)*uint64(r.between(300, 1200)), phase)
		return 2
	case sSSH:
		s := n.misc[r.skewed(len(n.misc))]
		p := clampU(r.lognormal(60, 1.5), 4, 100_000)
		pps := min(max(r.lognormal(10, 0.6), 2), 200)
		g.pair(c, s, g.eph(), 22, flow.ProtoTCP, flow.FlagSYN|flow.FlagACK|flow.FlagPSH|flow.FlagFIN, start, dur(p, pps),
			p, uint64(p)*uint64(r.between(80, 200)), p, uint64(p)*uint64(r.between(70, 150)), phase)
		return 2
	case sPing:
		s := n.misc[r.n(len(n.misc))]
		q := gflow{src: c, dst: s, dport: 8 << 8, proto: flow.ProtoICMP, start: start, end: start, pkts: 1, bytes: 84, phase: phase}
		g.out(&q)
		a := q
		a.src, a.dst, a.dport = s, c, 0
		a.start = start + int64(r.between(2, 150))*msNs
		a.end = a.start
		g.in(&a)
		return 2
	case sScan:
		// Background radiation: scanners probing customer hosts, one packet each.
		f := gflow{src: r.public(), dst: n.anyCustomer(r), sport: g.eph(), start: start, end: start, pkts: 1, phase: phase}
		if r.n(5) == 0 {
			f.proto, f.dport = flow.ProtoUDP, scanUDPPorts[r.n(len(scanUDPPorts))]
			f.bytes = uint64(r.between(40, 80))
		} else {
			f.proto, f.flags, f.dport = flow.ProtoTCP, flow.FlagSYN, scanTCPPorts[r.n(len(scanTCPPorts))]
			f.bytes = uint64(synSizes[r.n(len(synSizes))])
		}
		g.in(&f)
		return 1
	default: // sMiscUDP: VoIP, VPN, games
		s := n.misc[r.skewed(len(n.misc))]
		port := miscUDPPorts[r.n(len(miscUDPPorts))]
		p := clampU(r.lognormal(30, 1.2), 2, 50_000)
		pps := min(max(r.lognormal(30, 0.5), 2), 500)
		tos := uint8(0)
		if port == 5004 {
			tos = 0xb8 // EF, as VoIP media is marked
		}
		d := dur(p, pps)
		down := gflow{src: s, dst: c, sport: port, dport: g.eph(), proto: flow.ProtoUDP, tos: tos, start: start,
			end: start + d, pkts: p, bytes: uint64(p) * uint64(r.between(100, 400)), phase: phase}
		up := down
		up.src, up.dst, up.sport, up.dport = c, s, down.dport, port
		up.bytes = uint64(p) * uint64(r.between(100, 400))
		g.in(&down)
		g.out(&up)
		return 2
	}
}

var (
	scanTCPPorts = [...]uint16{22, 23, 80, 443, 445, 3389, 5900, 8080}
	scanUDPPorts = [...]uint16{53, 123, 161, 1900, 5060, 11211}
	miscUDPPorts = [...]uint16{3478, 4500, 5004, 27015}
	synSizes     = [...]int{40, 44, 60}
)

// dnsExchange makes a query from the customer-side host c to server s on port 53 and
// its reply, mostly 100-500 bytes with the odd large (DNSSEC, TXT) answer.
func (g *Generator) dnsExchange(c, s uint32, start int64, phase uint8) {
	r := &g.rng
	q := gflow{src: c, dst: s, sport: g.eph(), dport: 53, proto: flow.ProtoUDP, start: start, end: start,
		pkts: 1, bytes: uint64(r.between(60, 100)), phase: phase}
	g.out(&q)
	a := q
	a.src, a.dst, a.sport, a.dport = s, c, 53, q.sport
	a.start = start + int64(r.between(2, 60))*msNs
	a.end = a.start
	a.bytes = uint64(100 + r.n(200) + r.n(201))
	if r.n(100) < 3 {
		a.bytes = uint64(r.between(1000, 1400))
	}
	g.in(&a)
}

// bulkDownload starts a 20-90 s download of 1200-2500 packets/s of full-size packets
// and returns when the next one on this slot starts.
func (g *Generator) bulkDownload(t0 int64, phase uint8) int64 {
	r, n := &g.rng, g.net
	c := n.customer(r)
	s := n.web[r.n(len(n.web))]
	d := int64(r.between(20, 90)) * int64(time.Second)
	pkts := uint32(float64(r.between(1200, 2500)) * float64(d) / 1e9)
	acks := pkts / 2
	g.pair(c, s, g.eph(), 443, flow.ProtoTCP, flow.FlagSYN|flow.FlagACK|flow.FlagPSH|flow.FlagFIN, t0, d,
		pkts, uint64(pkts)*uint64(r.between(1400, 1480)), acks, uint64(acks)*52, phase)
	return t0 + d + int64(r.between(5, 30))*int64(time.Second)
}

// speedTest runs a speed test from a customer host: 10 s of six parallel downloads at
// about 4000 packets/s in all, then 8 s of six uploads, then a pause of 1-3 minutes
// before the slot's next test.
func (g *Generator) speedTest(s *longSession, t0 int64, phase uint8) int64 {
	r, n := &g.rng, g.net
	srv := n.speed[r.n(len(n.speed))]
	const streams = 6
	switch s.stage {
	case 0:
		s.host = n.customer(r)
		d := 10 * int64(time.Second)
		for range streams {
			pkts := uint32(r.between(600, 720) * 10)
			g.pair(s.host, srv, g.eph(), 8080, flow.ProtoTCP, flow.FlagSYN|flow.FlagACK|flow.FlagPSH|flow.FlagFIN, t0, d,
				pkts, uint64(pkts)*uint64(r.between(1440, 1500)), pkts/2, uint64(pkts/2)*52, phase)
		}
		s.stage = 1
		return t0 + d
	default:
		d := 8 * int64(time.Second)
		for range streams {
			pkts := uint32(r.between(350, 450) * 8)
			g.pair(s.host, srv, g.eph(), 8080, flow.ProtoTCP, flow.FlagSYN|flow.FlagACK|flow.FlagPSH|flow.FlagFIN, t0, d,
				pkts/2, uint64(pkts/2)*52, pkts, uint64(pkts)*uint64(r.between(1440, 1500)), phase)
		}
		s.stage = 0
		return t0 + d + int64(r.between(60, 180))*int64(time.Second)
	}
}

// attack starts this tick's attack packets at the phase's rate.
func (g *Generator) attack(p *Phase, t0 int64, phase uint8) {
	r, n := &g.rng, g.net
	g.atkCarry += float64(p.PPS) * tickS
	v := addrU32(p.Victim)
	for g.atkCarry >= 1 {
		start := t0 + int64(r.n(tickMs))*msNs
		f := gflow{start: start, end: start, pkts: 1, phase: phase, attack: true}
		switch p.Name {
		case AttackSYN:
			// Spoofed sources, one SYN per flow.
			f.src, f.dst, f.sport = r.public(), v, uint16(r.between(1024, 65535))
			f.dport = 443
			if r.n(10) < 3 {
				f.dport = 80
			}
			f.proto, f.flags = flow.ProtoTCP, flow.FlagSYN
			f.bytes = uint64(synSizes[r.n(len(synSizes))])
			g.ingress(&f, AttackSYN, v)
		case AttackSlammer:
			// The worm's 376-byte payload in a 404-byte packet to a random address.
			f.src, f.dst, f.sport, f.dport = v, r.public(), g.eph(), 1434
			f.proto, f.bytes = flow.ProtoUDP, 404
			exp, i, o := n.outbound(f.src, f.dst)
			f.exp, f.inIf, f.outIf = uint8(exp), uint8(i), uint8(o)
			g.addFlow(&f)
		case AttackAmp:
			// Reflected replies from open resolvers, NTP servers and memcached, to the
			// victim's spoofed query ports: short flows of large packets.
			f.src, f.dst, f.dport, f.proto = n.amplifiers[r.n(len(n.amplifiers))], v, g.eph(), flow.ProtoUDP
			switch u := r.n(100); {
			case u < 55:
				f.sport, f.pkts = 53, uint32(r.between(1, 6))
				f.bytes = uint64(f.pkts) * uint64(r.between(1000, 1468))
				f.end = start + dur(f.pkts, 20)
			case u < 85:
				f.sport, f.pkts = 11211, uint32(r.between(10, 70))
				f.bytes = uint64(f.pkts) * uint64(r.between(1400, 1468))
				f.end = start + dur(f.pkts, 2000)
			default:
				f.sport, f.pkts = 123, uint32(r.between(1, 10))
				f.bytes = uint64(f.pkts) * 468 // monlist replies
				f.end = start + dur(f.pkts, 100)
			}
			g.ingress(&f, AttackAmp, v)
		case AttackICMP:
			f.src, f.dst, f.dport, f.proto = r.public(), v, 8<<8, flow.ProtoICMP
			f.bytes = uint64(icmpSizes[r.n(len(icmpSizes))])
			g.ingress(&f, AttackICMP, v)
		default:
			g.atkCarry = 0
			return
		}
		g.atkCarry -= float64(f.pkts)
	}
}

var icmpSizes = [...]int{84, 84, 1028, 1500}

// ingress routes a flood's flow through the attack's entry points.
func (g *Generator) ingress(f *gflow, attack string, victim uint32) {
	ins := attackIngress[attack]
	u := g.rng.float()
	in := ins[len(ins)-1]
	for _, x := range ins {
		if u < x.share {
			in = x
			break
		}
		u -= x.share
	}
	exp := in.exp % len(g.exps)
	hexp, hif := g.net.home(victim)
	f.exp, f.inIf, f.outIf = uint8(exp), uint8(in.ifx), ifCore
	if hexp == exp {
		f.outIf = uint8(hif)
	}
	g.addFlow(f)
}
