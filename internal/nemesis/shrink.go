package nemesis

import "slices"

// Shrink looks for a shorter list of ops that still fails: it drops
// chunks of the list, halves first and then smaller ones (delta
// debugging), keeping any smaller list that fails, until no single op can
// be dropped or it has made maxRuns attempts. fails runs a list and says
// whether it failed; tried, if not nil, hears of each attempt. It returns
// the shortest failing list found and whether it is 1-minimal (no single
// op can be dropped).
func Shrink(ops []Op, maxRuns int, fails func([]Op) bool, tried func(candidate []Op, failed bool)) (shortest []Op, minimal bool) {
	cur := slices.Clone(ops)
	runs := 0
	for n := 2; len(cur) > 0; {
		chunk := (len(cur) + n - 1) / n
		shrunk := false
		for start := 0; start < len(cur); start += chunk {
			if runs == maxRuns {
				return cur, false
			}
			cand := slices.Concat(cur[:start], cur[min(start+chunk, len(cur)):])
			runs++
			failed := fails(cand)
			if tried != nil {
				tried(cand, failed)
			}
			if failed {
				cur, shrunk = cand, true
				break
			}
		}
		switch {
		case shrunk:
			n = max(n-1, 2)
		case chunk == 1:
			return cur, true
		default:
			n = min(2*n, len(cur))
		}
	}
	return cur, true
}
