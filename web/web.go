// Package web holds flowhound's browser UI as static files embedded in the binary.
package web

import (
	"embed"
	"io/fs"
)

// The UI is plain HTML, CSS and JavaScript with no build step and no external assets, so
// that it works on an isolated management network and ships inside the one binary.
//
//go:embed static
var static embed.FS

// FS returns the UI's files with index.html at the root, for http.FileServerFS.
func FS() fs.FS {
	sub, err := fs.Sub(static, "static")
	if err != nil {
		// "static" is a valid path embedded above; Sub cannot fail on it.
		panic(err)
	}
	return sub
}
