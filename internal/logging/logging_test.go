package logging

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

func TestTextPrefixesEveryLine(t *testing.T) {
	var out bytes.Buffer
	log, raw, err := New("node1", &out, slog.LevelInfo, FormatText)
	if err != nil {
		t.Fatal(err)
	}
	log.Info("started", "shards", 3)
	fmt.Fprint(raw, "lib: one\nlib: t")
	fmt.Fprint(raw, "wo\n")
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 3 || !strings.Contains(lines[0], "msg=started shards=3") || lines[1] != "node1 | lib: one" || lines[2] != "node1 | lib: two" {
		t.Fatalf("got %q", lines)
	}
	for _, l := range lines {
		if !strings.HasPrefix(l, "node1 | ") {
			t.Fatalf("line without the prefix: %q", l)
		}
	}
}

func TestJSONIsOneObjectPerLine(t *testing.T) {
	var out bytes.Buffer
	log, raw, err := New("router1", &out, slog.LevelInfo, FormatJSON)
	if err != nil {
		t.Fatal(err)
	}
	log.Info("started", "http", "127.0.0.1:8080")
	log.Debug("hidden")
	fmt.Fprint(raw, "[WARN] memberlist: \"quoted\" thing\n")
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("want 2 lines, got %q", lines)
	}
	levels := []string{"INFO", "WARN"}
	var recs []map[string]any
	for _, l := range lines {
		var r map[string]any
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			t.Fatalf("not JSON: %q: %v", l, err)
		}
		if r["proc"] != "router1" || r["time"] == nil || r["level"] != levels[len(recs)] {
			t.Fatalf("record %v lacks proc, time or level", r)
		}
		recs = append(recs, r)
	}
	if recs[0]["msg"] != "started" || recs[0]["http"] != "127.0.0.1:8080" {
		t.Fatalf("first record %v", recs[0])
	}
	if recs[1]["msg"] != `[WARN] memberlist: "quoted" thing` || recs[1]["raw"] != true {
		t.Fatalf("raw line record %v", recs[1])
	}
}

func TestUnknownFormatRefused(t *testing.T) {
	if _, _, err := New("x", &bytes.Buffer{}, slog.LevelInfo, "xml"); err == nil || !strings.Contains(err.Error(), "json") {
		t.Fatalf("want an error naming the formats, got %v", err)
	}
}
