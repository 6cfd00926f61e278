package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// engine is a collector under test: flowhound serve or FastNetMon.
type engine struct {
	name        string // "flowhound" or "fastnetmon"
	d           *daemon
	netflowPort int
	metricsURL  string
	processed   string // metric: records that went through detection
	received    string // metric: records decoded
	alerts      func() int
}

// drain waits until the engine has worked through everything it was sent: its socket's
// receive queue is empty, every decoded record has been through detection, and the
// processed count has not moved for a moment. It gives up at limit and returns the time
// the processed count last changed (or now, if it did not change).
func (e *engine) drain(ctx context.Context, limit time.Duration) (time.Time, error) {
	p0, _, err := e.counters(ctx)
	if err != nil {
		return time.Now(), err
	}
	// Counting from the end of the load: an engine that kept up is done then.
	pLast, lastChange := p0, time.Now()
	for end := time.Now().Add(limit); time.Now().Before(end); {
		p, r, err := e.counters(ctx)
		if err != nil {
			return lastChange, err
		}
		q, _ := udpQueue(e.netflowPort)
		if p != pLast {
			pLast, lastChange = p, time.Now()
		} else if q == 0 && p >= r && time.Since(lastChange) > 700*time.Millisecond {
			return lastChange, nil
		}
		if err := sleepCtx(ctx, 100*time.Millisecond); err != nil {
			return lastChange, err
		}
	}
	return lastChange, fmt.Errorf("%s still busy %v after the load ended", e.name, limit)
}

// stages returns flowhound's per-stage busy time so far (flowhound_stage_seconds_sum by
// stage: decode, detect, evaluate), when the daemon exports it.
func (e *engine) stages(ctx context.Context) map[string]float64 {
	m, err := scrape(ctx, e.metricsURL)
	if err != nil {
		return nil
	}
	out := map[string]float64{}
	for _, st := range []string{"decode", "detect", "evaluate"} {
		if v, ok := m[`flowhound_stage_seconds_sum{stage="`+st+`"}`]; ok {
			out[st] = v
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

func stageDelta(a, b map[string]float64) map[string]float64 {
	if a == nil || b == nil {
		return nil
	}
	out := map[string]float64{}
	for k, v := range b {
		out[k] = v - a[k]
	}
	return out
}

func (e *engine) counters(ctx context.Context) (processed, received float64, err error) {
	m, err := scrape(ctx, e.metricsURL)
	if err != nil {
		return 0, 0, err
	}
	return m[e.processed], m[e.received], nil
}

// waitReady polls the metrics page until it answers (up to 20 s).
func (e *engine) waitReady(ctx context.Context) error {
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, err := scrape(ctx, e.metricsURL); err == nil {
			return nil
		} else if time.Now().After(deadline) || !e.d.alive() {
			return fmt.Errorf("%s did not come up: %v", e.name, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// ---- flowhound ----

// fhConfig is a bench configuration for flowhound serve. The customer networks are the
// generator's; 10.99.0.0/24 holds the detection-delay victims (no normal traffic goes
// there); hostsNet, when set, replaces both with the memory test's network.
func fhConfig(netflowPort, apiPort int, store, hostsNet string) string {
	nets := `  - name: customers
    prefixes: [192.0.2.0/24, 198.51.100.0/24]
  - name: bench-victims
    prefixes: [10.99.0.0/24]
`
	if hostsNet != "" {
		nets = fmt.Sprintf("  - name: bench-hosts\n    prefixes: [%s]\n", hostsNet)
	}
	return fmt.Sprintf(`# flowhound serve configuration written by bench/cmd/fhbench
listen:
  netflow: "127.0.0.1:%d"
  ipfix: ""
  sflow: ""
api: "127.0.0.1:%d"
store: %q
networks:
%sdetection:
  hold: 5s
`, netflowPort, apiPort, store, nets)
}

// anomalyLine is the part of flowhound's anomaly JSON the benchmark reads.
type anomalyLine struct {
	ID       string  `json:"id"`
	Status   string  `json:"status"`
	Rule     string  `json:"rule"`
	Delay    float64 `json:"detection_delay_s"`
	Resource struct {
		Key string `json:"key"`
	} `json:"resource"`
	seen time.Time // when the line was read from serve's stdout
}

// fhServe runs `flowhound serve` and collects the anomaly lines it prints.
type fhServe struct {
	engine
	mu        sync.Mutex
	anomalies []anomalyLine
	started   time.Time
	ready     time.Duration // from exec to /metrics answering
}

func startFlowhound(ctx context.Context, bin, dir, name string, netflowPort, apiPort int, hostsNet string, store string) (*fhServe, error) {
	cfgPath := filepath.Join(dir, name+".yaml")
	if err := os.WriteFile(cfgPath, []byte(fhConfig(netflowPort, apiPort, store, hostsNet)), 0o644); err != nil {
		return nil, err
	}
	stderr, err := os.OpenFile(filepath.Join(dir, name+".stderr.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	raw, err := os.OpenFile(filepath.Join(dir, name+".anomalies.jsonl"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	pr, pw := io.Pipe()
	s := &fhServe{}
	s.started = time.Now()
	d, err := startDaemon("flowhound", pw, stderr, nil, bin, "serve", "-config", cfgPath)
	if err != nil {
		return nil, err
	}
	go func() {
		<-d.done
		pw.Close()
		stderr.Close()
	}()
	go func() {
		defer raw.Close()
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 1<<20), 16<<20)
		for sc.Scan() {
			now := time.Now()
			fmt.Fprintf(raw, "%s\n", sc.Bytes())
			var a anomalyLine
			if json.Unmarshal(sc.Bytes(), &a) != nil {
				continue
			}
			a.seen = now
			s.mu.Lock()
			s.anomalies = append(s.anomalies, a)
			s.mu.Unlock()
		}
		io.Copy(io.Discard, pr)
	}()
	s.engine = engine{
		name:        "flowhound",
		d:           d,
		netflowPort: netflowPort,
		metricsURL:  fmt.Sprintf("http://127.0.0.1:%d/metrics", apiPort),
		processed:   "flowhound_flows_processed_total",
		received:    "flowhound_flows_received_total",
	}
	s.alerts = func() int {
		s.mu.Lock()
		defer s.mu.Unlock()
		n := 0
		for _, a := range s.anomalies {
			if a.Status != "ended" {
				n++
			}
		}
		return n
	}
	if err := s.waitReady(ctx); err != nil {
		d.stop()
		return nil, err
	}
	s.ready = time.Since(s.started)
	return s, nil
}

// firstRaise returns the first non-ended anomaly line about key seen after since, of the
// given rule ("" for any).
func (s *fhServe) firstRaise(key, rule string, since time.Time) (anomalyLine, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, a := range s.anomalies {
		if a.Resource.Key == key && a.Status != "ended" && !a.seen.Before(since) && (rule == "" || a.Rule == rule) {
			return a, true
		}
	}
	return anomalyLine{}, false
}

// ---- FastNetMon ----

// fnmConfig is FastNetMon's configuration for the run: NetFlow on a loopback port, usage
// reporting off, the gRPC API off (its port is fixed), Prometheus on a loopback port, and
// bans that only call a notify script which logs them. Thresholds are the Debian defaults
// (threshold_pps 20000 per host, averaged over average_calculation_time 5 s).
func fnmConfig(dir string, netflowPort, promPort int, networksFile string) string {
	return fmt.Sprintf(`# FastNetMon configuration written by bench/cmd/fhbench
logging_level = info
logging_local_syslog_logging = off
logging_remote_syslog_logging = off
disable_usage_report = on
enable_api = off
enable_ban = on
enable_ban_ipv6 = off
process_incoming_traffic = on
process_outgoing_traffic = on
ban_details_records_count = 20
ban_time = 30
unban_only_if_attack_finished = on
networks_list_path = %[1]s
white_list_path = %[2]s/networks_whitelist
check_period = 1
enable_connection_tracking = on
ban_for_pps = on
ban_for_bandwidth = on
ban_for_flows = off
threshold_pps = 20000
threshold_mbps = 1000
threshold_flows = 3500
mirror_afpacket = off
mirror_afxdp = off
mirror_netmap = off
pcap = off
sflow = off
netflow = on
netflow_host = 127.0.0.1
netflow_port = %[3]d
netflow_sampling_ratio = 1
average_calculation_time = 5
speed_calculation_delay = 1
notify_script_path = %[2]s/notify.sh
collect_attack_pcap_dumps = off
redis_enabled = off
mongodb_enabled = off
exabgp = off
gobgp = off
influxdb = off
graphite = off
kafka_traffic_export = off
monitor_local_ip_addresses = off
pid_path = %[2]s/fastnetmon.pid
cli_stats_file_path = %[2]s/fastnetmon.dat
cli_stats_ipv6_file_path = %[2]s/fastnetmon_ipv6.dat
prometheus = on
prometheus_host = 127.0.0.1
prometheus_port = %[4]d
sort_parameter = packets
max_ips_in_list = 7
`, networksFile, dir, netflowPort, promPort)
}

// notifyScript logs FastNetMon's ban callbacks with the time they ran. FastNetMon calls it
// as `notify.sh IP DIRECTION PPS ACTION` with details on stdin.
const notifyScript = `#!/bin/sh
# Written by bench/cmd/fhbench: logs FastNetMon's callbacks, takes no action.
echo "$(date +%s.%N) $*" >> "$(dirname "$0")/notify.log"
cat > /dev/null
exit 0
`

type fnmServe struct {
	engine
	dir string
}

// startFastNetMon starts FastNetMon with its configuration in dir/name. With preload set
// (bench/fnm/rcvbuf.so) its UDP socket gets a 32 MiB receive buffer, as flowhound's.
func startFastNetMon(ctx context.Context, bin, dir, name string, netflowPort, promPort int, networks []string, preload string) (*fnmServe, error) {
	fdir := filepath.Join(dir, name)
	if err := os.MkdirAll(fdir, 0o755); err != nil {
		return nil, err
	}
	netsFile := filepath.Join(fdir, "networks_list")
	files := map[string]string{
		netsFile: strings.Join(networks, "\n") + "\n",
		filepath.Join(fdir, "networks_whitelist"): "",
		filepath.Join(fdir, "notify.sh"):          notifyScript,
		filepath.Join(fdir, "fastnetmon.conf"):    fnmConfig(fdir, netflowPort, promPort, netsFile),
	}
	for p, body := range files {
		if err := os.WriteFile(p, []byte(body), 0o755); err != nil {
			return nil, err
		}
	}
	console, err := os.Create(filepath.Join(fdir, "console.log"))
	if err != nil {
		return nil, err
	}
	var env []string
	engineName := "fastnetmon"
	if preload != "" {
		env = append(env, "LD_PRELOAD="+preload, "FHB_RCVBUF=33554432")
		engineName = "fastnetmon-32MiB"
	}
	d, err := startDaemon(engineName, console, console, env, bin,
		"--configuration_file", filepath.Join(fdir, "fastnetmon.conf"),
		"--log_file", filepath.Join(fdir, "fastnetmon.log"),
		"--disable_pid_logic")
	if err != nil {
		return nil, err
	}
	go func() { <-d.done; console.Close() }()
	s := &fnmServe{dir: fdir}
	s.engine = engine{
		name:        engineName,
		d:           d,
		netflowPort: netflowPort,
		metricsURL:  fmt.Sprintf("http://127.0.0.1:%d/metrics", promPort),
		processed:   "fastnetmon_netflow_v5_total_flows",
		received:    "fastnetmon_netflow_v5_total_flows",
	}
	s.alerts = func() int {
		n := 0
		for _, b := range s.notifications() {
			if b.action == "ban" {
				n++
			}
		}
		return n
	}
	if err := s.waitReady(ctx); err != nil {
		d.stop()
		return nil, err
	}
	// The UDP socket is opened a moment after the Prometheus endpoint.
	for i := 0; i < 50; i++ {
		if _, err := udpDrops(netflowPort); err == nil {
			return s, nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	d.stop()
	return nil, fmt.Errorf("fastnetmon: no NetFlow socket on 127.0.0.1:%d (see %s)", netflowPort, fdir)
}

type notification struct {
	at     time.Time
	ip     string
	action string
}

// notifications reads the notify script's log.
func (s *fnmServe) notifications() []notification {
	b, err := os.ReadFile(filepath.Join(s.dir, "notify.log"))
	if err != nil {
		return nil
	}
	var out []notification
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		sec, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			continue
		}
		out = append(out, notification{at: time.Unix(0, int64(sec*1e9)), ip: f[1], action: f[4]})
	}
	return out
}

func (s *fnmServe) firstBan(ip string, since time.Time) (time.Time, bool) {
	for _, n := range s.notifications() {
		if n.ip == ip && n.action == "ban" && !n.at.Before(since) {
			return n.at, true
		}
	}
	return time.Time{}, false
}

// fnmVersion returns `fastnetmon --version`'s first line.
func fnmVersion(bin string) string {
	out, err := exec.Command(bin, "--version").CombinedOutput()
	if err != nil {
		return "unknown (" + err.Error() + ")"
	}
	return strings.TrimSpace(strings.SplitN(string(out), "\n", 2)[0])
}

// loopbackPortsFree checks the benchmark's ports before anything starts.
func loopbackPortsFree(udp, tcp []int) error {
	for _, p := range udp {
		if !portFree("udp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p))) {
			return fmt.Errorf("UDP 127.0.0.1:%d is in use (set FHB_PORT_BASE to move the benchmark's ports)", p)
		}
	}
	for _, p := range tcp {
		if !portFree("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p))) {
			return fmt.Errorf("TCP 127.0.0.1:%d is in use (set FHB_PORT_BASE to move the benchmark's ports)", p)
		}
	}
	return nil
}
