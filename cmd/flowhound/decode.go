package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"slices"
	"strings"

	"github.com/flowhound/flowhound/flow"
	"github.com/flowhound/flowhound/ingest"
)

const decodeUsage = `usage: flowhound decode [-format jsonl] FILE...

Decodes the NetFlow (v1, v5, v7, v8, v9), IPFIX/PSAMP and sFlow v5 datagrams of
pcap or pcapng captures (FILE "-" reads standard input) and prints one flow record
per line as JSON. Templates carry over from one file to the next, as from a rotated
capture. A summary of what was dropped goes to standard error.

`

// runDecode implements "flowhound decode".
func runDecode(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("decode", flag.ContinueOnError)
	fs.SetOutput(stderr)
	format := fs.String("format", "jsonl", "output format: jsonl (one flow record JSON object per line)")
	fs.Usage = func() {
		fmt.Fprint(stderr, decodeUsage)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if *format != "jsonl" {
		return fmt.Errorf("decode: unknown format %q (jsonl is the only one)", *format)
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return errors.New("decode: no capture file given")
	}

	w := bufio.NewWriterSize(stdout, 1<<16)
	dec := ingest.NewDecoder(ingest.DecoderConfig{})
	var recs []flow.Record
	var line []byte
	var datagrams, records, errs uint64
	emit := func(ts int64, src netip.Addr, payload []byte) error {
		datagrams++
		var err error
		recs, err = dec.Decode(src, ts, payload, recs[:0])
		if err != nil {
			errs++
		}
		for i := range recs {
			line = recs[i].AppendJSON(line[:0])
			line = append(line, '\n')
			if _, err := w.Write(line); err != nil {
				return err
			}
		}
		records += uint64(len(recs))
		return nil
	}
	var failed error
	for _, name := range fs.Args() {
		if err := decodeFile(name, emit); err != nil {
			var werr writeError
			if errors.As(err, &werr) {
				return werr.err
			}
			fmt.Fprintf(stderr, "decode: %s: %v\n", name, err)
			failed = errors.New("decode: some captures could not be read")
		}
	}
	// Records of data sets still waiting for a template are never printed: count them.
	dec.Flush()
	if err := w.Flush(); err != nil {
		return err
	}
	summarize(stderr, dec.Exporters(), datagrams, errs, records)
	return failed
}

type writeError struct{ err error }

func (e writeError) Error() string { return e.err.Error() }

func decodeFile(name string, emit func(int64, netip.Addr, []byte) error) error {
	var r io.Reader = os.Stdin
	if name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return err
		}
		defer f.Close()
		r = f
	}
	return ingest.ReadCapture(r, func(ts int64, src netip.Addr, payload []byte) error {
		if err := emit(ts, src, payload); err != nil {
			return writeError{err}
		}
		return nil
	})
}

// summarize prints totals and, per exporter, what was dropped or lost.
func summarize(w io.Writer, stats []ingest.ExporterStats, datagrams, errs, records uint64) {
	fmt.Fprintf(w, "decoded %d records from %d datagrams (%d with errors), %d exporters\n", records, datagrams, errs, len(stats))
	for _, s := range stats {
		var parts []string
		add := func(m map[string]uint64, label string) {
			keys := make([]string, 0, len(m))
			for k := range m {
				keys = append(keys, k)
			}
			slices.Sort(keys)
			for _, k := range keys {
				parts = append(parts, fmt.Sprintf("%s%s=%d", label, k, m[k]))
			}
		}
		add(s.Drops, "dropped:")
		add(s.Quirks, "quirk:")
		if s.LostFlows > 0 {
			parts = append(parts, fmt.Sprintf("lost_flows=%d", s.LostFlows))
		}
		if s.Restarts > 0 {
			parts = append(parts, fmt.Sprintf("restarts=%d", s.Restarts))
		}
		if len(parts) == 0 {
			continue
		}
		name := "(over exporter limit)"
		if s.Exporter.IsValid() {
			name = s.Exporter.String()
		}
		fmt.Fprintf(w, "  %s: %d datagrams, %d records: %s\n", name, s.Datagrams, s.Records, strings.Join(parts, " "))
	}
}
