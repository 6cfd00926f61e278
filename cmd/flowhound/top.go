package main

import (
	"errors"
	"io"
)

func runTop(args []string, stdout, stderr io.Writer) error {
	return errors.New("top: not implemented yet")
}
