package durable

import (
	"bytes"
	"errors"
	"fmt"
	"slices"

	"hellochat/fifo"
	"hellochat/storage"
)

// The output gate's pipeline: what an event's outputs wait for before
// they are released. A writing event's batch is handed to the Committer,
// or gathered behind the one in flight; an event that wrote nothing waits
// for the batch in flight, or for a confirmation of the actor's reads
// (Config.Confirm). Everything here runs on the actor's goroutine.

// A batch is writes handed to the Committer together, with the outputs
// released once it is committed. The actor keeps at most one in flight
// and gathers the writes of the events that finish meanwhile into the
// next, handed over when the one in flight is committed: a busy object
// commits many events per round trip, a quiet one each event at once.
type batch struct {
	ops     map[string]storage.Op // by store key; a later write replaces an earlier
	bytes   int
	outputs []func(error)
}

func opsSize(ops []storage.Op) int {
	n := 0
	for _, op := range ops {
		n += len(op.Key) + len(op.Value)
	}
	return n
}

// stage takes an event's writes (none, for an event that wrote nothing)
// to be committed after all before them, and returns the batch whose
// commit its outputs wait for (nil: nothing is in flight, they may go).
// If a commit it has to wait for first fails, the writes are dropped and
// the error returned.
func (a *Actor) stage(ops []storage.Op) (*batch, error) {
	size := opsSize(ops)
	for a.next != nil && a.next.bytes+size > MaxBatchBytes {
		// Too much for one batch: the gathered one goes as soon as the
		// one in flight is committed, and these writes after it.
		if err := a.awaitFlight(); err != nil {
			return nil, err
		}
	}
	if a.broken != nil {
		return nil, a.broken
	}
	if len(ops) == 0 {
		if a.next != nil {
			return a.next, nil
		}
		return a.flight, nil
	}
	// Later events read these writes as if committed.
	a.st.committedNow()
	a.publishAlarm()
	b := a.next
	switch {
	case a.flight == nil:
		// Its commit comes after every event that waits for a
		// confirmation ran, so it confirms them too, in order.
		b = &batch{ops: make(map[string]storage.Op, len(ops)), outputs: a.takeConfirmOutputs()}
	case b == nil:
		b = &batch{ops: make(map[string]storage.Op, max(len(ops), a.lastBatch.ops)),
			outputs: make([]func(error), 0, a.lastBatch.outputs)}
		a.next, a.reader.next = b, b.ops
	}
	for _, op := range ops {
		b.ops[string(op.Key)] = op
	}
	b.bytes += size
	if a.flight == nil {
		a.handOff(b)
	}
	return b, nil
}

// after releases out once b is committed; for nil b (nothing in
// flight), once a confirmation asked from now on says the event's reads
// were current (at once without Config.Confirm).
func (a *Actor) after(b *batch, out func(error)) {
	switch {
	case b != nil:
		b.outputs = append(b.outputs, out)
	case a.cfg.Confirm == nil:
		out(nil)
	default:
		a.confirmNext = append(a.confirmNext, out)
		if !a.confirming {
			a.askConfirm()
		}
	}
}

// askConfirm asks for a confirmation for the outputs in confirmNext.
func (a *Actor) askConfirm() {
	a.confirming = true
	a.confirmWait, a.confirmNext = a.confirmNext, nil
	answer := a.confirmed
	a.cfg.Confirm(func(err error) {
		select {
		case answer <- err:
		default: // a second call breaks the contract; do not block on it
		}
	})
}

// settleConfirm takes a confirmation's answer: its outputs go (or hear
// that the reads could not be confirmed), and the next one is asked for
// those that came since.
func (a *Actor) settleConfirm(err error) error {
	outs := a.confirmWait
	a.confirming, a.confirmWait = false, nil
	if err != nil {
		// Another node may lead the object: what this actor holds in
		// memory may be stale, so the instance is replaced.
		err = fmt.Errorf("%w: reads not confirmed: %w", ErrNotCommitted, err)
		a.reset = true
	}
	for _, out := range outs {
		out(err)
	}
	if len(a.confirmNext) > 0 {
		a.askConfirm()
	}
	return err
}

// takeConfirmOutputs hands over the outputs waiting for a confirmation
// (to a commit that will confirm them); an answer still to come finds
// nothing to release.
func (a *Actor) takeConfirmOutputs() []func(error) {
	outs := append(a.confirmWait, a.confirmNext...)
	a.confirmWait, a.confirmNext = nil, nil
	return outs
}

// handOff hands b to the Committer as one batch, versioned after the
// last one handed over.
func (a *Actor) handOff(b *batch) {
	ops := make([]storage.Op, 0, len(b.ops))
	for _, op := range b.ops {
		ops = append(ops, op)
	}
	slices.SortFunc(ops, func(x, y storage.Op) int { return bytes.Compare(x.Key, y.Key) })
	// The store records the version itself (storage.VersionKey), in the
	// batch that the guard lets through: a key of the object's own for it
	// would be a second copy of every batch's version.
	next := a.version + 1
	guards := storage.Guards{Versioned: true, Version: a.version, Next: next}
	if a.version == 0 {
		// A store without a version recorded checks keys instead: the
		// object must have committed nothing yet, not even under the
		// version key of an earlier format (legacyVersionKey).
		guards.Absent = [][]byte{legacyVersionKey}
	}
	a.version = next
	a.lastBatch.ops, a.lastBatch.outputs = len(b.ops), len(b.outputs)
	a.flight = b
	a.reader.flight = b.ops
	result := a.results
	a.cfg.Committer.Commit(a.object, ops, guards, func(err error) {
		select {
		case result <- err:
		default: // a second call breaks the contract; do not block on it
		}
	})
}

// awaitFlight waits for the batch in flight to be committed (at most
// CommitWait once the actor is closing) and settles it.
func (a *Actor) awaitFlight() error {
	return a.settle(a.waitCommit(a.results))
}

// drain commits everything handed over or gathered and waits for the
// confirmations asked, releasing the outputs in order; the first failure
// is returned.
func (a *Actor) drain() error {
	for a.flight != nil || a.confirming {
		var err error
		if a.flight != nil {
			err = a.awaitFlight()
		} else {
			err = a.awaitConfirm()
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// awaitConfirm waits for the confirmation out (at most CommitWait once
// the actor is closing) and settles it.
func (a *Actor) awaitConfirm() error {
	select {
	case err := <-a.confirmed:
		return a.settleConfirm(err)
	case <-a.closing:
	}
	timeout := make(chan struct{}, 1)
	t := a.cfg.Clock.AfterFunc(a.cfg.CommitWait, func() { fifo.Signal(timeout) })
	defer t.Stop()
	select {
	case err := <-a.confirmed:
		return a.settleConfirm(err)
	case <-timeout:
		return a.settleConfirm(ErrClosed)
	}
}

// settle takes the result of the batch in flight. Committed: its outputs
// are released, and the gathered batch goes next. Failed: its outputs
// and the gathered ones (whose events read its writes) hear why, the
// storage is reloaded from the store, so the object never reads what was
// not committed, and the instance will be replaced.
func (a *Actor) settle(err error) error {
	b := a.flight
	a.flight, a.reader.flight = nil, nil
	if err == nil {
		for _, out := range b.outputs {
			out(nil)
		}
		if n := a.next; n != nil {
			a.next, a.reader.next = nil, nil
			a.handOff(n)
		}
		return nil
	}
	if !errors.Is(err, ErrCommitAbandoned) {
		err = fmt.Errorf("%w: %w", ErrNotCommitted, err)
	}
	failed := b.outputs
	if n := a.next; n != nil {
		failed = append(failed, n.outputs...)
		a.next, a.reader.next = nil, nil
	}
	a.reload()
	a.reset = true
	for _, out := range failed {
		out(err)
	}
	return err
}

// waitCommit waits for a commit's result, at most CommitWait once the
// actor is closing.
func (a *Actor) waitCommit(result <-chan error) error {
	select {
	case err := <-result:
		return err
	case <-a.closing:
	}
	timeout := make(chan struct{}, 1)
	t := a.cfg.Clock.AfterFunc(a.cfg.CommitWait, func() { fifo.Signal(timeout) })
	defer t.Stop()
	select {
	case err := <-result:
		return err
	case <-timeout:
		a.log.Warn("closing with a commit in flight", "after", a.cfg.CommitWait)
		a.abandoned = true
		return ErrCommitAbandoned
	}
}
