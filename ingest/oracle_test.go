package ingest

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The oracle is tshark's -T json output, whose objects repeat keys (see the captures
// README, pitfall 1): json.Unmarshal into a map would keep only the last of them and
// lose records. jobj keeps every key, in order.

type kv struct {
	Key string
	Val any // string, jobj, []any, nil, bool or json.Number
}

type jobj []kv

// get returns the first value under key.
func (o jobj) get(key string) (any, bool) {
	for _, e := range o {
		if e.Key == key {
			return e.Val, true
		}
	}
	return nil, false
}

func (o jobj) str(key string) (string, bool) {
	v, ok := o.get(key)
	if !ok {
		return "", false
	}
	s, ok := v.(string)
	return s, ok
}

func (o jobj) obj(key string) jobj {
	v, _ := o.get(key)
	j, _ := v.(jobj)
	return j
}

// find returns the first value under key anywhere below o, depth first.
func (o jobj) find(key string) (string, bool) {
	for _, e := range o {
		if e.Key == key {
			if s, ok := e.Val.(string); ok {
				return s, true
			}
		}
		if sub, ok := e.Val.(jobj); ok {
			if s, ok := sub.find(key); ok {
				return s, true
			}
		}
	}
	return "", false
}

func readJSONValue(dec *json.Decoder) (any, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	switch t := tok.(type) {
	case json.Delim:
		switch t {
		case '{':
			var o jobj
			for dec.More() {
				kt, err := dec.Token()
				if err != nil {
					return nil, err
				}
				k, ok := kt.(string)
				if !ok {
					return nil, fmt.Errorf("object key %v", kt)
				}
				v, err := readJSONValue(dec)
				if err != nil {
					return nil, err
				}
				o = append(o, kv{k, v})
			}
			if _, err := dec.Token(); err != nil { // '}'
				return nil, err
			}
			return o, nil
		case '[':
			var a []any
			for dec.More() {
				v, err := readJSONValue(dec)
				if err != nil {
					return nil, err
				}
				a = append(a, v)
			}
			if _, err := dec.Token(); err != nil { // ']'
				return nil, err
			}
			return a, nil
		}
		return nil, fmt.Errorf("unexpected %v", t)
	default:
		return tok, nil
	}
}

// oracleFrame is one frame of the oracle: its protocol layers.
type oracleFrame struct {
	udp   bool
	cflow jobj
	sflow jobj
}

func readOracle(path string) ([]oracleFrame, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	dec := json.NewDecoder(bufio.NewReader(f))
	dec.UseNumber()
	v, err := readJSONValue(dec)
	if err != nil && err != io.EOF {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	arr, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("%s: not a JSON array", path)
	}
	frames := make([]oracleFrame, 0, len(arr))
	for _, e := range arr {
		o, _ := e.(jobj)
		layers := o.obj("_source").obj("layers")
		var fr oracleFrame
		for _, l := range layers {
			switch l.Key {
			case "udp":
				fr.udp = true
			case "cflow":
				if fr.cflow == nil {
					fr.cflow, _ = l.Val.(jobj)
				}
			case "sflow":
				if fr.sflow == nil {
					fr.sflow, _ = l.Val.(jobj)
				}
			}
		}
		frames = append(frames, fr)
	}
	return frames, nil
}

// indexRow is one line of the captures' INDEX.tsv.
type indexRow struct {
	file, format     string
	datagrams, flows int
	notes            string
}

func readIndex(dir string) ([]indexRow, error) {
	b, err := os.ReadFile(filepath.Join(dir, "INDEX.tsv"))
	if err != nil {
		return nil, err
	}
	var rows []indexRow
	for i, line := range strings.Split(strings.TrimRight(string(b), "\n"), "\n") {
		if i == 0 {
			continue
		}
		c := strings.Split(line, "\t")
		if len(c) < 11 {
			return nil, fmt.Errorf("INDEX.tsv line %d: %d columns", i+1, len(c))
		}
		dg, _ := strconv.Atoi(c[6])
		fl, _ := strconv.Atoi(c[7])
		rows = append(rows, indexRow{file: c[0], format: c[1], datagrams: dg, flows: fl, notes: c[10]})
	}
	return rows, nil
}

// capturesDir returns the shared capture corpus, or skips the test when it is absent.
func capturesDir(t testing.TB) string {
	t.Helper()
	dir := filepath.Join("..", "..", "shared", "captures")
	if _, err := os.Stat(filepath.Join(dir, "INDEX.tsv")); err != nil {
		t.Skipf("capture corpus not found at %s", dir)
	}
	return dir
}

// parseUint reads tshark's decimal or 0x-hex numbers.
func parseUint(s string) (uint64, bool) {
	v, err := strconv.ParseUint(s, 0, 64)
	return v, err == nil
}

// parseSeconds reads tshark's relative times ("3224.364000000") as nanoseconds.
func parseSeconds(s string) (int64, bool) {
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	sec, frac, _ := strings.Cut(s, ".")
	si, err := strconv.ParseInt(sec, 10, 64)
	if err != nil {
		return 0, false
	}
	frac = (frac + "000000000")[:9]
	fi, err := strconv.ParseInt(frac, 10, 64)
	if err != nil {
		return 0, false
	}
	v := si*1e9 + fi
	if neg {
		v = -v
	}
	return v, true
}

// parseAbsTime reads tshark's absolute times ("Feb 12, 2016 10:53:49.123000000 UTC").
func parseAbsTime(s string) (int64, bool) {
	s = strings.Join(strings.Fields(s), " ")
	tm, err := time.Parse("Jan 2, 2006 15:04:05.999999999 MST", s)
	if err != nil {
		return 0, false
	}
	return tm.UnixNano(), true
}
