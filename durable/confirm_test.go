package durable

import (
	"errors"
	"testing"
)

// newConfirmRig is a rig whose actor asks the test to confirm its reads,
// with methods "read" (writes nothing, answers k) and "write" (puts k).
func newConfirmRig(t *testing.T) *rig {
	r := &rig{t: t, c: newFakeCommitter(), clock: newFakeClock(), out: make(chan Message, 100),
		socks: &fakeSockets{ops: make(chan socketOp, 100)}, confirms: make(chan func(error), 10)}
	ns, _ := NewNamespace("Test")
	r.id = ns.IDFromName(t.Name())
	r.start(methods(map[string]func(s *State) ([]byte, error){
		"read": func(s *State) ([]byte, error) {
			v, _, err := s.Storage().Get("k")
			return append([]byte("k="), v...), err
		},
		"write": func(s *State) ([]byte, error) { return []byte("wrote"), s.Storage().Put("k", []byte("v")) },
	}))
	return r
}

// An event that wrote nothing answers once a confirmation asked after it
// ran comes back; one that comes while a confirmation is out waits for
// the next; a writing event needs none.
func TestReadsWaitForAConfirmation(t *testing.T) {
	r := newConfirmRig(t)
	first := r.async("read")
	confirm1 := recv(t, r.confirms, "a confirmation asked")
	second := r.async("read")
	waitTaken(t, r, 1)
	mustNot(t, r.confirms, "a second confirmation while one is out:")
	mustNot(t, first, "a read answered before its confirmation:")
	confirm1(nil)
	if got := recv(t, first, "first read"); got.err != nil || string(got.out) != "k=" {
		t.Fatalf("first read: %q %v", got.out, got.err)
	}
	// The second ran after the first confirmation was asked: it needs
	// one of its own.
	confirm2 := recv(t, r.confirms, "the next confirmation")
	mustNot(t, second, "a read answered on a confirmation asked before it ran:")
	confirm2(nil)
	if got := recv(t, second, "second read"); got.err != nil {
		t.Fatal(got.err)
	}
	if got := recv(t, r.async("write"), "write"); got.err != nil {
		t.Fatal(got.err)
	}
	mustNot(t, r.confirms, "a confirmation for a writing event:")
}

// A read waiting for a confirmation when a write comes is released by the
// write's commit, before the write's own answer, so outputs keep their
// order; the confirmation's late answer releases nothing twice.
func TestACommitConfirmsTheReadsBeforeIt(t *testing.T) {
	r := newConfirmRig(t)
	r.c.setHold(true)
	read := r.async("read")
	confirm := recv(t, r.confirms, "a confirmation asked")
	write := r.async("write")
	r.c.waitAsked(t)
	mustNot(t, read, "the read answered before anything confirmed it:")
	r.c.release(t, nil)
	if got := recv(t, read, "read"); got.err != nil || string(got.out) != "k=" {
		t.Fatalf("read: %q %v", got.out, got.err)
	}
	if got := recv(t, write, "write"); got.err != nil {
		t.Fatal(got.err)
	}
	confirm(nil) // late: nothing waits on it any more
	r.c.setHold(false)
	if got := recv(t, r.async("write"), "another write"); got.err != nil {
		t.Fatal(got.err)
	}
}

// A confirmation that fails fails the reads waiting on it (their callers
// may retry elsewhere), and the instance is replaced.
func TestAFailedConfirmationFailsTheReads(t *testing.T) {
	r := newConfirmRig(t)
	read := r.async("read")
	confirm := recv(t, r.confirms, "a confirmation asked")
	lost := errors.New("not the leader")
	confirm(lost)
	if got := recv(t, read, "read"); !errors.Is(got.err, ErrNotCommitted) || !errors.Is(got.err, lost) {
		t.Fatalf("read on a failed confirmation: %v", got.err)
	}
	next := r.async("read")
	recv(t, r.confirms, "a confirmation for the next read")(nil)
	if got := recv(t, next, "next read"); got.err != nil {
		t.Fatal(got.err)
	}
}
