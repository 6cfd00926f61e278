package gen

import (
	"errors"
	"time"

	"github.com/flowhound/flowhound/flow"
)

// Template refresh defaults: exporters re-send templates over UDP because a collector
// that starts (or loses a datagram) mid-stream cannot decode data without them.
const (
	DefaultTemplateEvery    = 20
	DefaultTemplateInterval = 10 * time.Second
)

// Encoder produces one exporter's datagram stream in one format: it numbers datagrams as
// the protocol says, sends v9/IPFIX templates before the first data and then periodically,
// and splits records into datagrams. It is not safe for concurrent use.
type Encoder struct {
	Format Format
	// Header supplies Boot, Domain, Agent and SamplingInterval; the Encoder sets Export
	// and Sequence for each datagram.
	Header Header
	// TemplateEvery and TemplateInterval say when v9/IPFIX templates are re-sent: after
	// this many datagrams or this much time, whichever comes first.
	TemplateEvery    int
	TemplateInterval time.Duration

	buf      []byte
	seq      uint32 // next header sequence number
	sinceTpl int
	lastTpl  int64
	sentTpl  bool
	samples  []SFlowSample
	sources  map[uint32]*sflowSource
	counters []IfCounters
}

// sflowSource is the per-data-source state of an sFlow agent.
type sflowSource struct {
	flowSeq, counterSeq uint32
	pool                uint64
	seen                bool // pool is counted by SeenPackets rather than estimated
}

// NewEncoder returns an encoder for a fresh export stream (sequence numbers start at 0,
// sFlow's at 1, and templates are due).
func NewEncoder(f Format, h Header) *Encoder {
	e := &Encoder{
		Format:           f,
		Header:           h,
		TemplateEvery:    DefaultTemplateEvery,
		TemplateInterval: DefaultTemplateInterval,
		buf:              make([]byte, 0, 2048),
	}
	if f == FormatSFlow {
		e.seq = 1
		e.sources = make(map[uint32]*sflowSource)
	}
	return e
}

// Sequence returns the sequence number the next datagram will carry.
func (e *Encoder) Sequence() uint32 { return e.seq }

// EmitFunc receives a finished datagram and the records it carries. Both are only valid
// during the call.
type EmitFunc func(payload []byte, recs []flow.Record) error

func (e *Encoder) templateDue(now int64) bool {
	if e.Format != FormatV9 && e.Format != FormatIPFIX {
		return false
	}
	return !e.sentTpl || e.sinceTpl >= e.TemplateEvery || time.Duration(now-e.lastTpl) >= e.TemplateInterval
}

// Encode packs recs into datagrams exported at now and passes each to emit. With partial
// false it stops before a datagram that would not be full and reports how many records it
// consumed, so that the caller can hold the rest for later, as exporters fill datagrams
// before sending; with partial true it consumes everything. For sFlow each record is one
// sampled packet (see SFlowSample).
func (e *Encoder) Encode(now int64, recs []flow.Record, partial bool, emit EmitFunc) (int, error) {
	done := 0
	for done < len(recs) {
		h := e.Header
		h.Export = now
		h.Sequence = e.seq
		tpl := e.templateDue(now)
		var n int
		switch e.Format {
		case FormatV5:
			e.buf, n = AppendV5(e.buf[:0], h, recs[done:])
		case FormatV9:
			e.buf, n = AppendV9(e.buf[:0], h, tpl, recs[done:])
		case FormatIPFIX:
			e.buf, n = AppendIPFIX(e.buf[:0], h, tpl, recs[done:])
		case FormatSFlow:
			n = e.encodeSFlow(h, recs[done:])
		default:
			return done, errFormat(e.Format)
		}
		if n == 0 {
			return done, errors.New("gen: a record does not fit in a datagram")
		}
		if e.Format == FormatV5 && e.buf[2] == 0 && e.buf[3] == 0 {
			done += n // only IPv6 records, which v5 cannot carry: nothing to send
			continue
		}
		if !partial && done+n == len(recs) && !(e.Format == FormatV5 && n == MaxV5Records) {
			// Not known to be full: hold it. For sFlow the sources' sequence numbers were
			// advanced by encodeSFlow, so undo them.
			if e.Format == FormatSFlow {
				e.unsample(0)
			}
			break
		}
		switch e.Format {
		case FormatV5:
			e.seq += uint32(e.buf[2])<<8 | uint32(e.buf[3])
		case FormatIPFIX:
			e.seq += uint32(n)
		default:
			e.seq++
		}
		if tpl {
			// The datagram that carries the templates counts as the first of the next
			// TemplateEvery.
			e.sentTpl, e.sinceTpl, e.lastTpl = true, 1, now
		} else {
			e.sinceTpl++
		}
		if err := emit(e.buf, recs[done:done+n]); err != nil {
			return done + n, err
		}
		done += n
	}
	return done, nil
}

func (e *Encoder) source(ifindex uint32) *sflowSource {
	s := e.sources[ifindex]
	if s == nil {
		s = &sflowSource{}
		e.sources[ifindex] = s
	}
	return s
}

// SeenPackets tells an sFlow encoder that the data source ifindex forwarded n more
// packets, so that sample_pool counts real packets; without it the pool is estimated as
// samples times the sampling rate.
func (e *Encoder) SeenPackets(ifindex uint32, n uint64) {
	if e.sources == nil {
		return
	}
	s := e.source(ifindex)
	s.seen = true
	s.pool += n
}

func (e *Encoder) encodeSFlow(h Header, recs []flow.Record) int {
	e.samples = e.samples[:0]
	size := sflowHeaderLen4
	for i := range recs {
		r := &recs[i]
		l := sflowSampleLen(r)
		if i > 0 && size+l > MaxDatagram {
			break
		}
		size += l
		s := e.source(r.InIf)
		s.flowSeq++
		if !s.seen {
			s.pool += uint64(max(r.SamplingRate, 1))
		}
		e.samples = append(e.samples, SFlowSample{Packet: *r, Seq: s.flowSeq, Pool: uint32(s.pool)})
	}
	var n int
	e.buf, n = AppendSFlow(e.buf[:0], h, e.samples)
	e.unsample(n)
	e.samples = e.samples[:n]
	return n
}

// unsample undoes the source state that encodeSFlow advanced for samples[from:], which
// were not sent.
func (e *Encoder) unsample(from int) {
	for i := from; i < len(e.samples); i++ {
		r := &e.samples[i].Packet
		s := e.source(r.InIf)
		s.flowSeq--
		if !s.seen {
			s.pool -= uint64(max(r.SamplingRate, 1))
		}
	}
}

// EncodeCounters sends sFlow counter samples for the given interfaces at now, numbering
// each data source's counter samples. Seq in cs is ignored. Other formats send nothing.
func (e *Encoder) EncodeCounters(now int64, cs []IfCounters, emit EmitFunc) error {
	if e.Format != FormatSFlow {
		return nil
	}
	e.counters = append(e.counters[:0], cs...)
	for i := range e.counters {
		s := e.source(e.counters[i].Index)
		s.counterSeq++
		e.counters[i].Seq = s.counterSeq
	}
	rest := e.counters
	for len(rest) > 0 {
		h := e.Header
		h.Export, h.Sequence = now, e.seq
		var n int
		e.buf, n = AppendSFlowCounters(e.buf[:0], h, rest)
		e.seq++
		if err := emit(e.buf, nil); err != nil {
			return err
		}
		rest = rest[n:]
	}
	return nil
}

// EncodeDatagrams returns the datagrams that a freshly started exporter would send for
// recs at h.Export (the latest record end when zero), templates first. It allocates and
// is meant for tests, fuzz corpora and captures.
func EncodeDatagrams(f Format, h Header, recs []flow.Record) ([][]byte, error) {
	if h.Export == 0 {
		for i := range recs {
			h.Export = max(h.Export, recs[i].End)
		}
	}
	e := NewEncoder(f, h)
	var out [][]byte
	_, err := e.Encode(h.Export, recs, true, func(p []byte, _ []flow.Record) error {
		out = append(out, append([]byte(nil), p...))
		return nil
	})
	return out, err
}
