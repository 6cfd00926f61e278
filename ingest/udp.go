package ingest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"golang.org/x/net/ipv4"

	"github.com/flowhound/flowhound/flow"
)

// readBatch is how many datagrams one recvmmsg call takes: measured 23% cheaper per
// datagram than one read each (notes/libraries.md §5).
const readBatch = 64

// flushAt is the free room below which a batch is handed on before decoding more: a
// datagram yields at most a few hundred records.
const flushAt = 512

// Listener reads export datagrams from one UDP socket, decodes them and hands batches of
// records to the detector.
type Listener struct {
	conn    *net.UDPConn
	pc      *ipv4.PacketConn
	dec     *Decoder
	out     chan<- *flow.Batch
	pool    *flow.Pool
	stats   *Stats
	timeNow func() time.Time
}

// ListenUDP binds addr now, so that the caller knows the port (":0" picks a free one)
// before Run starts. The receive buffer is raised as far as the system allows: bursts from
// many exporters arrive faster than one read loop drains them.
func ListenUDP(addr string, dec *Decoder, out chan<- *flow.Batch, pool *flow.Pool, stats *Stats) (*Listener, error) {
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, fmt.Errorf("ingest: listen %q: %w", addr, err)
	}
	conn, err := net.ListenUDP("udp", ua)
	if err != nil {
		return nil, fmt.Errorf("ingest: listen %q: %w", addr, err)
	}
	setReadBuffer(conn, 32<<20)
	return &Listener{conn: conn, pc: ipv4.NewPacketConn(conn), dec: dec, out: out, pool: pool,
		stats: stats, timeNow: time.Now}, nil
}

func setReadBuffer(conn *net.UDPConn, size int) {
	raw, err := conn.SyscallConn()
	if err == nil {
		// SO_RCVBUFFORCE passes rmem_max when we run as root; otherwise fall back to the cap.
		_ = raw.Control(func(fd uintptr) {
			err = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUFFORCE, size)
		})
	}
	if err != nil {
		_ = conn.SetReadBuffer(size)
	}
}

// Addr returns the bound address.
func (l *Listener) Addr() netip.AddrPort {
	return l.conn.LocalAddr().(*net.UDPAddr).AddrPort()
}

// Run reads until ctx ends.
func (l *Listener) Run(ctx context.Context) error {
	stop := context.AfterFunc(ctx, func() { l.conn.Close() })
	defer stop()
	msgs := make([]ipv4.Message, readBatch)
	for i := range msgs {
		msgs[i].Buffers = [][]byte{make([]byte, 65536)}
	}
	batch := l.pool.Get()
	for {
		n, err := l.pc.ReadBatch(msgs, 0)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				batch.Release()
				return nil
			}
			return fmt.Errorf("ingest: read: %w", err)
		}
		arrival := l.timeNow()
		now := arrival.UnixNano()
		for i := 0; i < n; i++ {
			m := &msgs[i]
			ua, _ := m.Addr.(*net.UDPAddr)
			if ua == nil {
				continue
			}
			exp := ua.AddrPort().Addr().Unmap()
			if cap(batch.Records)-len(batch.Records) < flushAt {
				l.out <- batch
				batch = l.pool.Get()
			}
			before := len(batch.Records)
			batch.Records, err = l.dec.Decode(exp, now, m.Buffers[0][:m.N], batch.Records)
			l.stats.datagram(exp, len(batch.Records)-before, err)
		}
		stageDecode.UpdateDuration(arrival)
		if len(batch.Records) > 0 {
			select {
			case l.out <- batch:
				batch = l.pool.Get()
			case <-ctx.Done():
				batch.Release()
				return nil
			}
		}
	}
}

// maxExporterSeries bounds the exporters with series of their own.
const maxExporterSeries = DefaultMaxExporters

// stageDecode times decoding one read of up to readBatch datagrams.
var stageDecode = metrics.NewHistogram(`flowhound_stage_seconds{stage="decode"}`)

// Stats keeps the per-exporter ingest metrics. Series carry exporter="ip" and no unlabelled
// total is exported beside them (DESIGN.md), so a name's sum is the total. Counters are
// resolved once per exporter: building a series name per datagram costs ~400 ns.
type Stats struct {
	mu        sync.Mutex // listeners on several ports share one Stats
	exporters map[netip.Addr]*exporterCounters
	set       *metrics.Set
}

type exporterCounters struct {
	datagrams *metrics.Counter
	flows     *metrics.Counter
	dropped   map[string]*metrics.Counter
	label     string
}

// NewStats returns an empty set of ingest metrics registered for /metrics.
func NewStats() *Stats {
	s := &Stats{exporters: map[netip.Addr]*exporterCounters{}, set: metrics.NewSet()}
	metrics.RegisterSet(s.set)
	return s
}

// Watch adds the decoders' per-exporter accounting to the metrics, read at scrape time:
// sequence losses, sampling, templates and clock skew change inside the decoder, which
// keeps them without touching a metric per record.
func (s *Stats) Watch(decoders func() []ExporterStats) {
	s.set.RegisterMetricsWriter(func(w io.Writer) {
		for _, e := range decoders() {
			if !e.Exporter.IsValid() {
				continue
			}
			l := fmt.Sprintf(`{exporter=%q}`, e.Exporter.String())
			metrics.WriteCounterUint64(w, "flowhound_flows_lost_total"+l, e.LostFlows)
			metrics.WriteCounterUint64(w, "flowhound_datagrams_lost_total"+l, e.LostDatagrams)
			metrics.WriteCounterUint64(w, "flowhound_exporter_restarts_total"+l, e.Restarts)
			metrics.WriteGaugeUint64(w, "flowhound_exporter_sampling_rate"+l, uint64(e.SamplingRate))
			metrics.WriteGaugeUint64(w, "flowhound_exporter_templates"+l, uint64(e.Templates))
			metrics.WriteGaugeFloat64(w, "flowhound_exporter_clock_skew_seconds"+l, e.ClockSkew.Seconds())
		}
	})
}

// Close unregisters the metrics.
func (s *Stats) Close() { metrics.UnregisterSet(s.set, true) }

func (s *Stats) datagram(exp netip.Addr, records int, err error) {
	if s == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.exporters[exp]
	if c == nil && len(s.exporters) >= maxExporterSeries {
		// Datagrams from spoofed sources must not grow the series without bound: past the
		// limit they share one "other" series (the decoder bounds its state the same way).
		exp = netip.Addr{}
		c = s.exporters[exp]
	}
	if c == nil {
		name := exp.String()
		if !exp.IsValid() {
			name = "other"
		}
		label := fmt.Sprintf(`exporter=%q`, name)
		c = &exporterCounters{
			datagrams: s.set.GetOrCreateCounter(`flowhound_datagrams_received_total{` + label + `}`),
			flows:     s.set.GetOrCreateCounter(`flowhound_flows_received_total{` + label + `}`),
			dropped:   map[string]*metrics.Counter{},
			label:     label,
		}
		s.exporters[exp] = c
	}
	c.datagrams.Inc()
	c.flows.Add(records)
	if err != nil {
		// Quirks (a header count that disagrees, trailing bytes) lose nothing: they have
		// their own series, so that the dropped total means data lost.
		reason, name := dropReason(err), "flowhound_datagrams_dropped_total"
		var de *DecodeError
		if errors.As(err, &de) && !de.Dropped() {
			name = "flowhound_datagram_quirks_total"
		}
		k := name + reason
		d := c.dropped[k]
		if d == nil {
			d = s.set.GetOrCreateCounter(fmt.Sprintf(`%s{%s,reason=%q}`, name, c.label, reason))
			c.dropped[k] = d
		}
		d.Inc()
	}
}

// dropReason names the metric label for a decode error: the error's own Reason when it
// has one, "malformed" otherwise.
func dropReason(err error) string {
	var r interface{ Reason() string }
	if errors.As(err, &r) {
		return r.Reason()
	}
	return "malformed"
}
