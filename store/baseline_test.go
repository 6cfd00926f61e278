package store_test

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/flowhound/flowhound/baseline"
	"github.com/flowhound/flowhound/flow"
	"github.com/flowhound/flowhound/store"
)

var _ baseline.Persister = (*store.Store)(nil)

var (
	t0      = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano()
	slot    = int64(10 * time.Second)
	custNet = netip.MustParsePrefix("192.0.2.0/24")
	custKey = baseline.PrefixKey(custNet, baseline.DirIn)
	probeAt = t0 + 36*int64(time.Hour) // where Expected is compared
)

func crashConfig() baseline.Config {
	c := baseline.DefaultConfig()
	c.Networks = []baseline.Network{{Name: "customers", Prefixes: []netip.Prefix{custNet}}}
	return c
}

// slotTraffic returns one slot of flows to 200 hosts, with a daily pattern.
func slotTraffic(recs []flow.Record, now int64) []flow.Record {
	h := float64((now-t0)%int64(24*time.Hour)) / float64(time.Hour)
	level := 2 + (h-12)*(h-12)/24
	recs = recs[:0]
	for i := range 200 {
		recs = append(recs, flow.Record{
			Received: now + slot/2, Exporter: netip.MustParseAddr("198.51.100.1"),
			SrcAddr: netip.MustParseAddr("203.0.113.9"), DstAddr: netip.AddrFrom4([4]byte{192, 0, 2, byte(i)}),
			Bytes: uint64(level * 1e5 * float64(1+i%7)), Packets: uint64(level * 100), Proto: 17, DstPort: 53,
			InIf: 3, OutIf: 4, Has: flow.HasInIf | flow.HasOutIf,
		})
	}
	return recs
}

const crashEnv = "FLOWHOUND_TEST_BASELINE_CRASH_DIR"

// crashChild learns as fast as it can and snapshots every six slots (the default 60 s
// interval in engine time), printing what each snapshot holds, until it is killed.
func crashChild(dir string) {
	s, err := store.Open(dir, store.DefaultOptions())
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	b, err := baseline.New(crashConfig(), baseline.Deps{Store: s})
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	w := bufio.NewWriter(os.Stdout)
	var recs []flow.Record
	now := t0
	if n := b.Now(); n > 0 {
		now = n - n%slot + 6*slot // restarted a minute later
	}
	for i := 1; i < 1_000_000; i++ {
		recs = slotTraffic(recs, now)
		b.Update(recs)
		now += slot
		b.Advance(now)
		if i%6 == 0 {
			if err := b.Snapshot(); err != nil {
				fmt.Println("error", err)
				os.Exit(1)
			}
			d, _ := b.Detail(custKey)
			e, _ := b.Expected(custKey, probeAt)
			fmt.Fprintf(w, "snapshot %d %s\n", d.LearnedSlots, strconv.FormatFloat(e.BPS, 'g', -1, 64))
			w.Flush()
		}
	}
	os.Exit(0)
}

func TestBaselineSurvivesKill(t *testing.T) {
	if dir := os.Getenv(crashEnv); dir != "" {
		crashChild(dir)
		return
	}
	dir := t.TempDir()
	for round := range 3 {
		cmd := exec.Command(os.Args[0], "-test.run=^TestBaselineSurvivesKill$")
		cmd.Env = append(os.Environ(), crashEnv+"="+dir)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(out)
		var learned uint32
		var bps string
		read := func() bool {
			if !sc.Scan() {
				return false
			}
			f := strings.Fields(sc.Text())
			if len(f) == 3 && f[0] == "snapshot" {
				v, _ := strconv.ParseUint(f[1], 10, 32)
				learned, bps = uint32(v), f[2]
			} else if len(f) > 0 && f[0] == "error" {
				t.Fatalf("child: %s", sc.Text())
			}
			return true
		}
		for n := 0; n < 8+round*5 && read(); n++ {
		}
		// SIGKILL, wherever the child is: learning, or in the middle of a snapshot.
		if err := cmd.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		// What the child printed before it died is the last snapshot it saw complete.
		for read() {
		}
		cmd.Wait()
		if learned == 0 {
			t.Fatalf("the child reported no snapshot; stderr:\n%s", stderr.String())
		}

		s, err := store.Open(dir, store.DefaultOptions())
		if err != nil {
			t.Fatalf("reopening after kill -9: %v", err)
		}
		b, err := baseline.New(crashConfig(), baseline.Deps{Store: s})
		if err != nil {
			t.Fatalf("restoring after kill -9: %v", err)
		}
		d, _ := b.Detail(custKey)
		e, _ := b.Expected(custKey, probeAt)
		got := strconv.FormatFloat(e.BPS, 'g', -1, 64)
		t.Logf("round %d: last reported snapshot %d slots (%s bps), restored %d slots (%s bps), %d hosts",
			round, learned, bps, d.LearnedSlots, got, len(b.Top(baseline.KindHost, 0)))
		// Nothing the child reported is lost; at most the interval in progress is.
		if d.LearnedSlots < learned || d.LearnedSlots > learned+6 {
			t.Errorf("restored %d learned slots, the last reported snapshot had %d", d.LearnedSlots, learned)
		}
		if d.LearnedSlots == learned && got != bps {
			t.Errorf("restored expectation %s bps, the snapshot had %s", got, bps)
		}
		if n := len(b.Top(baseline.KindHost, 0)); n != 200 {
			t.Errorf("restored %d hosts, want 200", n)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// millionHosts feeds one flow to each of n hosts in 10.0.0.0/8 and closes the slot.
func millionHosts(b *baseline.Baselines, n int, now int64, stride int) {
	recs := make([]flow.Record, 0, 1024)
	src := netip.MustParseAddr("203.0.113.9")
	for i := 0; i < n; i += stride {
		var a [4]byte
		binary.BigEndian.PutUint32(a[:], 0x0a000000+uint32(i))
		recs = append(recs, flow.Record{Received: now, SrcAddr: src, DstAddr: netip.AddrFrom4(a), Bytes: uint64(1000 + i%5000), Packets: 3, Proto: 6, DstPort: 443})
		if len(recs) == cap(recs) {
			b.Update(recs)
			recs = recs[:0]
		}
	}
	b.Update(recs)
	b.Advance(now + 4*slot)
}

// BenchmarkSnapshotRestoreMillion writes a snapshot of 1,000,000 hosts (and the /24 block
// profiles they fall in) to a real store, an incremental one after 1 % of them had traffic,
// (the block profiles learn every slot, so they are all written again),
// and restores it. Run it with -benchtime 1x.
func BenchmarkSnapshotRestoreMillion(bm *testing.B) {
	for range bm.N {
		dir := bm.TempDir()
		s, err := store.Open(dir, store.DefaultOptions())
		if err != nil {
			bm.Fatal(err)
		}
		cfg := baseline.DefaultConfig()
		cfg.Networks = []baseline.Network{{Name: "big", Prefixes: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}}
		b, err := baseline.New(cfg, baseline.Deps{Store: s})
		if err != nil {
			bm.Fatal(err)
		}
		millionHosts(b, 1_000_000, t0, 1)

		start := time.Now()
		if err := b.Snapshot(); err != nil {
			bm.Fatal(err)
		}
		full := time.Since(start)

		millionHosts(b, 10_000, t0+10*slot, 1) // 1 % of the hosts, 157 of 15,625 blocks
		start = time.Now()
		if err := b.Snapshot(); err != nil {
			bm.Fatal(err)
		}
		incr := time.Since(start)
		top := b.Top(baseline.KindHost, 10)
		hosts := len(b.Top(baseline.KindHost, 0)) // a million keys, the port key among them
		if err := s.Close(); err != nil {
			bm.Fatal(err)
		}

		start = time.Now()
		s, err = store.Open(dir, store.DefaultOptions())
		if err != nil {
			bm.Fatal(err)
		}
		r, err := baseline.New(cfg, baseline.Deps{Store: s})
		if err != nil {
			bm.Fatal(err)
		}
		restore := time.Since(start)
		if got := r.Top(baseline.KindHost, 10); len(got) != 10 || got[0].Key != top[0].Key || got[0].Expected != top[0].Expected {
			bm.Fatalf("restored top %v, want %v", got[0], top[0])
		}
		if n := len(r.Top(baseline.KindHost, 0)); n != hosts || n < 999_999 {
			bm.Fatalf("restored %d hosts of %d", n, hosts)
		}
		s.Close()
		bm.ReportMetric(full.Seconds(), "full-snapshot-s")
		bm.ReportMetric(incr.Seconds(), "incr-snapshot-s")
		bm.ReportMetric(restore.Seconds(), "restore-s")
	}
}
