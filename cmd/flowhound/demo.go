package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/flowhound/flowhound/config"
	"github.com/flowhound/flowhound/detector"
	"github.com/flowhound/flowhound/gen"
)

// demoNetworks are the documentation ranges the generator's customers live in.
var demoNetworks = []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24"), netip.MustParsePrefix("198.51.100.0/24")}

func runDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	forever := fs.Bool("forever", false, "keep running after the scenario (normal traffic goes on)")
	format := fs.String("format", "v9", "export format of the synthetic routers: v5, v9, ipfix or sflow")
	timeout := fs.Duration("timeout", 90*time.Second, "stop waiting for anomalies to end this long after the start")
	hold := fs.Duration("hold", 5*time.Second, "quiet time before an anomaly ends (serve's default is 60s; the demo is short)")
	apiAddr := fs.String("api", "127.0.0.1:0", "where the UI and API listen (port 0: a free one)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: flowhound demo [flags]\n\nStarts the engine with the default rules on a free loopback port and a synthetic exporter\nbeside it that sends normal traffic, then a SYN flood, a Slammer-like worm and a UDP\namplification flood. Each anomaly is printed as a JSON line on stdout when it is raised and\nwhen it ends, with a one-line summary on stderr; the UI shows them meanwhile.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	start := time.Now()

	gcfg := gen.DefaultConfig()
	gcfg.Format = *format
	gcfg.Scenario = gen.ScenarioDemo
	gcfg.Seed = start.UnixNano()
	phases := gen.Schedule(gen.ScenarioDemo)
	// Run until the last attack has ended and its last records are exported.
	for _, p := range phases {
		gcfg.Duration = max(gcfg.Duration, p.End+5*time.Second)
	}
	if *forever {
		gcfg.Duration = 0
	}
	// The simulated routers are known before the generator has somewhere to send: their
	// names and interfaces go into the engine's configuration for traceback.
	info, err := gen.New(gcfg)
	if err != nil {
		return err
	}

	cfg := config.Default()
	cfg.Listen = config.Listen{NetFlow: "127.0.0.1:0"}
	cfg.API = *apiAddr
	cfg.Store = "" // the demo keeps nothing
	cfg.Networks = []detector.Network{{Name: "customers", Prefixes: demoNetworks}}
	cfg.Detection.Hold = config.Duration(*hold)
	for _, e := range info.Exporters() {
		ex := detector.Exporter{Address: e.Addr, Name: e.Name, Interfaces: map[uint32]detector.Interface{}}
		for _, ifc := range e.Interfaces {
			ex.Interfaces[ifc.Index] = detector.Interface{Name: ifc.Name, Role: ifc.Role}
		}
		cfg.Exporters = append(cfg.Exporters, ex)
	}
	printer := newAnomalyPrinter(stdout, stderr, true)
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	e, err := newEngine(cfg, log, printer.event)
	if err != nil {
		return err
	}
	defer e.close()
	gcfg.To = e.listeners[0].Addr().String()
	g, err := gen.New(gcfg)
	if err != nil {
		return err
	}

	fmt.Fprintf(stderr, "flowhound demo: engine on udp %s, %s export from %d routers", gcfg.To, *format, len(cfg.Exporters))
	if e.api != nil {
		fmt.Fprintf(stderr, ", UI on http://%s/", e.api.Addr())
	}
	fmt.Fprint(stderr, "\nscenario:")
	for _, p := range phases {
		end := p.End.String()
		if p.End == 0 {
			end = "end"
		}
		fmt.Fprintf(stderr, " %s %v-%s,", p.Name, p.Start, end)
	}
	fmt.Fprintln(stderr)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	eg, ctx := errgroup.WithContext(ctx)
	eg.Go(func() error { return e.run(ctx) })
	eg.Go(func() error {
		if err := g.Run(ctx); err != nil || *forever {
			return err
		}
		// The scenario is over: wait for the last anomalies to end (their hold), then stop.
		tick := time.NewTicker(250 * time.Millisecond)
		defer tick.Stop()
		for len(e.det.Active()) > 0 && time.Since(start) < *timeout {
			select {
			case <-ctx.Done():
				return nil
			case <-tick.C:
			}
		}
		cancel()
		return nil
	})
	err = eg.Wait()
	for _, a := range e.det.Flush() {
		printer.print("ongoing", a)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "flowhound demo: done in %v, %d anomalies raised\n", time.Since(start).Round(time.Second), printer.count())
	return nil
}
