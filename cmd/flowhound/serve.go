package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"

	"golang.org/x/sync/errgroup"

	"github.com/flowhound/flowhound/config"
	"github.com/flowhound/flowhound/detector"
	"github.com/flowhound/flowhound/flow"
	"github.com/flowhound/flowhound/ingest"
)

func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "", "configuration file (default: listen on :2055, :4739, :6343; API on 127.0.0.1:8080)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: flowhound serve [-config FILE]\n\nThe daemon: UDP listeners, detection, store, alerts, API, UI and /metrics.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg := config.Default()
	if *cfgPath != "" {
		var err error
		if cfg, err = config.Load(*cfgPath); err != nil {
			return err
		}
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	set, err := compileRules(cfg.Rules)
	if err != nil {
		return err
	}

	pool := flow.NewPool(4096)
	batches := make(chan *flow.Batch, 256)
	stats := ingest.NewStats()
	defer stats.Close()
	var listeners []*ingest.Listener
	for _, addr := range []string{cfg.Listen.NetFlow, cfg.Listen.IPFIX, cfg.Listen.SFlow} {
		if addr == "" {
			continue
		}
		// Each socket gets its own decoder: decoders are single-goroutine, and exporters
		// send each protocol to one port, so template state is not split.
		l, err := ingest.ListenUDP(addr, ingest.NewDecoder(decoderConfig(cfg)), batches, pool, stats)
		if err != nil {
			return err
		}
		log.Info("listening", "udp", l.Addr().String())
		listeners = append(listeners, l)
	}
	printer := newAnomalyPrinter(stdout, nil, true)
	det, err := detector.New(cfg.Detector(), detector.Deps{Rules: set, Input: batches, OnEvent: func(ev detector.Event) {
		log.Info("anomaly "+ev.Type, "summary", ev.Anomaly.Summary())
		printer.event(ev)
	}})
	if err != nil {
		return err
	}
	eg, ctx := errgroup.WithContext(ctx)
	for _, l := range listeners {
		eg.Go(func() error { return l.Run(ctx) })
	}
	eg.Go(func() error { return det.Run(ctx) })
	if err := eg.Wait(); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}
