package durable

import (
	"context"
	"strconv"
	"sync"
	"testing"
	"time"

	"hellochat/storage"
)

// slowCommitter applies each batch after a fixed delay, one at a time, as
// a Raft round trip would: what an object can do per second then depends
// on how many events share a commit.
type slowCommitter struct {
	*MemStore
	delay   time.Duration
	mu      sync.Mutex
	batches int
}

func (c *slowCommitter) Commit(object string, ops []storage.Op, guards storage.Guards, done func(error)) {
	time.AfterFunc(c.delay, func() {
		c.mu.Lock()
		c.batches++
		c.mu.Unlock()
		done(c.Apply(object, ops, guards))
	})
}

// BenchmarkWritesOnSlowCommits: 64 callers each write a key of one object
// whose commits take 1 ms. It reports events per second and events per
// batch.
func BenchmarkWritesOnSlowCommits(b *testing.B) {
	c := &slowCommitter{MemStore: NewMemStore(), delay: time.Millisecond}
	ns, _ := NewNamespace("Bench")
	a, err := Start(ns.IDFromName("o"), func() Object {
		return &testClass{call: func(_ context.Context, s *State, method string, _ []byte) ([]byte, error) {
			return nil, s.Storage().Put(method, []byte("v"))
		}}
	}, Config{Reader: c, Committer: c, Logger: quiet})
	if err != nil {
		b.Fatal(err)
	}
	defer a.Close()
	const callers = 64
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for g := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := g; i < b.N; i += callers {
				if _, err := a.Call(context.Background(), "k"+strconv.Itoa(i%1000), nil); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	c.mu.Lock()
	batches := c.batches
	c.mu.Unlock()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "events/s")
	b.ReportMetric(float64(b.N)/float64(max(batches, 1)), "events/batch")
}
