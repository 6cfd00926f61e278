package baseline

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net/netip"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/flowhound/flowhound/flow"
)

// memStore is a Persister in memory that records what each snapshot wrote.
type memStore struct {
	data    map[string][]byte
	lastN   int
	lastLen int
	byType  map[byte]int
	fail    error
}

func newMemStore() *memStore { return &memStore{data: map[string][]byte{}} }

func (m *memStore) SaveBaselines(keys, values [][]byte) error {
	if m.fail != nil {
		return m.fail
	}
	m.lastN, m.lastLen, m.byType = len(keys), 0, map[byte]int{}
	for i, k := range keys {
		m.byType[k[0]]++
		m.lastLen += len(k) + len(values[i])
		if values[i] == nil {
			delete(m.data, string(k))
		} else {
			m.data[string(k)] = bytes.Clone(values[i])
		}
	}
	return nil
}

func (m *memStore) LoadBaselines(fn func(key, value []byte) error) error {
	keys := make([]string, 0, len(m.data))
	for k := range m.data {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if err := fn([]byte(k), m.data[k]); err != nil {
			return err
		}
	}
	return nil
}

// idle advances the clock by n slots without traffic.
func (s *sim) idle(n int) {
	s.now += int64(n) * s.slot
	s.b.Advance(s.now)
}

// hostTraffic sends one slot of traffic to hosts 192.0.2.first .. first+n-1 at rates that
// differ per host, and advances the clock by a slot.
func (s *sim) hostTraffic(first, n int) {
	recs := make([]flow.Record, n)
	for i := range recs {
		recs[i] = flow.Record{
			Received: s.now + s.slot/2, Exporter: exporter, SrcAddr: outside,
			DstAddr: netip.AddrFrom4([4]byte{192, 0, 2, byte(first + i)}),
			Bytes:   uint64(1000 * (first + i + 1)), Packets: uint64(first + i + 1),
			InIf: uint32(1 + (first+i)%4), OutIf: 9, Proto: 6, DstPort: 443, Has: flow.HasInIf | flow.HasOutIf,
		}
	}
	s.b.Update(recs)
	s.now += s.slot
	s.b.Advance(s.now)
}

func TestSnapshotWritesOnlyChanges(t *testing.T) {
	ms := newMemStore()
	cfg := testConfig()
	s := newSim(t, cfg, Deps{Store: ms})
	for range 30 {
		s.hostTraffic(0, 200)
	}
	s.idle(3) // let the open slots close
	if err := s.b.Snapshot(); err != nil {
		t.Fatal(err)
	}
	first := ms.lastLen
	t.Logf("first snapshot: %d records, %d bytes, by type %v", ms.lastN, ms.lastLen, ms.byType)
	if ms.byType[recCompact] != (200+1+blockKeys-1)/blockKeys { // 200 hosts and 1 port key
		t.Errorf("first snapshot wrote %d host blocks", ms.byType[recCompact])
	}

	// Nothing happened: only the meta record.
	if err := s.b.Snapshot(); err != nil {
		t.Fatal(err)
	}
	if ms.lastN != 1 || ms.byType[recMeta] != 1 {
		t.Errorf("idle snapshot wrote %d records %v, want the meta record only", ms.lastN, ms.byType)
	}

	// Traffic for two hosts that share a block: one block, and the profiles that learned.
	for range 6 {
		s.hostTraffic(70, 2)
	}
	s.idle(3)
	if err := s.b.Snapshot(); err != nil {
		t.Fatal(err)
	}
	t.Logf("after 6 slots of 2 hosts: %d records, %d bytes, by type %v", ms.lastN, ms.lastLen, ms.byType)
	if ms.byType[recCompact] != 2 { // the hosts' block and the port key's block
		t.Errorf("wrote %d host blocks, want 2", ms.byType[recCompact])
	}
	// Profiles learn every slot (silence is information too), so each has its record;
	// a page is written only where a cell visit ended (here the 5-minute cell).
	if n := s.b.full.live; ms.byType[recProfile] > n || ms.byType[recPage] > n {
		t.Errorf("%d profile and %d page records for %d profiles", ms.byType[recProfile], ms.byType[recPage], n)
	}
	_ = first
}

func TestRestoreSameTop(t *testing.T) {
	ms := newMemStore()
	s := newSim(t, testConfig(), Deps{Store: ms})
	// Two days with a daily pattern: cells fold, the day accumulator folds.
	for end := s.now + 2*24*int64(time.Hour); s.now < end; {
		s.feed(s.noisy(pattern(s.now)))
		s.hostTraffic(20, 60)
	}
	if err := s.b.Snapshot(); err != nil {
		t.Fatal(err)
	}
	r, err := New(testConfig(), Deps{Store: ms})
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []Kind{KindHost, KindPrefix, KindInterface, KindPort, KindGlobal} {
		want, got := s.b.Top(k, 25), r.Top(k, 25)
		for i := range want {
			want[i].Current = Rates{} // a live rate, not persisted
		}
		for i := range got {
			got[i].Current = Rates{}
		}
		if len(want) == 0 || !reflect.DeepEqual(want, got) {
			t.Errorf("Top(%v) after restore:\n got %+v\nwant %+v", k, got, want)
		}
	}
	for _, k := range []Key{hostKey, PortKey(17, 53, DirIn), ifKey} {
		if p := r.denseSlot(k, false); p == nil || *p < 0 {
			t.Errorf("restored %v is missing from the per-flow shortcuts", k)
		}
	}
	e1, _ := s.b.Expected(custKey, s.now+3*int64(time.Hour))
	e2, _ := r.Expected(custKey, s.now+3*int64(time.Hour))
	if e1 != e2 {
		t.Errorf("Expected after restore %+v, before %+v", e2, e1)
	}
	// The restored baselines go on learning where they left off.
	s.b = r
	s.now += 30 * int64(time.Second)
	for range 100 {
		s.feed(s.noisy(pattern(s.now)))
	}
	if d, _ := r.Detail(custKey); d.LearnedSlots < 2*8640 {
		t.Errorf("learned slots %d after restore", d.LearnedSlots)
	}
}

func TestRestoreRefusesBadRecords(t *testing.T) {
	ms := newMemStore()
	s := newSim(t, testConfig(), Deps{Store: ms})
	for range 20 {
		s.hostTraffic(0, 10)
	}
	if err := s.b.Snapshot(); err != nil {
		t.Fatal(err)
	}
	var profile string
	for k := range ms.data {
		if k[0] == recProfile {
			profile = k
		}
	}
	tests := []struct {
		name   string
		mutate func(m *memStore)
		want   string
	}{
		{"future version", func(m *memStore) { m.data[profile] = append([]byte{9}, m.data[profile][1:]...) }, "format version 9"},
		{"truncated", func(m *memStore) { m.data[profile] = m.data[profile][:10] }, "truncated"},
		{"unknown type", func(m *memStore) { m.data["Zzz"] = []byte{recVersion} }, "unknown record type"},
		{"bad cell", func(m *memStore) {
			v := bytes.Clone(m.data[profile])
			binary.LittleEndian.PutUint16(v[1:], 999)
			m.data[profile] = v
		}, "out of range"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := newMemStore()
			for k, v := range ms.data {
				m.data[k] = bytes.Clone(v)
			}
			tc.mutate(m)
			_, err := New(testConfig(), Deps{Store: m})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New: %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestSnapshotFailureRewritesAll(t *testing.T) {
	ms := newMemStore()
	s := newSim(t, testConfig(), Deps{Store: ms})
	for range 10 {
		s.hostTraffic(0, 10)
	}
	if err := s.b.Snapshot(); err != nil {
		t.Fatal(err)
	}
	ms.fail = errors.New("disk full")
	s.hostTraffic(0, 1)
	if err := s.b.Snapshot(); err == nil {
		t.Fatal("want the store's error")
	}
	ms.fail = nil
	if err := s.b.Snapshot(); err != nil {
		t.Fatal(err)
	}
	if ms.byType[recCompact] == 0 || ms.byType[recPage] == 0 {
		t.Errorf("snapshot after a failure wrote %v, want everything", ms.byType)
	}
}
