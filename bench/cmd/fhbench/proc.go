package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
)

// clkTck is USER_HZ, the unit of utime/stime in /proc/PID/stat (100 on Linux/amd64).
const clkTck = 100

// cpuSeconds returns a process's user+system CPU time, all threads.
func cpuSeconds(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name is in parentheses and may hold spaces: count fields after it.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, errors.New("malformed /proc/PID/stat")
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return 0, errors.New("short /proc/PID/stat")
	}
	ut, err1 := strconv.ParseFloat(f[11], 64)
	st, err2 := strconv.ParseFloat(f[12], 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, err
	}
	return (ut + st) / clkTck, nil
}

// memKiB returns VmRSS and VmHWM (peak RSS) in KiB.
func memKiB(pid int) (rss, hwm int64, err error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		var dst *int64
		switch k {
		case "VmRSS":
			dst = &rss
		case "VmHWM":
			dst = &hwm
		default:
			continue
		}
		n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		*dst = n
	}
	return rss, hwm, sc.Err()
}

// udpQueue returns the bytes waiting in the receive queue of the IPv4 UDP socket bound
// to 127.0.0.1:port.
func udpQueue(port int) (int64, error) {
	f, err := udpSocketLine(port)
	if err != nil {
		return 0, err
	}
	_, rx, _ := strings.Cut(f[4], ":") // tx_queue:rx_queue, hex
	return strconv.ParseInt(rx, 16, 64)
}

var ssRcvbuf = regexp.MustCompile(`\brb(\d+)`)

// udpRcvbuf returns the receive buffer size (bytes, as the kernel accounts it) of the UDP
// socket on 127.0.0.1:port, from ss.
func udpRcvbuf(port int) int64 {
	out, err := exec.Command("ss", "-uamnH", fmt.Sprintf("sport = :%d", port)).Output()
	if err != nil {
		return 0
	}
	m := ssRcvbuf.FindSubmatch(out)
	if m == nil {
		return 0
	}
	n, _ := strconv.ParseInt(string(m[1]), 10, 64)
	return n
}

// udpDrops returns the kernel's drop counter of the IPv4 UDP socket bound to
// 127.0.0.1:port (datagrams discarded because the receive buffer was full).
func udpDrops(port int) (int64, error) {
	f, err := udpSocketLine(port)
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(f[len(f)-1], 10, 64)
}

func udpSocketLine(port int) ([]string, error) {
	b, err := os.ReadFile("/proc/net/udp")
	if err != nil {
		return nil, err
	}
	want := fmt.Sprintf("0100007F:%04X", port)
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) >= 13 && f[1] == want {
			return f, nil
		}
	}
	return nil, fmt.Errorf("no UDP socket on 127.0.0.1:%d", port)
}

// portFree reports whether nothing listens on addr (UDP or TCP, per network).
func portFree(network, addr string) bool {
	switch network {
	case "udp":
		c, err := net.ListenPacket("udp", addr)
		if err != nil {
			return false
		}
		c.Close()
	default:
		l, err := net.Listen("tcp", addr)
		if err != nil {
			return false
		}
		l.Close()
	}
	return true
}

// scrape fetches a Prometheus text page and returns each metric name's sum over its
// series (flowhound exports per-exporter series and no unlabelled total beside them),
// and under the full series text (name{labels}) each series' own value.
func scrape(ctx context.Context, url string) (map[string]float64, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return nil, fmt.Errorf("%s: %s", url, resp.Status)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		sp := strings.LastIndexByte(line, ' ')
		if sp < 0 {
			continue
		}
		series := line[:sp]
		name := series
		if i := strings.IndexByte(name, '{'); i >= 0 {
			name = name[:i]
		}
		v, err := strconv.ParseFloat(line[sp+1:], 64)
		if err != nil {
			continue
		}
		out[name] += v
		if series != name {
			out[series] = v
		}
	}
	return out, sc.Err()
}

// daemon is a process the benchmark started and stops again (by its PID only).
type daemon struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

func startDaemon(name string, stdout, stderr io.Writer, env []string, bin string, args ...string) (*daemon, error) {
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.Env = append(cleanEnv(), env...)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	d := &daemon{name: name, cmd: cmd, done: make(chan struct{})}
	go func() { d.err = cmd.Wait(); close(d.done) }()
	register(d)
	return d, nil
}

func (d *daemon) pid() int { return d.cmd.Process.Pid }

func (d *daemon) alive() bool {
	select {
	case <-d.done:
		return false
	default:
		return true
	}
}

// stop sends SIGTERM and waits up to 10 s, then SIGKILL.
func (d *daemon) stop() {
	if !d.alive() {
		return
	}
	_ = d.cmd.Process.Signal(os.Interrupt)
	select {
	case <-d.done:
	case <-time.After(10 * time.Second):
		_ = d.cmd.Process.Kill()
		<-d.done
	}
	unregister(d)
}

// kill9 kills the process with SIGKILL, as a crash would.
func (d *daemon) kill9() {
	_ = d.cmd.Process.Kill()
	<-d.done
	unregister(d)
}

var (
	liveMu sync.Mutex
	live   = map[*daemon]bool{}
)

func register(d *daemon)   { liveMu.Lock(); live[d] = true; liveMu.Unlock() }
func unregister(d *daemon) { liveMu.Lock(); delete(live, d); liveMu.Unlock() }

// stopAll stops whatever the benchmark still has running (on exit or interrupt).
func stopAll() {
	liveMu.Lock()
	ds := make([]*daemon, 0, len(live))
	for d := range live {
		ds = append(ds, d)
	}
	liveMu.Unlock()
	for _, d := range ds {
		d.stop()
	}
}

// cleanEnv is the environment for children: without an API token variable, so that the
// loopback API answers without one.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "FLOWHOUND_TOKEN=") {
			env = append(env, kv)
		}
	}
	return env
}

// genResult is what `flowhound gen` (or hostload) printed about what it sent.
type genResult struct {
	Datagrams  int64         `json:"datagrams"`
	Records    int64         `json:"records"`
	Took       time.Duration `json:"took_ns"`
	Rate       float64       `json:"records_per_s"` // records / took: the offered rate
	MaxLag     string        `json:"max_lag,omitempty"`
	SendErrors int64         `json:"send_errors"`
	CPUSeconds float64       `json:"cpu_s"` // the generator's own user+system time
}

// cpuBusy returns the machine's busy and total CPU time so far, in seconds (/proc/stat).
func cpuBusy() (busy, total float64) {
	for _, line := range strings.Split(readFile("/proc/stat"), "\n") {
		f := strings.Fields(line)
		if len(f) < 8 || f[0] != "cpu" {
			continue
		}
		for i, v := range f[1:] {
			n, _ := strconv.ParseFloat(v, 64)
			if i >= 8 { // guest time is already counted in user
				break
			}
			total += n
			if i != 3 && i != 4 { // idle, iowait
				busy += n
			}
		}
		break
	}
	return busy / clkTck, total / clkTck
}

var genLine = regexp.MustCompile(`sent (\d+) datagrams, (\d+) records, \d+ bytes in (\S+) \(([\d.]+) records/s\); max lag (\S+), (\d+) send errors`)
var hostloadLine = regexp.MustCompile(`sent (\d+) datagrams, (\d+) records to \d+ hosts in (\S+) \(([\d.]+) records/s\), (\d+) send errors`)

func parseGen(out string) (genResult, error) {
	if m := genLine.FindStringSubmatch(out); m != nil {
		var r genResult
		r.Datagrams, _ = strconv.ParseInt(m[1], 10, 64)
		r.Records, _ = strconv.ParseInt(m[2], 10, 64)
		r.Took, _ = time.ParseDuration(m[3])
		r.Rate, _ = strconv.ParseFloat(m[4], 64)
		r.MaxLag = m[5]
		r.SendErrors, _ = strconv.ParseInt(m[6], 10, 64)
		return r, nil
	}
	if m := hostloadLine.FindStringSubmatch(out); m != nil {
		var r genResult
		r.Datagrams, _ = strconv.ParseInt(m[1], 10, 64)
		r.Records, _ = strconv.ParseInt(m[2], 10, 64)
		r.Took, _ = time.ParseDuration(m[3])
		r.Rate, _ = strconv.ParseFloat(m[4], 64)
		r.SendErrors, _ = strconv.ParseInt(m[5], 10, 64)
		return r, nil
	}
	return genResult{}, fmt.Errorf("no summary line in output %q", out)
}

// runLoad runs a load generator to completion, bounded by timeout, and parses its summary.
// log receives its stderr.
func runLoad(ctx context.Context, timeout time.Duration, log io.Writer, bin string, args ...string) (genResult, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = cleanEnv()
	var out strings.Builder
	cmd.Stdout = io.MultiWriter(&out, log)
	cmd.Stderr = log
	cmd.WaitDelay = 5 * time.Second
	fmt.Fprintf(log, "$ %s %s\n", bin, strings.Join(args, " "))
	err := cmd.Run()
	if ctx.Err() != nil {
		return genResult{}, fmt.Errorf("%s: stopped after %v", bin, timeout)
	}
	if err != nil {
		return genResult{}, fmt.Errorf("%s: %w", bin, err)
	}
	r, err := parseGen(out.String())
	if ps := cmd.ProcessState; ps != nil {
		r.CPUSeconds = (ps.UserTime() + ps.SystemTime()).Seconds()
	}
	return r, err
}
