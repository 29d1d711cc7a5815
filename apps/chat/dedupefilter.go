package chat

import (
	"fmt"
	"hash/maphash"

	"hellochat/durable"
)

// A busy room answers "is this message stored already?" from memory: a
// Bloom filter over its dedupe records says "no" for nearly every new
// message, and only a "maybe" reads the store. The read was a third of a
// hot room's actor time (bench scenario 4): a point lookup of a key that
// is not there walks every memtable. A quiet room keeps no filter and
// reads.
//
// The filter must hold every record the store holds (a missing one would
// store a resend twice); it may hold more (records forgotten, or writes
// that failed: those cost a read). It is filled from the store a chunk per
// message, while the instance's own new records go straight in, and then
// used. Forgotten records stay in it, so once it took as many records
// again as it was built with, a fresh one is filled beside it, the old one
// answering meanwhile.
const (
	// filterAfter is how many messages an instance stores before it fills
	// a filter: a room that sees fewer keeps none, unless it keeps at
	// most filterChunk records, which one read fills a small filter with
	// (many quiet rooms each paid a point read per message: 16% of a
	// node's CPU in bench scenario 3).
	filterAfter = 64
	// filterChunk is how many records each message reads into a filter
	// being filled.
	filterChunk = 128
	// filterBitsPerKey and filterHashes give about 1% false "maybe"s.
	filterBitsPerKey = 10
	filterHashes     = 7
)

// bloom is a Bloom filter of strings.
type bloom struct {
	bits []uint64
	seed maphash.Seed
}

func newBloom(keys int) *bloom {
	words := max(1, (keys*filterBitsPerKey+63)/64)
	return &bloom{bits: make([]uint64, words), seed: maphash.MakeSeed()}
}

// positions calls fn with each of key's bit positions (double hashing).
func (b *bloom) positions(key string, fn func(word int, mask uint64) bool) bool {
	h := maphash.String(b.seed, key)
	h1, h2 := h, h>>33|h<<31|1
	n := uint64(len(b.bits) * 64)
	for i := range uint64(filterHashes) {
		p := (h1 + i*h2) % n
		if !fn(int(p/64), 1<<(p%64)) {
			return false
		}
	}
	return true
}

func (b *bloom) add(key string) {
	b.positions(key, func(w int, m uint64) bool { b.bits[w] |= m; return true })
}

func (b *bloom) mayHave(key string) bool {
	return b.positions(key, func(w int, m uint64) bool { return b.bits[w]&m != 0 })
}

// filling is a filter being filled from the store: records up to (and
// not past) cursor are in it.
type filling struct {
	f      *bloom
	cap    int    // records it is sized for
	cursor string // the last key read ("": none yet)
}

// dedupeFilter is a room's: the filter in use, if complete, and the one
// being filled.
type dedupeFilter struct {
	stored int // messages this instance stored
	ready  *bloom
	cap    int // records ready is sized for
	adds   int // records added to ready since it was filled
	next   *filling
}

// mayHave says whether the store may hold the record under key: false
// only when the filter in use is sure.
func (d *dedupeFilter) mayHave(key string) bool {
	return d.ready == nil || d.ready.mayHave(key)
}

// added takes a record this instance stores (in the event running).
func (d *dedupeFilter) added(key string) {
	d.stored++
	if d.ready != nil {
		d.ready.add(key)
		d.adds++
	}
	if d.next != nil {
		d.next.f.add(key)
	}
}

// step reads the next chunk of records into the filter being filled,
// starting one when it is time; records is about how many the room keeps
// (sizing a new filter). Called once per message stored.
func (d *dedupeFilter) step(st *durable.Storage, records int) error {
	if d.next == nil {
		if d.stored < filterAfter && records > filterChunk || d.ready != nil && d.adds < d.cap/2 {
			return nil
		}
		capacity := 2 * (records + filterChunk)
		d.next = &filling{f: newBloom(capacity), cap: capacity}
	}
	kvs, err := st.List(durable.ListOptions{Prefix: dedupPrefix, StartAfter: d.next.cursor, Limit: filterChunk})
	if err != nil {
		return fmt.Errorf("read dedupe records into the filter: %w", err)
	}
	for _, kv := range kvs {
		d.next.f.add(kv.Key[len(dedupPrefix):])
		d.next.cursor = kv.Key
	}
	if len(kvs) == filterChunk {
		return nil
	}
	// Every record stored is in it: records past the cursor were read,
	// and the ones this instance wrote since it began went straight in.
	d.ready, d.cap, d.adds, d.next = d.next.f, d.next.cap, 0, nil
	return nil
}
