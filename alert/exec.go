package alert

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/flowhound/flowhound/detector"
)

type execSink struct {
	sinkID   string
	command  string
	args     []string
	timeout  time.Duration
	attempts int
	env      []string
	log      *slog.Logger
}

// newExecSink builds a notify-script sink. The script gets the engine's environment
// without the variables that hold alert secrets: a ban script has no use for the Slack
// token, and scripts tend to log their environment when debugged.
func newExecSink(c ExecConfig, secretEnvs []string, log *slog.Logger) *execSink {
	env := slices.DeleteFunc(os.Environ(), func(kv string) bool {
		name, _, _ := strings.Cut(kv, "=")
		return slices.Contains(secretEnvs, name)
	})
	return &execSink{sinkID: execID(c), command: c.Command, args: c.Args, timeout: c.Timeout.D(), attempts: c.Attempts, env: env, log: log}
}

func (e *execSink) id() string                 { return e.sinkID }
func (e *execSink) kind() string               { return "exec" }
func (e *execSink) wants(typ string) bool      { return typ == Raised || typ == Ended }
func (e *execSink) maxAttempts() int           { return e.attempts }
func (e *execSink) minInterval() time.Duration { return 0 }

// ExecArgs are the FastNetMon notify-script arguments for an event: the resource key (the
// victim's address for a host), the direction, the packet rate and ban or unban.
func ExecArgs(event string, a *detector.Anomaly) []string {
	action := "ban"
	if event == Ended {
		action = "unban"
	}
	pps := max(a.Peak.PPS, a.Observed.PPS)
	return []string{a.Resource.Key, a.Direction, strconv.FormatUint(uint64(math.Round(pps)), 10), action}
}

// maxOutput bounds what is kept of a script's output for the log.
const maxOutput = 4 << 10

func (e *execSink) deliver(ctx context.Context, d *delivery) error {
	ctx, cancel := context.WithTimeout(ctx, e.timeout)
	defer cancel()
	args := append(append([]string(nil), e.args...), ExecArgs(d.Event, &d.Anomaly)...)
	cmd := exec.CommandContext(ctx, e.command, args...)
	cmd.Stdin = bytes.NewReader(d.Raw)
	out := &capped{max: maxOutput}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.Env = append(slices.Clip(e.env),
		"FLOWHOUND_EVENT="+d.Event,
		"FLOWHOUND_DELIVERY="+d.ID,
		"FLOWHOUND_ANOMALY_ID="+d.Anomaly.ID,
		"FLOWHOUND_RULE="+d.Anomaly.Rule,
	)
	// A script that leaves children holding its output open must not hang the sink.
	cmd.WaitDelay = 2 * time.Second
	killGroup(cmd)
	start := time.Now()
	err := cmd.Run()
	attrs := []any{"sink", e.sinkID, "delivery", d.ID, "command", e.command, "args", args,
		"took", time.Since(start).Round(time.Millisecond), "output", out.String()}
	if err == nil {
		e.log.Info("notify script ran", attrs...)
		return nil
	}
	e.log.Warn("notify script failed", append(attrs, "err", err)...)
	var ee *exec.ExitError
	switch {
	case errors.Is(err, exec.ErrNotFound), errors.Is(err, fs.ErrNotExist):
		return permanent("not_found", err)
	case errors.Is(err, fs.ErrPermission):
		return permanent("not_executable", err)
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return retry("timeout", fmt.Errorf("killed after %s: %w", e.timeout, err))
	case errors.As(err, &ee):
		return retry("exit_status", err)
	}
	return retry("error", err)
}

// capped keeps the first max bytes written to it.
type capped struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	max  int
	lost int
}

func (c *capped) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	room := c.max - c.buf.Len()
	if room >= len(p) {
		c.buf.Write(p)
	} else {
		c.buf.Write(p[:max(room, 0)])
		c.lost += len(p) - max(room, 0)
	}
	return len(p), nil
}

func (c *capped) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := strings.TrimSpace(c.buf.String())
	if c.lost > 0 {
		s += fmt.Sprintf(" … (%d more bytes)", c.lost)
	}
	return s
}
