package detector

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/flowhound/flowhound/flow"
)

// Status of an anomaly.
const (
	StatusPending = "pending"
	StatusOngoing = "ongoing"
	StatusEnded   = "ended"
)

// Anomaly is what the detector raises: the DESIGN.md anomaly JSON.
type Anomaly struct {
	ID             string             `json:"id"`
	Status         string             `json:"status"`
	Kind           string             `json:"kind"`
	Rule           string             `json:"rule"`
	Description    string             `json:"description,omitempty"`
	Importance     string             `json:"importance"`
	SeverityPct    float64            `json:"severity_pct"`
	SeverityText   string             `json:"severity_text"` // "958.2% of 3.40 Kpps"
	Direction      string             `json:"direction"`
	Resource       Resource           `json:"resource"`
	Start          time.Time          `json:"start"`
	End            *time.Time         `json:"end,omitempty"`
	LastUpdate     time.Time          `json:"last_update"`
	Observed       Rates              `json:"observed"`
	Peak           Rates              `json:"peak"`
	Expected       Rates              `json:"expected"`
	Threshold      map[string]float64 `json:"threshold"`
	Traceback      []Ingress          `json:"traceback"`
	Character      Characterization   `json:"characterization"`
	Filters        map[string]string  `json:"filters,omitempty"`
	FilterCoverage *Coverage          `json:"filter_coverage,omitempty"`
	Snapshot       []flow.Record      `json:"snapshot,omitempty"`
	// History is the observed rate at each evaluation, for the anomaly's chart; long
	// anomalies keep every other point when it fills (bounded by maxHistory).
	History []Point `json:"history,omitempty"`
	// Suppressed names the operator suppression that kept this anomaly's alerts back.
	Suppressed string `json:"suppressed,omitempty"`
	// DetectionDelay is from the first arrival of the attack's flows to the raise, in seconds.
	DetectionDelay float64 `json:"detection_delay_s"`
}

// Point is one evaluation's observed rate.
type Point struct {
	T   time.Time `json:"t"`
	BPS float64   `json:"bps"`
	PPS float64   `json:"pps"`
}

// Resource is what an anomaly is about.
type Resource struct {
	Type string `json:"type"` // host | prefix | interface | port | global
	Key  string `json:"key"`
	Name string `json:"name,omitempty"`
}

// Rates are per-second rates scaled by sampling.
type Rates struct {
	BPS float64 `json:"bps"`
	PPS float64 `json:"pps"`
	FPS float64 `json:"fps"`
}

// Ingress is one traceback row: an (exporter, input interface) the traffic entered by.
type Ingress struct {
	Exporter     string  `json:"exporter"`
	ExporterName string  `json:"exporter_name,omitempty"`
	InIf         uint32  `json:"in_if"`
	InIfName     string  `json:"in_if_name,omitempty"`
	BPS          float64 `json:"bps"`
	PPS          float64 `json:"pps"`
	Share        float64 `json:"share"`
}

// Characterization says what the attack traffic looks like.
type Characterization struct {
	Protocols        []Count   `json:"protocols"`
	SrcPrefixes      []Count   `json:"src_prefixes"`
	SrcPorts         []Count   `json:"src_ports"`
	DstPorts         []Count   `json:"dst_ports"`
	TCPFlags         []Count   `json:"tcp_flags"`
	PacketSize       SizeStats `json:"packet_size"`
	SrcCountEstimate float64   `json:"src_count_estimate"`
	DstCountEstimate float64   `json:"dst_count_estimate,omitempty"`
	SampledFlows     int       `json:"sampled_flows"`
}

// Count is one value of a characterization with its share of the sampled packets.
type Count struct {
	Value string  `json:"value"`
	Share float64 `json:"share"`
}

// SizeStats are packet sizes in bytes (bytes/packets per flow record).
type SizeStats struct {
	Min  float64 `json:"min"`
	Max  float64 `json:"max"`
	Mean float64 `json:"mean"`
}

// Coverage says how much of the attack a filter catches and how much normal traffic it
// would also drop.
type Coverage struct {
	AttackShare float64 `json:"attack_share"`
	// NormalShare is left out until the resource's normal flows are sampled to measure it.
	NormalShare *float64 `json:"normal_share,omitempty"`
}

// Event is a change in an anomaly's life: raised, updated or ended.
type Event struct {
	Type    string // raised | updated | ended
	Anomaly Anomaly
}

// Summary is the one-line human form: "HIGH tcp-syn-flood incoming host 192.0.2.10: 958.2% of 3.40 Kpps via edge1 Gi0/0/1 (81%)".
func (a *Anomaly) Summary() string {
	via := ""
	if len(a.Traceback) > 0 {
		t := a.Traceback[0]
		name := t.ExporterName
		if name == "" {
			name = t.Exporter
		}
		ifn := t.InIfName
		if ifn == "" {
			ifn = fmt.Sprintf("if%d", t.InIf)
		}
		via = fmt.Sprintf(" via %s %s (%.0f%%)", name, ifn, t.Share*100)
	}
	return fmt.Sprintf("%s %s %s %s %s: %s%s", upper(a.Importance), a.Rule, a.Direction,
		a.Resource.Type, a.Resource.Key, a.SeverityText, via)
}

func upper(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'a' && c <= 'z' {
			b[i] = c - 32
		}
	}
	return string(b)
}

// JSON returns the anomaly's JSON line.
func (a *Anomaly) JSON() []byte {
	b, err := json.Marshal(a)
	if err != nil {
		// Every field is a plain value; this cannot fail short of a programming error.
		panic(err)
	}
	return b
}

// HumanRate formats a rate as Peakflow did: "3.40 Kpps".
func HumanRate(v float64, unit string) string {
	switch {
	case v >= 1e9:
		return fmt.Sprintf("%.2f G%s", v/1e9, unit)
	case v >= 1e6:
		return fmt.Sprintf("%.2f M%s", v/1e6, unit)
	case v >= 1e3:
		return fmt.Sprintf("%.2f K%s", v/1e3, unit)
	}
	return fmt.Sprintf("%.2f %s", v, unit)
}
