// Command fhbench measures flowhound side by side with FastNetMon on loopback: the
// NetFlow v5 throughput ladder (loss and CPU per million flows), time to detect a SYN flood
// at idle and under a 1M records/s background, memory with 1,000,000 active hosts, a
// kill -9 restart, and a CPU profile of serve at 1M records/s. bench/run.sh builds the
// binaries and runs it; see BENCHMARKS.md for what each number means.
//
// Everything it starts it stops again, by PID. Every load it sends is bounded (gen
// -duration, hostload -passes/-max-duration, and a timeout around each).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

type options struct {
	flowhound, hostload, pipeprof, fastnetmon, perf string
	out                                             string
	rates                                           []int
	duration                                        time.Duration
	portBase                                        int
	loadRate                                        int
	hosts                                           int
	hostRate                                        int
	repeat                                          int
	benchDir                                        string
	fnmPreload                                      string
	skip                                            map[string]bool
}

// ports derived from -port-base
func (o *options) fhNetflow() int   { return o.portBase }
func (o *options) fnmNetflow() int  { return o.portBase + 1 }
func (o *options) fhAPI() int       { return o.portBase + 10 }
func (o *options) fnmProm() int     { return o.portBase + 11 }
func (o *options) profPort() int    { return o.portBase + 2 }
func (o *options) fnm2Netflow() int { return o.portBase + 3 }
func (o *options) fnm2Prom() int    { return o.portBase + 12 }

func main() {
	var o options
	var rates, skip string
	flag.StringVar(&o.flowhound, "flowhound", "", "flowhound binary (serve and gen)")
	flag.StringVar(&o.hostload, "hostload", "", "hostload binary (memory test)")
	flag.StringVar(&o.pipeprof, "pipeprof", "", "pipeprof binary (in-process pprof of the pipeline; empty: skip)")
	flag.StringVar(&o.fastnetmon, "fastnetmon", "/usr/sbin/fastnetmon", "FastNetMon binary (empty or missing: flowhound only)")
	flag.StringVar(&o.perf, "perf", "perf", "perf binary for the profile of serve (missing: skip)")
	flag.StringVar(&o.out, "out", "", "directory for results and logs")
	flag.StringVar(&rates, "rates", "50000,100000,250000,500000,1000000,1250000,1500000,2000000", "ladder of gen -rate values (records/s)")
	flag.DurationVar(&o.duration, "duration", 10*time.Second, "gen -duration of each ladder step")
	flag.IntVar(&o.portBase, "port-base", 29955, "first loopback port (uses base..base+2 UDP, base+10..base+11 TCP)")
	flag.IntVar(&o.loadRate, "load-rate", 1_000_000, "background records/s for detection delay under load")
	flag.IntVar(&o.hosts, "hosts", 1_000_000, "distinct hosts for the memory test")
	flag.IntVar(&o.hostRate, "host-rate", 100_000, "records/s of the memory test's first pass")
	flag.StringVar(&o.fnmPreload, "fnm-rcvbuf-preload", "", "rcvbuf.so: also run the ladder against a second FastNetMon whose socket has a 32 MiB buffer (empty: skip)")
	flag.StringVar(&o.benchDir, "bench-dir", "", "the bench module's directory, for the decoder benchmarks (empty: skip)")
	flag.IntVar(&o.repeat, "repeat", 1, "run each ladder step this many times and keep the best (least loss)")
	flag.StringVar(&skip, "skip", "", "comma-separated sections to skip: ladder,profile,delay,crash,memory,profile-hosts,decode")
	flag.Parse()
	for _, r := range strings.Split(rates, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(r))
		if err != nil || n <= 0 {
			fatal(fmt.Errorf("-rates: %q", r))
		}
		o.rates = append(o.rates, n)
	}
	o.skip = map[string]bool{}
	for _, s := range strings.Split(skip, ",") {
		if s = strings.TrimSpace(s); s != "" {
			o.skip[s] = true
		}
	}
	if o.flowhound == "" || o.out == "" {
		fatal(errors.New("-flowhound and -out are required"))
	}
	if o.fastnetmon != "" {
		if _, err := os.Stat(o.fastnetmon); err != nil {
			fmt.Fprintf(os.Stderr, "fhbench: %s not found: measuring flowhound alone (apt-get install -y fastnetmon)\n", o.fastnetmon)
			o.fastnetmon = ""
		}
	}
	if o.perf != "" {
		if p, err := exec.LookPath(o.perf); err != nil {
			o.perf = ""
		} else {
			o.perf = p
		}
	}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	// A hard bound on the whole run, whatever happens inside.
	ctx, cancel2 := context.WithTimeout(ctx, 14*time.Minute)
	err := run(ctx, &o)
	cancel2()
	cancel()
	stopAll()
	if err != nil {
		fatal(err)
	}
}

func fatal(err error) {
	stopAll()
	fmt.Fprintln(os.Stderr, "fhbench:", err)
	os.Exit(1)
}

// results is everything measured, written as results.json and results.md.
type results struct {
	Machine  machine        `json:"machine"`
	Ladder   []ladderStep   `json:"ladder,omitempty"`
	Summary  []summaryRow   `json:"summary,omitempty"`
	Delay    []delayTrial   `json:"delay,omitempty"`
	Memory   []memoryRow    `json:"memory,omitempty"`
	Crash    *crashResult   `json:"crash,omitempty"`
	Profile  *profileInfo   `json:"profile,omitempty"`
	Decode   []decodeRow    `json:"decode,omitempty"`
	Buffers  []socketBuffer `json:"socket_buffers,omitempty"`
	Notes    []string       `json:"notes,omitempty"`
	Sections []sectionTime  `json:"sections"`
}

// socketBuffer is an engine's NetFlow socket receive buffer as the kernel reports it.
type socketBuffer struct {
	Engine string `json:"engine"`
	Bytes  int64  `json:"bytes"`
}

type sectionTime struct {
	Name    string  `json:"name"`
	Seconds float64 `json:"seconds"`
	Error   string  `json:"error,omitempty"`
}

type machine struct {
	Date        string  `json:"date"`
	CPU         string  `json:"cpu"`
	CPUs        int     `json:"cpus"`
	MemTotalMiB int64   `json:"mem_total_mib"`
	Kernel      string  `json:"kernel"`
	Go          string  `json:"go"`
	FastNetMon  string  `json:"fastnetmon,omitempty"`
	Commit      string  `json:"commit"`
	LoadStart   string  `json:"loadavg_start"`
	LoadEnd     string  `json:"loadavg_end"`
	RmemMax     string  `json:"rmem_max"`
	Nice        string  `json:"nice"`
	TotalSecond float64 `json:"total_seconds"`
}

func run(ctx context.Context, o *options) error {
	if err := os.MkdirAll(o.out, 0o755); err != nil {
		return err
	}
	logf, err := os.Create(filepath.Join(o.out, "fhbench.log"))
	if err != nil {
		return err
	}
	defer logf.Close()
	log := io.MultiWriter(logf, os.Stderr)
	start := time.Now()
	res := &results{Machine: describeMachine(o)}
	fmt.Fprintf(log, "fhbench: %s, %d CPUs, load average %s; results in %s\n",
		res.Machine.CPU, res.Machine.CPUs, res.Machine.LoadStart, o.out)
	if l := loadAvg1(); l > float64(res.Machine.CPUs)*0.75 {
		msg := fmt.Sprintf("the machine was busy when the run started (1-minute load average %.1f on %d CPUs): other processes take CPU from the engines, so rates are lower and noisier than on an idle host", l, res.Machine.CPUs)
		res.Notes = append(res.Notes, msg)
		fmt.Fprintln(log, "fhbench: warning:", msg)
	}
	if err := loopbackPortsFree([]int{o.fhNetflow(), o.fnmNetflow(), o.profPort(), o.fnm2Netflow()}, []int{o.fhAPI(), o.fnmProm(), o.fnm2Prom()}); err != nil {
		return err
	}

	section := func(name string, f func() error) {
		if o.skip[name] || ctx.Err() != nil {
			return
		}
		t0 := time.Now()
		fmt.Fprintf(log, "\n== %s ==\n", name)
		err := f()
		st := sectionTime{Name: name, Seconds: time.Since(t0).Seconds()}
		if err != nil {
			st.Error = err.Error()
			fmt.Fprintf(log, "fhbench: %s: %v\n", name, err)
		}
		res.Sections = append(res.Sections, st)
	}

	// One flowhound and one FastNetMon stay up for the ladder, the profile, the delay
	// tests and the crash test; FastNetMon with the larger socket buffer joins the ladder
	// only; the memory test starts its own instances with its own network.
	fh, err := startFlowhound(ctx, o.flowhound, o.out, "flowhound", o.fhNetflow(), o.fhAPI(), "", filepath.Join(o.out, "flowhound-data"))
	if err != nil {
		return err
	}
	var fnm *fnmServe
	if o.fastnetmon != "" {
		fnm, err = startFastNetMon(ctx, o.fastnetmon, o.out, "fastnetmon", o.fnmNetflow(), o.fnmProm(),
			[]string{"192.0.2.0/24", "198.51.100.0/24", "10.99.0.0/24"}, "")
		if err != nil {
			return err
		}
	}
	engines := []*engine{&fh.engine}
	if fnm != nil {
		engines = append(engines, &fnm.engine)
	}
	var fnm2 *fnmServe
	if fnm != nil && o.fnmPreload != "" {
		fnm2, err = startFastNetMon(ctx, o.fastnetmon, o.out, "fastnetmon-32MiB", o.fnm2Netflow(), o.fnm2Prom(),
			[]string{"192.0.2.0/24", "198.51.100.0/24", "10.99.0.0/24"}, o.fnmPreload)
		if err != nil {
			return err
		}
		engines = append(engines, &fnm2.engine)
	}
	for _, e := range engines {
		res.Buffers = append(res.Buffers, socketBuffer{Engine: e.name, Bytes: udpRcvbuf(e.netflowPort)})
	}

	section("ladder", func() error { return ladder(ctx, o, log, res, engines) })
	if fnm2 != nil {
		fnm2.d.stop()
	}
	section("profile", func() error { return profile(ctx, o, log, res, fh) })
	section("delay", func() error { return delay(ctx, o, log, res, fh, fnm) })
	section("crash", func() error {
		var err error
		fh, err = crash(ctx, o, log, res, fh)
		return err
	})
	fh.d.stop()
	if fnm != nil {
		fnm.d.stop()
	}
	section("memory", func() error { return memory(ctx, o, log, res) })
	section("profile-hosts", func() error { return profileHosts(ctx, o, log, res) })
	if o.benchDir != "" {
		section("decode", func() error { return decode(ctx, o, log, res) })
	}

	res.Machine.LoadEnd = loadAvgText()
	res.Machine.TotalSecond = time.Since(start).Seconds()
	if err := writeResults(o.out, res); err != nil {
		return err
	}
	fmt.Fprintf(log, "\nfhbench: done in %v; %s\n", time.Since(start).Round(time.Second), filepath.Join(o.out, "results.md"))
	return ctx.Err()
}

func writeResults(dir string, res *results) error {
	b, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "results.json"), b, 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "results.md"), []byte(markdown(res)), 0o644)
}

func describeMachine(o *options) machine {
	m := machine{
		Date:      time.Now().UTC().Format(time.RFC3339),
		CPUs:      runtime.NumCPU(),
		Go:        runtime.Version(),
		LoadStart: loadAvgText(),
		RmemMax:   strings.TrimSpace(readFile("/proc/sys/net/core/rmem_max")),
	}
	for _, line := range strings.Split(readFile("/proc/cpuinfo"), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			m.CPU = strings.TrimSpace(v)
			break
		}
	}
	for _, line := range strings.Split(readFile("/proc/meminfo"), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && k == "MemTotal" {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			m.MemTotalMiB = kb / 1024
		}
	}
	m.Kernel = strings.TrimSpace(readFile("/proc/sys/kernel/osrelease"))
	if o.fastnetmon != "" {
		m.FastNetMon = fnmVersion(o.fastnetmon)
	}
	m.Nice = os.Getenv("FHB_NICE")
	m.Commit = os.Getenv("FHB_COMMIT") // run.sh: git rev-parse HEAD, plus "+changes" for a dirty tree
	return m
}

func readFile(p string) string {
	b, _ := os.ReadFile(p)
	return string(b)
}

func loadAvgText() string {
	f := strings.Fields(readFile("/proc/loadavg"))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

func loadAvg1() float64 {
	f := strings.Fields(readFile("/proc/loadavg"))
	if len(f) == 0 {
		return 0
	}
	v, _ := strconv.ParseFloat(f[0], 64)
	return v
}

// sleepCtx sleeps d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}
