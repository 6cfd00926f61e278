package gen

import "math"

// rng is splitmix64: tiny state, no interface call, and good enough statistics for
// traffic synthesis, which draws several numbers per flow at up to millions of flows/s.
type rng struct{ s uint64 }

func (r *rng) u64() uint64 {
	r.s += 0x9E3779B97F4A7C15
	z := r.s
	z = (z ^ z>>30) * 0xBF58476D1CE4E5B9
	z = (z ^ z>>27) * 0x94D049BB133111EB
	return z ^ z>>31
}

// n returns a uniform int in [0, n) for 0 < n < 2^32.
func (r *rng) n(n int) int { return int((r.u64() >> 32) * uint64(n) >> 32) }

// between returns a uniform int in [lo, hi].
func (r *rng) between(lo, hi int) int { return lo + r.n(hi-lo+1) }

func (r *rng) float() float64 { return float64(r.u64()>>11) / (1 << 53) }

// normals holds standard normal quantiles at evenly spaced probabilities; drawing one at
// random is a stratified normal sample without a logarithm and a cosine per draw.
var normals = func() (t [4096]float64) {
	for i := range t {
		p := (float64(i) + 0.5) / float64(len(t))
		t[i] = math.Sqrt2 * math.Erfinv(2*p-1)
	}
	return
}()

// lognormal draws from a log-normal distribution with the given median and shape, the
// usual model of flow sizes and rates.
func (r *rng) lognormal(median, sigma float64) float64 {
	return median * math.Exp(sigma*normals[r.u64()&uint64(len(normals)-1)])
}

// skewed returns an index in [0, n) biased towards 0, so that a few servers of a pool
// get most of the traffic, as popular sites and CDNs do.
func (r *rng) skewed(n int) int {
	u := r.float()
	return min(int(u*u*u*float64(n)), n-1)
}

// mix32 is a fast integer hash, used to derive stable per-address properties (the
// exporter a remote network is reached through, its AS and prefix length).
func mix32(a uint32) uint32 {
	a ^= a >> 16
	a *= 0x7feb352d
	a ^= a >> 15
	a *= 0x846ca68b
	a ^= a >> 16
	return a
}

// publicOK reports whether an IPv4 address looks like a routable Internet host: not
// private, loopback, link-local, CGN, benchmarking, multicast or reserved, and not in
// the documentation ranges that the scenarios use for the customer networks and for
// 203.0.113.0/24, which they use deliberately.
func publicOK(a uint32) bool {
	switch a >> 24 {
	case 0, 10, 127:
		return false
	}
	switch {
	case a >= 224<<24,
		a>>16 == 169<<8|254,
		a>>20 == 172<<4|1,
		a>>16 == 192<<8|168,
		a>>22 == 100<<2|1,
		a>>17 == (198<<8|18)>>1,
		a>>8 == 192<<16|0<<8|0,
		a>>8 == 192<<16|0<<8|2,
		a>>8 == 198<<16|51<<8|100,
		a>>8 == 203<<16|0<<8|113:
		return false
	}
	return true
}

// public returns a random public-looking IPv4 address.
func (r *rng) public() uint32 {
	for {
		if a := uint32(r.u64()); publicOK(a) {
			return a
		}
	}
}
