package rules

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"
	"github.com/goccy/go-yaml/token"
)

// Parse reads the rules of one file: a YAML list of rules. Every problem is reported as
// "file:line:col: message", all of them at once (ErrorList). The rules come back with
// defaults applied and validated on their own; CheckSet checks a whole set. Alongside an
// error, Parse still returns the rules that were valid, so that a checker can go on to
// compile them and report their expression errors in the same run.
//
// The YAML tree is walked by hand rather than decoded into the struct, so that every key
// and value keeps its position and the messages say exactly what is wrong and where.
func Parse(file string, data []byte) ([]Rule, error) {
	f, err := parser.ParseBytes(data, 0)
	if err != nil {
		return nil, syntaxError(file, err)
	}
	p := &fileParser{file: file, data: string(data)}
	p.indexLines()
	var out []Rule
	for _, doc := range f.Docs {
		body := doc.Body
		if body == nil {
			continue
		}
		body, ok := p.unwrap(body)
		if !ok {
			continue
		}
		switch n := body.(type) {
		case *ast.NullNode:
			continue // an empty document
		case *ast.SequenceNode:
			for _, item := range n.Values {
				if r, ok := p.rule(item); ok {
					out = append(out, r)
				}
			}
		default:
			p.errorf(body, "a rule file is a YAML list of rules (- name: ...), not a %s", nodeKind(body))
		}
	}
	out, p.errs = dropDuplicates(out, p.errs)
	p.errs.sort()
	return out, p.errs.err()
}

// Load reads rule files. Paths may be globs (as in the configuration's rules: list); a glob
// that matches nothing is not an error, a plain path that does not exist is. Like Parse,
// it returns the valid rules alongside the problems of the others.
func Load(paths ...string) ([]Rule, error) {
	var files []string
	for _, p := range paths {
		if strings.ContainsAny(p, "*?[") {
			m, err := filepath.Glob(p)
			if err != nil {
				return nil, fmt.Errorf("rules: bad pattern %q: %w", p, err)
			}
			slices.Sort(m)
			files = append(files, m...)
			continue
		}
		files = append(files, p)
	}
	var out []Rule
	var errs ErrorList
	for _, name := range files {
		data, err := os.ReadFile(name)
		if err != nil {
			return nil, fmt.Errorf("rules: %w", err)
		}
		rs, err := Parse(name, data)
		errs = append(errs, asList(err)...)
		out = append(out, rs...)
	}
	// Only names across files here: compound rules may follow default rules, which
	// CheckSet sees once the caller has combined the sets.
	out, errs = dropDuplicates(out, errs)
	return out, errs.err()
}

// dropDuplicates reports and removes the second and later rules of a name.
func dropDuplicates(rs []Rule, errs ErrorList) ([]Rule, ErrorList) {
	first := map[string]int{}
	out := rs[:0:0]
	for _, r := range rs {
		if j, dup := first[r.Name]; dup {
			errs = append(errs, &Error{Pos: r.KeyPos("name"),
				Msg: fmt.Sprintf("name: duplicate rule %q (first defined at %s)", r.Name, out[j].KeyPos("name"))})
			continue
		}
		first[r.Name] = len(out)
		out = append(out, r)
	}
	return out, errs
}

// ruleKeys are the keys a rule may have, for unknown-key messages and suggestions.
var ruleKeys = []string{"name", "kind", "description", "references", "match", "group_by", "direction",
	"window", "threshold", "limits", "importance", "for", "hold", "after", "within", "min_samples"}

type fileParser struct {
	file       string
	data       string
	lineStarts []int // byte offset where each line starts
	errs       ErrorList
}

func (p *fileParser) indexLines() {
	p.lineStarts = append(p.lineStarts[:0], 0)
	for i := 0; i < len(p.data); i++ {
		if p.data[i] == '\n' {
			p.lineStarts = append(p.lineStarts, i+1)
		}
	}
}

// offset returns the byte offset of a 1-based line and character column.
func (p *fileParser) offset(line, col int) int {
	if line < 1 || line > len(p.lineStarts) {
		return len(p.data)
	}
	off := p.lineStarts[line-1]
	for c := 1; c < col && off < len(p.data) && p.data[off] != '\n'; c++ {
		_, size := utf8.DecodeRuneInString(p.data[off:])
		off += size
	}
	return off
}

func (p *fileParser) pos(n ast.Node) Position {
	tk := n.GetToken()
	if tk == nil || tk.Position == nil {
		return Position{File: p.file}
	}
	return Position{File: p.file, Line: tk.Position.Line, Column: tk.Position.Column}
}

func (p *fileParser) errorf(n ast.Node, format string, args ...any) {
	p.errs = append(p.errs, &Error{Pos: p.pos(n), Msg: fmt.Sprintf(format, args...)})
}

// unwrap looks through tags and anchors; aliases are refused because a rule file gains
// nothing from them and their positions would point at the anchor, not the use.
func (p *fileParser) unwrap(n ast.Node) (ast.Node, bool) {
	for {
		switch v := n.(type) {
		case *ast.TagNode:
			n = v.Value
		case *ast.AnchorNode:
			n = v.Value
		case *ast.AliasNode:
			p.errorf(n, "aliases (*name) are not supported in rule files")
			return nil, false
		default:
			if n == nil {
				return &ast.NullNode{}, true
			}
			return n, true
		}
	}
}

// entries returns the key/value pairs of a mapping; a one-key mapping comes as a single
// MappingValueNode.
func entries(n ast.Node) ([]*ast.MappingValueNode, bool) {
	switch m := n.(type) {
	case *ast.MappingNode:
		return m.Values, true
	case *ast.MappingValueNode:
		return []*ast.MappingValueNode{m}, true
	}
	return nil, false
}

func (p *fileParser) rule(item ast.Node) (Rule, bool) {
	item, ok := p.unwrap(item)
	if !ok {
		return Rule{}, false
	}
	kvs, ok := entries(item)
	if !ok || len(kvs) == 0 {
		p.errorf(item, "a rule is a mapping (name: ..., match: ...), not a %s", nodeKind(item))
		return Rule{}, false
	}
	before := len(p.errs)
	r := defaults()
	r.keys = make(map[string]Position, len(kvs))
	r.Pos = p.pos(kvs[0].Key)
	kindSet := false
	for _, kv := range kvs {
		key, ok := p.keyName(kv.Key)
		if !ok {
			continue
		}
		kpos := p.pos(kv.Key)
		if _, dup := r.keys[key]; dup {
			p.errs = append(p.errs, &Error{Pos: kpos, Msg: fmt.Sprintf("duplicate key %q", key)})
			continue
		}
		r.keys[key] = kpos
		v, ok := p.unwrap(kv.Value)
		if !ok {
			continue
		}
		switch key {
		case "name":
			r.Name = p.str(key, v)
		case "kind":
			r.Kind = p.str(key, v)
			kindSet = true
		case "description":
			r.Description = p.str(key, v)
		case "references":
			r.References = p.strList(key, v)
		case "match":
			r.Match = p.expr(key, v)
		case "group_by":
			r.GroupBy = p.strList(key, v)
		case "direction":
			r.Direction = p.str(key, v)
		case "window":
			r.Window = p.duration(key, v)
		case "threshold":
			r.Threshold = p.expr(key, v)
		case "limits":
			r.Limits = p.limits(&r, v)
		case "importance":
			r.Importance = p.str(key, v)
		case "for":
			r.For = p.duration(key, v)
		case "hold":
			r.Hold = p.duration(key, v)
		case "after":
			r.After = p.str(key, v)
		case "within":
			r.Within = p.duration(key, v)
		case "min_samples":
			r.MinSamples = p.integer(key, v)
		default:
			msg := fmt.Sprintf("unknown field %q", key)
			if s := suggest(key, ruleKeys); s != "" {
				msg += fmt.Sprintf(" (did you mean %q?)", s)
			}
			p.errs = append(p.errs, &Error{Pos: kpos, Msg: msg})
		}
	}
	if !kindSet && r.After != "" {
		r.Kind = KindCompound
	}
	if len(p.errs) > before {
		return Rule{}, false // a rule with bad values would only add confusing follow-on errors
	}
	if err := r.Validate(); err != nil {
		p.errs = append(p.errs, asList(err)...)
		return Rule{}, false
	}
	return r, true
}

func (p *fileParser) keyName(k ast.MapKeyNode) (string, bool) {
	var n ast.Node = k
	if mk, ok := k.(*ast.MappingKeyNode); ok {
		n = mk.Value
	}
	switch v := n.(type) {
	case *ast.StringNode:
		return v.Value, true
	case *ast.MergeKeyNode:
		p.errorf(v, "merge keys (<<) are not supported in rule files")
		return "", false
	}
	if s, ok := scalar(n); ok {
		return s, true
	}
	p.errorf(n, "a key must be a plain name, not a %s", nodeKind(n))
	return "", false
}

// scalar returns a scalar node's text as YAML resolved it.
func scalar(n ast.Node) (string, bool) {
	switch v := n.(type) {
	case *ast.StringNode:
		return v.Value, true
	case *ast.LiteralNode:
		return v.Value.Value, true
	case *ast.NullNode:
		return "", true
	case *ast.IntegerNode, *ast.FloatNode, *ast.BoolNode, *ast.InfinityNode, *ast.NanNode:
		return n.GetToken().Value, true
	}
	return "", false
}

func (p *fileParser) str(key string, n ast.Node) string {
	if _, isNull := n.(*ast.NullNode); isNull {
		return ""
	}
	s, ok := scalar(n)
	if !ok {
		p.errorf(n, "%s: want a string, not a %s", key, nodeKind(n))
	}
	return s
}

// strList accepts a list of strings, or one string for a one-element list.
func (p *fileParser) strList(key string, n ast.Node) []string {
	if _, isNull := n.(*ast.NullNode); isNull {
		return nil
	}
	seq, ok := n.(*ast.SequenceNode)
	if !ok {
		if s, ok := scalar(n); ok {
			return []string{s}
		}
		p.errorf(n, "%s: want a list of strings, not a %s", key, nodeKind(n))
		return nil
	}
	out := make([]string, 0, len(seq.Values))
	for _, item := range seq.Values {
		item, ok := p.unwrap(item)
		if !ok {
			continue
		}
		s, ok := scalar(item)
		if !ok {
			p.errorf(item, "%s: want a string, not a %s", key, nodeKind(item))
			continue
		}
		out = append(out, s)
	}
	return out
}

func (p *fileParser) integer(key string, n ast.Node) int {
	v, ok := n.(*ast.IntegerNode)
	if !ok {
		p.errorf(n, "%s: want an integer, not %s", key, describe(n))
		return 0
	}
	switch x := v.Value.(type) {
	case int64:
		if x >= math.MinInt32 && x <= math.MaxInt32 {
			return int(x)
		}
	case uint64:
		if x <= math.MaxInt32 {
			return int(x)
		}
	}
	p.errorf(n, "%s: %s is out of range", key, v.GetToken().Value)
	return 0
}

func number(n ast.Node) (float64, bool) {
	switch v := n.(type) {
	case *ast.IntegerNode:
		switch x := v.Value.(type) {
		case int64:
			return float64(x), true
		case uint64:
			return float64(x), true
		}
	case *ast.FloatNode:
		return v.Value, true
	case *ast.StringNode:
		// Plain scalars such as 1e9 are strings in YAML 1.2's core schema; accept them
		// when they read as a number, quoted ones are meant as text.
		if tk := v.GetToken(); tk != nil && tk.Type == token.StringType {
			f, err := strconv.ParseFloat(v.Value, 64)
			return f, err == nil
		}
	}
	return 0, false
}

func (p *fileParser) duration(key string, n ast.Node) Duration {
	if iv, ok := n.(*ast.IntegerNode); ok {
		switch x := iv.Value.(type) {
		case int64:
			if x == 0 {
				return 0
			}
		case uint64:
			if x == 0 {
				return 0
			}
		}
		p.errorf(n, "%s: %s needs a unit, as in %ss", key, iv.GetToken().Value, iv.GetToken().Value)
		return 0
	}
	s, ok := scalar(n)
	if _, isStr := n.(*ast.StringNode); !ok || !isStr {
		p.errorf(n, "%s: want a duration such as 10s, not %s", key, describe(n))
		return 0
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		p.errorf(n, "%s: %q is not a duration (use 10s, 1m30s, 2h)", key, s)
		return 0
	}
	return Duration(d)
}

func (p *fileParser) limits(r *Rule, n ast.Node) map[string]float64 {
	if _, isNull := n.(*ast.NullNode); isNull {
		return nil
	}
	kvs, ok := entries(n)
	if !ok {
		p.errorf(n, "limits: want a mapping such as {syn_pps: 2000}, not a %s", nodeKind(n))
		return nil
	}
	out := make(map[string]float64, len(kvs))
	for _, kv := range kvs {
		name, ok := p.keyName(kv.Key)
		if !ok {
			continue
		}
		key := "limits." + name
		if _, dup := r.keys[key]; dup {
			p.errorf(kv.Key, "limits: duplicate key %q", name)
			continue
		}
		r.keys[key] = p.pos(kv.Key)
		v, ok := p.unwrap(kv.Value)
		if !ok {
			continue
		}
		f, ok := number(v)
		if !ok {
			p.errorf(v, "limits: %s: want a number, not %s", name, describe(v))
			continue
		}
		out[name] = f
	}
	return out
}

// expr keeps an expression with what PosAt needs to map offsets back into the file.
func (p *fileParser) expr(key string, n ast.Node) Expr {
	if _, isNull := n.(*ast.NullNode); isNull {
		return Expr{Pos: p.pos(n)}
	}
	src, ok := scalar(n)
	if !ok {
		p.errorf(n, "%s: want an expression (a string), not a %s", key, nodeKind(n))
		return Expr{}
	}
	tk := n.GetToken()
	line, col := tk.Position.Line, tk.Position.Column
	if lit, ok := n.(*ast.LiteralNode); ok {
		// A block's text starts on the line after its | or > header.
		line, col = lit.Start.Position.Line+1, 1
	}
	e := Expr{Source: src, raw: p.data[p.offset(line, col):], line: line, col: col}
	e.Pos = Position{File: p.file, Line: line, Column: col}
	e.Pos = e.PosAt(0)
	return e
}

// syntaxError turns a YAML syntax error into "file:line:col: message".
func syntaxError(file string, err error) error {
	var se interface {
		GetMessage() string
		GetToken() *token.Token
	}
	if errors.As(err, &se) {
		pos := Position{File: file}
		if tk := se.GetToken(); tk != nil && tk.Position != nil {
			pos.Line, pos.Column = tk.Position.Line, tk.Position.Column
		}
		return ErrorList{{Pos: pos, Msg: se.GetMessage()}}
	}
	return ErrorList{{Pos: Position{File: file}, Msg: err.Error()}}
}

func nodeKind(n ast.Node) string {
	switch n.(type) {
	case *ast.MappingNode, *ast.MappingValueNode:
		return "mapping"
	case *ast.SequenceNode:
		return "list"
	case *ast.NullNode:
		return "null"
	}
	return "scalar"
}

// describe names a value for a message: the scalar itself, or its kind.
func describe(n ast.Node) string {
	if s, ok := scalar(n); ok {
		if _, isNull := n.(*ast.NullNode); isNull {
			return "null"
		}
		return strconv.Quote(s)
	}
	return "a " + nodeKind(n)
}

// suggest returns the candidate within two edits of s, if exactly one is closest.
func suggest(s string, candidates []string) string {
	best, bestD := "", 3
	for _, c := range candidates {
		if d := editDistance(s, c); d < bestD {
			best, bestD = c, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
