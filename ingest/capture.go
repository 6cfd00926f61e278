package ingest

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// ReadCapture reads a pcap or pcapng capture (gzip-compressed or not; the format is
// told by its magic number) and calls fn with the arrival time (Unix ns), source
// address and payload of every UDP datagram in it, in capture order. Frames that are
// not UDP over IPv4/IPv6 are skipped; IP fragments are reassembled. Link types:
// Ethernet (with VLAN tags), raw IP, Linux cooked (SLL, SLL2) and BSD loopback.
//
// payload is only valid during the call: the reader reuses its buffers. An error from
// fn stops the reading and is returned as is.
func ReadCapture(r io.Reader, fn func(ts int64, src netip.Addr, payload []byte) error) error {
	// pcapgo wraps its input in a bufio.Reader of its own, which reuses ours when it is
	// large enough; ZeroCopyReadPacketData then copies each frame once, into a buffer
	// the reader keeps (notes/libraries.md: 2.4x faster than ReadPacketData).
	br := bufio.NewReaderSize(r, 1<<16)
	magic, err := br.Peek(4)
	if err == nil && magic[0] == 0x1F && magic[1] == 0x8B {
		// Decompressed here rather than by pcapgo, so that the guards below see the
		// real headers.
		zr, zerr := gzip.NewReader(br)
		if zerr != nil {
			return fmt.Errorf("ingest: capture: gzip: %w", zerr)
		}
		br = bufio.NewReaderSize(zr, 1<<16)
		magic, err = br.Peek(4)
	}
	if err != nil {
		if errors.Is(err, io.EOF) {
			return errors.New("ingest: capture: empty input")
		}
		return fmt.Errorf("ingest: capture: %w", err)
	}
	var next func() ([]byte, gopacket.CaptureInfo, error)
	var link func(gopacket.CaptureInfo) layers.LinkType
	switch m := binary.BigEndian.Uint32(magic); m {
	case 0x0A0D0D0A:
		ng, err := pcapgo.NewNgReader(&ngGuard{r: br}, pcapgo.NgReaderOptions{WantMixedLinkType: true, SkipUnknownVersion: true})
		if err != nil {
			return fmt.Errorf("ingest: capture: pcapng: %w", err)
		}
		next = ng.ZeroCopyReadPacketData
		link = func(ci gopacket.CaptureInfo) layers.LinkType {
			if len(ci.AncillaryData) > 0 {
				if lt, ok := ci.AncillaryData[0].(layers.LinkType); ok {
					return lt
				}
			}
			return ng.LinkType()
		}
	case 0xA1B2C3D4, 0xD4C3B2A1, 0xA1B23C4D, 0x4D3CB2A1:
		// pcapgo sizes its packet buffer by the header's snap length: a file that
		// claims 4 GiB would make it allocate 4 GiB. The header is clamped first.
		hdr := make([]byte, 24)
		if _, err := io.ReadFull(br, hdr); err != nil {
			return fmt.Errorf("ingest: capture: pcap header: %w", err)
		}
		order := binary.ByteOrder(binary.LittleEndian)
		if m == 0xA1B2C3D4 || m == 0xA1B23C4D {
			order = binary.BigEndian
		}
		if order.Uint32(hdr[16:]) > maxSnapLen {
			order.PutUint32(hdr[16:], maxSnapLen)
		}
		pr, err := pcapgo.NewReader(io.MultiReader(bytes.NewReader(hdr), br))
		if err != nil {
			return fmt.Errorf("ingest: capture: pcap: %w", err)
		}
		next = pr.ZeroCopyReadPacketData
		lt := pr.LinkType()
		link = func(gopacket.CaptureInfo) layers.LinkType { return lt }
	default:
		return fmt.Errorf("ingest: capture: not a pcap or pcapng file (magic %08x)", m)
	}

	var ex udpExtractor
	for n := 1; ; n++ {
		data, ci, err := safeNext(next)
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("ingest: capture: frame %d: %w", n, err)
		}
		src, payload, ok := ex.extract(link(ci), data)
		if !ok {
			continue
		}
		if err := fn(ci.Timestamp.UnixNano(), src, payload); err != nil {
			return err
		}
	}
}

// safeNext reads the next packet, turning a panic of the capture library into an
// error: pcapgo trusts fields of the file it reads, and a malformed capture must make
// `flowhound decode` report an error, not crash. ngGuard removes the causes known.
func safeNext(next func() ([]byte, gopacket.CaptureInfo, error)) (data []byte, ci gopacket.CaptureInfo, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("malformed capture (%v)", p)
		}
	}()
	return next()
}

// maxSnapLen bounds the packet size a capture may declare: libpcap's own maximum is
// 256 KiB, and flow export datagrams are at most 64 KiB.
const maxSnapLen = 1 << 20

// ngGuard passes a pcapng stream through block by block, refusing blocks and packets
// larger than maxSnapLen and clamping interface snap lengths, because pcapgo's NgReader
// allocates whatever length a (possibly hostile) file declares.
type ngGuard struct {
	r     io.Reader
	order binary.ByteOrder
	buf   []byte // the current block
	off   int    // bytes of buf already read out
	hdr   [12]byte
}

func (g *ngGuard) Read(p []byte) (int, error) {
	if g.off == len(g.buf) {
		if err := g.nextBlock(); err != nil {
			return 0, err
		}
	}
	n := copy(p, g.buf[g.off:])
	g.off += n
	return n, nil
}

func (g *ngGuard) nextBlock() error {
	if _, err := io.ReadFull(g.r, g.hdr[:8]); err != nil {
		return err // io.EOF between blocks is the clean end
	}
	typ := binary.BigEndian.Uint32(g.hdr[:4])
	if typ == 0x0A0D0D0A { // section header: its byte-order magic says how to read lengths
		if _, err := io.ReadFull(g.r, g.hdr[8:12]); err != nil {
			return io.ErrUnexpectedEOF
		}
		switch binary.LittleEndian.Uint32(g.hdr[8:12]) {
		case 0x1A2B3C4D:
			g.order = binary.LittleEndian
		case 0x4D3C2B1A:
			g.order = binary.BigEndian
		default:
			return errors.New("pcapng: bad byte-order magic")
		}
	}
	if g.order == nil {
		return errors.New("pcapng: block before the section header")
	}
	length := g.order.Uint32(g.hdr[4:8])
	if length < 12 || length > maxSnapLen+64 || length%4 != 0 {
		return fmt.Errorf("pcapng: block length %d", length)
	}
	if cap(g.buf) < int(length) {
		g.buf = make([]byte, length)
	}
	g.buf = g.buf[:length]
	have := copy(g.buf, g.hdr[:8])
	if typ == 0x0A0D0D0A {
		have = copy(g.buf, g.hdr[:12])
	}
	if _, err := io.ReadFull(g.r, g.buf[have:]); err != nil {
		return io.ErrUnexpectedEOF
	}
	g.off = 0
	switch g.order.Uint32(g.buf[:4]) {
	case 1: // interface description: link type, reserved, snap length (0: none), options
		if length < 20 {
			return fmt.Errorf("pcapng: interface block of %d bytes", length)
		}
		if snap := g.order.Uint32(g.buf[12:]); snap == 0 || snap > maxSnapLen {
			g.order.PutUint32(g.buf[12:], maxSnapLen)
		}
		// if_tsresol: pcapgo divides by 10^n or 2^n computed in 64 bits, which
		// overflows to 0 beyond 2^63 or 10^19.
		for o := 16; o+4 <= int(length)-4; {
			code, n := g.order.Uint16(g.buf[o:]), int(g.order.Uint16(g.buf[o+2:]))
			if code == 0 {
				break
			}
			if code == 9 {
				// An empty option makes pcapgo read the previous option's bytes.
				if n < 1 || o+4 >= len(g.buf) {
					return errors.New("pcapng: empty interface time resolution")
				}
				res := g.buf[o+4]
				if (res&0x80 != 0 && res&0x7F > 62) || (res&0x80 == 0 && res > 18) {
					return fmt.Errorf("pcapng: interface time resolution %#x", res)
				}
			}
			o += 4 + (n+3)&^3
		}
	case 2, 6: // packet, enhanced packet: captured length after interface and time
		if length >= 32 && g.order.Uint32(g.buf[20:]) > length-32 {
			return fmt.Errorf("pcapng: captured length %d in a %d-byte block", g.order.Uint32(g.buf[20:]), length)
		}
	}
	return nil
}

// udpExtractor finds the UDP payload of a frame, reassembling IP fragments.
type udpExtractor struct {
	frags reassembler
}

func (u *udpExtractor) extract(lt layers.LinkType, b []byte) (netip.Addr, []byte, bool) {
	switch lt {
	case layers.LinkTypeEthernet:
		if len(b) < 14 {
			return netip.Addr{}, nil, false
		}
		et := binary.BigEndian.Uint16(b[12:])
		b = b[14:]
		for i := 0; i < 4 && (et == 0x8100 || et == 0x88A8 || et == 0x9100); i++ {
			if len(b) < 4 {
				return netip.Addr{}, nil, false
			}
			et = binary.BigEndian.Uint16(b[2:])
			b = b[4:]
		}
		if et != 0x0800 && et != 0x86DD {
			return netip.Addr{}, nil, false
		}
	case layers.LinkTypeLinuxSLL:
		if len(b) < 16 {
			return netip.Addr{}, nil, false
		}
		b = b[16:]
	case layers.LinkTypeLinuxSLL2:
		if len(b) < 20 {
			return netip.Addr{}, nil, false
		}
		b = b[20:]
	case layers.LinkTypeNull, layers.LinkTypeLoop:
		if len(b) < 4 {
			return netip.Addr{}, nil, false
		}
		b = b[4:] // address family, in either byte order: the IP version says the rest
	case layers.LinkTypeRaw, layers.LinkTypeIPv4, layers.LinkTypeIPv6, 12, 14:
		// 12 and 14 are raw IP on some BSDs.
	default:
		return netip.Addr{}, nil, false
	}
	if len(b) == 0 {
		return netip.Addr{}, nil, false
	}
	switch b[0] >> 4 {
	case 4:
		return u.ipv4(b)
	case 6:
		return u.ipv6(b)
	}
	return netip.Addr{}, nil, false
}

func (u *udpExtractor) ipv4(b []byte) (netip.Addr, []byte, bool) {
	if len(b) < 20 {
		return netip.Addr{}, nil, false
	}
	ihl := int(b[0]&0x0F) * 4
	total := int(binary.BigEndian.Uint16(b[2:]))
	if ihl < 20 || total < ihl || len(b) < ihl || b[9] != 17 {
		return netip.Addr{}, nil, false
	}
	if total < len(b) {
		b = b[:total] // Ethernet padding
	}
	src := netip.AddrFrom4([4]byte(b[12:16]))
	payload := b[ihl:]
	if ff := binary.BigEndian.Uint16(b[6:]); ff&0x3FFF != 0 { // MF set or offset non-zero
		k := fragKey{src: src, dst: netip.AddrFrom4([4]byte(b[16:20])), id: uint32(binary.BigEndian.Uint16(b[4:]))}
		var ok bool
		if payload, ok = u.frags.add(k, int(ff&0x1FFF)*8, ff&0x2000 != 0, payload); !ok {
			return netip.Addr{}, nil, false
		}
	}
	return udpPayload(src, payload)
}

func (u *udpExtractor) ipv6(b []byte) (netip.Addr, []byte, bool) {
	if len(b) < 40 {
		return netip.Addr{}, nil, false
	}
	if pl := int(binary.BigEndian.Uint16(b[4:])); pl > 0 && 40+pl < len(b) {
		b = b[:40+pl]
	}
	src := netip.AddrFrom16([16]byte(b[8:24]))
	next := b[6]
	p := b[40:]
	for i := 0; i < 8; i++ {
		switch next {
		case 17:
			return udpPayload(src, p)
		case 0, 43, 60, 51:
			if len(p) < 8 {
				return netip.Addr{}, nil, false
			}
			l := (int(p[1]) + 1) * 8
			if next == 51 {
				l = (int(p[1]) + 2) * 4
			}
			if len(p) < l {
				return netip.Addr{}, nil, false
			}
			next, p = p[0], p[l:]
		case 44:
			if len(p) < 8 {
				return netip.Addr{}, nil, false
			}
			nh := p[0]
			ff := binary.BigEndian.Uint16(p[2:])
			k := fragKey{src: src, dst: netip.AddrFrom16([16]byte(b[24:40])), id: binary.BigEndian.Uint32(p[4:]), v6: true}
			whole, ok := u.frags.add(k, int(ff>>3)*8, ff&1 != 0, p[8:])
			if !ok || nh != 17 {
				return netip.Addr{}, nil, false
			}
			return udpPayload(src, whole)
		default:
			return netip.Addr{}, nil, false
		}
	}
	return netip.Addr{}, nil, false
}

// udpPayload returns the payload of a UDP datagram, trimmed to the UDP length; a
// datagram cut short by the snap length is passed on as captured, for the decoder to
// count as truncated.
func udpPayload(src netip.Addr, b []byte) (netip.Addr, []byte, bool) {
	if len(b) < 8 {
		return netip.Addr{}, nil, false
	}
	if l := int(binary.BigEndian.Uint16(b[4:])); l >= 8 && l < len(b) {
		b = b[:l]
	}
	return src.Unmap(), b[8:], true
}

// IP reassembly bounds: flow exporters send datagrams up to 64 KiB that links with a
// 1500-byte MTU fragment, but a capture must not make the reader hold unbounded state.
const (
	maxReassembly = 64
	maxIPPayload  = 65535
)

type fragKey struct {
	src, dst netip.Addr
	id       uint32
	v6       bool
}

type fragBuf struct {
	key   fragKey
	used  bool
	total int    // payload length, -1 until the last fragment arrives
	order uint64 // to evict the oldest
	data  []byte
	have  []uint64 // bitmap of 8-byte blocks received
}

type reassembler struct {
	bufs  []fragBuf
	clock uint64
}

// add stores one fragment (its payload at byte offset off) and returns the whole
// payload once every fragment is in.
func (ra *reassembler) add(k fragKey, off int, more bool, payload []byte) ([]byte, bool) {
	end := off + len(payload)
	if end > maxIPPayload || (more && len(payload)%8 != 0) {
		return nil, false
	}
	ra.clock++
	var f *fragBuf
	for i := range ra.bufs {
		if ra.bufs[i].used && ra.bufs[i].key == k {
			f = &ra.bufs[i]
			break
		}
	}
	if f == nil {
		for i := range ra.bufs {
			if !ra.bufs[i].used {
				f = &ra.bufs[i]
				break
			}
		}
		if f == nil && len(ra.bufs) < maxReassembly {
			ra.bufs = append(ra.bufs, fragBuf{})
			f = &ra.bufs[len(ra.bufs)-1]
		}
		if f == nil {
			f = &ra.bufs[0]
			for i := range ra.bufs {
				if ra.bufs[i].order < f.order {
					f = &ra.bufs[i]
				}
			}
		}
		if f.data == nil {
			f.data = make([]byte, maxIPPayload)
			f.have = make([]uint64, (maxIPPayload/8+64)/64)
		}
		clear(f.have)
		f.key, f.used, f.total = k, true, -1
	}
	f.order = ra.clock
	copy(f.data[off:], payload)
	for blk := off / 8; blk < (end+7)/8; blk++ {
		f.have[blk/64] |= 1 << (blk % 64)
	}
	if !more {
		f.total = end
	}
	if f.total < 0 {
		return nil, false
	}
	for blk := 0; blk < (f.total+7)/8; blk++ {
		if f.have[blk/64]&(1<<(blk%64)) == 0 {
			return nil, false
		}
	}
	f.used = false // the data stays valid until the next add
	return f.data[:f.total], true
}
