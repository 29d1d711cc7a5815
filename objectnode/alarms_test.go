package objectnode

import (
	"bytes"
	"context"
	"encoding/binary"
	"log/slog"
	"strings"
	"testing"
	"time"

	"hellochat/apps"
	"hellochat/apps/counter"
	"hellochat/durable"
	"hellochat/partition"
	"hellochat/storage"
)

// An alarm on an object of a class this node does not run is skipped
// with one log line, however often the scan passes it; nothing crashes.
func TestAlarmScanSkipsUnregisteredClasses(t *testing.T) {
	store, err := storage.OpenStore(t.TempDir(), slog.Default())
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	var logs bytes.Buffer
	n := &Node{log: slog.New(slog.NewTextHandler(&logs, nil)), store: store}
	reg, err := apps.NewRegistry(counter.App())
	if err != nil {
		t.Fatal(err)
	}
	o := newObjectHost(n, reg, time.Minute)

	gone, err := durable.NewNamespace("Gone")
	if err != nil {
		t.Fatal(err)
	}
	object := gone.IDFromName("x").StorageObject()
	due := binary.BigEndian.AppendUint64(nil, uint64(time.Now().UnixNano()))
	if err := store.Apply(object, []storage.Op{{Key: durable.AlarmKey(), Value: due}}); err != nil {
		t.Fatal(err)
	}
	s := partition.Of(object)
	for range 3 {
		if next := o.alarms.scan(context.Background(), s, ""); next != "" {
			t.Fatalf("scan stopped at %q, want the shard scanned through", next)
		}
	}
	if got := strings.Count(logs.String(), "class not registered"); got != 1 {
		t.Fatalf("logged %d times, want once:\n%s", got, logs.String())
	}
	if o.count() != 0 {
		t.Fatal("an actor was started for an unregistered class")
	}
}
