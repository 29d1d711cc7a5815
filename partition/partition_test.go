package partition

import "testing"

// Every shard gets names, and a name always lands in the same one.
func TestOfSpreadsAndIsStable(t *testing.T) {
	seen := make([]int, Count)
	for i := 0; i < 64*Count; i++ {
		name := "room-" + string(rune('a'+i%26)) + string(rune('0'+i/26%10)) + string(rune('A'+i/260%26))
		s := Of(name)
		if s < 0 || s >= Count || Of(name) != s {
			t.Fatalf("Of(%q) = %d, then %d", name, s, Of(name))
		}
		seen[s]++
	}
	for s, n := range seen {
		if n == 0 {
			t.Errorf("no name of %d lands in shard %d", 64*Count, s)
		}
	}
}
