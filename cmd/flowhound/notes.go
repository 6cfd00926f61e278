package main

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"sync"
	"time"

	"github.com/flowhound/flowhound/api"
	"github.com/flowhound/flowhound/detector"
	"github.com/flowhound/flowhound/store"
)

// notebook keeps operators' acknowledgements, comments and suppressions, in the store when
// there is one. Notes live apart from the anomaly records, which the detector rewrites.
type notebook struct {
	mu    sync.Mutex
	st    *store.Store
	notes map[string]api.AnomalyNotes
	sups  map[string]api.Suppression
}

const (
	nsNotes        = "notes"
	nsSuppressions = "suppression"
)

func newNotebook(st *store.Store) (*notebook, error) {
	n := &notebook{st: st, notes: map[string]api.AnomalyNotes{}, sups: map[string]api.Suppression{}}
	if st == nil {
		return n, nil
	}
	err := st.Scan(nsNotes, nil, func(k, v []byte) error {
		var x api.AnomalyNotes
		if err := json.Unmarshal(v, &x); err != nil {
			return err
		}
		n.notes[string(k)] = x
		return nil
	})
	if err != nil {
		return nil, err
	}
	err = st.Scan(nsSuppressions, nil, func(k, v []byte) error {
		var x api.Suppression
		if err := json.Unmarshal(v, &x); err != nil {
			return err
		}
		n.sups[string(k)] = x
		return nil
	})
	return n, err
}

func (n *notebook) save(ns, key string, v any) error {
	if n.st == nil {
		return nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return n.st.Put(ns, []byte(key), b)
}

// Get implements api.Notes.
func (n *notebook) Get(id string) (api.AnomalyNotes, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.notes[id], nil
}

// Ack implements api.Notes.
func (n *notebook) Ack(id, by, note string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	x := n.notes[id]
	x.Ack = &api.Note{By: by, At: time.Now().UTC(), Text: note}
	n.notes[id] = x
	return n.save(nsNotes, id, x)
}

// Comment implements api.Notes.
func (n *notebook) Comment(id, by, text string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	x := n.notes[id]
	if len(x.Comments) >= 1000 {
		return errors.New("this anomaly has 1000 comments already")
	}
	x.Comments = append(x.Comments, api.Note{By: by, At: time.Now().UTC(), Text: text})
	n.notes[id] = x
	return n.save(nsNotes, id, x)
}

// List implements api.Suppressions; expired ones are dropped on the way.
func (n *notebook) List() ([]api.Suppression, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.expire(time.Now())
	out := make([]api.Suppression, 0, len(n.sups))
	for _, s := range n.sups {
		out = append(out, s)
	}
	return out, nil
}

// Add implements api.Suppressions.
func (n *notebook) Add(s api.Suppression) (api.Suppression, error) {
	var b [8]byte
	rand.Read(b[:])
	s.ID = hex.EncodeToString(b[:])
	n.mu.Lock()
	defer n.mu.Unlock()
	if len(n.sups) >= 10000 {
		return s, errors.New("too many suppressions")
	}
	n.sups[s.ID] = s
	return s, n.save(nsSuppressions, s.ID, s)
}

// Delete implements api.Suppressions.
func (n *notebook) Delete(id string) (bool, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if _, ok := n.sups[id]; !ok {
		return false, nil
	}
	delete(n.sups, id)
	if n.st != nil {
		return true, n.st.Delete(nsSuppressions, []byte(id))
	}
	return true, nil
}

func (n *notebook) expire(now time.Time) {
	for id, s := range n.sups {
		if now.After(s.Until) {
			delete(n.sups, id)
			if n.st != nil {
				n.st.Delete(nsSuppressions, []byte(id))
			}
		}
	}
}

// suppressed returns the id of a live suppression that matches the anomaly, or "".
func (n *notebook) suppressed(a *detector.Anomaly, now time.Time) string {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, s := range n.sups {
		if now.Before(s.Until) && (s.Rule == "" || s.Rule == a.Rule) && (s.Resource == "" || s.Resource == a.Resource.Key) {
			return s.ID
		}
	}
	return ""
}
