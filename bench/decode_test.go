package bench

import (
	"bytes"
	"errors"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/netsampler/goflow2/v2/decoders/netflow"
	"github.com/netsampler/goflow2/v2/decoders/netflowlegacy"
	"github.com/netsampler/goflow2/v2/producer"
	protoproducer "github.com/netsampler/goflow2/v2/producer/proto"

	"github.com/flowhound/flowhound/flow"
	"github.com/flowhound/flowhound/gen"
	"github.com/flowhound/flowhound/ingest"
)

// Decoder comparison on the same datagrams, in the same run: flowhound's ingest.Decoder
// against goflow2's decoders, alone (bytes to protocol structs) and with its protobuf
// producer (bytes to flow messages, the stage comparable to flowhound's []flow.Record).
//
// The datagrams carry the records `flowhound gen -scenario normal` produces, encoded with
// gen.EncodeDatagrams as one freshly started exporter would send them: v5 with 30 records
// each; v9 with the generator's template, sent first and then every 20 datagrams. Each
// benchmark op decodes one datagram (cycling through the set); ns/record is the figure the
// budget speaks of.

var exporterAddr = netip.MustParseAddr("127.0.0.11")

// corpusRecords returns the records of a few seconds of the normal scenario.
var corpusRecords = sync.OnceValue(func() []flow.Record {
	cfg := gen.DefaultConfig()
	cfg.Scenario = "normal"
	cfg.Rate = 20000
	cfg.Exporters = 1
	cfg.Duration = 3 * time.Second
	g, err := gen.New(cfg)
	if err != nil {
		panic(err)
	}
	var recs []flow.Record
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	err = g.Simulate(start, 0, func(d *gen.Datagram) error {
		recs = append(recs, d.Records...)
		return nil
	})
	if err != nil {
		panic(err)
	}
	return recs
})

type corpus struct {
	dgrams  [][]byte
	records int // records over all dgrams
}

func encodeCorpus(f gen.Format) (corpus, error) {
	recs := corpusRecords()
	h := gen.Header{Boot: recs[0].Start - int64(time.Hour), Domain: 1}
	dgrams, err := gen.EncodeDatagrams(f, h, recs)
	if err != nil {
		return corpus{}, err
	}
	c := corpus{dgrams: dgrams}
	d := ingest.NewDecoder(ingest.DecoderConfig{})
	var dst []flow.Record
	for _, p := range dgrams {
		if dst, err = d.Decode(exporterAddr, 1, p, dst[:0]); err != nil {
			return corpus{}, err
		}
		c.records += len(dst)
	}
	if c.records == 0 {
		return corpus{}, errors.New("no records in the corpus")
	}
	return c, nil
}

var (
	v5Corpus = sync.OnceValues(func() (corpus, error) { return encodeCorpus(gen.FormatV5) })
	v9Corpus = sync.OnceValues(func() (corpus, error) { return encodeCorpus(gen.FormatV9) })
)

func mustCorpus(tb testing.TB, get func() (corpus, error)) corpus {
	tb.Helper()
	c, err := get()
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

func report(b *testing.B, c corpus) {
	perDgram := float64(c.records) / float64(len(c.dgrams))
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/(float64(b.N)*perDgram), "ns/record")
}

// flowhound: one Decoder, the destination slice reused, templates learned in a first pass
// (steady state, as in the daemon).
func benchFlowhound(b *testing.B, c corpus) {
	d := ingest.NewDecoder(ingest.DecoderConfig{})
	dst := make([]flow.Record, 0, 64)
	for _, p := range c.dgrams {
		dst, _ = d.Decode(exporterAddr, 1, p, dst[:0])
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		dst, _ = d.Decode(exporterAddr, 1, c.dgrams[i%len(c.dgrams)], dst[:0])
	}
	report(b, c)
}

// goflow2 decoders only: bytes to protocol structs, as its NetFlowPipe does before the
// producer (a bytes.Buffer per datagram, a packet struct per datagram).
func benchGoflow2(b *testing.B, c corpus, v9 bool) {
	ts := netflow.CreateTemplateSystem()
	decode := func(p []byte) error {
		if v9 {
			var nf netflow.NFv9Packet
			var ipfix netflow.IPFIXPacket
			return netflow.DecodeMessageVersion(bytes.NewBuffer(p), ts, &nf, &ipfix)
		}
		var v5 netflowlegacy.PacketNetFlowV5
		return netflowlegacy.DecodeMessageVersion(bytes.NewBuffer(p), &v5)
	}
	for _, p := range c.dgrams {
		if err := decode(p); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		decode(c.dgrams[i%len(c.dgrams)])
	}
	report(b, c)
}

// goflow2 decoders plus its protobuf producer with the default mapping, then Commit
// (which returns the messages to its pool): bytes to flow messages.
func benchGoflow2Produce(b *testing.B, c corpus, v9 bool) {
	ts := netflow.CreateTemplateSystem()
	cfg, err := (*protoproducer.ProducerConfig)(nil).Compile()
	if err != nil {
		b.Fatal(err)
	}
	prod, err := protoproducer.CreateProtoProducer(cfg, protoproducer.CreateSamplingSystem)
	if err != nil {
		b.Fatal(err)
	}
	src := netip.AddrPortFrom(exporterAddr, 50000)
	args := producer.ProduceArgs{Src: src, SamplerAddress: src.Addr(), TimeReceived: time.Unix(1, 0)}
	run := func(p []byte) (int, error) {
		var msgs []producer.ProducerMessage
		var err error
		if v9 {
			var nf netflow.NFv9Packet
			var ipfix netflow.IPFIXPacket
			if err := netflow.DecodeMessageVersion(bytes.NewBuffer(p), ts, &nf, &ipfix); err != nil {
				return 0, err
			}
			msgs, err = prod.Produce(&nf, &args)
		} else {
			var v5 netflowlegacy.PacketNetFlowV5
			if err := netflowlegacy.DecodeMessageVersion(bytes.NewBuffer(p), &v5); err != nil {
				return 0, err
			}
			msgs, err = prod.Produce(&v5, &args)
		}
		n := len(msgs)
		prod.Commit(msgs)
		return n, err
	}
	total := 0
	for _, p := range c.dgrams {
		n, err := run(p)
		if err != nil {
			b.Fatal(err)
		}
		total += n
	}
	if total != c.records {
		b.Fatalf("goflow2 produced %d flow messages, flowhound decoded %d records", total, c.records)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		run(c.dgrams[i%len(c.dgrams)])
	}
	report(b, c)
}

func BenchmarkDecodeFlowhoundV5(b *testing.B) { benchFlowhound(b, mustCorpus(b, v5Corpus)) }
func BenchmarkDecodeGoflow2V5(b *testing.B)   { benchGoflow2(b, mustCorpus(b, v5Corpus), false) }
func BenchmarkDecodeGoflow2ProduceV5(b *testing.B) {
	benchGoflow2Produce(b, mustCorpus(b, v5Corpus), false)
}
func BenchmarkDecodeFlowhoundV9(b *testing.B) { benchFlowhound(b, mustCorpus(b, v9Corpus)) }
func BenchmarkDecodeGoflow2V9(b *testing.B)   { benchGoflow2(b, mustCorpus(b, v9Corpus), true) }
func BenchmarkDecodeGoflow2ProduceV9(b *testing.B) {
	benchGoflow2Produce(b, mustCorpus(b, v9Corpus), true)
}

// TestDecodersAgree checks that both decoders read the same flows out of the corpus, so
// that the benchmarks compare equal work.
func TestDecodersAgree(t *testing.T) {
	for _, tc := range []struct {
		name string
		c    corpus
		v9   bool
	}{{"v5", mustCorpus(t, v5Corpus), false}, {"v9", mustCorpus(t, v9Corpus), true}} {
		t.Run(tc.name, func(t *testing.T) {
			ts := netflow.CreateTemplateSystem()
			cfg, _ := (*protoproducer.ProducerConfig)(nil).Compile()
			prod, _ := protoproducer.CreateProtoProducer(cfg, protoproducer.CreateSamplingSystem)
			args := producer.ProduceArgs{Src: netip.AddrPortFrom(exporterAddr, 1), SamplerAddress: exporterAddr, TimeReceived: time.Unix(1, 0)}
			d := ingest.NewDecoder(ingest.DecoderConfig{})
			var ours []flow.Record
			var theirs []*protoproducer.ProtoProducerMessage
			for _, p := range tc.c.dgrams {
				var err error
				if ours, err = d.Decode(exporterAddr, 1, p, ours); err != nil {
					t.Fatal(err)
				}
				var msgs []producer.ProducerMessage
				if tc.v9 {
					var nf netflow.NFv9Packet
					var ipfix netflow.IPFIXPacket
					if err := netflow.DecodeMessageVersion(bytes.NewBuffer(p), ts, &nf, &ipfix); err != nil {
						t.Fatal(err)
					}
					msgs, err = prod.Produce(&nf, &args)
				} else {
					var v5 netflowlegacy.PacketNetFlowV5
					if err := netflowlegacy.DecodeMessageVersion(bytes.NewBuffer(p), &v5); err != nil {
						t.Fatal(err)
					}
					msgs, err = prod.Produce(&v5, &args)
				}
				if err != nil {
					t.Fatal(err)
				}
				for _, m := range msgs {
					theirs = append(theirs, m.(*protoproducer.ProtoProducerMessage))
				}
			}
			if len(ours) != len(theirs) {
				t.Fatalf("flowhound %d records, goflow2 %d", len(ours), len(theirs))
			}
			for i := range ours {
				o, g := &ours[i], theirs[i]
				src, _ := netip.AddrFromSlice(g.SrcAddr)
				dst, _ := netip.AddrFromSlice(g.DstAddr)
				if o.SrcAddr != src.Unmap() || o.DstAddr != dst.Unmap() || o.Packets != g.Packets ||
					o.Bytes != g.Bytes || uint32(o.SrcPort) != g.SrcPort || uint32(o.DstPort) != g.DstPort ||
					uint32(o.Proto) != g.Proto || o.InIf != g.InIf || o.OutIf != g.OutIf {
					t.Fatalf("record %d differs:\nflowhound %+v\ngoflow2   %v", i, *o, g)
				}
			}
			t.Logf("%d datagrams, %d records agree", len(tc.c.dgrams), len(ours))
		})
	}
}
