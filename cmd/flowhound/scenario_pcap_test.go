package main

import (
	"bufio"
	"cmp"
	"math/rand/v2"
	"net/netip"
	"os"
	"slices"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// This file builds the packet captures the softflowd scenarios read: what a tap on a
// border router's links would record during a normal day or during an attack. Packets are
// kept as small descriptions, sorted by time and only then serialized with gopacket, and
// written truncated (as tcpdump -s 96 would) with their full original length, so that a
// 1 Gbit/s speed test or an amplification flood of 1.4 kB packets takes 70 bytes a packet
// on disk while every IP header still says how big the packet was.

// TCP flag bits as they sit in the header.
const (
	tcpFIN = 0x01
	tcpSYN = 0x02
	tcpRST = 0x04
	tcpPSH = 0x08
	tcpACK = 0x10
)

// scnPacket is one packet on the wire.
type scnPacket struct {
	ts       int64 // Unix ns
	src, dst netip.Addr
	sport    uint16 // or ICMP type
	dport    uint16 // or ICMP code
	ipLen    uint16 // IP total length
	proto    uint8
	flags    uint8
}

// scnTraffic collects a scenario's packets.
type scnTraffic struct {
	rng   *rand.Rand
	start time.Time
	pkts  []scnPacket
}

func newTraffic(seed uint64, start time.Time) *scnTraffic {
	return &scnTraffic{rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), start: start}
}

// at converts an offset from the capture start to Unix ns.
func (tr *scnTraffic) at(off time.Duration) int64 { return tr.start.Add(off).UnixNano() }

func (tr *scnTraffic) add(p scnPacket) { tr.pkts = append(tr.pkts, p) }

func (tr *scnTraffic) tcp(ts int64, src, dst netip.Addr, sport, dport uint16, flags uint8, payload int) {
	tr.add(scnPacket{ts: ts, src: src, dst: dst, sport: sport, dport: dport, proto: 6, flags: flags, ipLen: uint16(40 + payload)})
}

func (tr *scnTraffic) udp(ts int64, src, dst netip.Addr, sport, dport uint16, payload int) {
	tr.add(scnPacket{ts: ts, src: src, dst: dst, sport: sport, dport: dport, proto: 17, ipLen: uint16(28 + payload)})
}

func (tr *scnTraffic) icmp(ts int64, src, dst netip.Addr, typ, code uint8, payload int) {
	tr.add(scnPacket{ts: ts, src: src, dst: dst, sport: uint16(typ), dport: uint16(code), proto: 1, ipLen: uint16(28 + payload)})
}

// dur returns a random duration in [lo, hi).
func (tr *scnTraffic) dur(lo, hi time.Duration) time.Duration {
	return lo + time.Duration(tr.rng.Int64N(int64(hi-lo)))
}

func (tr *scnTraffic) between(lo, hi int) int { return lo + tr.rng.IntN(hi-lo+1) }

func (tr *scnTraffic) ephemeral() uint16 { return uint16(tr.between(32768, 60999)) }

// public returns a random unicast address somewhere on the Internet: outside the private,
// shared, link-local and loopback ranges and, for simplicity, outside the /8s that hold
// the documentation ranges (the monitored networks among them).
func (tr *scnTraffic) public() netip.Addr {
	for {
		a := netip.AddrFrom4([4]byte{byte(tr.between(1, 223)), byte(tr.rng.IntN(256)), byte(tr.rng.IntN(256)), byte(tr.between(1, 254))})
		if a.IsPrivate() || a.IsLoopback() || a.IsLinkLocalUnicast() || a.As4()[0] == 0 || a.As4()[0] == 100 ||
			a.As4()[0] == 169 || scnMonitored(a) || a.As4()[0] == 203 || a.As4()[0] == 198 || a.As4()[0] == 192 {
			continue
		}
		return a
	}
}

// pool returns n distinct Internet addresses.
func (tr *scnTraffic) pool(n int) []netip.Addr {
	seen := map[netip.Addr]bool{}
	out := make([]netip.Addr, 0, n)
	for len(out) < n {
		a := tr.public()
		if !seen[a] {
			seen[a] = true
			out = append(out, a)
		}
	}
	return out
}

// every calls fn at exponentially distributed intervals averaging 1/rate over [from, to).
func (tr *scnTraffic) every(from, to time.Duration, rate float64, fn func(off time.Duration)) {
	for off := from; ; {
		off += time.Duration(tr.rng.ExpFloat64() / rate * float64(time.Second))
		if off >= to {
			return
		}
		fn(off)
	}
}

// paced calls fn at a constant rate over [from, to), as flood tools send.
func (tr *scnTraffic) paced(from, to time.Duration, rate float64, fn func(off time.Duration)) {
	step := time.Duration(float64(time.Second) / rate)
	for off := from; off < to; off += step {
		fn(off)
	}
}

// httpsExchange is a whole HTTPS connection: handshake, request, a response of `segments` full
// segments with delayed ACKs, and an orderly close.
func (tr *scnTraffic) httpsExchange(off time.Duration, client, server netip.Addr, segments int) {
	rtt := tr.dur(8*time.Millisecond, 90*time.Millisecond)
	cp, sp := tr.ephemeral(), uint16(443)
	t := tr.at(off)
	half := int64(rtt / 2)
	tr.tcp(t, client, server, cp, sp, tcpSYN, 20) // options: MSS, SACK, timestamps, window scale
	t += half
	tr.tcp(t, server, client, sp, cp, tcpSYN|tcpACK, 20)
	t += half
	tr.tcp(t, client, server, cp, sp, tcpACK, 0)
	tr.tcp(t+10_000, client, server, cp, sp, tcpACK|tcpPSH, tr.between(300, 700)) // ClientHello
	t += half
	tr.tcp(t, server, client, sp, cp, tcpACK|tcpPSH, tr.between(2500, 2800)-1460) // ServerHello...
	t += half
	tr.tcp(t, client, server, cp, sp, tcpACK|tcpPSH, tr.between(80, 160)) // Finished
	tr.tcp(t+20_000, client, server, cp, sp, tcpACK|tcpPSH, tr.between(300, 900))
	t += half + int64(tr.dur(time.Millisecond, 40*time.Millisecond)) // server think time
	// The response arrives at up to ~20 Mbit/s: a segment every 0.6 ms.
	for i := 0; i < segments; i++ {
		tr.tcp(t, server, client, sp, cp, bulkFlags(i), 1460)
		if i%2 == 1 {
			tr.tcp(t+half, client, server, cp, sp, tcpACK, 0)
		}
		t += 600_000
	}
	tr.tcp(t, server, client, sp, cp, tcpACK|tcpPSH, tr.between(100, 1400))
	t += half
	tr.tcp(t, client, server, cp, sp, tcpACK, 0)
	t += int64(tr.dur(50*time.Millisecond, 900*time.Millisecond)) // the browser keeps it a while
	tr.tcp(t, client, server, cp, sp, tcpFIN|tcpACK, 0)
	t += half
	tr.tcp(t, server, client, sp, cp, tcpFIN|tcpACK, 0)
	t += half
	tr.tcp(t, client, server, cp, sp, tcpACK, 0)
}

// dnsExchange is one query and its answer.
func (tr *scnTraffic) dnsExchange(off time.Duration, client, server netip.Addr, answer int) {
	t := tr.at(off)
	cp := tr.ephemeral()
	tr.udp(t, client, server, cp, 53, tr.between(30, 60))
	tr.udp(t+int64(tr.dur(200*time.Microsecond, 40*time.Millisecond)), server, client, 53, cp, answer)
}

// dnsAnswerSize is a resolver's answer: mostly small, a tail of DNSSEC-signed answers
// over 1000 bytes.
func (tr *scnTraffic) dnsAnswerSize() int {
	switch u := tr.rng.IntN(100); {
	case u < 60:
		return tr.between(60, 160)
	case u < 92:
		return tr.between(160, 520)
	case u < 97:
		return tr.between(520, 1000)
	default:
		return tr.between(1000, 1400)
	}
}

// Monitored addresses of the softflowd scenarios.
var (
	scnWebServers  = []netip.Addr{netip.MustParseAddr("192.0.2.80"), netip.MustParseAddr("198.51.100.80")}
	scnResolver    = netip.MustParseAddr("198.51.100.53")
	scnSpeedClient = netip.MustParseAddr("198.51.100.150")
)

func scnCustomer(tr *scnTraffic) netip.Addr {
	if tr.rng.IntN(2) == 0 {
		return netip.AddrFrom4([4]byte{192, 0, 2, byte(tr.between(100, 199))})
	}
	return netip.AddrFrom4([4]byte{198, 51, 100, byte(tr.between(100, 199))})
}

// background is an ordinary day on the two customer networks over [0, span), at `scale`
// times a small ISP's rate: web in and out, DNS through the customers' busy resolver,
// NTP and some pings.
func (tr *scnTraffic) background(span time.Duration, scale float64) {
	clients := tr.pool(3000)
	sites := tr.pool(800)
	auth := tr.pool(1500)
	ntp := tr.pool(8)
	// Visitors of the customers' web servers.
	tr.every(0, span, 30*scale, func(off time.Duration) {
		tr.httpsExchange(off, clients[tr.rng.IntN(len(clients))], scnWebServers[tr.rng.IntN(len(scnWebServers))], tr.between(0, 40))
	})
	// Customers browsing.
	tr.every(0, span, 40*scale, func(off time.Duration) {
		tr.httpsExchange(off, scnCustomer(tr), sites[tr.rng.IntN(len(sites))], tr.between(0, 60))
	})
	// The resolver answers the customers (internal) and asks authoritative servers on the
	// Internet for what it has not cached (outgoing queries, incoming answers).
	tr.every(0, span, 700*scale, func(off time.Duration) {
		tr.dnsExchange(off, scnCustomer(tr), scnResolver, tr.dnsAnswerSize())
	})
	tr.every(0, span, 450*scale, func(off time.Duration) {
		tr.dnsExchange(off, scnResolver, auth[tr.rng.IntN(len(auth))], tr.dnsAnswerSize())
	})
	// NTP clients: 48-byte requests and replies.
	tr.every(0, span, 15*scale, func(off time.Duration) {
		c, s := scnCustomer(tr), ntp[tr.rng.IntN(len(ntp))]
		t := tr.at(off)
		tr.udp(t, c, s, 123, 123, 48)
		tr.udp(t+int64(tr.dur(5*time.Millisecond, 60*time.Millisecond)), s, c, 123, 123, 48)
	})
	// Monitoring pings, both ways.
	tr.every(0, span, 6*scale, func(off time.Duration) {
		a, b := clients[tr.rng.IntN(len(clients))], scnWebServers[tr.rng.IntN(2)]
		if tr.rng.IntN(2) == 0 {
			a, b = scnCustomer(tr), sites[tr.rng.IntN(len(sites))]
		}
		t := tr.at(off)
		tr.icmp(t, a, b, 8, 0, 56)
		tr.icmp(t+int64(tr.dur(5*time.Millisecond, 80*time.Millisecond)), b, a, 0, 0, 56)
	})
}

// speedTest is a subscriber running a speed test: a download over four TCP streams at
// about downMbps in total for `down`, then an upload at upMbps for `up`.
func (tr *scnTraffic) speedTest(off time.Duration, client netip.Addr, downMbps, upMbps float64, down, up time.Duration) {
	server := tr.public()
	const streams = 4
	gap := func(mbps float64) int64 { return int64(float64(streams) * 1500 * 8 / (mbps * 1e6) * 1e9) }
	for s := 0; s < streams; s++ {
		cp := tr.ephemeral()
		t := tr.at(off) + int64(s)*3_000_000
		rtt := int64(12 * time.Millisecond)
		tr.tcp(t, client, server, cp, 8080, tcpSYN, 20)
		tr.tcp(t+rtt/2, server, client, 8080, cp, tcpSYN|tcpACK, 20)
		tr.tcp(t+rtt, client, server, cp, 8080, tcpACK, 0)
		tr.tcp(t+rtt+10_000, client, server, cp, 8080, tcpACK|tcpPSH, 200)
		t += rtt + rtt/2
		end := t + int64(down)
		for i := 0; t < end; i++ {
			tr.tcp(t, server, client, 8080, cp, bulkFlags(i), 1460)
			if i%4 == 3 { // stretch ACKs, as receivers coalescing segments send
				tr.tcp(t+rtt/2, client, server, cp, 8080, tcpACK, 0)
			}
			t += gap(downMbps)
		}
		tr.tcp(t, client, server, cp, 8080, tcpFIN|tcpACK, 0)
		tr.tcp(t+rtt/2, server, client, 8080, cp, tcpFIN|tcpACK, 0)
		tr.tcp(t+rtt, client, server, cp, 8080, tcpACK, 0)
	}
	// Upload on new connections.
	upAt := tr.at(off+down) + int64(200*time.Millisecond)
	for s := 0; s < streams; s++ {
		cp := tr.ephemeral()
		t := upAt + int64(s)*3_000_000
		rtt := int64(12 * time.Millisecond)
		tr.tcp(t, client, server, cp, 8080, tcpSYN, 20)
		tr.tcp(t+rtt/2, server, client, 8080, cp, tcpSYN|tcpACK, 20)
		tr.tcp(t+rtt, client, server, cp, 8080, tcpACK, 0)
		t += rtt
		end := t + int64(up)
		for i := 0; t < end; i++ {
			tr.tcp(t, client, server, cp, 8080, bulkFlags(i), 1460)
			if i%2 == 1 {
				tr.tcp(t+rtt/2, server, client, 8080, cp, tcpACK, 0)
			}
			t += gap(upMbps)
		}
		tr.tcp(t, client, server, cp, 8080, tcpFIN|tcpACK, 0)
		tr.tcp(t+rtt/2, server, client, 8080, cp, tcpFIN|tcpACK, 0)
		tr.tcp(t+rtt, client, server, cp, 8080, tcpACK, 0)
	}
}

// bulkFlags are the flags of the i-th segment of a bulk transfer: the sender pushes at the
// end of each 64 KB write.
func bulkFlags(i int) uint8 {
	if i%44 == 43 {
		return tcpACK | tcpPSH
	}
	return tcpACK
}

// scnSnapLen is the capture length: enough for every header, not for the payloads.
const scnSnapLen = 96

// write sorts the packets by time and writes them as an Ethernet pcap.
func (tr *scnTraffic) write(path string) error {
	slices.SortStableFunc(tr.pkts, func(a, b scnPacket) int { return cmp.Compare(a.ts, b.ts) })
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	bw := bufio.NewWriterSize(f, 1<<20)
	w := pcapgo.NewWriter(bw)
	if err := w.WriteFileHeader(scnSnapLen, layers.LinkTypeEthernet); err != nil {
		f.Close()
		return err
	}
	buf := gopacket.NewSerializeBuffer()
	opts := gopacket.SerializeOptions{ComputeChecksums: true}
	eth := &layers.Ethernet{SrcMAC: []byte{0x02, 0, 0, 0, 0, 1}, DstMAC: []byte{0x02, 0, 0, 0, 0, 2}, EthernetType: layers.EthernetTypeIPv4}
	payload := make([]byte, scnSnapLen)
	var id uint16
	for i := range tr.pkts {
		p := &tr.pkts[i]
		id++
		ip := &layers.IPv4{Version: 4, IHL: 5, TTL: 57, Id: id, Protocol: layers.IPProtocol(p.proto), Length: p.ipLen,
			SrcIP: p.src.AsSlice(), DstIP: p.dst.AsSlice()}
		if p.proto == 6 && p.flags&tcpSYN != 0 {
			ip.Flags = layers.IPv4DontFragment
		}
		var l4 gopacket.SerializableLayer
		hdr := 0
		switch p.proto {
		case 6:
			tcp := &layers.TCP{SrcPort: layers.TCPPort(p.sport), DstPort: layers.TCPPort(p.dport), DataOffset: 5,
				Seq: uint32(id) * 7919, Window: 64240,
				FIN: p.flags&tcpFIN != 0, SYN: p.flags&tcpSYN != 0, RST: p.flags&tcpRST != 0,
				PSH: p.flags&tcpPSH != 0, ACK: p.flags&tcpACK != 0}
			if tcp.ACK {
				tcp.Ack = uint32(id) * 104729
			}
			if err := tcp.SetNetworkLayerForChecksum(ip); err != nil {
				f.Close()
				return err
			}
			l4, hdr = tcp, 20
		case 17:
			udp := &layers.UDP{SrcPort: layers.UDPPort(p.sport), DstPort: layers.UDPPort(p.dport), Length: p.ipLen - 20}
			if err := udp.SetNetworkLayerForChecksum(ip); err != nil {
				f.Close()
				return err
			}
			l4, hdr = udp, 8
		case 1:
			l4, hdr = &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(uint8(p.sport), uint8(p.dport)), Id: id, Seq: 1}, 8
		}
		// Only what fits in the snap length is captured.
		n := min(int(p.ipLen)-20-hdr, scnSnapLen-14-20-hdr)
		if err := gopacket.SerializeLayers(buf, opts, eth, ip, l4, gopacket.Payload(payload[:max(n, 0)])); err != nil {
			f.Close()
			return err
		}
		data := buf.Bytes()
		if len(data) > 14+int(p.ipLen) {
			data = data[:14+int(p.ipLen)] // gopacket pads short frames to 60 bytes
		}
		// SerializeLayers fills in the header lengths we gave it; the checksum of the
		// IP header covers the real total length.
		ci := gopacket.CaptureInfo{Timestamp: time.Unix(0, p.ts), CaptureLength: len(data), Length: 14 + int(p.ipLen)}
		if err := w.WritePacket(ci, data); err != nil {
			f.Close()
			return err
		}
	}
	if err := bw.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

var scnNets = []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24"), netip.MustParsePrefix("198.51.100.0/24")}

// scnMonitored reports whether a is in the customer networks.
func scnMonitored(a netip.Addr) bool {
	for _, p := range scnNets {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// external returns an Internet address that the router reaches over its transit uplink
// (first octet below 128) with probability viaTransit, over its peering port otherwise.
func (tr *scnTraffic) external(viaTransit float64) netip.Addr {
	transit := tr.rng.Float64() < viaTransit
	for {
		a := tr.public()
		if (a.As4()[0] < 128) == transit {
			return a
		}
	}
}

// externalPool returns n distinct addresses, a share viaTransit of them behind transit.
func (tr *scnTraffic) externalPool(n int, viaTransit float64) []netip.Addr {
	seen := map[netip.Addr]bool{}
	out := make([]netip.Addr, 0, n)
	for len(out) < n {
		p := 0.0
		if float64(len(out)) < viaTransit*float64(n) {
			p = 1
		}
		a := tr.external(p)
		if !seen[a] {
			seen[a] = true
			out = append(out, a)
		}
	}
	return out
}

// The attacks of the softflowd scenarios, each over [from, to).
var (
	scnSYNVictim  = netip.MustParseAddr("192.0.2.10")
	scnWormHost   = netip.MustParseAddr("198.51.100.77")
	scnAmpVictim  = netip.MustParseAddr("198.51.100.20")
	scnICMPVictim = netip.MustParseAddr("192.0.2.30")
)

// synFlood is a spoofed SYN flood at 20 kpps on a customer's web server; 80% of the
// spoofed sources are routed in over transit.
func (tr *scnTraffic) synFlood(from, to time.Duration) {
	tr.paced(from, to, 20000, func(off time.Duration) {
		tr.tcp(tr.at(off), tr.external(0.8), scnSYNVictim, tr.ephemeral(), []uint16{80, 443}[tr.rng.IntN(2)], tcpSYN, 0)
	})
}

// slammer is a customer's SQL server that caught the worm: 2500 probes/s of 376 bytes to
// random Internet addresses on UDP/1434.
func (tr *scnTraffic) slammer(from, to time.Duration) {
	tr.paced(from, to, 2500, func(off time.Duration) {
		tr.udp(tr.at(off), scnWormHost, tr.public(), tr.ephemeral(), 1434, 376)
	})
}

// slammerFromOutside is the Internet's own infected hosts probing the customers, which
// is not this network's outbreak.
func (tr *scnTraffic) slammerFromOutside(from, to time.Duration) {
	tr.every(from, to, 20, func(off time.Duration) {
		dst := netip.AddrFrom4([4]byte{192, 0, 2, byte(tr.between(1, 254))})
		if tr.rng.IntN(2) == 0 {
			dst = netip.AddrFrom4([4]byte{198, 51, 100, byte(tr.between(1, 254))})
		}
		tr.udp(tr.at(off), tr.public(), dst, tr.ephemeral(), 1434, 376)
	})
}

// amplification is DNS (ANY answers of ~1.4 kB) and NTP monlist (468-byte) reflection on
// a customer: 24 kpps, 185 Mbit/s from 600 reflectors, three quarters of them behind the
// peering port.
func (tr *scnTraffic) amplification(from, to time.Duration) {
	dns, ntp := tr.externalPool(400, 0.25), tr.externalPool(200, 0.25)
	tr.paced(from, to, 12000, func(off time.Duration) {
		tr.udp(tr.at(off), dns[tr.rng.IntN(len(dns))], scnAmpVictim, 53, tr.ephemeral(), tr.between(1380, 1452))
	})
	tr.paced(from, to, 12000, func(off time.Duration) {
		tr.udp(tr.at(off), ntp[tr.rng.IntN(len(ntp))], scnAmpVictim, 123, tr.ephemeral(), 440)
	})
}

// pingFlood is a spoofed ping flood at 15 kpps, 65% of it over transit; the victim
// answers one in three.
func (tr *scnTraffic) pingFlood(from, to time.Duration) {
	tr.paced(from, to, 15000, func(off time.Duration) {
		src, t := tr.external(0.65), tr.at(off)
		tr.icmp(t, src, scnICMPVictim, 8, 0, 56)
		if tr.rng.IntN(3) == 0 {
			tr.icmp(t+200_000, scnICMPVictim, src, 0, 0, 56)
		}
	})
}

// carpetBombing is DNS and CLDAP reflection spread over every address of 192.0.2.0/24:
// 60 kpps and 660 Mbit/s in all but about 240 pps and 2.6 Mbit/s per host, far below any
// per-host threshold. 70% of the reflectors are behind peering.
func (tr *scnTraffic) carpetBombing(from, to time.Duration) {
	refl := tr.externalPool(800, 0.3)
	tr.paced(from, to, 60000, func(off time.Duration) {
		dst := netip.AddrFrom4([4]byte{192, 0, 2, byte(tr.between(1, 254))})
		sport := []uint16{53, 389}[tr.rng.IntN(2)]
		tr.udp(tr.at(off), refl[tr.rng.IntN(len(refl))], dst, sport, tr.ephemeral(), tr.between(1300, 1452))
	})
}
