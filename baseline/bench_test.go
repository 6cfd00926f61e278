package baseline

import (
	"encoding/binary"
	"math/rand/v2"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/flowhound/flowhound/flow"
)

// mixConfig monitors 10.0.0.0/12 (two networks, nested /16s inside) for the realistic mix.
func mixConfig() Config {
	c := DefaultConfig()
	c.Networks = []Network{
		{Name: "customers", Prefixes: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/12"), netip.MustParsePrefix("10.1.0.0/16")}},
		{Name: "dc", Prefixes: []netip.Prefix{netip.MustParsePrefix("2001:db8::/32")}},
	}
	return c
}

// flowMix returns n flows as an edge would export them: 100k monitored hosts, 8 exporters
// with 16 interfaces each (30 flows per datagram), 60 % TCP/443, 25 % UDP/53, 10 % TCP/80 or UDP/123, 5 % other;
// 80 % incoming, 15 % outgoing, 5 % internal; half of them with a duration up to 60 s;
// a quarter sampled 1:1000; 5 % IPv6. Received advances 1 µs per flow (1M flows/s).
func flowMix(n, hosts int, seed uint64) []flow.Record {
	rng := rand.New(rand.NewPCG(seed, 7))
	host := func() netip.Addr {
		var b [4]byte
		binary.BigEndian.PutUint32(b[:], 0x0a000000|uint32(rng.IntN(hosts))*13%(1<<20))
		return netip.AddrFrom4(b)
	}
	ext := func() netip.Addr {
		var b [4]byte
		binary.BigEndian.PutUint32(b[:], 0x40000000+rng.Uint32N(1<<28))
		return netip.AddrFrom4(b)
	}
	recs := make([]flow.Record, n)
	for i := range recs {
		r := &recs[i]
		r.Received = t0 + int64(i)*1000
		// Flows come in datagrams of 30 from one exporter.
		r.Exporter = netip.AddrFrom4([4]byte{192, 0, 2, byte(1 + (i/30)%8)})
		r.InIf, r.OutIf = uint32(1+rng.IntN(16)), uint32(1+rng.IntN(16))
		r.Has = flow.HasInIf | flow.HasOutIf | flow.HasStart | flow.HasEnd
		src, dst := ext(), host()
		switch x := rng.IntN(100); {
		case x < 15:
			src, dst = dst, src
		case x < 20:
			src = host()
		}
		if rng.IntN(20) == 0 {
			var b [16]byte
			copy(b[:], []byte{0x20, 0x01, 0x0d, 0xb8})
			binary.BigEndian.PutUint32(b[12:], uint32(rng.IntN(hosts/20)))
			dst = netip.AddrFrom16(b)
			b[0] = 0x26
			binary.BigEndian.PutUint64(b[4:], rng.Uint64())
			src = netip.AddrFrom16(b)
		}
		r.SrcAddr, r.DstAddr = src, dst
		r.SrcPort = uint16(1024 + rng.IntN(60000))
		switch x := rng.IntN(100); {
		case x < 60:
			r.Proto, r.DstPort = 6, 443
		case x < 85:
			r.Proto, r.DstPort = 17, 53
		case x < 90:
			r.Proto, r.DstPort = 6, 80
		case x < 95:
			r.Proto, r.DstPort = 17, 123
		default:
			r.Proto, r.DstPort = uint8(rng.IntN(3)*5+1), uint16(rng.IntN(2000))
		}
		r.Packets = uint64(1 + rng.IntN(50))
		r.Bytes = r.Packets * uint64(64+rng.IntN(1400))
		if rng.IntN(2) == 0 {
			r.End = r.Received - int64(rng.IntN(2e9))
			r.Start = r.End - int64(rng.IntN(60e9))
		}
		if rng.IntN(4) == 0 {
			r.SamplingRate = 1000
		}
	}
	return recs
}

// BenchmarkUpdate measures the per-flow path: one op is one flow, in batches of 1024,
// after the first pass has created the keys. Each batch is first copied into a reused
// buffer, as a decoder writes its batch, so that the records are in cache as they are in
// the engine (a 30 MB pool read straight from memory would charge ~20 ns per flow that the
// engine does not pay); the copy is part of the figure.
func BenchmarkUpdate(b *testing.B) {
	for _, hosts := range []int{100_000, 1000} {
		b.Run(map[int]string{100_000: "hosts=100k", 1000: "hosts=1k"}[hosts], func(b *testing.B) {
			bl, err := New(mixConfig(), Deps{})
			if err != nil {
				b.Fatal(err)
			}
			const pool = 1 << 18
			recs := flowMix(pool, hosts, 1)
			batch := make([]flow.Record, 1024)
			span := int64(pool) * 1000
			for i := 0; i < pool; i += 1024 {
				bl.Update(recs[i : i+1024])
			}
			b.ReportAllocs()
			b.ResetTimer()
			cpu0 := cpuTime()
			done := 0
			for pass := int64(1); done < b.N; pass++ {
				for i := 0; i < pool && done < b.N; i += 1024 {
					copy(batch, recs[i:i+1024])
					for j := range batch {
						r := &batch[j]
						r.Received += pass * span
						if r.End != 0 {
							r.End += pass * span
							r.Start += pass * span
						}
					}
					bl.Update(batch)
					done += 1024
				}
			}
			// The machine is shared: CPU time per flow is steadier than wall time.
			b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/flow")
			b.ReportMetric(float64(bl.hosts.live), "hostkeys")
			b.ReportMetric(float64(bl.full.live), "profiles")
		})
	}
}

func TestUpdateAllocatesNothing(t *testing.T) {
	bl, err := New(mixConfig(), Deps{})
	if err != nil {
		t.Fatal(err)
	}
	recs := flowMix(1<<15, 5000, 3)
	for i := 0; i < len(recs); i += 1024 {
		bl.Update(recs[i : i+1024])
	}
	span := int64(len(recs)) * 1000
	for i := range recs {
		recs[i].Received += span
		if recs[i].End != 0 {
			recs[i].End += span
			recs[i].Start += span
		}
	}
	i := 0
	allocs := testing.AllocsPerRun(31, func() {
		bl.Update(recs[i : i+1024])
		i += 1024
	})
	if allocs != 0 {
		t.Fatalf("Update allocates %.1f times per batch in steady state", allocs)
	}
}

// cpuTime returns the CPU time this process has used, in ns.
func cpuTime() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// vmRSS returns the process's resident set size as the kernel reports it.
func vmRSS() string {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return "RSS unknown"
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmRSS:") {
			return "RSS " + strings.Join(strings.Fields(l)[1:], " ")
		}
	}
	return "RSS unknown"
}

// heapInuse returns HeapInuse after a full collection.
func heapInuse() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

// fillHosts creates n host keys with learned state, through the per-flow path.
func fillHosts(tb testing.TB, bl *Baselines, n int) {
	recs := make([]flow.Record, 1024)
	now := t0
	for i := 0; i < n; {
		for j := range recs {
			var b [4]byte
			binary.BigEndian.PutUint32(b[:], 0x0a000000+uint32(i))
			recs[j] = flow.Record{Received: now, SrcAddr: netip.AddrFrom4([4]byte{64, 1, 2, 3}), DstAddr: netip.AddrFrom4(b),
				Packets: 10, Bytes: 10000, Proto: 6, DstPort: 443}
			i++
		}
		bl.Update(recs)
	}
	bl.Advance(now + int64(time.Minute))
}

// TestMemoryMillionHosts reports the heap of one million host keys (hosts in a /8). The
// budget is 1 GiB for the whole engine.
func TestMemoryMillionHosts(t *testing.T) {
	if testing.Short() {
		t.Skip("allocates several hundred MB")
	}
	before := heapInuse()
	cfg := mixConfig()
	cfg.Networks = []Network{{Name: "big", Prefixes: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}}
	cfg.MaxProfiles = 100_000
	bl, err := New(cfg, Deps{})
	if err != nil {
		t.Fatal(err)
	}
	fillHosts(t, bl, 1_000_000)
	after := heapInuse()
	perKey := float64(after-before) / 1e6
	t.Logf("1,000,000 hosts (+%d /24 profiles): heap in use %.0f MiB, %.0f B per host; process %s", bl.full.live, float64(after-before)/(1<<20), perKey, vmRSS())
	if bl.hosts.live != 1_000_000 {
		t.Fatalf("tracked %d hosts", bl.hosts.live)
	}
	if after-before > 600<<20 {
		t.Errorf("1M hosts take %d MiB of heap", (after-before)>>20)
	}
	runtime.KeepAlive(bl)
}

// TestMemoryProfiles reports the heap of 10,000 interface and prefix keys with the full
// seasonal model.
func TestMemoryProfiles(t *testing.T) {
	before := heapInuse()
	cfg := DefaultConfig()
	var prefixes []netip.Prefix
	for i := range 5000 {
		prefixes = append(prefixes, netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i >> 8), byte(i), 0}), 24))
	}
	cfg.Networks = []Network{{Name: "many", Prefixes: prefixes}} // 10,000 keys: in and out
	bl, err := New(cfg, Deps{})
	if err != nil {
		t.Fatal(err)
	}
	after := heapInuse()
	t.Logf("%d profiles: heap in use %.0f MiB, %.1f KiB each", bl.full.live, float64(after-before)/(1<<20), float64(after-before)/float64(bl.full.live)/1024)
	if per := (after - before) / uint64(bl.full.live); per > 16<<10 {
		t.Errorf("a profile takes %d bytes", per)
	}
	runtime.KeepAlive(bl)
}

// BenchmarkLearnSlot measures closing one slot: 10,000 profiles (interfaces and prefixes
// with the seasonal model, learned every slot) and 100,000 hosts with traffic in it.
func BenchmarkLearnSlot(b *testing.B) {
	cfg := DefaultConfig()
	var prefixes []netip.Prefix
	for i := range 5000 {
		prefixes = append(prefixes, netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i >> 8), byte(i), 0}), 24))
	}
	cfg.Networks = []Network{{Name: "many", Prefixes: prefixes}}
	bl, err := New(cfg, Deps{})
	if err != nil {
		b.Fatal(err)
	}
	recs := make([]flow.Record, 100_000)
	for i := range recs {
		recs[i] = flow.Record{SrcAddr: outside, DstAddr: netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}),
			Bytes: 1000, Packets: 1, Proto: 6, DstPort: 443}
	}
	now := t0
	feed := func() {
		for i := range recs {
			recs[i].Received = now + 1
		}
		bl.Update(recs)
		now += bl.slotNs
	}
	for range 4 {
		feed()
	}
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		feed()
		b.StartTimer()
		bl.Advance(now)
	}
	b.ReportMetric(float64(bl.full.live), "profiles")
	b.ReportMetric(float64(bl.hosts.live), "hosts")
}
