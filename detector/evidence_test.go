package detector

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

// TestTop checks the one-pass top five against sorting every value, ties included.
func TestTop(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	name := func(k int) string { return fmt.Sprintf("v%03d", k) }
	for _, tc := range []struct {
		name   string
		values int
		levels int // distinct shares: few levels make many ties
	}{
		{"empty", 0, 1}, {"one", 1, 1}, {"fewer than five", 3, 100}, {"all tied", 40, 1},
		{"some ties", 200, 7}, {"distinct", 500, 1 << 30},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for range 20 {
				m := map[int]float64{}
				total := 0.0
				for range tc.values {
					k, v := rng.IntN(1000), float64(1+rng.IntN(tc.levels))
					m[k] = v
				}
				for _, v := range m {
					total += v
				}
				keys := make([]int, 0, len(m))
				for k := range m {
					keys = append(keys, k)
				}
				slices.SortFunc(keys, func(a, b int) int {
					switch {
					case m[a] > m[b]:
						return -1
					case m[a] < m[b]:
						return 1
					}
					return a - b // names sort like the keys here
				})
				got := top(m, max(total, 1), name)
				if len(got) != min(5, len(m)) {
					t.Fatalf("%d values, want %d", len(got), min(5, len(m)))
				}
				for i, c := range got {
					if c.Value != name(keys[i]) {
						t.Fatalf("place %d: %s, want %s (%v)", i, c.Value, name(keys[i]), got)
					}
				}
			}
		})
	}
}
