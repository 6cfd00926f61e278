package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"

	"github.com/flowhound/flowhound/config"
	"github.com/flowhound/flowhound/detector"
	"github.com/flowhound/flowhound/flow"
	"github.com/flowhound/flowhound/ingest"
)

func runReplay(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("replay", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "", "configuration file (networks, exporters, rules)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: flowhound replay [-config FILE] FILE…\n\nRuns detection over captures in flow time (packet timestamps) and prints each anomaly\nas a JSON line when it ends, or with status ongoing at the end of input.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return fmt.Errorf("replay: no capture files")
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		return err
	}
	set, err := compileRules(cfg.Rules)
	if err != nil {
		return err
	}
	out := newAnomalyPrinter(stdout, nil, false)
	// Baselines learn in flow time as they would live; nothing is stored.
	bl, err := newBaselines(cfg, nil, nil)
	if err != nil {
		return err
	}
	det, err := detector.New(cfg.Detector(), detector.Deps{Rules: set, OnEvent: out.event, Baselines: bl})
	if err != nil {
		return err
	}
	r := newReplayer(det, ingest.NewDecoder(decoderConfig(cfg)))
	for _, name := range fs.Args() {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := r.file(name); err != nil {
			return err
		}
	}
	for _, a := range det.Flush() {
		out.print("ongoing", a)
	}
	if r.dropped > 0 {
		fmt.Fprintf(stderr, "replay: %d datagrams dropped as malformed\n", r.dropped)
	}
	return nil
}

// replayer drives the detector in flow time: before a datagram stamped at or after the
// next evaluation time is processed, the detector evaluates at that time, as serve's ticker
// would have done on the wall clock. The same input gives the same anomalies every time.
type replayer struct {
	det     *detector.Detector
	dec     *ingest.Decoder
	recs    []flow.Record
	step    int64
	next    int64
	dropped int
}

func newReplayer(det *detector.Detector, dec *ingest.Decoder) *replayer {
	return &replayer{det: det, dec: dec, recs: make([]flow.Record, 0, 1024), step: int64(det.EvaluateEvery())}
}

func (r *replayer) file(name string) error {
	f, err := openInput(name)
	if err != nil {
		return err
	}
	defer f.Close()
	err = ingest.ReadCapture(f, func(ts int64, src netip.Addr, payload []byte) error {
		r.datagram(ts, src, payload)
		return nil
	})
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

func (r *replayer) datagram(ts int64, src netip.Addr, payload []byte) {
	if r.next == 0 {
		r.next = (ts/r.step + 1) * r.step
	}
	for ts >= r.next {
		r.det.Evaluate(r.next)
		r.next += r.step
	}
	var err error
	r.recs, err = r.dec.Decode(src, ts, payload, r.recs[:0])
	if err != nil {
		r.dropped++
	}
	r.det.Process(r.recs)
}

func openInput(name string) (io.ReadCloser, error) {
	if name == "-" {
		return io.NopCloser(os.Stdin), nil
	}
	return os.Open(name)
}
