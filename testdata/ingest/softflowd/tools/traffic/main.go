// Command traffic writes traffic.pcap, the input softflowd reads to build the export
// captures of this directory: 24 synthetic flows (TCP with SYN/ACK/PSH/FIN, UDP, ICMP
// and ICMPv6, over IPv4 and IPv6, a few ToS values) over about a minute. The random
// source is seeded, so the output is the same on every run.
package main

import (
	"encoding/binary"
	"math/rand"
	"os"
	"sort"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

type pkt struct {
	t    time.Time
	data []byte
}

func csum(b []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return ^uint16(s)
}

func main() {
	r := rand.New(rand.NewSource(42))
	base := time.Date(2024, 1, 1, 12, 0, 0, 0, time.UTC)
	var pkts []pkt
	eth := func(typ uint16, p []byte) []byte {
		b := []byte{0, 0x11, 0x22, 0x33, 0x44, 0x55, 0, 0x66, 0x77, 0x88, 0x99, 0xaa, byte(typ >> 8), byte(typ)}
		return append(b, p...)
	}
	for f := 0; f < 24; f++ {
		v6 := f%5 == 4
		proto := []byte{6, 6, 17, 1, 6, 17}[f%6]
		if v6 && proto == 1 {
			proto = 58
		}
		sport := uint16(1024 + r.Intn(60000))
		dport := []uint16{80, 443, 53, 22, 123, 8080}[r.Intn(6)]
		n := 1 + r.Intn(8)
		start := base.Add(time.Duration(r.Intn(60000)) * time.Millisecond)
		tos := byte([]int{0, 0, 0x20, 0xb8}[r.Intn(4)])
		src4 := []byte{10, byte(f % 7), byte(f), byte(1 + f%250)}
		dst4 := []byte{192, 0, 2, byte(1 + f%200)}
		for i := 0; i < n; i++ {
			ts := start.Add(time.Duration(i*(50+r.Intn(900))) * time.Millisecond)
			size := 40 + r.Intn(1400)
			var l4 []byte
			switch proto {
			case 6:
				flags := byte(0x10)
				if i == 0 {
					flags = 0x02
				} else if i == n-1 {
					flags = 0x11
				} else if r.Intn(3) == 0 {
					flags = 0x18
				}
				l4 = make([]byte, 20)
				binary.BigEndian.PutUint16(l4, sport)
				binary.BigEndian.PutUint16(l4[2:], dport)
				l4[12] = 0x50
				l4[13] = flags
			case 17:
				l4 = make([]byte, 8)
				binary.BigEndian.PutUint16(l4, sport)
				binary.BigEndian.PutUint16(l4[2:], dport)
			default:
				l4 = []byte{8, 0, 0, 0, 0, 1, 0, byte(i)}
				if proto == 58 {
					l4[0] = 128
				}
			}
			payload := make([]byte, max(0, size-len(l4)-40))
			l4 = append(l4, payload...)
			if proto == 17 {
				binary.BigEndian.PutUint16(l4[4:], uint16(len(l4)))
			}
			var ip []byte
			if !v6 {
				ip = make([]byte, 20)
				ip[0], ip[1] = 0x45, tos
				binary.BigEndian.PutUint16(ip[2:], uint16(20+len(l4)))
				binary.BigEndian.PutUint16(ip[4:], uint16(r.Intn(65535)))
				ip[8], ip[9] = 64, proto
				copy(ip[12:], src4)
				copy(ip[16:], dst4)
				binary.BigEndian.PutUint16(ip[10:], csum(ip))
				pkts = append(pkts, pkt{ts, eth(0x0800, append(ip, l4...))})
			} else {
				ip = make([]byte, 40)
				ip[0] = 0x60 | tos>>4
				ip[1] = tos << 4
				binary.BigEndian.PutUint16(ip[4:], uint16(len(l4)))
				ip[6], ip[7] = proto, 64
				ip[8], ip[9] = 0x20, 0x01
				ip[10], ip[11] = 0x0d, 0xb8
				ip[15] = byte(f)
				ip[23] = 1
				ip[24], ip[25], ip[26], ip[27] = 0x20, 0x01, 0x0d, 0xb8
				ip[28] = 0xff
				ip[39] = byte(f % 200)
				pkts = append(pkts, pkt{ts, eth(0x86dd, append(ip, l4...))})
			}
		}
	}
	sort.SliceStable(pkts, func(i, j int) bool { return pkts[i].t.Before(pkts[j].t) })
	w := pcapgo.NewWriter(os.Stdout)
	w.WriteFileHeader(65535, layers.LinkTypeEthernet)
	for _, p := range pkts {
		w.WritePacket(gopacket.CaptureInfo{Timestamp: p.t, CaptureLength: len(p.data), Length: len(p.data)}, p.data)
	}
}
