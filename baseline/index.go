package baseline

import (
	"math/bits"
	"unsafe"
)

// keyIndex maps keys to dense indices with open addressing and linear probing. It is used
// instead of a Go map because its memory is fixed by its capacity (a slot is 8 bytes, the
// key itself lives once in the caller's dense slice) and deletions never make it grow, so a
// bounded table stays bounded under churn.
type keyIndex struct {
	slots []uint64 // low 32 bits: index+1 (0 = empty); high 32 bits: low 32 bits of the hash
	mask  uint64
	n     int
	seed  uint64
}

func newKeyIndex(capacity int, seed uint64) keyIndex {
	size := 16
	for size*7 < capacity*10 {
		size *= 2
	}
	return keyIndex{slots: make([]uint64, size), mask: uint64(size - 1), seed: seed}
}

const (
	mixA = 0xa0761d6478bd642f
	mixB = 0xe7037ed1a0b428db
	mixC = 0x8ebc6af09c88c6e3
)

func mum(a, b uint64) uint64 {
	hi, lo := bits.Mul64(a, b)
	return hi ^ lo
}

// hash mixes the four words of k. Key has no padding, so its 32 bytes are all defined;
// the address's zone handle is a pointer that is stable for the life of the process, which
// is as long as an index lives. The seed is random per process so that addresses chosen by
// an attacker cannot be lined up on one probe chain.
func (ix *keyIndex) hash(k Key) uint64 {
	w := (*[4]uint64)(unsafe.Pointer(&k))
	return mum(w[0]^ix.seed, w[1]^mixA) ^ mum(w[2]^mixB, w[3]^ix.seed)
}

// Key must stay four words without padding for hash.
var _ [32 - unsafe.Sizeof(Key{})]struct{}
var _ [unsafe.Sizeof(Key{}) - 32]struct{}

// find returns the index stored for k, or -1.
func (ix *keyIndex) find(keys []Key, k Key, h uint64) int32 {
	tag := h & 0xffffffff
	for i := h & ix.mask; ; i = (i + 1) & ix.mask {
		s := ix.slots[i]
		if s == 0 {
			return -1
		}
		if s>>32 == tag {
			idx := int32(s&0xffffffff) - 1
			if keys[idx] == k {
				return idx
			}
		}
	}
}

// insert adds idx for a key with hash h that is not yet present. keys must already hold the
// key at idx, because growing rehashes from it.
func (ix *keyIndex) insert(keys []Key, h uint64, idx int32) {
	if (ix.n+1)*10 > len(ix.slots)*7 {
		ix.grow(keys)
	}
	ix.place(h, idx)
	ix.n++
}

func (ix *keyIndex) place(h uint64, idx int32) {
	i := h & ix.mask
	for ix.slots[i] != 0 {
		i = (i + 1) & ix.mask
	}
	ix.slots[i] = (h&0xffffffff)<<32 | uint64(idx+1)
}

func (ix *keyIndex) grow(keys []Key) {
	old := ix.slots
	ix.slots = make([]uint64, 2*len(old))
	ix.mask = uint64(len(ix.slots) - 1)
	for _, s := range old {
		if s != 0 {
			idx := int32(s&0xffffffff) - 1
			ix.place(ix.hash(keys[idx]), idx)
		}
	}
}

// remove deletes k and shifts the rest of its probe chain back, so that no tombstones
// accumulate.
func (ix *keyIndex) remove(keys []Key, k Key, h uint64) {
	tag := h & 0xffffffff
	i := h & ix.mask
	for {
		s := ix.slots[i]
		if s == 0 {
			return
		}
		if s>>32 == tag && keys[int32(s&0xffffffff)-1] == k {
			break
		}
		i = (i + 1) & ix.mask
	}
	ix.n--
	for {
		ix.slots[i] = 0
		j := i
		for {
			j = (j + 1) & ix.mask
			s := ix.slots[j]
			if s == 0 {
				return
			}
			home := (s >> 32) & ix.mask
			// The entry at j may move to i only if its home is not in (i, j] cyclically.
			if (j > i && (home <= i || home > j)) || (j < i && home <= i && home > j) {
				ix.slots[i] = s
				i = j
				break
			}
		}
	}
}
