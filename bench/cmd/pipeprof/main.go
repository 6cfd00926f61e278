// Command pipeprof runs the hot path of `flowhound serve` in one process (the NetFlow UDP
// listener with its decoder, the detector with the default rule pack, the configured
// networks and the baselines it feeds) and writes a CPU profile of it, since the daemon
// serves no /debug/pprof. It wires the packages as cmd/flowhound's engine does, without
// the API, alert sinks and anomaly records, which are off the per-flow path; the baselines
// persist to the configuration's store when it names one.
//
//	pipeprof -config bench.yaml -duration 15s -cpuprofile cpu.pprof &
//	flowhound gen -to 127.0.0.1:PORT -rate 1000000 -duration 10s -q
//	go tool pprof -top cpu.pprof
//
// With -memprofile (and -memprofile-after, to catch the state while the load is on) it
// also writes a heap profile: `go tool pprof -sample_index=inuse_space -top heap.pprof`.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/flowhound/flowhound/baseline"
	"github.com/flowhound/flowhound/config"
	"github.com/flowhound/flowhound/detector"
	"github.com/flowhound/flowhound/flow"
	"github.com/flowhound/flowhound/ingest"
	"github.com/flowhound/flowhound/rules"
	"github.com/flowhound/flowhound/signatures"
	"github.com/flowhound/flowhound/store"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "pipeprof:", err)
		os.Exit(1)
	}
}

func writeHeap(path string) error {
	runtime.GC()
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return pprof.WriteHeapProfile(f)
}

func run() error {
	cfgPath := flag.String("config", "", "flowhound configuration `FILE` (listen.netflow and networks are used)")
	dur := flag.Duration("duration", 15*time.Second, "how long to run")
	profPath := flag.String("cpuprofile", "cpu.pprof", "write the CPU profile to `FILE`")
	memPath := flag.String("memprofile", "", "write a heap profile (live objects by allocation site, after a GC) to `FILE`")
	memAfter := flag.Duration("memprofile-after", 0, "write the heap profile this long after the start (0: at the end)")
	flag.Parse()
	if *cfgPath == "" {
		return fmt.Errorf("-config is required")
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		return err
	}
	all := append([]rules.Rule(nil), rules.Default()...)
	if len(cfg.Rules) > 0 {
		extra, err := rules.Load(cfg.Rules...)
		if err != nil {
			return err
		}
		all = append(all, extra...)
	}
	set, err := signatures.Compile(all)
	if err != nil {
		return err
	}
	pool := flow.NewPool(4096)
	batches := make(chan *flow.Batch, 256)
	stats := ingest.NewStats()
	defer stats.Close()
	l, err := ingest.ListenUDP(cfg.Listen.NetFlow, ingest.NewDecoder(ingest.DecoderConfig{}), batches, pool, stats)
	if err != nil {
		return err
	}
	// With a store in the configuration the baselines persist to it, as in serve.
	var bdeps baseline.Deps
	if cfg.Store != "" {
		st, err := store.Open(cfg.Store, store.DefaultOptions())
		if err != nil {
			return err
		}
		defer st.Close()
		bdeps.Store = st
	}
	bl, err := baseline.New(cfg.BaselineConfig(), bdeps)
	if err != nil {
		return err
	}
	raised := 0
	det, err := detector.New(cfg.Detector(), detector.Deps{Rules: set, Input: batches, Baselines: bl,
		OnEvent: func(ev detector.Event) {
			if ev.Type == "raised" {
				raised++
			}
		}})
	if err != nil {
		return err
	}
	f, err := os.Create(*profPath)
	if err != nil {
		return err
	}
	defer f.Close()
	fmt.Fprintf(os.Stderr, "pipeprof: listening on %v for %v\n", l.Addr(), *dur)
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt)
	defer cancel()
	ctx, cancel2 := context.WithTimeout(ctx, *dur)
	defer cancel2()
	if err := pprof.StartCPUProfile(f); err != nil {
		return err
	}
	eg, ctx := errgroup.WithContext(ctx)
	eg.Go(func() error { return l.Run(ctx) })
	eg.Go(func() error { return det.Run(ctx) })
	eg.Go(func() error { return bl.Run(ctx) })
	heapDone := make(chan error, 1)
	if *memPath != "" && *memAfter > 0 {
		go func() {
			select {
			case <-time.After(*memAfter):
				heapDone <- writeHeap(*memPath)
			case <-ctx.Done():
				heapDone <- nil
			}
		}()
	}
	err = eg.Wait()
	pprof.StopCPUProfile()
	if *memPath != "" {
		if *memAfter > 0 {
			if herr := <-heapDone; herr != nil {
				return herr
			}
		} else if herr := writeHeap(*memPath); herr != nil {
			return herr
		}
		// The detector and baselines are what the heap profile is about.
		runtime.KeepAlive(det)
		runtime.KeepAlive(bl)
	}
	fmt.Printf("pipeprof: %d anomalies raised; profile in %s\n", raised, *profPath)
	return err
}
