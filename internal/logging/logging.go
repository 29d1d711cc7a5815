// Package logging gives each process a logger: as text, every line starts
// with the process name, so the interleaved output of `make cluster` stays
// readable; as JSON, one object per line with the process name in "proc",
// for log collectors.
package logging

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
)

// The log formats (--log-format).
const (
	FormatText = "text"
	FormatJSON = "json"
)

// lineWriter hands each complete line of its input to emit. Writers may
// pass partial lines; a line is emitted once its newline arrives.
type lineWriter struct {
	mu   sync.Mutex
	buf  []byte
	emit func(line []byte) error // the line, with its newline
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			return len(p), nil
		}
		err := w.emit(w.buf[:i+1])
		w.buf = w.buf[i+1:]
		if err != nil {
			return len(p), err
		}
	}
}

// rawLevel reads the level a library wrote into its line (memberlist's
// "[WARN] ..."), so level filters see it; info when it names none.
func rawLevel(line string) slog.Level {
	switch {
	case strings.Contains(line, "[ERR]"), strings.Contains(line, "[ERROR]"):
		return slog.LevelError
	case strings.Contains(line, "[WARN]"):
		return slog.LevelWarn
	case strings.Contains(line, "[DEBUG]"):
		return slog.LevelDebug
	}
	return slog.LevelInfo
}

// New returns a logger and a raw writer for libraries with their own log
// lines. As text both prefix lines with "name | "; as JSON the logger
// writes one object per line with "proc": name, and each raw line becomes
// the message of one such object (at info level, "raw": true).
func New(name string, out io.Writer, level slog.Level, format string) (*slog.Logger, io.Writer, error) {
	opts := &slog.HandlerOptions{Level: level}
	switch format {
	case FormatText, "":
		prefix := []byte(name + " | ")
		w := &lineWriter{emit: func(line []byte) error {
			_, err := out.Write(append(append(make([]byte, 0, len(prefix)+len(line)), prefix...), line...))
			return err
		}}
		return slog.New(slog.NewTextHandler(w, opts)), w, nil
	case FormatJSON:
		// One Write per record keeps lines whole among goroutines.
		log := slog.New(slog.NewJSONHandler(&lineWriter{emit: func(line []byte) error {
			_, err := out.Write(line)
			return err
		}}, opts)).With("proc", name)
		raw := &lineWriter{emit: func(line []byte) error {
			msg := string(bytes.TrimRight(line, "\r\n"))
			log.Log(context.Background(), rawLevel(msg), msg, "raw", true)
			return nil
		}}
		return log, raw, nil
	default:
		return nil, nil, fmt.Errorf("log format %q: want %s or %s", format, FormatText, FormatJSON)
	}
}
