package baseline

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Kind is the type of resource a key stands for.
type Kind uint8

// Resource kinds. Their text is the "type" of DESIGN.md's resource objects.
const (
	KindInterface Kind = iota + 1
	KindPrefix
	KindHost
	KindPort
	KindGlobal
)

var kindNames = [...]string{"", "interface", "prefix", "host", "port", "global"}

func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// ParseKind returns the kind named s ("interface", "prefix", "host", "port", "global").
func ParseKind(s string) (Kind, error) {
	for i := 1; i < len(kindNames); i++ {
		if kindNames[i] == s {
			return Kind(i), nil
		}
	}
	return 0, fmt.Errorf("unknown resource type %q (want interface, prefix, host, port or global)", s)
}

// MarshalText makes kinds appear by name in JSON.
func (k Kind) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// Direction says which way the counted traffic flows relative to the key.
type Direction uint8

// Directions. For interfaces, DirIn counts traffic that entered the router through the
// interface (its in_if) and DirOut traffic that left through it (out_if). For prefixes and
// hosts, DirIn counts traffic to them and DirOut traffic from them. Global and port keys
// take the direction of the flow relative to the monitored networks, where internal means
// both ends are monitored.
const (
	DirIn Direction = iota + 1
	DirOut
	DirInternal
)

var dirNames = [...]string{"", "incoming", "outgoing", "internal"}

func (d Direction) String() string {
	if int(d) < len(dirNames) {
		return dirNames[d]
	}
	return "direction(" + strconv.Itoa(int(d)) + ")"
}

// ParseDirection accepts "incoming", "outgoing", "internal" and the short forms in, out.
func ParseDirection(s string) (Direction, error) {
	switch s {
	case "incoming", "in":
		return DirIn, nil
	case "outgoing", "out":
		return DirOut, nil
	case "internal":
		return DirInternal, nil
	}
	return 0, fmt.Errorf("unknown direction %q (want incoming, outgoing or internal)", s)
}

// MarshalText makes directions appear by name in JSON.
func (d Direction) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// Key identifies one baselined resource. It is a comparable value of 32 bytes so that it can
// be hashed and compared without allocation on the per-flow path.
type Key struct {
	Addr  netip.Addr // host address, prefix address (masked), interface exporter
	Index uint32     // interface ifIndex, or port number for port keys
	Bits  uint8      // prefix length
	Proto uint8      // IP protocol of a port key
	Kind  Kind
	Dir   Direction
}

// HostKey returns the key of a host.
func HostKey(a netip.Addr, d Direction) Key {
	return Key{Kind: KindHost, Dir: d, Addr: a.Unmap()}
}

// PrefixKey returns the key of a prefix; the prefix is masked.
func PrefixKey(p netip.Prefix, d Direction) Key {
	p = p.Masked()
	a := p.Addr()
	bits := p.Bits()
	if a.Is4In6() {
		a = a.Unmap()
		bits -= 96
	}
	return Key{Kind: KindPrefix, Dir: d, Addr: a, Bits: uint8(bits)}
}

// InterfaceKey returns the key of an exporter's interface.
func InterfaceKey(exporter netip.Addr, ifIndex uint32, d Direction) Key {
	return Key{Kind: KindInterface, Dir: d, Addr: exporter.Unmap(), Index: ifIndex}
}

// PortKey returns the key of a protocol/destination-port class. The port is ignored for
// protocols without ports.
func PortKey(proto uint8, port uint16, d Direction) Key {
	if !hasPorts(proto) {
		port = 0
	}
	return Key{Kind: KindPort, Dir: d, Proto: proto, Index: uint32(port)}
}

// GlobalKey returns the key of all monitored traffic in one direction.
func GlobalKey(d Direction) Key { return Key{Kind: KindGlobal, Dir: d} }

// Prefix returns the prefix of a prefix key.
func (k Key) Prefix() netip.Prefix { return netip.PrefixFrom(k.Addr, int(k.Bits)) }

// String returns the canonical resource text of DESIGN.md: a host is its address, a prefix
// its CIDR, an interface EXPORTER:IFINDEX, a port class proto/port ("udp/53", or the protocol
// alone for protocols without ports: "icmp", "gre", "ip/89"), the global key "global".
// The direction is not part of the text.
func (k Key) String() string { return string(k.AppendText(nil)) }

// AppendText appends the canonical text of k to b.
func (k Key) AppendText(b []byte) []byte {
	switch k.Kind {
	case KindHost:
		return k.Addr.AppendTo(b)
	case KindPrefix:
		b = k.Addr.AppendTo(b)
		b = append(b, '/')
		return strconv.AppendUint(b, uint64(k.Bits), 10)
	case KindInterface:
		b = k.Addr.AppendTo(b)
		b = append(b, ':')
		return strconv.AppendUint(b, uint64(k.Index), 10)
	case KindPort:
		if name := protoNames[k.Proto]; name != "" {
			b = append(b, name...)
		} else {
			b = append(b, "ip/"...)
			return strconv.AppendUint(b, uint64(k.Proto), 10)
		}
		if hasPorts(k.Proto) {
			b = append(b, '/')
			b = strconv.AppendUint(b, uint64(k.Index), 10)
		}
		return b
	case KindGlobal:
		return append(b, "global"...)
	}
	return append(b, "invalid"...)
}

var protoNames = [256]string{1: "icmp", 6: "tcp", 17: "udp", 47: "gre", 50: "esp", 51: "ah", 58: "icmpv6", 132: "sctp"}

func hasPorts(proto uint8) bool { return proto == 6 || proto == 17 || proto == 132 }

// ParseKey parses the canonical text of a key of the given type ("host", "prefix",
// "interface", "port", "global"). The text names no direction, so the key gets DirIn; use
// WithDir for another. An interface text may also be written [IPv6]:IFINDEX.
func ParseKey(kind, text string) (Key, error) {
	kd, err := ParseKind(kind)
	if err != nil {
		return Key{}, err
	}
	k := Key{Kind: kd, Dir: DirIn}
	switch kd {
	case KindHost:
		a, err := netip.ParseAddr(text)
		if err != nil {
			return Key{}, fmt.Errorf("host key %q: %w", text, err)
		}
		if a.Zone() != "" {
			return Key{}, fmt.Errorf("host key %q: zones are not allowed", text)
		}
		k.Addr = a.Unmap()
	case KindPrefix:
		p, err := netip.ParsePrefix(text)
		if err != nil {
			return Key{}, fmt.Errorf("prefix key %q: %w", text, err)
		}
		if p.Masked() != p {
			return Key{}, fmt.Errorf("prefix key %q: host bits set (canonical form %s)", text, p.Masked())
		}
		k = PrefixKey(p, DirIn)
	case KindInterface:
		i := strings.LastIndexByte(text, ':')
		if i <= 0 {
			return Key{}, fmt.Errorf("interface key %q: want EXPORTER:IFINDEX", text)
		}
		as := text[:i]
		if strings.HasPrefix(as, "[") && strings.HasSuffix(as, "]") {
			as = as[1 : len(as)-1]
		}
		a, err := netip.ParseAddr(as)
		if err != nil {
			return Key{}, fmt.Errorf("interface key %q: exporter: %w", text, err)
		}
		n, err := strconv.ParseUint(text[i+1:], 10, 32)
		if err != nil {
			return Key{}, fmt.Errorf("interface key %q: ifindex: %w", text, err)
		}
		k.Addr, k.Index = a.Unmap(), uint32(n)
	case KindPort:
		name, port, hasPort := strings.Cut(text, "/")
		proto := -1
		if name == "ip" && hasPort {
			n, err := strconv.ParseUint(port, 10, 8)
			if err != nil {
				return Key{}, fmt.Errorf("port key %q: protocol number: %w", text, err)
			}
			proto, hasPort = int(n), false
		} else {
			for i, s := range protoNames {
				if s != "" && s == name {
					proto = i
				}
			}
			if proto < 0 {
				return Key{}, fmt.Errorf("port key %q: unknown protocol %q (want tcp/N, udp/N, sctp/N, icmp, icmpv6, gre, esp, ah or ip/N)", text, name)
			}
			if hasPorts(uint8(proto)) != hasPort {
				if hasPort {
					return Key{}, fmt.Errorf("port key %q: %s has no ports", text, name)
				}
				return Key{}, fmt.Errorf("port key %q: want %s/PORT", text, name)
			}
		}
		k.Proto = uint8(proto)
		if hasPort {
			n, err := strconv.ParseUint(port, 10, 16)
			if err != nil {
				return Key{}, fmt.Errorf("port key %q: port: %w", text, err)
			}
			k.Index = uint32(n)
		}
	case KindGlobal:
		if text != "global" && text != "" {
			return Key{}, fmt.Errorf("global key %q: want \"global\"", text)
		}
	}
	return k, nil
}

// WithDir returns k with direction d.
func (k Key) WithDir(d Direction) Key { k.Dir = d; return k }

// appendBinary appends a compact, self-delimiting encoding of k used by snapshots.
func (k Key) appendBinary(b []byte) []byte {
	b = append(b, byte(k.Kind), byte(k.Dir), k.Bits, k.Proto)
	b = binary.BigEndian.AppendUint32(b, k.Index)
	switch {
	case k.Addr.Is4():
		a := k.Addr.As4()
		b = append(b, 4)
		b = append(b, a[:]...)
	case k.Addr.Is6():
		a := k.Addr.As16()
		b = append(b, 16)
		b = append(b, a[:]...)
	default:
		b = append(b, 0)
	}
	return b
}

var errShort = errors.New("truncated record")

// readKey decodes a key written by appendBinary and returns the rest of b.
func readKey(b []byte) (Key, []byte, error) {
	if len(b) < 9 {
		return Key{}, nil, errShort
	}
	k := Key{Kind: Kind(b[0]), Dir: Direction(b[1]), Bits: b[2], Proto: b[3], Index: binary.BigEndian.Uint32(b[4:])}
	n := int(b[8])
	b = b[9:]
	if len(b) < n {
		return Key{}, nil, errShort
	}
	switch n {
	case 0:
	case 4:
		k.Addr = netip.AddrFrom4([4]byte(b[:4]))
	case 16:
		k.Addr = netip.AddrFrom16([16]byte(b[:16]))
	default:
		return Key{}, nil, fmt.Errorf("bad address length %d", n)
	}
	if k.Kind < KindInterface || k.Kind > KindGlobal || k.Dir < DirIn || k.Dir > DirInternal {
		return Key{}, nil, fmt.Errorf("bad key kind %d or direction %d", k.Kind, k.Dir)
	}
	return k, b[n:], nil
}
