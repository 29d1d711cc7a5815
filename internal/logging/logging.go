// Package logging gives each process a logger whose every line starts with
// the process name, so the interleaved output of `make cluster` stays
// readable.
package logging

import (
	"bytes"
	"io"
	"log/slog"
	"sync"
)

// prefixWriter writes each line of its input with a prefix. Writers may
// pass partial lines; a line is emitted once its newline arrives.
type prefixWriter struct {
	mu     sync.Mutex
	prefix []byte
	out    io.Writer
	buf    []byte
}

func (w *prefixWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			return len(p), nil
		}
		line := make([]byte, 0, len(w.prefix)+i+1)
		line = append(append(line, w.prefix...), w.buf[:i+1]...)
		if _, err := w.out.Write(line); err != nil {
			return len(p), err
		}
		w.buf = w.buf[i+1:]
	}
}

// New returns a logger and a raw writer (for libraries with their own log
// format) that both prefix lines with "name | ".
func New(name string, out io.Writer, level slog.Level) (*slog.Logger, io.Writer) {
	w := &prefixWriter{prefix: []byte(name + " | "), out: out}
	h := slog.NewTextHandler(w, &slog.HandlerOptions{Level: level})
	return slog.New(h), w
}
