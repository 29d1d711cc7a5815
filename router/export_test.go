package router

// QueuedFrom is the bytes queued for the browsers of one client address,
// for the tests of package router_test.
func (rt *Router) QueuedFrom(addr string) int64 {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if a := rt.connsByAddr[addr]; a != nil {
		return a.queued.used.Load()
	}
	return 0
}
