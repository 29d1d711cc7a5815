// Package reminder is an app driven by durable objects' alarms: named
// reminder lists, each one object of class Reminder, whose reminders fire
// at their time whether or not anyone calls the object then.
//
// Routes (served by routers):
//
//	POST /reminder/NAME?after=MS   schedule a reminder on NAME's list, MS
//	                               milliseconds from now (0 to MaxAfter);
//	                               answers the reminder (JSON)
//	GET  /reminder/NAME            the list: {"reminders": [...]}, each with
//	                               its id, scheduled time and, once it
//	                               fired, its fired time and fired_runs
//
// A POST may carry an Idempotency-Key header (limits.IdempotencyKey): it
// is the reminder's id, and a retried POST with the same key answers the
// reminder it scheduled instead of scheduling another. A POST without one
// gets a key the router makes, so the router's own retries never schedule
// twice. A list holds at most MaxReminders reminders, fired ones included;
// a POST to a full list gets 422.
//
// # How it fires
//
// The object keeps its alarm at its earliest pending reminder. When the
// alarm runs, it marks every reminder due by then as fired (up to
// FirePerRun of them; the alarm is set again at once for the rest), with
// the time it fired, and sets the alarm to the next pending one. The marks
// and the new alarm are one batch with the alarm's clearing, so a reminder
// fires at most once even though an alarm run may be repeated (a run whose
// commit failed, or whose outcome the node never learned, is run again,
// and sees what was committed). fired_runs counts the runs that marked a
// reminder: it is 1 for every fired reminder, and the cluster tests check
// that it stays so.
//
// On the cluster, the alarm fires on whichever node leads the object's
// shard when it is due: the shard's serving leader scans its store for
// objects whose alarm is near and starts their actors (objectnode's
// alarms.go), so a reminder fires after its leader was killed, after its
// actor was closed for idleness, and after leadership moved. It fires
// late by the time the shard had no leader, plus about a second.
package reminder

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"time"

	"hellochat/apps"
	"hellochat/durable"
)

// ClassName is the Reminder class's namespace name.
const ClassName = "Reminder"

const (
	// MaxReminders bounds one list's reminders, so that a GET reads them
	// in one List (durable.MaxKeysPerList).
	MaxReminders = 500
	// FirePerRun bounds the reminders one alarm run fires, so that its
	// batch stays far below durable.MaxBatchBytes.
	FirePerRun = 100
	// MaxAfter is the furthest ahead a reminder may be scheduled.
	MaxAfter = 366 * 24 * time.Hour
	// MaxRequestIDBytes bounds a reminder's id.
	MaxRequestIDBytes = 128
)

// Namespace is the Reminder class's namespace.
var Namespace = durable.MustNamespace(ClassName)

// App is the reminder app: its class and its routes.
func App() apps.App {
	return apps.App{
		Name:    "reminder",
		Classes: []apps.Class{{Name: ClassName, New: func() durable.Object { return New(durable.SystemClock{}) }}},
		Routes: []apps.Route{
			{Pattern: "POST /reminder/{name}", Handler: scheduleHandler},
			{Pattern: "GET /reminder/{name}", Handler: listHandler},
			{Pattern: "/reminder/{name}", Handler: func(apps.Stub) http.Handler { return http.HandlerFunc(notAllowed) }},
		},
	}
}

// Arg is the argument of the Reminder's methods (JSON).
type Arg struct {
	// RequestID is the id of the reminder "schedule" makes; a retry with
	// the same id answers that reminder.
	RequestID string `json:"request_id,omitempty"`
	// AfterMS is how long from now the reminder is due.
	AfterMS int64 `json:"after_ms,omitempty"`
}

// Reminder is one reminder, as stored and as answered.
type Reminder struct {
	ID        string     `json:"id"`
	Scheduled time.Time  `json:"scheduled"`
	Fired     *time.Time `json:"fired,omitempty"`
	// FiredRuns is how many alarm runs marked it fired: 0 or 1.
	FiredRuns int `json:"fired_runs"`
}

// List is what "list" answers (JSON): the reminders, by scheduled time.
type List struct {
	Reminders []Reminder `json:"reminders"`
}

// Class is the Reminder class. Its storage:
//
//	"n"                      how many reminders the list holds (JSON)
//	"r/" <id>                a reminder (JSON Reminder)
//	"d/" <due> "/" <id>      a pending reminder, by due time (Unix
//	                         nanoseconds, 16 hex digits, so keys sort by
//	                         time); deleted when it fires
//
// and its alarm is at the earliest pending reminder. It keeps nothing in
// memory.
type Class struct {
	clock durable.Clock
}

// New returns a Reminder that tells time by clock (the actor's, so that
// tests move both).
func New(clock durable.Clock) *Class { return &Class{clock: clock} }

// Call runs "schedule" or "list".
func (c *Class) Call(_ context.Context, s *durable.State, method string, arg []byte) ([]byte, error) {
	var a Arg
	if len(arg) > 0 {
		if err := json.Unmarshal(arg, &a); err != nil {
			return nil, fmt.Errorf("reminder: bad argument: %v", err)
		}
	}
	switch method {
	case "schedule":
		r, err := c.schedule(s.Storage(), a)
		if err != nil {
			return nil, err
		}
		return json.Marshal(r)
	case "list":
		l, err := list(s.Storage())
		if err != nil {
			return nil, err
		}
		return json.Marshal(l)
	}
	return nil, fmt.Errorf("reminder: no method %q (schedule, list)", method)
}

func (c *Class) schedule(st *durable.Storage, a Arg) (Reminder, error) {
	switch {
	case a.RequestID == "" || len(a.RequestID) > MaxRequestIDBytes:
		return Reminder{}, fmt.Errorf("reminder: request id must be 1 to %d bytes", MaxRequestIDBytes)
	case a.AfterMS < 0 || time.Duration(a.AfterMS)*time.Millisecond > MaxAfter:
		return Reminder{}, fmt.Errorf("reminder: after must be 0 to %d ms", MaxAfter.Milliseconds())
	}
	if r, found, err := durable.GetJSON[Reminder](st, "r/"+a.RequestID); err != nil || found {
		return r, err // a retry: the reminder it scheduled
	}
	n, _, err := durable.GetJSON[int](st, "n")
	if err != nil {
		return Reminder{}, err
	}
	if n >= MaxReminders {
		return Reminder{}, fmt.Errorf("reminder: the list is full (%d reminders)", MaxReminders)
	}
	r := Reminder{ID: a.RequestID, Scheduled: c.clock.Now().Add(time.Duration(a.AfterMS) * time.Millisecond)}
	if err := durable.PutJSON(st, "r/"+r.ID, r); err != nil {
		return Reminder{}, err
	}
	if err := st.Put(dueKey(r.Scheduled, r.ID), nil); err != nil {
		return Reminder{}, err
	}
	if err := durable.PutJSON(st, "n", n+1); err != nil {
		return Reminder{}, err
	}
	if at, set := st.GetAlarm(); !set || r.Scheduled.Before(at) {
		if err := st.SetAlarm(r.Scheduled); err != nil {
			return Reminder{}, err
		}
	}
	return r, nil
}

// Alarm fires the reminders due by now and sets the alarm to the next.
func (c *Class) Alarm(_ context.Context, s *durable.State, _ durable.AlarmInfo) error {
	st := s.Storage()
	now := c.clock.Now()
	due, err := st.List(durable.ListOptions{Prefix: "d/", End: dueKey(now.Add(time.Nanosecond), ""), Limit: FirePerRun})
	if err != nil {
		return err
	}
	for _, kv := range due {
		id, err := dueID(kv.Key)
		if err != nil {
			return err
		}
		r, found, err := durable.GetJSON[Reminder](st, "r/"+id)
		if err != nil {
			return err
		}
		if !found {
			return fmt.Errorf("reminder: pending %q has no reminder", id)
		}
		fired := now
		r.Fired = &fired
		r.FiredRuns++
		if err := durable.PutJSON(st, "r/"+id, r); err != nil {
			return err
		}
		if _, err := st.Delete(kv.Key); err != nil {
			return err
		}
	}
	next, err := st.List(durable.ListOptions{Prefix: "d/", Limit: 1})
	if err != nil || len(next) == 0 {
		return err // none pending: the successful run clears the alarm
	}
	at, err := dueTime(next[0].Key)
	if err != nil {
		return err
	}
	return st.SetAlarm(at)
}

func list(st *durable.Storage) (List, error) {
	kvs, err := st.List(durable.ListOptions{Prefix: "r/", Limit: MaxReminders})
	if err != nil {
		return List{}, err
	}
	l := List{Reminders: make([]Reminder, 0, len(kvs))}
	for _, kv := range kvs {
		var r Reminder
		if err := json.Unmarshal(kv.Value, &r); err != nil {
			return List{}, fmt.Errorf("reminder: stored %q: %w", kv.Key, err)
		}
		l.Reminders = append(l.Reminders, r)
	}
	slices.SortStableFunc(l.Reminders, func(a, b Reminder) int { return a.Scheduled.Compare(b.Scheduled) })
	return l, nil
}

func dueKey(at time.Time, id string) string {
	return fmt.Sprintf("d/%016x/%s", uint64(at.UnixNano()), id)
}

const dueStampLen = len("d/") + 16

func dueTime(key string) (time.Time, error) {
	if len(key) < dueStampLen+1 {
		return time.Time{}, fmt.Errorf("reminder: bad pending key %q", key)
	}
	ns, err := strconv.ParseUint(key[len("d/"):dueStampLen], 16, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("reminder: bad pending key %q: %w", key, err)
	}
	return time.Unix(0, int64(ns)), nil
}

func dueID(key string) (string, error) {
	if len(key) < dueStampLen+1 || key[dueStampLen] != '/' {
		return "", fmt.Errorf("reminder: bad pending key %q", key)
	}
	return key[dueStampLen+1:], nil
}

func scheduleHandler(stub apps.Stub) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, err := apps.PathName(r, "reminder list name")
		if err != nil {
			apps.WriteError(w, http.StatusBadRequest, err.Error())
			return
		}
		after, err := strconv.ParseInt(r.URL.Query().Get("after"), 10, 64)
		if err != nil || after < 0 || time.Duration(after)*time.Millisecond > MaxAfter {
			apps.WriteError(w, http.StatusBadRequest, fmt.Sprintf("after: want milliseconds, 0 to %d", MaxAfter.Milliseconds()))
			return
		}
		// The request id is the reminder's id.
		key, err := apps.RequestID(r)
		if err != nil {
			apps.WriteError(w, http.StatusBadRequest, err.Error())
			return
		}
		var res Reminder
		apps.CallJSON(w, r, stub, Namespace.IDFromName(n), "reminder", "schedule", Arg{RequestID: key, AfterMS: after}, &res)
	})
}

func listHandler(stub apps.Stub) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, err := apps.PathName(r, "reminder list name")
		if err != nil {
			apps.WriteError(w, http.StatusBadRequest, err.Error())
			return
		}
		var res List
		apps.CallJSON(w, r, stub, Namespace.IDFromName(n), "reminder", "list", Arg{}, &res)
	})
}

func notAllowed(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Allow", "GET, POST")
	apps.WriteError(w, http.StatusMethodNotAllowed, "use POST ?after=MS to schedule a reminder, GET to list them")
}
