package chat

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strconv"

	"hellochat/apps/chat/wire"
	"hellochat/durable"
	"hellochat/limits"
)

// DedupeWindow is how many of a room's newest messages keep their dedupe
// records: a resend is recognised while fewer than this many messages
// were stored after its first copy.
const DedupeWindow = 1 << 16

// A room's storage:
//
//	"m/" %016x   message seq, a JSON record (wire.AppendRecord): the
//	             message as browsers are shown it, and its sender's
//	             client key, which they never are
//	"d/" KEY     dedupe record: seq and timestamp (16 bytes) of the
//	             message stored under KEY (dedupeKey)
//
// A message's record names its dedupe KEY, so that forget finds the
// records to drop without an index of its own: one key fewer per message
// to write on every replica.
const (
	msgPrefix   = "m/"
	dedupPrefix = "d/"
)

// StoredMessages names where a room's messages are in a node's store: its
// storage object and the store keys [start, end) of its messages, one
// key each. For tools and tests that read a store without the room.
func StoredMessages(room string) (object string, start, end []byte) {
	return Namespace.IDFromName(room).StorageObject(), durable.StoreKey(msgPrefix), durable.StoreKey("m0") // '0' follows '/'
}

// decodeMessage reads a stored message and its sender's client key.
func decodeMessage(kv durable.KV) (wire.Message, string, error) {
	m, key, err := wire.DecodeRecord(kv.Value)
	if err != nil {
		return wire.Message{}, "", fmt.Errorf("decode message %s: %w", kv.Key, err)
	}
	return m, key, nil
}

// msgKey is "m/" and seq in 16 hex digits, so keys sort as seqs do.
func msgKey(seq uint64) string {
	var b [len(msgPrefix) + 16]byte
	copy(b[:], msgPrefix)
	hex.Encode(b[len(msgPrefix):], binary.BigEndian.AppendUint64(nil, seq))
	return string(b[:])
}

// dedupeKey names a message for resends: v2 by sender name, key and id
// (NUL cannot occur in any of them: limits refuse control characters);
// seed messages by their socket and its message number, marked as the
// router marked its own ids.
func dedupeKey(name, key, id string) string { return name + "\x00" + key + "\x00" + id }

func seedID(socket string, n uint64) string {
	return seedPrefix(socket) + strconv.FormatUint(n, 36)
}

// seedPrefix begins the ids of the seed messages socket sent.
func seedPrefix(socket string) string { return limits.RouterIDMark + socket + "." }

func encodeStored(seq uint64, ts int64) []byte {
	b := make([]byte, 16)
	binary.BigEndian.PutUint64(b, seq)
	binary.BigEndian.PutUint64(b[8:], uint64(ts))
	return b
}

func decodeStored(b []byte) (seq uint64, ts int64, err error) {
	if len(b) != 16 {
		return 0, 0, fmt.Errorf("dedupe record of %d bytes, want 16", len(b))
	}
	return binary.BigEndian.Uint64(b), int64(binary.BigEndian.Uint64(b[8:])), nil
}

// page is a run of messages, oldest first, and whether older ones exist.
type page struct {
	msgs []wire.Message
	more bool
}

// newest reads the newest page of messages with seq < before (0: all):
// at most limit messages and about limits.MaxPageBytes of text, at least
// one message when there is one.
func newest(st *durable.Storage, before uint64, limit int) (page, error) {
	opts := durable.ListOptions{Prefix: msgPrefix, Reverse: true, Limit: limit + 1}
	if before > 0 {
		opts.End = msgKey(before)
	}
	kvs, err := st.List(opts)
	if err != nil {
		return page{}, fmt.Errorf("read history: %w", err)
	}
	var p page
	bytes := 0
	for i, kv := range kvs {
		if i == limit || (i > 0 && bytes+len(kv.Value) > limits.MaxPageBytes) {
			p.more = true
			break
		}
		m, _, err := decodeMessage(kv)
		if err != nil {
			return page{}, err
		}
		bytes += len(kv.Value)
		p.msgs = append(p.msgs, m)
	}
	for i, j := 0, len(p.msgs)-1; i < j; i, j = i+1, j-1 {
		p.msgs[i], p.msgs[j] = p.msgs[j], p.msgs[i]
	}
	return p, nil
}

// since reads the messages with seq > after, oldest first, at most limit.
func since(st *durable.Storage, after uint64, limit int) ([]wire.Message, error) {
	kvs, err := st.List(durable.ListOptions{Prefix: msgPrefix, Start: msgKey(after + 1), Limit: limit})
	if err != nil {
		return nil, fmt.Errorf("read messages after %d: %w", after, err)
	}
	out := make([]wire.Message, 0, len(kvs))
	for _, kv := range kvs {
		m, _, err := decodeMessage(kv)
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, nil
}
