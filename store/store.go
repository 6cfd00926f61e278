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
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/VictoriaMetrics/metrics"
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

// ErrWrite wraps every failed write (Put, Delete, Batch, DeleteNamespace). The store has
// already counted and, once per failure episode, logged it, so callers need not log it
// again; errors.Is also finds the cause (syscall.ENOSPC, EROFS, EIO...).
var ErrWrite = errors.New("store: write failed")

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
	// MinFree is the free space, in bytes, below which the store refuses writes on its
	// filesystem. badger writes its write-ahead log and new tables through memory maps of
	// sparse files: on a full disk such a write is a SIGBUS that kills the process, not
	// an error. The reserve also leaves room for the flushes and compactions that badger
	// runs in the background after a write was accepted. 0 disables the check.
	MinFree int64
	// Logger gets badger's warnings and errors and the store's write failures; nil means
	// slog.Default().
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
		MinFree:                 DefaultMinFree,
	}
}

// DefaultMinFree covers what badger may still write after the last accepted write: the
// rest of a memtable's log (8 MiB), two memtables flushed to level 0, and a level 0 to
// level 1 compaction that writes its output before deleting its input, with a margin.
const DefaultMinFree = 64 << 20

// Store is an open database. It is safe for concurrent use.
type Store struct {
	db      *badger.DB
	dir     string
	minFree int64
	log     *slog.Logger
	health  health
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
	s := &Store{db: db, dir: dir, minFree: opts.MinFree, log: logger(opts.Logger)}
	if opts.ReadOnly {
		s.minFree = 0
	}
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
	return s.write("format", len(metaKey)+len(Format), func() error {
		return s.db.Update(func(txn *badger.Txn) error { return txn.Set(metaKey, []byte(Format)) })
	})
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
	k := nsKey(ns, key)
	return s.write(ns, len(k)+len(val), func() error {
		return s.db.Update(func(txn *badger.Txn) error { return txn.Set(k, val) })
	})
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
	k := nsKey(ns, key)
	return s.write(ns, len(k), func() error {
		return s.db.Update(func(txn *badger.Txn) error { return txn.Delete(k) })
	})
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
	return s.write(ns, 0, func() error { return s.db.DropPrefix(nsKey(ns, nil)) })
}

// Batch collects writes that are committed together by Flush, split into as many
// transactions as badger needs. Writes are not visible before Flush. A Batch is not safe
// for concurrent use, and keys and values passed to it must not change until Flush.
type Batch struct {
	s  *Store
	wb *badger.WriteBatch
	op string // the first namespace written, for the error metric
	// unchecked is the size added since the free space was last checked: badger commits
	// a large batch in parts while it is filled, so the check cannot wait for Flush.
	unchecked int
	err       error
}

// NewBatch starts a batch.
func (s *Store) NewBatch() *Batch { return &Batch{s: s, wb: s.db.NewWriteBatch()} }

// batchCheck is how much a batch may grow between free-space checks.
const batchCheck = 1 << 20

func (b *Batch) add(ns string, size int, fn func() error) error {
	if b.err != nil {
		return b.err
	}
	if b.op == "" {
		b.op = ns
	}
	if b.unchecked == 0 || b.unchecked+size >= batchCheck {
		if err := b.s.room(b.unchecked + size); err != nil {
			b.err = b.s.failed(b.op, err)
			return b.err
		}
		b.unchecked = 0
	}
	b.unchecked += size
	if err := fn(); err != nil {
		b.err = b.s.failed(b.op, err)
		return b.err
	}
	return nil
}

// Put adds a write of key in ns.
func (b *Batch) Put(ns string, key, val []byte) error {
	k := nsKey(ns, key)
	return b.add(ns, len(k)+len(val), func() error { return b.wb.Set(k, val) })
}

// Delete adds a deletion of key in ns.
func (b *Batch) Delete(ns string, key []byte) error {
	k := nsKey(ns, key)
	return b.add(ns, len(k), func() error { return b.wb.Delete(k) })
}

// Flush commits the batch and waits for it.
func (b *Batch) Flush() error {
	if b.err != nil {
		b.wb.Cancel()
		return b.err
	}
	if err := b.wb.Flush(); err != nil {
		return b.s.failed(b.op, err)
	}
	if b.op != "" {
		b.s.succeeded()
	}
	return nil
}

// Cancel discards a batch that will not be flushed.
func (b *Batch) Cancel() { b.wb.Cancel() }

// GC reclaims space in the value log; call it now and then (badger's values above 1 MiB
// live there, so flowhound's own small values rarely need it). It returns nil when there
// was nothing to reclaim.
func (s *Store) GC() error {
	if err := s.room(0); err != nil {
		return s.failed("gc", err)
	}
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

// health follows write failures: the first of an episode is logged, the end of it too,
// and every failure is counted.
type health struct {
	failing  atomic.Bool
	mu       sync.Mutex
	since    time.Time
	failures int
}

var (
	storeErrorsMu sync.Mutex
	storeErrors   = map[string]*metrics.Counter{}
	// storeFailing is 1 while the latest write failed. Per process: serve opens one store.
	storeFailing = metrics.NewGauge("flowhound_store_failing", nil)
)

func errorCounter(op string) *metrics.Counter {
	storeErrorsMu.Lock()
	defer storeErrorsMu.Unlock()
	c := storeErrors[op]
	if c == nil {
		c = metrics.GetOrCreateCounter(fmt.Sprintf(`flowhound_store_errors_total{op=%q}`, op))
		storeErrors[op] = c
	}
	return c
}

// NoSpaceError is a write refused because the store's filesystem is below MinFree.
type NoSpaceError struct {
	Dir           string
	Free, MinFree int64
}

func (e *NoSpaceError) Error() string {
	return fmt.Sprintf("%d MiB free on the filesystem of %s, below the %d MiB the store keeps in reserve", e.Free>>20, e.Dir, e.MinFree>>20)
}

// Unwrap makes errors.Is(err, syscall.ENOSPC) hold.
func (e *NoSpaceError) Unwrap() error { return syscall.ENOSPC }

// room refuses a write of size bytes that would leave less than minFree on the
// filesystem. A statfs costs about a microsecond, small beside a badger commit.
func (s *Store) room(size int) error {
	if s.minFree <= 0 {
		return nil
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(s.dir, &st); err != nil {
		return nil // the write itself will say what is wrong
	}
	free := int64(st.Bavail) * int64(st.Bsize)
	if free-int64(size) < s.minFree {
		return &NoSpaceError{Dir: s.dir, Free: free, MinFree: s.minFree}
	}
	return nil
}

// write runs one write of about size bytes in namespace op, unless the filesystem has
// no room for it.
func (s *Store) write(op string, size int, fn func() error) error {
	if err := s.room(size); err != nil {
		return s.failed(op, err)
	}
	if err := fn(); err != nil {
		return s.failed(op, err)
	}
	s.succeeded()
	return nil
}

func (s *Store) failed(op string, err error) error {
	errorCounter(op).Inc()
	h := &s.health
	h.mu.Lock()
	first := h.failures == 0
	if first {
		h.since = time.Now()
	}
	h.failures++
	h.failing.Store(true)
	h.mu.Unlock()
	storeFailing.Set(1)
	if first {
		s.log.Error("store: writes failing; detection, the API and alerts go on from memory, and unsaved anomalies and alerts are written when the store works again (further failures are only counted in flowhound_store_errors_total)",
			"dir", s.dir, "op", op, "err", err)
	}
	return fmt.Errorf("%w: %s: %w", ErrWrite, op, err)
}

func (s *Store) succeeded() {
	h := &s.health
	if !h.failing.Load() {
		return
	}
	h.mu.Lock()
	n, since := h.failures, h.since
	h.failures = 0
	h.failing.Store(false)
	h.mu.Unlock()
	if n == 0 {
		return
	}
	storeFailing.Set(0)
	s.log.Warn("store: writing again", "dir", s.dir, "failed_writes", n, "after", time.Since(since).Round(time.Millisecond))
}

// Failing reports whether the latest write failed.
func (s *Store) Failing() bool { return s.health.failing.Load() }
