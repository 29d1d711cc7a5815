package objectnode

import (
	"encoding/json"
	"fmt"

	"hellochat/cluster"
)

// knownKey holds the members gossip last knew, so a restarted node can
// find its peers and place shards before anyone answers it.
const knownKey = "members"

func (n *Node) loadKnown() ([]cluster.Meta, error) {
	b, err := n.store.SystemGet(knownKey)
	if err != nil || b == nil {
		return nil, err
	}
	var metas []cluster.Meta
	if err := json.Unmarshal(b, &metas); err != nil {
		return nil, fmt.Errorf("objectnode: decode known members: %w", err)
	}
	return metas, nil
}

func (n *Node) saveKnown(metas []cluster.Meta) {
	b, err := json.Marshal(metas)
	if err == nil {
		err = n.store.SystemPut(knownKey, b)
	}
	if err != nil {
		n.log.Error("persist known members", "err", err)
	}
}
