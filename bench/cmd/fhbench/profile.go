package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// perfPadding is the blank columns perf report pads its symbol column with.
var perfPadding = regexp.MustCompile(`\s+(-\s+)*$`)

// goShape shortens generic instantiations ("[go.shape.struct { Received int64; ... }]"),
// which make profile lines hundreds of characters wide.
var goShape = regexp.MustCompile(`\[go\.shape\.[^\]]*\]`)

func tidySymbol(s string) string { return goShape.ReplaceAllString(s, "[…]") }

// profileInfo is where the CPU profiles of serve at 1M records/s went and what they show.
type profileInfo struct {
	Rate         int       `json:"rate"`
	PerfFile     string    `json:"perf_report,omitempty"`
	PerfTop      []string  `json:"perf_top,omitempty"`
	PerfChildren []string  `json:"perf_children,omitempty"`
	PerfGen      genResult `json:"perf_gen"`
	PerfLossPct  float64   `json:"perf_loss_pct"`
	PprofFile    string    `json:"pprof,omitempty"`
	PprofTop     []string  `json:"pprof_top,omitempty"`
	PprofCum     []string  `json:"pprof_cum,omitempty"`
	// The pipeline while 1M new hosts arrive, then the same hosts again (memory test load).
	HostsTop []string `json:"hosts_pprof_top,omitempty"`
	HostsCum []string `json:"hosts_pprof_cum,omitempty"`
	// Live heap (after a GC) at the end of the first pass over the 1M hosts.
	HostsHeap []string `json:"hosts_heap_top,omitempty"`
	Err       string   `json:"error,omitempty"`
}

// profile samples the running flowhound serve with perf while gen sends 1M records/s,
// then runs the same stream into pipeprof (the pipeline in one process) for a Go profile.
func profile(ctx context.Context, o *options, log io.Writer, res *results, fh *fhServe) error {
	const rate = 1_000_000
	pi := &profileInfo{Rate: rate}
	res.Profile = pi
	var errs []string
	if o.perf != "" {
		if err := perfServe(ctx, o, log, pi, fh, rate); err != nil {
			errs = append(errs, "perf: "+err.Error())
		}
	} else {
		errs = append(errs, "perf not installed: no profile of the daemon")
	}
	if o.pipeprof != "" {
		var err error
		pi.PprofTop, pi.PprofCum, err = pprofPipeline(ctx, o, log, "pipeline", "", filepath.Join(o.out, "pipeline-data"), 14*time.Second, 0, func(to string) error {
			_, err := runLoad(ctx, 60*time.Second, log, o.flowhound, "gen", "-to", to, "-format", "v5", "-scenario", "normal",
				"-rate", strconv.Itoa(rate), "-duration", "10s", "-seed", "1", "-q")
			return err
		})
		if err != nil {
			errs = append(errs, "pipeprof: "+err.Error())
		}
		pi.PprofFile = filepath.Join(o.out, "pipeline.cpu.pprof")
	}
	if len(errs) > 0 {
		pi.Err = strings.Join(errs, "; ")
		return fmt.Errorf("%s", pi.Err)
	}
	return nil
}

func perfServe(ctx context.Context, o *options, log io.Writer, pi *profileInfo, fh *fhServe, rate int) error {
	data := filepath.Join(o.out, "serve.perf.data")
	p0, _, err := fh.counters(ctx)
	if err != nil {
		return err
	}
	// perf samples 8 s from the second second of a 10 s run.
	perfDone := make(chan error, 1)
	go func() {
		if sleepCtx(ctx, time.Second) != nil {
			perfDone <- ctx.Err()
			return
		}
		cmd := exec.CommandContext(ctx, o.perf, "record", "-e", "cpu-clock", "-F", "499", "-g",
			"-p", strconv.Itoa(fh.d.pid()), "-o", data, "--", "sleep", "8")
		cmd.Stdout, cmd.Stderr = log, log
		perfDone <- cmd.Run()
	}()
	g, err := runLoad(ctx, 90*time.Second, log, o.flowhound, "gen", "-to", fmt.Sprintf("127.0.0.1:%d", fh.netflowPort),
		"-format", "v5", "-scenario", "normal", "-rate", strconv.Itoa(rate), "-duration", "10s", "-seed", "1", "-q")
	perfErr := <-perfDone
	if err != nil {
		return err
	}
	if perfErr != nil {
		return perfErr
	}
	pi.PerfGen = g
	sleepCtx(ctx, 3*time.Second)
	if p1, _, err := fh.counters(ctx); err == nil && g.Records > 0 {
		pi.PerfLossPct = max(0, 100*(1-(p1-p0)/float64(g.Records)))
	}
	report := func(args ...string) ([]string, error) {
		cmd := exec.CommandContext(ctx, o.perf, append([]string{"report", "-i", data, "--stdio", "--sort", "symbol",
			"-g", "none", "--percent-limit", "0.5"}, args...)...)
		out, err := cmd.Output()
		if err != nil {
			return nil, err
		}
		var lines []string
		for _, l := range strings.Split(string(out), "\n") {
			if t := strings.TrimSpace(l); t != "" && !strings.HasPrefix(t, "#") {
				lines = append(lines, tidySymbol(perfPadding.ReplaceAllString(l, "")))
			}
		}
		return lines, nil
	}
	if pi.PerfTop, err = report("--no-children"); err != nil {
		return err
	}
	if pi.PerfChildren, err = report("--children"); err != nil {
		return err
	}
	pi.PerfFile = filepath.Join(o.out, "serve.perf.txt")
	body := "# perf report --no-children (self time)\n" + strings.Join(pi.PerfTop, "\n") +
		"\n\n# perf report --children (time in the function and what it calls)\n" + strings.Join(pi.PerfChildren, "\n") + "\n"
	return os.WriteFile(pi.PerfFile, []byte(body), 0o644)
}

// pprofPipeline runs pipeprof (the serve pipeline in one process, with a CPU profile) on
// its own port while load sends to it, then summarises the profile with go tool pprof.
// With heapAfter > 0 it also takes a heap profile that long after the start, and with
// a store directory the baselines persist there as in serve.
func pprofPipeline(ctx context.Context, o *options, log io.Writer, name, hostsNet, storeDir string, dur, heapAfter time.Duration,
	load func(to string) error) (top, cum []string, err error) {
	cfgPath := filepath.Join(o.out, name+".yaml")
	if err := os.WriteFile(cfgPath, []byte(fhConfig(o.profPort(), 0, storeDir, hostsNet)), 0o644); err != nil {
		return nil, nil, err
	}
	prof := filepath.Join(o.out, name+".cpu.pprof")
	args := []string{"-config", cfgPath, "-duration", dur.String(), "-cpuprofile", prof}
	if heapAfter > 0 {
		args = append(args, "-memprofile", filepath.Join(o.out, name+".heap.pprof"), "-memprofile-after", heapAfter.String())
	}
	cmd := exec.CommandContext(ctx, o.pipeprof, args...)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		return nil, nil, err
	}
	waitErr := make(chan error, 1)
	go func() { waitErr <- cmd.Wait() }()
	if err := sleepCtx(ctx, time.Second); err != nil {
		return nil, nil, err
	}
	loadErr := load(fmt.Sprintf("127.0.0.1:%d", o.profPort()))
	select {
	case err := <-waitErr:
		if err != nil {
			return nil, nil, err
		}
	case <-time.After(dur + 30*time.Second):
		cmd.Process.Kill()
		return nil, nil, fmt.Errorf("pipeprof did not stop")
	}
	if loadErr != nil {
		return nil, nil, loadErr
	}
	pprofTop := func(args ...string) ([]string, error) {
		out, err := exec.CommandContext(ctx, "go", append([]string{"tool", "pprof", "-top", "-nodecount=30"}, append(args, o.pipeprof, prof)...)...).Output()
		if err != nil {
			return nil, err
		}
		lines := strings.Split(strings.TrimRight(string(out), "\n"), "\n")
		for i := range lines {
			lines[i] = tidySymbol(lines[i])
		}
		return lines, nil
	}
	if top, err = pprofTop(); err != nil {
		return nil, nil, err
	}
	if cum, err = pprofTop("-cum"); err != nil {
		return nil, nil, err
	}
	err = os.WriteFile(filepath.Join(o.out, name+".pprof.txt"),
		[]byte(strings.Join(top, "\n")+"\n\n"+strings.Join(cum, "\n")+"\n"), 0o644)
	return top, cum, err
}
