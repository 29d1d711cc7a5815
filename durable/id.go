package durable

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"

	"hellochat/limits"
)

// MaxNamespaceLen bounds a namespace (class) name.
const MaxNamespaceLen = limits.MaxClassNameBytes

// idBodyLen and idCheckLen split an ID's 32 bytes: the body names the
// object, the check binds it to its namespace, so an ID of one class is
// refused by another's IDFromString. The check is a plain hash: it
// catches mix-ups, it does not stop forgery (IDs are not secrets).
const (
	idBodyLen  = 24
	idCheckLen = 8
	idLen      = idBodyLen + idCheckLen
)

// storagePrefix starts every object's name in the store. Room names are
// printable, so no room can be named like an object of this package. The
// shards accept commands for such names (limits.StoredObject).
const storagePrefix = limits.DurableObjectPrefix

// Namespace is a class's space of object IDs.
type Namespace struct{ name string }

// NewNamespace returns the namespace of the class called name: 1 to
// MaxNamespaceLen letters, digits, '-' or '_'.
func NewNamespace(name string) (*Namespace, error) {
	if name == "" || len(name) > MaxNamespaceLen {
		return nil, fmt.Errorf("durable: namespace %q: want 1 to %d bytes", name, MaxNamespaceLen)
	}
	for _, c := range []byte(name) {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return nil, fmt.Errorf("durable: namespace %q: only letters, digits, '-' and '_'", name)
		}
	}
	return &Namespace{name: name}, nil
}

// MustNamespace is NewNamespace for a name known to be valid, such as a
// class's constant; it panics on an invalid one (regexp.MustCompile's
// contract).
func MustNamespace(name string) *Namespace {
	ns, err := NewNamespace(name)
	if err != nil {
		panic(err)
	}
	return ns
}

// Name is the class name the namespace was made with.
func (ns *Namespace) Name() string { return ns.name }

// IDFromName returns the ID of the object called name. The same namespace
// and name always give the same ID, on every node.
func (ns *Namespace) IDFromName(name string) ID {
	h := sha256.New()
	h.Write([]byte("durable name\x00"))
	h.Write([]byte(ns.name))
	h.Write([]byte{0})
	h.Write([]byte(name))
	return ns.makeID(h.Sum(nil)[:idBodyLen], name, true)
}

// NewUniqueID returns the ID of a new object, random, unlike any other.
func (ns *Namespace) NewUniqueID() ID {
	body := make([]byte, idBodyLen)
	rand.Read(body) // crypto/rand.Read never fails
	return ns.makeID(body, "", false)
}

// IDFromString parses an ID's String form. It refuses anything but 64
// lowercase hex digits of an ID of this namespace.
func (ns *Namespace) IDFromString(s string) (ID, error) {
	if len(s) != 2*idLen {
		return ID{}, fmt.Errorf("durable: id %q: want %d hex digits", s, 2*idLen)
	}
	raw, err := hex.DecodeString(s)
	if err != nil || hex.EncodeToString(raw) != s {
		return ID{}, fmt.Errorf("durable: id %q: not lowercase hex", s)
	}
	id := ns.makeID(raw[:idBodyLen], "", false)
	if id.hex != s {
		return ID{}, fmt.Errorf("durable: id %q: %w %q", s, errOtherNamespace, ns.name)
	}
	return id, nil
}

var errOtherNamespace = errors.New("not an id of namespace")

// MaxNameBytes bounds a name that travels beside its ID (WithName).
const MaxNameBytes = limits.MaxObjectNameBytes

// WithName returns id knowing the name it was made from, after checking
// that IDFromName(name) is id. An ID is a hash of its name and cannot give
// it back, so a stub sends the name beside the ID, and the object's node
// restores it with WithName: the object then sees it in ID.Name, as a
// Durable Object sees ctx.id.name. A name that does not make id, or one
// longer than MaxNameBytes, is refused.
func (ns *Namespace) WithName(id ID, name string) (ID, error) {
	if len(name) > MaxNameBytes {
		return ID{}, fmt.Errorf("durable: object name of %d bytes: want at most %d", len(name), MaxNameBytes)
	}
	named := ns.IDFromName(name)
	if !named.Equal(id) {
		return ID{}, fmt.Errorf("durable: id %s of namespace %q is not the id of the name %q", id, ns.name, name)
	}
	return named, nil
}

// TravellingName is the name to send beside id: its name when it was made
// from one of at most MaxNameBytes, else "".
func (id ID) TravellingName() string {
	if !id.named || len(id.name) > MaxNameBytes {
		return ""
	}
	return id.name
}

func (ns *Namespace) makeID(body []byte, name string, named bool) ID {
	h := sha256.New()
	h.Write([]byte("durable check\x00"))
	h.Write([]byte(ns.name))
	h.Write([]byte{0})
	h.Write(body)
	raw := append(append(make([]byte, 0, idLen), body...), h.Sum(nil)[:idCheckLen]...)
	return ID{ns: ns.name, hex: hex.EncodeToString(raw), name: name, named: named}
}

// ID names one object of one namespace. The zero ID names nothing.
// Compare IDs with Equal: == also compares whether the name is known.
type ID struct {
	ns, hex, name string
	named         bool
}

// String is the ID as 64 lowercase hex digits; IDFromString reads it back.
func (id ID) String() string { return id.hex }

// Namespace is the name of the ID's class.
func (id ID) Namespace() string { return id.ns }

// Name is the name the ID was made from by IDFromName; ok is false for a
// unique ID or one parsed from its string.
func (id ID) Name() (name string, ok bool) { return id.name, id.named }

// Equal reports whether two IDs name the same object.
func (id ID) Equal(other ID) bool { return id.ns == other.ns && id.hex == other.hex }

// IsZero reports whether id is the zero ID.
func (id ID) IsZero() bool { return id.hex == "" }

// StorageObject is the object name the ID's storage lives under in the
// store (storage.Store's object argument, and the name partition.Of maps
// to a shard): "\x01do/<namespace>/<hex id>".
func (id ID) StorageObject() string { return storagePrefix + id.ns + "/" + id.hex }
