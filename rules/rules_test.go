package rules

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name, src, want string
	}{
		{"unknown field", "- name: x\n  sevrity: high\n  threshold: pps > 1\n",
			`t.yaml:2:3: unknown field "sevrity"`},
		{"unknown field with suggestion", "- name: x\n  importnce: high\n  threshold: pps > 1\n",
			`t.yaml:2:3: unknown field "importnce" (did you mean "importance"?)`},
		{"syntax error", "- name: 'x\n",
			`t.yaml:1:9: could not find end character of single-quoted text`},
		{"tab indentation", "- name: x\n\tthreshold: pps > 1\n",
			"t.yaml:2:1: found character '\t' that cannot start any token"},
		{"not a list", "name: x\n",
			`t.yaml:1:5: a rule file is a YAML list of rules (- name: ...), not a mapping`},
		{"rule not a mapping", "- x\n",
			`t.yaml:1:3: a rule is a mapping (name: ..., match: ...), not a scalar`},
		{"duration without unit", "- name: x\n  window: 10\n  threshold: pps > 1\n",
			`t.yaml:2:11: window: 10 needs a unit, as in 10s`},
		{"bad duration", "- name: x\n  hold: soon\n  threshold: pps > 1\n",
			`t.yaml:2:9: hold: "soon" is not a duration (use 10s, 1m30s, 2h)`},
		{"integer expected", "- name: x\n  threshold: pps > 1\n  min_samples: abc\n",
			`t.yaml:3:16: min_samples: want an integer, not "abc"`},
		{"list expected", "- name: x\n  threshold: pps > 1\n  references: {a: 1}\n",
			`t.yaml:3:15: references: want a list of strings, not a mapping`},
		{"limit not a number", "- name: x\n  threshold: pps > 1\n  limits: {syn_pps: \"5\"}\n",
			`t.yaml:3:21: limits: syn_pps: want a number, not "5"`},
		{"unknown limit", "- name: x\n  threshold: pps > 1\n  limits:\n    syn_pps: 5\n    sin_pps: 5\n",
			`t.yaml:5:5: limits: unknown limit "sin_pps" (known: pps, bps, fps, syn_pps, rst_pps, ack_pps, udp_pps, icmp_pps, frag_pps, amp_bps, amp_pps, scan_dsts, scan_ports)`},
		{"negative limit", "- name: x\n  threshold: pps > 1\n  limits: {syn_pps: -5}\n",
			`t.yaml:3:12: limits: syn_pps: -5: must be a positive number`},
		{"bad kind", "- name: x\n  kind: worm\n  threshold: pps > 1\n",
			`t.yaml:2:3: kind: "worm" is not one of signature, misuse, profiled, compound`},
		{"bad name", "- name: Slammer_1\n  threshold: pps > 1\n",
			`t.yaml:1:3: name: "Slammer_1" may only contain a-z, 0-9 and -`},
		{"missing name", "- threshold: pps > 1\n",
			`t.yaml:1:3: name: required`},
		{"missing threshold", "- name: x\n  match: proto == 6\n",
			`t.yaml:1:3: threshold: required (an expression over the window's aggregates, e.g. pps > limits.syn_pps)`},
		{"bad group_by", "- name: x\n  threshold: pps > 1\n  group_by: [src_host]\n",
			`t.yaml:3:3: group_by: "src_host" is not one of dst_addr, src_addr, dst_prefix, src_prefix, in_if, dst_port, global`},
		{"two group_by keys", "- name: x\n  threshold: pps > 1\n  group_by: [src_addr, dst_port]\n",
			`t.yaml:3:3: group_by: one key is supported, got 2`},
		{"bad direction", "- name: x\n  threshold: pps > 1\n  direction: inbound\n",
			`t.yaml:3:3: direction: "inbound" is not one of incoming, outgoing, internal, any`},
		{"bad importance", "- name: x\n  threshold: pps > 1\n  importance: critical\n",
			`t.yaml:3:3: importance: "critical" is not one of low, medium, high`},
		{"window bounds", "- name: x\n  threshold: pps > 1\n  window: 1500ms\n",
			`t.yaml:3:3: window: 1.5s: must be whole seconds from 1s to 1h0m0s`},
		{"compound without after", "- name: x\n  threshold: pps > 1\n  kind: compound\n",
			`t.yaml:3:3: kind: compound rules need after: RULE and within: DURATION`},
		{"compound without within", "- name: x\n  threshold: pps > 1\n  after: y\n",
			`t.yaml:3:3: within: 0s: compound rules need a duration from 1s to 24h0m0s`},
		{"after on a misuse rule", "- name: x\n  kind: misuse\n  threshold: pps > 1\n  after: y\n  within: 10s\n",
			"t.yaml:4:3: after: only compound rules have after (set kind: compound)\nt.yaml:5:3: within: only compound rules have within (set kind: compound)"},
		{"after itself", "- name: x\n  threshold: pps > 1\n  after: x\n  within: 10s\n",
			`t.yaml:3:3: after: a rule cannot follow itself`},
		{"duplicate key", "- name: x\n  window: 10s\n  window: 5s\n  threshold: pps > 1\n",
			`t.yaml:3:3: mapping key "window" already defined at [2:3]`},
		{"duplicate name", "- name: x\n  threshold: pps > 1\n- name: x\n  threshold: pps > 2\n",
			`t.yaml:3:3: name: duplicate rule "x" (first defined at t.yaml:1:3)`},
		{"alias", "- &a\n  name: x\n  threshold: pps > 1\n- *a\n",
			`t.yaml:4:3: aliases (*name) are not supported in rule files`},
		{"merge key", "- name: x\n  threshold: pps > 1\n  <<: {a: 1}\n",
			`t.yaml:3:3: merge keys (<<) are not supported in rule files`},
		{"several errors", "- name: x\n  threshold: pps > 1\n  window: 2h\n  hold: -5s\n",
			"t.yaml:3:3: window: 2h0m0s: must be whole seconds from 1s to 1h0m0s\nt.yaml:4:3: hold: -5s: must be from 0 to 24h0m0s"},
		{"errors in two rules", "- name: x\n  threshold: pps > 1\n  kind: worm\n- name: y\n  treshold: pps > 1\n",
			"t.yaml:3:3: kind: \"worm\" is not one of signature, misuse, profiled, compound\nt.yaml:5:3: unknown field \"treshold\" (did you mean \"threshold\"?)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rs, err := Parse("t.yaml", []byte(tt.src))
			if err == nil {
				t.Fatalf("no error, got %d rules", len(rs))
			}
			if got := err.Error(); got != tt.want {
				t.Errorf("error\n got: %s\nwant: %s", got, tt.want)
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Errorf("errors.As(*Error) failed on %T", err)
			}
		})
	}
}

func TestParseReturnsValidRulesWithErrors(t *testing.T) {
	rs, err := Parse("t.yaml", []byte("- name: good\n  threshold: pps > 1\n- name: bad\n  kind: nope\n  threshold: pps > 1\n"))
	if err == nil || len(rs) != 1 || rs[0].Name != "good" {
		t.Errorf("got %d rules, %v", len(rs), err)
	}
}

func TestJSON(t *testing.T) {
	r := Default()[0]
	b, err := json.Marshal(struct {
		Match  Expr
		Window Duration
	}{r.Match, r.Window})
	if err != nil {
		t.Fatal(err)
	}
	want := `{"Match":` + strconv.Quote(r.Match.Source) + `,"Window":"10s"}`
	if string(b) != want {
		t.Errorf("got %s, want %s", b, want)
	}
	var back struct {
		Match  Expr
		Window Duration
	}
	if err := json.Unmarshal(b, &back); err != nil || back.Match.Source != r.Match.Source || back.Window != r.Window {
		t.Errorf("round trip: %+v %v", back, err)
	}
}

func TestParseDefaultsAndValues(t *testing.T) {
	src := `
# a comment
- name: a
  threshold: pps > 1
- name: b
  kind: signature
  description: d
  references: [x, y]
  match: proto == 17
  group_by: src_addr
  direction: outgoing
  window: 1m
  threshold: pps > limits.udp_pps
  limits: {udp_pps: 1e4}
  importance: high
  for: 5s
  hold: 0
  min_samples: 0
- name: c
  after: b
  within: 60s
  threshold: pps > 0
`
	rs, err := Parse("t.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 3 {
		t.Fatalf("got %d rules", len(rs))
	}
	a, b, c := rs[0], rs[1], rs[2]
	if a.Kind != KindMisuse || !slices.Equal(a.GroupBy, []string{"dst_addr"}) || a.Direction != "incoming" ||
		a.Window != Duration(10*time.Second) || a.Importance != "medium" || a.Hold != Duration(time.Minute) ||
		a.MinSamples != 10 || a.For != 0 || !a.Match.IsEmpty() {
		t.Errorf("defaults not applied: %+v", a)
	}
	if a.Pos.String() != "t.yaml:3:3" {
		t.Errorf("rule position %s", a.Pos)
	}
	if b.Kind != KindSignature || b.Description != "d" || !slices.Equal(b.References, []string{"x", "y"}) ||
		b.Match.Source != "proto == 17" || !slices.Equal(b.GroupBy, []string{"src_addr"}) ||
		b.Direction != "outgoing" || b.Window != Duration(time.Minute) || b.Limits["udp_pps"] != 1e4 ||
		b.Importance != "high" || b.For != Duration(5*time.Second) || b.Hold != 0 || b.MinSamples != 0 {
		t.Errorf("values not read: %+v", b)
	}
	if got := b.KeyPos("limits.udp_pps").String(); got != "t.yaml:14:12" {
		t.Errorf("limit key position %s", got)
	}
	if b.Match.Pos.String() != "t.yaml:9:10" || b.Threshold.Pos.String() != "t.yaml:13:14" {
		t.Errorf("expression positions %s %s", b.Match.Pos, b.Threshold.Pos)
	}
	if c.Kind != KindCompound || c.After != "b" || c.Within != Duration(time.Minute) {
		t.Errorf("compound: %+v", c)
	}
	for _, empty := range []string{"", "# nothing\n", "---\n"} {
		if rs, err := Parse("e.yaml", []byte(empty)); err != nil || len(rs) != 0 {
			t.Errorf("%q: %d rules, %v", empty, len(rs), err)
		}
	}
}

// TestExprPosAt checks that an offset inside an expression maps to the right file position
// for every way YAML can write a scalar: the marker's position in the file must be where
// PosAt puts the marker's offset in the value.
func TestExprPosAt(t *testing.T) {
	tests := []struct{ name, value string }{
		{"plain", `proto == 6 && MARK > 1`},
		{"double quoted", `"proto == 6 && MARK > 1"`},
		{"double quoted with escapes", `"flag(tcp_flags, \"S\") && MARK"`},
		{"single quoted", `'flag(tcp_flags, ''S'') && MARK'`},
		{"folded plain", "proto == 6\n    && dst_port == 80\n    && MARK"},
		{"literal block", "|\n    proto == 6\n      && MARK > 1"},
		{"folded block", ">-\n    proto == 6 &&\n    MARK > 1"},
		{"non-ASCII before", `port_class(1) == "é" && MARK`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := "- name: x\n  threshold: pps > 1\n  match: " + tt.value + "\n"
			rs, err := Parse("t.yaml", []byte(src))
			if err != nil {
				t.Fatal(err)
			}
			e := rs[0].Match
			off := runeIndex(e.Source, "MARK")
			if off < 0 {
				t.Fatalf("marker not in %q", e.Source)
			}
			want := filePos(src, "MARK")
			if got := e.PosAt(off); got != want {
				t.Errorf("PosAt(%d) = %s, want %s (value %q)", off, got, want, e.Source)
			}
			// Pos is the first character of the value: "proto" or "flag", after any quote
			// or block header.
			start := strings.Index(src, "match:") + len("match:")
			first := strings.Fields(e.Source)[0][:2]
			if got, want := e.Pos, posOfIndex(src, start+strings.Index(src[start:], first)); got != want {
				t.Errorf("Pos = %s, want %s", got, want)
			}
		})
	}
	// Expressions built in Go count from their Pos.
	e := Expr{Source: "a &&\n b", Pos: Position{File: "x", Line: 3, Column: 5}}
	if got := e.PosAt(6).String(); got != "x:4:2" {
		t.Errorf("plain PosAt = %s", got)
	}
}

func runeIndex(s, sub string) int {
	i := strings.Index(s, sub)
	if i < 0 {
		return -1
	}
	return len([]rune(s[:i]))
}

// filePos is the 1-based line and character column of sub's first occurrence in src.
func filePos(src, sub string) Position { return posOfIndex(src, strings.Index(src, sub)) }

func posOfIndex(src string, i int) Position {
	before := src[:i]
	line := strings.Count(before, "\n") + 1
	col := len([]rune(before[strings.LastIndex(before, "\n")+1:])) + 1
	return Position{File: "t.yaml", Line: line, Column: col}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	write := func(name, src string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	a := write("a.yaml", "- name: a\n  threshold: pps > 1\n")
	write("b.yaml", "- name: b\n  threshold: pps > 2\n")
	rs, err := Load(filepath.Join(dir, "*.yaml"))
	if err != nil || len(rs) != 2 || rs[0].Name != "a" || rs[1].Name != "b" {
		t.Fatalf("glob: %v %v", rs, err)
	}
	if rs, err := Load(filepath.Join(dir, "*.none")); err != nil || len(rs) != 0 {
		t.Errorf("empty glob: %v %v", rs, err)
	}
	if _, err := Load(filepath.Join(dir, "missing.yaml")); err == nil {
		t.Error("missing file: no error")
	}
	c := write("c.yaml", "- name: a\n  threshold: pps > 3\n")
	_, err = Load(a, c)
	if want := c + `:1:3: name: duplicate rule "a" (first defined at ` + a + `:1:3)`; err == nil || err.Error() != want {
		t.Errorf("duplicate across files:\n got: %v\nwant: %s", err, want)
	}
	bad := write("d.yaml", "- name: d\n  threshold: pps > 1\n  kind: nope\n")
	_, err = Load(a, bad)
	if err == nil || !strings.HasPrefix(err.Error(), bad+":3:3: kind:") {
		t.Errorf("bad file: %v", err)
	}
}

func TestCheckSet(t *testing.T) {
	parse := func(src string) []Rule {
		rs, err := Parse("s.yaml", []byte(src))
		if err != nil {
			t.Fatal(err)
		}
		return rs
	}
	ok := parse("- name: a\n  threshold: pps > 1\n- name: b\n  after: a\n  within: 1m\n  threshold: pps > 1\n")
	if err := CheckSet(ok); err != nil {
		t.Errorf("valid set: %v", err)
	}
	missing := parse("- name: b\n  after: a\n  within: 1m\n  threshold: pps > 1\n")
	if err := CheckSet(missing); err == nil || err.Error() != `s.yaml:2:3: after: no rule named "a"` {
		t.Errorf("missing after: %v", err)
	}
	cycle := parse("- name: a\n  after: b\n  within: 1m\n  threshold: pps > 1\n- name: b\n  after: a\n  within: 1m\n  threshold: pps > 1\n")
	want := "s.yaml:2:3: after: \"b\" leads back to \"a\" (a cycle)\ns.yaml:6:3: after: \"a\" leads back to \"b\" (a cycle)"
	if err := CheckSet(cycle); err == nil || err.Error() != want {
		t.Errorf("cycle:\n got: %v\nwant: %s", err, want)
	}
	dup := append(parse("- name: a\n  threshold: pps > 1\n"), Default()[0])
	dup[1].Name = "a"
	if err := CheckSet(dup); err == nil || !strings.Contains(err.Error(), `name: duplicate rule "a" (first defined at s.yaml:1:3)`) {
		t.Errorf("duplicate: %v", err)
	}
}

func TestMerge(t *testing.T) {
	base := []Rule{{Name: "a", Description: "1"}, {Name: "b"}}
	got := Merge(base, []Rule{{Name: "a", Description: "2"}, {Name: "c"}})
	if len(got) != 3 || got[0].Description != "2" || got[1].Name != "b" || got[2].Name != "c" {
		t.Errorf("merge: %+v", got)
	}
	if base[0].Description != "1" {
		t.Error("merge modified its input")
	}
}

// TestDefaultPack guards the embedded pack: Default panics if it does not parse.
func TestDefaultPack(t *testing.T) {
	rs := Default()
	if len(rs) < 15 {
		t.Fatalf("default pack has %d rules", len(rs))
	}
	if err := CheckSet(rs); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"tcp-syn-flood", "sql-slammer", "udp-amplification"} {
		if !slices.ContainsFunc(rs, func(r Rule) bool { return r.Name == name }) {
			t.Errorf("default pack lacks %s", name)
		}
	}
	for _, r := range rs {
		if r.Description == "" || len(r.References) == 0 {
			t.Errorf("%s: every default rule needs a description and references", r.Name)
		}
		if !strings.HasPrefix(r.Pos.File, "rules/default/") {
			t.Errorf("%s: position %s", r.Name, r.Pos)
		}
	}
	// Default hands out copies of the slice.
	rs[0].Name = "changed"
	if Default()[0].Name == "changed" {
		t.Error("Default returned a shared slice")
	}
}

func TestLimitNames(t *testing.T) {
	names := LimitNames()
	for _, n := range []string{"pps", "bps", "fps", "syn_pps", "udp_pps", "icmp_pps"} {
		if !IsLimitName(n) || !slices.Contains(names, n) {
			t.Errorf("%s missing", n)
		}
	}
	if IsLimitName("sin_pps") {
		t.Error("sin_pps accepted")
	}
}
