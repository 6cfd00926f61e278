package alert

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flowhound/flowhound/store"
)

// Environment of the child process of TestKillNineKeepsOutbox.
const (
	envChildStore = "FLOWHOUND_ALERT_TEST_STORE"
	envChildURL   = "FLOWHOUND_ALERT_TEST_URL"
)

const killAnomalies = 20

// killConfig is the configuration of both lives of the alerter. The phase header tells
// the receiver which one sent a request (the sink ID depends on the URL only).
func killConfig(url, phase string) Config {
	return Config{
		Webhooks: []WebhookConfig{{URL: url, Headers: map[string]string{"X-Phase": phase}}},
		Retry:    fastRetry,
	}
}

// TestKillNineKeepsOutbox queues events in a child process while the receiver is down,
// kills it with SIGKILL, and restarts on the same store with the receiver up: every
// event arrives exactly once, each anomaly's raise before its end.
func TestKillNineKeepsOutbox(t *testing.T) {
	var childTries atomic.Int64
	var mu sync.Mutex
	seen := map[string]int{}
	var order []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Phase") == "child" {
			childTries.Add(1)
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		id := r.Header.Get("X-Flowhound-Delivery")
		mu.Lock()
		seen[id]++
		order = append(order, id)
		mu.Unlock()
	}))
	defer srv.Close()

	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestKillNineChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), envChildStore+"="+dir, envChildURL+"="+srv.URL)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	queued := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "queued ") {
				queued <- sc.Text()
			}
		}
		close(queued)
	}()
	select {
	case line, ok := <-queued:
		if !ok {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatal("the child ended without queueing")
		}
		t.Log("child: " + line)
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		t.Fatal("the child did not queue in time")
	}
	// Let the child fail a few deliveries, so retry state is in the store too.
	waitFor(t, 15*time.Second, "the child's first attempts", func() bool { return childTries.Load() >= 5 })
	if err := cmd.Process.Signal(os.Kill); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err == nil || !strings.Contains(err.Error(), "killed") {
		t.Fatalf("child exit: %v, want killed", err)
	}

	st, err := store.Open(dir, store.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	a, err := New(killConfig(srv.URL, "restart"), Deps{Store: st, Log: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	want := killAnomalies + killAnomalies/2 // every raise, and an end for half
	if n := a.Pending(); n != want {
		t.Fatalf("reloaded %d pending deliveries, want %d", n, want)
	}
	start(t, a)
	waitFor(t, 15*time.Second, "the outbox to drain", func() bool { return a.Pending() == 0 })
	time.Sleep(100 * time.Millisecond) // a duplicate would arrive here

	mu.Lock()
	defer mu.Unlock()
	sinkID := webhookID(WebhookConfig{URL: srv.URL})
	pos := map[string]int{}
	for i, id := range order {
		pos[id] = i
	}
	for i := range killAnomalies {
		for _, ev := range []string{Raised, Ended} {
			if ev == Ended && i%2 != 0 {
				continue
			}
			id := fmt.Sprintf("%s/%s/%s", killID(i), ev, sinkID)
			if seen[id] != 1 {
				t.Errorf("%s delivered %d times after the restart, want 1", id, seen[id])
			}
		}
		if i%2 == 0 && pos[killID(i)+"/raised/"+sinkID] > pos[killID(i)+"/ended/"+sinkID] {
			t.Errorf("%s: end delivered before raise", killID(i))
		}
	}
	if len(seen) != want {
		t.Errorf("receiver saw %d distinct deliveries, want %d", len(seen), want)
	}
	left := 0
	for _, ns := range []string{nsOutbox, nsEvents} {
		st.Scan(ns, nil, func(k, v []byte) error { left++; return nil })
	}
	if left != 0 {
		t.Errorf("%d outbox records left in the store after delivery", left)
	}
}

func killID(i int) string { return fmt.Sprintf("18f2c-kill-%02d", i) }

// TestKillNineChild is the child of TestKillNineKeepsOutbox; it does nothing on its own.
func TestKillNineChild(t *testing.T) {
	dir := os.Getenv(envChildStore)
	if dir == "" {
		t.Skip("run by TestKillNineKeepsOutbox")
	}
	st, err := store.Open(dir, store.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	a, err := New(killConfig(os.Getenv(envChildURL), "child"), Deps{Store: st, Log: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	go a.Run(context.Background())
	for i := range killAnomalies {
		an := synFlood(killID(i))
		notify(t, a, Raised, an)
		if i%2 == 0 {
			notify(t, a, Ended, endedOf(an))
		}
	}
	fmt.Printf("queued %d\n", a.Pending())
	// Wait for SIGKILL; exit on our own only if the parent is gone.
	time.Sleep(30 * time.Second)
	os.Exit(3)
}
