package objectnode

import (
	"errors"
	"fmt"
	"testing"
)

// A stream resolves each object it carries once, refuses a bad one every
// time, and keeps at most maxCachedTargets.
func TestTargetCacheResolvesEachObjectOnce(t *testing.T) {
	calls := map[string]int{}
	c := newTargetCache(func(class, id, name string) (target, error) {
		calls[class+"/"+id+"/"+name]++
		if name == "bad" {
			return target{}, errors.New("name does not match the id")
		}
		return target{what: class + "/" + id}, nil
	})
	for range 3 {
		if got, err := c.resolve("Chat", "abc", "lobby"); err != nil || got.what != "Chat/abc" {
			t.Fatalf("resolve: %v, %v", got, err)
		}
		if _, err := c.resolve("Chat", "abc", "bad"); err == nil {
			t.Fatal("a bad name resolved")
		}
	}
	if calls["Chat/abc/lobby"] != 1 || calls["Chat/abc/bad"] != 3 {
		t.Fatalf("resolved %v, want the good one once and the bad one each time", calls)
	}
	for i := range maxCachedTargets + 10 {
		if _, err := c.resolve("Chat", fmt.Sprint(i), ""); err != nil {
			t.Fatal(err)
		}
	}
	if len(c.known) > maxCachedTargets {
		t.Fatalf("%d targets kept, at most %d", len(c.known), maxCachedTargets)
	}
}
