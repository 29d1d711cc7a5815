package failover

import (
	"slices"
	"strings"
	"testing"
	"time"
)

func TestPlanTakesTurnsAndKeepsThreeNodes(t *testing.T) {
	cfg := Config{Adds: 2, Removes: 2, Kills: 3, Pauses: 1, Wipes: 1, Partitions: 2, Mutes: 1, Deafs: 1}
	got := plan(cfg)
	want := []string{kindAdd, kindAdd,
		kindKill, kindPause, kindWipe, kindPartition, kindMute, kindDeaf,
		kindKill, kindPartition,
		kindKill,
		kindRemove, kindRemove}
	if !slices.Equal(got, want) {
		t.Fatalf("plan:\n got %v\nwant %v", got, want)
	}
}

func TestCheckRefusesCutsWithoutALab(t *testing.T) {
	base := Config{Rooms: 1, Clients: 1, Rate: 1, PlaceTimeout: time.Second, MaxWritePause: time.Second, CutFor: time.Second}
	for _, c := range []struct {
		name string
		mod  func(*Config)
		want string // "" when the config is fine
	}{
		{"no faults", func(*Config) {}, ""},
		{"partition on loopback", func(c *Config) { c.Partitions = 1 }, "--netlab"},
		{"deaf on loopback", func(c *Config) { c.Deafs = 1 }, "--netlab"},
		{"mute in a lab", func(c *Config) { c.Mutes = 1; c.Cuts = noCuts{} }, ""},
		{"cut for nothing", func(c *Config) { c.Mutes = 1; c.Cuts = noCuts{}; c.CutFor = 0 }, "cut-for"},
		{"negative", func(c *Config) { c.Partitions = -1 }, ">= 0"},
		{"removes past adds", func(c *Config) { c.Removes = 1 }, "fewer than 3"},
	} {
		cfg := base
		c.mod(&cfg)
		err := cfg.Check()
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: refused: %v", c.name, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%s: got %v, want an error about %q", c.name, err, c.want)
		}
	}
}

// noCuts is a Cutter for Check, which never cuts.
type noCuts struct{}

func (noCuts) Cut(string, ...string) error { return nil }
func (noCuts) Heal()                       {}
