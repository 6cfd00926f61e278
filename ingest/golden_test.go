package ingest

import (
	"bytes"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/flowhound/flowhound/flow"
)

// go test ./ingest -run 'TestGolden|TestFuzzSeeds' -update rewrites the golden files
// and the fuzz seed corpus from the shared captures.
var update = flag.Bool("update", false, "rewrite golden files and fuzz seeds from the capture corpus")

// goldenRecords is how many records of each capture the golden file keeps: enough to
// pin down every template and sample type, without copying whole captures.
const goldenRecords = 10

// TestGolden decodes every capture and compares the records (the first
// goldenRecords) and the per-exporter accounting with testdata/golden. It covers what
// the tshark oracle cannot: sampling rates from options data, Has bits, accounting.
func TestGolden(t *testing.T) {
	t.Run("shared", func(t *testing.T) { goldenCorpus(t, capturesDir(t)) })
	t.Run("softflowd", func(t *testing.T) { goldenCorpus(t, filepath.Join("..", "testdata", "ingest", "softflowd")) })
}

func goldenCorpus(t *testing.T, dir string) {
	rows, err := readIndex(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, row := range rows {
		name := strings.TrimSuffix(row.file, ".pcap")
		t.Run(name, func(t *testing.T) {
			got := goldenText(t, filepath.Join(dir, "files", row.file))
			path := filepath.Join("testdata", "golden", name+".golden")
			if *update {
				if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if !bytes.Equal(got, want) {
				gl, wl := strings.Split(string(got), "\n"), strings.Split(string(want), "\n")
				for i := 0; i < max(len(gl), len(wl)); i++ {
					var g, w string
					if i < len(gl) {
						g = gl[i]
					}
					if i < len(wl) {
						w = wl[i]
					}
					if g != w {
						t.Fatalf("%s differs at line %d:\n got %s\nwant %s\n(run with -update if the change is intended)", path, i+1, g, w)
					}
				}
			}
		})
	}
}

func goldenText(t *testing.T, path string) []byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	d := NewDecoder(DecoderConfig{})
	var out bytes.Buffer
	var recs []flow.Record
	total := 0
	err = ReadCapture(f, func(ts int64, src netip.Addr, payload []byte) error {
		recs, _ = d.Decode(src, ts, payload, recs[:0])
		for i := range recs {
			if total < goldenRecords {
				out.Write(recs[i].AppendJSON(nil))
				out.WriteByte('\n')
			}
			total++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	d.Flush()
	fmt.Fprintf(&out, "# %d records\n", total)
	for _, s := range d.Exporters() {
		fmt.Fprintf(&out, "# exporter %v: datagrams=%d records=%d options=%d templates=%d changes=%d lost_flows=%d lost_datagrams=%d restarts=%d reordered=%d sampling=%d/%s",
			s.Exporter, s.Datagrams, s.Records, s.OptionsRecords, s.Templates, s.TemplateChanges,
			s.LostFlows, s.LostDatagrams, s.Restarts, s.Reordered, s.SamplingRate, s.SamplingSource)
		if s.SFlowAgent.IsValid() {
			fmt.Fprintf(&out, " agent=%v", s.SFlowAgent)
		}
		out.WriteString(sortedCounts(" drop:", s.Drops))
		out.WriteString(sortedCounts(" quirk:", s.Quirks))
		out.WriteByte('\n')
		for _, c := range s.Interfaces {
			fmt.Fprintf(&out, "#   if %d: speed=%d in_octets=%d out_octets=%d in_ucast=%d out_ucast=%d status=%d\n",
				c.Index, c.Speed, c.InOctets, c.OutOctets, c.InUcastPkts, c.OutUcastPkts, c.Status)
		}
	}
	return out.Bytes()
}

func sortedCounts(prefix string, m map[string]uint64) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b strings.Builder
	for _, k := range keys {
		b.WriteString(prefix + k + "=" + strconv.FormatUint(m[k], 10))
	}
	return b.String()
}

// fuzzFamily tells which fuzz target a datagram seeds.
func fuzzFamily(p []byte) string {
	if len(p) < 4 {
		return ""
	}
	switch be.Uint16(p) {
	case 1, 5, 7, 8:
		return "FuzzDecodeNetFlowV5"
	case 9:
		return "FuzzDecodeV9"
	case 10:
		return "FuzzDecodeIPFIX"
	case 0:
		return "FuzzDecodeSFlow"
	}
	return ""
}

// TestFuzzSeeds writes (with -update) the fuzz seed corpus: per capture and decoder
// family, the capture's datagrams in the framing the fuzz targets read (2-byte length,
// then the datagram), so that templates and the data that needs them stay together.
func TestFuzzSeeds(t *testing.T) {
	if !*update {
		for _, name := range []string{"FuzzDecodeNetFlowV5", "FuzzDecodeV9", "FuzzDecodeIPFIX", "FuzzDecodeSFlow"} {
			if m, _ := filepath.Glob(filepath.Join("testdata", "fuzz", name, "*")); len(m) == 0 {
				t.Errorf("no seed corpus for %s (run with -update)", name)
			}
		}
		return
	}
	for _, dir := range []string{capturesDir(t), filepath.Join("..", "testdata", "ingest", "softflowd")} {
		writeSeeds(t, dir)
	}
}

func writeSeeds(t *testing.T, dir string) {
	rows, err := readIndex(dir)
	if err != nil {
		t.Fatal(err)
	}
	const maxSeed = 4 << 10
	for _, row := range rows {
		f, err := os.Open(filepath.Join(dir, "files", row.file))
		if err != nil {
			t.Fatal(err)
		}
		seeds := map[string][]byte{}
		err = ReadCapture(f, func(ts int64, src netip.Addr, payload []byte) error {
			fam := fuzzFamily(payload)
			if fam == "" || len(seeds[fam])+2+len(payload) > maxSeed {
				return nil
			}
			seeds[fam] = append(append(seeds[fam], u16(len(payload))...), payload...)
			return nil
		})
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		for fam, b := range seeds {
			writeSeed(t, fam, strings.TrimSuffix(row.file, ".pcap"), b)
		}
	}
}

func writeSeed(t *testing.T, target, name string, b []byte) {
	t.Helper()
	path := filepath.Join("testdata", "fuzz", target, name)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	content := "go test fuzz v1\n[]byte(" + strconv.Quote(string(b)) + ")\n"
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}
