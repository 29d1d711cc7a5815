package durable

import (
	"strings"
	"time"
)

// What a host needs to find objects without starting them: the cluster's
// shard leaders scan their store for AlarmKey and wake the objects whose
// alarm is due soon (objectnode/alarms.go), and, when they become leader,
// for SocketKeyPrefix.

// AlarmKey is the store key, within an object's storage object, that holds
// its alarm when one is set (see the package doc's storage layout).
func AlarmKey() []byte { return append([]byte(nil), alarmKey...) }

// SocketKeyPrefix begins the store key of each WebSocket record an object
// holds: an object holds sockets if it has a key under it. A shard's new
// leader starts those objects, so that a class's Load can send again
// what the old leader may have committed and not handed over
// (WebSocket.SendNumbered).
func SocketKeyPrefix() []byte { return socketKey("") }

// StoreKey is the store key, within an object's storage object, of the
// key a class stores under (Storage.Put's key): for tools and tests that
// read a node's store without starting the object.
func StoreKey(key string) []byte { return userKey(key) }

// DecodeAlarm reads the time stored under AlarmKey.
func DecodeAlarm(value []byte) (time.Time, error) {
	ns, err := decodeUint64("alarm", value)
	if err != nil {
		return time.Time{}, err
	}
	return time.Unix(0, int64(ns)), nil
}

// StoragePrefix begins every object's storage object name.
const StoragePrefix = storagePrefix

// ParseStorageObject splits a storage object name (ID.StorageObject) into
// its class (namespace) name and the ID's string form; the class's
// Namespace.IDFromString checks the ID. ok is false for a name that is not
// an object's of this package.
func ParseStorageObject(object string) (class, id string, ok bool) {
	rest, found := strings.CutPrefix(object, storagePrefix)
	if !found {
		return "", "", false
	}
	class, id, found = strings.Cut(rest, "/")
	if !found || class == "" || len(id) != 2*idLen {
		return "", "", false
	}
	return class, id, true
}
