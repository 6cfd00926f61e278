package baseline

import (
	"encoding/binary"
	"fmt"
	"math"
	"time"
)

// Snapshot records. Keys start with a type byte; values with recVersion, so that a store
// written by an incompatible build is refused instead of misread.
//
//	'M'                    meta: clock and tick
//	'F' key                a profile's accumulators and levels (changes every slot)
//	'P' key page           32 cells of a profile (changes when a cell visit ends)
//	'C' block              up to 64 hosts/ports by index (a record per key would cost a
//	                       million store writes when a million hosts are active)
const recVersion = 1

const (
	recMeta    = 'M'
	recProfile = 'F'
	recPage    = 'P'
	recCompact = 'C'
)

type snapWriter struct {
	arena []byte
	offs  []int // start of key i, start of value i; a value of length -1 is a deletion
}

func (w *snapWriter) key(parts ...[]byte) {
	w.offs = append(w.offs, len(w.arena))
	for _, p := range parts {
		w.arena = append(w.arena, p...)
	}
}

func (w *snapWriter) startValue() {
	w.offs = append(w.offs, len(w.arena))
	w.arena = append(w.arena, recVersion)
}

func (w *snapWriter) deletion() { w.offs = append(w.offs, -1) }

func (w *snapWriter) build() (keys, vals [][]byte) {
	n := len(w.offs) / 2
	keys, vals = make([][]byte, n), make([][]byte, n)
	next := func(i int) int {
		for j := i + 1; j < len(w.offs); j++ {
			if w.offs[j] >= 0 {
				return w.offs[j]
			}
		}
		return len(w.arena)
	}
	for i := range n {
		ks := w.offs[2*i]
		keys[i] = w.arena[ks:next(2*i):next(2*i)]
		if vs := w.offs[2*i+1]; vs >= 0 {
			vals[i] = w.arena[vs:next(2*i+1):next(2*i+1)]
		}
	}
	return keys, vals
}

func appendF32(b []byte, v ...float32) []byte {
	for _, x := range v {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(x))
	}
	return b
}

// Snapshot writes what changed since the last snapshot. After a failed write the next one
// rewrites everything.
func (b *Baselines) Snapshot() error {
	if b.deps.Store == nil {
		return nil
	}
	b.snapMu.Lock()
	defer b.snapMu.Unlock()
	start := time.Now()
	b.mu.Lock()
	keys, vals, size := b.collect()
	b.mu.Unlock()
	if err := b.deps.Store.SaveBaselines(keys, vals); err != nil {
		b.mu.Lock()
		b.forceAll = true
		b.mu.Unlock()
		b.m.snapshotErrors.Inc()
		return fmt.Errorf("baseline snapshot: %w", err)
	}
	b.m.snapshots.Inc()
	b.m.snapshotRecords.Add(len(keys))
	b.m.snapshotBytes.Add(size)
	b.m.snapshotSeconds.UpdateDuration(start)
	return nil
}

func (b *Baselines) collect() (keys, vals [][]byte, size int) {
	all := b.forceAll
	b.forceAll = false
	var w snapWriter
	var kb []byte
	// Deletions go first: a profile evicted and created again since the last snapshot
	// is then written after its old records are gone.
	for _, k := range b.deleted {
		kb = k.appendBinary(kb[:0])
		w.key([]byte{recProfile}, kb)
		w.deletion()
		for p := range nPages {
			w.key([]byte{recPage}, kb, []byte{byte(p)})
			w.deletion()
		}
	}
	b.deleted = b.deleted[:0]
	for i, f := range b.full.st {
		if f == nil {
			continue
		}
		kb = b.full.keys[i].appendBinary(kb[:0])
		if f.hot || all {
			w.key([]byte{recProfile}, kb)
			w.startValue()
			w.arena = f.appendHot(w.arena)
			f.hot = false
		}
		dirty := f.dirty
		if all {
			dirty = 1<<nPages - 1
		}
		for p := range nPages {
			if dirty&(1<<p) != 0 {
				w.key([]byte{recPage}, kb, []byte{byte(p)})
				w.startValue()
				w.arena = f.appendPage(w.arena, p)
			}
		}
		f.dirty = 0
	}
	nBlocks := (len(b.hosts.keys) + blockKeys - 1) / blockKeys
	for blk := range nBlocks {
		if !all && (blk/64 >= len(b.dirtyBlocks) || b.dirtyBlocks[blk/64]&(1<<(blk%64)) == 0) {
			continue
		}
		w.key([]byte{recCompact}, binary.BigEndian.AppendUint32(nil, uint32(blk)))
		start := len(w.arena)
		w.startValue()
		n := 0
		for i := blk * blockKeys; i < min((blk+1)*blockKeys, len(b.hosts.keys)); i++ {
			k := b.hosts.keys[i]
			if k.Kind == 0 {
				continue
			}
			st := &b.hosts.st[i]
			w.arena = append(w.arena, byte(i-blk*blockKeys))
			w.arena = k.appendBinary(w.arena)
			w.arena = appendF32(w.arena, st.level[0], st.level[1], st.level[2], st.dev[0], st.dev[1], st.dev[2])
			w.arena = binary.LittleEndian.AppendUint32(w.arena, st.tick)
			w.arena = binary.LittleEndian.AppendUint32(w.arena, st.n)
			n++
		}
		if n == 0 {
			w.arena = w.arena[:start]
			w.offs = w.offs[:len(w.offs)-1]
			w.deletion()
		}
	}
	clear(b.dirtyBlocks)
	w.key([]byte{recMeta})
	w.startValue()
	w.arena = binary.LittleEndian.AppendUint64(w.arena, uint64(b.slotNs))
	w.arena = binary.LittleEndian.AppendUint64(w.arena, uint64(b.learned))
	w.arena = binary.LittleEndian.AppendUint64(w.arena, uint64(b.cur))
	w.arena = binary.LittleEndian.AppendUint64(w.arena, uint64(b.now))
	w.arena = binary.LittleEndian.AppendUint32(w.arena, b.tick)
	w.arena = binary.LittleEndian.AppendUint32(w.arena, b.lastSwp)
	keys, vals = w.build()
	return keys, vals, len(w.arena)
}

func (f *fullState) appendHot(b []byte) []byte {
	for i := range f.acc {
		a := &f.acc[i]
		b = binary.LittleEndian.AppendUint16(b, uint16(a.cell))
		b = binary.LittleEndian.AppendUint16(b, uint16(a.aux))
		b = binary.LittleEndian.AppendUint16(b, a.n)
		b = appendF32(b, a.sum[:]...)
		b = appendF32(b, a.abs[:]...)
	}
	b = appendF32(b, f.dayAvg[:]...)
	b = appendF32(b, f.corr[:]...)
	b = appendF32(b, f.level[:]...)
	b = appendF32(b, f.spread[:]...)
	ok := byte(0)
	if f.dayOK {
		ok = 1
	}
	b = append(b, ok)
	b = binary.LittleEndian.AppendUint32(b, f.n)
	return binary.LittleEndian.AppendUint32(b, f.active)
}

type reader struct {
	b   []byte
	err error
}

func (r *reader) take(n int) []byte {
	if r.err != nil || len(r.b) < n {
		if r.err == nil {
			r.err = errShort
		}
		return make([]byte, n)
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}
func (r *reader) u16() uint16 { return binary.LittleEndian.Uint16(r.take(2)) }
func (r *reader) u32() uint32 { return binary.LittleEndian.Uint32(r.take(4)) }
func (r *reader) u64() uint64 { return binary.LittleEndian.Uint64(r.take(8)) }
func (r *reader) f32s(v []float32) {
	for i := range v {
		v[i] = math.Float32frombits(r.u32())
	}
}

func (f *fullState) readHot(r *reader) {
	for i := range f.acc {
		a := &f.acc[i]
		a.cell = int16(r.u16())
		a.aux = int16(r.u16())
		a.n = r.u16()
		r.f32s(a.sum[:])
		r.f32s(a.abs[:])
		limit := sets[i].n
		if i == accDay {
			limit = sets[setDoy].n
		}
		if a.cell < -1 || int(a.cell) >= limit || a.aux < 0 || int(a.aux) >= sets[setDom].n {
			r.err = fmt.Errorf("accumulator %d: cell %d/%d out of range", i, a.cell, a.aux)
		}
	}
	r.f32s(f.dayAvg[:])
	r.f32s(f.corr[:])
	r.f32s(f.level[:])
	r.f32s(f.spread[:])
	f.dayOK = r.take(1)[0] == 1
	f.n = r.u32()
	f.active = r.u32()
}

func (f *fullState) appendPage(b []byte, p int) []byte {
	for i := p * pageCells; i < min((p+1)*pageCells, nCells); i++ {
		c := &f.cells[i]
		for m := range 3 {
			b = binary.LittleEndian.AppendUint16(b, uint16(c.mean[m]))
		}
		b = append(b, c.dev[0], c.dev[1], c.dev[2], c.w)
	}
	return b
}

func (f *fullState) readPage(r *reader, p int) {
	for i := p * pageCells; i < min((p+1)*pageCells, nCells); i++ {
		c := &f.cells[i]
		for m := range 3 {
			c.mean[m] = int16(r.u16())
		}
		d := r.take(4)
		c.dev = [3]uint8{d[0], d[1], d[2]}
		c.w = d[3]
	}
}

// restore loads the snapshot. Any record it cannot read is an error: silently starting
// from nothing would throw weeks of learning away unnoticed.
func (b *Baselines) restore() error {
	var meta bool
	err := b.deps.Store.LoadBaselines(func(k, v []byte) error {
		if len(k) == 0 || len(v) == 0 {
			return fmt.Errorf("empty record %q", k)
		}
		if v[0] != recVersion {
			return fmt.Errorf("record %q has format version %d; this build reads %d", k, v[0], recVersion)
		}
		r := &reader{b: v[1:]}
		switch k[0] {
		case recMeta:
			slot := int64(r.u64())
			b.learned, b.cur, b.now = int64(r.u64()), int64(r.u64()), int64(r.u64())
			b.tick, b.lastSwp = r.u32(), r.u32()
			if slot != b.slotNs && r.err == nil {
				b.log.Warn("baseline slot length changed since the snapshot; learned rates are kept", "was", time.Duration(slot), "now", b.cfg.Slot)
			}
			meta = true
		case recProfile, recPage:
			key, rest, err := readKey(k[1:])
			if err != nil {
				return fmt.Errorf("record %q: %w", k, err)
			}
			f := b.restoreFull(key)
			if k[0] == recProfile {
				if len(rest) != 0 {
					return fmt.Errorf("record %q: trailing key bytes", k)
				}
				if f != nil {
					f.readHot(r)
				}
			} else {
				if len(rest) != 1 || int(rest[0]) >= nPages {
					return fmt.Errorf("record %q: bad page", k)
				}
				if f != nil {
					f.readPage(r, int(rest[0]))
				}
			}
		case recCompact:
			if len(k) != 5 {
				return fmt.Errorf("record %q: bad block key", k)
			}
			b.restoreBlock(int(binary.BigEndian.Uint32(k[1:])), r)
		default:
			return fmt.Errorf("unknown record type %q", k[0])
		}
		if r.err == nil && len(r.b) != 0 {
			r.err = fmt.Errorf("%d trailing bytes", len(r.b))
		}
		if r.err != nil {
			return fmt.Errorf("record %q: %w", k, r.err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	t := &b.hosts
	t.free = t.free[:0]
	for i := len(t.keys) - 1; i >= 0; i-- {
		if t.keys[i].Kind == 0 {
			t.free = append(t.free, int32(i))
		}
	}
	b.m.hosts.Store(int64(t.live))
	b.m.profiles.Store(int64(b.full.live))
	clear(b.dirtyBlocks)
	for _, f := range b.full.st {
		if f != nil {
			f.hot, f.dirty = false, 0
		}
	}
	if meta {
		b.sum.since = b.now
	}
	return nil
}

func (b *Baselines) restoreFull(k Key) *fullState {
	t := &b.full
	h := t.ix.hash(k)
	idx := t.ix.find(t.keys, k, h)
	if idx < 0 {
		if idx = b.newFull(k, h, false); idx < 0 {
			return nil // max_profiles was lowered
		}
	}
	return t.st[idx]
}

func (b *Baselines) restoreBlock(blk int, r *reader) {
	t := &b.hosts
	for len(r.b) > 0 && r.err == nil {
		pos := int(r.take(1)[0])
		k, rest, err := readKey(r.b)
		if err != nil {
			r.err = err
			return
		}
		r.b = rest
		var st compactState
		r.f32s(st.level[:])
		r.f32s(st.dev[:])
		st.tick, st.n = r.u32(), r.u32()
		if r.err != nil || pos >= blockKeys {
			if r.err == nil {
				r.err = fmt.Errorf("bad position %d", pos)
			}
			return
		}
		idx := blk*blockKeys + pos
		ix := t.index(k)
		h := ix.hash(k)
		if t.live >= b.cfg.MaxHosts || ix.find(t.keys, k, h) >= 0 {
			continue
		}
		for len(t.keys) <= idx {
			t.keys = append(t.keys, Key{})
			t.st = append(t.st, compactState{})
			t.ring = append(t.ring, make([]counters, b.ring)...)
		}
		if t.keys[idx].Kind != 0 {
			continue
		}
		t.keys[idx], t.st[idx] = k, st
		ix.insert(t.keys, h, int32(idx))
		if p := b.denseSlot(k, true); p != nil {
			*p = int32(idx)
		}
		t.live++
	}
}
