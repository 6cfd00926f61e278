package gen

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/flowhound/flowhound/flow"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// batchSize is how many datagrams go to the kernel in one sendmmsg call.
const batchSize = 64

type batchWriter interface {
	WriteBatch(ms []ipv4.Message, flags int) (int, error)
}

// udpSink sends each exporter's datagrams from its own socket, bound to the exporter's
// source address, in batches.
type udpSink struct {
	conns []*net.UDPConn
	bw    []batchWriter
	dst   *net.UDPAddr
	b     []sendBatch
	errs  uint64
}

type sendBatch struct {
	msgs []ipv4.Message
	bufs [][]byte
	n    int
}

// newUDPSink opens one socket per exporter. With a loopback collector each socket is
// bound to the exporter's address (127.0.0.11, ...); for another collector the
// exporters send from their configured Sources, or else from whatever address the
// kernel picks (then the collector sees one exporter per source port at most).
func newUDPSink(cfg *Config, exps []*exporter) (*udpSink, error) {
	ua, err := net.ResolveUDPAddr("udp", cfg.To)
	if err != nil {
		return nil, fmt.Errorf("gen: collector %q: %w", cfg.To, err)
	}
	dst := ua.AddrPort()
	s := &udpSink{dst: ua}
	for _, e := range exps {
		src := netip.AddrPortFrom(e.addr, 0)
		switch {
		case len(cfg.Sources) > 0:
		case dst.Addr().Unmap().Is4() && dst.Addr().IsLoopback():
		case dst.Addr().Is6() && dst.Addr().IsLoopback():
			src = netip.AddrPortFrom(netip.IPv6Loopback(), 0)
		default:
			src = netip.AddrPort{}
		}
		network := "udp4"
		if dst.Addr().Is6() && !dst.Addr().Is4In6() {
			network = "udp6"
		}
		var la *net.UDPAddr
		if src.IsValid() {
			la = net.UDPAddrFromAddrPort(src)
		}
		c, err := net.ListenUDP(network, la)
		if err != nil {
			s.close()
			return nil, fmt.Errorf("gen: exporter %v: %w", e.addr, err)
		}
		_ = c.SetWriteBuffer(4 << 20)
		s.conns = append(s.conns, c)
		if network == "udp4" {
			s.bw = append(s.bw, ipv4.NewPacketConn(c))
		} else {
			s.bw = append(s.bw, ipv6.NewPacketConn(c))
		}
		b := sendBatch{msgs: make([]ipv4.Message, batchSize), bufs: make([][]byte, batchSize)}
		for i := range b.msgs {
			b.bufs[i] = make([]byte, 0, 2048)
			b.msgs[i].Buffers = [][]byte{nil}
			b.msgs[i].Addr = ua
		}
		s.b = append(s.b, b)
	}
	return s, nil
}

func (s *udpSink) send(i int, p []byte) error {
	b := &s.b[i]
	b.bufs[b.n] = append(b.bufs[b.n][:0], p...)
	b.msgs[b.n].Buffers[0] = b.bufs[b.n]
	b.n++
	if b.n == len(b.msgs) {
		return s.flushOne(i)
	}
	return nil
}

func (s *udpSink) flushOne(i int) error {
	b := &s.b[i]
	ms := b.msgs[:b.n]
	b.n = 0
	for len(ms) > 0 {
		n, err := s.bw[i].WriteBatch(ms, 0)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return err
			}
			// A refused or failed send loses that datagram, as UDP export does; count
			// it and go on.
			s.errs++
			n = max(n, 1)
		}
		ms = ms[n:]
	}
	return nil
}

func (s *udpSink) flush() error {
	for i := range s.b {
		if s.b[i].n > 0 {
			if err := s.flushOne(i); err != nil {
				return err
			}
		}
	}
	return nil
}

func (s *udpSink) close() {
	for _, c := range s.conns {
		c.Close()
	}
}

// Run sends the scenario to cfg.To in real time until the context ends or Duration has
// passed, then flushes the simulated routers' flow caches and returns. It returns nil
// on a normal end and an error only if the sockets cannot be set up.
func (g *Generator) Run(ctx context.Context) error {
	if g.cfg.To == "" {
		return errors.New("gen: no collector address (To)")
	}
	s, err := newUDPSink(&g.cfg, g.exps)
	if err != nil {
		return err
	}
	defer s.close()
	if err := g.start(time.Now(), g.cfg.Duration); err != nil {
		return err
	}
	g.send = func(e *exporter, p []byte, _ []flow.Record) error { return s.send(e.idx, p) }
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		now := time.Now().UnixNano()
		for !g.done() && g.origin+(g.k+1)*int64(tick) <= now {
			if err := g.step(); err != nil {
				return err
			}
		}
		if err := s.flush(); err != nil {
			return err
		}
		lag := time.Duration(time.Now().UnixNano() - (g.origin + g.k*int64(tick)))
		g.st.MaxLag = max(g.st.MaxLag, lag)
		g.st.SendErrors = s.errs
		g.publish()
		if g.done() {
			break
		}
		select {
		case <-ctx.Done():
		case <-t.C:
			continue
		}
		break
	}
	now := min(time.Now().UnixNano(), g.origin+g.k*int64(tick))
	err = g.finish(now)
	if err == nil {
		err = s.flush()
	}
	g.st.SendErrors = s.errs
	g.publish()
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}
