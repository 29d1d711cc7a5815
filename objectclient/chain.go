package objectclient

import (
	"fmt"
	"strings"

	"hellochat/apps"
	"hellochat/durable"
)

// EncodeChain writes a call chain as CallRequest.chain: "class/id" each.
func EncodeChain(chain []durable.ID) []string {
	if len(chain) == 0 {
		return nil
	}
	out := make([]string, len(chain))
	for i, id := range chain {
		out[i] = id.Namespace() + "/" + id.String()
	}
	return out
}

// DecodeChain reads CallRequest.chain, checking each entry against the
// classes in reg. A chain longer than durable.MaxCallDepth is refused: no
// node sends one.
func DecodeChain(reg *apps.Registry, chain []string) ([]durable.ID, error) {
	if len(chain) > durable.MaxCallDepth {
		return nil, fmt.Errorf("call chain of %d objects, more than %d", len(chain), durable.MaxCallDepth)
	}
	ids := make([]durable.ID, len(chain))
	for i, entry := range chain {
		class, hex, ok := strings.Cut(entry, "/")
		if !ok {
			return nil, fmt.Errorf("call chain entry %d is not class/id", i)
		}
		ns, _, found := reg.Class(class)
		if !found {
			return nil, fmt.Errorf("call chain entry %d: no object class %.64q is registered", i, class)
		}
		id, err := ns.IDFromString(hex)
		if err != nil {
			return nil, fmt.Errorf("call chain entry %d: %w", i, err)
		}
		ids[i] = id
	}
	return ids, nil
}
