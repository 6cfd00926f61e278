package main

import (
	"fmt"
	"io"
	"net/netip"
	"sync"

	"github.com/flowhound/flowhound/config"
	"github.com/flowhound/flowhound/detector"
	"github.com/flowhound/flowhound/ingest"
	"github.com/flowhound/flowhound/rules"
	"github.com/flowhound/flowhound/signatures"
)

// compileRules loads the embedded default pack plus the files the configuration names.
func compileRules(paths []string) (*signatures.Set, error) {
	all := append([]rules.Rule(nil), rules.Default()...)
	if len(paths) > 0 {
		extra, err := rules.Load(paths...)
		if err != nil {
			return nil, err
		}
		all = append(all, extra...)
	}
	return signatures.Compile(all)
}

func decoderConfig(cfg config.Config) ingest.DecoderConfig {
	var dc ingest.DecoderConfig
	for _, e := range cfg.Exporters {
		if e.Sampling > 0 {
			if dc.Sampling == nil {
				dc.Sampling = map[netip.Addr]uint32{}
			}
			dc.Sampling[e.Address] = e.Sampling
		}
	}
	return dc
}

// anomalyPrinter writes anomalies as JSON lines on stdout and, when summaries is set, a
// one-line human summary on stderr. With live set it prints raises too (demo); otherwise
// only ends (replay prints each anomaly once, when it is complete).
type anomalyPrinter struct {
	mu      sync.Mutex
	out     io.Writer
	human   io.Writer
	live    bool
	raised  map[string]int
}

func newAnomalyPrinter(out, human io.Writer, live bool) *anomalyPrinter {
	return &anomalyPrinter{out: out, human: human, live: live, raised: map[string]int{}}
}

func (p *anomalyPrinter) event(ev detector.Event) {
	switch {
	case ev.Type == "ended", ev.Type == "raised" && p.live:
		p.print(ev.Type, ev.Anomaly)
	}
}

func (p *anomalyPrinter) print(what string, a detector.Anomaly) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if a.Status == detector.StatusOngoing {
		p.raised[a.Rule]++
	}
	p.out.Write(append(a.JSON(), '\n'))
	if p.human != nil {
		fmt.Fprintf(p.human, "%-6s %s\n", what, a.Summary())
	}
}

func (p *anomalyPrinter) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, c := range p.raised {
		n += c
	}
	return n
}
