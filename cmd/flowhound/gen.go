package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/flowhound/flowhound/gen"
)

const genUsage = `usage: flowhound gen -to HOST:PORT [flags]
       flowhound gen -pcap FILE [flags]

Sends NetFlow v5/v9, IPFIX or sFlow export as several routers would: exporters
127.0.0.11, 127.0.0.12, ... (one source address each), each with uplinks (ifindex 1-4),
customer-facing interfaces (10-13) and a core link (20), a flow cache with active and
inactive timeouts, and normal traffic for the customer networks 192.0.2.0/24 and
198.51.100.0/24 with attacks on top. With -pcap it writes the datagrams to a capture in
simulated time instead, as fast as it can.

Scenarios:
  normal      normal traffic only
  syn-flood   10s normal, then a spoofed SYN flood (50 kpps) against 192.0.2.10,
              entering 127.0.0.11 if 3 (85%) and 127.0.0.12 if 2
  slammer     10s normal, then a Slammer-like worm (UDP/1434, 404-byte packets, 3 kpps)
              from 198.51.100.77, entering 127.0.0.13 if 11
  udp-amp     10s normal, then DNS/NTP/memcached reflection (30 kpps) against
              198.51.100.20, entering 127.0.0.12 if 1 (60%) and 127.0.0.13 if 4
  icmp-flood  10s normal, then an ICMP echo flood (20 kpps) against 192.0.2.30,
              entering 127.0.0.13 if 2 (70%) and 127.0.0.11 if 1
  mixed       the four attacks in turn, 60s each with 60s of normal traffic between
  demo        what 'flowhound demo' runs (~60s): 10s normal, 10s SYN flood, 5s quiet,
              10s slammer, 5s quiet, 10s UDP amplification, then normal

Flags:
`

// runGen implements 'flowhound gen'.
func runGen(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg := gen.DefaultConfig()
	fs := flag.NewFlagSet("gen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), genUsage)
		fs.PrintDefaults()
	}
	fs.StringVar(&cfg.To, "to", "", "collector `HOST:PORT` (required unless -pcap)")
	fs.StringVar(&cfg.Format, "format", cfg.Format, "export format: v5, v9, ipfix or sflow")
	fs.StringVar(&cfg.Scenario, "scenario", cfg.Scenario, "scenario: "+strings.Join(gen.Scenarios(), ", "))
	fs.IntVar(&cfg.Rate, "rate", cfg.Rate, "normal background, in `flows/s`")
	fs.IntVar(&cfg.AttackRate, "attack-rate", 0, "packets/s of each attack (0: the scenario's)")
	fs.DurationVar(&cfg.Duration, "duration", cfg.Duration, "how long to run (0: until interrupted)")
	fs.Func("victim", "attack target `ADDR` (repeat or comma-separate for mixed and demo; for slammer, the infected host)", func(s string) error {
		return addAddrs(&cfg.Victims, s)
	})
	fs.IntVar(&cfg.Exporters, "exporters", cfg.Exporters, "number of exporters")
	fs.Func("src", "exporter source `ADDRS`, comma-separated (default 127.0.0.11, 127.0.0.12, ...)", func(s string) error {
		return addAddrs(&cfg.Sources, s)
	})
	fs.Int64Var(&cfg.Seed, "seed", cfg.Seed, "random seed")
	fs.DurationVar(&cfg.ActiveTimeout, "active-timeout", cfg.ActiveTimeout, "flow cache active timeout")
	fs.DurationVar(&cfg.InactiveTimeout, "inactive-timeout", cfg.InactiveTimeout, "flow cache inactive timeout")
	fs.IntVar(&cfg.SamplingRate, "sampling", cfg.SamplingRate, "sFlow sampling rate, 1 in `N` packets")
	pcapFile := fs.String("pcap", "", "write datagrams to this pcap `FILE` instead of sending them")
	startAt := fs.String("start", "", "with -pcap, the simulated start `TIME` (RFC 3339; default now): with -seed, repeats a capture exactly")
	quiet := fs.Bool("q", false, "print only the summary")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("gen: unexpected argument %q", fs.Arg(0))
	}
	if len(cfg.Sources) > 0 {
		cfg.Exporters = 0
	}
	if cfg.To == "" && *pcapFile == "" {
		fs.Usage()
		return errors.New("gen: -to or -pcap is required")
	}
	if *pcapFile != "" && cfg.Duration == 0 {
		return errors.New("gen: -pcap needs a -duration")
	}
	if !*quiet {
		cfg.OnPhase = func(p gen.Phase, at time.Time) {
			if p.Name == gen.PhaseNormal {
				fmt.Fprintf(stderr, "gen: %v normal traffic\n", p.Start)
				return
			}
			fmt.Fprintf(stderr, "gen: %v %s, %v, %d pps\n", p.Start, p.Name, p.Victim, p.PPS)
		}
	}
	g, err := gen.New(cfg)
	if err != nil {
		return fmt.Errorf("gen: %w", err)
	}
	if !*quiet {
		var names []string
		for _, e := range g.Exporters() {
			names = append(names, fmt.Sprintf("%v (%s)", e.Addr, e.Name))
		}
		dest := cfg.To
		if *pcapFile != "" {
			dest = *pcapFile
		}
		fmt.Fprintf(stderr, "gen: %s %s, %d flows/s background, exporters %s -> %s\n",
			cfg.Scenario, cfg.Format, cfg.Rate, strings.Join(names, ", "), dest)
	}
	start := time.Now()
	if *pcapFile != "" {
		simStart := start
		if *startAt != "" {
			if simStart, err = time.Parse(time.RFC3339Nano, *startAt); err != nil {
				return fmt.Errorf("gen: -start: %w", err)
			}
		}
		err = writeGenPCAP(g, &cfg, *pcapFile, simStart)
	} else {
		err = g.Run(ctx)
	}
	if err != nil {
		return err
	}
	printGenStats(stdout, g.Stats(), time.Since(start))
	return nil
}

func addAddrs(dst *[]netip.Addr, s string) error {
	for _, f := range strings.Split(s, ",") {
		a, err := netip.ParseAddr(strings.TrimSpace(f))
		if err != nil {
			return err
		}
		*dst = append(*dst, a)
	}
	return nil
}

// writeGenPCAP simulates the scenario and writes its datagrams, framed as UDP from each
// exporter to the collector (-to, or 127.0.0.1 on the format's port), with their
// simulated send times.
func writeGenPCAP(g *gen.Generator, cfg *gen.Config, path string, start time.Time) error {
	f, err := pcapDest(cfg)
	if err != nil {
		return err
	}
	out, err := os.Create(path)
	if err != nil {
		return err
	}
	bw := bufio.NewWriterSize(out, 1<<20)
	w, err := gen.NewPCAPWriter(bw)
	if err != nil {
		out.Close()
		return err
	}
	err = g.Simulate(start, cfg.Duration, func(d *gen.Datagram) error {
		src := netip.AddrPortFrom(d.Exporter, 50000)
		return w.WriteDatagram(time.Unix(0, d.Time), src, f, d.Payload)
	})
	if err == nil {
		err = bw.Flush()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	return err
}

// pcapDest returns the collector address written into -pcap frames.
func pcapDest(cfg *gen.Config) (netip.AddrPort, error) {
	if cfg.To != "" {
		ua, err := net.ResolveUDPAddr("udp", cfg.To)
		if err != nil {
			return netip.AddrPort{}, err
		}
		ap := ua.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), nil
	}
	f, err := gen.ParseFormat(cfg.Format)
	if err != nil {
		return netip.AddrPort{}, err
	}
	return netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(f.Port())), nil
}

func printGenStats(w io.Writer, st gen.Stats, took time.Duration) {
	fmt.Fprintf(w, "sent %d datagrams, %d records, %d bytes in %v (%.0f records/s); max lag %v, %d send errors\n",
		st.Datagrams, st.Records, st.Bytes, took.Round(time.Millisecond),
		float64(st.Records)/max(took.Seconds(), 1e-9), st.MaxLag.Round(time.Millisecond), st.SendErrors)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "phase\tstart\tend\tvictim\tdatagrams\trecords\tpackets\tattack records\tattack packets\t")
	for _, p := range st.Phases {
		end, victim := "-", "-"
		if p.End != 0 {
			end = p.End.String()
		}
		if p.Victim.IsValid() {
			victim = p.Victim.String()
		}
		fmt.Fprintf(tw, "%s\t%v\t%s\t%s\t%d\t%d\t%d\t%d\t%d\t\n", p.Name, p.Start, end, victim,
			p.Datagrams, p.Records, p.Packets, p.AttackRecords, p.AttackPackets)
	}
	tw.Flush()
}
