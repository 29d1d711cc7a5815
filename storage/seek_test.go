package storage

import (
	"fmt"
	"maps"
	"slices"
	"testing"

	"hellochat/partition"
)

// SeekObjects visits every object of one shard with the prefix, once, in
// pages, gives the key's value where there is one, and sees neither other
// shards, other prefixes nor the objects' other keys.
func TestSeekObjectsPagesThroughOneShard(t *testing.T) {
	s := openTestStore(t, t.TempDir())
	defer s.Close()
	const shard = 7
	var want []string // objects of the shard with the prefix
	withKey := map[string]bool{}
	for i := 0; len(want) < 10; i++ {
		name := fmt.Sprintf("\x01do/C/%04d", i)
		ops := []Op{{Key: []byte("ua"), Value: []byte("x")}, {Key: []byte("uz"), Value: []byte("y")}}
		if i%3 == 0 {
			ops = append(ops, Op{Key: []byte("ma"), Value: []byte(name)})
		}
		if err := s.Apply(name, ops); err != nil {
			t.Fatal(err)
		}
		// A room on the same shard: printable, outside the prefix.
		if err := s.Apply(fmt.Sprintf("room%d", i), []Op{{Key: []byte("ma"), Value: []byte("no")}}); err != nil {
			t.Fatal(err)
		}
		if partition.Of(name) == shard {
			want = append(want, name)
			withKey[name] = i%3 == 0
		}
	}
	slices.Sort(want)
	var got []string
	after, pages := "", 0
	for {
		last, done, err := s.SeekObjects(shard, "\x01do/", after, []byte("ma"), 3, func(object string, value []byte) {
			got = append(got, object)
			if withKey[object] != (value != nil) || value != nil && string(value) != object {
				t.Errorf("%q: value %q, want it set: %v", object, value, withKey[object])
			}
		})
		if err != nil {
			t.Fatal(err)
		}
		pages++
		if done {
			break
		}
		after = last
		if pages > 100 {
			t.Fatal("no end")
		}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("visited %q, want %q", got, want)
	}
}

// SeekObjectsHaving finds the objects with any key under a prefix, and
// not those whose keys only sort near it.
func TestSeekObjectsHavingAKeyPrefix(t *testing.T) {
	s := openTestStore(t, t.TempDir())
	defer s.Close()
	const shard = 3
	var names []string // objects of the shard
	for i := 0; len(names) < 5; i++ {
		if name := fmt.Sprintf("\x01do/C/%04d", i); partition.Of(name) == shard {
			names = append(names, name)
		}
	}
	keys := [][]string{
		{"ma", "msg.1", "ms~r.2"}, // two sockets
		{"ma", "mt"},              // none: "mt" sorts after
		{"mr", "ua"},              // none: "mr" sorts before
		{"ms"},                    // the prefix itself
		{"ua", "ub"},
	}
	want := map[string]string{}
	for i, name := range names {
		var ops []Op
		for _, k := range keys[i] {
			ops = append(ops, Op{Key: []byte(k), Value: []byte(k)})
		}
		if err := s.Apply(name, ops); err != nil {
			t.Fatal(err)
		}
		want[name] = map[int]string{0: "msg.1", 3: "ms"}[i]
	}
	got := map[string]string{}
	_, done, err := s.SeekObjectsHaving(shard, "\x01do/", "", []byte("ms"), 10, func(object string, value []byte) {
		got[object] = string(value)
	})
	if err != nil || !done {
		t.Fatalf("seek: done %v, %v", done, err)
	}
	if !maps.Equal(got, want) {
		t.Fatalf("visited %q, want %q", got, want)
	}
}
