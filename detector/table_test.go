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
			want := map[resource]bool{}
			keys := make([]resource, tc.keys)
			for i := range keys {
				a := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
				keys[i] = newResource(resHost, a, 0, 0)
				if tc.name == "every kind" {
					// A few resources of each kind share an address.
					keys[i] = newResource(uint8(i%5), a.Prev().Next(), uint32(i%7), uint8(i%3))
				}
			}
			// Each key's state carries a mark of the key, which must move with it.
			mark := func(k resource) uint16 { return uint16(k.lo ^ k.lo>>16 ^ k.meta) }
			for step := 0; step < 20*tc.keys; step++ {
				k := keys[rng.IntN(len(keys))]
				if want[k] && rng.IntN(2) == 0 {
					tab.remove(&k)
					delete(want, k)
					continue
				}
				if rng.IntN(50) == 0 {
					tab.reserve(rng.IntN(300))
				}
				st := tab.state(tab.get(&k, tab.hash(&k)))
				if want[k] && st.rules[0] != mark(k) {
					t.Fatalf("step %d: %v lost its state", step, k)
				}
				st.n, st.rules[0] = 1, mark(k) // an in-use state, as the detector leaves it
				want[k] = true
			}
			if tab.used != len(want) {
				t.Errorf("table holds %d, want %d", tab.used, len(want))
			}
			for _, k := range keys {
				got := tab.find(&k, tab.hash(&k))
				if want[k] != (got >= 0) || got >= 0 && tab.state(got).rules[0] != mark(k) {
					t.Errorf("%v: find = %d, present %v", k, got, want[k])
				}
			}
		})
	}
}

// TestResStateLine keeps a resource's slot, key and windows, one cache line: slots are
// read once per flow and host, and a slot across two lines is two misses.
func TestResStateLine(t *testing.T) {
	if size := unsafe.Sizeof(resSlot{}); size != 64 {
		t.Errorf("resSlot is %d bytes, want 64", size)
	}
}
