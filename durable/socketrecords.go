package durable

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"hellochat/storage"
)

// The records an object keeps of its sockets: what the store holds, the
// in-memory cache events read them through, and the writes an event's
// changes make.

// socketRecord is what the store keeps of an accepted socket, so that it
// outlives the object's eviction and its leader's failover.
type socketRecord struct {
	Tags       []string `json:"t,omitempty"`
	Attachment []byte   `json:"a,omitempty"`
	// N is the number of the last message the object took from the
	// socket (WebSocketMessageAt), committed with what it wrote. It is
	// stored under a key of its own (socketNumberKey), as it changes
	// with every message: rewriting the record each time put its tags
	// and attachment, base64 in JSON, into every message's Raft entry on
	// every replica. Records written before kept it here as "n"; the
	// larger of the two counts.
	N uint64 `json:"n,omitempty"`
}

// socketKey is a socket's record's store key: meta, 's', the id.
func socketKey(id string) []byte { return append([]byte{metaPrefix, 's'}, id...) }

var socketKeysEnd = []byte{metaPrefix, 's' + 1}

// socketNumberKey holds a socket's N: meta, 'n', the id.
func socketNumberKey(id string) []byte { return append([]byte{metaPrefix, 'n'}, id...) }

var socketNumbersEnd = []byte{metaPrefix, 'n' + 1}

// socketCache is the object's socket records as the events see them
// (committed, or handed to the Committer), kept in memory: only the
// actor writes them, and a broadcast that listed them from the store
// would scan every version a busy room left in the memtable. It is read
// once, on first use, and dropped when the storage is reloaded.
type socketCache struct {
	recs map[string]*socketRecord
	ids  []string // sorted; nil once a socket came or went
}

// sockets returns the cache, reading it from the store on first use.
func (s *Storage) socketCache() (*socketCache, error) {
	if s.held != nil {
		return s.held, nil
	}
	c := &socketCache{recs: map[string]*socketRecord{}}
	var decodeErr error
	err := s.base.r.Scan(s.base.object, socketKey(""), socketKeysEnd, false, func(k, v []byte) bool {
		id := string(k[2:])
		rec, err := decodeSocket(id, v)
		if err != nil {
			decodeErr = err
			return false
		}
		c.recs[id] = rec
		return true
	})
	if err == nil {
		err = decodeErr
	}
	if err == nil {
		err = s.base.r.Scan(s.base.object, socketNumberKey(""), socketNumbersEnd, false, func(k, v []byte) bool {
			rec := c.recs[string(k[2:])]
			if rec == nil {
				return true // its socket's record is gone: the number is a leftover
			}
			n, err := decodeUint64("socket message number", v)
			if err != nil {
				decodeErr = err
				return false
			}
			rec.N = max(rec.N, n)
			return true
		})
	}
	if err == nil {
		err = decodeErr
	}
	if err != nil {
		return nil, fmt.Errorf("durable: list sockets: %w", err)
	}
	s.held = c
	return c, nil
}

// sortedIDs is the cache's socket ids, in order.
func (c *socketCache) sortedIDs() []string {
	if c.ids == nil {
		c.ids = make([]string, 0, len(c.recs))
		for id := range c.recs {
			c.ids = append(c.ids, id)
		}
		slices.Sort(c.ids)
	}
	return c.ids
}

// stage applies the event's changes to the cache (they were handed to
// the Committer with its writes).
func (s *Storage) stageSockets() {
	if s.held == nil {
		return
	}
	for id, rec := range s.sockets {
		_, had := s.held.recs[id]
		if rec == nil {
			delete(s.held.recs, id)
		} else {
			s.held.recs[id] = rec
		}
		if had != (rec != nil) {
			s.held.ids = nil
		}
	}
}

// socketRecord reads socket id's record as the event sees it.
func (s *Storage) socketRecord(id string) (*socketRecord, error) {
	if rec, ok := s.sockets[id]; ok {
		if rec == nil {
			return nil, ErrSocketClosed
		}
		return rec, nil
	}
	c, err := s.socketCache()
	if err != nil {
		return nil, err
	}
	rec, ok := c.recs[id]
	if !ok {
		return nil, ErrUnknownSocket
	}
	return rec, nil
}

func decodeSocket(id string, b []byte) (*socketRecord, error) {
	var rec socketRecord
	if err := json.Unmarshal(b, &rec); err != nil {
		return nil, fmt.Errorf("durable: decode socket %s: %w", id, err)
	}
	return &rec, nil
}

// heldSocket is a socket the object holds, as the event sees it.
type heldSocket struct {
	id  string
	rec *socketRecord
}

// socketList lists the sockets the event sees, in id order, with their
// records: the cache's, under the event's changes. Only sockets the event
// added need sorting in: one that changed only records (a message's
// number) keeps the cache's order.
func (s *Storage) socketList() ([]heldSocket, error) {
	c, err := s.socketCache()
	if err != nil {
		return nil, err
	}
	ids := c.sortedIDs()
	held := make([]heldSocket, 0, len(ids)+len(s.sockets))
	for _, id := range ids {
		rec, changed := s.sockets[id]
		switch {
		case !changed:
			held = append(held, heldSocket{id, c.recs[id]})
		case rec != nil:
			held = append(held, heldSocket{id, rec})
		}
	}
	added := false
	for id, rec := range s.sockets {
		if _, cached := c.recs[id]; !cached && rec != nil {
			held = append(held, heldSocket{id, rec})
			added = true
		}
	}
	if added {
		slices.SortFunc(held, func(a, b heldSocket) int { return strings.Compare(a.id, b.id) })
	}
	return held, nil
}

// socketOps are the socket records' changes the event makes.
func (s *Storage) socketOps() []storage.Op {
	if len(s.sockets) == 0 {
		return nil
	}
	ops := make([]storage.Op, 0, len(s.sockets))
	for id, rec := range s.sockets {
		if rec == nil {
			ops = append(ops, storage.Op{Key: socketKey(id), Delete: true}, storage.Op{Key: socketNumberKey(id), Delete: true})
			continue
		}
		var was *socketRecord // the record as the store has it, or will once what was staged commits
		if s.held != nil {
			was = s.held.recs[id]
		}
		rewrite := was == nil || !slices.Equal(was.Tags, rec.Tags) || !bytes.Equal(was.Attachment, rec.Attachment)
		if rewrite {
			b, err := json.Marshal(socketRecord{Tags: rec.Tags, Attachment: rec.Attachment})
			if err != nil {
				panic(fmt.Sprintf("durable: encode socket record: %v", err)) // strings and bytes: cannot fail
			}
			ops = append(ops, storage.Op{Key: socketKey(id), Value: b})
		}
		// A rewritten record drops an "n" the old format kept in it.
		if rec.N > 0 && (rewrite || was.N != rec.N) {
			ops = append(ops, storage.Op{Key: socketNumberKey(id), Value: encodeUint64(rec.N)})
		}
	}
	slices.SortFunc(ops, func(a, b storage.Op) int { return strings.Compare(string(a.Key), string(b.Key)) })
	return ops
}
