package ingest

import (
	"net/netip"
	"os"
	"testing"
)

func TestZZDebug(t *testing.T) {
	fn := os.Getenv("FH_FILE")
	if fn == "" {
		t.Skip()
	}
	f, _ := os.Open(fn)
	defer f.Close()
	d := NewDecoder(DecoderConfig{})
	ReadCapture(f, func(ts int64, src netip.Addr, p []byte) error {
		recs, err := d.Decode(src, ts, p, nil)
		t.Logf("len=%d recs=%d err=%v", len(p), len(recs), err)
		return nil
	})
	for _, s := range d.Exporters() {
		t.Logf("%+v", s)
	}
}
