package ingest

import (
	"bytes"
	"encoding/json"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/flowhound/flowhound/flow"
	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// Fuzz targets, one per decoder family. An input is a sequence of datagrams, each
// preceded by its 2-byte length, fed to one Decoder: templates learned from one
// datagram apply to the next, as in a real stream. The version field of every
// datagram is forced to the target's family so that no run is wasted on other
// decoders. Seeds: testdata/fuzz/<target>/, written from the capture corpus by
// TestFuzzSeeds -update.

func FuzzDecodeNetFlowV5(f *testing.F) {
	f.Add(cat(u16(24+48*3), v5Datagram(3, 3, 7, 0x4000|64)))
	versions := [4]byte{1, 5, 7, 8}
	fuzzDecode(f, func(p []byte) {
		if len(p) >= 2 {
			p[0], p[1] = 0, versions[p[1]&3]
		}
	})
}

func FuzzDecodeV9(f *testing.F) {
	tmpl := set(0, v9Template(256, v9Fields...))
	p := v9Datagram(3, 100000, 1700000000, 1, 0, tmpl, set(256, cat(v9Record(1), v9Record(2))))
	f.Add(cat(u16(len(p)), p))
	fuzzDecode(f, func(p []byte) {
		if len(p) >= 2 {
			p[0], p[1] = 0, 9
		}
	})
}

func FuzzDecodeIPFIX(f *testing.F) {
	opt := set(3, ipfixOptionsTemplate(400, 1, tfield{149, 4, 0}, tfield{160, 8, 0}, tfield{305, 4, 0}, tfield{306, 4, 0}))
	optData := set(400, cat(u32(1), be.AppendUint64(nil, 1), u32(1), u32(9)))
	tmpl := set(2, ipfixTemplate(256, tfield{8, 4, 0}, tfield{82, varLen, 0}, tfield{1, 4, 29305}, tfield{22, 4, 0}, tfield{21, 4, 0}))
	data := set(256, cat(ip4("198.51.100.1"), []byte{2, 'a', 'b'}, u32(5), u32(90000), u32(99000)))
	p := ipfixMessage(1700000000, 0, 5, opt, optData, tmpl, data)
	f.Add(cat(u16(len(p)), p))
	fuzzDecode(f, func(p []byte) {
		if len(p) >= 2 {
			p[0], p[1] = 0, 10
		}
	})
}

func FuzzDecodeSFlow(f *testing.F) {
	p := sflowDatagram(1, 0, sflowFlowSampleB(1, 10, 1, 2, sflowRawHeader(60, ethIPv4TCP("198.51.100.1", "192.0.2.1", 1, 2, 2))),
		sflowSample(2, cat(u32(1), u32(11), u32(1), sflowGenericCounters(11, 1e12, 2e12))))
	f.Add(cat(u16(len(p)), p))
	fuzzDecode(f, func(p []byte) {
		if len(p) >= 4 {
			p[0], p[1], p[2], p[3] = 0, 0, 0, 5
		}
	})
}

func fuzzDecode(f *testing.F, fix func([]byte)) {
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg := DecoderConfig{MaxPending: 4, MaxPendingBytes: 4096, MaxTemplates: 8, MaxInterfaces: 4}
		d := NewDecoder(cfg)
		var dst []flow.Record
		for n := 0; len(data) >= 2; n++ {
			l := min(int(be.Uint16(data)), len(data)-2)
			p := append([]byte(nil), data[2:2+l]...)
			data = data[2+l:]
			fix(p)
			recs, err := d.Decode(exp1, now, p, dst[:0])
			if err != nil {
				if _, ok := ErrReason(err); !ok {
					t.Fatalf("error of type %T: %v", err, err)
				}
			}
			for i := range recs {
				r := &recs[i]
				if r.Exporter != exp1 || r.Received < now || r.Version == 0 {
					t.Fatalf("record %d: %+v", i, r)
				}
				if b := r.AppendJSON(nil); !json.Valid(b) {
					t.Fatalf("record %d: invalid JSON %s", i, b)
				}
			}
			dst = recs
			checkBounds(t, d, cfg)
		}
		d.Flush()
		checkBounds(t, d, cfg)
		if d.pendingBytes != 0 {
			t.Fatalf("%d pending bytes after Flush", d.pendingBytes)
		}
		// Whatever state decoding built saves to a blob that loads in full.
		_, blob := d.SaveTemplates()
		d2 := NewDecoder(cfg)
		if err := d2.LoadTemplates(blob); err != nil || d2.shared.templates != d.shared.templates {
			t.Fatalf("saved templates: %v; %d loaded of %d", err, d2.shared.templates, d.shared.templates)
		}
	})
}

// checkBounds asserts that no state grows past the configured bounds.
func checkBounds(t *testing.T, d *Decoder, cfg DecoderConfig) {
	t.Helper()
	if d.pendingBytes > cfg.MaxPendingBytes || d.pendingBytes < 0 {
		t.Fatalf("pending bytes %d, bound %d", d.pendingBytes, cfg.MaxPendingBytes)
	}
	total, pending := 0, 0
	for _, ex := range d.exporters {
		total += len(ex.templates)
		pending += ex.npending
		n := 0
		for i := range ex.pending {
			if ex.pending[i].used {
				n++
			}
		}
		if n != ex.npending || n > cfg.MaxPending {
			t.Fatalf("pending sets %d (counted %d), bound %d", n, ex.npending, cfg.MaxPending)
		}
		if len(ex.templates) > cfg.MaxTemplates {
			t.Fatalf("%d templates, bound %d", len(ex.templates), cfg.MaxTemplates)
		}
		if len(ex.ifaces) > cfg.MaxInterfaces {
			t.Fatalf("%d interfaces, bound %d", len(ex.ifaces), cfg.MaxInterfaces)
		}
	}
	if pending != d.npending || len(d.pendq) > 2*d.npending+65 {
		t.Fatalf("%d sets pending, %d counted, queue of %d", pending, d.npending, len(d.pendq))
	}
	if total != d.shared.templates {
		t.Fatalf("%d templates held, %d counted", total, d.shared.templates)
	}
}

// FuzzReadCapture feeds arbitrary files to the capture reader: it must return an error
// or the datagrams, never panic or allocate what a hostile header declares.
func FuzzReadCapture(f *testing.F) {
	frame := ether(0x0800, ipv4Packet("192.0.2.1", "192.0.2.9", 17, 1, 0, false, udpDatagram(5000, 2055, []byte("hello"))))
	frag := ether(0x0800, ipv4Packet("192.0.2.1", "192.0.2.9", 17, 7, 0, true, udpDatagram(5000, 2055, make([]byte, 16))))
	f.Add(writePcap(f, layers.LinkTypeEthernet, frame, frag))
	f.Add(writePcap(f, layers.LinkTypeRaw, frame[14:]))
	f.Add(writePcap(f, layers.LinkTypeLinuxSLL, cat(make([]byte, 14), u16(0x0800), frame[14:])))
	var ng bytes.Buffer
	nw, _ := pcapgo.NewNgWriterInterface(&ng, pcapgo.NgInterface{LinkType: layers.LinkTypeEthernet, SnapLength: 65535}, pcapgo.DefaultNgWriterOptions)
	nw.WritePacket(gopacket.CaptureInfo{Timestamp: time.Unix(1700000000, 0), CaptureLength: len(frame), Length: len(frame)}, frame)
	nw.Flush()
	f.Add(ng.Bytes())
	f.Fuzz(func(t *testing.T, b []byte) {
		n := 0
		err := ReadCapture(bytes.NewReader(b), func(ts int64, src netip.Addr, payload []byte) error {
			if !src.IsValid() {
				t.Fatalf("datagram %d without a source", n)
			}
			n++
			return nil
		})
		// safeNext turns a panic of the capture library into an error; the guards are
		// meant to stop malformed files before that.
		if err != nil && strings.Contains(err.Error(), "malformed capture (") {
			t.Fatalf("capture library panicked: %v", err)
		}
	})
}
