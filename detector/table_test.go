package detector

import (
	"math/rand/v2"
	"net/netip"
	"testing"
	"unsafe"
)

// TestResTable checks the open-addressed table against a Go map through random adds and
// removes (each remove shifts its probe run back), across growth.
func TestResTable(t *testing.T) {
	for _, tc := range []struct {
		name string
		keys int
		seed uint64
	}{
		{"few keys", 50, 1},
		{"growth", 5000, 2},
		{"every kind", 3000, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(tc.seed, 9))
			tab := newResTable()
			want := map[resource]int{}
			keys := make([]resource, tc.keys)
			for i := range keys {
				a := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
				keys[i] = newResource(resHost, a, 0, 0)
				if tc.name == "every kind" {
					// A few resources of each kind share an address.
					keys[i] = newResource(uint8(i%5), a.Prev().Next(), uint32(i%7), uint8(i%3))
				}
			}
			for step := 0; step < 20*tc.keys; step++ {
				k := keys[rng.IntN(len(keys))]
				if _, ok := want[k]; ok && rng.IntN(2) == 0 {
					tab.remove(&k)
					delete(want, k)
					continue
				}
				i := tab.get(&k, tab.hash(&k))
				tab.state(i).n = 1 // an in-use state, as the detector leaves it
				if j, ok := want[k]; ok && j != i {
					t.Fatalf("step %d: %v moved from state %d to %d", step, k, j, i)
				}
				want[k] = i
			}
			if tab.used != len(want) {
				t.Errorf("table holds %d, want %d", tab.used, len(want))
			}
			for _, k := range keys {
				got := tab.find(&k, tab.hash(&k))
				if j, ok := want[k]; ok != (got >= 0) || ok && got != j {
					t.Errorf("%v: find = %d, want %d (present %v)", k, got, j, ok)
				}
			}
		})
	}
}

// TestResStateLine keeps a resource's state one cache line: the table's states are read
// once per flow and host, and a state across two lines is two misses.
func TestResStateLine(t *testing.T) {
	if size := unsafe.Sizeof(resState{}); size != 64 {
		t.Errorf("resState is %d bytes, want 64", size)
	}
}
