package detector

import "math/rand/v2"

// resTable maps resources to their windows. It exists instead of a Go map so that the
// per-flow path can split a lookup into steps that touch memory one after the other for a
// whole chunk of flows (slot, then window): with a million hosts each step is a cache
// miss, and misses issued together overlap where a map lookup would wait for each.
//
// Slots are open-addressed with linear probing and backward-shift deletion (no
// tombstones), at most 3/4 full, and hold each resource's state in the same cache line as
// its key: the lookup that finds a resource has its windows too. Slots move when the
// table grows and when a removal shifts a probe run back, so a slot index is good only
// until the next insertion or removal (reserve makes room ahead of a chunk's insertions).
// The hash is seeded per table: resources are addresses the network sends, and spoofed
// ones must not be able to aim at one probe run.
type resTable struct {
	slots []resSlot
	mask  uint64
	used  int
	seed  uint64
}

type resSlot struct {
	key resource
	st  resState
}

func newResTable() resTable {
	t := resTable{seed: rand.Uint64()}
	t.resize(1024)
	return t
}

func (t *resTable) hash(r *resource) uint64 {
	// Two multiplies: the per-flow cost of a lookup matters more here than the strength
	// of the mixing, and the seed still keeps spoofed addresses from aiming at one run.
	x := (r.lo ^ t.seed) * 0x9e3779b97f4a7c15
	x ^= (r.hi + r.meta) * 0xc2b2ae3d27d4eb4f
	return x ^ x>>29
}

// touch reads the slot a hash starts at, so that the lookup after it finds it in cache.
func (t *resTable) touch(h uint64) uint8 { return t.slots[h&t.mask].st.n }

// find returns the slot index of r, or -1.
func (t *resTable) find(r *resource, h uint64) int {
	for i := h & t.mask; ; i = (i + 1) & t.mask {
		s := &t.slots[i]
		if !s.st.used {
			return -1
		}
		if s.key.eq(r) {
			return int(i)
		}
	}
}

// get returns the slot index of r, adding it with an empty state if it is new.
func (t *resTable) get(r *resource, h uint64) int {
	if i := t.find(r, h); i >= 0 {
		return i
	}
	if (t.used+1)*4 > len(t.slots)*3 {
		t.resize(len(t.slots) * 2)
	}
	t.used++
	return t.place(r, h, resState{used: true})
}

// reserve grows the table so that n insertions move no slot.
func (t *resTable) reserve(n int) {
	for (t.used+n)*4 > len(t.slots)*3 {
		t.resize(len(t.slots) * 2)
	}
}

func (t *resTable) place(r *resource, h uint64, st resState) int {
	i := h & t.mask
	for t.slots[i].st.used {
		i = (i + 1) & t.mask
	}
	t.slots[i] = resSlot{key: *r, st: st}
	return int(i)
}

func (t *resTable) resize(n int) {
	old := t.slots
	t.slots = make([]resSlot, n)
	t.mask = uint64(n - 1)
	for i := range old {
		if old[i].st.used {
			t.place(&old[i].key, t.hash(&old[i].key), old[i].st)
		}
	}
}

// remove forgets r and its (empty) state.
func (t *resTable) remove(r *resource) {
	h := t.hash(r)
	i := h & t.mask
	for {
		s := &t.slots[i]
		if !s.st.used {
			return
		}
		if s.key.eq(r) {
			break
		}
		i = (i + 1) & t.mask
	}
	t.used--
	// Backward shift: pull later entries of the probe run into the hole when their home
	// slot is at or before it, so that lookups never need tombstones.
	for {
		t.slots[i] = resSlot{}
		j := i
		for {
			j = (j + 1) & t.mask
			if !t.slots[j].st.used {
				return
			}
			home := t.hash(&t.slots[j].key) & t.mask
			// Move j into i unless its home lies cyclically in (i, j].
			if (j > i && (home <= i || home > j)) || (j < i && home <= i && home > j) {
				t.slots[i] = t.slots[j]
				i = j
				break
			}
		}
	}
}

// state returns the windows of the resource in slot i.
func (t *resTable) state(i int) *resState { return &t.slots[i].st }
