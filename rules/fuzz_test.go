package rules

import (
	"strings"
	"testing"
)

// FuzzParse feeds arbitrary files to Parse: a bad rule file must be an error with a
// position, never a panic.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"- name: a\n  match: proto == 6\n  threshold: pps > 1\n",
		"- name: x\n  limits: {syn_pps: 1e9}\n  threshold: |\n    pps >\n      limits.syn_pps\n",
		"- &a\n  name: x\n- *a\n", "- [1, 2]\n", "---\n- {}\n---\n- name: y\n", "'", "- name: \"\\u00e9\"\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, src string) {
		rs, err := Parse("f.yaml", []byte(src))
		if err != nil && !strings.HasPrefix(err.Error(), "f.yaml") {
			t.Errorf("error without the file name: %v", err)
		}
		for _, r := range rs {
			if err := r.Validate(); err != nil {
				t.Errorf("returned an invalid rule: %v", err)
			}
			r.Match.PosAt(len(r.Match.Source) + 3)
			r.Threshold.PosAt(0)
		}
	})
}
