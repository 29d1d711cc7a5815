package durable

import (
	"context"
	"errors"
	"testing"
	"time"
)

type alarmRun struct {
	info AlarmInfo
	at   time.Time // the clock when it ran
	// hadAlarm is what GetAlarm said when the run started.
	hadAlarm bool
}

// alarmRig is a rig whose class records its alarm runs and answers them
// with the results the test queues in results (nil when none is queued).
func alarmRig(t *testing.T, handle func(s *State, n int) error) (*rig, chan alarmRun) {
	runs := make(chan alarmRun, 100)
	n := 0
	var r *rig
	r = newRig(t, &testClass{alarm: func(_ context.Context, s *State, info AlarmInfo) error {
		_, had := s.Storage().GetAlarm()
		runs <- alarmRun{info: info, at: r.clock.Now(), hadAlarm: had}
		n++
		return handle(s, n)
	}})
	return r, runs
}

func (r *rig) setAlarm(at time.Time) {
	r.t.Helper()
	if err := r.call(func(s *State) error { return s.Storage().SetAlarm(at) }); err != nil {
		r.t.Fatal(err)
	}
}

// storedAlarm reads the alarm as committed.
func (r *rig) storedAlarm() (time.Time, bool) {
	v, ok, err := r.c.Get(r.id.StorageObject(), alarmKey)
	if err != nil || !ok {
		return time.Time{}, false
	}
	ns, _ := decodeUint64("alarm", v)
	return time.Unix(0, int64(ns)), true
}

// settle waits until the actor has finished what it was doing: an event
// queued now runs after it.
func (r *rig) settle() {
	r.t.Helper()
	if err := r.call(func(*State) error { return nil }); err != nil {
		r.t.Fatal(err)
	}
}

func TestAlarmFiresOnceAtItsTime(t *testing.T) {
	r, runs := alarmRig(t, func(s *State, n int) error { return s.Storage().Put("ran", []byte("yes")) })
	t0 := r.clock.Now()
	at := t0.Add(10 * time.Second)
	r.setAlarm(at)
	if got, ok := r.storedAlarm(); !ok || !got.Equal(at) {
		t.Fatalf("stored alarm %v %v", got, ok)
	}
	if got, ok := r.a.Alarm(); !ok || !got.Equal(at) {
		t.Fatalf("actor's Alarm says %v %v, want %v", got, ok, at)
	}
	r.clock.waitTimer(t, at)
	r.clock.Advance(9 * time.Second)
	r.settle()
	mustNot(t, runs, "alarm ran")
	r.clock.Advance(time.Second)
	run := recv(t, runs, "alarm run")
	if run.info.IsRetry || run.info.RetryCount != 0 || !run.info.ScheduledTime.Equal(at) || run.hadAlarm {
		t.Fatalf("run %+v", run)
	}
	r.settle()
	// The success cleared the alarm in the batch of its writes.
	if _, ok := r.storedAlarm(); ok {
		t.Fatal("alarm still stored after a successful run")
	}
	if got, ok := r.a.Alarm(); ok {
		t.Fatalf("actor's Alarm still says %v after a successful run", got)
	}
	if v, _ := r.stored("ran"); v != "yes" {
		t.Fatal("alarm's write not committed")
	}
	if at, ok := r.clock.pending(); ok {
		t.Fatalf("a timer is still set for %v", at)
	}
	r.clock.Advance(time.Hour)
	r.settle()
	mustNot(t, runs, "second run of a successful alarm")
	// Nor does an actor started afresh on the same storage run it again.
	r.a.Close()
	r.start(r.obj)
	r.settle()
	r.clock.Advance(time.Hour)
	r.settle()
	mustNot(t, runs, "run of a successful alarm after a restart")
}

func TestAlarmSurvivesARestart(t *testing.T) {
	r, runs := alarmRig(t, func(*State, int) error { return nil })
	at := r.clock.Now().Add(time.Minute)
	r.setAlarm(at)
	r.a.Close()
	r.start(r.obj)
	r.clock.waitTimer(t, at)
	r.clock.Advance(time.Minute)
	if run := recv(t, runs, "alarm run"); !run.info.ScheduledTime.Equal(at) {
		t.Fatalf("run %+v", run)
	}
}

func TestAlarmRetriesWithBackoff(t *testing.T) {
	fail := errors.New("handler failed")
	r, runs := alarmRig(t, func(s *State, n int) error {
		s.Storage().Put("attempt", []byte{byte(n)})
		if n <= 3 {
			return fail
		}
		return nil
	})
	t0 := r.clock.Now()
	r.setAlarm(t0)
	r.clock.waitTimer(t, t0)
	r.clock.Advance(0)
	want := t0
	for retry := 0; retry <= 3; retry++ {
		run := recv(t, runs, "alarm run")
		if run.info.RetryCount != retry || run.info.IsRetry != (retry > 0) || !run.at.Equal(want) || !run.info.ScheduledTime.Equal(t0) {
			t.Fatalf("run %d: %+v at %v, want at %v", retry, run.info, run.at.Sub(t0), want.Sub(t0))
		}
		if retry == 3 {
			break
		}
		// Retry n waits 2 s * 2^(n-1) after the failure.
		wait := DefaultAlarmRetry.Backoff(retry + 1)
		if wantWait := (2 * time.Second) << retry; wait != wantWait {
			t.Fatalf("retry %d waits %v, want %v", retry+1, wait, wantWait)
		}
		want = want.Add(wait)
		r.clock.waitTimer(t, want)
		r.clock.Advance(wait - time.Millisecond)
		r.settle()
		mustNot(t, runs, "retry before its backoff")
		if v, ok := r.stored("attempt"); ok {
			t.Fatalf("a failed run's write was committed: %v", []byte(v))
		}
		r.clock.Advance(time.Millisecond)
	}
	r.settle()
	if _, ok := r.storedAlarm(); ok {
		t.Fatal("alarm still stored after its successful retry")
	}
	if v, _ := r.stored("attempt"); v != "\x04" {
		t.Fatalf("stored attempt %v", []byte(v))
	}
	r.clock.Advance(time.Hour)
	r.settle()
	mustNot(t, runs, "run after success")
}

func TestAlarmGivesUpAfterItsRetries(t *testing.T) {
	r, runs := alarmRig(t, func(*State, int) error { panic("always") })
	t0 := r.clock.Now()
	r.setAlarm(t0)
	next := t0
	for n := 0; n <= DefaultAlarmRetry.Retries; n++ {
		r.clock.waitTimer(t, next)
		r.clock.Advance(next.Sub(r.clock.Now()))
		if run := recv(t, runs, "alarm run"); run.info.RetryCount != n {
			t.Fatalf("run %d: %+v", n, run.info)
		}
		next = next.Add(DefaultAlarmRetry.Backoff(n + 1))
	}
	r.settle()
	if _, ok := r.storedAlarm(); ok {
		t.Fatal("alarm kept after its last retry failed")
	}
	r.clock.Advance(24 * time.Hour)
	r.settle()
	mustNot(t, runs, "run after giving up")
	if got := DefaultAlarmRetry.Backoff(6); got != time.Minute {
		t.Fatalf("backoff of retry 6 is %v, want the 1 min cap", got)
	}
}

func TestAlarmSetInsideAlarmStands(t *testing.T) {
	var r *rig
	r, runs := alarmRig(t, func(s *State, n int) error {
		if n == 1 {
			return s.Storage().SetAlarm(r.clock.Now().Add(time.Minute))
		}
		return nil
	})
	t0 := r.clock.Now()
	r.setAlarm(t0)
	r.clock.waitTimer(t, t0)
	r.clock.Advance(0)
	recv(t, runs, "first run")
	r.settle()
	next := t0.Add(time.Minute)
	if got, ok := r.storedAlarm(); !ok || !got.Equal(next) {
		t.Fatalf("stored alarm %v %v, want the one the run set", got, ok)
	}
	r.clock.waitTimer(t, next)
	r.clock.Advance(time.Minute)
	run := recv(t, runs, "second run")
	if run.info.IsRetry || !run.info.ScheduledTime.Equal(next) {
		t.Fatalf("second run %+v", run.info)
	}
	r.settle()
	if _, ok := r.storedAlarm(); ok {
		t.Fatal("alarm stored after the second run")
	}
}

func TestAlarmRetriedWhenItsCommitFails(t *testing.T) {
	r, runs := alarmRig(t, func(s *State, n int) error { return s.Storage().Put("n", []byte{byte(n)}) })
	t0 := r.clock.Now()
	r.setAlarm(t0)
	r.clock.waitTimer(t, t0)
	r.c.setFail(errDisk)
	r.clock.Advance(0)
	recv(t, runs, "first run")
	retry := t0.Add(DefaultAlarmRetry.Backoff(1))
	r.clock.waitTimer(t, retry)
	r.c.setFail(nil)
	if _, ok := r.storedAlarm(); !ok {
		t.Fatal("alarm gone after a failed commit")
	}
	r.clock.Advance(DefaultAlarmRetry.Backoff(1))
	if run := recv(t, runs, "retry"); run.info.RetryCount != 1 {
		t.Fatalf("retry %+v", run.info)
	}
	r.settle()
	if _, ok := r.storedAlarm(); ok {
		t.Fatal("alarm stored after a successful retry")
	}
}

func TestEventMovesOrDeletesTheAlarm(t *testing.T) {
	r, runs := alarmRig(t, func(*State, int) error { return nil })
	t0 := r.clock.Now()
	r.setAlarm(t0.Add(time.Minute))
	r.clock.waitTimer(t, t0.Add(time.Minute))
	r.setAlarm(t0.Add(time.Hour))
	r.clock.waitTimer(t, t0.Add(time.Hour))
	r.clock.Advance(time.Minute)
	r.settle()
	mustNot(t, runs, "run at the alarm's old time")
	if err := r.call(func(s *State) error { return s.Storage().DeleteAlarm() }); err != nil {
		t.Fatal(err)
	}
	r.settle() // the actor rearms after it has answered
	if at, ok := r.clock.pending(); ok {
		t.Fatalf("timer still set for %v after DeleteAlarm", at)
	}
	r.clock.Advance(2 * time.Hour)
	r.settle()
	mustNot(t, runs, "run of a deleted alarm")
}
