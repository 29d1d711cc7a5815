package durable

import (
	"strings"
	"testing"

	"hellochat/limits"
	"hellochat/partition"
)

func TestIDs(t *testing.T) {
	chat, err := NewNamespace("ChatRoom")
	if err != nil {
		t.Fatal(err)
	}
	other, _ := NewNamespace("Counter")
	a, b := chat.IDFromName("lobby"), chat.IDFromName("lobby")
	if !a.Equal(b) || a.String() != b.String() || len(a.String()) != 64 {
		t.Fatalf("IDFromName is not deterministic: %s %s", a, b)
	}
	if name, ok := a.Name(); !ok || name != "lobby" {
		t.Fatalf("Name %q %v", name, ok)
	}
	if a.Equal(chat.IDFromName("lobby2")) || a.Equal(other.IDFromName("lobby")) {
		t.Fatal("different names or classes give the same ID")
	}
	u1, u2 := chat.NewUniqueID(), chat.NewUniqueID()
	if u1.Equal(u2) {
		t.Fatal("two unique IDs are equal")
	}
	if _, ok := u1.Name(); ok {
		t.Fatal("a unique ID has a name")
	}
	for _, id := range []ID{a, u1} {
		back, err := chat.IDFromString(id.String())
		if err != nil || !back.Equal(id) {
			t.Fatalf("round trip of %s: %v %v", id, back, err)
		}
		if _, ok := back.Name(); ok {
			t.Fatal("an ID parsed from its string knows a name")
		}
		if _, err := other.IDFromString(id.String()); err == nil {
			t.Fatalf("another namespace took %s", id)
		}
	}
	s := a.String()
	for _, bad := range []string{"", s[:63], s + "0", strings.ToUpper(s), "g" + s[1:], s[:63] + flip(s[63])} {
		if _, err := chat.IDFromString(bad); err == nil {
			t.Errorf("IDFromString(%q) took it", bad)
		}
	}
	obj := a.StorageObject()
	if strings.ContainsRune(obj, 0) || !strings.HasPrefix(obj, "\x01do/ChatRoom/") {
		t.Fatalf("storage object %q", obj)
	}
	if s := partition.Of(obj); s < 0 || s >= partition.Count {
		t.Fatalf("shard %d", s)
	}
	for _, bad := range []string{"", "a/b", "a b", strings.Repeat("x", MaxNamespaceLen+1), "x\x00"} {
		if _, err := NewNamespace(bad); err == nil {
			t.Errorf("NewNamespace(%q) took it", bad)
		}
	}
}

// A name travels beside its ID and is restored only if it makes that ID.
func TestIDWithName(t *testing.T) {
	chat, other := MustNamespace("ChatRoom"), MustNamespace("Counter")
	lobby := chat.IDFromName("lobby")
	parsed, _ := chat.IDFromString(lobby.String())
	back, err := chat.WithName(parsed, lobby.TravellingName())
	if name, ok := back.Name(); err != nil || !ok || name != "lobby" || !back.Equal(lobby) {
		t.Fatalf("WithName(lobby): %v %q %v", err, name, ok)
	}
	long := chat.IDFromName(strings.Repeat("n", MaxNameBytes+1))
	if long.TravellingName() != "" || chat.NewUniqueID().TravellingName() != "" {
		t.Fatal("a name past MaxNameBytes, or a unique ID's, travels")
	}
	for _, c := range []struct {
		ns   *Namespace
		id   ID
		name string
	}{
		{chat, parsed, "lobby2"},                          // another name's ID
		{other, other.IDFromName("lobby"), "lob"},         // not its name
		{chat, chat.NewUniqueID(), "lobby"},               // a unique ID has none
		{chat, long, strings.Repeat("n", MaxNameBytes+1)}, // too long to carry
	} {
		if _, err := c.ns.WithName(c.id, c.name); err == nil {
			t.Errorf("WithName(%s, %.20q) took it", c.id, c.name)
		}
	}
}

func flip(c byte) string {
	if c == '0' {
		return "1"
	}
	return "0"
}

// The shards apply commands only for names limits.StoredObject accepts:
// every ID's storage object must be one, or its first commit would be a
// log entry no replica can apply.
func TestStorageObjectsAreStorable(t *testing.T) {
	for _, class := range []string{"Counter", "a", strings.Repeat("Z", MaxNamespaceLen), "with-dash_9"} {
		ns, err := NewNamespace(class)
		if err != nil {
			t.Fatal(err)
		}
		for _, id := range []ID{ns.IDFromName("x"), ns.IDFromName(""), ns.NewUniqueID()} {
			if err := limits.StoredObject(id.StorageObject()); err != nil {
				t.Errorf("%s: %v", class, err)
			}
		}
	}
}

// A storage object name splits back into its class and the ID.
func TestParseStorageObject(t *testing.T) {
	ns, err := NewNamespace("Reminder")
	if err != nil {
		t.Fatal(err)
	}
	id := ns.IDFromName("x")
	class, hex, ok := ParseStorageObject(id.StorageObject())
	if !ok || class != "Reminder" || hex != id.String() {
		t.Fatalf("got %q %q %v", class, hex, ok)
	}
	for _, bad := range []string{"room", StoragePrefix + "Reminder", StoragePrefix + "/" + id.String(), StoragePrefix + "R/abc"} {
		if _, _, ok := ParseStorageObject(bad); ok {
			t.Errorf("%q parsed", bad)
		}
	}
}
