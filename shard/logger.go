package shard

import (
	"fmt"
	"log/slog"
	"strings"
)

// raftLogger routes etcd raft's log into the node's: elections and other
// state changes at info would drown a 64-shard node's log, so raft's info
// becomes debug, except the line a replica logs when it wins an election:
// one per shard and term, it is what tells operators and checkers (the
// nemesis proves no two processes led one shard in one term) who led when.
// Warnings and errors stay.
type raftLogger struct{ l *slog.Logger }

func (r raftLogger) Debug(v ...any)            { r.l.Debug(fmt.Sprint(v...)) }
func (r raftLogger) Debugf(f string, v ...any) { r.l.Debug(fmt.Sprintf(f, v...)) }
func (r raftLogger) Info(v ...any)             { r.l.Debug(fmt.Sprint(v...)) }
func (r raftLogger) Infof(f string, v ...any) {
	if strings.Contains(f, "became leader") {
		r.l.Info(fmt.Sprintf(f, v...))
		return
	}
	r.l.Debug(fmt.Sprintf(f, v...))
}
func (r raftLogger) Warning(v ...any)            { r.l.Warn(fmt.Sprint(v...)) }
func (r raftLogger) Warningf(f string, v ...any) { r.l.Warn(fmt.Sprintf(f, v...)) }
func (r raftLogger) Error(v ...any)              { r.l.Error(fmt.Sprint(v...)) }
func (r raftLogger) Errorf(f string, v ...any)   { r.l.Error(fmt.Sprintf(f, v...)) }
func (r raftLogger) Fatal(v ...any)              { r.l.Error(fmt.Sprint(v...)); panic(fmt.Sprint(v...)) }
func (r raftLogger) Fatalf(f string, v ...any)   { r.Fatal(fmt.Sprintf(f, v...)) }
func (r raftLogger) Panic(v ...any)              { r.l.Error(fmt.Sprint(v...)); panic(fmt.Sprint(v...)) }
func (r raftLogger) Panicf(f string, v ...any)   { r.Panic(fmt.Sprintf(f, v...)) }
