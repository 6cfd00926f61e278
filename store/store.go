// Package store keeps flowhound's durable state (baselines, anomalies, the alert outbox, templates, time series) in an embedded badger database, in namespaces.
package store

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/dgraph-io/badger/v4"
)

// Format is the marker this build writes into a new store and requires in an existing one.
// A different major part means the layout of some namespace changed incompatibly.
const Format = "flowhound-store/1"

// metaKey holds Format. Namespaced keys start with the namespace name, which may not be
// empty, so a key starting with 0 can never collide with them.
var metaKey = []byte("\x00format")

// ErrNotFound is returned by Get for a missing key.
var ErrNotFound = errors.New("store: key not found")

// Options size the badger database.
type Options struct {
	// MemTableSize, NumMemtables, BlockCacheSize, IndexCacheSize, ValueLogFileSize,
	// NumCompactors, NumLevelZeroTables, NumLevelZeroTablesStall and BaseTableSize are
	// badger's options of the same names.
	MemTableSize            int64
	NumMemtables            int
	BlockCacheSize          int64
	IndexCacheSize          int64
	ValueLogFileSize        int64
	NumCompactors           int
	NumLevelZeroTables      int
	NumLevelZeroTablesStall int
	BaseTableSize           int64
	// SyncWrites fsyncs every commit. Off by default: badger's write-ahead log is a shared
	// memory map, so a commit that returned survives kill -9 of the process (measured: no
	// acknowledged write lost in repeated SIGKILL runs); it only guards against power loss
	// or a kernel crash, at about 2.2 times the write cost.
	SyncWrites bool
	// ReadOnly opens the database without writing to it (for inspection tools).
	ReadOnly bool
	// Logger gets badger's warnings and errors; nil means slog.Default().
	Logger *slog.Logger
}

// DefaultOptions are sized for an embedded store: 8 MiB memtables, small caches, 64 MiB value
// log files. Against badger's defaults they cut peak RSS from about 890 to 600 MB on a
// million-key write and an empty store's heap from 86 to 12 MiB, for a third less write
// throughput, which flowhound's snapshot-sized writes do not need.
func DefaultOptions() Options {
	return Options{
		MemTableSize:            8 << 20,
		NumMemtables:            2,
		BlockCacheSize:          8 << 20,
		IndexCacheSize:          4 << 20,
		ValueLogFileSize:        64 << 20,
		NumCompactors:           2,
		NumLevelZeroTables:      2,
		NumLevelZeroTablesStall: 4,
		BaseTableSize:           2 << 20,
	}
}

// Store is an open database. It is safe for concurrent use.
type Store struct {
	db  *badger.DB
	dir string
}

// Open opens the store in dir, creating it if dir does not exist or is empty. A directory
// that holds something else, a badger database of another program, or a store of an
// incompatible format is refused with an error that says so: it is never reset.
func Open(dir string, opts Options) (*Store, error) {
	fresh, err := checkDir(dir, opts.ReadOnly)
	if err != nil {
		return nil, err
	}
	bo := badger.DefaultOptions(dir).
		WithMemTableSize(opts.MemTableSize).
		WithNumMemtables(opts.NumMemtables).
		WithBlockCacheSize(opts.BlockCacheSize).
		WithIndexCacheSize(opts.IndexCacheSize).
		WithValueLogFileSize(opts.ValueLogFileSize).
		WithNumCompactors(opts.NumCompactors).
		WithNumLevelZeroTables(opts.NumLevelZeroTables).
		WithNumLevelZeroTablesStall(opts.NumLevelZeroTablesStall).
		WithBaseTableSize(opts.BaseTableSize).
		WithSyncWrites(opts.SyncWrites).
		WithReadOnly(opts.ReadOnly).
		WithMetricsEnabled(false).
		WithDetectConflicts(false).
		WithLogger(badgerLogger{logger(opts.Logger)})
	db, err := badger.Open(bo)
	if err != nil {
		return nil, fmt.Errorf("store %s: cannot open the badger database: %w", dir, err)
	}
	s := &Store{db: db, dir: dir}
	if err := s.checkFormat(fresh); err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

// checkDir tells whether dir is to be a new store, and refuses directories that hold
// something other than a badger database.
func checkDir(dir string, readOnly bool) (fresh bool, err error) {
	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		if readOnly {
			return false, fmt.Errorf("store %s: does not exist", dir)
		}
		if err := os.MkdirAll(dir, 0o750); err != nil {
			return false, fmt.Errorf("store %s: %w", dir, err)
		}
		return true, nil
	case err != nil:
		return false, fmt.Errorf("store %s: %w", dir, err)
	case !fi.IsDir():
		return false, fmt.Errorf("store %s: not a directory", dir)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return false, fmt.Errorf("store %s: unreadable: %w", dir, err)
	}
	if len(entries) == 0 {
		return true, nil
	}
	if _, err := os.Stat(filepath.Join(dir, "MANIFEST")); err != nil {
		names := make([]string, 0, 3)
		for _, e := range entries[:min(3, len(entries))] {
			names = append(names, e.Name())
		}
		return false, fmt.Errorf("store %s: not a flowhound store: the directory holds other files (%s) and no badger MANIFEST; point the store at an empty or new directory", dir, strings.Join(names, ", "))
	}
	return false, nil
}

func (s *Store) checkFormat(fresh bool) error {
	var got []byte
	err := s.db.View(func(txn *badger.Txn) error {
		it, err := txn.Get(metaKey)
		if err != nil {
			return err
		}
		got, err = it.ValueCopy(nil)
		return err
	})
	switch {
	case err == nil && string(got) == Format:
		return nil
	case err == nil && strings.HasPrefix(string(got), "flowhound-store/"):
		return fmt.Errorf("store %s: written in format %q, this build reads %q", s.dir, got, Format)
	case err == nil:
		return fmt.Errorf("store %s: not a flowhound store (format marker %q)", s.dir, got)
	case !errors.Is(err, badger.ErrKeyNotFound):
		return fmt.Errorf("store %s: reading the format marker: %w", s.dir, err)
	}
	empty := true
	if !fresh {
		err := s.db.View(func(txn *badger.Txn) error {
			it := txn.NewIterator(badger.IteratorOptions{})
			defer it.Close()
			it.Rewind()
			empty = !it.Valid()
			return nil
		})
		if err != nil {
			return fmt.Errorf("store %s: %w", s.dir, err)
		}
	}
	if !empty {
		return fmt.Errorf("store %s: a badger database without flowhound's format marker (another program's data?)", s.dir)
	}
	if s.db.Opts().ReadOnly {
		return fmt.Errorf("store %s: empty", s.dir)
	}
	return s.db.Update(func(txn *badger.Txn) error { return txn.Set(metaKey, []byte(Format)) })
}

// Close flushes and closes the database.
func (s *Store) Close() error { return s.db.Close() }

// Dir returns the directory of the store.
func (s *Store) Dir() string { return s.dir }

// nsKey builds namespace + 0x00 + key. Namespaces are short names chosen in code.
func nsKey(ns string, key []byte) []byte {
	if ns == "" || strings.IndexByte(ns, 0) >= 0 {
		panic("store: invalid namespace " + fmt.Sprintf("%q", ns))
	}
	b := make([]byte, 0, len(ns)+1+len(key))
	b = append(b, ns...)
	b = append(b, 0)
	return append(b, key...)
}

// Put sets key in namespace ns.
func (s *Store) Put(ns string, key, val []byte) error {
	return s.db.Update(func(txn *badger.Txn) error { return txn.Set(nsKey(ns, key), val) })
}

// Get returns a copy of the value of key in ns, or ErrNotFound.
func (s *Store) Get(ns string, key []byte) ([]byte, error) {
	var v []byte
	err := s.db.View(func(txn *badger.Txn) error {
		it, err := txn.Get(nsKey(ns, key))
		if err != nil {
			return err
		}
		v, err = it.ValueCopy(nil)
		return err
	})
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil, ErrNotFound
	}
	return v, err
}

// Delete removes key from ns; a missing key is not an error.
func (s *Store) Delete(ns string, key []byte) error {
	return s.db.Update(func(txn *badger.Txn) error { return txn.Delete(nsKey(ns, key)) })
}

// Scan calls fn for every key of ns that starts with prefix, in key order, with the key
// (namespace removed) and value. Both are only valid during the call; fn's error stops
// the scan and is returned.
func (s *Store) Scan(ns string, prefix []byte, fn func(key, val []byte) error) error {
	p := nsKey(ns, prefix)
	skip := len(ns) + 1
	return s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: true, PrefetchSize: 64, Prefix: p})
		defer it.Close()
		for it.Seek(p); it.ValidForPrefix(p); it.Next() {
			item := it.Item()
			err := item.Value(func(v []byte) error { return fn(item.Key()[skip:], v) })
			if err != nil {
				return err
			}
		}
		return nil
	})
}

// DeleteNamespace removes every key of ns.
func (s *Store) DeleteNamespace(ns string) error {
	return s.db.DropPrefix(nsKey(ns, nil))
}

// Batch collects writes that are committed together by Flush, split into as many
// transactions as badger needs. Writes are not visible before Flush. A Batch is not safe
// for concurrent use, and keys and values passed to it must not change until Flush.
type Batch struct {
	wb *badger.WriteBatch
}

// NewBatch starts a batch.
func (s *Store) NewBatch() *Batch { return &Batch{wb: s.db.NewWriteBatch()} }

// Put adds a write of key in ns.
func (b *Batch) Put(ns string, key, val []byte) error { return b.wb.Set(nsKey(ns, key), val) }

// Delete adds a deletion of key in ns.
func (b *Batch) Delete(ns string, key []byte) error { return b.wb.Delete(nsKey(ns, key)) }

// Flush commits the batch and waits for it.
func (b *Batch) Flush() error { return b.wb.Flush() }

// Cancel discards a batch that will not be flushed.
func (b *Batch) Cancel() { b.wb.Cancel() }

// GC reclaims space in the value log; call it now and then (badger's values above 1 MiB
// live there, so flowhound's own small values rarely need it). It returns nil when there
// was nothing to reclaim.
func (s *Store) GC() error {
	for {
		err := s.db.RunValueLogGC(0.5)
		if errors.Is(err, badger.ErrNoRewrite) || errors.Is(err, badger.ErrRejected) {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// Baselines namespace.
const nsBaseline = "baseline"

// SaveBaselines writes a baseline snapshot: each key with its value, or deleted where the
// value is nil. It implements baseline.Persister.
func (s *Store) SaveBaselines(keys, values [][]byte) error {
	b := s.NewBatch()
	for i, k := range keys {
		var err error
		if values[i] == nil {
			err = b.Delete(nsBaseline, k)
		} else {
			err = b.Put(nsBaseline, k, values[i])
		}
		if err != nil {
			b.Cancel()
			return fmt.Errorf("store: saving baselines: %w", err)
		}
	}
	if err := b.Flush(); err != nil {
		return fmt.Errorf("store: saving baselines: %w", err)
	}
	return nil
}

// LoadBaselines calls fn for every stored baseline record. It implements
// baseline.Persister.
func (s *Store) LoadBaselines(fn func(key, value []byte) error) error {
	return s.Scan(nsBaseline, nil, fn)
}

type badgerLogger struct{ l *slog.Logger }

func logger(l *slog.Logger) *slog.Logger {
	if l == nil {
		return slog.Default()
	}
	return l
}

func (b badgerLogger) Errorf(f string, a ...any)   { b.l.Error(trim(f, a), "component", "badger") }
func (b badgerLogger) Warningf(f string, a ...any) { b.l.Warn(trim(f, a), "component", "badger") }
func (b badgerLogger) Infof(string, ...any)        {}
func (b badgerLogger) Debugf(string, ...any)       {}

func trim(f string, a []any) string {
	return string(bytes.TrimSpace([]byte(fmt.Sprintf(f, a...))))
}
