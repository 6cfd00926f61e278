package main

import (
	"bufio"
	"cmp"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/flowhound/flowhound/flow"
	"github.com/flowhound/flowhound/ingest"
	"github.com/flowhound/flowhound/rules"
	"github.com/flowhound/flowhound/signatures"
)

const rulesUsage = `usage: flowhound rules check [FILE...]
       flowhound rules test [-rules FILE]... RULE CAPTURE...

check   validates and compiles rule files together with the embedded default pack, or
        the default pack alone when no FILE is given; prints "ok: N rules" or every
        problem as file:line:col: message.
test    prints, as flow-record JSON lines, each flow of the pcap/pcapng captures that
        RULE's match accepts, then a summary on standard error: flows matched, and
        whether the threshold would fire (evaluated every second of capture time over
        the rule's window, with the rule's default limits and no configured networks).
`

// runRules implements "flowhound rules".
func runRules(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, rulesUsage)
		return errors.New("rules: check or test?")
	}
	switch args[0] {
	case "check":
		return rulesCheck(args[1:], stdout, stderr)
	case "test":
		return rulesTest(args[1:], stdout, stderr)
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, rulesUsage)
		return nil
	}
	fmt.Fprint(stderr, rulesUsage)
	return fmt.Errorf("rules: unknown subcommand %q", args[0])
}

func rulesCheck(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("rules check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, rulesUsage) }
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	// The default pack plus the files, combined as serve and replay combine them
	// (compileRules), so that "ok" means they accept the files too. The valid rules of a
	// file with problems are still compiled, to report every problem in one run.
	all := rules.Default()
	n := len(all)
	var problems rules.ErrorList
	if fs.NArg() > 0 {
		rs, err := rules.Load(fs.Args()...)
		if err != nil && !errors.As(err, &problems) {
			return err // an unreadable file
		}
		n = len(rs)
		all = append(all, rs...)
	}
	if _, err := signatures.Compile(all); err != nil {
		var list rules.ErrorList
		if !errors.As(err, &list) {
			return err
		}
		problems = append(problems, list...)
	}
	if len(problems) > 0 {
		slices.SortStableFunc(problems, func(a, b *rules.Error) int {
			return cmp.Or(strings.Compare(a.Pos.File, b.Pos.File), cmp.Compare(a.Pos.Line, b.Pos.Line),
				cmp.Compare(a.Pos.Column, b.Pos.Column))
		})
		return ruleProblems(stderr, problems)
	}
	fmt.Fprintf(stdout, "ok: %d rules\n", n)
	return nil
}

// ruleProblems prints every file:line:col problem and returns a short error for main,
// which prints it after them.
func ruleProblems(stderr io.Writer, err error) error {
	fmt.Fprintln(stderr, err)
	var list rules.ErrorList
	switch {
	case !errors.As(err, &list):
		return errors.New("rules: invalid rules")
	case len(list) == 1:
		return errors.New("rules: 1 problem")
	}
	return fmt.Errorf("rules: %d problems", len(list))
}

// pathList is a repeatable -rules flag.
type pathList []string

func (p *pathList) String() string     { return strings.Join(*p, ",") }
func (p *pathList) Set(v string) error { *p = append(*p, v); return nil }

func rulesTest(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("rules test", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var extra pathList
	fs.Var(&extra, "rules", "rule file or glob to load besides the default pack (repeatable)")
	fs.Usage = func() {
		fmt.Fprint(stderr, rulesUsage)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if fs.NArg() < 2 {
		fs.Usage()
		return errors.New("rules test: give a rule name and at least one capture")
	}
	set, err := compileRules(extra)
	if err != nil {
		return ruleProblems(stderr, err)
	}
	name := fs.Arg(0)
	ri := set.Index(name)
	if ri < 0 {
		return fmt.Errorf("rules test: no rule named %q", name)
	}
	rule := set.Rule(ri)
	sim := newWindowSim(rule, set.Threshold(ri))

	w := bufio.NewWriterSize(stdout, 1<<16)
	dec := ingest.NewDecoder(ingest.DecoderConfig{})
	var recs []flow.Record
	var line []byte
	var total, matched, dropped int
	for _, file := range fs.Args()[1:] {
		f, err := openCapture(file)
		if err != nil {
			return fmt.Errorf("rules test: %w", err)
		}
		err = ingest.ReadCapture(f, func(ts int64, src netip.Addr, payload []byte) error {
			sim.advance(ts)
			var derr error
			recs, derr = dec.Decode(src, ts, payload, recs[:0])
			if derr != nil {
				dropped++
			}
			for i := range recs {
				total++
				if !set.Matches(ri, &recs[i]) {
					continue
				}
				matched++
				sim.add(&recs[i], ts)
				line = append(recs[i].AppendJSON(line[:0]), '\n')
				if _, err := w.Write(line); err != nil {
					return writeFailure{err}
				}
			}
			return nil
		})
		f.Close()
		if err != nil {
			var wf writeFailure
			if errors.As(err, &wf) {
				return wf.err
			}
			return fmt.Errorf("rules test: %s: %w", file, err)
		}
	}
	sim.finish()
	if err := w.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "%s: matched %d of %d flows", rule.Name, matched, total)
	if dropped > 0 {
		fmt.Fprintf(stderr, " (%d datagrams could not be decoded)", dropped)
	}
	fmt.Fprintln(stderr)
	fmt.Fprintf(stderr, "threshold %s (window %v, min_samples %d): %s\n",
		strings.TrimSpace(rule.Threshold.Source), rule.Window, rule.MinSamples, sim.verdict())
	if rule.After != "" {
		fmt.Fprintf(stderr, "note: %s also needs %s to fire on the same resource within %v first; not checked here\n",
			rule.Name, rule.After, rule.Within)
	}
	return nil
}

type writeFailure struct{ err error }

func (e writeFailure) Error() string { return e.err.Error() }

func openCapture(name string) (io.ReadCloser, error) {
	if name == "-" {
		return io.NopCloser(os.Stdin), nil
	}
	return os.Open(name)
}

// windowSim is a small, exact version of the detector's windows for one rule: per resource,
// per second of capture time, the matched traffic; evaluated at every whole second. It
// exists so that a rule can be tried on a capture without the engine and its configuration.
type windowSim struct {
	rule   *rules.Rule
	th     *signatures.Threshold
	window int64 // seconds
	res    map[string]*simResource
	next   int64 // next evaluation, Unix ns

	fired     bool
	firedAt   int64
	firedKey  string
	firedSev  float64
	firedWhat string
	best      float64 // highest severity seen while not firing
	bestKey   string
	bestWhat  string
}

type simResource struct {
	secs map[int64]*simSecond
}

type simSecond struct {
	bytes, packets, flows, samples float64
	srcs, dsts                     map[netip.Addr]struct{}
	sports, dports                 map[uint16]struct{}
}

func newWindowSim(r *rules.Rule, th *signatures.Threshold) *windowSim {
	return &windowSim{rule: r, th: th, window: max(int64(time.Duration(r.Window)/time.Second), 1),
		res: map[string]*simResource{}}
}

// key is the resource a flow belongs to, as the detector keys it without configured networks.
func (s *windowSim) key(r *flow.Record) string {
	by := "dst_addr"
	if len(s.rule.GroupBy) > 0 {
		by = s.rule.GroupBy[0]
	}
	prefix := func(a netip.Addr) string {
		bits := 24
		if a.Is6() {
			bits = 64
		}
		p, _ := a.Prefix(bits)
		return p.String()
	}
	switch by {
	case "src_addr":
		return r.SrcAddr.String()
	case "src_prefix":
		return prefix(r.SrcAddr)
	case "dst_prefix":
		return prefix(r.DstAddr)
	case "in_if":
		return fmt.Sprintf("%s:%d", r.Exporter, r.InIf)
	case "dst_port":
		return fmt.Sprintf("%d/%d", r.Proto, r.DstPort)
	case "global":
		return "global"
	}
	return r.DstAddr.String()
}

func (s *windowSim) add(r *flow.Record, ts int64) {
	k := s.key(r)
	res := s.res[k]
	if res == nil {
		res = &simResource{secs: map[int64]*simSecond{}}
		s.res[k] = res
	}
	sec := ts / 1e9
	b := res.secs[sec]
	if b == nil {
		b = &simSecond{srcs: map[netip.Addr]struct{}{}, dsts: map[netip.Addr]struct{}{},
			sports: map[uint16]struct{}{}, dports: map[uint16]struct{}{}}
		res.secs[sec] = b
	}
	scale := float64(r.Scale())
	b.bytes += float64(r.Bytes) * scale
	b.packets += float64(r.Packets) * scale
	b.flows += float64(r.FlowCount()) * scale
	b.samples += float64(r.Packets)
	b.srcs[r.SrcAddr] = struct{}{}
	b.dsts[r.DstAddr] = struct{}{}
	b.sports[r.SrcPort] = struct{}{}
	b.dports[r.DstPort] = struct{}{}
}

// advance evaluates every whole second before ts, as serve's ticker would have. Captures
// are not always in time order across files: a step back starts the windows afresh, and
// a gap is skipped once every window has emptied.
func (s *windowSim) advance(ts int64) {
	if s.next != 0 && ts < s.next-1e9 {
		s.evaluate(s.next)
		clear(s.res)
		s.next = 0
	}
	if s.next == 0 {
		s.next = (ts/1e9 + 1) * 1e9
	}
	for ts >= s.next {
		s.evaluate(s.next)
		s.next += 1e9
		if len(s.res) == 0 {
			s.next = max(s.next, (ts/1e9+1)*1e9)
		}
	}
}

// finish evaluates the seconds the last flows fall in.
func (s *windowSim) finish() {
	if s.next != 0 {
		s.evaluate(s.next)
	}
}

func (s *windowSim) evaluate(now int64) {
	end := now / 1e9 // seconds before end are complete
	keys := make([]string, 0, len(s.res))
	for k := range s.res {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		res := s.res[k]
		var a signatures.Aggregates
		srcs, dsts := map[netip.Addr]struct{}{}, map[netip.Addr]struct{}{}
		sports, dports := map[uint16]struct{}{}, map[uint16]struct{}{}
		for sec, b := range res.secs {
			if sec < end-s.window {
				delete(res.secs, sec)
				continue
			}
			if sec >= end {
				continue
			}
			a.BPS += b.bytes * 8
			a.PPS += b.packets
			a.FPS += b.flows
			a.Samples += b.samples
			for x := range b.srcs {
				srcs[x] = struct{}{}
			}
			for x := range b.dsts {
				dsts[x] = struct{}{}
			}
			for x := range b.sports {
				sports[x] = struct{}{}
			}
			for x := range b.dports {
				dports[x] = struct{}{}
			}
		}
		if len(res.secs) == 0 {
			delete(s.res, k)
			continue
		}
		w := float64(s.window)
		a.BPS, a.PPS, a.FPS = a.BPS/w, a.PPS/w, a.FPS/w
		a.DistinctSrc, a.DistinctDst = float64(len(srcs)), float64(len(dsts))
		a.DistinctSrcPort, a.DistinctDstPort = float64(len(sports)), float64(len(dports))
		fired, sev, metric, limit := s.th.Check(&a)
		if a.Samples < float64(s.rule.MinSamples) {
			fired = false
		}
		what := fmt.Sprintf("%.1f%% of %s %g", sev, metric, limit)
		if metric == "" {
			what = fmt.Sprintf("%.1f%%", sev)
		}
		switch {
		case fired && (!s.fired || sev > s.firedSev):
			if !s.fired {
				s.firedAt = now
			}
			s.fired, s.firedKey, s.firedSev, s.firedWhat = true, k, sev, what
		case !fired && sev > s.best:
			s.best, s.bestKey, s.bestWhat = sev, k, what
		}
	}
}

func (s *windowSim) verdict() string {
	if s.fired {
		return fmt.Sprintf("would fire, first at %s; peak %s for %s",
			time.Unix(0, s.firedAt).UTC().Format(time.RFC3339), s.firedWhat, s.firedKey)
	}
	if s.bestKey == "" {
		return "would not fire"
	}
	return fmt.Sprintf("would not fire (closest: %s for %s)", s.bestWhat, s.bestKey)
}
