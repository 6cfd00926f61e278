package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/flowhound/flowhound/detector"
	"github.com/flowhound/flowhound/flow"
	"github.com/flowhound/flowhound/gen"
)

// syncBuffer collects a child's stderr while the test reads it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if testing.Verbose() {
		os.Stderr.Write(p)
	}
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// daemon is a `flowhound serve` child process.
type daemon struct {
	cmd    *exec.Cmd
	stderr *syncBuffer
	base   string // the API's URL
	exited chan struct{}
}

// startServe runs `flowhound serve -config cfgPath` and waits for its API.
func startServe(t *testing.T, cfgPath string, api int) *daemon {
	t.Helper()
	d := &daemon{stderr: &syncBuffer{}, base: fmt.Sprintf("http://127.0.0.1:%d", api), exited: make(chan struct{})}
	d.cmd = exec.Command(os.Args[0], "serve", "-config", cfgPath)
	d.cmd.Env = append(os.Environ(), "FLOWHOUND_AS_MAIN=1")
	d.cmd.Stderr = d.stderr
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.cmd.Wait(); close(d.exited) }()
	t.Cleanup(func() { d.cmd.Process.Kill(); <-d.exited })
	waitFor(t, 10*time.Second, func() bool {
		resp, err := http.Get(d.base + "/api/rules")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil || !d.alive()
	})
	if !d.alive() {
		t.Fatalf("flowhound serve exited at start: %s\n%s", d.cmd.ProcessState, tail(d.stderr.String(), 2000))
	}
	return d
}

func (d *daemon) alive() bool {
	select {
	case <-d.exited:
		return false
	default:
		return true
	}
}

// stop ends the daemon as an init system does and waits for it.
func (d *daemon) stop(t *testing.T) {
	t.Helper()
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.exited:
	case <-time.After(10 * time.Second):
		t.Fatalf("flowhound serve did not stop on SIGTERM\n%s", tail(d.stderr.String(), 2000))
	}
}

// metrics scrapes /metrics into series name (with labels) → value.
func (d *daemon) metrics(t *testing.T) map[string]float64 {
	t.Helper()
	resp, err := http.Get(d.base + "/metrics")
	if err != nil {
		t.Fatalf("scraping /metrics: %v (daemon alive: %v)\n%s", err, d.alive(), tail(d.stderr.String(), 2000))
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		i := strings.LastIndexByte(line, ' ')
		if i < 0 || strings.HasPrefix(line, "#") {
			continue
		}
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			out[line[:i]] = v
		}
	}
	return out
}

// tail keeps the end of a child's stderr, or the start of its crash report when it
// crashed: the goroutine dump after it would hide the cause.
func tail(s string, n int) string {
	for _, mark := range []string{"fatal error:", "panic:"} {
		if i := strings.Index(s, mark); i >= 0 {
			return s[i:min(len(s), i+n)]
		}
	}
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// mountTmpfs mounts a tmpfs of size bytes, a filesystem that fills up for real.
func mountTmpfs(t *testing.T, size int) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a small tmpfs for the store (CI runs the tests as root)")
	}
	dir := filepath.Join(t.TempDir(), "fs")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, fmt.Sprintf("size=%d", size)); err != nil {
		t.Skipf("cannot mount a tmpfs here (%v): the disk-full test needs one", err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmounting %s: %v", dir, err)
		}
	})
	return dir
}

// fill writes path until its filesystem is full (ENOSPC) and returns the bytes written.
func fill(t *testing.T, path string) int64 {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := make([]byte, 1<<20)
	var n int64
	for {
		w, err := f.Write(chunk)
		n += int64(w)
		if errors.Is(err, syscall.ENOSPC) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(filepath.Dir(path), &st); err != nil {
		t.Fatal(err)
	}
	if free := st.Bavail * uint64(st.Bsize); free > 64<<10 {
		t.Fatalf("after the filler %d bytes are still free", free)
	}
	return n
}

// synFlood sends NetFlow v5 records of a SYN flood on victim, about 50,000 pps, every
// 100 ms until ctx ends.
func synFlood(ctx context.Context, t *testing.T, to string, victim netip.Addr) {
	c, err := net.Dial("udp", to)
	if err != nil {
		t.Error(err)
		return
	}
	defer c.Close()
	boot := time.Now().Add(-time.Hour).UnixNano()
	var seq uint32
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for i := 0; ; i++ {
		now := time.Now()
		recs := make([]flow.Record, 10)
		for j := range recs {
			recs[j] = flow.Record{SrcAddr: netip.AddrFrom4([4]byte{203, 0, 113, byte(i*10 + j)}), DstAddr: victim,
				Proto: 6, TCPFlags: 0x02, SrcPort: uint16(1024 + i), DstPort: 80, Packets: 500, Bytes: 500 * 40,
				Start: now.Add(-100 * time.Millisecond).UnixNano(), End: now.UnixNano(),
				Has: flow.HasSrcAddr | flow.HasDstAddr | flow.HasProto | flow.HasTCPFlags | flow.HasSrcPort | flow.HasDstPort | flow.HasPackets | flow.HasBytes | flow.HasStart | flow.HasEnd}
		}
		dgrams, err := gen.EncodeDatagrams(gen.FormatV5, gen.Header{Boot: boot, Sequence: seq}, recs)
		if err != nil {
			t.Error(err)
			return
		}
		seq += uint32(len(recs))
		for _, d := range dgrams {
			c.Write(d)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// TestStoreDiskFull fills the store's filesystem under a running `flowhound serve`: the
// daemon must not crash, must say so once, count the failed writes, and go on detecting
// from memory (the API lists the attack, the webhook gets it). When the disk has room
// again the store writes again, and what it refused meanwhile is written then: after a
// restart the anomaly raised on the full disk is still listed and its alert is not sent
// twice.
func TestStoreDiskFull(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a daemon for about 10 s")
	}
	// Large enough for the store's 64 MiB reserve and badger's first files.
	fs := mountTmpfs(t, 96<<20)
	var mu sync.Mutex
	seen := map[string]int{}
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen[r.Header.Get("X-Flowhound-Delivery")]++
		mu.Unlock()
	}))
	defer hook.Close()
	delivered := func(prefix string) int {
		mu.Lock()
		defer mu.Unlock()
		return countPrefix(seen, prefix)
	}

	udp, api := freePort(t, "udp"), freePort(t, "tcp")
	cfgPath := filepath.Join(t.TempDir(), "flowhound.yaml")
	cfg := fmt.Sprintf(`listen: {netflow: "127.0.0.1:%d", ipfix: "", sflow: ""}
api: "127.0.0.1:%d"
store: %s
networks:
  - name: customers
    prefixes: [192.0.2.0/24]
detection: {hold: 2s}
baseline: {snapshot_interval: 1s}
alerts:
  webhooks: [{url: %q}]
  retry: {initial: 200ms, max: 500ms}
`, udp, api, filepath.Join(fs, "data"), hook.URL)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	d := startServe(t, cfgPath, api)
	time.Sleep(1200 * time.Millisecond) // a baseline snapshot on a disk with room

	filler := filepath.Join(fs, "filler")
	fill(t, filler)
	victim := netip.MustParseAddr("192.0.2.10")
	ctx, cancel := context.WithTimeout(context.Background(), 2500*time.Millisecond)
	defer cancel()
	go synFlood(ctx, t, fmt.Sprintf("127.0.0.1:%d", udp), victim)

	list := func(d *daemon) []detector.Anomaly {
		return getJSON[struct{ Anomalies []detector.Anomaly }](t, d.base+"/api/anomalies").Anomalies
	}
	var raised detector.Anomaly
	waitFor(t, 6*time.Second, func() bool {
		if !d.alive() {
			return true
		}
		for _, a := range list(d) {
			if a.Rule == "tcp-syn-flood" && a.Resource.Key == victim.String() {
				raised = a
				return delivered(a.ID+"/raised/") > 0
			}
		}
		return false
	})
	if !d.alive() {
		t.Fatalf("flowhound serve died with its disk full: %s\n%s", d.cmd.ProcessState, tail(d.stderr.String(), 3000))
	}
	if raised.ID == "" {
		t.Fatalf("no tcp-syn-flood anomaly on %s in the API with the disk full\n%s", victim, tail(d.stderr.String(), 3000))
	}
	if n := delivered(raised.ID + "/raised/"); n != 1 {
		t.Fatalf("with the disk full the webhook got the raise %d times, want 1", n)
	}
	<-ctx.Done()
	time.Sleep(1200 * time.Millisecond) // more failed snapshots and anomaly updates
	m := d.metrics(t)
	for _, op := range []string{"anomaly", "baseline"} {
		if n := m[`flowhound_store_errors_total{op="`+op+`"}`]; n < 1 {
			t.Errorf(`flowhound_store_errors_total{op=%q} = %v with the disk full, want > 0`, op, n)
		}
	}
	if m["flowhound_store_failing"] != 1 {
		t.Errorf("flowhound_store_failing = %v with the disk full, want 1", m["flowhound_store_failing"])
	}
	if m["flowhound_alerts_unsaved"] < 0 {
		t.Errorf("flowhound_alerts_unsaved = %v", m["flowhound_alerts_unsaved"])
	}
	if n := strings.Count(d.stderr.String(), "store: writes failing"); n != 1 {
		t.Errorf("the failure was logged %d times, want once per episode\n%s", n, tail(d.stderr.String(), 3000))
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, func() bool { return strings.Contains(d.stderr.String(), "store: writing again") })
	if !strings.Contains(d.stderr.String(), "store: writing again") {
		t.Fatalf("with room again, the store does not say it writes again\n%s", tail(d.stderr.String(), 3000))
	}
	time.Sleep(1100 * time.Millisecond) // one round of writing what was refused
	m = d.metrics(t)
	if m["flowhound_store_failing"] != 0 || m["flowhound_alerts_unsaved"] != 0 {
		t.Errorf("with room again: flowhound_store_failing %v, flowhound_alerts_unsaved %v, want 0 and 0", m["flowhound_store_failing"], m["flowhound_alerts_unsaved"])
	}
	d.stop(t)

	d = startServe(t, cfgPath, api)
	found := false
	for _, a := range list(d) {
		found = found || a.ID == raised.ID
	}
	if !found {
		t.Errorf("after a restart the anomaly raised on the full disk (%s) is gone: it was never written", raised.ID)
	}
	time.Sleep(time.Second) // an outbox entry written late would be delivered again now
	if n := delivered(raised.ID + "/raised/"); n != 1 {
		t.Errorf("the raise was delivered %d times in all, want once", n)
	}
}

// malformed are the bad datagrams TestMalformedMixedIn mixes into a valid stream, with
// the drop reason each must be counted under.
var malformed = []struct {
	name, reason string
	payload      []byte
}{
	{"shorter than any header", "short", []byte{0, 5, 0, 1}},
	{"v5 header cut short", "short", v5Header(1)[:12]},
	{"unknown version", "version", []byte{0, 42, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0}},
	{"garbage", "version", garbage(200)},
	{"v5 count larger than the payload", "truncated", append(v5Header(30), make([]byte, 30)...)},
	{"v9 set shorter than its header", "bad_set", append(v9Header(), 1, 0, 0, 2, 0xAB, 0xCD)},
}

func v5Header(count uint16) []byte {
	h := make([]byte, 24)
	h[1] = 5
	h[2], h[3] = byte(count>>8), byte(count)
	return h
}

func v9Header() []byte {
	h := make([]byte, 20)
	h[1] = 9
	h[3] = 1
	return h
}

func garbage(n int) []byte {
	b := make([]byte, n)
	x := uint32(2463534242)
	for i := range b {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		b[i] = byte(x)
	}
	b[0], b[1] = 0xFF, 0xFE // no version a decoder knows
	return b
}

// socketDrops reads the kernel's drop count of the UDP socket bound to 127.0.0.1:port.
func socketDrops(t *testing.T, port int) uint64 {
	t.Helper()
	b, err := os.ReadFile("/proc/net/udp")
	if err != nil {
		t.Logf("socket drops unknown: %v", err)
		return 0
	}
	local := fmt.Sprintf("0100007F:%04X", port)
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 12 && f[1] == local {
			n, _ := strconv.ParseUint(f[len(f)-1], 10, 64)
			return n
		}
	}
	return 0
}

// TestMalformedMixedIn sends a valid NetFlow stream at about 60,000 records/s to a
// running `flowhound serve` while another exporter address sends malformed datagrams,
// a tenth of all datagrams: each bad datagram is counted under its reason, and every
// valid record goes through detection.
func TestMalformedMixedIn(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a daemon under load for about 8 s")
	}
	for _, format := range []string{"v5", "v9"} {
		t.Run(format, func(t *testing.T) { malformedMixedIn(t, format) })
	}
}

func malformedMixedIn(t *testing.T, format string) {
	dir := t.TempDir()
	udp, api := freePort(t, "udp"), freePort(t, "tcp")
	cfgPath := filepath.Join(dir, "flowhound.yaml")
	cfg := fmt.Sprintf("listen: {netflow: \"127.0.0.1:%d\", ipfix: \"\", sflow: \"\"}\napi: \"127.0.0.1:%d\"\nstore: %s\n",
		udp, api, filepath.Join(dir, "data"))
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	d := startServe(t, cfgPath, api)
	to := fmt.Sprintf("127.0.0.1:%d", udp)

	g := gen.DefaultConfig()
	g.To, g.Format, g.Rate, g.Duration = to, format, 60000, 2*time.Second
	gg, err := gen.New(g)
	if err != nil {
		t.Fatal(err)
	}
	sources := map[string]bool{}
	for _, e := range gg.Exporters() {
		sources[e.Addr.String()] = true
	}
	const badSource = "127.0.0.99"
	bad, err := net.DialUDP("udp", &net.UDPAddr{IP: net.ParseIP(badSource)}, net.UDPAddrFromAddrPort(netip.MustParseAddrPort(to)))
	if err != nil {
		t.Fatal(err)
	}
	defer bad.Close()
	want := map[string]float64{}
	var badSent uint64
	// One bad datagram for every nine good ones, paced by what the generator has sent.
	topUp := func() {
		for badSent < gg.Stats().Datagrams/9 {
			m := malformed[badSent%uint64(len(malformed))]
			if _, err := bad.Write(m.payload); err != nil {
				t.Fatal(err)
			}
			want[m.reason]++
			badSent++
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- gg.Run(ctx) }()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for running := true; running; {
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
			running = false
		case <-tick.C:
		}
		topUp()
	}
	st := gg.Stats()
	if st.SendErrors != 0 {
		t.Fatalf("the generator failed %d sends", st.SendErrors)
	}
	if share := float64(badSent) / float64(badSent+st.Datagrams); share < 0.09 || share > 0.11 {
		t.Fatalf("malformed share %.3f, want about 0.10", share)
	}
	if st.Records < 100000 { // 60,000 flows/s for 2 s
		t.Fatalf("the generator sent only %d records in %v", st.Records, g.Duration)
	}

	sum := func(m map[string]float64, name string, match func(exporter string) bool) float64 {
		var n float64
		for k, v := range m {
			if exp, ok := strings.CutPrefix(k, name+`{exporter="`); ok && match(exp[:strings.IndexByte(exp, '"')]) {
				n += v
			}
		}
		return n
	}
	isGood := func(e string) bool { return sources[e] }
	isBad := func(e string) bool { return e == badSource }
	var m map[string]float64
	waitFor(t, 10*time.Second, func() bool {
		m = d.metrics(t)
		return m["flowhound_flows_processed_total"] >= float64(st.Records) &&
			sum(m, "flowhound_datagrams_received_total", isBad) >= float64(badSent)
	})
	drops := socketDrops(t, udp)
	if drops > 0 {
		t.Logf("the kernel dropped %d datagrams at the socket", drops)
	}
	received := sum(m, "flowhound_flows_received_total", isGood)
	processed := m["flowhound_flows_processed_total"]
	if drops == 0 && (received != float64(st.Records) || processed != float64(st.Records)) {
		t.Errorf("the generator sent %d records; %v received, %v processed", st.Records, received, processed)
	}
	if drops > 0 && (processed > float64(st.Records) || processed < float64(st.Records)-float64(drops)*30) {
		t.Errorf("the generator sent %d records, the kernel dropped %d datagrams; %v processed", st.Records, drops, processed)
	}
	if got := sum(m, "flowhound_datagrams_received_total", isBad); drops == 0 && got != float64(badSent) {
		t.Errorf("%d malformed datagrams sent, %v received from %s", badSent, got, badSource)
	}
	if n := sum(m, "flowhound_flows_received_total", isBad); n != 0 {
		t.Errorf("%v records decoded from the malformed datagrams, want none", n)
	}
	for _, r := range []string{"short", "version", "truncated", "bad_set"} {
		got := m[fmt.Sprintf(`flowhound_datagrams_dropped_total{exporter=%q,reason=%q}`, badSource, r)]
		if drops == 0 && got != want[r] || got == 0 {
			t.Errorf("dropped with reason %q: %v, want %v", r, got, want[r])
		}
	}
	var total float64
	for k, v := range m {
		if strings.HasPrefix(k, "flowhound_datagrams_dropped_total{") {
			if !strings.Contains(k, `exporter="`+badSource+`"`) && v > 0 {
				t.Errorf("a valid exporter's datagrams were dropped: %s %v", k, v)
			}
			total += v
		}
	}
	if drops == 0 && total != float64(badSent) {
		t.Errorf("%v datagrams dropped in all, want the %d malformed ones", total, badSent)
	}
	if lost := sum(m, "flowhound_flows_lost_total", isGood); drops == 0 && lost != 0 {
		t.Errorf("%v flows counted lost on the valid exporters", lost)
	}
	if !d.alive() {
		t.Fatalf("flowhound serve exited: %s\n%s", d.cmd.ProcessState, tail(d.stderr.String(), 3000))
	}
	t.Logf("%s: %d records in %d datagrams, %d malformed (%v)", format, st.Records, st.Datagrams, badSent, want)
}
