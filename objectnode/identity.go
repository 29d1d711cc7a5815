package objectnode

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/cespare/xxhash/v2"

	"hellochat/cluster"
	"hellochat/storage"
)

// identity is who this node's data dir is, stored in the data dir itself.
type identity struct {
	// Replica is the incarnation of the data dir, made fresh when a node
	// starts on an empty disk: a node that lost its disk comes back as a
	// new replica, with a new Raft id, and never votes with a memory it no
	// longer has. "" marks a data dir from before incarnations existed.
	Replica string `json:"replica"`
	// Cluster is the cluster the data belongs to, "" until this node has
	// formed or joined one.
	Cluster string `json:"cluster,omitempty"`
	// Leaving is set when the node is being decommissioned; it survives a
	// restart, so a decommission finishes.
	Leaving bool `json:"leaving,omitempty"`
	// Incarnation orders this node's starts for gossip (cluster.Meta.Started):
	// each start takes one above the last, or the clock if that is later,
	// so a node whose clock went back still supersedes its older self.
	Incarnation int64 `json:"incarnation,omitempty"`
}

// nextIncarnation takes and saves the incarnation of this start.
func nextIncarnation(store *storage.Store, id *identity) error {
	id.Incarnation = max(id.Incarnation+1, time.Now().UnixNano())
	return saveIdentity(store, *id)
}

const identityKey = "identity"

// loadIdentity reads the data dir's identity, making (and syncing) a new
// one for an empty data dir before anything else is written to it.
func loadIdentity(store *storage.Store) (identity, error) {
	b, err := store.SystemGet(identityKey)
	if err != nil {
		return identity{}, err
	}
	if b != nil {
		var id identity
		if err := json.Unmarshal(b, &id); err != nil {
			return identity{}, fmt.Errorf("objectnode: decode identity: %w", err)
		}
		return id, nil
	}
	var id identity
	legacy := false
	for s := 0; s < cluster.Partitions && !legacy; s++ {
		if _, found, err := store.LoadRaft(s); err != nil {
			return identity{}, err
		} else if found {
			legacy = true
		}
	}
	if !legacy {
		var r [8]byte
		if _, err := rand.Read(r[:]); err != nil {
			return identity{}, fmt.Errorf("objectnode: new replica id: %w", err)
		}
		id.Replica = hex.EncodeToString(r[:])
	}
	return id, saveIdentity(store, id)
}

func saveIdentity(store *storage.Store, id identity) error {
	b, err := json.Marshal(id)
	if err != nil {
		return err
	}
	return store.SystemPut(identityKey, b)
}

// formedClusterID names a cluster formed by the given nodes: every founding
// node computes the same id from the same set.
func formedClusterID(nodes []cluster.Meta) string {
	ids := make([]string, len(nodes))
	for i, n := range nodes {
		ids[i] = n.ID + "/" + n.Replica
	}
	sort.Strings(ids)
	return fmt.Sprintf("%016x", xxhash.Sum64String(strings.Join(ids, ",")))
}

func (n *Node) leaving() bool { return n.identity().Leaving }

// identity is a copy of the node's identity (startReplication and
// Decommission change it).
func (n *Node) identity() identity {
	n.identMu.Lock()
	defer n.identMu.Unlock()
	return n.ident
}

func (n *Node) setIdentity(change func(*identity)) {
	n.identMu.Lock()
	defer n.identMu.Unlock()
	change(&n.ident)
	if err := saveIdentity(n.store, n.ident); err != nil {
		n.fail(fmt.Errorf("persist node identity: %w", err))
	}
}
