package objectnode

import (
	"encoding/binary"
	"fmt"
	"math"
	"slices"

	"google.golang.org/protobuf/proto"

	"hellochat/limits"
	pb "hellochat/proto/roompb"
	"hellochat/storage"
)

// A room's keys in its object's key space:
//
//	m <seq:8 big-endian>                         a committed message (pb.ChatMessage), so keys sort in seq order
//	d <sender name> 0x00 <client id> [0x00 <key>] the seq and time a client message id was stored under
//	i <seq:8 big-endian>                         the d key's suffix written with that seq
//
// The 'd' index makes exactly-once exact within DedupeWindow: a resend is
// recognised while fewer than that many messages were stored after its
// first copy. The 'i' index finds a seq's 'd' record (a message does not
// carry its sender's key) so that the batch storing seq s deletes both
// records of seq s-DedupeWindow: the index holds at most DedupeWindow of
// each on every replica and in every snapshot. Names and ids hold no 0x00
// (control characters are refused), so (name, id, key) cannot collide.
const (
	msgKeyPrefix    = 'm'
	dedupeKeyPrefix = 'd'
	seqIDKeyPrefix  = 'i'
)

func msgKey(seq uint64) []byte {
	return binary.BigEndian.AppendUint64([]byte{msgKeyPrefix}, seq)
}

// dedupeKey scopes a client message id to its sender's name: two users who
// happen to pick the same id do not swallow each other's messages.
// dedupeKey is what tells a resend from a new message: the sender's name
// and id, and its key when it has one. Neither names nor ids hold NULs, so
// keyed and keyless senders never share an entry.
func dedupeKey(name, key, clientID string) string {
	if key == "" {
		return name + "\x00" + clientID
	}
	return name + "\x00" + clientID + "\x00" + key
}

func dedupeStoreKey(key string) []byte {
	return append([]byte{dedupeKeyPrefix}, key...)
}

func seqIDKey(seq uint64) []byte {
	return binary.BigEndian.AppendUint64([]byte{seqIDKeyPrefix}, seq)
}

func encodeStored(seq uint64, ts int64) []byte {
	b := binary.BigEndian.AppendUint64(make([]byte, 0, 16), seq)
	return binary.BigEndian.AppendUint64(b, uint64(ts))
}

func decodeStored(v []byte) (seq uint64, ts int64, err error) {
	if len(v) != 16 {
		return 0, 0, fmt.Errorf("dedupe record of %d bytes, want 16", len(v))
	}
	return binary.BigEndian.Uint64(v), int64(binary.BigEndian.Uint64(v[8:])), nil
}

// readPage answers a page request from the store. The store holds only
// applied, so committed, messages: reading it outside the room actor never
// shows anyone an uncommitted message, and keeps long reads (a seed client's
// whole history) from delaying the room.
func readPage(store *storage.Store, room string, req *pb.PageRequest) (*pb.Page, error) {
	limit := int(req.Limit)
	if limit <= 0 || limit > limits.HistoryLimit {
		limit = limits.HistoryLimit
	}
	page := &pb.Page{Id: req.Id}
	budget := limits.MaxPageBytes
	var decodeErr error
	take := func(key, value []byte) bool {
		m := &pb.ChatMessage{}
		if err := proto.Unmarshal(value, m); err != nil {
			decodeErr = fmt.Errorf("decode message %x: %w", key, err)
			return false
		}
		page.Messages = append(page.Messages, m)
		budget -= len(value)
		return len(page.Messages) < limit && budget > 0
	}
	end := []byte{msgKeyPrefix + 1}
	var err error
	switch {
	case req.Forward && req.After == math.MaxUint64:
		// Nothing can follow; After+1 would wrap to the first message.
	case req.Forward:
		err = store.Scan(room, msgKey(req.After+1), end, false, take)
	default:
		if req.Before > 0 {
			end = msgKey(req.Before)
		}
		err = store.Scan(room, msgKey(1), end, true, take)
		slices.Reverse(page.Messages)
		page.More = len(page.Messages) > 0 && page.Messages[0].Seq > 1
	}
	if err == nil {
		err = decodeErr
	}
	if err != nil {
		return nil, fmt.Errorf("read page of %q: %w", room, err)
	}
	return page, nil
}
