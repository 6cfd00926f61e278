//go:build !unix

package alert

import "os/exec"

// killGroup leaves the default: only the script itself is killed on timeout.
func killGroup(*exec.Cmd) {}
