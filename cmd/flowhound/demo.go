package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/flowhound/flowhound/config"
	"github.com/flowhound/flowhound/detector"
	"github.com/flowhound/flowhound/flow"
	"github.com/flowhound/flowhound/gen"
	"github.com/flowhound/flowhound/ingest"
)

// demoNetworks are the documentation ranges the generator's customers live in.
var demoNetworks = []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24"), netip.MustParsePrefix("198.51.100.0/24")}

func runDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	forever := fs.Bool("forever", false, "keep running after the scenario (normal traffic goes on)")
	format := fs.String("format", "v9", "export format the synthetic routers use: v5, v9, ipfix or sflow")
	timeout := fs.Duration("timeout", 90*time.Second, "give up waiting for anomalies to end after this long")
	hold := fs.Duration("hold", 5*time.Second, "quiet time before an anomaly ends (serve's default is 60s; the demo is short)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: flowhound demo [flags]\n\nStarts the engine with the default rules on a free loopback port and a synthetic exporter\nbeside it that sends normal traffic, then a SYN flood, a Slammer-like worm and a UDP\namplification flood. Each anomaly is printed as a JSON line on stdout when it is raised and\nwhen it ends, with a one-line summary on stderr.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}

	gcfg := gen.DefaultConfig()
	gcfg.Format = *format
	gcfg.Scenario = gen.ScenarioDemo
	gcfg.Seed = time.Now().UnixNano()
	phases := gen.Schedule(gen.ScenarioDemo)
	// Run until the last attack has ended and its last records are exported.
	for _, p := range phases {
		gcfg.Duration = max(gcfg.Duration, p.End+5*time.Second)
	}
	if *forever {
		gcfg.Duration = 0
	}

	cfg := config.Default()
	cfg.Networks = []detector.Network{{Name: "customers", Prefixes: demoNetworks}}
	cfg.Detection.Hold = config.Duration(*hold)

	set, err := compileRules(nil)
	if err != nil {
		return err
	}
	pool := flow.NewPool(4096)
	batches := make(chan *flow.Batch, 256)
	stats := ingest.NewStats()
	defer stats.Close()
	lis, err := ingest.ListenUDP("127.0.0.1:0", ingest.NewDecoder(decoderConfig(cfg)), batches, pool, stats)
	if err != nil {
		return err
	}
	gcfg.To = lis.Addr().String()
	g, err := gen.New(gcfg)
	if err != nil {
		return err
	}
	dcfg := cfg.Detector()
	for _, e := range g.Exporters() {
		ex := detector.Exporter{Address: e.Addr, Name: e.Name, Interfaces: map[uint32]detector.Interface{}}
		for _, ifc := range e.Interfaces {
			ex.Interfaces[ifc.Index] = detector.Interface{Name: ifc.Name, Role: ifc.Role}
		}
		dcfg.Exporters = append(dcfg.Exporters, ex)
	}
	printer := newAnomalyPrinter(stdout, stderr, true)
	det, err := detector.New(dcfg, detector.Deps{Rules: set, Input: batches, OnEvent: printer.event})
	if err != nil {
		return err
	}

	fmt.Fprintf(stderr, "flowhound demo: engine on udp %s, %s export from %d routers; scenario:", lis.Addr(), *format, len(g.Exporters()))
	for _, p := range phases {
		fmt.Fprintf(stderr, " %s %v-%v", p.Name, p.Start, p.End)
	}
	fmt.Fprintln(stderr)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	eg, ctx := errgroup.WithContext(ctx)
	eg.Go(func() error { return lis.Run(ctx) })
	eg.Go(func() error { return det.Run(ctx) })
	eg.Go(func() error {
		if err := g.Run(ctx); err != nil {
			return err
		}
		if *forever {
			return nil
		}
		// The scenario is over: wait for the last anomalies to end (their hold), then stop.
		deadline := time.NewTimer(*timeout - gcfg.Duration)
		defer deadline.Stop()
		tick := time.NewTicker(250 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-deadline.C:
				fmt.Fprintln(stderr, "flowhound demo: timed out waiting for anomalies to end")
				cancel()
				return nil
			case <-tick.C:
				if len(det.Active()) == 0 {
					cancel()
					return nil
				}
			}
		}
	})
	err = eg.Wait()
	for _, a := range det.Flush() {
		printer.print("ongoing", a)
	}
	if err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	fmt.Fprintf(stderr, "flowhound demo: done, %d anomalies raised\n", printer.count())
	return nil
}
