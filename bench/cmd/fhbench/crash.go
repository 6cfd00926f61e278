package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"time"
)

// crashResult is the kill -9 test: anomalies the API listed just before the kill against
// what it lists after the restart.
type crashResult struct {
	Before          int      `json:"before"`
	After           int      `json:"after"`
	Missing         []string `json:"missing,omitempty"`
	Ongoing         string   `json:"ongoing_id,omitempty"` // raised a moment before the kill
	OngoingAfter    string   `json:"ongoing_status_after,omitempty"`
	KilledAfterMs   float64  `json:"killed_after_raise_ms"` // raise line read → SIGKILL
	RestartReadySec float64  `json:"restart_ready_s"`       // exec → /metrics answering
	ProcessingAfter bool     `json:"processing_after"`      // flows processed after the restart
	// Baselines: resources /api/resources listed (and how many were past warming up)
	// before the kill and after the restart.
	ResourcesBefore int    `json:"resources_before"`
	ResourcesKept   int    `json:"resources_kept"` // of those, listed again after the restart
	ResourcesAfter  int    `json:"resources_after"`
	LearnedBefore   int    `json:"learned_before"`
	LearnedAfter    int    `json:"learned_after"`
	ResourcesErr    string `json:"resources_error,omitempty"`
	Err             string `json:"error,omitempty"`
}

// resourceCounts returns the resources the API lists (type, direction, key) and how many
// of them have a baseline past warming up. It tries twice: a kept-alive connection the
// server has just closed fails once.
func resourceCounts(ctx context.Context, apiPort int) (keys map[string]bool, learned int, err error) {
	for try := 0; try < 2; try++ {
		if keys, learned, err = resourceCountsOnce(ctx, apiPort); err == nil {
			return keys, learned, nil
		}
	}
	return nil, 0, err
}

func resourceCountsOnce(ctx context.Context, apiPort int) (keys map[string]bool, learned int, err error) {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", fmt.Sprintf("http://127.0.0.1:%d/api/resources?limit=100000", apiPort), nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		return nil, 0, fmt.Errorf("/api/resources: %s: %s", resp.Status, strings.TrimSpace(string(b)))
	}
	var body struct {
		Resources []struct {
			Type      string `json:"type"`
			Key       string `json:"key"`
			Direction string `json:"direction"`
			WarmingUp bool   `json:"warming_up"`
		} `json:"resources"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return nil, 0, err
	}
	keys = map[string]bool{}
	for _, r := range body.Resources {
		keys[r.Type+" "+r.Direction+" "+r.Key] = true
		if !r.WarmingUp {
			learned++
		}
	}
	return keys, learned, nil
}

type apiAnomaly struct {
	ID     string `json:"id"`
	Status string `json:"status"`
}

func listAnomalies(ctx context.Context, apiPort int) (out map[string]string, err error) {
	for try := 0; try < 2; try++ {
		if out, err = listAnomaliesOnce(ctx, apiPort); err == nil {
			return out, nil
		}
	}
	return nil, err
}

func listAnomaliesOnce(ctx context.Context, apiPort int) (map[string]string, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", fmt.Sprintf("http://127.0.0.1:%d/api/anomalies", apiPort), nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var body struct {
		Anomalies []apiAnomaly `json:"anomalies"`
	}
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		return nil, fmt.Errorf("/api/anomalies: %s: %s", resp.Status, strings.TrimSpace(string(b)))
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, a := range body.Anomalies {
		out[a.ID] = a.Status
	}
	return out, nil
}

// crash raises a fresh anomaly, kills serve with SIGKILL right after the raise is printed,
// restarts it on the same store, and compares the anomaly lists. It returns the restarted
// serve (or the old one if the restart failed).
func crash(ctx context.Context, o *options, log io.Writer, res *results, fh *fhServe) (*fhServe, error) {
	cr := &crashResult{}
	res.Crash = cr
	fail := func(err error) (*fhServe, error) { cr.Err = err.Error(); return fh, err }
	const victim = "10.99.0.90"
	// The baselines' resources first (a large listing): the kill then follows the raise
	// by only the time one /api/anomalies call takes.
	var rErrs []string
	keysBefore, learned, err := resourceCounts(ctx, o.fhAPI())
	if err != nil {
		rErrs = append(rErrs, "before: "+err.Error())
	}
	cr.ResourcesBefore, cr.LearnedBefore = len(keysBefore), learned
	gctx, stopGen := context.WithCancel(ctx)
	defer stopGen()
	tr := &delayTrial{Victim: victim}
	genDone := make(chan error, 1)
	go func() {
		genDone <- floodGen(gctx, o, log, fmt.Sprintf("127.0.0.1:%d", fh.netflowPort), tr, "127.0.0.41,127.0.0.42,127.0.0.43")
	}()
	since := time.Now()
	var raised anomalyLine
	for deadline := time.Now().Add(30 * time.Second); ; {
		if a, ok := fh.firstRaise(victim, "", since); ok {
			raised = a
			break
		}
		if time.Now().After(deadline) {
			return fail(fmt.Errorf("no anomaly for %s within 30 s", victim))
		}
		if err := sleepCtx(ctx, 20*time.Millisecond); err != nil {
			return fail(err)
		}
	}
	before, err := listAnomalies(ctx, o.fhAPI())
	if err != nil {
		return fail(err)
	}
	cr.KilledAfterMs = float64(time.Since(raised.seen).Microseconds()) / 1000
	fh.d.kill9()
	cr.Before, cr.Ongoing = len(before), raised.ID
	fmt.Fprintf(log, "killed flowhound (SIGKILL) %.0f ms after it raised %s; %d anomalies listed before\n", cr.KilledAfterMs, raised.ID, len(before))

	nfh, err := startFlowhound(ctx, o.flowhound, o.out, "flowhound", o.fhNetflow(), o.fhAPI(), "", filepath.Join(o.out, "flowhound-data"))
	if err != nil {
		return fail(fmt.Errorf("restart: %w", err))
	}
	cr.RestartReadySec = nfh.ready.Seconds()
	after, err := listAnomalies(ctx, o.fhAPI())
	if err != nil {
		cr.Err = err.Error()
		return nfh, err
	}
	cr.After = len(after)
	for id := range before {
		if _, ok := after[id]; !ok {
			cr.Missing = append(cr.Missing, id)
		}
	}
	keysAfter, learned, err := resourceCounts(ctx, o.fhAPI())
	if err != nil {
		rErrs = append(rErrs, "after: "+err.Error())
	}
	cr.ResourcesAfter, cr.LearnedAfter = len(keysAfter), learned
	for k := range keysBefore {
		if keysAfter[k] {
			cr.ResourcesKept++
		}
	}
	cr.ResourcesErr = strings.Join(rErrs, "; ")
	if st, ok := after[cr.Ongoing]; ok {
		cr.OngoingAfter = st
	} else {
		cr.OngoingAfter = "missing"
	}
	p0, _, _ := nfh.counters(ctx)
	sleepCtx(ctx, 2*time.Second)
	p1, _, _ := nfh.counters(ctx)
	cr.ProcessingAfter = p1 > p0
	stopGen()
	<-genDone
	fmt.Fprintf(log, "after restart (ready in %.2fs): %d anomalies listed, %d missing, the one raised before the kill: %s; processing: %v\n",
		cr.RestartReadySec, cr.After, len(cr.Missing), cr.OngoingAfter, cr.ProcessingAfter)
	return nfh, nil
}
