package ingest

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/flowhound/flowhound/flow"
	"github.com/flowhound/flowhound/gen"
)

// dgramIn is one datagram of a capture.
type dgramIn struct {
	ts      int64
	src     netip.Addr
	payload []byte
}

func readDatagrams(t testing.TB, path string) []dgramIn {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []dgramIn
	err = ReadCapture(f, func(ts int64, src netip.Addr, p []byte) error {
		out = append(out, dgramIn{ts, src, bytes.Clone(p)})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// dataOnly returns the v9/IPFIX datagram p from src without its template sets and
// without the data sets that d knows as options data (or does not know at all): what
// a restarted collector must decode from its saved state alone. ok is false when no
// data set is left.
func dataOnly(d *Decoder, src netip.Addr, p []byte) (out []byte, ok bool) {
	if len(p) < 4 {
		return nil, false
	}
	var version uint8
	var head, end int
	var domain uint32
	switch be.Uint16(p) {
	case 9:
		if len(p) < v9HeaderLen {
			return nil, false
		}
		version, head, end, domain = flow.VersionNetFlow9, v9HeaderLen, len(p), be.Uint32(p[16:])
	case 10:
		if len(p) < ipfixHeaderLen {
			return nil, false
		}
		version, head, end, domain = flow.VersionIPFIX, ipfixHeaderLen, min(int(be.Uint16(p[2:])), len(p)), be.Uint32(p[12:])
	default:
		return nil, false
	}
	ex := d.exporters[src.Unmap()]
	if ex == nil {
		return nil, false
	}
	out = append(out, p[:head]...)
	for off := head; off+4 <= end; {
		id, l := int(be.Uint16(p[off:])), int(be.Uint16(p[off+2:]))
		if l < 4 || off+l > end {
			break
		}
		if t := ex.templates[tmplKey{version, domain, uint16(id)}]; id >= 256 && t != nil && !t.options {
			out = append(out, p[off:off+l]...)
			ok = true
		}
		off += l
	}
	if version == flow.VersionIPFIX {
		be.PutUint16(out[2:], uint16(len(out)))
	}
	return out, ok
}

// TestTemplateStoreCaptures decodes real captures with decoder A, loads what A saved
// into a fresh decoder B, and checks that B decodes the data-only version of every
// datagram (no templates, no options data) to the records A gives.
func TestTemplateStoreCaptures(t *testing.T) {
	dir := capturesDir(t)
	for _, c := range []struct {
		file    string
		sampled bool // some records carry a sampling rate from options data
		relTime bool // IPFIX times relative to systemInitTimeMilliseconds from options data
	}{
		{file: "fluent-netflow__netflow.v9.data-template-data.pcap"},
		{file: "fluent-netflow__netflow.v9.sampler-mpls.pcap", sampled: true},
		{file: "logstash-netflow__netflow9_test_cisco_asr9k.pcap"}, // options templates, no sampled data
		{file: "pmacct-ta__102-NFv9-CISCO-f2rd-pretag-sampling-reload_traffic-00.pcap"},
		{file: "logstash-netflow__netflow9_test_nprobe_softflowd_multi_exporter.pcap"},
		{file: "logstash-netflow__netflow9_test_h3c_netstream_varstring.pcap"},
		{file: "logstash-netflow__ipfix_test_yaf.pcap"},
		{file: "logstash-netflow__ipfix_test_netscaler.pcap"},
		{file: "logstash-netflow__ipfix_test_mikrotik.pcap"},
		{file: "logstash-netflow__ipfix_test_openbsd_pflow.pcap"},
		{file: "pmacct-ta__100-IPFIXv10-CISCO_traffic-00.pcap"},
		{file: "pmacct-ta__104-IPFIXv10-IPv6-CISCO-sampling_option_traffic-00.pcap", sampled: true},
		{file: "pmacct-ta__111-IPFIXv10-NFv9-IPv6-IPv4-mix_sources_traffic-00.pcap"},
		{file: "pmacct-ta__500-IPFIXv10-BGP-CISCO-SRv6_traffic-00.pcap", sampled: true, relTime: true},
		{file: "pmacct-ta__501-IPFIXv10-BGP-IPv6-CISCO-MPLS_traffic-00.pcap", relTime: true},
	} {
		t.Run(strings.TrimSuffix(c.file, ".pcap"), func(t *testing.T) {
			dgs := readDatagrams(t, filepath.Join(dir, "files", c.file))
			a := NewDecoder(DecoderConfig{})
			for _, g := range dgs {
				a.Decode(g.src, g.ts, g.payload, nil)
			}
			changed, blob := a.SaveTemplates()
			if !changed {
				t.Error("changed false after templates were learned")
			}
			b := NewDecoder(DecoderConfig{})
			if err := b.LoadTemplates(blob); err != nil {
				t.Fatal(err)
			}
			if changed, again := b.SaveTemplates(); changed || !bytes.Equal(again, blob) {
				t.Errorf("after loading: changed %v, blob of %d bytes equal %v", changed, len(again), bytes.Equal(again, blob))
			}
			for _, s := range a.Exporters() {
				if s.Templates == 0 {
					continue
				}
				if bs := stats(t, b, s.Exporter); bs.Templates != s.Templates || bs.Templates == 0 {
					t.Errorf("exporter %v: %d templates loaded, %d saved", s.Exporter, bs.Templates, s.Templates)
				}
			}
			cold := NewDecoder(DecoderConfig{})
			var nrecs, nsampled, ncold, ndgrams int
			for i, g := range dgs {
				p, ok := dataOnly(a, g.src, g.payload)
				if !ok {
					continue
				}
				ndgrams++
				want, _ := a.Decode(g.src, g.ts, p, nil)
				got, _ := b.Decode(g.src, g.ts, p, nil)
				if !slices.Equal(got, want) {
					t.Fatalf("datagram %d: after loading\n got %+v\nwant %+v", i+1, got, want)
				}
				nrecs += len(got)
				for _, r := range got {
					if r.SamplingRate != 0 {
						nsampled++
					}
				}
				cold.Decode(g.src, g.ts, p, nil)
			}
			for _, s := range cold.Exporters() {
				ncold += int(s.Records)
			}
			t.Logf("%d data-only datagrams, %d records (%d sampled), %d templates in a %d-byte blob",
				ndgrams, nrecs, nsampled, b.shared.templates, len(blob))
			if nrecs == 0 || ncold != 0 {
				t.Errorf("%d records decoded after loading, %d without: want some, and none", nrecs, ncold)
			}
			if c.sampled && nsampled == 0 {
				t.Error("no record carries the sampling rate from the saved options data")
			}
			if c.relTime {
				checkSysInit(t, a, b)
			}
		})
	}
}

// checkSysInit checks that b holds the IPFIX system init times a learned.
func checkSysInit(t *testing.T, a, b *Decoder) {
	t.Helper()
	n := 0
	for addr, ex := range a.exporters {
		for k, dm := range ex.domains {
			if dm.sysInitMs == 0 {
				continue
			}
			n++
			if got := b.exporters[addr].domains[k]; got == nil || got.sysInitMs != dm.sysInitMs {
				t.Errorf("exporter %v domain %d: system init time not restored", addr, k.id)
			}
		}
	}
	if n == 0 {
		t.Error("no system init time in the capture")
	}
}

// TestTemplateStoreGen does the same with the generator's v9 and IPFIX streams, whose
// first datagram carries the templates.
func TestTemplateStoreGen(t *testing.T) {
	export := int64(1700000000) * 1e9
	var recs []flow.Record
	for i := 0; i < 200; i++ {
		r := flow.Record{
			SrcAddr: netip.AddrFrom4([4]byte{198, 51, 100, byte(i)}), DstAddr: netip.MustParseAddr("192.0.2.80"),
			SrcPort: uint16(30000 + i), DstPort: 443, Proto: 6, TCPFlags: 0x18, Packets: uint64(1 + i), Bytes: uint64(100 * (1 + i)),
			Start: export - 20e9, End: export - 1e9, InIf: 3, OutIf: 7, SrcAS: 64500, DstAS: 64501, SrcMask: 24, DstMask: 24,
		}
		if i%3 == 0 {
			r.SrcAddr = netip.MustParseAddr(fmt.Sprintf("2001:db8::%x", i+1))
			r.DstAddr = netip.MustParseAddr("2001:db8:1::80")
		}
		recs = append(recs, r)
	}
	for _, c := range []struct {
		format gen.Format
		tmplID uint16 // set id of template sets
	}{
		{gen.FormatV9, 0},
		{gen.FormatIPFIX, 2},
	} {
		t.Run(c.format.String(), func(t *testing.T) {
			dgs, err := gen.EncodeDatagrams(c.format, gen.Header{Boot: export - int64(time.Hour), Domain: 7}, recs)
			if err != nil {
				t.Fatal(err)
			}
			if len(dgs) < 3 {
				t.Fatalf("%d datagrams", len(dgs))
			}
			head := 20
			if c.format == gen.FormatIPFIX {
				head = 16
			}
			if be.Uint16(dgs[0][head:]) != c.tmplID {
				t.Fatal("the first datagram does not start with the templates")
			}
			a := NewDecoder(DecoderConfig{})
			if _, err := a.Decode(exp1, export, dgs[0], nil); err != nil {
				t.Fatal(err)
			}
			_, blob := a.SaveTemplates()
			b := NewDecoder(DecoderConfig{})
			if err := b.LoadTemplates(blob); err != nil {
				t.Fatal(err)
			}
			n := 0
			for i, p := range dgs[1:] {
				if be.Uint16(p[head:]) == c.tmplID {
					t.Fatalf("datagram %d carries templates", i+2)
				}
				want, errA := a.Decode(exp1, export, p, nil)
				got, errB := b.Decode(exp1, export, p, nil)
				if errA != nil || errB != nil || len(got) == 0 || !slices.Equal(got, want) {
					t.Fatalf("datagram %d: %v, %v\n got %+v\nwant %+v", i+2, errB, errA, got, want)
				}
				n += len(got)
			}
			if s := stats(t, b, exp1); s.Templates != 2 || s.Pending != 0 || s.Records != uint64(n) {
				t.Errorf("stats %+v", s)
			}
		})
	}
}

// TestTemplateStoreOptions checks that options templates and what options data said
// (sampler rates, domain-wide rate, system init time) survive.
func TestTemplateStoreOptions(t *testing.T) {
	v9Opt := set(1, v9OptionsTemplate(300, []tfield{{1, 4, 0}}, []tfield{{48, 1, 0}, {49, 1, 0}, {50, 4, 0}}))
	v9OptData := set(300, cat(u32(0), []byte{1, 2}, u32(1000), u32(0), []byte{2, 2}, u32(64)))
	v9Tmpl := set(0, v9Template(256, tfield{8, 4, 0}, tfield{48, 1, 0}))
	v9Data := set(256, cat(ip4("198.51.100.1"), []byte{1}, ip4("198.51.100.2"), []byte{2}, ip4("198.51.100.3"), []byte{9}))

	v9GlobalOpt := set(1, v9OptionsTemplate(301, []tfield{{1, 4, 0}}, []tfield{{34, 4, 0}}))
	v9GlobalData := set(301, cat(u32(0), u32(512)))

	ipfixOpt := set(3, ipfixOptionsTemplate(400, 1, tfield{149, 4, 0}, tfield{160, 8, 0}, tfield{305, 4, 0}, tfield{306, 4, 0}))
	ipfixOptData := set(400, cat(u32(5), be.AppendUint64(nil, (1700000000-100)*1000), u32(1), u32(99)))
	ipfixTmpl := set(2, ipfixTemplate(256, tfield{8, 4, 0}, tfield{22, 4, 0}, tfield{21, 4, 0}))
	ipfixData := set(256, cat(ip4("198.51.100.1"), u32(90000), u32(99000)))

	for _, c := range []struct {
		name     string
		learn    []byte // templates and options data
		data     []byte // data only
		rates    []uint32
		start    int64 // of the first record, when not 0
		exporter uint32
	}{
		{"v9 sampler ids", v9Datagram(6, 1000, 1700000000, 1, 0, v9Opt, v9OptData, v9Tmpl),
			v9Datagram(3, 1000, 1700000000, 2, 0, v9Data), []uint32{1000, 64, 0}, 0, 64},
		{"v9 domain-wide rate", v9Datagram(3, 1000, 1700000000, 1, 0, v9GlobalOpt, v9GlobalData, v9Tmpl),
			v9Datagram(3, 1000, 1700000000, 2, 0, v9Data), []uint32{512, 512, 512}, 0, 512},
		{"ipfix rate and init time", ipfixMessage(1700000000, 0, 5, ipfixOpt, ipfixOptData, ipfixTmpl),
			ipfixMessage(1700000000, 1, 5, ipfixData), []uint32{100}, now - 10e9, 100},
	} {
		t.Run(c.name, func(t *testing.T) {
			a := NewDecoder(DecoderConfig{})
			if _, err := a.Decode(exp1, now, c.learn, nil); err != nil {
				t.Fatal(err)
			}
			_, blob := a.SaveTemplates()
			b := NewDecoder(DecoderConfig{})
			if err := b.LoadTemplates(blob); err != nil {
				t.Fatal(err)
			}
			if s := stats(t, b, exp1); s.SamplingRate != c.exporter || s.SamplingSource != "options" || s.Templates != 2 {
				t.Errorf("stats after loading: rate %d from %q, %d templates", s.SamplingRate, s.SamplingSource, s.Templates)
			}
			for k, tm := range b.exporters[exp1].templates {
				if tm.learnedAt != now {
					t.Errorf("template %d learned at %d, want %d", k.id, tm.learnedAt, now)
				}
			}
			want, _ := a.Decode(exp1, now, c.data, nil)
			got, err := b.Decode(exp1, now, c.data, nil)
			if err != nil || !slices.Equal(got, want) {
				t.Fatalf("%v\n got %+v\nwant %+v", err, got, want)
			}
			var rates []uint32
			for _, r := range got {
				rates = append(rates, r.SamplingRate)
			}
			if !slices.Equal(rates, c.rates) {
				t.Errorf("rates %v, want %v", rates, c.rates)
			}
			if c.start != 0 && got[0].Start != c.start {
				t.Errorf("start %v from the export time, want %v", time.Duration(got[0].Start-now), time.Duration(c.start-now))
			}
		})
	}
}

// TestSaveTemplatesChanged walks through what does and does not change the saved
// state.
func TestSaveTemplatesChanged(t *testing.T) {
	v9Tmpl := v9Datagram(1, 1000, 1700000000, 0, 0, set(0, v9Template(256, v9Fields...)))
	v9Data := v9Datagram(1, 1000, 1700000000, 1, 0, set(256, v9Record(1)))
	v9Other := v9Datagram(1, 1000, 1700000000, 2, 0, set(0, v9Template(256, tfield{8, 4, 0}, tfield{12, 4, 0})))
	ipfixTmpl := ipfixMessage(1700000000, 0, 0, set(2, ipfixTemplate(300, tfield{8, 4, 0}, tfield{2, 4, 0})))
	ipfixWithdraw := ipfixMessage(1700000000, 0, 0, set(2, cat(u16(300), u16(0))))
	opt := set(3, ipfixOptionsTemplate(400, 1, tfield{149, 4, 0}, tfield{34, 4, 0}))
	rate := func(r uint32) []byte { return ipfixMessage(1700000000, 0, 0, set(400, cat(u32(0), u32(r)))) }
	exp3 := netip.MustParseAddr("192.0.2.3")

	d := NewDecoder(DecoderConfig{})
	steps := []struct {
		name      string
		from      netip.Addr
		p         []byte
		at        int64 // arrival of p; when p is nil, forget exporters idle at this time
		changed   bool
		templates int // in the blob
	}{
		{"fresh decoder", exp1, nil, 0, false, 0},
		{"template learned", exp1, v9Tmpl, now, true, 1},
		{"nothing since", exp1, nil, 0, false, 1},
		{"template refreshed", exp1, v9Tmpl, now + 1e9, false, 1},
		{"data", exp1, v9Data, now + 2e9, false, 1},
		{"template changed shape", exp1, v9Other, now + 3e9, true, 1},
		{"IPFIX template", exp1, ipfixTmpl, now + 4e9, true, 2},
		{"IPFIX withdrawal", exp1, ipfixWithdraw, now + 5e9, true, 1},
		{"withdrawal of a template not held", exp1, ipfixWithdraw, now + 6e9, false, 1},
		{"options template", exp1, ipfixMessage(1700000000, 0, 0, opt), now + 7e9, true, 2},
		{"sampling rate", exp1, rate(100), now + 8e9, true, 2},
		{"same sampling rate", exp1, rate(100), now + 9e9, false, 2},
		{"new sampling rate", exp1, rate(200), now + 10e9, true, 2},
		{"second exporter's template", exp2, v9Tmpl, now - int64(2*time.Hour), true, 3},
		{"v5 exporter", exp3, v5Datagram(1, 1, 0, 0), now - int64(3*time.Hour), false, 3},
		{"idle exporter with nothing saved forgotten", exp3, nil, now - int64(2*time.Hour) + 1, false, 3},
		{"idle exporter forgotten", exp2, nil, now + 11e9, true, 2},
	}
	for _, s := range steps {
		switch {
		case s.p != nil:
			d.Decode(s.from, s.at, s.p, nil)
		case s.at != 0:
			d.forgetIdle(s.at) // what Decode does when the exporter table is full
		}
		if got := d.TemplatesChanged(); got != s.changed {
			t.Errorf("%s: TemplatesChanged %v, want %v", s.name, got, s.changed)
		}
		changed, blob := d.SaveTemplates()
		if changed != s.changed {
			t.Errorf("%s: changed %v, want %v", s.name, changed, s.changed)
		}
		if d.TemplatesChanged() {
			t.Errorf("%s: still changed after saving", s.name)
		}
		fresh := NewDecoder(DecoderConfig{})
		if err := fresh.LoadTemplates(blob); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if fresh.shared.templates != s.templates {
			t.Errorf("%s: %d templates in the blob, want %d", s.name, fresh.shared.templates, s.templates)
		}
		if fresh.TemplatesChanged() {
			t.Errorf("%s: a decoder that loaded a blob in full says it changed", s.name)
		}
	}
	// The withdrawn template is gone after a restart too.
	fresh := NewDecoder(DecoderConfig{})
	_, blob := d.SaveTemplates()
	fresh.LoadTemplates(blob)
	recs, _ := fresh.Decode(exp1, now, ipfixMessage(1700000000, 0, 0, set(300, cat(ip4("198.51.100.1"), u32(1)))), nil)
	if s := stats(t, fresh, exp1); len(recs) != 0 || s.Pending != 1 {
		t.Errorf("data for the withdrawn template: %d records, %d pending", len(recs), s.Pending)
	}
}

// TestTemplateStoreOddState checks that whatever state Decode can build saves to a
// blob that loads.
func TestTemplateStoreOddState(t *testing.T) {
	zoned := netip.MustParseAddr("fe80::1%eth0")
	tmpl := v9Datagram(1, 1000, 1700000000, 0, 0, set(0, v9Template(256, v9Fields...)))
	data := v9Datagram(1, 1000, 1700000000, 1, 0, set(256, v9Record(1)))
	// An IPFIX init time with the top bit set: a negative int64, which decoding ignores.
	badInit := ipfixMessage(1700000000, 0, 0, set(3, ipfixOptionsTemplate(400, 1, tfield{149, 4, 0}, tfield{160, 8, 0})),
		set(400, cat(u32(0), be.AppendUint64(nil, 1<<63+5))))
	a := NewDecoder(DecoderConfig{})
	a.Decode(zoned, now, tmpl, nil)
	a.Decode(netip.Addr{}, now, tmpl, nil)
	a.Decode(exp1, now, badInit, nil)
	_, blob := a.SaveTemplates()
	b := NewDecoder(DecoderConfig{})
	if err := b.LoadTemplates(blob); err != nil {
		t.Fatal(err)
	}
	if len(b.exporters) != 2 || b.exporters[netip.Addr{}] != nil || b.shared.templates != 2 {
		t.Errorf("%d exporters, %d templates; want the zoned one and exp1, the zero address left out", len(b.exporters), b.shared.templates)
	}
	if recs, err := b.Decode(zoned, now, data, nil); err != nil || len(recs) != 1 || recs[0].Exporter != zoned {
		t.Errorf("exporter with a zone: %v, %+v", err, recs)
	}
}

// TestSaveTemplatesConcurrent saves while another goroutine decodes template changes
// (run with -race): the snapshot must not race with Decode.
func TestSaveTemplatesConcurrent(t *testing.T) {
	d := NewDecoder(DecoderConfig{})
	shapes := [][]byte{
		v9Datagram(1, 1000, 1700000000, 0, 0, set(0, v9Template(256, v9Fields...))),
		v9Datagram(1, 1000, 1700000000, 0, 0, set(0, v9Template(256, tfield{8, 4, 0}, tfield{12, 4, 0}))),
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < 2000; i++ {
			d.Decode(exp1, now+int64(i), shapes[i%2], nil)
		}
	}()
	for {
		select {
		case <-done:
			return
		default:
		}
		_, blob := d.SaveTemplates()
		if err := NewDecoder(DecoderConfig{}).LoadTemplates(blob); err != nil {
			t.Fatal(err)
		}
	}
}

// testBlob frames a blob body as SaveTemplates does.
func testBlob(body []byte) []byte {
	b := append([]byte(blobMagic), blobFormat)
	b = append(b, body...)
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

// Blob body builders; they write what they are given, valid or not.
func blobExporter(addr netip.Addr, lastSeen int64, templates [][]byte, domains [][]byte) []byte {
	a, _ := addr.MarshalBinary()
	b := append(binary.AppendUvarint(nil, uint64(len(a))), a...)
	b = binary.AppendVarint(b, lastSeen)
	b = binary.AppendUvarint(b, uint64(len(templates)))
	b = append(b, cat(templates...)...)
	b = binary.AppendUvarint(b, uint64(len(domains)))
	return append(b, cat(domains...)...)
}

func blobTemplate(version, flags byte, domain uint32, id int, record []byte) []byte {
	b := cat([]byte{version, flags}, u32(domain), u16(id))
	b = binary.AppendVarint(b, now)
	b = binary.AppendUvarint(b, uint64(len(record)))
	return append(b, record...)
}

func blobDomain(version byte, domain, rate uint32, sysInit int64, samplers ...sampler) []byte {
	b := cat([]byte{version}, u32(domain), u32(rate))
	b = binary.AppendVarint(b, sysInit)
	b = binary.AppendUvarint(b, uint64(len(samplers)))
	for _, s := range samplers {
		b = binary.AppendUvarint(b, s.id)
		b = append(b, u32(s.rate)...)
	}
	return b
}

func blobBodyOf(exporters ...[]byte) []byte {
	return cat(binary.AppendUvarint(nil, uint64(len(exporters))), cat(exporters...))
}

func TestLoadTemplatesInvalid(t *testing.T) {
	v9T := v9Template(256, v9Fields...)
	good := blobBodyOf(blobExporter(exp1, now, [][]byte{blobTemplate(9, 0, 0, 256, v9T)},
		[][]byte{blobDomain(9, 0, 10, 0)}))
	valid := testBlob(good)
	flipped := bytes.Clone(valid)
	flipped[len(flipped)/2] ^= 0x40
	future := testBlob(good)
	future[len(blobMagic)] = 2

	for _, c := range []struct {
		name string
		blob []byte
		want string
	}{
		{"foreign bytes", []byte("{\"templates\": []}"), "not a flowhound template blob"},
		{"too short", []byte("FHTP"), "not a flowhound template blob"},
		{"unknown format version", future, "format version 2"},
		{"flipped bit", flipped, "corrupt"},
		{"truncated", valid[:len(valid)-7], "corrupt"},
		{"cut short (checksum fixed)", testBlob(good[:len(good)-3]), "cut short"},
		{"trailing bytes", testBlob(append(bytes.Clone(good), 0)), "bytes after the last exporter"},
		{"exporter count too large", testBlob(binary.AppendUvarint(nil, 1<<40)), "exporter count"},
		{"address length", testBlob(cat([]byte{1, 5}, make([]byte, 5), []byte{0, 0, 0})), "address of 5 bytes"},
		{"template of version 5", testBlob(blobBodyOf(blobExporter(exp1, now, [][]byte{blobTemplate(5, 0, 0, 256, v9T)}, nil))), "version 5"},
		{"unknown flags", testBlob(blobBodyOf(blobExporter(exp1, now, [][]byte{blobTemplate(9, 2, 0, 256, v9T)}, nil))), "unknown flags"},
		{"record for another id", testBlob(blobBodyOf(blobExporter(exp1, now, [][]byte{blobTemplate(9, 0, 0, 257, v9T)}, nil))), "holds template 256"},
		{"record with extra bytes", testBlob(blobBodyOf(blobExporter(exp1, now, [][]byte{blobTemplate(9, 0, 0, 256, cat(v9T, u32(0)))}, nil))), "holds template 256"},
		{"v9 record read as options", testBlob(blobBodyOf(blobExporter(exp1, now, [][]byte{blobTemplate(9, 1, 0, 256, v9T)}, nil))), "options template"},
		{"IPFIX withdrawal", testBlob(blobBodyOf(blobExporter(exp1, now, [][]byte{blobTemplate(10, 0, 0, 256, cat(u16(256), u16(0)))}, nil))), "withdrawal"},
		{"template id below 256", testBlob(blobBodyOf(blobExporter(exp1, now, [][]byte{blobTemplate(10, 0, 0, 2, ipfixTemplate(2, tfield{8, 4, 0}))}, nil))), "ids start at 256"},
		{"record length 0", testBlob(blobBodyOf(blobExporter(exp1, now, [][]byte{blobTemplate(10, 0, 0, 256, ipfixTemplate(256, tfield{8, 0, 0}))}, nil))), "record length 0"},
		{"absurd domain rate", testBlob(blobBodyOf(blobExporter(exp1, now, nil, [][]byte{blobDomain(9, 0, 1<<30, 0)}))), "rate"},
		{"sampler rate 0", testBlob(blobBodyOf(blobExporter(exp1, now, nil, [][]byte{blobDomain(10, 0, 0, 0, sampler{1, 0})}))), "sampler 1 rate 0"},
		{"domain of sFlow", testBlob(blobBodyOf(blobExporter(exp1, now, nil, [][]byte{blobDomain(flow.VersionSFlow5, 0, 10, 0)}))), "version 245"},
		// Valid up to the second exporter: the first must not be loaded either.
		{"second exporter bad", testBlob(cat(good[:len(good)], blobExporter(exp2, now, [][]byte{blobTemplate(9, 0, 0, 256, v9T[:10])}, nil))), "bytes after"},
		{"second of two exporters bad", testBlob(blobBodyOf(good[1:], blobExporter(exp2, now, [][]byte{blobTemplate(9, 0, 0, 256, v9T[:10])}, nil))), "fields need"},
	} {
		t.Run(c.name, func(t *testing.T) {
			d := NewDecoder(DecoderConfig{})
			// State from before, which a refused blob must leave alone.
			d.Decode(exp2, now, ipfixMessage(1700000000, 0, 0, set(2, ipfixTemplate(300, tfield{8, 4, 0}))), nil)
			_, before := d.SaveTemplates()
			err := d.LoadTemplates(c.blob)
			if !errors.Is(err, ErrTemplateBlob) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want ErrTemplateBlob saying %q", err, c.want)
			}
			if changed, after := d.SaveTemplates(); changed || !bytes.Equal(after, before) || len(d.exporters) != 1 {
				t.Errorf("refused blob changed the decoder (%d exporters)", len(d.exporters))
			}
		})
	}
	// The valid blob the cases break loads.
	d := NewDecoder(DecoderConfig{})
	if err := d.LoadTemplates(valid); err != nil || d.shared.templates != 1 {
		t.Errorf("valid blob: %v, %d templates", err, d.shared.templates)
	}
	// Nothing stored yet.
	if err := d.LoadTemplates(nil); err != nil {
		t.Errorf("empty blob: %v", err)
	}
}

// TestLoadTemplatesBounds checks that DecoderConfig bounds apply to what is loaded and
// that what the decoder already holds wins over the blob.
func TestLoadTemplatesBounds(t *testing.T) {
	exp3 := netip.MustParseAddr("2001:db8::3")
	src := NewDecoder(DecoderConfig{})
	for _, e := range []netip.Addr{exp1, exp2, exp3} {
		for id := 256; id < 259; id++ {
			p := v9Datagram(1, 1000, 1700000000, 0, 0, set(0, v9Template(id, v9Fields...)))
			if _, err := src.Decode(e, now, p, nil); err != nil {
				t.Fatal(err)
			}
		}
	}
	_, blob := src.SaveTemplates()
	for _, c := range []struct {
		name      string
		cfg       DecoderConfig
		exporters int
		templates int
		drops     uint64 // template_limit drops counted over all exporters
	}{
		{"no bounds reached", DecoderConfig{}, 3, 9, 0},
		{"MaxTemplates", DecoderConfig{MaxTemplates: 2}, 3, 6, 3},
		{"MaxTemplatesTotal", DecoderConfig{MaxTemplatesTotal: 4}, 3, 4, 5},
		{"MaxExporters", DecoderConfig{MaxExporters: 2}, 2, 6, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			d := NewDecoder(c.cfg)
			err := d.LoadTemplates(blob)
			if c.templates == 9 && err != nil || c.templates < 9 && !errors.Is(err, ErrTemplatesSkipped) {
				t.Errorf("error %v", err)
			}
			var drops uint64
			for _, s := range d.Exporters() {
				drops += s.Drops["template_limit"]
			}
			if len(d.exporters) != c.exporters || d.shared.templates != c.templates || drops != c.drops {
				t.Errorf("%d exporters, %d templates, %d drops; want %d, %d, %d", len(d.exporters), d.shared.templates, drops,
					c.exporters, c.templates, c.drops)
			}
			checkBounds(t, d, d.cfg)
			if c.cfg.MaxExporters == 2 && d.exporters[exp3] != nil {
				t.Error("exporters are loaded in address order: the IPv6 one is beyond the bound")
			}
			if d.TemplatesChanged() == (err == nil) {
				t.Errorf("changed %v after a load that returned %v", d.TemplatesChanged(), err)
			}
		})
	}

	t.Run("held template wins", func(t *testing.T) {
		d := NewDecoder(DecoderConfig{Sampling: map[netip.Addr]uint32{exp2: 8}})
		short := v9Template(256, tfield{8, 4, 0}, tfield{12, 4, 0})
		d.Decode(exp1, now, v9Datagram(1, 1000, 1700000000, 0, 0, set(0, short)), nil)
		if err := d.LoadTemplates(blob); err != nil {
			t.Fatal(err)
		}
		if got := d.exporters[exp1].templates[tmplKey{9, 0, 256}].raw; !bytes.Equal(got, short) {
			t.Error("the blob replaced a template learned from the exporter")
		}
		if d.shared.templates != 9 || d.exporters[exp1].templateChanges != 0 {
			t.Errorf("%d templates, %d changes", d.shared.templates, d.exporters[exp1].templateChanges)
		}
		recs, _ := d.Decode(exp2, now, v9Datagram(1, 1000, 1700000000, 1, 0, set(257, v9Record(1))), nil)
		if len(recs) != 1 || recs[0].SamplingRate != 8 {
			t.Errorf("configured sampling on a loaded exporter: %+v", recs)
		}
		checkBounds(t, d, d.cfg)
	})
}

// FuzzLoadTemplates loads arbitrary blobs: a refused one leaves the decoder empty, an
// accepted one stays within the bounds, saves back to a blob that loads to the same
// state, and its templates decode whatever data comes for them. Each input is tried
// as given and as a blob body with a valid header and checksum, so that the fuzzer
// gets past the checksum.
func FuzzLoadTemplates(f *testing.F) {
	d := NewDecoder(DecoderConfig{})
	d.Decode(exp1, now, v9Datagram(6, 1000, 1700000000, 1, 0,
		set(1, v9OptionsTemplate(300, []tfield{{1, 4, 0}}, []tfield{{48, 1, 0}, {49, 1, 0}, {50, 4, 0}})),
		set(300, cat(u32(0), []byte{1, 2}, u32(1000), u32(0), []byte{2, 2}, u32(64))),
		set(0, v9Template(256, v9Fields...))), nil)
	d.Decode(exp2, now, ipfixMessage(1700000000, 0, 5,
		set(3, ipfixOptionsTemplate(400, 1, tfield{149, 4, 0}, tfield{160, 8, 0}, tfield{305, 4, 0}, tfield{306, 4, 0})),
		set(400, cat(u32(1), be.AppendUint64(nil, 1), u32(1), u32(9))),
		set(2, ipfixTemplate(256, tfield{8, 4, 0}, tfield{82, varLen, 0}, tfield{1, 4, 29305}, tfield{22, 4, 0}, tfield{21, 4, 0}))), nil)
	_, blob := d.SaveTemplates()
	f.Add(blob)
	f.Add(blob[blobHeadLen : len(blob)-blobCRCLen])
	f.Add([]byte{})
	cfg := DecoderConfig{MaxExporters: 3, MaxTemplates: 4, MaxTemplatesTotal: 8, MaxPending: 4, MaxPendingBytes: 4096}
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, blob := range [][]byte{b, testBlob(b)} {
			d := NewDecoder(cfg)
			err := d.LoadTemplates(blob)
			if errors.Is(err, ErrTemplateBlob) {
				if len(d.exporters) != 0 || d.shared.templates != 0 || d.shared.domains != 0 {
					t.Fatalf("refused blob left %d exporters: %v", len(d.exporters), err)
				}
				continue
			}
			if err != nil && !errors.Is(err, ErrTemplatesSkipped) {
				t.Fatalf("error %v", err)
			}
			checkBounds(t, d, cfg)
			_, saved := d.SaveTemplates()
			d2 := NewDecoder(cfg)
			if err := d2.LoadTemplates(saved); err != nil {
				t.Fatalf("reloading a saved blob: %v", err)
			}
			if _, again := d2.SaveTemplates(); !bytes.Equal(again, saved) {
				t.Fatalf("save, load and save give different blobs")
			}
			for addr, ex := range d.exporters {
				for k := range ex.templates {
					body := cat(b, b, b)
					var p []byte
					if k.version == flow.VersionNetFlow9 {
						p = v9Datagram(1, 1000, 1700000000, 1, k.domain, set(int(k.id), body))
					} else {
						p = ipfixMessage(1700000000, 1, k.domain, set(int(k.id), body))
					}
					recs, err := d.Decode(addr, now, p, nil)
					if err != nil {
						if _, ok := ErrReason(err); !ok {
							t.Fatalf("error of type %T: %v", err, err)
						}
					}
					for i := range recs {
						if r := &recs[i]; r.Exporter != addr || r.Version != k.version {
							t.Fatalf("record %d: %+v", i, r)
						}
					}
				}
			}
			checkBounds(t, d, cfg)
		}
	})
}

// Save and load cost for a large table: 1000 exporters of 10 templates each.
func benchTemplateDecoder(b *testing.B) *Decoder {
	d := NewDecoder(DecoderConfig{})
	for e := 0; e < 1000; e++ {
		addr := netip.AddrFrom4([4]byte{10, 0, byte(e >> 8), byte(e)})
		var sets []byte
		for id := 256; id < 266; id++ {
			sets = append(sets, set(0, v9Template(id, v9Fields...))...)
		}
		if _, err := d.Decode(addr, now, v9Datagram(10, 1000, 1700000000, 0, 0, sets), nil); err != nil {
			b.Fatal(err)
		}
	}
	return d
}

func BenchmarkSaveTemplates(b *testing.B) {
	d := benchTemplateDecoder(b)
	b.ReportAllocs()
	var blob []byte
	for b.Loop() {
		_, blob = d.SaveTemplates()
	}
	b.ReportMetric(float64(len(blob)), "bytes/blob")
}

func BenchmarkLoadTemplates(b *testing.B) {
	_, blob := benchTemplateDecoder(b).SaveTemplates()
	b.ReportAllocs()
	for b.Loop() {
		if err := NewDecoder(DecoderConfig{}).LoadTemplates(blob); err != nil {
			b.Fatal(err)
		}
	}
}
