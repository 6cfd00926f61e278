package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/flowhound/flowhound/detector"
	"github.com/flowhound/flowhound/gen"
)

// TestMain lets the test binary run as flowhound itself, so that the crash test can start
// and kill -9 a real daemon without a separate build.
func TestMain(m *testing.M) {
	if os.Getenv("FLOWHOUND_AS_MAIN") == "1" {
		main()
		return
	}
	os.Exit(m.Run())
}

func freePort(t *testing.T, network string) int {
	t.Helper()
	if network == "udp" {
		c, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.LocalAddr().(*net.UDPAddr).Port
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// TestKillNineAndRestart runs `flowhound serve` under a SYN flood while its webhook is down,
// kills it with SIGKILL, and restarts it with the webhook up: the anomaly is still listed,
// the queued alert is delivered exactly once, the learned baselines come back, and the
// anomaly, whose attack stopped, ends with its end alert.
func TestKillNineAndRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a daemon for about 20 s")
	}
	var up atomic.Bool
	var mu sync.Mutex
	seen := map[string]int{}
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !up.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		mu.Lock()
		seen[r.Header.Get("X-Flowhound-Delivery")]++
		mu.Unlock()
	}))
	defer hook.Close()

	dir := t.TempDir()
	udp, api := freePort(t, "udp"), freePort(t, "tcp")
	cfgPath := filepath.Join(dir, "flowhound.yaml")
	cfg := fmt.Sprintf(`listen: {netflow: "127.0.0.1:%d", ipfix: "", sflow: ""}
api: "127.0.0.1:%d"
store: %s
networks:
  - name: customers
    prefixes: [192.0.2.0/24, 198.51.100.0/24]
detection: {hold: 3s}
baseline: {snapshot_interval: 1s}
alerts:
  webhooks: [{url: %q}]
  retry: {initial: 200ms, max: 500ms}
`, udp, api, filepath.Join(dir, "data"), hook.URL)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	base := fmt.Sprintf("http://127.0.0.1:%d", api)
	start := func() *exec.Cmd {
		cmd := exec.Command(os.Args[0], "serve", "-config", cfgPath)
		cmd.Env = append(os.Environ(), "FLOWHOUND_AS_MAIN=1")
		cmd.Stdout, cmd.Stderr = nil, nil
		if testing.Verbose() {
			cmd.Stderr = os.Stderr
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		waitFor(t, 10*time.Second, func() bool {
			resp, err := http.Get(base + "/api/rules")
			if err == nil {
				resp.Body.Close()
			}
			return err == nil
		})
		return cmd
	}
	list := func() []detector.Anomaly {
		return getJSON[struct{ Anomalies []detector.Anomaly }](t, base+"/api/anomalies").Anomalies
	}

	child := start()
	g := gen.DefaultConfig()
	g.To, g.Format, g.Scenario, g.Rate = fmt.Sprintf("127.0.0.1:%d", udp), "v5", gen.AttackSYN, 500
	g.Duration = gen.LeadIn + 3*time.Second
	gg, err := gen.New(g)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := gg.Run(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, func() bool { return len(list()) > 0 })
	before := list()
	if len(before) != 1 || before[0].Rule != "tcp-syn-flood" || before[0].Resource.Key != "192.0.2.10" {
		t.Fatalf("before the crash: %+v", before)
	}
	type resList struct {
		Resources []struct{ Type, Key string } `json:"resources"`
	}
	time.Sleep(1500 * time.Millisecond) // a baseline snapshot
	learned := getJSON[resList](t, base+"/api/resources?type=prefix&limit=1000").Resources
	if err := child.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	child.Wait()

	up.Store(true)
	start()
	after := list()
	if len(after) == 0 || after[0].ID != before[0].ID {
		t.Fatalf("after the restart the API lists %+v, want %s", after, before[0].ID)
	}
	restored := getJSON[resList](t, base+"/api/resources?type=prefix&limit=1000").Resources
	for _, r := range learned {
		found := false
		for _, x := range restored {
			found = found || x == r
		}
		if !found {
			t.Errorf("learned %s %s is gone after the restart", r.Type, r.Key)
		}
	}
	id := before[0].ID
	waitFor(t, 15*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return countPrefix(seen, id+"/ended/") > 0
	})
	mu.Lock()
	defer mu.Unlock()
	if n := countPrefix(seen, id+"/raised/"); n != 1 {
		t.Errorf("the queued raise was delivered %d times, want once (%v)", n, seen)
	}
	if n := countPrefix(seen, id+"/ended/"); n != 1 {
		t.Errorf("the end after the restart was delivered %d times, want once (%v)", n, seen)
	}
	final := list()
	if final[0].ID != id || final[0].Status != detector.StatusEnded {
		t.Errorf("after the hold: %s %s, want %s ended", final[0].ID, final[0].Status, id)
	}
}

func countPrefix(m map[string]int, prefix string) int {
	n := 0
	for k, v := range m {
		if strings.HasPrefix(k, prefix) {
			n += v
		}
	}
	return n
}
