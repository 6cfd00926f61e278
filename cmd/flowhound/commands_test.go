package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/flowhound/flowhound/flow"
)

// TestCommands runs the small commands as a user would and checks what they print.
func TestCommands(t *testing.T) {
	dir := t.TempDir()
	slammer := filepath.Join(dir, "slammer.pcap")
	var out, errb bytes.Buffer
	if err := run(context.Background(), []string{"gen", "-pcap", slammer, "-scenario", "slammer", "-duration", "12s",
		"-seed", "2", "-start", "2026-01-01T00:00:00Z", "-format", "v9", "-q"}, &out, &errb); err != nil {
		t.Fatalf("gen: %v\n%s", err, errb.String())
	}
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("- name: bad\n  threshold: pps > 1\n  match: proto == 17 & dst_port == 1\n"), 0o644)

	tests := []struct {
		name      string
		args      []string
		wantErr   bool
		stdout    func(t *testing.T, s string)
		stderrHas string
	}{
		{"decode prints one record per line", []string{"decode", slammer}, false, func(t *testing.T, s string) {
			lines := strings.Split(strings.TrimSpace(s), "\n")
			worm := 0
			for _, l := range lines {
				var r flow.Record
				if err := json.Unmarshal([]byte(l), &r); err != nil {
					t.Fatalf("not a flow record: %s", l)
				}
				if r.DstPort == 1434 && r.Bytes == 404*r.Packets {
					worm++
				}
			}
			if len(lines) < 1000 || worm < 500 {
				t.Errorf("%d records, %d of the worm", len(lines), worm)
			}
		}, ""},
		{"rules check passes the default pack", []string{"rules", "check"}, false, func(t *testing.T, s string) {
			if !strings.Contains(s, "ok") {
				t.Errorf("stdout %q", s)
			}
		}, ""},
		{"rules check points at the error", []string{"rules", "check", bad}, true, nil, bad + ":3:"},
		{"rules test shows the worm's flows", []string{"rules", "test", "sql-slammer", slammer}, false, func(t *testing.T, s string) {
			if n := strings.Count(s, `"dst_port":1434`); n < 500 || n != strings.Count(s, "\n") {
				t.Errorf("%d matching lines of %d", n, strings.Count(s, "\n"))
			}
		}, "would fire"},
		{"top lists talkers and protocols", []string{"top", "-n", "3", slammer}, false, func(t *testing.T, s string) {
			for _, want := range []string{"SrcIPaddress", "Protocols", "udp", "Packet sizes"} {
				if !strings.Contains(s, want) {
					t.Errorf("top output lacks %q", want)
				}
			}
		}, ""},
		{"unknown command", []string{"frobnicate"}, true, nil, "usage: flowhound"},
		{"replay of a capture with an ongoing worm", []string{"replay", slammer}, false, func(t *testing.T, s string) {
			if !strings.Contains(s, `"rule":"sql-slammer"`) || !strings.Contains(s, `"status":"ongoing"`) {
				t.Errorf("replay printed %s", s)
			}
		}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			err := run(context.Background(), tt.args, &out, &errb)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err %v, want error %v; stderr %s", err, tt.wantErr, errb.String())
			}
			if tt.stdout != nil {
				tt.stdout(t, out.String())
			}
			if tt.stderrHas != "" && !strings.Contains(errb.String(), tt.stderrHas) && (err == nil || !strings.Contains(err.Error(), tt.stderrHas)) {
				t.Errorf("stderr %q (err %v) lacks %q", errb.String(), err, tt.stderrHas)
			}
		})
	}
}
