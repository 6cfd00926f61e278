package gen

import (
	"fmt"
	"net/netip"
	"strings"
)

// Format is an export protocol the generator can speak.
type Format uint8

// Export formats.
const (
	FormatV5 Format = iota + 1
	FormatV9
	FormatIPFIX
	FormatSFlow
)

// MaxDatagram bounds v9, IPFIX and sFlow datagrams so that they fit a 1500-byte MTU with
// room for tunnels, as exporters configured for a safe path MTU do. NetFlow v5 is the
// exception: its 30-record maximum makes 1464-byte datagrams, which every collector expects.
const MaxDatagram = 1400

// MaxV5Records is the most records a NetFlow v5 datagram may carry.
const MaxV5Records = 30

// Well-known collector ports, used for pcap framing and as the default destinations.
const (
	PortNetFlow = 2055
	PortIPFIX   = 4739
	PortSFlow   = 6343
)

var formatNames = [...]string{FormatV5: "v5", FormatV9: "v9", FormatIPFIX: "ipfix", FormatSFlow: "sflow"}

// ParseFormat accepts the command-line names v5, v9, ipfix and sflow (case-insensitive).
func ParseFormat(s string) (Format, error) {
	for f, name := range formatNames {
		if name != "" && strings.EqualFold(s, name) {
			return Format(f), nil
		}
	}
	return 0, fmt.Errorf("unknown format %q (want v5, v9, ipfix or sflow)", s)
}

func (f Format) String() string {
	if int(f) < len(formatNames) && formatNames[f] != "" {
		return formatNames[f]
	}
	return fmt.Sprintf("Format(%d)", uint8(f))
}

// Port returns the collector port conventionally used for the format.
func (f Format) Port() int {
	switch f {
	case FormatIPFIX:
		return PortIPFIX
	case FormatSFlow:
		return PortSFlow
	}
	return PortNetFlow
}

// Header is the per-datagram state an exporter writes into a datagram's header. Record
// counts and lengths are derived by the encoders.
type Header struct {
	// Boot is when the exporter booted (Unix ns). NetFlow sysUptime, flow start and end
	// times and the sFlow uptime are all milliseconds since Boot.
	Boot int64
	// Export is when the datagram is sent (Unix ns).
	Export int64
	// Sequence is the header sequence number. Its meaning differs by protocol: v5 counts
	// flows sent before this datagram, v9 counts datagrams, IPFIX counts data records
	// sent before this message, sFlow counts datagrams.
	Sequence uint32
	// Domain is the v9 source ID, the IPFIX observation domain or the sFlow sub-agent ID;
	// for v5 it is engine_type<<8 | engine_id.
	Domain uint32
	// Agent is the sFlow agent address (the other formats carry none).
	Agent netip.Addr
	// SamplingInterval is the raw v5 sampling_interval word (mode in the top two bits).
	SamplingInterval uint16
}

// uptime converts an absolute time to the exporter's milliseconds since boot. It wraps at
// 2^32 ms as real exporters' counters do.
func (h *Header) uptime(t int64) uint32 {
	return uint32((t - h.Boot) / 1e6)
}

func be16(b []byte, v uint16) []byte { return append(b, byte(v>>8), byte(v)) }
func be32(b []byte, v uint32) []byte {
	return append(b, byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
}
func be64(b []byte, v uint64) []byte {
	return append(b, byte(v>>56), byte(v>>48), byte(v>>40), byte(v>>32),
		byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
}

// sat32 saturates counters that a fixed 4-byte field cannot hold, as exporters do rather
// than wrapping to a small, misleading number.
func sat32(v uint64) uint32 {
	if v > 0xFFFFFFFF {
		return 0xFFFFFFFF
	}
	return uint32(v)
}

func sat16(v uint32) uint16 {
	if v > 0xFFFF {
		return 0xFFFF
	}
	return uint16(v)
}

// as16 maps 4-byte AS numbers to AS_TRANS (RFC 6793) where only two bytes exist.
func as16(v uint32) uint16 {
	if v > 0xFFFF {
		return 23456
	}
	return uint16(v)
}

func addr4(a netip.Addr) [4]byte {
	if a.Is4() || a.Is4In6() {
		return a.Unmap().As4()
	}
	return [4]byte{}
}

// is4 reports whether a record travels in an IPv4 template: both addresses IPv4 (or
// unset), since a template describes one address family.
func is4(srcAddr, dstAddr netip.Addr) bool {
	s := !srcAddr.IsValid() || srcAddr.Unmap().Is4()
	d := !dstAddr.IsValid() || dstAddr.Unmap().Is4()
	return s && d
}

// times returns a record's start and end, falling back to the export time for records
// that carry none, so that no encoder writes an uptime from before boot.
func times(start, end, export int64) (int64, int64) {
	if end == 0 {
		end = export
	}
	if start == 0 {
		start = end
	}
	return start, end
}

// addr16 returns an address as 16 bytes, all zero when unset.
func addr16(a netip.Addr) [16]byte {
	if !a.IsValid() {
		return [16]byte{}
	}
	return a.As16()
}

func errFormat(f Format) error { return fmt.Errorf("gen: unsupported format %v", f) }
