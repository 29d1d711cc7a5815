package durable

import (
	"context"
	"time"

	"hellochat/fifo"
)

// RetryPolicy is how an actor retries an alarm whose run failed (its
// handler returned an error or panicked, or its writes were not
// committed): retry n waits First * 2^(n-1), at most Max, after the
// failure, and after Retries retries the alarm is given up and deleted.
type RetryPolicy struct {
	Retries    int
	First, Max time.Duration
}

// DefaultAlarmRetry is Cloudflare's: up to 6 retries, the first 2 s after
// the failure, doubling (2, 4, 8, 16, 32, 60 s).
var DefaultAlarmRetry = RetryPolicy{Retries: 6, First: 2 * time.Second, Max: time.Minute}

// Backoff is the wait before retry n (n >= 1).
func (p RetryPolicy) Backoff(n int) time.Duration {
	d := p.First
	for i := 1; i < n && d < p.Max; i++ {
		d *= 2
	}
	return min(d, p.Max)
}

// alarmSchedule is the actor's timer for its committed alarm. Retry
// counts live here, in memory: an object that moves to another node
// starts counting again (the alarm itself is in storage, so it fires
// there).
type alarmSchedule struct {
	timer   Timer
	timerAt time.Time // what timer fires for
	armed   bool      // at is set: the committed alarm this schedule follows
	at      time.Time
	next    time.Time // when to run it: at, or a retry's time
	retries int       // failed runs of at
}

func (s *alarmSchedule) stop() {
	if s.timer != nil {
		s.timer.Stop()
		s.timer = nil
	}
}

// rearm points the timer at the committed alarm (or its next retry).
func (a *Actor) rearm() {
	s := &a.sched
	a.publishAlarm()
	at, set := a.st.alarm.at, a.st.alarm.set
	if !set {
		s.stop()
		*s = alarmSchedule{}
		return
	}
	if !s.armed || !s.at.Equal(at) {
		s.stop()
		*s = alarmSchedule{armed: true, at: at, next: at}
	}
	if s.timer != nil && s.timerAt.Equal(s.next) {
		return
	}
	s.stop()
	s.timer = a.cfg.Clock.AfterFunc(max(s.next.Sub(a.cfg.Clock.Now()), 0), func() { fifo.Signal(a.alarmc) })
	s.timerAt = s.next
}

// fireAlarm runs the alarm if it is due.
func (a *Actor) fireAlarm() {
	s := &a.sched
	if !s.armed || a.cfg.Clock.Now().Before(s.next) {
		s.stop() // a stale signal, or an early one: rearm sets a new timer
		return
	}
	s.timer = nil // it fired
	info := AlarmInfo{ScheduledTime: s.at, RetryCount: s.retries, IsRetry: s.retries > 0}
	run := func(context.Context, *State) error { return nil }
	if h, ok := a.obj.(Alarmer); ok {
		run = func(ctx context.Context, st *State) error { return h.Alarm(ctx, st, info) }
	} else {
		a.log.Warn("alarm fired on a class without an Alarm handler; clearing it")
	}
	err := a.runNow(a.ctx, true, run)
	a.observe(EventAlarm, err)
	if err == nil {
		*s = alarmSchedule{} // done with this alarm; rearm takes up any new one
		return
	}
	if a.abandoned || a.broken != nil {
		return
	}
	s.retries++
	if s.retries > a.cfg.AlarmRetry.Retries {
		a.log.Error("alarm failed too often; deleting it", "scheduled", s.at, "runs", s.retries, "err", err)
		*s = alarmSchedule{}
		if err := a.runNow(a.ctx, false, func(_ context.Context, st *State) error {
			return st.Storage().DeleteAlarm()
		}); err != nil {
			a.log.Error("delete a failed alarm", "err", err)
		}
		return
	}
	wait := a.cfg.AlarmRetry.Backoff(s.retries)
	a.log.Warn("alarm failed; retrying", "scheduled", s.at, "retry", s.retries, "in", wait, "err", err)
	s.next = a.cfg.Clock.Now().Add(wait)
}
