package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/flowhound/flowhound/config"
	"github.com/flowhound/flowhound/detector"
)

// serveGCPercent is serve's garbage collection target (GOGC) when the environment sets none.
const serveGCPercent = 50

func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "", "configuration `FILE` (default: listen on :2055, :4739, :6343; API on 127.0.0.1:8080; store ./flowhound-data)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: flowhound serve [-config FILE]\n\nThe daemon: UDP listeners, detection, store, alerts, API, UI and /metrics.\nAnomalies are logged on stderr and written as JSON lines on stdout when raised and ended.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		return err
	}
	if os.Getenv("GOGC") == "" {
		// Almost all of the daemon's memory is long-lived state (windows, baselines) and the
		// per-flow path allocates nothing, so collecting at half the live heap rather than
		// all of it costs little CPU and keeps the resident size near the live state, as
		// Prometheus (75) and VictoriaMetrics (30) do. GOGC in the environment overrides it.
		debug.SetGCPercent(serveGCPercent)
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	printer := newAnomalyPrinter(stdout, nil, true)
	e, err := newEngine(cfg, log, func(ev detector.Event) {
		log.Info("anomaly "+ev.Type, "summary", ev.Anomaly.Summary(), "id", ev.Anomaly.ID)
		printer.event(ev)
	})
	if err != nil {
		return err
	}
	defer e.close()
	for _, l := range e.listeners {
		log.Info("listening", "udp", l.Addr().String())
	}
	if e.api != nil {
		log.Info("api", "url", "http://"+e.api.Addr()+"/")
	}
	// SIGHUP reloads the rule files, as daemons do; a bad reload keeps the old rules.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				if err := e.reload(); err != nil {
					log.Error("SIGHUP", "err", err)
				} else {
					log.Info("SIGHUP: rules reloaded", "rules", e.currentRules().Len())
				}
			}
		}
	}()
	return e.run(ctx)
}
