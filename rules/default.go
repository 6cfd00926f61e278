package rules

import (
	"embed"
	"io/fs"
	"slices"
	"sync"
)

//go:embed default/*.yaml
var defaultFS embed.FS

// defaultPack parses the embedded pack once. A broken pack is a build mistake, caught by
// TestDefaultPack, so it panics rather than making every caller handle an error.
var defaultPack = sync.OnceValue(func() []Rule {
	names, err := fs.Glob(defaultFS, "default/*.yaml")
	if err != nil {
		panic(err)
	}
	slices.Sort(names)
	var all []Rule
	for _, name := range names {
		data, err := defaultFS.ReadFile(name)
		if err != nil {
			panic(err)
		}
		rs, err := Parse("rules/"+name, data)
		if err != nil {
			panic("rules: embedded default pack: " + err.Error())
		}
		all = append(all, rs...)
	}
	if err := CheckSet(all); err != nil {
		panic("rules: embedded default pack: " + err.Error())
	}
	return all
})

// Default returns the embedded default rule pack (rules/default/*.yaml). The slice is a
// fresh copy; the rules' own slices and maps are shared and must not be modified.
func Default() []Rule { return slices.Clone(defaultPack()) }

// DefaultFS returns the embedded default pack's files, for tools that show them.
func DefaultFS() fs.FS { sub, _ := fs.Sub(defaultFS, "default"); return sub }
