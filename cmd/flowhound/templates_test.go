package main

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/flowhound/flowhound/config"
	"github.com/flowhound/flowhound/flow"
	"github.com/flowhound/flowhound/gen"
)

// TestTemplatesSurviveRestart: a v9 exporter's template, learned before a restart, decodes
// its data after it without the exporter sending the template again.
func TestTemplatesSurviveRestart(t *testing.T) {
	cfg := config.Default()
	cfg.Listen = config.Listen{NetFlow: "127.0.0.1:0"}
	cfg.API = ""
	cfg.Store = t.TempDir()
	now := time.Now()
	recs := make([]flow.Record, 40)
	for i := range recs {
		recs[i] = flow.Record{SrcAddr: netip.MustParseAddr("203.0.113.1"), DstAddr: netip.MustParseAddr("192.0.2.10"),
			Proto: 6, SrcPort: 443, DstPort: uint16(40000 + i), Packets: 10, Bytes: 10000,
			Start: now.Add(-time.Second).UnixNano(), End: now.UnixNano(),
			Has: flow.HasSrcAddr | flow.HasDstAddr | flow.HasProto | flow.HasSrcPort | flow.HasDstPort | flow.HasPackets | flow.HasBytes | flow.HasStart | flow.HasEnd}
	}
	dgrams, err := gen.EncodeDatagrams(gen.FormatV9, gen.Header{Boot: now.Add(-time.Hour).UnixNano(), Domain: 1}, recs)
	if err != nil || len(dgrams) < 2 {
		t.Fatalf("%d datagrams, %v", len(dgrams), err)
	}
	// The first datagram carries the template; the later ones only data.
	runEngine := func(send [][]byte) (records uint64) {
		e, err := newEngine(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer e.close()
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- e.run(ctx) }()
		c, err := net.Dial("udp", e.listeners[0].Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range send {
			c.Write(d)
		}
		c.Close()
		waitFor(t, 3*time.Second, func() bool {
			var n uint64
			for _, s := range e.exporters() {
				n += s.Records
			}
			records = n
			return n > 0
		})
		time.Sleep(200 * time.Millisecond)
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		return records
	}
	if n := runEngine(dgrams[:1]); n == 0 {
		t.Fatal("the first run decoded nothing")
	}
	if n := runEngine(dgrams[1:]); n == 0 {
		t.Fatal("after the restart, data without its template did not decode: templates were not restored")
	}
}
