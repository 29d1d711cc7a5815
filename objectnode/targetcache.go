package objectnode

// maxCachedTargets bounds the objects one Gateway stream remembers
// resolving; past it the stream starts afresh.
const maxCachedTargets = 4096

// targetCache remembers, for one Gateway stream, the objects its events
// were resolved to. Every message of a socket names the same class, id
// and name, and resolving them again decoded and encoded the id in hex
// and hashed the name (to check it against the id) for each message. It
// is owned by the stream's receiving goroutine. Only what resolved is
// kept: a bad event is checked, and refused, every time.
type targetCache struct {
	resolveFn func(class, rawID, name string) (target, error)
	known     map[targetKey]target
}

type targetKey struct{ class, id, name string }

func newTargetCache(resolve func(class, rawID, name string) (target, error)) *targetCache {
	return &targetCache{resolveFn: resolve, known: map[targetKey]target{}}
}

func (c *targetCache) resolve(class, rawID, name string) (target, error) {
	k := targetKey{class, rawID, name}
	if t, ok := c.known[k]; ok {
		return t, nil
	}
	t, err := c.resolveFn(class, rawID, name)
	if err != nil {
		return t, err
	}
	if len(c.known) >= maxCachedTargets {
		clear(c.known)
	}
	c.known[k] = t
	return t, nil
}
