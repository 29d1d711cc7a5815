// Package partition maps object names to the shards they live in. It is a
// leaf: storage keys objects by shard without knowing about membership,
// and cluster places shards on nodes.
package partition

import "github.com/cespare/xxhash/v2"

// Count is the number of shards an object name hashes into. It is fixed
// for the life of a cluster: changing it moves almost every object.
const Count = 64

// Of is the shard an object (a room) belongs to.
func Of(name string) int {
	return int(xxhash.Sum64String(name) % Count)
}
