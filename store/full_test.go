package store

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// TestFullDisk fills the store's filesystem (a small tmpfs): writes fail with an error
// that says so instead of the SIGBUS badger's memory-mapped log takes on a full disk,
// reads go on, and writes work again once there is room.
func TestFullDisk(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a small tmpfs (CI runs the tests as root)")
	}
	fs := filepath.Join(t.TempDir(), "fs")
	if err := os.Mkdir(fs, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", fs, "tmpfs", 0, fmt.Sprintf("size=%d", DefaultMinFree+16<<20)); err != nil {
		t.Skipf("cannot mount a tmpfs here: %v", err)
	}
	defer syscall.Unmount(fs, syscall.MNT_DETACH)
	s, err := Open(filepath.Join(fs, "data"), DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Put("anomaly", []byte("before"), []byte("x")); err != nil {
		t.Fatal(err)
	}
	filler := filepath.Join(fs, "filler")
	f, err := os.Create(filler)
	if err != nil {
		t.Fatal(err)
	}
	for chunk := make([]byte, 1<<20); err == nil; {
		_, err = f.Write(chunk)
	}
	f.Close()
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("filling the disk: %v", err)
	}
	val := make([]byte, 4096)
	writes := []struct {
		name string
		do   func() error
	}{
		{"put", func() error { return s.Put("anomaly", []byte("full"), val) }},
		{"delete", func() error { return s.Delete("anomaly", []byte("before")) }},
		{"batch", func() error {
			b := s.NewBatch()
			for i := range 2000 {
				if err := b.Put("baseline", fmt.Appendf(nil, "%d", i), val); err != nil {
					b.Cancel()
					return err
				}
			}
			return b.Flush()
		}},
	}
	for _, w := range writes {
		for range 3000 { // enough to cross many pages of the memtable's log
			err := w.do()
			if !errors.Is(err, ErrWrite) || !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("%s on a full disk: %v, want ErrWrite and ENOSPC", w.name, err)
			}
			if w.name == "batch" {
				break
			}
		}
	}
	if !s.Failing() {
		t.Error("Failing() is false on a full disk")
	}
	if v, err := s.Get("anomaly", []byte("before")); err != nil || string(v) != "x" {
		t.Errorf("reading on a full disk: %q, %v", v, err)
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	for _, w := range writes {
		if err := w.do(); err != nil {
			t.Errorf("%s with room again: %v", w.name, err)
		}
	}
	if s.Failing() {
		t.Error("Failing() is still true with room again")
	}
	if _, err := s.Get("anomaly", []byte("full")); err != nil {
		t.Errorf("the write made with room again: %v", err)
	}
}
