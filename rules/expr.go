package rules

import (
	"strings"
	"unicode/utf8"
)

// Expr is an expression as written in a rule file. Pos is where its first character is, so
// that errors inside the expression can point into the file; PosAt does the mapping, also
// for quoted, folded and block (|) scalars.
type Expr struct {
	Source string
	Pos    Position

	// raw is the file text from where the scalar starts (its quote or first character, or
	// the first line of a block) and line/col its position; empty for expressions built in Go.
	raw       string
	line, col int
}

// IsEmpty reports whether the expression has no text.
func (e Expr) IsEmpty() bool { return strings.TrimSpace(e.Source) == "" }

// String returns the source text.
func (e Expr) String() string { return e.Source }

// MarshalText and UnmarshalText make an expression its source text in JSON and YAML
// output (GET /api/rules), not a struct with positions.
func (e Expr) MarshalText() ([]byte, error) { return []byte(e.Source), nil }

// UnmarshalText reads an expression without a file position.
func (e *Expr) UnmarshalText(b []byte) error {
	*e = Expr{Source: string(b)}
	return nil
}

// PosAt returns the file position of the character at rune offset off in Source (the
// offset expr-lang reports in its errors). An offset at the end of the source maps just
// past its last character.
//
// YAML changes the text between the file and the value: quotes, escapes, folded line
// breaks and block indentation. PosAt walks the value and the file text side by side,
// skipping what YAML removed, which handles all of those without modelling each style.
func (e Expr) PosAt(off int) Position {
	if e.raw == "" {
		return e.plainPosAt(off)
	}
	line, col := e.line, e.col
	raw := e.raw
	last := Position{File: e.Pos.File, Line: line, Column: col}
	i, j := 0, 0
	for _, v := range e.Source {
		for {
			if j >= len(raw) {
				return last
			}
			rr, size := utf8.DecodeRuneInString(raw[j:])
			if rr == v {
				last = Position{File: e.Pos.File, Line: line, Column: col}
				if i == off {
					return last
				}
				break
			}
			if !yamlSyntax(rr) {
				return last // the texts no longer line up (an escape such as \t): best effort
			}
			line, col = advance(line, col, rr)
			j += size
		}
		rr, size := utf8.DecodeRuneInString(raw[j:])
		line, col = advance(line, col, rr)
		j += size
		i++
	}
	// Past the end: where the next character would be, unless that is a line break.
	if j < len(raw) && raw[j] != '\n' && raw[j] != '\r' {
		return Position{File: e.Pos.File, Line: line, Column: col}
	}
	if len(e.Source) > 0 {
		return Position{File: e.Pos.File, Line: last.Line, Column: last.Column + 1}
	}
	return last
}

// plainPosAt maps offsets for expressions built in Go: the source itself is the file text.
func (e Expr) plainPosAt(off int) Position {
	line, col := max(e.Pos.Line, 1), max(e.Pos.Column, 1)
	i := 0
	for _, r := range e.Source {
		if i == off {
			break
		}
		line, col = advance(line, col, r)
		i++
	}
	return Position{File: e.Pos.File, Line: line, Column: col}
}

func advance(line, col int, r rune) (int, int) {
	if r == '\n' {
		return line + 1, 1
	}
	return line, col + 1
}

// yamlSyntax reports whether r is something YAML may drop between the file and the value.
func yamlSyntax(r rune) bool {
	switch r {
	case ' ', '\t', '\n', '\r', '"', '\'', '\\':
		return true
	}
	return false
}
