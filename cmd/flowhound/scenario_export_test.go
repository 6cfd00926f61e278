package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/flowhound/flowhound/gen"
)

// This file turns a packet capture into the capture of a router's flow export: softflowd
// meters the packets and exports NetFlow v5, v9 or IPFIX to a socket of the test; the
// records are given the interfaces a border router with several ingress ports would
// report (softflowd reading a file reports ifindex 0); the datagrams are written, in the
// order they were received, as UDP from the router to the collector, each stamped with
// its export time in the capture's clock so that replay runs in flow time.

// The simulated border router and its interfaces.
var (
	scnRouter    = netip.MustParseAddr("10.10.0.1")
	scnCollector = netip.AddrPortFrom(netip.MustParseAddr("10.10.0.100"), 2055)
)

const (
	ifTransit   = 3  // Te0/0/0/0, transit: the Internet's 1.0.0.0-127.255.255.255 enters here
	ifPeering   = 7  // Te0/0/0/1, peering at an exchange: 128.0.0.0 and above
	ifCustomerA = 11 // Gi0/1/0 towards 192.0.2.0/24
	ifCustomerB = 12 // Gi0/1/1 towards 198.51.100.0/24
)

// scnPort returns the router interface that faces address a: the customer port of a
// monitored address, or the uplink the Internet's routes for a point to.
func scnPort(a netip.Addr) uint32 {
	switch {
	case scnNets[0].Contains(a):
		return ifCustomerA
	case scnNets[1].Contains(a):
		return ifCustomerB
	case a.Is4() && a.As4()[0] < 128:
		return ifTransit
	}
	return ifPeering
}

// softflowdArgs are the exporter's settings. Reading a file, softflowd expires flows only
// when its cache is full or a flow outlives maxlife (the active timeout), never on idle
// timeouts: a small cache makes it export continuously, as a busy router's cache does.
// The idle timeouts still order the evictions: finished TCP connections and idle UDP and
// ICMP flows go first, long transfers when they end or reach maxlife.
var softflowdArgs = []string{"-a", "-m", "512", "-t", "maxlife=5s", "-t", "tcp=15s", "-t", "tcp.fin=1s",
	"-t", "tcp.rst=1s", "-t", "udp=1s", "-t", "icmp=1s", "-t", "general=15s"}

// scnExport is what the exporter sent, in receive order, and when (Unix ns).
type scnExport struct {
	version   int
	datagrams [][]byte
	stamps    []int64
}

// softflowdPackets finds how many datagrams softflowd sent in the statistics it prints.
var softflowdPackets = regexp.MustCompile(`Flows exported: \d+ \((\d+) records\) in (\d+) packets`)

// runSoftflowd meters the packet capture at path with softflowd exporting `version`
// (5, 9 or 10) to a socket of the test, and returns the datagrams it sent. softflowd
// sends as fast as it meters and its output is the same every time, so a run that lost
// datagrams in the socket buffer (a busy machine, a small net.core.rmem_max) is repeated.
func runSoftflowd(t *testing.T, path string, version int) *scnExport {
	t.Helper()
	for try := 1; ; try++ {
		ex, sent, err := softflowdOnce(path, version)
		if err != nil {
			t.Fatal(err)
		}
		if len(ex.datagrams) == sent {
			return ex
		}
		if try == 3 {
			t.Fatalf("softflowd sent %d datagrams, %d received (3 tries)", sent, len(ex.datagrams))
		}
		t.Logf("softflowd sent %d datagrams, %d received: again", sent, len(ex.datagrams))
	}
}

func softflowdOnce(path string, version int) (*scnExport, int, error) {
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return nil, 0, err
	}
	defer c.Close()
	_ = c.SetReadBuffer(8 << 20) // softflowd sends as fast as it meters
	ex := &scnExport{version: version}
	var mu sync.Mutex
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 65536)
		for {
			n, _, err := c.ReadFromUDP(buf)
			if err != nil {
				return
			}
			mu.Lock()
			ex.datagrams = append(ex.datagrams, append([]byte(nil), buf[:n]...))
			mu.Unlock()
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	args := append([]string{"-r", path, "-n", c.LocalAddr().String(), "-v", strconv.Itoa(version)}, softflowdArgs...)
	out, err := exec.CommandContext(ctx, "softflowd", args...).CombinedOutput()
	if err != nil {
		return nil, 0, fmt.Errorf("softflowd %v: %v\n%s", args, err, out)
	}
	m := softflowdPackets.FindSubmatch(out)
	if m == nil {
		return nil, 0, fmt.Errorf("softflowd printed no export statistics:\n%s", out)
	}
	want, _ := strconv.Atoi(string(m[2]))
	// Wait for the last datagrams to be read.
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		mu.Lock()
		n := len(ex.datagrams)
		mu.Unlock()
		if n >= want {
			break
		}
	}
	c.Close()
	<-done
	return ex, want, nil
}

// tfield is one field of a v9/IPFIX template.
type tfield struct {
	id     uint16 // element ID, without the enterprise bit
	ent    bool
	length uint16 // 0xFFFF: variable length (IPFIX)
}

// Field IDs (NetFlow v9 field types, the same numbers as the IPFIX elements).
const (
	fieldSrcV4       = 8
	fieldDstV4       = 12
	fieldInIf        = 10
	fieldOutIf       = 14
	fieldEndUptime   = 21
	fieldSysInitMsec = 160
)

// rewrite sets the input and output interface of every record by the router's ports
// (scnPort of the source and of the destination) and stamps every datagram with its
// export time in the capture's clock:
//
//   - v5: the header's export time (seconds and nanoseconds);
//   - v9: the header's uptime over the exporter's boot time, which the uptimes and whole
//     export seconds of all the datagrams pin down to the millisecond;
//   - IPFIX: the header has whole seconds only, so within its second a datagram is
//     placed at the end of the latest flow it reports, when its export was due at the
//     earliest.
//
// Stamps never go backwards: the datagrams stay in the order they were received.
func (ex *scnExport) rewrite() error {
	templates := map[uint32][]tfield{}
	var boot int64 // ms, from the IPFIX options (systemInitTimeMilliseconds)
	ex.stamps = make([]int64, len(ex.datagrams))
	be := binary.BigEndian
	// v9: the exporter's boot time in ms lies in [secs*1000-up, secs*1000+1000-up) for every
	// datagram.
	var bootLo, bootHi int64 = -1 << 62, 1 << 62
	if ex.version == 9 {
		for _, d := range ex.datagrams {
			if len(d) < 20 {
				return errors.New("v9: short header")
			}
			up, secs := int64(be.Uint32(d[4:])), int64(be.Uint32(d[8:]))
			bootLo, bootHi = max(bootLo, secs*1000-up), min(bootHi, secs*1000+999-up)
		}
		if bootLo > bootHi {
			return fmt.Errorf("v9: headers disagree on the boot time (%d > %d)", bootLo, bootHi)
		}
	}
	var prev int64
	for i, d := range ex.datagrams {
		var ts int64
		switch ex.version {
		case 5:
			if len(d) < 24 || be.Uint16(d) != 5 {
				return fmt.Errorf("datagram %d: not NetFlow v5", i)
			}
			n := int(be.Uint16(d[2:]))
			if len(d) < 24+48*n {
				return fmt.Errorf("datagram %d: %d records in %d bytes", i, n, len(d))
			}
			for r := 0; r < n; r++ {
				rec := d[24+48*r:]
				src, dst := netip.AddrFrom4([4]byte(rec[0:4])), netip.AddrFrom4([4]byte(rec[4:8]))
				be.PutUint16(rec[12:], uint16(scnPort(src)))
				be.PutUint16(rec[14:], uint16(scnPort(dst)))
			}
			ts = int64(be.Uint32(d[8:]))*1e9 + int64(be.Uint32(d[12:]))
		case 9:
			if be.Uint16(d) != 9 {
				return fmt.Errorf("datagram %d: not NetFlow v9", i)
			}
			domain := be.Uint32(d[16:])
			if _, err := walkSets(d[20:], 9, domain, templates, func(fs []tfield, rec []byte) {
				setPorts(fs, rec)
			}); err != nil {
				return fmt.Errorf("datagram %d: %w", i, err)
			}
			ts = (bootLo + int64(be.Uint32(d[4:]))) * 1e6
		case 10:
			if len(d) < 16 || be.Uint16(d) != 10 || int(be.Uint16(d[2:])) != len(d) {
				return fmt.Errorf("datagram %d: not IPFIX", i)
			}
			domain := be.Uint32(d[12:])
			var lastEnd int64 = -1
			if _, err := walkSets(d[16:], 10, domain, templates, func(fs []tfield, rec []byte) {
				setPorts(fs, rec)
				off := 0
				for _, f := range fs {
					if f.ent {
						off += int(f.length)
						continue
					}
					switch {
					case f.id == fieldEndUptime && f.length == 4:
						lastEnd = max(lastEnd, int64(be.Uint32(rec[off:])))
					case f.id == fieldSysInitMsec && f.length == 8:
						boot = int64(be.Uint64(rec[off:]))
					}
					off += int(f.length)
				}
			}); err != nil {
				return fmt.Errorf("datagram %d: %w", i, err)
			}
			secs := int64(be.Uint32(d[4:])) * 1e9
			ts = secs
			if boot > 0 && lastEnd >= 0 {
				ts = min(max(secs, (boot+lastEnd)*1e6), secs+999e6)
			}
		default:
			return fmt.Errorf("version %d", ex.version)
		}
		ts = max(ts, prev)
		ex.stamps[i], prev = ts, ts
	}
	return nil
}

// setPorts writes the router's input and output interfaces into a record, in whatever
// width the template gives them.
func setPorts(fs []tfield, rec []byte) {
	var src, dst netip.Addr
	off := 0
	for _, f := range fs {
		if !f.ent && f.length == 4 {
			switch f.id {
			case fieldSrcV4:
				src = netip.AddrFrom4([4]byte(rec[off : off+4]))
			case fieldDstV4:
				dst = netip.AddrFrom4([4]byte(rec[off : off+4]))
			}
		}
		off += int(f.length)
	}
	if !src.IsValid() || !dst.IsValid() {
		return // an options record, or IPv6
	}
	off = 0
	for _, f := range fs {
		if !f.ent && (f.id == fieldInIf || f.id == fieldOutIf) {
			port := scnPort(src)
			if f.id == fieldOutIf {
				port = scnPort(dst)
			}
			putUint(rec[off:off+int(f.length)], uint64(port))
		}
		off += int(f.length)
	}
}

func putUint(b []byte, v uint64) {
	for i := len(b) - 1; i >= 0; i-- {
		b[i] = byte(v)
		v >>= 8
	}
}

// walkSets reads the flowsets (v9) or sets (IPFIX) of one datagram: it learns templates
// and options templates and calls fn with every data record whose template it knows. It
// returns the number of data records. Variable-length fields are refused: softflowd does
// not send them.
func walkSets(b []byte, version int, domain uint32, templates map[uint32][]tfield, fn func([]tfield, []byte)) (int, error) {
	be := binary.BigEndian
	tmplSet, optSet := uint16(0), uint16(1)
	if version == 10 {
		tmplSet, optSet = 2, 3
	}
	records := 0
	for len(b) >= 4 {
		id, n := be.Uint16(b), int(be.Uint16(b[2:]))
		if n < 4 || n > len(b) {
			return records, fmt.Errorf("set %d: length %d of %d", id, n, len(b))
		}
		body := b[4:n]
		b = b[n:]
		switch {
		case id == tmplSet || id == optSet:
			for len(body) >= 4 {
				tid := be.Uint16(body)
				if tid < 256 {
					break // padding
				}
				var nfields, skip int
				switch {
				case id == tmplSet:
					nfields, skip = int(be.Uint16(body[2:])), 4
				case version == 10:
					if len(body) < 6 {
						return records, errors.New("short options template")
					}
					nfields, skip = int(be.Uint16(body[2:])), 6
				default: // v9 options template: scope and option lengths in bytes
					if len(body) < 6 {
						return records, errors.New("short options template")
					}
					nfields, skip = (int(be.Uint16(body[2:]))+int(be.Uint16(body[4:])))/4, 6
				}
				body = body[skip:]
				var fs []tfield
				for k := 0; k < nfields; k++ {
					if len(body) < 4 {
						return records, fmt.Errorf("template %d: truncated", tid)
					}
					f := tfield{id: be.Uint16(body), length: be.Uint16(body[2:])}
					body = body[4:]
					if version == 10 && f.id&0x8000 != 0 {
						if len(body) < 4 {
							return records, fmt.Errorf("template %d: truncated", tid)
						}
						f.id &^= 0x8000
						f.ent = true
						body = body[4:]
					}
					if f.length == 0xFFFF {
						return records, fmt.Errorf("template %d: variable-length field %d", tid, f.id)
					}
					fs = append(fs, f)
				}
				templates[domain<<16|uint32(tid)] = fs
			}
		case id >= 256:
			fs, ok := templates[domain<<16|uint32(id)]
			if !ok {
				continue // data before its template: a collector drops it too
			}
			size := 0
			for _, f := range fs {
				size += int(f.length)
			}
			for size > 0 && len(body) >= size {
				fn(fs, body[:size])
				body = body[size:]
				records++
			}
		}
	}
	return records, nil
}

// writeCapture writes the export as UDP from the router to the collector.
func (ex *scnExport) writeCapture(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	bw := bufio.NewWriterSize(f, 1<<20)
	w, err := gen.NewPCAPWriter(bw)
	if err != nil {
		f.Close()
		return err
	}
	src := netip.AddrPortFrom(scnRouter, 49152)
	for i, d := range ex.datagrams {
		if err := w.WriteDatagram(time.Unix(0, ex.stamps[i]), src, scnCollector, d); err != nil {
			f.Close()
			return err
		}
	}
	if err := bw.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
