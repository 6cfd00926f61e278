package signatures

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/expr-lang/expr"
)

// The match helpers. expr has no & operator, so TCP flags are tested with flag() and
// only_flags() (or the builtin bitand); the letters follow tcpdump and nfdump.

// flagLetters maps flag letters to TCP flag bits: FIN SYN RST PSH ACK URG ECE CWR.
var flagLetters = map[rune]uint8{'F': 0x01, 'S': 0x02, 'R': 0x04, 'P': 0x08, 'A': 0x10, 'U': 0x20, 'E': 0x40, 'C': 0x80}

// onlyFlagLetters are the flags only_flags() compares; the ECN bits (E, C) are ignored so
// that an ECN-capable SYN is still "only SYN".
var onlyFlagLetters = map[rune]uint8{'F': 0x01, 'S': 0x02, 'R': 0x04, 'P': 0x08, 'A': 0x10, 'U': 0x20}

const onlyFlagsMask = 0x3f

// helperNames are the functions rules may call besides expr's numeric builtins.
var helperNames = map[string]struct{}{"in_net": {}, "flag": {}, "only_flags": {}, "port_class": {}}

func flagMask(letters string, allowed map[rune]uint8) (uint8, error) {
	var m uint8
	for _, r := range letters {
		bit, ok := allowed[r]
		if !ok {
			valid := "FSRPAUEC"
			if len(allowed) == len(onlyFlagLetters) {
				valid = "FSRPAU"
			}
			return 0, fmt.Errorf("unknown flag letter %q in %q (use %s)", r, letters, valid)
		}
		m |= bit
	}
	return m, nil
}

func parsePrefix(s string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return p, fmt.Errorf("%q is not a prefix such as 192.0.2.0/24", s)
	}
	return p.Masked(), nil
}

// portClass names the IANA port ranges (RFC 6335).
func portClass(p int64) string {
	switch {
	case p < 0 || p > 65535:
		return ""
	case p < 1024:
		return "well-known"
	case p < 49152:
		return "registered"
	}
	return "ephemeral"
}

// helperOptions declare the helpers to expr: their types for the checker, and slow but
// straightforward implementations that the tests run through expr's VM as the reference.
func helperOptions() []expr.Option {
	return []expr.Option{
		expr.Function("in_net", func(args ...any) (any, error) {
			s, _ := args[0].(string)
			cidr, _ := args[1].(string)
			p, err := parsePrefix(cidr)
			if err != nil {
				return nil, err
			}
			a, err := parseAddr(s)
			if err != nil {
				return false, nil
			}
			return p.Contains(a), nil
		}, new(func(string, string) bool)),
		expr.Function("flag", func(args ...any) (any, error) {
			m, err := flagArgs(args)
			if err != nil {
				return nil, err
			}
			if m.letters == 0 {
				return nil, errors.New("flag: no letters")
			}
			return m.flags&m.letters == m.letters, nil
		}, new(func(int, string) bool)),
		expr.Function("only_flags", func(args ...any) (any, error) {
			x, _ := args[0].(int)
			letters, _ := args[1].(string)
			m, err := flagMask(letters, onlyFlagLetters)
			if err != nil {
				return nil, err
			}
			return x&onlyFlagsMask == int(m), nil
		}, new(func(int, string) bool)),
		expr.Function("port_class", func(args ...any) (any, error) {
			x, _ := args[0].(int)
			return portClass(int64(x)), nil
		}, new(func(int) string)),
	}
}

type flagArg struct{ flags, letters int }

func flagArgs(args []any) (flagArg, error) {
	x, _ := args[0].(int)
	letters, _ := args[1].(string)
	m, err := flagMask(letters, flagLetters)
	return flagArg{flags: x, letters: int(m)}, err
}
