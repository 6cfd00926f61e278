package store

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dgraph-io/badger/v4"
)

func openT(t *testing.T, dir string) *Store {
	t.Helper()
	s, err := Open(dir, DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestNamespacesAndBatch(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data") // does not exist yet
	s := openT(t, dir)
	defer s.Close()

	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(s.Put("anomaly", []byte("a1"), []byte("one")))
	must(s.Put("anomaly", []byte("a2"), []byte("two")))
	must(s.Put("anomalyx", []byte("a3"), []byte("other namespace")))
	must(s.Put("outbox", []byte("a1"), []byte("queued")))

	if v, err := s.Get("anomaly", []byte("a1")); err != nil || string(v) != "one" {
		t.Fatalf("Get = %q, %v", v, err)
	}
	if _, err := s.Get("anomaly", []byte("nope")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get missing: %v", err)
	}
	var seen []string
	must(s.Scan("anomaly", nil, func(k, v []byte) error {
		seen = append(seen, string(k)+"="+string(v))
		return nil
	}))
	if strings.Join(seen, ",") != "a1=one,a2=two" {
		t.Fatalf("Scan(anomaly) = %v", seen)
	}
	stop := errors.New("stop")
	if err := s.Scan("anomaly", []byte("a"), func(k, v []byte) error { return stop }); err != stop {
		t.Fatalf("Scan did not return fn's error: %v", err)
	}

	b := s.NewBatch()
	for i := range 1000 {
		must(b.Put("ts", fmt.Appendf(nil, "k%04d", i), []byte("v")))
	}
	must(b.Delete("anomaly", []byte("a1")))
	must(b.Flush())
	n := 0
	must(s.Scan("ts", []byte("k09"), func(k, v []byte) error { n++; return nil }))
	if n != 100 {
		t.Fatalf("prefix scan found %d keys, want 100", n)
	}
	if _, err := s.Get("anomaly", []byte("a1")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("batch delete: %v", err)
	}
	must(s.Delete("anomaly", []byte("a2")))
	must(s.DeleteNamespace("ts"))
	if v, err := s.Get("anomalyx", []byte("a3")); err != nil || string(v) != "other namespace" {
		t.Fatalf("neighbouring namespace: %q, %v", v, err)
	}
	must(s.GC())
	must(s.Close())

	s = openT(t, dir)
	defer s.Close()
	if v, err := s.Get("outbox", []byte("a1")); err != nil || string(v) != "queued" {
		t.Fatalf("after reopen: %q, %v", v, err)
	}
}

func TestOpenRefuses(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T, dir string)
		want  string
	}{
		{"other files", func(t *testing.T, dir string) {
			os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("hello"), 0o600)
		}, "not a flowhound store: the directory holds other files (notes.txt)"},
		{"a file", func(t *testing.T, dir string) {
			os.Remove(dir)
			os.WriteFile(dir, []byte("x"), 0o600)
		}, "not a directory"},
		{"foreign badger", func(t *testing.T, dir string) {
			db, err := badger.Open(badger.DefaultOptions(dir).WithLogger(nil))
			if err != nil {
				t.Fatal(err)
			}
			db.Update(func(txn *badger.Txn) error { return txn.Set([]byte("user:1"), []byte("x")) })
			db.Close()
		}, "without flowhound's format marker"},
		{"newer format", func(t *testing.T, dir string) {
			s := openT(t, dir)
			s.db.Update(func(txn *badger.Txn) error { return txn.Set(metaKey, []byte("flowhound-store/2")) })
			s.Close()
		}, `written in format "flowhound-store/2"`},
		{"corrupt manifest", func(t *testing.T, dir string) {
			s := openT(t, dir)
			s.Close()
			os.WriteFile(filepath.Join(dir, "MANIFEST"), []byte("garbage garbage garbage"), 0o600)
		}, "cannot open the badger database"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			tc.setup(t, dir)
			s, err := Open(dir, DefaultOptions())
			if err == nil {
				s.Close()
				t.Fatal("Open succeeded")
			}
			if !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), dir) {
				t.Fatalf("Open: %v\nwant the directory and %q", err, tc.want)
			}
		})
	}
}

func TestOpenTwiceIsAClearError(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir)
	defer s.Close()
	_, err := Open(dir, DefaultOptions())
	if err == nil || !strings.Contains(err.Error(), "cannot open") {
		t.Fatalf("second Open: %v", err)
	}
}
