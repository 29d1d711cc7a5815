package failover

import (
	"errors"
	"fmt"
	"time"
)

// fixtureStart is when the synthetic load starts.
var fixtureStart = time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)

// fixtureStep is one step of the synthetic run, in seconds from the load
// start.
type fixtureStep struct {
	kind, victim string
	at, took     float64 // start, and how long until placed
	writable     float64 // 0: the victim led none of our rooms
}

// fixtureSteps is a short run like `failover --adds 1 --kills 2 --pauses 1
// --wipes 1 --removes 1`: the second kill hit a node leading none of our
// rooms, and the wipe failed (not placed in time).
var fixtureSteps = []fixtureStep{
	{kindAdd, "node4", 3, 5.5, 0},
	{kindKill, "node3", 11, 0.98, 0.195},
	{kindPause, "node3", 14, 3.47, 1.525},
	{kindWipe, "node1", 20, 5, 0.233},
	{kindKill, "node2", 27, 0.75, 0},
	{kindRemove, "node4", 30, 6.5, 0},
}

// syntheticRun builds what Run gathers by the time it reports: the cycles,
// the clients with every message's send and ack time, and the checks.
// 4 rooms x 2 clients send 4 msg/s each for 40 s; an ack takes 20-27 ms,
// except that a message sent to a room whose leader was hit waits until
// the room is writable again. One message is never acknowledged: the
// router refused it.
func syntheticRun() (Config, []cycle, []*client, result) {
	cfg := Config{
		Dir: "/tmp/fo", Adds: 1, Kills: 2, Pauses: 1, Wipes: 1, Removes: 1,
		PauseFor: 3 * time.Second, CutFor: 3 * time.Second, PlaceTimeout: 120 * time.Second,
		MaxWritePause: time.Second, Rooms: 4, Clients: 2, Rate: 4,
	}
	at := func(s float64) time.Time { return fixtureStart.Add(time.Duration(s * float64(time.Second))) }
	dur := func(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

	var cycles []cycle
	nodes := 3
	for i, fs := range fixtureSteps {
		cy := cycle{
			kind: fs.kind, victim: fs.victim, nodesBefore: nodes,
			start: at(fs.at), end: at(fs.at + fs.took), took: dur(fs.took),
			shards: 12 + i%3, rooms: 2,
			moved: moved{plan: "", bytes: 0},
			stall: stall{gap: 262 * time.Millisecond, gapRoom: "fo-1", lat: 29 * time.Millisecond, latRoom: "fo-2"},
		}
		switch fs.kind {
		case kindAdd:
			nodes++
			cy.moved = moved{bytes: 54_784, snapshots: 49, plan: "49 of 192 shard replicas move"}
		case kindRemove:
			nodes--
			cy.moved = moved{bytes: 1 << 20, snapshots: 47, plan: "47 of 192 shard replicas move"}
		case kindWipe:
			cy.moved = moved{bytes: 305_561, snapshots: 39}
			cy.err = errors.New(`not placed within 2m0s: shard 7 has voters [node1 node2] & learner "node1" <old>`)
		}
		if fs.writable > 0 {
			cy.writable, cy.hasWritable = dur(fs.writable), cy.err == nil
			cy.stall = stall{gap: dur(fs.writable) + 30*time.Millisecond, gapRoom: "fo-3", lat: dur(fs.writable), latRoom: "fo-3"}
		} else if fs.kind == kindKill {
			cy.rooms = 0
		}
		cy.recovered = dur(fs.took) / 2
		cy.nodesAfter = nodes
		cycles = append(cycles, cy)
	}

	var clients []*client
	for r := 0; r < cfg.Rooms; r++ {
		for c := 0; c < cfg.Clients; c++ {
			cl := &client{room: fmt.Sprintf("fo-%d", r), name: fmt.Sprintf("c%d-%d", r, c), sends: map[string]*sent{}}
			for n := 0; n < 160; n++ {
				s := &sent{at: at(0.25 * float64(n+1)).Add(time.Duration(c) * time.Millisecond), seq: uint64(n + 1)}
				ack := s.at.Add(20*time.Millisecond + time.Duration(n%8)*time.Millisecond)
				for _, fs := range fixtureSteps {
					if back := at(fs.at + fs.writable); fs.writable > 0 && r%2 == 0 && !s.at.Before(at(fs.at)) && s.at.Before(back) {
						ack = back.Add(20 * time.Millisecond)
					}
				}
				if !(r == 3 && c == 1 && n == 159) {
					s.acked = ack
				} else {
					s.refused = "overloaded"
				}
				id := fmt.Sprintf("%s-%d", cl.name, n)
				cl.sends[id] = s
				cl.order = append(cl.order, id)
			}
			clients = append(clients, cl)
		}
	}

	res := result{sent: 1280, acked: 1279, unacked: 1, refused: 1, historyMessages: 1279,
		dup: 1, dupIDs: []string{"fo-2/c2-0-17"},
		replicas: replicaCheck{holders: 192, shards: 64, roomsCompared: 4}}
	return cfg, cycles, clients, res
}
