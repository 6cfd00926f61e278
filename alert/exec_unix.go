//go:build unix

package alert

import (
	"os/exec"
	"syscall"
)

// killGroup runs the script in its own process group and kills the whole group on
// timeout: notify scripts often start ssh or curl, which would outlive a killed shell.
func killGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		if cmd.Process == nil {
			return nil
		}
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
}
