package durable

// Limits of an object's storage, checked when an operation is asked for,
// so a refused operation changes nothing. They follow Cloudflare's for
// keys and values; the batch bound keeps one event's writes well inside
// what a Raft entry should carry (the shards' MaxSizePerMsg is 1 MiB).
const (
	// MaxKeySize bounds a key, in bytes.
	MaxKeySize = 2048
	// MaxValueSize bounds a value, in bytes.
	MaxValueSize = 128 << 10
	// MaxKeysPerList bounds what one List returns: a larger Limit is
	// refused, and so is a List without Limit that matches more keys. Page
	// with Start (or End, in reverse) instead.
	MaxKeysPerList = 1000
	// MaxKeysPerCall bounds the keys of one GetMany, PutMany or
	// DeleteMany, as Cloudflare bounds its multi-key forms.
	MaxKeysPerCall = 128
	// MaxBatchBytes bounds what one event (up to its end or a Sync) writes:
	// the sum over the keys it writes of key and value sizes, counting each
	// key once with its latest value (a deletion counts its key). Inside a
	// transaction, a key the event wrote before counts again until the
	// transaction ends: the check is an upper bound, never an undercount.
	MaxBatchBytes = 1 << 20
)
