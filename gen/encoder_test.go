package gen

import (
	"testing"
	"time"

	"github.com/flowhound/flowhound/flow"
)

func TestEncoderStream(t *testing.T) {
	export := testEpoch.UnixNano()
	recs := testRecords(1500, false, export)
	tests := []struct {
		format Format
		// seqAfter returns the next datagram's sequence number from this one's.
		seqAfter func(seq uint32, recs int) uint32
		first    uint32
		tpl      bool
	}{
		{FormatV5, func(s uint32, n int) uint32 { return s + uint32(n) }, 0, false},
		{FormatV9, func(s uint32, _ int) uint32 { return s + 1 }, 0, true},
		{FormatIPFIX, func(s uint32, n int) uint32 { return s + uint32(n) }, 0, true},
		{FormatSFlow, func(s uint32, _ int) uint32 { return s + 1 }, 1, false},
	}
	for _, tt := range tests {
		t.Run(tt.format.String(), func(t *testing.T) {
			e := NewEncoder(tt.format, Header{Boot: export - int64(time.Hour), Domain: 1})
			type dg struct {
				h    seqHeader
				n    int
				size int
			}
			var got []dg
			emit := func(p []byte, rs []flow.Record) error {
				var h seqHeader
				switch tt.format {
				case FormatV5:
					v, _, err := decodeV5(p)
					if err != nil {
						t.Fatal(err)
					}
					h.seq = v.seq
				case FormatV9:
					h = parseV9Header(p)
				case FormatIPFIX:
					h = parseIPFIXHeader(p)
				case FormatSFlow:
					h = parseSFlowHeader(p)
				}
				got = append(got, dg{h, len(rs), len(p)})
				return nil
			}
			// Fewer records than a datagram holds are held back unless partial is set.
			if n, _ := e.Encode(export, recs[:3], false, emit); n != 0 || len(got) != 0 {
				t.Fatalf("3 records: consumed %d, sent %d datagrams", n, len(got))
			}
			n, err := e.Encode(export, recs, false, emit)
			if err != nil {
				t.Fatal(err)
			}
			if n == 0 || n == len(recs) && tt.format != FormatV5 {
				t.Errorf("consumed %d of %d without partial", n, len(recs))
			}
			rest, _ := e.Encode(export, recs[n:], true, emit)
			if n+rest != len(recs) {
				t.Errorf("consumed %d+%d of %d", n, rest, len(recs))
			}
			// Ten seconds later, templates are due again whatever the count.
			e.Encode(export+int64(DefaultTemplateInterval), recs[:1], true, emit)
			seq := tt.first
			total := 0
			for i, d := range got {
				if d.h.seq != seq {
					t.Errorf("datagram %d: sequence %d, want %d", i, d.h.seq, seq)
				}
				seq = tt.seqAfter(seq, d.n)
				total += d.n
				if tt.format != FormatV5 && d.size > MaxDatagram {
					t.Errorf("datagram %d: %d bytes", i, d.size)
				}
				if tt.tpl {
					want := i%DefaultTemplateEvery == 0 || i == len(got)-1
					if d.h.templates != want {
						t.Errorf("datagram %d: templates %v, want %v", i, d.h.templates, want)
					}
				}
			}
			if total != len(recs)+1 {
				t.Errorf("%d records in datagrams, want %d", total, len(recs)+1)
			}
			if len(got) < 2*DefaultTemplateEvery {
				t.Errorf("only %d datagrams; the test wants several template periods", len(got))
			}
		})
	}
}

func TestAppendV5Limits(t *testing.T) {
	export := testEpoch.UnixNano()
	recs := testRecords(45, true, export)
	b, n := AppendV5(nil, Header{Export: export}, recs)
	h, got, err := decodeV5(b)
	if err != nil {
		t.Fatal(err)
	}
	if n != MaxV5Records || h.count > n || len(got) != h.count {
		t.Errorf("consumed %d, wrote %d", n, h.count)
	}
	for _, r := range got {
		if !r.SrcAddr.Is4() {
			t.Errorf("IPv6 record in v5: %v", r.SrcAddr)
		}
	}
	// Counters that do not fit four bytes saturate; 4-byte AS numbers become AS_TRANS.
	big := []flow.Record{{Packets: 1 << 40, Bytes: 1 << 40, SrcAS: 400000, InIf: 70000}}
	b, _ = AppendV5(b[:0], Header{Export: export}, big)
	_, got, _ = decodeV5(b)
	if r := got[0]; r.Packets != 0xFFFFFFFF || r.Bytes != 0xFFFFFFFF || r.SrcAS != 23456 || r.InIf != 0xFFFF {
		t.Errorf("saturation: %+v", r)
	}
}
