package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"
)

// delayTrial is one SYN flood against one engine.
type delayTrial struct {
	Condition string    `json:"condition"` // "idle" or "background N records/s"
	Engine    string    `json:"engine"`
	Victim    string    `json:"victim"`
	GenStart  time.Time `json:"gen_start"`
	// FloodStart is when the generator began the flood phase (its first attack packets;
	// their flow records leave the simulated routers after the 1 s inactive timeout).
	FloodStart time.Time `json:"flood_start"`
	Detected   bool      `json:"detected"`
	AlertAt    time.Time `json:"alert_at,omitempty"`
	// External is AlertAt - FloodStart: the same clock and the same definition for both
	// engines (flowhound: its anomaly line read from stdout; FastNetMon: its ban notify
	// script's timestamp).
	External float64 `json:"external_s,omitempty"`
	// EngineDelay is flowhound's own detection_delay_s: first attack flow received to raise.
	EngineDelay float64 `json:"engine_delay_s,omitempty"`
	Rule        string  `json:"rule,omitempty"`
	// flowhound's tcp-syn-flood anomaly for the victim, which may come after another
	// rule's (host-total-traffic) when the flood arrives in bursts.
	SynExternal float64    `json:"syn_external_s,omitempty"`
	SynDelay    float64    `json:"syn_engine_delay_s,omitempty"`
	BgGen       *genResult `json:"background_gen,omitempty"`
	Err         string     `json:"error,omitempty"`
}

const (
	floods      = 3
	floodEvery  = 6 * time.Second  // stagger between flood generators
	floodGenDur = 16 * time.Second // 10 s normal (the scenario's lead-in), then 6 s of flood
)

// delay runs SYN floods (gen -scenario syn-flood, 50 kpps spoofed) against victims in
// 10.99.0.0/24, three per engine and condition, one after another, at idle and beside a
// background of o.loadRate records/s of normal traffic. Victims: flowhound 10.99.0.10-12
// (idle) and .60-62 (load), FastNetMon .20-22 and .70-72; the crash test uses .90.
func delay(ctx context.Context, o *options, log io.Writer, res *results, fh *fhServe, fnm *fnmServe) error {
	type target struct {
		e     *engine
		found func(victim string, since time.Time) (time.Time, float64, string, bool)
	}
	targets := []target{{&fh.engine, func(v string, since time.Time) (time.Time, float64, string, bool) {
		a, ok := fh.firstRaise(v, "", since)
		return a.seen, a.Delay, a.Rule, ok
	}}}
	if fnm != nil {
		targets = append(targets, target{&fnm.engine, func(v string, since time.Time) (time.Time, float64, string, bool) {
			at, ok := fnm.firstBan(v, since)
			return at, 0, "ban (threshold_pps)", ok
		}})
	}
	for _, bg := range []int{0, o.loadRate} {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		cond := "idle"
		if bg > 0 {
			cond = fmt.Sprintf("background %d records/s", bg)
		}
		// At idle the engines' floods run at the same time (each engine its own stream);
		// under load one engine at a time, since each background takes a core.
		trials := make([][]delayTrial, len(targets))
		var wg sync.WaitGroup
		for i, t := range targets {
			victimBase := 10 + 10*i
			if bg > 0 {
				victimBase += 50
			}
			if bg == 0 {
				wg.Add(1)
				go func() { defer wg.Done(); trials[i] = floodTrials(ctx, o, log, t.e, bg, victimBase) }()
			} else {
				trials[i] = floodTrials(ctx, o, log, t.e, bg, victimBase)
			}
		}
		wg.Wait()
		if err := sleepCtx(ctx, 2*time.Second); err != nil {
			return err
		}
		for ti, t := range targets {
			for i := range trials[ti] {
				tr := &trials[ti][i]
				tr.Condition, tr.Engine = cond, t.e.name
				if tr.Err != "" || tr.FloodStart.IsZero() {
					continue
				}
				at, d, rule, ok := t.found(tr.Victim, tr.GenStart)
				if ok {
					tr.Detected, tr.AlertAt, tr.EngineDelay, tr.Rule = true, at, d, rule
					tr.External = at.Sub(tr.FloodStart).Seconds()
				}
				if t.e == &fh.engine {
					if a, ok := fh.firstRaise(tr.Victim, "tcp-syn-flood", tr.GenStart); ok {
						tr.SynExternal, tr.SynDelay = a.seen.Sub(tr.FloodStart).Seconds(), a.Delay
					}
				}
				fmt.Fprintf(log, "%-10s %-28s victim %-12s detected %-5v external %.2fs engine %.2fs %s %s\n",
					tr.Engine, tr.Condition, tr.Victim, tr.Detected, tr.External, tr.EngineDelay, tr.Rule, tr.Err)
			}
			res.Delay = append(res.Delay, trials[ti]...)
		}
	}
	return nil
}

// floodTrials starts the background (if bg > 0) and three staggered flood generators
// against e, and returns when all have finished.
func floodTrials(ctx context.Context, o *options, log io.Writer, e *engine, bg int, victimBase int) []delayTrial {
	to := fmt.Sprintf("127.0.0.1:%d", e.netflowPort)
	var wg sync.WaitGroup
	var bgRes genResult
	var bgErr error
	if bg > 0 {
		bgDur := time.Second + floods*floodEvery + floodGenDur - floodEvery + 2*time.Second
		wg.Add(1)
		go func() {
			defer wg.Done()
			bgRes, bgErr = runLoad(ctx, 3*bgDur+30*time.Second, log, o.flowhound, "gen", "-to", to, "-format", "v5",
				"-scenario", "normal", "-rate", strconv.Itoa(bg), "-duration", bgDur.String(), "-seed", "2", "-q")
		}()
		sleepCtx(ctx, time.Second)
	}
	trials := make([]delayTrial, floods)
	for i := range trials {
		if i > 0 {
			sleepCtx(ctx, floodEvery)
		}
		tr := &trials[i]
		tr.Victim = fmt.Sprintf("10.99.0.%d", victimBase+i)
		srcs := fmt.Sprintf("127.0.0.%d,127.0.0.%d,127.0.0.%d", 21+3*i, 22+3*i, 23+3*i)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := floodGen(ctx, o, log, to, tr, srcs); err != nil {
				tr.Err = err.Error()
			}
		}()
	}
	wg.Wait()
	if bg > 0 {
		for i := range trials {
			g := bgRes
			trials[i].BgGen = &g
			if bgErr != nil && trials[i].Err == "" {
				trials[i].Err = "background: " + bgErr.Error()
			}
		}
	}
	return trials
}

// floodGen runs one syn-flood generator and notes when its flood phase starts.
func floodGen(ctx context.Context, o *options, log io.Writer, to string, tr *delayTrial, srcs string) error {
	ctx, cancel := context.WithTimeout(ctx, 3*floodGenDur+30*time.Second)
	defer cancel()
	args := []string{"gen", "-to", to, "-format", "v5", "-scenario", "syn-flood", "-victim", tr.Victim,
		"-src", srcs, "-rate", "1000", "-duration", floodGenDur.String(), "-seed", "3"}
	cmd := exec.CommandContext(ctx, o.flowhound, args...)
	cmd.Env = cleanEnv()
	cmd.WaitDelay = 5 * time.Second
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return err
	}
	var out strings.Builder
	cmd.Stdout = &out
	fmt.Fprintf(log, "$ %s %s\n", o.flowhound, strings.Join(args, " "))
	tr.GenStart = time.Now()
	if err := cmd.Start(); err != nil {
		return err
	}
	sc := bufio.NewScanner(stderr)
	for sc.Scan() {
		line := sc.Text()
		if tr.FloodStart.IsZero() && strings.Contains(line, "syn-flood,") {
			tr.FloodStart = time.Now()
		}
		fmt.Fprintf(log, "  [%s] %s\n", tr.Victim, line)
	}
	if err := cmd.Wait(); err != nil {
		return fmt.Errorf("flood generator: %v", err)
	}
	io.WriteString(log, out.String())
	if tr.FloodStart.IsZero() {
		return fmt.Errorf("the generator never announced the flood")
	}
	return nil
}
