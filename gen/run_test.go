package gen

import (
	"context"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"
)

// listen opens a loopback collector and counts datagrams per source address.
func listen(t *testing.T) (*net.UDPConn, func() map[netip.Addr]int) {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Skipf("no loopback UDP: %v", err)
	}
	_ = c.SetReadBuffer(8 << 20)
	var mu sync.Mutex
	got := map[netip.Addr]int{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 2048)
		for {
			_, from, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			mu.Lock()
			got[from.Addr().Unmap()]++
			mu.Unlock()
		}
	}()
	t.Cleanup(func() { c.Close(); <-done })
	return c, func() map[netip.Addr]int {
		mu.Lock()
		defer mu.Unlock()
		out := map[netip.Addr]int{}
		for k, v := range got {
			out[k] = v
		}
		return out
	}
}

func TestRunLoopback(t *testing.T) {
	c, received := listen(t)
	cfg := DefaultConfig()
	cfg.To = c.LocalAddr().String()
	cfg.Scenario = AttackSYN
	cfg.Duration = 500 * time.Millisecond
	cfg.Rate = 5000
	g, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	if err := g.Run(ctx); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Errorf("a 500ms run took %v", el)
	}
	st := g.Stats()
	var got map[netip.Addr]int
	total := 0
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		got, total = received(), 0
		for _, n := range got {
			total += n
		}
		if uint64(total) >= st.Datagrams {
			break
		}
	}
	if st.Datagrams == 0 || uint64(total) != st.Datagrams {
		t.Errorf("sent %d datagrams, received %d", st.Datagrams, total)
	}
	for _, e := range g.Exporters() {
		if got[e.Addr] == 0 {
			t.Errorf("nothing from exporter %v (got %v)", e.Addr, got)
		}
	}
	if len(got) != 3 {
		t.Errorf("datagrams from %v, want the 3 exporters", got)
	}
}

func TestRunStopsWithContext(t *testing.T) {
	c, _ := listen(t)
	cfg := DefaultConfig()
	cfg.To = c.LocalAddr().String()
	cfg.Duration = 0 // until the context ends
	g, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := g.Run(ctx); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Errorf("Run went on for %v after its context ended", el)
	}
	if g.Stats().Datagrams == 0 {
		t.Error("nothing sent")
	}
}
