package gen

import (
	"encoding/binary"
	"fmt"
	"io"
	"net/netip"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// PCAPWriter writes datagrams as Ethernet/IP/UDP frames to a classic pcap file, so that
// generated export can be kept, replayed, decoded or checked with tshark.
type PCAPWriter struct {
	w     *pcapgo.Writer
	frame []byte
	ident uint16
}

// NewPCAPWriter writes the file header (Ethernet link type, microsecond timestamps, which
// every reader accepts) and returns the writer.
func NewPCAPWriter(w io.Writer) (*PCAPWriter, error) {
	pw := pcapgo.NewWriter(w)
	if err := pw.WriteFileHeader(65535, layers.LinkTypeEthernet); err != nil {
		return nil, err
	}
	return &PCAPWriter{w: pw, frame: make([]byte, 0, 2048)}, nil
}

// WriteDatagram writes one UDP datagram from src to dst captured at t. Both addresses
// must be of the same family. Checksums are valid.
func (p *PCAPWriter) WriteDatagram(t time.Time, src, dst netip.AddrPort, payload []byte) error {
	s, d := src.Addr().Unmap(), dst.Addr().Unmap()
	if s.Is4() != d.Is4() {
		return fmt.Errorf("gen: pcap frame from %v to %v mixes address families", src, dst)
	}
	be := binary.BigEndian
	f := p.frame[:0]
	f = append(f, 0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01)
	p.ident++
	if s.Is4() {
		f = be16(f, 0x0800)
		ip := len(f)
		f = append(f, 0x45, 0)
		f = be16(f, uint16(20+8+len(payload)))
		f = be16(f, p.ident)
		f = append(f, 0x40, 0, 64, 17, 0, 0)
		a, b := s.As4(), d.As4()
		f = append(f, a[:]...)
		f = append(f, b[:]...)
		be.PutUint16(f[ip+10:], ipChecksum(f[ip:ip+20]))
	} else {
		f = be16(f, 0x86DD)
		f = append(f, 0x60, 0, 0, 0)
		f = be16(f, uint16(8+len(payload)))
		f = append(f, 17, 64)
		a, b := s.As16(), d.As16()
		f = append(f, a[:]...)
		f = append(f, b[:]...)
	}
	f = be16(f, src.Port())
	f = be16(f, dst.Port())
	f = be16(f, uint16(8+len(payload)))
	f = be16(f, 0)
	u := len(f) - 8
	f = append(f, payload...)
	be.PutUint16(f[u+6:], udpChecksum(s, d, f[u:]))
	p.frame = f
	ci := gopacket.CaptureInfo{Timestamp: t, CaptureLength: len(f), Length: len(f)}
	return p.w.WritePacket(ci, f)
}

// udpChecksum is the UDP checksum over the pseudo-header and the datagram (whose checksum
// field is zero); 0 is sent as 0xFFFF since 0 means "none".
func udpChecksum(src, dst netip.Addr, udp []byte) uint16 {
	var sum uint32
	add := func(b []byte) {
		for i := 0; i+1 < len(b); i += 2 {
			sum += uint32(b[i])<<8 | uint32(b[i+1])
		}
		if len(b)%2 == 1 {
			sum += uint32(b[len(b)-1]) << 8
		}
	}
	a, b := addr16(src), addr16(dst)
	if src.Is4() {
		add(a[12:])
		add(b[12:])
	} else {
		add(a[:])
		add(b[:])
	}
	sum += 17 + uint32(len(udp))
	add(udp)
	for sum > 0xFFFF {
		sum = sum>>16 + sum&0xFFFF
	}
	if c := ^uint16(sum); c != 0 {
		return c
	}
	return 0xFFFF
}
