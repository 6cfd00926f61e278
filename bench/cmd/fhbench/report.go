package main

import (
	"fmt"
	"slices"
	"strings"
)

func markdown(r *results) string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	m := r.Machine
	p("# bench/run.sh results, %s\n\n", m.Date)
	p("| machine | |\n|---|---|\n")
	p("| CPU | %s, %d CPUs, %d MiB RAM |\n| kernel | %s |\n| Go | %s |\n| FastNetMon | %s |\n| flowhound commit | %s |\n",
		m.CPU, m.CPUs, m.MemTotalMiB, m.Kernel, m.Go, orDash(m.FastNetMon), orDash(m.Commit))
	p("| load average (1, 5, 15 min) | start %s, end %s |\n| net.core.rmem_max | %s |\n| nice (engines and generators) | %s |\n| run time | %.0f s |\n\n",
		m.LoadStart, m.LoadEnd, m.RmemMax, orDash(m.Nice), m.TotalSecond)

	if len(r.Ladder) > 0 {
		p("## Throughput: NetFlow v5, `gen -scenario normal`, same stream to each engine\n\n")
		p("Loss is 1 - processed/sent; kernel drops are datagrams (≤ 30 records each) the engine's socket buffer discarded. CPU is the daemon's user+system time over the step, per million processed flows. Processed rate is processed flows over the time from the generator's start until the engine's count stopped moving.\n\n")
		p("Other CPU: the machine's busy time during the step that neither the engine nor the generator used, in %% of all CPUs (other processes; high values mean a disturbed step). Before each step the ladder waits (up to 90 s in all) until other processes use less than %d %% of the CPUs for a second.\n\n", busyLimitPct)
		p("| gen -rate | engine | offered rec/s | sent | processed | loss %% | kernel drops | CPU s | CPU s / M flows | processed rec/s | RSS MiB | alerts | other CPU %% |\n")
		p("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
		for _, s := range r.Ladder {
			if s.Err != "" {
				p("| %d | %s | error: %s |||||||||\n", s.Target, s.Engine, s.Err)
				continue
			}
			p("| %s | %s | %s | %s | %s | %.2f | %d | %.1f | %.2f | %s | %.0f | %d | %.0f |\n", num(float64(s.Target)), s.Engine,
				num(s.Gen.Rate), num(float64(s.Gen.Records)), num(s.Processed), s.LossPct, s.KernelDrops, s.CPUSeconds,
				s.CPUPerMillion, num(s.ProcessedRate), s.RSSMiB, s.Alerts, s.OtherCPUPct)
		}
		p("\n")
		var stageRows []string
		for _, s := range r.Ladder {
			if s.Stages != nil && s.Processed > 0 {
				stageRows = append(stageRows, fmt.Sprintf("| %s | %.2f | %.2f | %.2f | %.0f | %.0f | %.0f |", num(float64(s.Target)),
					s.Stages["decode"], s.Stages["detect"], s.Stages["evaluate"],
					s.Stages["decode"]/s.Processed*1e9, s.Stages["detect"]/s.Processed*1e9, s.Stages["evaluate"]/s.Processed*1e9))
			}
		}
		if len(stageRows) > 0 {
			p("flowhound's own stage timings over each step (`flowhound_stage_seconds_sum` deltas; wall time inside each stage, so it includes time the goroutine was preempted):\n\n")
			p("| gen -rate | decode s | detect s | evaluate s | decode ns/flow | detect ns/flow | evaluate ns/flow |\n|---:|---:|---:|---:|---:|---:|---:|\n%s\n\n", strings.Join(stageRows, "\n"))
		}
	}
	if len(r.Summary) > 0 {
		p("| summary | flowhound | compared with | its value | ratio | budget | met |\n|---|---:|---|---:|---:|---|---|\n")
		for _, s := range r.Summary {
			fh, other := num(s.Flowhound), num(s.FNM)
			if strings.HasPrefix(s.What, "highest offered") {
				// Lossless at the highest rate offered: the true limit lies above.
				if s.Flowhound > 0 && s.Flowhound == maxOffered(r.Ladder, "flowhound") {
					fh = "≥ " + fh
				}
				if s.FNM > 0 && s.FNM == maxOffered(r.Ladder, s.Other) {
					other = "≥ " + other
				}
			}
			ratio := fmt.Sprintf("%.1fx", s.Ratio)
			if s.Other != "" && s.FNM == 0 {
				ratio, other = "-", "none (≥ 0.1 % loss at every rate)"
			}
			p("| %s | %s | %s | %s | %s | %s | %s |\n", s.What, fh, orDash(s.Other), other, ratio, s.Budget, s.Met)
		}
		p("\n")
	}
	if len(r.Buffers) > 0 {
		p("NetFlow socket receive buffers (`ss -uam`, bytes the kernel allows, about twice the size requested):")
		for _, b := range r.Buffers {
			p(" %s %s;", b.Engine, num(float64(b.Bytes)))
		}
		p("\n\n")
	}

	if len(r.Delay) > 0 {
		p("## Time to detect a SYN flood (gen -scenario syn-flood, 50 kpps spoofed, victims in 10.99.0.0/24)\n\n")
		p("External: from the generator starting the flood to the alert (flowhound: the anomaly line on stdout; FastNetMon: its ban notify script). It includes the simulated routers' 1 s inactive timeout before the first attack records are exported. flowhound's own `detection_delay_s` counts from the first attack flow received.\n\n")
		type key struct{ cond, engine string }
		var keys []key
		groups := map[key][]delayTrial{}
		for _, t := range r.Delay {
			k := key{t.Condition, t.Engine}
			if _, ok := groups[k]; !ok {
				keys = append(keys, k)
			}
			groups[k] = append(groups[k], t)
		}
		p("| condition | engine | detected | external median s | external worst s | detection_delay_s median | worst | rule |\n|---|---|---|---:|---:|---:|---:|---|\n")
		for _, k := range keys {
			ts := groups[k]
			var ext, eng []float64
			rule := ""
			for _, t := range ts {
				if t.Detected {
					ext = append(ext, t.External)
					if t.Engine == "flowhound" {
						eng = append(eng, t.EngineDelay)
					}
					rule = t.Rule
				}
			}
			p("| %s | %s | %d of %d | %s | %s | %s | %s | %s |\n", k.cond, k.engine, len(ext), len(ts),
				sec(median(ext)), sec(worst(ext)), sec(median(eng)), sec(worst(eng)), orDash(rule))
		}
		p("\n<details><summary>each flood</summary>\n\n| condition | engine | victim | detected | rule | external s | detection_delay_s | tcp-syn-flood external s | tcp-syn-flood detection_delay_s | note |\n|---|---|---|---|---|---:|---:|---:|---:|---|\n")
		for _, t := range r.Delay {
			note := t.Err
			if t.BgGen != nil {
				note = strings.TrimSpace(fmt.Sprintf("background offered %s rec/s, max lag %s %s", num(t.BgGen.Rate), t.BgGen.MaxLag, note))
			}
			ext, eng, synExt, synEng := "-", "-", "-", "-"
			if t.Detected {
				ext = fmt.Sprintf("%.2f", t.External)
				if t.Engine == "flowhound" {
					eng = fmt.Sprintf("%.2f", t.EngineDelay)
				}
			}
			if t.SynExternal != 0 {
				synExt, synEng = fmt.Sprintf("%.2f", t.SynExternal), fmt.Sprintf("%.2f", t.SynDelay)
			}
			p("| %s | %s | %s | %v | %s | %s | %s | %s | %s | %s |\n", t.Condition, t.Engine, t.Victim, t.Detected, orDash(t.Rule),
				ext, eng, synExt, synEng, note)
		}
		p("\n</details>\n\n")
	}

	if len(r.Memory) > 0 {
		p("## Memory with 1,000,000 active hosts (bench/cmd/hostload, monitored network %s)\n\n", hostsNet)
		p("Drained after: from the start of the pass until the engine had processed all it received. Go heap: flowhound's `go_memstats_heap_alloc_bytes` (live objects plus garbage not yet collected).\n\n")
		p("| engine | phase | sent | received | processed | kernel drops | drained after s | CPU s | RSS MiB | peak RSS MiB | Go heap MiB | note |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n")
		for _, row := range r.Memory {
			heap := "-"
			if row.HeapMiB > 0 {
				heap = fmt.Sprintf("%.0f", row.HeapMiB)
			}
			if row.Gen.Records == 0 {
				p("| %s | %s | | | | | | | %.0f | %.0f | %s | %s |\n", row.Engine, row.Phase, row.RSSMiB, row.HWMMiB, heap, row.Err)
				continue
			}
			note := row.Err
			if row.Stages != nil {
				note = strings.TrimSpace(fmt.Sprintf("stages: decode %.2f s, detect %.2f s, evaluate %.2f s %s", row.Stages["decode"], row.Stages["detect"], row.Stages["evaluate"], note))
			}
			p("| %s | %s | %s | %s | %s | %d | %.1f | %.1f | %.0f | %.0f | %s | %s |\n", row.Engine, row.Phase, num(float64(row.Gen.Records)),
				num(row.Received), num(row.Processed), row.KernelDrops, row.DrainSec, row.CPUSeconds, row.RSSMiB, row.HWMMiB, heap, note)
		}
		p("\n")
	}

	if c := r.Crash; c != nil {
		p("## kill -9 (flowhound serve)\n\n")
		if c.Err != "" {
			p("error: %s\n\n", c.Err)
		}
		p("| | |\n|---|---|\n| anomalies listed before the kill | %d |\n| listed after the restart | %d |\n| missing after the restart | %d %s |\n",
			c.Before, c.After, len(c.Missing), strings.Join(c.Missing, " "))
		p("| anomaly raised %.0f ms before the kill | %s after the restart (%s) |\n| restart to /metrics answering | %.2f s |\n| processing after the restart | %v |\n",
			c.KilledAfterMs, c.OngoingAfter, c.Ongoing, c.RestartReadySec, c.ProcessingAfter)
		p("| baselines: resources listed before the kill (past warming up) | %s (%s) |\n| of those, listed again right after the restart | %s |\n| listed after the restart (past warming up) | %s (%s) %s |\n\n",
			num(float64(c.ResourcesBefore)), num(float64(c.LearnedBefore)), num(float64(c.ResourcesKept)),
			num(float64(c.ResourcesAfter)), num(float64(c.LearnedAfter)), c.ResourcesErr)
	}

	if pr := r.Profile; pr != nil {
		p("## CPU profile of serve at %s records/s\n\n", num(float64(pr.Rate)))
		if pr.Err != "" {
			p("error: %s\n\n", pr.Err)
		}
		if len(pr.PerfTop) > 0 {
			p("`perf record -e cpu-clock -F 499 -g -p PID` for 8 s of a 10 s `gen -rate 1000000` run (offered %s rec/s, loss %.2f %%); self time by symbol:\n\n```\n%s\n```\n\n",
				num(pr.PerfGen.Rate), pr.PerfLossPct, strings.Join(head(pr.PerfTop, 40), "\n"))
		}
		if len(pr.PprofTop) > 0 {
			p("The same stream into `bench/cmd/pipeprof` (listener, decoder, detector, default rules in one process), `go tool pprof -top`:\n\n```\n%s\n```\n\n",
				strings.Join(head(pr.PprofTop, 36), "\n"))
			p("Cumulative (`-cum`):\n\n```\n%s\n```\n\n", strings.Join(head(pr.PprofCum, 36), "\n"))
		}
		if len(pr.HostsTop) > 0 {
			p("`bench/cmd/pipeprof` with %s as its network while `hostload` sends one record to each of 1,000,000 new hosts, then to the same hosts again (the memory test's load):\n\n```\n%s\n```\n\nCumulative:\n\n```\n%s\n```\n\n",
				hostsNet, strings.Join(head(pr.HostsTop, 36), "\n"), strings.Join(head(pr.HostsCum, 36), "\n"))
		}
		if len(pr.HostsHeap) > 0 {
			p("Live heap of that pipeline (after a GC) as the first pass over the 1,000,000 hosts ends (`-sample_index=inuse_space`):\n\n```\n%s\n```\n\n", strings.Join(pr.HostsHeap, "\n"))
		}
	}
	if len(r.Decode) > 0 {
		p("## Decoders: flowhound against goflow2 v2.2.6 on the same datagrams (bench/decode_test.go)\n\n")
		p("Datagrams: the `gen -scenario normal` records encoded by `gen.EncodeDatagrams` (v5: 30 records each; v9: the generator's template, then data). goflow2 alone decodes to its protocol structs; with its protobuf producer it yields flow messages, the stage comparable to flowhound's `[]flow.Record`. Medians of %d runs.\n\n", r.Decode[0].Runs)
		p("| benchmark | ns/datagram | ns/record | B/op | allocs/op |\n|---|---:|---:|---:|---:|\n")
		for _, d := range r.Decode {
			p("| %s | %.0f | %.1f | %.0f | %.0f |\n", d.Name, d.NsPerOp, d.NsPerRecord, d.BytesPerOp, d.AllocsPerOp)
		}
		by := map[string]float64{}
		for _, d := range r.Decode {
			by[d.Name] = d.NsPerRecord
		}
		for _, v := range []string{"V5", "V9"} {
			fh, g, gp := by["BenchmarkDecodeFlowhound"+v], by["BenchmarkDecodeGoflow2"+v], by["BenchmarkDecodeGoflow2Produce"+v]
			if fh > 0 && g > 0 && gp > 0 {
				p("\n%s: goflow2 decoding alone takes %.1fx flowhound's time per record, with its producer %.1fx.", strings.ToLower(v), g/fh, gp/fh)
			}
		}
		p("\n\n")
	}
	if len(r.Notes) > 0 {
		p("## Notes\n\n")
		for _, n := range r.Notes {
			p("- %s\n", n)
		}
		p("\n")
	}
	p("| section | seconds | error |\n|---|---:|---|\n")
	for _, s := range r.Sections {
		p("| %s | %.0f | %s |\n", s.Name, s.Seconds, s.Error)
	}
	return b.String()
}

func maxOffered(steps []ladderStep, engine string) float64 {
	m := 0.0
	for _, s := range steps {
		if s.Engine == engine && s.Err == "" {
			m = max(m, s.Gen.Rate)
		}
	}
	return m
}

func head(s []string, n int) []string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// num formats a count with thousands separators.
func num(v float64) string {
	s := fmt.Sprintf("%.0f", v)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var out []byte
	for i := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	if neg {
		return "-" + string(out)
	}
	return string(out)
}

func sec(v float64) string {
	if v < 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f", v)
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return -1
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func worst(v []float64) float64 {
	if len(v) == 0 {
		return -1
	}
	return slices.Max(v)
}
