package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"sort"
	"text/tabwriter"
	"time"

	"github.com/flowhound/flowhound/flow"
	"github.com/flowhound/flowhound/ingest"
)

func runTop(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("top", flag.ContinueOnError)
	fs.SetOutput(stderr)
	by := fs.String("by", "bytes", "rank by bytes, packets or flows")
	n := fs.Int("n", 10, "how many talkers")
	apiURL := fs.String("api", "", "a running engine's API `URL` (e.g. http://127.0.0.1:8080): show its busiest hosts now")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: flowhound top [-by bytes|packets|flows] [-n 10] FILE…\n       flowhound top -api URL [-n 10]\n\nTop talkers (as 'show ip flow top-talkers') with a protocol and packet-size summary,\nfrom captures, or the busiest hosts of a running engine. Counts are scaled by sampling.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *by != "bytes" && *by != "packets" && *by != "flows" {
		return fmt.Errorf("top: -by %q: want bytes, packets or flows", *by)
	}
	if *n <= 0 {
		return fmt.Errorf("top: -n must be positive")
	}
	if *apiURL != "" {
		return topLive(*apiURL, *n, stdout)
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return fmt.Errorf("top: no capture files (or -api)")
	}
	t := newTalkers()
	dec := ingest.NewDecoder(ingest.DecoderConfig{})
	var recs []flow.Record
	for _, name := range fs.Args() {
		f, err := openInput(name)
		if err != nil {
			return err
		}
		err = ingest.ReadCapture(f, func(ts int64, src netip.Addr, payload []byte) error {
			recs, _ = dec.Decode(src, ts, payload, recs[:0])
			for i := range recs {
				t.add(&recs[i])
			}
			return nil
		})
		f.Close()
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	t.print(stdout, *by, *n)
	return nil
}

type talkerKey struct {
	exporter     netip.Addr
	inIf, outIf  uint32
	src, dst     netip.Addr
	proto        uint8
	sport, dport uint16
}

type counts struct{ bytes, packets, flows float64 }

type talkers struct {
	byKey  map[talkerKey]*counts
	proto  map[uint8]*counts
	sizes  [8]counts
	total  counts
	first  int64
	last   int64
	nflows int
}

// sizeBuckets are the packet-size classes routers report (bytes per packet).
var sizeBuckets = [...]struct {
	max  float64
	name string
}{{64, "<=64"}, {128, "65-128"}, {256, "129-256"}, {512, "257-512"}, {1024, "513-1024"}, {1518, "1025-1518"}, {9000, "1519-9000"}, {1e18, ">9000"}}

func newTalkers() *talkers {
	return &talkers{byKey: map[talkerKey]*counts{}, proto: map[uint8]*counts{}}
}

func (t *talkers) add(r *flow.Record) {
	k := talkerKey{r.Exporter, r.InIf, r.OutIf, r.SrcAddr, r.DstAddr, r.Proto, r.SrcPort, r.DstPort}
	c := t.byKey[k]
	if c == nil {
		c = &counts{}
		t.byKey[k] = c
	}
	s := float64(r.Scale())
	add := func(c *counts) {
		c.bytes += float64(r.Bytes) * s
		c.packets += float64(r.Packets) * s
		c.flows += float64(r.FlowCount())
	}
	add(c)
	add(&t.total)
	p := t.proto[r.Proto]
	if p == nil {
		p = &counts{}
		t.proto[r.Proto] = p
	}
	add(p)
	if r.Packets > 0 {
		size := float64(r.Bytes) / float64(r.Packets)
		for i, b := range sizeBuckets {
			if size <= b.max {
				add(&t.sizes[i])
				break
			}
		}
	}
	if t.first == 0 || r.Received < t.first {
		t.first = r.Received
	}
	t.last = max(t.last, r.Received)
	t.nflows++
}

func (c *counts) get(by string) float64 {
	switch by {
	case "packets":
		return c.packets
	case "flows":
		return c.flows
	}
	return c.bytes
}

func (t *talkers) print(w io.Writer, by string, n int) {
	type row struct {
		k talkerKey
		c *counts
	}
	rows := make([]row, 0, len(t.byKey))
	for k, c := range t.byKey {
		rows = append(rows, row{k, c})
	}
	sort.Slice(rows, func(i, j int) bool { return rows[i].c.get(by) > rows[j].c.get(by) })
	span := time.Duration(t.last - t.first).Round(time.Second)
	fmt.Fprintf(w, "%d flow records over %v; top %d by %s\n\n", t.nflows, span, min(n, len(rows)), by)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "Exporter\tSrcIf\tSrcIPaddress\tDstIf\tDstIPaddress\tPr\tSrcP\tDstP\tBytes\tPkts\tFlows\t")
	for i := 0; i < len(rows) && i < n; i++ {
		k, c := rows[i].k, rows[i].c
		fmt.Fprintf(tw, "%s\t%d\t%s\t%d\t%s\t%d\t%d\t%d\t%.0f\t%.0f\t%.0f\t\n", k.exporter, k.inIf, k.src, k.outIf, k.dst, k.proto, k.sport, k.dport, c.bytes, c.packets, c.flows)
	}
	tw.Flush()

	fmt.Fprintln(w, "\nProtocols")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "Proto\tBytes\tPkts\tFlows\tShare\t")
	protos := make([]uint8, 0, len(t.proto))
	for p := range t.proto {
		protos = append(protos, p)
	}
	sort.Slice(protos, func(i, j int) bool { return t.proto[protos[i]].get(by) > t.proto[protos[j]].get(by) })
	for _, p := range protos {
		c := t.proto[p]
		fmt.Fprintf(tw, "%s\t%.0f\t%.0f\t%.0f\t%.1f%%\t\n", protoLabel(p), c.bytes, c.packets, c.flows, 100*c.get(by)/max(t.total.get(by), 1))
	}
	tw.Flush()

	fmt.Fprintln(w, "\nPacket sizes (bytes per packet)")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "Size\tPkts\tShare\t")
	for i, b := range sizeBuckets {
		c := t.sizes[i]
		if c.packets > 0 {
			fmt.Fprintf(tw, "%s\t%.0f\t%.1f%%\t\n", b.name, c.packets, 100*c.packets/max(t.total.packets, 1))
		}
	}
	tw.Flush()
}

func protoLabel(p uint8) string {
	switch p {
	case flow.ProtoTCP:
		return "tcp"
	case flow.ProtoUDP:
		return "udp"
	case flow.ProtoICMP:
		return "icmp"
	case flow.ProtoICMPv6:
		return "icmpv6"
	}
	return fmt.Sprint(p)
}

// topLive lists a running engine's busiest hosts by current rate.
func topLive(base string, n int, w io.Writer) error {
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Get(fmt.Sprintf("%s/api/resources?type=host&limit=%d", base, 100000))
	if err != nil {
		return fmt.Errorf("top: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("top: %s: %s", base, resp.Status)
	}
	var body struct {
		Resources []struct {
			Key     string                          `json:"key"`
			Name    string                          `json:"name"`
			Current struct{ BPS, PPS, FPS float64 } `json:"current"`
		} `json:"resources"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return fmt.Errorf("top: %w", err)
	}
	rs := body.Resources
	sort.Slice(rs, func(i, j int) bool { return rs[i].Current.BPS > rs[j].Current.BPS })
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "Host\tGroup\tbps\tpps\tfps\t")
	for i := 0; i < len(rs) && i < n; i++ {
		r := rs[i]
		fmt.Fprintf(tw, "%s\t%s\t%.0f\t%.0f\t%.1f\t\n", r.Key, r.Name, r.Current.BPS, r.Current.PPS, r.Current.FPS)
	}
	return tw.Flush()
}
