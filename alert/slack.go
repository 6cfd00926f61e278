package alert

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/slack-go/slack"

	"github.com/flowhound/flowhound/detector"
	"github.com/flowhound/flowhound/store"
)

type slackSink struct {
	api      *slack.Client
	channel  string
	timeout  time.Duration
	interval time.Duration
	st       *store.Store
	now      func() time.Time
	log      *slog.Logger

	mu  sync.Mutex
	mem map[string]slackRef // without a store
}

// slackRef is the message that shows an anomaly.
type slackRef struct {
	Channel string    `json:"channel"`
	TS      string    `json:"ts"`
	At      time.Time `json:"at"`
}

func newSlackSink(c SlackConfig, client *http.Client, st *store.Store, now func() time.Time, log *slog.Logger) *slackSink {
	// slack-go's own retries stay off: the outbox retries, durably and with the sink
	// paused, and a retry inside the client would hide Retry-After from it.
	api := slack.New(os.Getenv(c.TokenEnv), slack.OptionAPIURL(c.APIURL), slack.OptionHTTPClient(client))
	return &slackSink{api: api, channel: c.Channel, timeout: c.Timeout.D(), interval: c.MinInterval.D(),
		st: st, now: now, log: log, mem: map[string]slackRef{}}
}

func (s *slackSink) id() string                 { return "slack" }
func (s *slackSink) kind() string               { return "slack" }
func (s *slackSink) wants(string) bool          { return true }
func (s *slackSink) maxAttempts() int           { return 0 }
func (s *slackSink) minInterval() time.Duration { return s.interval }

func (s *slackSink) deliver(ctx context.Context, d *delivery) error {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	ref, found, err := s.ref(d.Anomaly.ID)
	if err != nil {
		return retry("store", err)
	}
	if !found && d.Event == Updated {
		// The first message was given up: there is nothing to update, and the end will
		// post a message of its own.
		return nil
	}
	opts := []slack.MsgOption{
		slack.MsgOptionText(notificationText(d.Event, &d.Anomaly), false),
		slack.MsgOptionBlocks(MessageBlocks(d.Event, &d.Anomaly)...),
	}
	if found {
		// Also for a raise: a message already posted by an attempt whose outcome was lost
		// in a restart is updated rather than posted twice.
		_, _, _, err = s.api.UpdateMessageContext(ctx, ref.Channel, ref.TS, opts...)
		var se slack.SlackErrorResponse
		if errors.As(err, &se) && (se.Err == "message_not_found" || se.Err == "cant_update_message" || se.Err == "edit_window_closed") {
			s.log.Warn("slack message cannot be updated, posting a new one", "anomaly", d.Anomaly.ID, "err", se.Err)
			found = false
		} else if err != nil {
			return slackFailure(err)
		}
	}
	if !found {
		ch, ts, err := s.api.PostMessageContext(ctx, s.channel, opts...)
		if err != nil {
			return slackFailure(err)
		}
		ref = slackRef{Channel: ch, TS: ts}
	}
	ref.At = s.now() // the sweep counts from the last activity, so long attacks keep theirs
	// The reference outlives the end (until the sweep), so an end delivered again after a
	// restart updates the same message instead of posting another.
	if err := s.saveRef(d.Anomaly.ID, ref); err != nil && !errors.Is(err, store.ErrWrite) {
		// The message is out; losing its reference only means the end is a new message.
		s.log.Error("saving the slack message reference", "anomaly", d.Anomaly.ID, "err", err)
	}
	return nil
}

func (s *slackSink) ref(id string) (slackRef, bool, error) {
	if s.st == nil {
		s.mu.Lock()
		defer s.mu.Unlock()
		r, ok := s.mem[id]
		return r, ok, nil
	}
	v, err := s.st.Get(nsSlackTS, []byte(id))
	if errors.Is(err, store.ErrNotFound) {
		return slackRef{}, false, nil
	}
	if err != nil {
		return slackRef{}, false, err
	}
	var r slackRef
	if json.Unmarshal(v, &r) != nil || r.TS == "" {
		return slackRef{}, false, nil
	}
	return r, true, nil
}

func (s *slackSink) saveRef(id string, r slackRef) error {
	if s.st == nil {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.mem[id] = r
		return nil
	}
	v, _ := json.Marshal(r)
	return s.st.Put(nsSlackTS, []byte(id), v)
}

func (s *slackSink) sweepMem(old time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, r := range s.mem {
		if r.At.Before(old) {
			delete(s.mem, id)
		}
	}
}

// slackTransient are Slack API error codes that say "try again later".
var slackTransient = map[string]bool{
	"ratelimited": true, "rate_limited": true, "internal_error": true, "fatal_error": true,
	"service_unavailable": true, "request_timeout": true, "team_added_to_org": true,
}

// slackFailure classifies a slack-go error: rate limits and server trouble are retried,
// API refusals (channel_not_found, invalid_auth, not_in_channel, …) are permanent.
func slackFailure(err error) error {
	var rl *slack.RateLimitedError
	var sc slack.StatusCodeError
	var se slack.SlackErrorResponse
	switch {
	case errors.As(err, &rl):
		return &failure{reason: "rate_limited", retryAfter: rl.RetryAfter, err: err}
	case errors.As(err, &sc):
		reason := fmt.Sprintf("http_%d", sc.Code)
		if sc.Retryable() {
			return retry(reason, err)
		}
		return permanent(reason, err)
	case errors.As(err, &se):
		if slackTransient[se.Err] {
			return retry(labelSafe(se.Err), err)
		}
		return permanent(labelSafe(se.Err), err)
	case errors.Is(err, context.DeadlineExceeded):
		return retry("timeout", err)
	}
	return retry("network", err)
}

// Slack's Block Kit limits, in characters; lengths are counted in bytes here, which is
// never less.
const (
	slackSectionLimit = 3000
	slackFieldLimit   = 2000
	slackHeaderLimit  = 150
	slackTextLimit    = 3000 // the notification text we send; Slack allows more
)

// slackFilters are the filters shown in the message, in order; the others are in the
// API and the webhook body.
var slackFilters = []struct{ key, title string }{
	{"bpf", "BPF (tcpdump)"},
	{"nftables", "nftables"},
	{"flowspec_exabgp", "Flowspec (ExaBGP)"},
	{"flowspec_gobgp", "Flowspec (GoBGP)"},
}

func notificationText(event string, a *detector.Anomaly) string {
	s := a.Summary()
	if event == Ended {
		s = "Ended: " + s
	}
	return cut(escape(s), slackTextLimit)
}

// MessageBlocks is the Slack message for an anomaly: a header, the key facts, the
// traceback, the characterization and the filters.
func MessageBlocks(event string, a *detector.Anomaly) []slack.Block {
	ended := event == Ended || a.Status == detector.StatusEnded
	mark := ":rotating_light:"
	if ended {
		mark = ":white_check_mark: Ended:"
	}
	res := a.Resource.Type + " " + a.Resource.Key
	if a.Resource.Name != "" {
		res += " (" + a.Resource.Name + ")"
	}
	header := fmt.Sprintf("%s %s %s on %s", mark, strings.ToUpper(a.Importance), a.Rule, res)
	blocks := []slack.Block{
		slack.NewHeaderBlock(slack.NewTextBlockObject(slack.PlainTextType, cut(header, slackHeaderLimit), true, false)),
	}

	var fields []*slack.TextBlockObject
	field := func(name, value string) {
		if value == "" {
			return
		}
		fields = append(fields, mrkdwn(cut("*"+name+"*\n"+escape(value), slackFieldLimit)))
	}
	field("Severity", a.SeverityText)
	field("Direction", a.Direction)
	field("Started", a.Start.UTC().Format("2006-01-02 15:04:05 UTC"))
	if a.End != nil {
		field("Ended", fmt.Sprintf("%s (lasted %s)", a.End.UTC().Format("2006-01-02 15:04:05 UTC"), a.End.Sub(a.Start).Round(time.Second)))
	} else {
		field("Status", a.Status)
	}
	field("Observed", rates(a.Observed))
	field("Peak", rates(a.Peak))
	if a.Kind != "" {
		field("Kind", a.Kind)
	}
	blocks = append(blocks, slack.NewSectionBlock(nil, fields, nil))

	if len(a.Traceback) > 0 {
		var b strings.Builder
		b.WriteString("*Traceback* (where it enters)")
		const top = 5
		for i, t := range a.Traceback {
			if i == top {
				fmt.Fprintf(&b, "\n… and %d more", len(a.Traceback)-top)
				break
			}
			name := t.ExporterName
			if name == "" {
				name = t.Exporter
			} else {
				name += " (" + t.Exporter + ")"
			}
			ifn := t.InIfName
			if ifn == "" {
				ifn = fmt.Sprintf("ifIndex %d", t.InIf)
			} else {
				ifn += fmt.Sprintf(" (ifIndex %d)", t.InIf)
			}
			fmt.Fprintf(&b, "\n• %s %s: %.0f%% · %s", escape(name), escape(ifn), t.Share*100, detector.HumanRate(t.PPS, "pps"))
		}
		blocks = append(blocks, section(b.String()))
	}

	if c := characterization(&a.Character); c != "" {
		blocks = append(blocks, section("*Characterization*\n"+c))
	}

	for _, f := range slackFilters {
		if code := a.Filters[f.key]; code != "" {
			blocks = append(blocks, codeSection(f.title, code))
		}
	}

	ctx := "flowhound · anomaly " + a.ID
	if a.Description != "" {
		ctx += " · " + a.Description
	}
	blocks = append(blocks, slack.NewContextBlock("", mrkdwn(cut(escape(ctx), slackSectionLimit))))
	return blocks
}

func rates(r detector.Rates) string {
	if r.PPS == 0 && r.BPS == 0 {
		return ""
	}
	return detector.HumanRate(r.PPS, "pps") + ", " + detector.HumanRate(r.BPS, "bps")
}

func characterization(c *detector.Characterization) string {
	var lines []string
	top := func(name string, cs []detector.Count) {
		if len(cs) == 0 {
			return
		}
		parts := make([]string, 0, 3)
		for _, v := range cs[:min(3, len(cs))] {
			parts = append(parts, fmt.Sprintf("%s %.0f%%", escape(v.Value), v.Share*100))
		}
		lines = append(lines, "• "+name+": "+strings.Join(parts, ", "))
	}
	top("Protocols", c.Protocols)
	top("Destination ports", c.DstPorts)
	top("Source ports", c.SrcPorts)
	top("TCP flags", c.TCPFlags)
	top("Source prefixes", c.SrcPrefixes)
	if c.PacketSize.Max > 0 {
		lines = append(lines, fmt.Sprintf("• Packet size: %.0f–%.0f B, mean %.0f", c.PacketSize.Min, c.PacketSize.Max, c.PacketSize.Mean))
	}
	if c.SrcCountEstimate > 0 {
		lines = append(lines, fmt.Sprintf("• Sources: about %.0f", c.SrcCountEstimate))
	}
	return strings.Join(lines, "\n")
}

func mrkdwn(s string) *slack.TextBlockObject {
	return slack.NewTextBlockObject(slack.MarkdownType, s, false, false)
}

func section(s string) *slack.SectionBlock {
	return slack.NewSectionBlock(mrkdwn(cut(s, slackSectionLimit)), nil, nil)
}

// codeSection shows a filter in a code block that fits Slack's section limit; a filter cut
// short says so inside the block, so the fence always closes.
func codeSection(title, code string) *slack.SectionBlock {
	head, tail := "*"+title+"*\n```\n", "\n```"
	// A fence inside the filter would end the block early.
	body := escape(strings.ReplaceAll(strings.TrimSpace(code), "```", "'''"))
	room := slackSectionLimit - len(head) - len(tail)
	if len(body) > room {
		const note = "\n… cut here, %d more bytes: the API and webhooks carry the full filter"
		kept := cut(body, room-len(note)-10)
		if i := strings.LastIndexByte(kept, '\n'); i > len(kept)*3/4 {
			kept = kept[:i] // end on a whole line when one is near
		}
		body = kept + fmt.Sprintf(note, len(body)-len(kept))
	}
	return slack.NewSectionBlock(mrkdwn(head+body+tail), nil, nil)
}

// escape quotes the three characters Slack's mrkdwn treats as markup.
func escape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}

// cut shortens s to at most n bytes, on a character boundary and not inside an escape
// such as &amp;, ending with an ellipsis when it cut.
func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	const ell = "…"
	i := max(n-len(ell), 0)
	for i > 0 && s[i]&0xC0 == 0x80 { // continuation byte: back to the rune start
		i--
	}
	if amp := strings.LastIndexByte(s[:i], '&'); amp >= 0 && amp >= i-5 && !strings.Contains(s[amp:i], ";") {
		i = amp
	}
	return s[:i] + ell
}
