package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// decodeRow is one decoder benchmark: medians over -count runs.
type decodeRow struct {
	Name        string  `json:"name"`
	Runs        int     `json:"runs"`
	NsPerOp     float64 `json:"ns_per_op"`
	NsPerRecord float64 `json:"ns_per_record"`
	BytesPerOp  float64 `json:"bytes_per_op"`
	AllocsPerOp float64 `json:"allocs_per_op"`
}

var benchLine = regexp.MustCompile(`^(Benchmark\S+?)(?:-\d+)?\s+\d+\s+([\d.]+) ns/op\s+([\d.]+) ns/record\s+([\d.]+) B/op\s+([\d.]+) allocs/op`)

// decode runs the decoder comparison (decode_test.go in o.benchDir) in this run, on this
// machine: flowhound's decoders against goflow2's on the same datagrams.
func decode(ctx context.Context, o *options, log io.Writer, res *results) error {
	if o.benchDir == "" {
		return fmt.Errorf("no -bench-dir")
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "test", "-run", "TestDecodersAgree", "-bench", "Decode", "-benchmem",
		"-count", "3", "-benchtime", "0.5s", ".")
	cmd.Dir = o.benchDir
	out, err := cmd.CombinedOutput()
	os.WriteFile(filepath.Join(o.out, "decode.txt"), out, 0o644)
	log.Write(out)
	if err != nil {
		return fmt.Errorf("go test: %v", err)
	}
	runs := map[string][][4]float64{}
	var order []string
	for _, line := range strings.Split(string(out), "\n") {
		m := benchLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		var v [4]float64
		for i := range v {
			v[i], _ = strconv.ParseFloat(m[i+2], 64)
		}
		if _, ok := runs[m[1]]; !ok {
			order = append(order, m[1])
		}
		runs[m[1]] = append(runs[m[1]], v)
	}
	for _, name := range order {
		col := func(i int) float64 {
			var xs []float64
			for _, v := range runs[name] {
				xs = append(xs, v[i])
			}
			return median(xs)
		}
		res.Decode = append(res.Decode, decodeRow{Name: name, Runs: len(runs[name]),
			NsPerOp: col(0), NsPerRecord: col(1), BytesPerOp: col(2), AllocsPerOp: col(3)})
	}
	if len(res.Decode) == 0 {
		return fmt.Errorf("no benchmark lines in the output")
	}
	return nil
}
