package durable

import (
	"encoding/binary"
	"fmt"
)

// Key layout within an object (see the package doc). User keys get a
// prefix so that none starts with 0x00, which the store keeps for itself,
// and so the runtime's own keys cannot collide with them.
const (
	userPrefix = 'u'
	metaPrefix = 'm'
)

var (
	// legacyVersionKey held each batch's version beside the store's own
	// record of it (storage.VersionKey) until the store's record was
	// read instead; objects written then still have it, always equal to
	// the store's, and nothing writes it now.
	legacyVersionKey = []byte{metaPrefix, 'v'}
	alarmKey         = []byte{metaPrefix, 'a'}
)

func userKey(k string) []byte {
	b := make([]byte, 0, 1+len(k))
	return append(append(b, userPrefix), k...)
}

// userEnd is the store key just past every user key.
var userEnd = []byte{userPrefix + 1}

func encodeUint64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

func decodeUint64(what string, b []byte) (uint64, error) {
	if len(b) != 8 {
		return 0, fmt.Errorf("durable: stored %s is %d bytes, want 8", what, len(b))
	}
	return binary.BigEndian.Uint64(b), nil
}
