package gen

// gflow is one simulated flow as a router's flow cache sees it: packets spread evenly
// from start to end, of which the first done have been exported (NetFlow) or offered to
// the sampler (sFlow). It holds no pointers, so a cache of millions costs the garbage
// collector nothing.
type gflow struct {
	start, end   int64 // first and last packet, Unix ns (whole milliseconds)
	seg          int64 // start of the part not yet exported
	bytes        uint64
	pkts, done   uint32
	src, dst     uint32
	sport, dport uint16
	inIf, outIf  uint8
	exp          uint8
	proto, flags uint8
	tos          uint8
	phase        uint8 // schedule phase the flow started in
	attack       bool
}

// cum returns how many of the flow's packets have passed by time t.
func (f *gflow) cum(t int64) uint32 {
	if t < f.start {
		return 0
	}
	if t >= f.end || f.pkts <= 1 {
		return f.pkts
	}
	return 1 + uint32((t-f.start)*int64(f.pkts-1)/(f.end-f.start))
}

// pktTime returns when packet i passed, in whole milliseconds as exporters report it.
func (f *gflow) pktTime(i uint32) int64 {
	if f.pkts <= 1 || i == 0 {
		return f.start
	}
	d := int64(i) * (f.end - f.start) / int64(f.pkts-1)
	return f.start + d/1e6*1e6
}

// cumBytes returns the bytes of the first i packets.
func (f *gflow) cumBytes(i uint32) uint64 {
	if i >= f.pkts {
		return f.bytes
	}
	return f.bytes * uint64(i) / uint64(f.pkts)
}

// wheel is the flow cache's timer: a ring of slots, one per tick, each holding the flows
// whose next export (or, for sFlow, sampling) event falls in that tick. Every event is
// at most one active timeout ahead, so the ring only needs that many slots. Slots are
// lists of fixed-size chunks from a shared free list: with plain slices every slot
// would keep the capacity of its busiest moment, and at a million flows per second the
// ring would hold many times the flows that are actually cached.
type wheel struct {
	slots  []slot
	free   []*chunk
	origin int64 // time of tick 0
	tick   int64
	cur    int64 // tick being processed
	n      int   // flows held
}

const chunkLen = 512

type chunk [chunkLen]gflow

type slot struct {
	chunks []*chunk
	last   int // flows in the last chunk
}

func newWheel(origin, tick int64, horizon int64) *wheel {
	return &wheel{slots: make([]slot, horizon/tick+3), origin: origin, tick: tick}
}

// add files f under the tick that contains t; events already due go to the current tick.
func (w *wheel) add(t int64, f *gflow) {
	k := max((t-w.origin)/w.tick, w.cur)
	if k-w.cur >= int64(len(w.slots)) {
		k = w.cur + int64(len(w.slots)) - 1
	}
	s := &w.slots[k%int64(len(w.slots))]
	if len(s.chunks) == 0 || s.last == chunkLen {
		var c *chunk
		if n := len(w.free); n > 0 {
			c, w.free = w.free[n-1], w.free[:n-1]
		} else {
			c = new(chunk)
		}
		s.chunks = append(s.chunks, c)
		s.last = 0
	}
	s.chunks[len(s.chunks)-1][s.last] = *f
	s.last++
	w.n++
}

// drain calls fn for every flow of slot k, including flows that fn adds to the same
// slot, then empties the slot.
func (w *wheel) drain(k int64, fn func(f *gflow)) {
	s := &w.slots[k%int64(len(w.slots))]
	for ci := 0; ci < len(s.chunks); ci++ {
		c := s.chunks[ci]
		for j := 0; ; j++ {
			if ci == len(s.chunks)-1 && j >= s.last || j >= chunkLen {
				break
			}
			w.n--
			fn(&c[j]) // in place: a flow fn re-adds is copied to its new slot

		}
	}
	w.free = append(w.free, s.chunks...)
	clear(s.chunks)
	s.chunks = s.chunks[:0]
	s.last = 0
}
