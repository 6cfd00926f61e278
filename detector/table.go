package detector

import "math/rand/v2"

// resTable maps resources to their windows. It exists instead of a Go map so that the
// per-flow path can split a lookup into steps that touch memory one after the other for a
// whole chunk of flows (slot, then state, then window): with a million hosts each step is
// a cache miss, and misses issued together overlap where a map lookup would wait for each.
//
// Slots are open-addressed with linear probing and backward-shift deletion (no
// tombstones), 32 bytes each, at most 3/4 full. The hash is seeded per table: resources
// are addresses the network sends, and spoofed ones must not be able to aim at one probe
// run.
type resTable struct {
	slots  []resSlot
	mask   uint64
	used   int
	seed   uint64
	states []resState // by resSlot.state-1
	free   []uint32   // unused states
}

type resSlot struct {
	key   resource
	state uint32 // index+1 into states; 0 is an empty slot
	_     uint32
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
func (t *resTable) touch(h uint64) uint32 { return t.slots[h&t.mask].state }

// find returns the state index of r, or -1.
func (t *resTable) find(r *resource, h uint64) int {
	for i := h & t.mask; ; i = (i + 1) & t.mask {
		s := &t.slots[i]
		if s.state == 0 {
			return -1
		}
		if s.key.eq(r) {
			return int(s.state - 1)
		}
	}
}

// get returns the state index of r, adding an empty state if r is new.
func (t *resTable) get(r *resource, h uint64) int {
	if i := t.find(r, h); i >= 0 {
		return i
	}
	if (t.used+1)*4 > len(t.slots)*3 {
		t.resize(len(t.slots) * 2)
	}
	var idx uint32
	if n := len(t.free); n > 0 {
		idx = t.free[n-1]
		t.free = t.free[:n-1]
	} else {
		t.states = append(t.states, resState{})
		idx = uint32(len(t.states) - 1)
	}
	t.place(r, h, idx+1)
	t.used++
	return int(idx)
}

func (t *resTable) place(r *resource, h uint64, state uint32) {
	i := h & t.mask
	for t.slots[i].state != 0 {
		i = (i + 1) & t.mask
	}
	t.slots[i] = resSlot{key: *r, state: state}
}

func (t *resTable) resize(n int) {
	old := t.slots
	t.slots = make([]resSlot, n)
	t.mask = uint64(n - 1)
	for i := range old {
		if old[i].state != 0 {
			t.place(&old[i].key, t.hash(&old[i].key), old[i].state)
		}
	}
}

// remove forgets r and its (empty) state.
func (t *resTable) remove(r *resource) {
	h := t.hash(r)
	i := h & t.mask
	for {
		s := &t.slots[i]
		if s.state == 0 {
			return
		}
		if s.key.eq(r) {
			break
		}
		i = (i + 1) & t.mask
	}
	idx := t.slots[i].state - 1
	t.states[idx] = resState{}
	t.free = append(t.free, idx)
	t.used--
	// Backward shift: pull later entries of the probe run into the hole when their home
	// slot is at or before it, so that lookups never need tombstones.
	for {
		t.slots[i] = resSlot{}
		j := i
		for {
			j = (j + 1) & t.mask
			if t.slots[j].state == 0 {
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

// state returns the windows of the state at index i.
func (t *resTable) state(i int) *resState { return &t.states[i] }
