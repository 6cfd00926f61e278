package main

import (
	"context"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// memoryRow is one engine's memory after a phase of the 1M-host load.
type memoryRow struct {
	Engine      string             `json:"engine"`
	Phase       string             `json:"phase"`
	Gen         genResult          `json:"load"`
	Received    float64            `json:"received"`
	Processed   float64            `json:"processed"`
	KernelDrops int64              `json:"kernel_drops"`
	DrainSec    float64            `json:"drain_s"` // load start → processed count stops moving
	CPUSeconds  float64            `json:"cpu_s"`
	RSSMiB      float64            `json:"rss_mib"`
	HWMMiB      float64            `json:"peak_rss_mib"`
	HeapMiB     float64            `json:"go_heap_mib,omitempty"` // flowhound: go_memstats_heap_alloc_bytes (live and not yet collected)
	Stages      map[string]float64 `json:"stage_s,omitempty"`
	Err         string             `json:"error,omitempty"`
}

const hostsNet = "10.0.0.0/12" // 1,048,576 addresses

// memory restarts each engine with 10.0.0.0/12 as its only monitored network and sends
// one record to each of o.hosts distinct hosts (pass 1: every host new), then again
// (pass 2: every host known), reading VmRSS and VmHWM after each pass.
func memory(ctx context.Context, o *options, log io.Writer, res *results) error {
	if o.hostload == "" {
		return fmt.Errorf("no -hostload binary")
	}
	fh, err := startFlowhound(ctx, o.flowhound, o.out, "flowhound-mem", o.fhNetflow(), o.fhAPI(), hostsNet,
		filepath.Join(o.out, "flowhound-mem-data"))
	if err != nil {
		return err
	}
	memoryRun(ctx, o, log, res, &fh.engine)
	fh.d.stop()
	if o.fastnetmon == "" {
		return nil
	}
	// With the larger socket buffer when available, so that FastNetMon sees every host too.
	fnm, err := startFastNetMon(ctx, o.fastnetmon, o.out, "fastnetmon-mem", o.fnmNetflow(), o.fnmProm(), []string{hostsNet}, o.fnmPreload)
	if err != nil {
		return err
	}
	memoryRun(ctx, o, log, res, &fnm.engine)
	fnm.d.stop()
	return nil
}

// profileHosts profiles the pipeline (pipeprof) under the memory test's load.
func profileHosts(ctx context.Context, o *options, log io.Writer, res *results) error {
	if o.pipeprof == "" || o.hostload == "" {
		return fmt.Errorf("needs -pipeprof and -hostload")
	}
	if res.Profile == nil {
		res.Profile = &profileInfo{Rate: 1_000_000}
	}
	var err error
	// The heap profile is taken as the first pass ends (pipeprof starts a second before it).
	heapAt := time.Second + time.Duration(float64(o.hosts)/float64(o.hostRate)*float64(time.Second)) + time.Second
	res.Profile.HostsTop, res.Profile.HostsCum, err = pprofPipeline(ctx, o, log, "pipeline-hosts", hostsNet,
		filepath.Join(o.out, "pipeline-hosts-data"), 40*time.Second, heapAt,
		func(to string) error {
			for _, rate := range []int{o.hostRate, 2 * o.hostRate} {
				if _, err := runLoad(ctx, 3*time.Minute, log, o.hostload, "-to", to, "-hosts", strconv.Itoa(o.hosts),
					"-prefix", hostsNet, "-rate", strconv.Itoa(rate), "-passes", "1", "-max-duration", "2m"); err != nil {
					return err
				}
			}
			return nil
		})
	if err != nil {
		return err
	}
	out, err := exec.CommandContext(ctx, "go", "tool", "pprof", "-sample_index=inuse_space", "-top", "-nodecount=16",
		o.pipeprof, filepath.Join(o.out, "pipeline-hosts.heap.pprof")).Output()
	if err != nil {
		return fmt.Errorf("heap profile: %v", err)
	}
	for _, l := range strings.Split(strings.TrimRight(string(out), "\n"), "\n") {
		res.Profile.HostsHeap = append(res.Profile.HostsHeap, tidySymbol(l))
	}
	return nil
}

func memoryRun(ctx context.Context, o *options, log io.Writer, res *results, e *engine) {
	sleepCtx(ctx, time.Second)
	rss, hwm, _ := memKiB(e.d.pid())
	idle := memoryRow{Engine: e.name, Phase: "started, no traffic", RSSMiB: float64(rss) / 1024, HWMMiB: float64(hwm) / 1024}
	if m, err := scrape(ctx, e.metricsURL); err == nil {
		idle.HeapMiB = m["go_memstats_heap_alloc_bytes"] / (1 << 20)
	}
	res.Memory = append(res.Memory, idle)
	for pass, rate := range []int{o.hostRate, 2 * o.hostRate} {
		phase := fmt.Sprintf("pass 1: %d new hosts at %d records/s", o.hosts, rate)
		if pass == 1 {
			phase = fmt.Sprintf("pass 2: the same %d hosts at %d records/s", o.hosts, rate)
		}
		row := memoryPass(ctx, o, log, e, rate)
		row.Engine, row.Phase = e.name, phase
		res.Memory = append(res.Memory, row)
		fmt.Fprintf(log, "%-10s %-50s received %8.0f processed %8.0f of %8d (kernel drops %6d) drained in %5.1fs cpu %5.1fs rss %6.0f MiB peak %6.0f MiB %s\n",
			e.name, phase, row.Received, row.Processed, row.Gen.Records, row.KernelDrops, row.DrainSec, row.CPUSeconds, row.RSSMiB, row.HWMMiB, row.Err)
		if ctx.Err() != nil {
			return
		}
	}
}

func memoryPass(ctx context.Context, o *options, log io.Writer, e *engine, rate int) (row memoryRow) {
	fail := func(err error) memoryRow { row.Err = err.Error(); return row }
	p0, r0, err := e.counters(ctx)
	if err != nil {
		return fail(err)
	}
	d0, _ := udpDrops(e.netflowPort)
	c0, _ := cpuSeconds(e.d.pid())
	s0 := e.stages(ctx)
	t0 := time.Now()
	row.Gen, err = runLoad(ctx, 3*time.Minute, log, o.hostload, "-to", fmt.Sprintf("127.0.0.1:%d", e.netflowPort),
		"-hosts", strconv.Itoa(o.hosts), "-prefix", hostsNet, "-rate", strconv.Itoa(rate), "-passes", "1",
		"-max-duration", "2m")
	if err != nil {
		return fail(err)
	}
	// Wait for the engine to work through what it has received.
	lastChange, err := e.drain(ctx, 120*time.Second)
	if err != nil {
		row.Err = err.Error()
	}
	p1, r1, err := e.counters(ctx)
	if err != nil {
		return fail(err)
	}
	d1, _ := udpDrops(e.netflowPort)
	c1, _ := cpuSeconds(e.d.pid())
	rss, hwm, _ := memKiB(e.d.pid())
	row.Processed, row.Received = p1-p0, r1-r0
	row.Stages = stageDelta(s0, e.stages(ctx))
	row.KernelDrops = d1 - d0
	row.DrainSec = lastChange.Sub(t0).Seconds()
	row.CPUSeconds = c1 - c0
	row.RSSMiB, row.HWMMiB = float64(rss)/1024, float64(hwm)/1024
	if m, err := scrape(ctx, e.metricsURL); err == nil {
		row.HeapMiB = m["go_memstats_heap_alloc_bytes"] / (1 << 20)
	}
	return row
}
