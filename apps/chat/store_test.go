package chat

import (
	"fmt"
	"math"
	"testing"
)

// Message keys sort as their seqs do: sixteen hex digits, zero padded.
func TestMsgKey(t *testing.T) {
	for _, seq := range []uint64{0, 1, 0xabc, 1 << 40, math.MaxUint64} {
		if got, want := msgKey(seq), fmt.Sprintf("m/%016x", seq); got != want {
			t.Errorf("msgKey(%d) = %q, want %q", seq, got, want)
		}
	}
}
