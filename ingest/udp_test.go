package ingest

import (
	"bytes"
	"net/netip"
	"strings"
	"testing"
)

// TestStatsBounded: datagrams from ever new (spoofed) sources do not grow the metric
// series without bound; past the limit they share the "other" series.
func TestStatsBounded(t *testing.T) {
	s := NewStats()
	defer s.Close()
	for i := 0; i < maxExporterSeries+500; i++ {
		s.datagram(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), 1, nil)
	}
	if n := len(s.exporters); n != maxExporterSeries+1 {
		t.Errorf("%d exporters tracked, want %d plus other", n, maxExporterSeries)
	}
	var b bytes.Buffer
	s.set.WritePrometheus(&b)
	if !strings.Contains(b.String(), `flowhound_datagrams_received_total{exporter="other"} 500`) {
		t.Errorf("no other series with the 500 datagrams past the limit")
	}
}
