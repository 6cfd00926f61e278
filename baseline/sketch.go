package baseline

import "sort"

// summary is a weighted space-saving sketch (Metwally et al.) of the keys beyond the
// bounds, weighted by bytes. It is written here rather than taken from a library because it
// must not allocate per flow, must key on Key without hashing it to bytes, and must let
// the heaviest entries be promoted into the tracked tiers; the algorithm is a heap and
// about a hundred lines.
//
// Its guarantee: any key that carried more than total/capacity bytes since the last reset
// is present, and an entry's count overestimates its bytes by at most its err.
type summary struct {
	ix    keyIndex
	keys  []Key
	bytes []float64
	pkts  []float64
	flows []float64
	err   []float64
	heap  []int32 // entry ids, min-heap on bytes
	pos   []int32 // entry id -> heap position
	max   int
	since int64 // ns of the last reset
}

func newSummary(capacity int, seed uint64) summary {
	return summary{
		ix:    newKeyIndex(capacity, seed),
		keys:  make([]Key, 0, capacity),
		bytes: make([]float64, 0, capacity),
		pkts:  make([]float64, 0, capacity),
		flows: make([]float64, 0, capacity),
		err:   make([]float64, 0, capacity),
		heap:  make([]int32, 0, capacity),
		pos:   make([]int32, 0, capacity),
		max:   capacity,
	}
}

func (s *summary) add(k Key, bytes, pkts, flows float64) {
	h := s.ix.hash(k)
	id := s.ix.find(s.keys, k, h)
	switch {
	case id >= 0:
		s.bytes[id] += bytes
		s.pkts[id] += pkts
		s.flows[id] += flows
	case len(s.keys) < s.max:
		id = int32(len(s.keys))
		s.keys = append(s.keys, k)
		s.bytes = append(s.bytes, bytes)
		s.pkts = append(s.pkts, pkts)
		s.flows = append(s.flows, flows)
		s.err = append(s.err, 0)
		s.pos = append(s.pos, int32(len(s.heap)))
		s.heap = append(s.heap, id)
		s.ix.insert(s.keys, h, id)
		s.up(len(s.heap) - 1)
		return
	default:
		// Replace the lightest entry; the newcomer inherits its count as possible error.
		id = s.heap[0]
		s.ix.remove(s.keys, s.keys[id], s.ix.hash(s.keys[id]))
		s.keys[id] = k
		s.err[id] = s.bytes[id]
		s.bytes[id] += bytes
		s.pkts[id], s.flows[id] = pkts, flows
		s.ix.insert(s.keys, h, id)
	}
	s.down(int(s.pos[id]))
}

func (s *summary) less(i, j int) bool { return s.bytes[s.heap[i]] < s.bytes[s.heap[j]] }

func (s *summary) swap(i, j int) {
	s.heap[i], s.heap[j] = s.heap[j], s.heap[i]
	s.pos[s.heap[i]] = int32(i)
	s.pos[s.heap[j]] = int32(j)
}

func (s *summary) up(i int) {
	for i > 0 {
		p := (i - 1) / 2
		if !s.less(i, p) {
			return
		}
		s.swap(i, p)
		i = p
	}
}

func (s *summary) down(i int) {
	n := len(s.heap)
	for {
		l := 2*i + 1
		if l >= n {
			return
		}
		c := l
		if r := l + 1; r < n && s.less(r, l) {
			c = r
		}
		if !s.less(c, i) {
			return
		}
		s.swap(i, c)
		i = c
	}
}

// summaryEntry is one heavy hitter.
type summaryEntry struct {
	key               Key
	bytes, pkts, flow float64
	err               float64
}

// top returns the entries, heaviest first.
func (s *summary) top(limit int) []summaryEntry {
	out := make([]summaryEntry, len(s.keys))
	for i := range s.keys {
		out[i] = summaryEntry{s.keys[i], s.bytes[i], s.pkts[i], s.flows[i], s.err[i]}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].bytes > out[j].bytes })
	if limit >= 0 && len(out) > limit {
		out = out[:limit]
	}
	return out
}

func (s *summary) reset(now int64) {
	clear(s.ix.slots)
	s.ix.n = 0
	s.keys, s.bytes, s.pkts, s.flows, s.err = s.keys[:0], s.bytes[:0], s.pkts[:0], s.flows[:0], s.err[:0]
	s.heap, s.pos = s.heap[:0], s.pos[:0]
	s.since = now
}
