package router

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// BenchmarkSocketWrite writes chat frames to a real WebSocket on loopback
// (a reader drains the other end), bounding each write as a socket's
// write loop must: with a deadline context per write, or with a plain
// context and one watchdog timer per batch of writes.
func BenchmarkSocketWrite(b *testing.B) {
	frame := []byte(`{"type":"message","seq":12345,"id":"c1-77","name":"alice","text":"` + strings.Repeat("x", 120) + `","ts":1733100000000}`)
	b.Run("deadline-context", func(b *testing.B) {
		c := dialSink(b).conn
		b.ReportAllocs()
		for b.Loop() {
			ctx, cancel := context.WithTimeout(context.Background(), WriteTimeout)
			if err := c.Write(ctx, websocket.MessageText, frame); err != nil {
				b.Fatal(err)
			}
			cancel()
		}
	})
	b.Run("session-context-watchdog", func(b *testing.B) {
		c := dialSink(b).conn
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		b.ReportAllocs()
		for b.Loop() {
			t := time.AfterFunc(WriteTimeout, func() { c.CloseNow() })
			if err := c.Write(ctx, websocket.MessageText, frame); err != nil {
				b.Fatal(err)
			}
			t.Stop()
		}
	})
	b.Run("watchdog", func(b *testing.B) {
		c := dialSink(b).conn
		b.ReportAllocs()
		for b.Loop() {
			t := time.AfterFunc(WriteTimeout, func() { c.CloseNow() })
			if err := c.Write(context.Background(), websocket.MessageText, frame); err != nil {
				b.Fatal(err)
			}
			t.Stop()
		}
	})
}

// BenchmarkWriteBatch writes a batch of 16 chat frames (one commit of a
// busy room, as one browser receives it) through a socket's writer, one
// WebSocket message per frame, gathered into one write.
func BenchmarkWriteBatch(b *testing.B) {
	frame := []byte(`{"type":"message","seq":12345,"id":"c1-77","name":"alice","text":"` + strings.Repeat("x", 120) + `","ts":1733100000000}`)
	batch := make([][]byte, 16)
	for i := range batch {
		batch[i] = frame
	}
	s := dialSink(b)
	b.ReportAllocs()
	for b.Loop() {
		if !s.write(context.Background(), textFrames(batch...)) {
			b.Fatal("the write failed")
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(batch)), "ns/frame")
}

// dialSink returns a socket on the server end of a real WebSocket on
// loopback whose client end reads and drops everything.
func dialSink(b *testing.B) *gatewaySocket {
	s, client := socketPair(b, queueShares{})
	msgs := messages(client)
	go func() {
		for range msgs {
		}
	}()
	return s
}
