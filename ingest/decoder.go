// Package ingest decodes NetFlow v1/v5/v7/v8/v9, IPFIX (PSAMP packet reports included)
// and sFlow v5 datagrams into flow.Record batches, keeping each exporter's templates,
// sampling and loss accounting in bounded state.
package ingest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/flowhound/flowhound/flow"
)

// DecoderConfig holds the knobs of a Decoder. The zero value is usable: every bound
// left at zero takes the default shown beside it.
type DecoderConfig struct {
	// Sampling overrides the sampling rate (1 in N) of every record from an exporter,
	// whatever the exporter says about itself. Counters stay as exported.
	Sampling map[netip.Addr]uint32

	// MaxExporters bounds how many exporters have state (default 10000). When the table
	// is full, exporters silent for ExporterIdle (default 1h) are forgotten to make
	// room; datagrams from further addresses are dropped with ReasonExporterLimit, so
	// that a spoofed flood cannot grow memory or push active exporters' templates out.
	MaxExporters int
	ExporterIdle time.Duration
	// MaxTemplates bounds the templates kept per exporter, over all its observation
	// domains and versions (default 4096), and MaxTemplatesTotal over all exporters
	// (default 65536: a template takes at most a few KiB).
	MaxTemplates      int
	MaxTemplatesTotal int
	// MaxPending bounds, per exporter, the data sets that wait for their template
	// (default 64); the oldest is dropped first.
	MaxPending int
	// MaxPendingBytes bounds the bytes held by waiting data sets over all exporters
	// (default 1 MiB).
	MaxPendingBytes int
	// MaxInterfaces bounds the sFlow interface counters kept per exporter (default 1024).
	MaxInterfaces int
}

// Default bounds.
const (
	DefaultMaxExporters      = 10000
	DefaultExporterIdle      = time.Hour
	DefaultMaxTemplates      = 4096
	DefaultMaxTemplatesTotal = 65536
	DefaultMaxPending        = 64
	DefaultMaxPendingBytes   = 1 << 20
	DefaultMaxInterfaces     = 1024
)

func (c DecoderConfig) withDefaults() DecoderConfig {
	if c.MaxExporters <= 0 {
		c.MaxExporters = DefaultMaxExporters
	}
	if c.ExporterIdle <= 0 {
		c.ExporterIdle = DefaultExporterIdle
	}
	if c.MaxTemplates <= 0 {
		c.MaxTemplates = DefaultMaxTemplates
	}
	if c.MaxTemplatesTotal <= 0 {
		c.MaxTemplatesTotal = DefaultMaxTemplatesTotal
	}
	if c.MaxPending <= 0 {
		c.MaxPending = DefaultMaxPending
	}
	if c.MaxPendingBytes <= 0 {
		c.MaxPendingBytes = DefaultMaxPendingBytes
	}
	if c.MaxInterfaces <= 0 {
		c.MaxInterfaces = DefaultMaxInterfaces
	}
	return c
}

// Decoder decodes datagrams of every supported version. It keeps per-exporter state
// (templates, sequence numbers, sampling, counters) and is not safe for concurrent use:
// each listener owns one. Exporters, though, may be called from another goroutine (the
// API's) while Decode runs: a mutex, taken once per datagram (about 20 ns uncontended,
// under 1 ns per record), keeps the snapshot consistent.
type Decoder struct {
	mu        sync.Mutex
	cfg       DecoderConfig
	exporters map[netip.Addr]*exporter
	last      *exporter // most datagrams come in runs from one exporter
	overflow  *exporter // accounting for datagrams beyond MaxExporters

	shared       *shared   // counts bounded over all exporters
	pendingBytes int       // bytes held by waiting data sets, all exporters
	npending     int       // waiting data sets, all exporters
	pendOrder    uint64    // arrival order of waiting sets
	pendq        []pendRef // waiting sets, oldest first (with stale entries)
	offs         []uint32  // per-field offsets of one variable-length record
	learned      bool      // a template was learned during the current datagram
	lastSweep    int64     // last search for idle exporters (arrival clock)

	// saveGen counts changes to what SaveTemplates writes (templates learned, changed,
	// withdrawn or forgotten; sampling and init time from options data); savedGen is
	// its value at the last SaveTemplates.
	saveGen, savedGen uint64
}

// NewDecoder returns a Decoder with cfg (zero fields take their defaults).
func NewDecoder(cfg DecoderConfig) *Decoder {
	cfg = cfg.withDefaults()
	if cfg.Sampling != nil {
		// A private copy: the caller may go on changing its map.
		m := make(map[netip.Addr]uint32, len(cfg.Sampling))
		for a, r := range cfg.Sampling {
			m[a.Unmap()] = r
		}
		cfg.Sampling = m
	}
	return &Decoder{
		cfg:       cfg,
		shared:    &shared{},
		exporters: make(map[netip.Addr]*exporter),
		offs:      make([]uint32, 0, maxTemplateFields),
	}
}

// Decode decodes one datagram that arrived from exporter at received (Unix ns) and
// appends its flow records to dst. It detects the version from the header.
//
// The returned slice holds the records appended so far even when err is non-nil: a
// datagram that is partly bad still yields the records that could be decoded. err
// describes the first problem found (a *DecodeError); every problem is also counted
// per exporter and reason (see Exporters). Records of data sets that waited for their
// template are appended to dst of the call that brings the template, after that
// datagram's own records, and keep the arrival time of the datagram they came in.
//
// payload is not retained after Decode returns.
func (d *Decoder) Decode(exporter netip.Addr, received int64, payload []byte, dst []flow.Record) ([]flow.Record, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	exporter = exporter.Unmap()
	ex := d.exporter(exporter, received)
	if ex == nil {
		d.overflow.datagrams++
		d.overflow.drops[ReasonExporterLimit]++
		return dst, errExporterLimit
	}
	ex.datagrams++
	ex.lastSeen = received
	if len(payload) < 4 {
		return dst, d.fail(ex, "datagram", ReasonShort, "%d bytes, too short for any header", len(payload))
	}
	switch v := binary.BigEndian.Uint16(payload); v {
	case 1, 5, 7, 8:
		return d.decodeLegacy(ex, received, payload, dst)
	case 9:
		return d.decodeV9(ex, received, payload, dst)
	case 10:
		return d.decodeIPFIX(ex, received, payload, dst)
	case 0:
		// sFlow carries a 32-bit version; NetFlow a 16-bit one, so a zero high half
		// can only be sFlow (or garbage, which decodeSFlow rejects).
		if binary.BigEndian.Uint32(payload) == 5 {
			return d.decodeSFlow(ex, received, payload, dst)
		}
		return dst, d.fail(ex, "datagram", ReasonVersion, "unsupported version %d (sFlow v5 only)", binary.BigEndian.Uint32(payload))
	default:
		return dst, d.fail(ex, "datagram", ReasonVersion, "unknown version %d", v)
	}
}

// Flush drops every data set still waiting for its template, counting each under
// ReasonNoTemplate. Use it at the end of a capture so that the summary says what was
// never decoded.
func (d *Decoder) Flush() {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, ex := range d.exporters {
		for i := range ex.pending {
			p := &ex.pending[i]
			if p.used {
				d.dropPending(ex, p)
			}
		}
	}
}

// exporter returns the state for addr, creating it when there is room; nil when the
// table is full.
func (d *Decoder) exporter(addr netip.Addr, now int64) *exporter {
	if ex := d.last; ex != nil && ex.addr == addr {
		return ex
	}
	ex := d.exporters[addr]
	if ex == nil {
		if len(d.exporters) >= d.cfg.MaxExporters && now-d.lastSweep >= 1e9 {
			// At most once a second: under a spoofed flood every datagram would
			// otherwise pay for a walk of the whole table.
			d.lastSweep = now
			d.forgetIdle(now)
		}
		if len(d.exporters) >= d.cfg.MaxExporters {
			if d.overflow == nil {
				d.overflow = &exporter{}
			}
			return nil
		}
		ex = newExporter(addr, d.cfg, d.shared)
		d.exporters[addr] = ex
	}
	d.last = ex
	return ex
}

// forgetIdle drops the state of exporters silent for ExporterIdle.
func (d *Decoder) forgetIdle(now int64) {
	for addr, ex := range d.exporters {
		if now-ex.lastSeen < int64(d.cfg.ExporterIdle) {
			continue
		}
		for i := range ex.pending {
			if ex.pending[i].used {
				d.release(ex, &ex.pending[i])
			}
		}
		if len(ex.templates) > 0 || ex.hasSavedDomains() {
			d.saveGen++
		}
		d.shared.templates -= len(ex.templates)
		d.shared.domains -= len(ex.domains)
		delete(d.exporters, addr)
		if d.last == ex {
			d.last = nil
		}
	}
}

// Reason says why a datagram, set or record was dropped or flagged. Every reason is
// counted per exporter.
type Reason uint8

// Reasons, in the order they are reported.
const (
	ReasonShort         Reason = iota // datagram shorter than its header
	ReasonVersion                     // unknown or unsupported version
	ReasonTruncated                   // records or sets cut short by the datagram's end
	ReasonCountMismatch               // header count disagrees with the records present
	ReasonLength                      // header length disagrees with the datagram
	ReasonBadSet                      // set or sample with an impossible length or id
	ReasonBadTemplate                 // template refused (absurd lengths, too many fields)
	ReasonBadField                    // template field with a length its type cannot have (field ignored)
	ReasonTemplateLimit               // template refused: MaxTemplates or MaxTemplatesTotal reached
	ReasonNoTemplate                  // data set dropped: its template never came
	ReasonBadSample                   // sFlow sample or record that does not parse
	ReasonBadHeader                   // header field with an impossible value
	ReasonExporterLimit               // datagram from an exporter beyond MaxExporters
	ReasonBadSampling                 // sampling rate above maxSamplingRate (ignored)
	numReasons
)

var reasonNames = [numReasons]string{
	ReasonShort:         "short",
	ReasonVersion:       "version",
	ReasonTruncated:     "truncated",
	ReasonCountMismatch: "count_mismatch",
	ReasonLength:        "length_mismatch",
	ReasonBadSet:        "bad_set",
	ReasonBadTemplate:   "bad_template",
	ReasonBadField:      "bad_field",
	ReasonTemplateLimit: "template_limit",
	ReasonNoTemplate:    "no_template",
	ReasonBadSample:     "bad_sample",
	ReasonBadHeader:     "bad_header",
	ReasonExporterLimit: "exporter_limit",
	ReasonBadSampling:   "bad_sampling",
}

// String returns the reason's metric label value, e.g. "no_template".
func (r Reason) String() string {
	if r < numReasons {
		return reasonNames[r]
	}
	return fmt.Sprintf("reason(%d)", uint8(r))
}

// DecodeError is the error Decode returns: the protocol, the counted reason and what
// exactly was wrong.
type DecodeError struct {
	Proto  string // "v5", "v9", "ipfix", "sflow", ...
	Kind   Reason
	Detail string
}

func (e *DecodeError) Error() string { return "ingest: " + e.Proto + ": " + e.Detail }

// Reason returns the metric label of the error's reason ("no_template", ...).
func (e *DecodeError) Reason() string { return e.Kind.String() }

// Dropped reports whether something was lost (a datagram, set, template or record), as
// opposed to a quirk that cost nothing (see ExporterStats.Quirks).
func (e *DecodeError) Dropped() bool { return !e.Kind.quirk() }

// ErrReason returns the counted reason of an error from Decode, and false for other
// errors.
func ErrReason(err error) (Reason, bool) {
	var de *DecodeError
	if errors.As(err, &de) {
		return de.Kind, true
	}
	return 0, false
}

// maxSamplingRate is the largest sampling rate believed. Real exporters sample at most
// about 1 in 100,000; a rate in the millions is a corrupt field, and applying it
// would multiply the exporter's traffic into a phantom flood.
const maxSamplingRate = 1 << 24

// errExporterLimit is shared: a flood from spoofed addresses must not cost an
// allocation per datagram.
var errExporterLimit = &DecodeError{Proto: "datagram", Kind: ReasonExporterLimit,
	Detail: "exporter table full (DecoderConfig.MaxExporters): datagram dropped"}

// fail counts reason for ex and returns the error describing it. Errors allocate, so
// they are built only for malformed input, never for quirks that well-known exporters
// repeat in every datagram.
func (d *Decoder) fail(ex *exporter, proto string, reason Reason, format string, args ...any) error {
	ex.drops[reason]++
	return &DecodeError{Proto: proto, Kind: reason, Detail: fmt.Sprintf(format, args...)}
}

// firstErr keeps the first error of a datagram.
func firstErr(err, e error) error {
	if err != nil {
		return err
	}
	return e
}

// grow makes room for n more records without reallocating inside the decode loops.
func grow(dst []flow.Record, n int) []flow.Record {
	if n > 0 && cap(dst)-len(dst) < n {
		dst = slices.Grow(dst, n)
	}
	return dst
}

// uintN reads a big-endian unsigned integer of 1 to 8 bytes (reduced-size encoding,
// RFC 7011 section 6.2).
func uintN(b []byte) uint64 {
	switch len(b) {
	case 1:
		return uint64(b[0])
	case 2:
		return uint64(binary.BigEndian.Uint16(b))
	case 4:
		return uint64(binary.BigEndian.Uint32(b))
	case 8:
		return binary.BigEndian.Uint64(b)
	}
	var v uint64
	for _, c := range b {
		v = v<<8 | uint64(c)
	}
	return v
}

// relTime converts a sysUptime-relative timestamp (ms) to Unix ns, given the export
// time and the uptime at export. The difference is taken modulo 2^32 so that an uptime
// that wrapped (every 49.7 days) between flow start and export still gives the small
// difference it is. A timestamp a little after the header's uptime (exporters fill
// records and header at different moments) would read as 49 days old: up to
// maxAheadMs ahead is taken as that, not as a wrap.
func relTime(exportNs int64, uptimeMs, ms uint32) int64 {
	if ahead := ms - uptimeMs; ahead <= maxAheadMs {
		return exportNs + int64(ahead)*1e6
	}
	return exportNs - int64(uptimeMs-ms)*1e6
}

const maxAheadMs = 3600 * 1000
