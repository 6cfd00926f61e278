package ingest

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/flowhound/flowhound/flow"
)

var (
	exp1 = netip.MustParseAddr("192.0.2.1")
	exp2 = netip.MustParseAddr("192.0.2.2")
	now  = int64(1700000000) * 1e9
)

func stats(t *testing.T, d *Decoder, addr netip.Addr) ExporterStats {
	t.Helper()
	for _, s := range d.Exporters() {
		if s.Exporter == addr {
			return s
		}
	}
	t.Fatalf("no stats for %v", addr)
	return ExporterStats{}
}

func TestV5(t *testing.T) {
	d := NewDecoder(DecoderConfig{})
	p := v5Datagram(2, 2, 1000, 0x4000|100)
	recs, err := d.Decode(exp1, now, p, nil)
	if err != nil || len(recs) != 2 {
		t.Fatalf("got %d records, %v", len(recs), err)
	}
	r := recs[1]
	want := flow.Record{
		Received: now, Exporter: exp1, Version: 5, ObservationDomain: 1<<8 | 2,
		SrcAddr: netip.MustParseAddr("10.0.0.1"), DstAddr: netip.MustParseAddr("192.0.2.10"),
		NextHop: netip.MustParseAddr("10.0.0.254"), InIf: 3, OutIf: 7, Packets: 11, Bytes: 16500,
		// export 1700000000 s, uptime 100 s: First 90 s is 10 s before export.
		Start: now - 10e9, End: now - 1e9, SrcPort: 40001, DstPort: 443, TCPFlags: 0x12,
		Proto: 6, TOS: 0x20, SrcAS: 64500, DstAS: 64501, SrcMask: 24, DstMask: 16,
		SamplingRate: 100, Has: hasV5,
	}
	if r != want {
		t.Errorf("record\n got %+v\nwant %+v", r, want)
	}
	s := stats(t, d, exp1)
	if s.SamplingRate != 100 || s.SamplingSource != "header" || s.Records != 2 {
		t.Errorf("stats %+v", s)
	}
}

func TestRelTime(t *testing.T) {
	const export = int64(1e18)
	for _, c := range []struct {
		name       string
		uptime, ms uint32
		want       int64
	}{
		{"before export", 100000, 90000, export - 10e9},
		{"same", 5, 5, export},
		{"uptime wrapped since the flow began", 1000, 0xFFFFFFFF - 999, export - 2000e6},
		{"stamped a little after the header", 1000, 1500, export + 500e6},
		{"far ahead: an earlier turn of the counter", 1000, 1000 + 2*maxAheadMs, export - (1<<32-2*maxAheadMs)*1e6},
	} {
		if got := relTime(export, c.uptime, c.ms); got != c.want {
			t.Errorf("%s: relTime = %d, want %d (diff %v)", c.name, got, c.want, time.Duration(got-c.want))
		}
	}
}

func TestSamplingOverride(t *testing.T) {
	d := NewDecoder(DecoderConfig{Sampling: map[netip.Addr]uint32{exp1: 512}})
	recs, _ := d.Decode(exp1, now, v5Datagram(1, 1, 0, 100), nil)
	recs, _ = d.Decode(exp2, now, v5Datagram(1, 1, 0, 100), recs)
	if recs[0].SamplingRate != 512 || recs[1].SamplingRate != 100 {
		t.Errorf("rates %d, %d; want 512 (config), 100 (header)", recs[0].SamplingRate, recs[1].SamplingRate)
	}
	if s := stats(t, d, exp1); s.SamplingSource != "config" || s.SamplingRate != 512 {
		t.Errorf("stats say %d from %q", s.SamplingRate, s.SamplingSource)
	}
}

func TestSequenceAccounting(t *testing.T) {
	type step struct {
		seq   uint32
		count int
	}
	for _, c := range []struct {
		name                   string
		steps                  []step
		lost, restart, reorder uint64
	}{
		{"in order", []step{{100, 10}, {110, 10}, {120, 5}}, 0, 0, 0},
		{"gap", []step{{100, 10}, {130, 10}}, 20, 0, 0},
		{"gap across the 2^32 wrap", []step{{0xFFFFFFF0, 10}, {6, 10}}, 12, 0, 0},
		{"restart near zero is not a 4-billion gap", []step{{3000000000, 10}, {0, 10}, {10, 10}}, 0, 1, 0},
		{"late datagram", []step{{100, 10}, {110, 10}, {100000, 5}, {100005, 5}, {100000 - 30, 10}, {100010, 5}}, 100000 - 120, 0, 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			d := NewDecoder(DecoderConfig{})
			for _, s := range c.steps {
				if _, err := d.Decode(exp1, now, v5Datagram(s.count, s.count, s.seq, 0), nil); err != nil {
					t.Fatal(err)
				}
			}
			s := stats(t, d, exp1)
			if s.LostFlows != c.lost || s.Restarts != c.restart || s.Reordered != c.reorder {
				t.Errorf("lost %d restarts %d reordered %d; want %d %d %d", s.LostFlows, s.Restarts, s.Reordered, c.lost, c.restart, c.reorder)
			}
		})
	}
}

func TestV9SequenceCountsDatagrams(t *testing.T) {
	d := NewDecoder(DecoderConfig{})
	tmpl := set(0, v9Template(256, v9Fields...))
	data := set(256, cat(v9Record(1), v9Record(2)))
	d.Decode(exp1, now, v9Datagram(2, 100000, 1700000000, 10, 1, tmpl, data), nil)
	d.Decode(exp1, now, v9Datagram(2, 100000, 1700000000, 11, 1, data), nil)
	d.Decode(exp1, now, v9Datagram(2, 100000, 1700000000, 14, 1, data), nil) // 12, 13 lost
	s := stats(t, d, exp1)
	// 6 records in 3 datagrams: 2 per datagram, so 2 lost datagrams are about 4 flows.
	if s.LostDatagrams != 2 || s.LostFlows != 4 {
		t.Errorf("lost %d datagrams, %d flows; want 2, 4", s.LostDatagrams, s.LostFlows)
	}
}

func TestV9(t *testing.T) {
	d := NewDecoder(DecoderConfig{})
	p := v9Datagram(3, 100000, 1700000000, 1, 7,
		set(0, v9Template(256, v9Fields...)), set(256, cat(v9Record(1), v9Record(2))))
	recs, err := d.Decode(exp1, now, p, nil)
	if err != nil || len(recs) != 2 {
		t.Fatalf("got %d records, %v", len(recs), err)
	}
	want := flow.Record{
		Received: now, Exporter: exp1, Version: 9, ObservationDomain: 7,
		SrcAddr: netip.MustParseAddr("10.0.0.2"), DstAddr: netip.MustParseAddr("192.0.2.10"),
		NextHop: netip.MustParseAddr("10.0.0.254"), InIf: 3, OutIf: 7, Packets: 12, Bytes: 18000,
		Start: now - 10e9, End: now - 1e9, SrcPort: 40002, DstPort: 443, TCPFlags: 0x02,
		Proto: 6, SrcAS: 64500, DstAS: 64501, SrcMask: 24, DstMask: 16, Has: hasV5,
	}
	if recs[1] != want {
		t.Errorf("record\n got %+v\nwant %+v", recs[1], want)
	}
	if s := stats(t, d, exp1); s.Templates != 1 || len(s.Quirks) != 0 || len(s.Drops) != 0 {
		t.Errorf("stats %+v", s)
	}
}

func TestV9TemplateChangesShape(t *testing.T) {
	d := NewDecoder(DecoderConfig{})
	d.Decode(exp1, now, v9Datagram(1, 1000, 1700000000, 1, 0, set(0, v9Template(256, tfield{8, 4, 0}, tfield{2, 4, 0}))), nil)
	// Same id, new shape: packets is now 8 bytes and comes first.
	p := v9Datagram(2, 1000, 1700000000, 2, 0,
		set(0, v9Template(256, tfield{2, 8, 0}, tfield{8, 4, 0})),
		set(256, cat(be.AppendUint64(nil, 1<<40), ip4("198.51.100.7"))))
	recs, err := d.Decode(exp1, now, p, nil)
	if err != nil || len(recs) != 1 || recs[0].Packets != 1<<40 || recs[0].SrcAddr != netip.MustParseAddr("198.51.100.7") {
		t.Fatalf("records %+v, %v", recs, err)
	}
	if s := stats(t, d, exp1); s.TemplateChanges != 1 || s.Templates != 1 {
		t.Errorf("template changes %d, templates %d", s.TemplateChanges, s.Templates)
	}
	// A resent identical template is a refresh, not a change.
	d.Decode(exp1, now, v9Datagram(1, 1000, 1700000000, 3, 0, set(0, v9Template(256, tfield{2, 8, 0}, tfield{8, 4, 0}))), nil)
	if s := stats(t, d, exp1); s.TemplateChanges != 1 {
		t.Errorf("template changes %d after a refresh", s.TemplateChanges)
	}
}

func TestTemplatesPerExporterAndDomain(t *testing.T) {
	d := NewDecoder(DecoderConfig{})
	tmplA := set(0, v9Template(256, tfield{8, 4, 0}))
	tmplB := set(0, v9Template(256, tfield{12, 4, 0}))
	d.Decode(exp1, now, v9Datagram(1, 1000, 1700000000, 1, 1, tmplA), nil)
	d.Decode(exp1, now, v9Datagram(1, 1000, 1700000000, 1, 2, tmplB), nil)
	d.Decode(exp2, now, v9Datagram(1, 1000, 1700000000, 1, 1, tmplB), nil)
	data := set(256, ip4("203.0.113.5"))
	r1, _ := d.Decode(exp1, now, v9Datagram(1, 1000, 1700000000, 2, 1, data), nil)
	r2, _ := d.Decode(exp1, now, v9Datagram(1, 1000, 1700000000, 2, 2, data), nil)
	r3, _ := d.Decode(exp2, now, v9Datagram(1, 1000, 1700000000, 2, 1, data), nil)
	if len(r1) != 1 || r1[0].Has&flow.HasSrcAddr == 0 || len(r2) != 1 || r2[0].Has&flow.HasDstAddr == 0 ||
		len(r3) != 1 || r3[0].Has&flow.HasDstAddr == 0 {
		t.Errorf("templates mixed up between domains or exporters: %+v %+v %+v", r1, r2, r3)
	}
}

func TestDataBeforeTemplate(t *testing.T) {
	d := NewDecoder(DecoderConfig{})
	data := set(256, cat(v9Record(1), v9Record(2)))
	recs, err := d.Decode(exp1, now, v9Datagram(2, 100000, 1700000000, 1, 0, data), nil)
	if err != nil || len(recs) != 0 {
		t.Fatalf("data without template gave %d records, %v", len(recs), err)
	}
	if s := stats(t, d, exp1); s.Pending != 1 {
		t.Fatalf("pending %d", s.Pending)
	}
	later := now + 5e9
	recs, err = d.Decode(exp1, later, v9Datagram(3, 100000, 1700000005, 2, 0,
		set(0, v9Template(256, v9Fields...)), set(256, v9Record(3))), nil)
	if err != nil || len(recs) != 3 {
		t.Fatalf("got %d records, %v", len(recs), err)
	}
	// The datagram's own record first, then the waiting ones with their own arrival
	// and export times.
	if recs[0].SrcAddr.As4()[3] != 3 || recs[1].Received != now || recs[1].End != now-1e9 || recs[2].Received != now {
		t.Errorf("records %+v", recs)
	}
	if s := stats(t, d, exp1); s.Pending != 0 || s.Records != 3 || len(s.Drops) != 0 {
		t.Errorf("stats %+v", s)
	}
}

func TestPendingBounded(t *testing.T) {
	d := NewDecoder(DecoderConfig{MaxPending: 4, MaxPendingBytes: 1000})
	for i := 0; i < 10; i++ {
		d.Decode(exp1, now, v9Datagram(1, 1000, 1700000000, uint32(i), 0, set(256+i, v9Record(i))), nil)
	}
	s := stats(t, d, exp1)
	if s.Pending != 4 || s.Drops["no_template"] != 6 {
		t.Errorf("pending %d, dropped %d; want 4, 6", s.Pending, s.Drops["no_template"])
	}
	// The byte bound: 20 sets of 53 bytes do not fit in 1000.
	for i := 0; i < 20; i++ {
		d.Decode(exp2, now, v9Datagram(1, 1000, 1700000000, uint32(i), 0, set(256+i, cat(v9Record(i), v9Record(i), v9Record(i), v9Record(i)))), nil)
	}
	if d.pendingBytes > 1000 {
		t.Errorf("pending bytes %d over the bound", d.pendingBytes)
	}
	d.Flush()
	for _, s := range d.Exporters() {
		if s.Pending != 0 {
			t.Errorf("%v: %d pending after Flush", s.Exporter, s.Pending)
		}
	}
	if d.pendingBytes != 0 {
		t.Errorf("pending bytes %d after Flush", d.pendingBytes)
	}
}

func TestTemplateLimit(t *testing.T) {
	d := NewDecoder(DecoderConfig{MaxTemplates: 3})
	var sets [][]byte
	for i := 0; i < 10; i++ {
		sets = append(sets, v9Template(256+i, tfield{8, 4, 0}))
	}
	_, err := d.Decode(exp1, now, v9Datagram(10, 1000, 1700000000, 1, 0, set(0, cat(sets...))), nil)
	if r, _ := ErrReason(err); r != ReasonTemplateLimit {
		t.Errorf("error %v", err)
	}
	if s := stats(t, d, exp1); s.Templates != 3 || s.Drops["template_limit"] != 7 {
		t.Errorf("templates %d, refused %d", s.Templates, s.Drops["template_limit"])
	}

	// The bound over all exporters.
	d = NewDecoder(DecoderConfig{MaxTemplatesTotal: 5})
	for i := 0; i < 4; i++ {
		addr := netip.AddrFrom4([4]byte{192, 0, 2, byte(10 + i)})
		d.Decode(addr, now, v9Datagram(2, 1000, 1700000000, 1, 0, set(0, cat(v9Template(256, tfield{8, 4, 0}), v9Template(257, tfield{8, 4, 0})))), nil)
	}
	held, refused := 0, uint64(0)
	for _, s := range d.Exporters() {
		held += s.Templates
		refused += s.Drops["template_limit"]
	}
	if held != 5 || refused != 3 {
		t.Errorf("%d templates held, %d refused; want 5, 3", held, refused)
	}
}

func TestExporterLimit(t *testing.T) {
	d := NewDecoder(DecoderConfig{MaxExporters: 1})
	d.Decode(exp1, now, v5Datagram(1, 1, 0, 0), nil)
	recs, err := d.Decode(exp2, now, v5Datagram(1, 1, 0, 0), nil)
	if r, _ := ErrReason(err); r != ReasonExporterLimit || len(recs) != 0 {
		t.Errorf("second exporter: %d records, %v", len(recs), err)
	}
	st := d.Exporters()
	if len(st) != 2 || st[0].Exporter.IsValid() || st[0].Drops["exporter_limit"] != 1 {
		t.Errorf("stats %+v", st)
	}
	// Once the first exporter has been silent for ExporterIdle, it makes room.
	later := now + int64(2*time.Hour)
	recs, err = d.Decode(exp2, later, v5Datagram(1, 1, 0, 0), nil)
	if err != nil || len(recs) != 1 {
		t.Errorf("after the first went idle: %d records, %v", len(recs), err)
	}
	if st := d.Exporters(); len(st) != 2 || st[1].Exporter != exp2 {
		t.Errorf("stats %+v", st)
	}
}

func TestV9SamplerOptions(t *testing.T) {
	d := NewDecoder(DecoderConfig{})
	// Options template: scope System, FLOW_SAMPLER_ID (1 byte), mode, random interval.
	opt := set(1, v9OptionsTemplate(300, []tfield{{1, 4, 0}}, []tfield{{48, 1, 0}, {49, 1, 0}, {50, 4, 0}}))
	optData := set(300, cat(u32(0), []byte{1, 2}, u32(1000), u32(0), []byte{2, 2}, u32(64)))
	tmpl := set(0, v9Template(256, tfield{8, 4, 0}, tfield{48, 1, 0}))
	data := set(256, cat(ip4("198.51.100.1"), []byte{1}, ip4("198.51.100.2"), []byte{2}, ip4("198.51.100.3"), []byte{9}))
	recs, err := d.Decode(exp1, now, v9Datagram(6, 1000, 1700000000, 1, 0, opt, optData, tmpl, data), nil)
	if err != nil || len(recs) != 3 {
		t.Fatalf("%d records, %v", len(recs), err)
	}
	if recs[0].SamplingRate != 1000 || recs[1].SamplingRate != 64 || recs[2].SamplingRate != 0 {
		t.Errorf("rates %d %d %d; want 1000, 64 and 0 (unknown sampler)", recs[0].SamplingRate, recs[1].SamplingRate, recs[2].SamplingRate)
	}
	if s := stats(t, d, exp1); s.OptionsRecords != 2 {
		t.Errorf("options records %d", s.OptionsRecords)
	}
}

func TestIPFIXSamplingAndUptime(t *testing.T) {
	for _, c := range []struct {
		name   string
		fields []tfield
		values []byte
		rate   uint32
	}{
		{"interval and space", []tfield{{305, 4, 0}, {306, 4, 0}}, cat(u32(1), u32(99)), 100},
		{"n out of N", []tfield{{305, 4, 0}, {309, 4, 0}, {310, 4, 0}}, cat(u32(1), u32(1), u32(256)), 256},
		{"Cisco 1-in-N interval", []tfield{{305, 4, 0}}, u32(512), 512},
		{"samplingInterval", []tfield{{34, 4, 0}}, u32(10), 10},
	} {
		t.Run(c.name, func(t *testing.T) {
			d := NewDecoder(DecoderConfig{})
			opt := set(3, ipfixOptionsTemplate(400, 1, append([]tfield{{149, 4, 0}, {160, 8, 0}}, c.fields...)...))
			// System init 100 s before export.
			optData := set(400, cat(u32(1), be.AppendUint64(nil, (1700000000-100)*1000), c.values))
			tmpl := set(2, ipfixTemplate(256, tfield{8, 4, 0}, tfield{22, 4, 0}, tfield{21, 4, 0}))
			data := set(256, cat(ip4("198.51.100.1"), u32(90000), u32(99000)))
			recs, err := d.Decode(exp1, now, ipfixMessage(1700000000, 0, 5, opt, optData, tmpl, data), nil)
			if err != nil || len(recs) != 1 {
				t.Fatalf("%d records, %v", len(recs), err)
			}
			r := recs[0]
			if r.SamplingRate != c.rate || r.Start != now-10e9 || r.End != now-1e9 || r.Version != 10 || r.ObservationDomain != 5 {
				t.Errorf("record %+v", r)
			}
		})
	}
}

func TestIPFIXRelativeTimesWithoutInit(t *testing.T) {
	d := NewDecoder(DecoderConfig{})
	tmpl := set(2, ipfixTemplate(256, tfield{8, 4, 0}, tfield{22, 4, 0}, tfield{21, 4, 0}))
	data := set(256, cat(ip4("198.51.100.1"), u32(90000), u32(99000)))
	recs, _ := d.Decode(exp1, now, ipfixMessage(1700000000, 0, 5, tmpl, data), nil)
	// Without systemInitTimeMilliseconds the flow is taken to end at export time.
	if len(recs) != 1 || recs[0].End != now || recs[0].Start != now-9e9 {
		t.Errorf("records %+v", recs)
	}
}

func TestIPFIXVariableLengthAndEnterprise(t *testing.T) {
	d := NewDecoder(DecoderConfig{})
	tmpl := set(2, ipfixTemplate(256,
		tfield{27, 16, 0}, tfield{28, 16, 0},
		tfield{1, varLen, 29305}, // reverse octets, enterprise: skipped
		tfield{82, varLen, 0},    // interfaceName, variable: skipped
		tfield{2, 8, 0}, tfield{1, 8, 0}, tfield{152, 8, 0}, tfield{153, 8, 0}, tfield{6, 2, 0}))
	rec := func(name string, long bool) []byte {
		b := cat(ip6("2001:db8::1"), ip6("2001:db8::2"), []byte{3, 1, 2, 3})
		if long {
			b = append(b, 255)
			b = append(b, u16(len(name))...)
		} else {
			b = append(b, byte(len(name)))
		}
		b = append(b, name...)
		return cat(b, be.AppendUint64(nil, 5), be.AppendUint64(nil, 500),
			be.AppendUint64(nil, 1700000000000-3000), be.AppendUint64(nil, 1700000000000), u16(0x0112))
	}
	data := set(256, cat(rec("eth0", false), rec(strings.Repeat("x", 300), true)))
	recs, err := d.Decode(exp1, now, ipfixMessage(1700000000, 0, 0, tmpl, data), nil)
	if err != nil || len(recs) != 2 {
		t.Fatalf("%d records, %v", len(recs), err)
	}
	for _, r := range recs {
		if r.SrcAddr != netip.MustParseAddr("2001:db8::1") || r.Packets != 5 || r.Bytes != 500 ||
			r.Start != now-3e9 || r.End != now || r.TCPFlags != 0x12 {
			t.Errorf("record %+v", r)
		}
	}
}

func TestPSAMPPacketReport(t *testing.T) {
	d := NewDecoder(DecoderConfig{})
	pkt := ethIPv4TCP("198.51.100.9", "192.0.2.80", 5555, 80, 0x02)[18:] // the IPv4 packet
	tmpl := set(2, ipfixTemplate(256, tfield{301, 8, 0}, tfield{323, 8, 0}, tfield{313, varLen, 0}))
	data := set(256, cat(be.AppendUint64(nil, 1), be.AppendUint64(nil, 1700000000123), []byte{byte(len(pkt))}, pkt))
	recs, err := d.Decode(exp1, now, ipfixMessage(1700000000, 0, 0, tmpl, data), nil)
	if err != nil || len(recs) != 1 {
		t.Fatalf("%d records, %v", len(recs), err)
	}
	r := recs[0]
	if r.SrcAddr != netip.MustParseAddr("198.51.100.9") || r.DstPort != 80 || r.TCPFlags != 0x02 || r.Packets != 1 ||
		r.Bytes != 40 || r.Start != now+123e6 || r.End != r.Start || r.Has&(flow.HasPackets|flow.HasBytes|flow.HasStart|flow.HasEnd) == 0 {
		t.Errorf("record %+v", r)
	}
}

func TestIPFIXWithdrawal(t *testing.T) {
	d := NewDecoder(DecoderConfig{})
	d.Decode(exp1, now, ipfixMessage(1700000000, 0, 0, set(2, ipfixTemplate(256, tfield{8, 4, 0}))), nil)
	d.Decode(exp1, now, ipfixMessage(1700000000, 0, 0, set(2, cat(u16(256), u16(0)))), nil)
	if s := stats(t, d, exp1); s.Templates != 0 {
		t.Errorf("%d templates after withdrawal", s.Templates)
	}
}

func TestSFlow(t *testing.T) {
	d := NewDecoder(DecoderConfig{})
	hdr := ethIPv4TCP("198.51.100.9", "192.0.2.80", 5555, 80, 0x02)
	p := sflowDatagram(7, 3,
		sflowFlowSampleB(1, 2048, 11, 12, sflowRawHeader(1514, hdr)),
		sflowSample(2, cat(u32(1), u32(11), u32(1), sflowGenericCounters(11, 1e12, 2e12))),
	)
	recs, err := d.Decode(exp1, now, p, nil)
	if err != nil || len(recs) != 1 {
		t.Fatalf("%d records, %v", len(recs), err)
	}
	want := flow.Record{
		Received: now, Exporter: exp1, Version: flow.VersionSFlow5, ObservationDomain: 3,
		SrcAddr: netip.MustParseAddr("198.51.100.9"), DstAddr: netip.MustParseAddr("192.0.2.80"),
		InIf: 11, OutIf: 12, Packets: 1, Bytes: 1514, SrcPort: 5555, DstPort: 80, TCPFlags: 0x02,
		Proto: 6, TOS: 0x10, SamplingRate: 2048,
		Has: flow.HasPackets | flow.HasBytes | flow.HasInIf | flow.HasOutIf | flow.HasSrcAddr | flow.HasDstAddr |
			flow.HasProto | flow.HasTOS | flow.HasSrcPort | flow.HasDstPort | flow.HasTCPFlags,
	}
	if recs[0] != want {
		t.Errorf("record\n got %+v\nwant %+v", recs[0], want)
	}
	s := stats(t, d, exp1)
	if len(s.Interfaces) != 1 || s.Interfaces[0].Index != 11 || s.Interfaces[0].InOctets != 1e12 ||
		s.Interfaces[0].OutOctets != 2e12 || s.Interfaces[0].Speed != 1e9 {
		t.Errorf("interfaces %+v", s.Interfaces)
	}
	if s.SFlowAgent != netip.MustParseAddr("192.0.2.1") || s.SamplingSource != "sflow" {
		t.Errorf("stats %+v", s)
	}
}

func TestSFlowIsNotNetFlowV5(t *testing.T) {
	// Both say "version 5"; only the layout tells them apart.
	d := NewDecoder(DecoderConfig{})
	recs, err := d.Decode(exp1, now, sflowDatagram(1, 0), nil)
	if err != nil || len(recs) != 0 {
		t.Errorf("empty sFlow datagram: %d records, %v", len(recs), err)
	}
	bad := sflowDatagram(1, 0)
	bad[7] = 3 // agent address type 3 does not exist
	if _, err := d.Decode(exp1, now, bad, nil); err == nil || !strings.Contains(err.Error(), "agent address type 3") {
		t.Errorf("bad agent type: %v", err)
	}
}

// TestBadInput feeds malformed datagrams: each is counted under its reason, yields the
// records that can be decoded, and never panics.
func TestBadInput(t *testing.T) {
	tmpl := set(0, v9Template(256, v9Fields...))
	for _, c := range []struct {
		name    string
		setup   [][]byte // datagrams sent first (templates)
		p       []byte
		records int
		reason  string // counted drop or quirk
		msg     string // in the error, "" when no error is due
	}{
		{"empty", nil, nil, 0, "short", "too short"},
		{"unknown version", nil, cat(u16(42), make([]byte, 30)), 0, "version", "unknown version 42"},
		{"sflow v4", nil, cat(u32(4), make([]byte, 40)), 0, "version", "unsupported version 4"},
		{"v5 header cut", nil, v5Datagram(1, 1, 0, 0)[:20], 0, "short", "header needs 24"},
		{"v5 count larger than the datagram", nil, v5Datagram(30, 3, 0, 0), 3, "truncated", "header count 30, datagram holds 3"},
		{"v5 count smaller than the datagram", nil, v5Datagram(2, 3, 0, 0), 2, "count_mismatch", ""},
		{"v5 record cut", nil, v5Datagram(2, 2, 0, 0)[:24+48+20], 1, "truncated", "header count 2, datagram holds 1"},
		{"v8 unknown aggregation", nil, cat(u16(8), u16(1), make([]byte, 18), []byte{99, 2}, make([]byte, 40)), 0, "bad_header", "aggregation scheme 99"},
		{"v9 header cut", nil, v9Datagram(0, 0, 0, 0, 0)[:12], 0, "short", "header needs 20"},
		{"v9 flowset longer than the datagram", [][]byte{v9Datagram(1, 1000, 1700000000, 0, 0, tmpl)},
			v9Datagram(3, 1000, 1700000000, 1, 0, set(256, cat(v9Record(1), v9Record(2), v9Record(3))))[:20+4+2*53+10], 2, "truncated", "flowset 256 length"},
		{"v9 flowset length below 4", nil, v9Datagram(1, 1000, 1700000000, 0, 0, cat(u16(256), u16(2), u32(7))), 0, "bad_set", "set length 2"},
		{"v9 count lies (records walked by length)", [][]byte{v9Datagram(1, 1000, 1700000000, 0, 0, tmpl)},
			v9Datagram(9, 1000, 1700000000, 1, 0, set(256, v9Record(1))), 1, "count_mismatch", ""},
		{"v9 zero-length field", nil,
			v9Datagram(2, 1000, 1700000000, 0, 0, set(0, v9Template(256, tfield{8, 4, 0}, tfield{12, 0, 0}, tfield{2, 4, 0})),
				set(256, cat(ip4("198.51.100.1"), u32(5)))), 1, "bad_field", "template 256 field 2 length 0"},
		{"v9 address with a length it cannot have", nil,
			v9Datagram(1, 1000, 1700000000, 0, 0, set(0, v9Template(256, tfield{8, 2, 0}, tfield{2, 4, 0}))), 0, "bad_field", "template 256 field 1 (type 8) length 2"},
		{"v9 template of zero-length fields only", nil,
			v9Datagram(1, 1000, 1700000000, 0, 0, set(0, v9Template(256, tfield{8, 0, 0}))), 0, "bad_template", "record length 0"},
		{"v9 template cut", nil,
			v9Datagram(1, 1000, 1700000000, 0, 0, set(0, cat(u16(256), u16(100), u32(0x00080004)))), 0, "bad_template", "100 fields need 404 bytes"},
		{"v9 template with absurd field count", nil,
			v9Datagram(1, 1000, 1700000000, 0, 0, set(0, cat(u16(256), u16(60000)))), 0, "bad_template", "60000 fields"},
		{"v9 template id below 256", nil,
			v9Datagram(1, 1000, 1700000000, 0, 0, set(0, v9Template(5, tfield{8, 4, 0}))), 0, "bad_template", "template id 5"},
		{"v9 absurd record length", nil,
			v9Datagram(1, 1000, 1700000000, 0, 0, set(0, v9Template(256, tfield{8, 4, 0}, tfield{82, 65000, 0}, tfield{83, 65000, 0}))), 0, "bad_template", "does not fit a datagram"},
		{"v9 oversized field: record longer than its set", [][]byte{v9Datagram(1, 1000, 1700000000, 0, 0, set(0, v9Template(256, tfield{8, 4, 0}, tfield{82, 2000, 0})))},
			v9Datagram(1, 1000, 1700000000, 1, 0, set(256, cat(ip4("198.51.100.1"), []byte("Gi0/1")))), 0, "truncated", "data set of 12 bytes, shorter than one 2004-byte record"},
		{"v9 options template with odd lengths", nil,
			v9Datagram(1, 1000, 1700000000, 0, 0, set(1, cat(u16(300), u16(3), u16(4), u32(0x00080004)))), 0, "bad_template", "multiples of 4"},
		{"v9 data without template waits (dropped by Flush)", nil,
			v9Datagram(1, 1000, 1700000000, 0, 0, set(999, v9Record(1))), 0, "", ""},
		{"ipfix length beyond the datagram", nil,
			ipfixMessage(1700000000, 0, 0, set(2, ipfixTemplate(256, tfield{8, 4, 0})))[:22], 0, "truncated", "message length 28, datagram has 22"},
		{"ipfix length shorter than header", nil, cat(u16(10), u16(8), make([]byte, 12)), 0, "bad_header", "message length 8"},
		{"ipfix trailing bytes", nil, append(ipfixMessage(1700000000, 0, 0, set(2, ipfixTemplate(256, tfield{8, 4, 0}))), 1, 2), 0, "length_mismatch", ""},
		{"ipfix enterprise number cut", nil,
			ipfixMessage(1700000000, 0, 0, set(2, cat(u16(256), u16(1), u16(0x8001), u16(4)))), 0, "bad_template", "enterprise number cut short"},
		{"ipfix options template scope 0", nil,
			ipfixMessage(1700000000, 0, 0, set(3, ipfixOptionsTemplate(256, 0, tfield{305, 4, 0}))), 0, "bad_template", "scope field count 0"},
		{"ipfix variable-length record overruns its set", [][]byte{ipfixMessage(1700000000, 0, 0, set(2, ipfixTemplate(256, tfield{8, 4, 0}, tfield{82, varLen, 0})))},
			ipfixMessage(1700000000, 1, 0, set(256, cat(ip4("198.51.100.1"), []byte{3, 'a', 'b', 'c'}, ip4("198.51.100.2"), []byte{200, 'x'}))), 1, "truncated", "overruns its set"},
		{"sflow header cut", nil, sflowDatagram(1, 0)[:20], 0, "short", "header needs 28"},
		{"sflow sample longer than the datagram", nil,
			sflowDatagram(1, 0, cat(u32(1), u32(5000), make([]byte, 40))), 0, "truncated", "sample 1 length 5000"},
		{"sflow fewer samples than announced", nil,
			cat(sflowDatagram(1, 0)[:24], u32(3), sflowFlowSampleB(1, 10, 1, 2, sflowRawHeader(60, ethIPv4TCP("198.51.100.1", "192.0.2.1", 1, 2, 2)))), 1, "truncated", "header says 3 samples, datagram holds 1"},
		{"sflow flow record overruns its sample", nil,
			sflowDatagram(1, 0, sflowFlowSampleB(1, 10, 1, 2, cat(u32(1), u32(900)))), 0, "bad_sample", "flow record 1 length 900"},
		{"sflow flow sample too short", nil,
			sflowDatagram(1, 0, sflowSample(1, make([]byte, 12))), 0, "bad_sample", "flow sample of 12 bytes"},
		{"sflow absurd sampling rate (ignored)", nil,
			sflowDatagram(1, 0, sflowFlowSampleB(1, 0xFFFFFFFF, 1, 2, sflowRawHeader(60, ethIPv4TCP("198.51.100.1", "192.0.2.1", 1, 2, 2)))), 1, "bad_sampling", ""},
		{"v9 absurd sampling rate in options data (ignored)", nil,
			v9Datagram(2, 1000, 1700000000, 0, 0, set(1, v9OptionsTemplate(300, []tfield{{1, 4, 0}}, []tfield{{34, 4, 0}})), set(300, cat(u32(0), u32(1e9)))), 0, "bad_sampling", ""},
		{"sflow truncated sampled header", nil,
			sflowDatagram(1, 0, sflowFlowSampleB(1, 10, 1, 2, sflowRawHeader(60, ethIPv4TCP("198.51.100.1", "192.0.2.1", 1, 2, 2)[:30]))), 1, "", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			d := NewDecoder(DecoderConfig{})
			for _, s := range c.setup {
				if _, err := d.Decode(exp1, now, s, nil); err != nil {
					t.Fatalf("setup: %v", err)
				}
			}
			recs, err := d.Decode(exp1, now, c.p, nil)
			if len(recs) != c.records {
				t.Errorf("%d records, want %d", len(recs), c.records)
			}
			if c.msg == "" && err != nil {
				t.Errorf("unexpected error %v", err)
			}
			if c.msg != "" {
				if err == nil || !strings.Contains(err.Error(), c.msg) || !strings.HasPrefix(err.Error(), "ingest: ") {
					t.Errorf("error %v, want one with %q", err, c.msg)
				}
				var de *DecodeError
				if !errors.As(err, &de) || de.Reason() != c.reason || de.Dropped() == (c.reason == "bad_field" || c.reason == "count_mismatch" || c.reason == "length_mismatch") {
					t.Errorf("error %#v, want reason %s", err, c.reason)
				}
			}
			d.Flush()
			s := stats(t, d, exp1)
			if c.reason != "" && s.Drops[c.reason]+s.Quirks[c.reason] == 0 {
				t.Errorf("reason %s not counted: drops %v quirks %v", c.reason, s.Drops, s.Quirks)
			}
		})
	}
}

// TestExportersWhileDecoding reads the accounting from another goroutine, as the API
// does, while datagrams are decoded (run with -race).
func TestExportersWhileDecoding(t *testing.T) {
	d := NewDecoder(DecoderConfig{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < 200; i++ {
			d.Exporters()
		}
	}()
	var recs []flow.Record
	for i := 0; i < 2000; i++ {
		recs, _ = d.Decode(exp1, now, v5Datagram(30, 30, uint32(30*i), 0), recs[:0])
	}
	<-done
	if s := stats(t, d, exp1); s.Records != 60000 || s.LostFlows != 0 {
		t.Errorf("records %d, lost %d", s.Records, s.LostFlows)
	}
}
