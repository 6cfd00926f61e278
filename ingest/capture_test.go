package ingest

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

func ipv4Packet(src, dst string, proto byte, id uint16, fragOff int, more bool, payload []byte) []byte {
	ff := uint16(fragOff / 8)
	if more {
		ff |= 0x2000
	}
	return cat([]byte{0x45, 0}, u16(20+len(payload)), u16(int(id)), u16(int(ff)), []byte{64, proto}, u16(0), ip4(src), ip4(dst), payload)
}

func udpDatagram(sport, dport int, payload []byte) []byte {
	return cat(u16(sport), u16(dport), u16(8+len(payload)), u16(0), payload)
}

func ipv6Packet(src, dst string, next byte, payload []byte) []byte {
	return cat([]byte{0x60, 0, 0, 0}, u16(len(payload)), []byte{next, 64}, ip6(src), ip6(dst), payload)
}

func ether(typ int, payload []byte) []byte {
	return cat([]byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}, u16(typ), payload)
}

type captured struct {
	ts      int64
	src     string
	payload string
}

func readAll(t *testing.T, b []byte) ([]captured, error) {
	t.Helper()
	var out []captured
	err := ReadCapture(bytes.NewReader(b), func(ts int64, src netip.Addr, payload []byte) error {
		out = append(out, captured{ts, src.String(), string(payload)})
		return nil
	})
	return out, err
}

func writePcap(t testing.TB, lt layers.LinkType, frames ...[]byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := pcapgo.NewWriterNanos(&buf)
	if err := w.WriteFileHeader(65535, lt); err != nil {
		t.Fatal(err)
	}
	for i, f := range frames {
		ci := gopacket.CaptureInfo{Timestamp: time.Unix(1700000000, int64(i)).UTC(), CaptureLength: len(f), Length: len(f)}
		if err := w.WritePacket(ci, f); err != nil {
			t.Fatal(err)
		}
	}
	return buf.Bytes()
}

func TestReadCaptureLinkTypes(t *testing.T) {
	udp4 := ipv4Packet("192.0.2.1", "192.0.2.9", 17, 1, 0, false, udpDatagram(5000, 2055, []byte("hello")))
	udp6 := ipv6Packet("2001:db8::1", "2001:db8::9", 17, udpDatagram(5000, 4739, []byte("six")))
	// Hop-by-hop options before UDP.
	udp6ext := ipv6Packet("2001:db8::2", "2001:db8::9", 0, cat([]byte{17, 0, 1, 4, 0, 0, 0, 0}, udpDatagram(5000, 4739, []byte("ext"))))
	tcp4 := ipv4Packet("192.0.2.1", "192.0.2.9", 6, 2, 0, false, make([]byte, 20))
	padded := append(ether(0x0800, ipv4Packet("192.0.2.3", "192.0.2.9", 17, 3, 0, false, udpDatagram(1, 2, []byte("p")))), 0, 0, 0, 0)
	for _, c := range []struct {
		name   string
		lt     layers.LinkType
		frames [][]byte
		want   []string // src:payload
	}{
		{"ethernet", layers.LinkTypeEthernet, [][]byte{
			ether(0x0800, udp4),
			ether(0x8100, cat(u16(10), u16(0x86DD), udp6)),                       // 802.1Q
			ether(0x88A8, cat(u16(10), u16(0x8100), u16(20), u16(0x0800), udp4)), // QinQ
			ether(0x0800, tcp4),                                                  // not UDP
			ether(0x0806, make([]byte, 28)),                                      // ARP
			padded,                                                               // Ethernet padding after the IP packet
			ether(0x86DD, udp6ext),
		}, []string{"192.0.2.1:hello", "2001:db8::1:six", "192.0.2.1:hello", "192.0.2.3:p", "2001:db8::2:ext"}},
		{"raw IP", layers.LinkTypeRaw, [][]byte{udp4, udp6, tcp4}, []string{"192.0.2.1:hello", "2001:db8::1:six"}},
		{"Linux SLL", layers.LinkTypeLinuxSLL, [][]byte{cat(make([]byte, 14), u16(0x0800), udp4)}, []string{"192.0.2.1:hello"}},
		{"Linux SLL2", layers.LinkTypeLinuxSLL2, [][]byte{cat(u16(0x86DD), make([]byte, 18), udp6)}, []string{"2001:db8::1:six"}},
		{"BSD loopback", layers.LinkTypeNull, [][]byte{cat([]byte{2, 0, 0, 0}, udp4)}, []string{"192.0.2.1:hello"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := readAll(t, writePcap(t, c.lt, c.frames...))
			if err != nil {
				t.Fatal(err)
			}
			var gs []string
			for _, g := range got {
				gs = append(gs, g.src+":"+g.payload)
			}
			if strings.Join(gs, " ") != strings.Join(c.want, " ") {
				t.Errorf("got %q, want %q", gs, c.want)
			}
		})
	}
}

func TestReadCaptureFragments(t *testing.T) {
	payload := bytes.Repeat([]byte("0123456789abcdef"), 200) // 3200 bytes
	udp := udpDatagram(5000, 2055, payload)
	var frames [][]byte
	// Three fragments, the last first, with an unrelated datagram in between.
	frames = append(frames,
		ether(0x0800, ipv4Packet("192.0.2.1", "192.0.2.9", 17, 77, 2400, false, udp[2400:])),
		ether(0x0800, ipv4Packet("192.0.2.2", "192.0.2.9", 17, 1, 0, false, udpDatagram(1, 2, []byte("x")))),
		ether(0x0800, ipv4Packet("192.0.2.1", "192.0.2.9", 17, 77, 0, true, udp[:1200])),
		ether(0x0800, ipv4Packet("192.0.2.1", "192.0.2.9", 17, 77, 1200, true, udp[1200:2400])),
	)
	// IPv6 fragments.
	frag6 := func(off int, more bool, b []byte) []byte {
		m := uint16(off / 8 << 3)
		if more {
			m |= 1
		}
		return ether(0x86DD, ipv6Packet("2001:db8::1", "2001:db8::9", 44, cat([]byte{17, 0}, u16(int(m)), u32(9), b)))
	}
	frames = append(frames, frag6(0, true, udp[:1600]), frag6(1600, false, udp[1600:]))
	got, err := readAll(t, writePcap(t, layers.LinkTypeEthernet, frames...))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got[0].payload != "x" || got[1].payload != string(payload) || got[1].src != "192.0.2.1" ||
		got[2].payload != string(payload) || got[2].src != "2001:db8::1" {
		t.Fatalf("got %d datagrams", len(got))
	}
	if got[1].ts != time.Unix(1700000000, 3).UnixNano() {
		t.Errorf("reassembled datagram time %d: want the last fragment's", got[1].ts)
	}
}

func TestReadCaptureFormats(t *testing.T) {
	frame := ether(0x0800, ipv4Packet("192.0.2.1", "192.0.2.9", 17, 1, 0, false, udpDatagram(5000, 2055, []byte("hello"))))
	pcap := writePcap(t, layers.LinkTypeEthernet, frame, frame)

	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(pcap)
	zw.Close()

	var ng bytes.Buffer
	nw, err := pcapgo.NewNgWriterInterface(&ng, pcapgo.NgInterface{LinkType: layers.LinkTypeEthernet, SnapLength: 65535}, pcapgo.DefaultNgWriterOptions)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := nw.AddInterface(pcapgo.NgInterface{LinkType: layers.LinkTypeRaw, SnapLength: 65535})
	if err != nil {
		t.Fatal(err)
	}
	ts := time.Unix(1700000000, 5000).UTC()
	nw.WritePacket(gopacket.CaptureInfo{Timestamp: ts, CaptureLength: len(frame), Length: len(frame)}, frame)
	rawFrame := frame[14:]
	nw.WritePacket(gopacket.CaptureInfo{Timestamp: ts, CaptureLength: len(rawFrame), Length: len(rawFrame), InterfaceIndex: raw}, rawFrame)
	nw.Flush()

	for _, c := range []struct {
		name string
		b    []byte
	}{{"pcap", pcap}, {"gzip pcap", gz.Bytes()}, {"pcapng, two link types", ng.Bytes()}} {
		got, err := readAll(t, c.b)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if len(got) != 2 || got[0].payload != "hello" || got[1].payload != "hello" || got[0].src != "192.0.2.1" {
			t.Errorf("%s: got %+v", c.name, got)
		}
	}

	if _, err := readAll(t, []byte("this is not a capture")); err == nil || !strings.Contains(err.Error(), "not a pcap or pcapng file") {
		t.Errorf("garbage: %v", err)
	}
	if _, err := readAll(t, nil); err == nil {
		t.Error("empty input: no error")
	}
	if _, err := readAll(t, pcap[:len(pcap)-5]); err == nil {
		t.Error("truncated capture: no error")
	}
}

// TestReadCaptureHostileSizes checks that a capture cannot make the reader allocate
// what it declares: a 4 GiB snap length, a 4 GiB packet.
func TestReadCaptureHostileSizes(t *testing.T) {
	frame := ether(0x0800, ipv4Packet("192.0.2.1", "192.0.2.9", 17, 1, 0, false, udpDatagram(5000, 2055, []byte("hello"))))
	pcap := writePcap(t, layers.LinkTypeEthernet, frame)
	binary.LittleEndian.PutUint32(pcap[16:], 0xFFFFFFFF) // snap length

	var ng bytes.Buffer
	nw, err := pcapgo.NewNgWriterInterface(&ng, pcapgo.NgInterface{LinkType: layers.LinkTypeEthernet, SnapLength: 0}, pcapgo.DefaultNgWriterOptions)
	if err != nil {
		t.Fatal(err)
	}
	nw.WritePacket(gopacket.CaptureInfo{Timestamp: time.Unix(1700000000, 0), CaptureLength: len(frame), Length: len(frame)}, frame)
	nw.Flush()
	ngHuge := bytes.Clone(ng.Bytes())
	// The enhanced packet block is the last one: claim a 4 GiB captured length.
	epb := bytes.LastIndex(ngHuge, []byte{6, 0, 0, 0})
	binary.LittleEndian.PutUint32(ngHuge[epb+20:], 0xFFFFFFF0)

	for _, c := range []struct {
		name    string
		b       []byte
		records int
		err     bool
	}{
		{"pcap with a 4 GiB snap length", pcap, 1, false},
		{"pcapng without a snap length", ng.Bytes(), 1, false},
		{"pcapng packet of 4 GiB", ngHuge, 0, true},
	} {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		got, err := readAll(t, c.b)
		runtime.ReadMemStats(&after)
		if len(got) != c.records || (err != nil) != c.err {
			t.Errorf("%s: %d datagrams, error %v", c.name, len(got), err)
		}
		if a := after.TotalAlloc - before.TotalAlloc; a > 8<<20 {
			t.Errorf("%s: allocated %d MiB", c.name, a>>20)
		}
	}
}

// TestReadCaptureCorpus reads every capture of the shared corpus and checks the UDP
// datagram count against INDEX.tsv.
func TestReadCaptureCorpus(t *testing.T) {
	dir := capturesDir(t)
	rows, err := readIndex(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, row := range rows {
		b, err := os.ReadFile(filepath.Join(dir, "files", row.file))
		if err != nil {
			t.Fatal(err)
		}
		got, err := readAll(t, b)
		if err != nil {
			t.Errorf("%s: %v", row.file, err)
			continue
		}
		if len(got) != row.datagrams {
			t.Errorf("%s: %d UDP datagrams, INDEX.tsv counts %d flow datagrams", row.file, len(got), row.datagrams)
		}
	}
}
