// Command hostload sends NetFlow v5 export whose flows go to many distinct destination
// hosts, so that a collector has to track every one of them at once: the memory
// benchmark's load (BENCHMARKS.md, "Memory").
//
// Each pass sends one record to every host of -hosts, in order from the first address of
// -prefix, at -rate records per second, from one exporter (-src, default 127.0.0.31).
// Records look like ordinary completed TCP connections (flags FSPA, 10 packets, 6000 bytes)
// from addresses in 198.18.0.0/15 (the benchmarking range), so that no rule sees an attack.
// The run is bounded by -passes and by -max-duration, whichever ends first.
package main

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"time"

	"golang.org/x/net/ipv4"

	"github.com/flowhound/flowhound/flow"
	"github.com/flowhound/flowhound/gen"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "hostload:", err)
		os.Exit(1)
	}
}

func run() error {
	to := flag.String("to", "", "collector `HOST:PORT` (loopback only)")
	src := flag.String("src", "127.0.0.31", "exporter source `ADDR` (loopback)")
	prefix := flag.String("prefix", "10.0.0.0/12", "destination hosts are taken from this IPv4 `PREFIX`")
	hosts := flag.Int("hosts", 1_000_000, "number of distinct destination hosts")
	rate := flag.Int("rate", 400_000, "records per second")
	passes := flag.Int("passes", 2, "how many times every host gets a record")
	maxDur := flag.Duration("max-duration", 60*time.Second, "stop after this long whatever is left")
	flag.Parse()

	dst, err := net.ResolveUDPAddr("udp4", *to)
	if err != nil || *to == "" {
		return fmt.Errorf("-to: %q: %v", *to, err)
	}
	srcAddr, err := netip.ParseAddr(*src)
	if err != nil {
		return fmt.Errorf("-src: %w", err)
	}
	if !dst.AddrPort().Addr().IsLoopback() || !srcAddr.IsLoopback() {
		return errors.New("-to and -src must be loopback addresses")
	}
	pfx, err := netip.ParsePrefix(*prefix)
	if err != nil || !pfx.Addr().Is4() {
		return fmt.Errorf("-prefix: %q: want an IPv4 prefix", *prefix)
	}
	pfx = pfx.Masked()
	if size := uint64(1) << (32 - pfx.Bits()); uint64(*hosts) > size {
		return fmt.Errorf("-hosts %d does not fit in %v (%d addresses)", *hosts, pfx, size)
	}
	if *rate <= 0 || *passes <= 0 || *hosts <= 0 {
		return errors.New("-rate, -passes and -hosts must be positive")
	}

	conn, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(srcAddr, 0)))
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetWriteBuffer(4 << 20)
	pc := ipv4.NewPacketConn(conn)

	const batch = 64
	msgs := make([]ipv4.Message, batch)
	bufs := make([][]byte, batch)
	for i := range msgs {
		bufs[i] = make([]byte, 0, 1500)
		msgs[i].Buffers = [][]byte{nil}
		msgs[i].Addr = dst
	}
	base := pfx.Addr().As4()
	baseU := uint32(base[0])<<24 | uint32(base[1])<<16 | uint32(base[2])<<8 | uint32(base[3])
	start := time.Now()
	h := gen.Header{Boot: start.Add(-time.Hour).UnixNano(), Domain: 0x0101}
	total := uint64(*hosts) * uint64(*passes)
	recs := make([]flow.Record, gen.MaxV5Records)
	var sent, datagrams, errs uint64
	var seq uint32
	rnd := uint32(2463534242)
	next := func() uint32 { rnd ^= rnd << 13; rnd ^= rnd >> 17; rnd ^= rnd << 5; return rnd }

	const tick = 5 * time.Millisecond
	deadline := start.Add(*maxDur)
	n := 0
	for sent < total {
		now := time.Now()
		if now.After(deadline) {
			break
		}
		// Records due by now at -rate, sent in full datagrams.
		due := uint64(now.Sub(start).Seconds() * float64(*rate))
		if due <= sent {
			time.Sleep(tick)
			continue
		}
		due = min(due, total)
		nowNs := now.UnixNano()
		for sent < due {
			k := min(uint64(gen.MaxV5Records), due-sent)
			for j := range recs[:k] {
				host := uint32((sent + uint64(j)) % uint64(*hosts))
				d := baseU + host
				s := 198<<24 | 18<<16 | next()&0x1ffff
				recs[j] = flow.Record{
					Start: nowNs - 2e9, End: nowNs - 1e6,
					SrcAddr: netip.AddrFrom4([4]byte{byte(s >> 24), byte(s >> 16), byte(s >> 8), byte(s)}),
					DstAddr: netip.AddrFrom4([4]byte{byte(d >> 24), byte(d >> 16), byte(d >> 8), byte(d)}),
					Packets: 10, Bytes: 6000, InIf: 1, OutIf: 10,
					SrcPort: uint16(32768 + next()%28000), DstPort: 443, Proto: 6, TCPFlags: 0x1b,
					SrcMask: 15, DstMask: 24,
				}
			}
			h.Export, h.Sequence = nowNs, seq
			bufs[n], _ = gen.AppendV5(bufs[n][:0], h, recs[:k])
			msgs[n].Buffers[0] = bufs[n]
			n++
			seq += uint32(k)
			sent += k
			datagrams++
			if n == batch {
				errs += flush(pc, msgs[:n])
				n = 0
			}
		}
		if n > 0 {
			errs += flush(pc, msgs[:n])
			n = 0
		}
	}
	took := time.Since(start)
	fmt.Printf("sent %d datagrams, %d records to %d hosts in %v (%.0f records/s), %d send errors\n",
		datagrams, sent, min(uint64(*hosts), sent), took.Round(time.Millisecond), float64(sent)/took.Seconds(), errs)
	if sent < total {
		return fmt.Errorf("stopped by -max-duration after %d of %d records", sent, total)
	}
	return nil
}

// flush sends ms, counting datagrams the kernel refused (UDP export loses them too).
func flush(pc *ipv4.PacketConn, ms []ipv4.Message) uint64 {
	var errs uint64
	for len(ms) > 0 {
		n, err := pc.WriteBatch(ms, 0)
		if err != nil {
			errs++
			n = max(n, 1)
		}
		ms = ms[n:]
	}
	return errs
}
