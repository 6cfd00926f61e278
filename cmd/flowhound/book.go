package main

import (
	"sort"
	"sync"
	"time"

	"github.com/flowhound/flowhound/detector"
)

// anomalyBook keeps the latest state of every anomaly the detector reported, for the API.
// It holds the newest maxBook in memory; serve also writes each one to the store, which
// answers for older ones.
type anomalyBook struct {
	mu    sync.RWMutex
	byID  map[string]detector.Anomaly
	order []string // ids in the order first seen
	max   int
}

const maxBook = 10000

func newAnomalyBook() *anomalyBook {
	return &anomalyBook{byID: map[string]detector.Anomaly{}, max: maxBook}
}

func (b *anomalyBook) put(a detector.Anomaly) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.byID[a.ID]; !ok {
		b.order = append(b.order, a.ID)
		if len(b.order) > b.max {
			delete(b.byID, b.order[0])
			b.order = b.order[1:]
		}
	}
	b.byID[a.ID] = a
}

// List implements api.Anomalies.
func (b *anomalyBook) List(status string, since time.Time) ([]detector.Anomaly, error) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	var out []detector.Anomaly
	for i := len(b.order) - 1; i >= 0; i-- {
		a := b.byID[b.order[i]]
		if (status == "" || a.Status == status) && !a.Start.Before(since) {
			out = append(out, a)
		}
	}
	return out, nil
}

// Get implements api.Anomalies.
func (b *anomalyBook) Get(id string) (detector.Anomaly, bool, error) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	a, ok := b.byID[id]
	return a, ok, nil
}

func sortByStart(as []detector.Anomaly) {
	sort.SliceStable(as, func(i, j int) bool { return as[i].Start.Before(as[j].Start) })
}
