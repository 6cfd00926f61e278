// Package rules reads detection rules from YAML, validates them with file:line:column errors and embeds the default rule pack.
package rules

import (
	"fmt"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Rule is one detection rule as written in a rule file. A rule selects flows with Match,
// keys them into resources with GroupBy and Direction, aggregates them over a sliding
// Window and raises an anomaly on that resource when Threshold holds.
type Rule struct {
	Name        string             `yaml:"name" json:"name,omitempty"`               // [a-z0-9-]+, unique
	Kind        string             `yaml:"kind" json:"kind,omitempty"`               // signature | misuse | profiled | compound
	Description string             `yaml:"description" json:"description,omitempty"` // what the rule detects, one line
	References  []string           `yaml:"references" json:"references,omitempty"`   // URLs, CVEs, RFCs
	Match       Expr               `yaml:"match" json:"match,omitempty"`             // per-flow expression; empty matches every flow
	GroupBy     []string           `yaml:"group_by" json:"group_by,omitempty"`       // the resource: one of GroupByKeys
	Direction   string             `yaml:"direction" json:"direction,omitempty"`     // incoming | outgoing | internal | any
	Window      Duration           `yaml:"window" json:"window,omitempty"`           // sliding window the aggregates cover
	Threshold   Expr               `yaml:"threshold" json:"threshold,omitempty"`     // expression over the window's aggregates
	Limits      map[string]float64 `yaml:"limits" json:"limits,omitempty"`           // default per-host limits (LimitNames); config thresholds override them
	Importance  string             `yaml:"importance" json:"importance,omitempty"`   // low | medium | high
	For         Duration           `yaml:"for" json:"for,omitempty"`                 // the threshold must hold this long before the anomaly is raised
	Hold        Duration           `yaml:"hold" json:"hold,omitempty"`               // quiet time before an anomaly ends
	After       string             `yaml:"after" json:"after,omitempty"`             // compound: fires only if rule After fired on the same resource...
	Within      Duration           `yaml:"within" json:"within,omitempty"`           // ...within this long before
	MinSamples  int                `yaml:"min_samples" json:"min_samples,omitempty"` // sampled packets the window needs before it may fire
	Pos         Position           `yaml:"-" json:"-"`                               // where the rule starts

	keys map[string]Position // positions of the keys as written ("limits.syn_pps" for limit keys)
}

// Rule kinds.
const (
	KindSignature = "signature"
	KindMisuse    = "misuse"
	KindProfiled  = "profiled"
	KindCompound  = "compound"
)

// Kinds, GroupByKeys, Directions and Importances are the values those keys accept.
var (
	Kinds       = []string{KindSignature, KindMisuse, KindProfiled, KindCompound}
	GroupByKeys = []string{"dst_addr", "src_addr", "dst_prefix", "src_prefix", "in_if", "dst_port", "global"}
	Directions  = []string{"incoming", "outgoing", "internal", "any"}
	Importances = []string{"low", "medium", "high"}
)

// limitNames are the per-host limits a rule's threshold may read as limits.NAME and the
// configuration may set per host group. They are fixed so that a typo in a rule or a config
// file is an error rather than a silent zero.
var limitNames = []string{
	"pps", "bps", "fps", // all traffic to the resource
	"syn_pps",            // TCP SYN and SYN-ACK floods
	"rst_pps",            // TCP RST floods
	"ack_pps",            // TCP ACK and FIN-ACK floods
	"udp_pps",            // UDP floods
	"icmp_pps",           // ICMP floods
	"frag_pps",           // IP fragment floods
	"amp_bps", "amp_pps", // UDP reflection/amplification
	"scan_dsts", "scan_ports", // distinct destinations / ports per window for scans
}

// LimitNames returns the limit names rules and configuration may use.
func LimitNames() []string { return slices.Clone(limitNames) }

// IsLimitName reports whether name is one of LimitNames.
func IsLimitName(name string) bool { return slices.Contains(limitNames, name) }

// defaults returns a rule holding every default. Parse starts each rule from it, so a key
// written explicitly (even as zero) always wins over its default.
func defaults() Rule {
	return Rule{
		Kind:       KindMisuse, // KindCompound when after is set, see Parse
		GroupBy:    []string{"dst_addr"},
		Direction:  "incoming",
		Window:     Duration(10 * time.Second),
		Importance: "medium",
		Hold:       Duration(60 * time.Second),
		MinSamples: 10,
	}
}

// Bounds on durations: windows are kept per resource in one-second slots, so very long
// ones cost memory per host.
const (
	maxWindow = time.Hour
	maxHold   = 24 * time.Hour
)

var nameRE = regexp.MustCompile(`^[a-z0-9-]+$`)

// KeyPos returns where key (or "limits.NAME") was written, or the rule's position when the
// rule was not parsed from a file or does not have the key.
func (r *Rule) KeyPos(key string) Position {
	if p, ok := r.keys[key]; ok {
		return p
	}
	return r.Pos
}

// Validate checks one rule on its own: names, enumerations, durations and limits. The
// expressions are checked when they are compiled (package signatures), and references
// between rules by CheckSet.
func (r *Rule) Validate() error {
	var errs ErrorList
	bad := func(key, format string, args ...any) {
		errs = append(errs, &Error{Pos: r.KeyPos(key), Msg: key + ": " + fmt.Sprintf(format, args...)})
	}
	switch {
	case r.Name == "":
		errs = append(errs, &Error{Pos: r.Pos, Msg: "name: required"})
	case len(r.Name) > 64:
		bad("name", "%q is longer than 64 characters", r.Name)
	case !nameRE.MatchString(r.Name):
		bad("name", "%q may only contain a-z, 0-9 and -", r.Name)
	}
	if !slices.Contains(Kinds, r.Kind) {
		bad("kind", "%q is not one of %s", r.Kind, strings.Join(Kinds, ", "))
	}
	switch len(r.GroupBy) {
	case 0:
		bad("group_by", "empty: give one of %s", strings.Join(GroupByKeys, ", "))
	case 1:
		if !slices.Contains(GroupByKeys, r.GroupBy[0]) {
			bad("group_by", "%q is not one of %s", r.GroupBy[0], strings.Join(GroupByKeys, ", "))
		}
	default:
		bad("group_by", "one key is supported, got %d", len(r.GroupBy))
	}
	if !slices.Contains(Directions, r.Direction) {
		bad("direction", "%q is not one of %s", r.Direction, strings.Join(Directions, ", "))
	}
	if w := time.Duration(r.Window); w < time.Second || w > maxWindow || w%time.Second != 0 {
		bad("window", "%v: must be whole seconds from 1s to %v", w, maxWindow)
	}
	if strings.TrimSpace(r.Threshold.Source) == "" {
		pos := r.Pos
		if p, ok := r.keys["threshold"]; ok {
			pos = p
		}
		errs = append(errs, &Error{Pos: pos, Msg: "threshold: required (an expression over the window's aggregates, e.g. pps > limits.syn_pps)"})
	}
	for _, name := range sortedKeys(r.Limits) {
		v := r.Limits[name]
		key := "limits." + name
		switch {
		case !IsLimitName(name):
			errs = append(errs, &Error{Pos: r.KeyPos(key), Msg: fmt.Sprintf("limits: unknown limit %q (known: %s)", name, strings.Join(limitNames, ", "))})
		case !(v > 0) || math.IsInf(v, 0):
			errs = append(errs, &Error{Pos: r.KeyPos(key), Msg: fmt.Sprintf("limits: %s: %v: must be a positive number", name, v)})
		}
	}
	if !slices.Contains(Importances, r.Importance) {
		bad("importance", "%q is not one of %s", r.Importance, strings.Join(Importances, ", "))
	}
	if d := time.Duration(r.For); d < 0 || d > maxWindow {
		bad("for", "%v: must be from 0 to %v", d, maxWindow)
	}
	if d := time.Duration(r.Hold); d < 0 || d > maxHold {
		bad("hold", "%v: must be from 0 to %v", d, maxHold)
	}
	if r.MinSamples < 0 {
		bad("min_samples", "%d: must not be negative", r.MinSamples)
	}
	switch {
	case r.Kind == KindCompound && r.After == "":
		errs = append(errs, &Error{Pos: r.KeyPos("kind"), Msg: "kind: compound rules need after: RULE and within: DURATION"})
	case r.Kind != KindCompound && r.After != "":
		bad("after", "only compound rules have after (set kind: compound)")
	case r.After != "" && r.After == r.Name:
		bad("after", "a rule cannot follow itself")
	}
	if r.Kind == KindCompound {
		if d := time.Duration(r.Within); r.After != "" && (d < time.Second || d > maxHold) {
			pos := r.KeyPos("within")
			if _, ok := r.keys["within"]; !ok {
				pos = r.KeyPos("after")
			}
			errs = append(errs, &Error{Pos: pos, Msg: fmt.Sprintf("within: %v: compound rules need a duration from 1s to %v", d, maxHold)})
		}
	} else if r.Within != 0 {
		bad("within", "only compound rules have within (set kind: compound)")
	}
	return errs.err()
}

// CheckSet validates every rule and what only a whole set can tell: unique names and
// compound rules that follow an existing rule without a cycle.
func CheckSet(rs []Rule) error {
	var errs ErrorList
	byName := make(map[string]int, len(rs))
	for i := range rs {
		r := &rs[i]
		if err := r.Validate(); err != nil {
			errs = append(errs, asList(err)...)
		}
		if r.Name == "" {
			continue
		}
		if j, dup := byName[r.Name]; dup {
			errs = append(errs, &Error{Pos: r.KeyPos("name"), Msg: fmt.Sprintf("name: duplicate rule %q (first defined at %s)", r.Name, rs[j].KeyPos("name"))})
			continue
		}
		byName[r.Name] = i
	}
	for i := range rs {
		r := &rs[i]
		if r.After == "" || r.After == r.Name {
			continue
		}
		if _, ok := byName[r.After]; !ok {
			errs = append(errs, &Error{Pos: r.KeyPos("after"), Msg: fmt.Sprintf("after: no rule named %q", r.After)})
			continue
		}
		// Follow the chain: a cycle would make every rule in it wait for another forever.
		seen := map[string]bool{r.Name: true}
		for next := r.After; next != ""; {
			if seen[next] {
				errs = append(errs, &Error{Pos: r.KeyPos("after"), Msg: fmt.Sprintf("after: %q leads back to %q (a cycle)", r.After, next)})
				break
			}
			seen[next] = true
			j, ok := byName[next]
			if !ok {
				break
			}
			next = rs[j].After
		}
	}
	errs.sort()
	return errs.err()
}

// Merge returns base with the rules of each extra set appended, where an extra rule whose
// name is already present replaces that rule in place. This is how an operator tunes a
// default rule: a file with a rule of the same name.
func Merge(base []Rule, extra ...[]Rule) []Rule {
	out := slices.Clone(base)
	at := make(map[string]int, len(out))
	for i := range out {
		at[out[i].Name] = i
	}
	for _, set := range extra {
		for _, r := range set {
			if i, ok := at[r.Name]; ok {
				out[i] = r
				continue
			}
			at[r.Name] = len(out)
			out = append(out, r)
		}
	}
	return out
}

// Position is a place in a rule file. Line and Column start at 1; Column counts characters.
type Position struct {
	File         string
	Line, Column int
}

// String returns "file:line:col", or less when parts are unknown.
func (p Position) String() string {
	file := p.File
	if file == "" {
		file = "<rule>"
	}
	if p.Line <= 0 {
		return file
	}
	return file + ":" + strconv.Itoa(p.Line) + ":" + strconv.Itoa(p.Column)
}

// Duration is a time.Duration written as "10s", "1m30s" in YAML.
type Duration time.Duration

// String returns the duration as time.Duration prints it.
func (d Duration) String() string { return time.Duration(d).String() }

// MarshalText writes "10s" rather than nanoseconds.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText reads what MarshalText writes.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	*d = Duration(v)
	return err
}

// Error is one problem in a rule file.
type Error struct {
	Pos Position
	Msg string
}

func (e *Error) Error() string { return e.Pos.String() + ": " + e.Msg }

// ErrorList holds every problem found in a set of rule files, one per line, so that an
// operator fixes them all in one go.
type ErrorList []*Error

func (l ErrorList) Error() string {
	var b strings.Builder
	for i, e := range l {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(e.Error())
	}
	return b.String()
}

// Unwrap lets errors.As find the individual errors.
func (l ErrorList) Unwrap() []error {
	out := make([]error, len(l))
	for i, e := range l {
		out[i] = e
	}
	return out
}

func (l ErrorList) err() error {
	if len(l) == 0 {
		return nil
	}
	return l
}

// sort orders the errors by file and position, keeping the order of errors at one place.
func (l ErrorList) sort() {
	slices.SortStableFunc(l, func(a, b *Error) int {
		if c := strings.Compare(a.Pos.File, b.Pos.File); c != 0 {
			return c
		}
		if a.Pos.Line != b.Pos.Line {
			return a.Pos.Line - b.Pos.Line
		}
		return a.Pos.Column - b.Pos.Column
	})
}

// asList flattens an error from this package into its parts.
func asList(err error) ErrorList {
	switch e := err.(type) {
	case nil:
		return nil
	case ErrorList:
		return e
	case *Error:
		return ErrorList{e}
	}
	return ErrorList{{Msg: err.Error()}}
}

func sortedKeys(m map[string]float64) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
