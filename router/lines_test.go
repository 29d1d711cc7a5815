package router

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// sessionPair returns a session on the server end of a real WebSocket on
// loopback, upgraded as the router upgrades browsers, and the client end.
func sessionPair(t testing.TB) (*session, *websocket.Conn) {
	t.Helper()
	sessions := make(chan *session, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hj := &leanHijack{ResponseWriter: w}
		c, err := websocket.Accept(hj, r, nil)
		if err != nil {
			t.Error(err)
			return
		}
		sessions <- &session{conn: c, out: hj.conn, closed: make(chan struct{})}
	}))
	t.Cleanup(srv.Close)
	client, _, err := websocket.Dial(context.Background(), "ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if err != nil {
		t.Fatal(err)
	}
	client.SetReadLimit(-1)
	t.Cleanup(func() { client.CloseNow() })
	s := <-sessions
	t.Cleanup(func() { s.conn.CloseNow() })
	return s, client
}

// socketPair is sessionPair with a channel of the messages the client
// end reads.
func socketPair(t testing.TB) (*session, <-chan []byte) {
	t.Helper()
	s, client := sessionPair(t)
	msgs := make(chan []byte, 100)
	go func() {
		for {
			_, data, err := client.Read(context.Background())
			if err != nil {
				close(msgs)
				return
			}
			msgs <- data
		}
	}()
	return s, msgs
}

func readN(t *testing.T, msgs <-chan []byte, n int) [][]byte {
	t.Helper()
	var got [][]byte
	for len(got) < n {
		select {
		case m := <-msgs:
			got = append(got, m)
		case <-time.After(10 * time.Second):
			t.Fatalf("read %d messages, want %d", len(got), n)
		}
	}
	return got
}

// A session that takes lines gets frames that wait together as one
// message, one frame per line, never over MaxLinesBytes unless one frame
// alone is; other sessions get a message per frame.
func TestWriteFramesAsLines(t *testing.T) {
	small := func(i int) []byte { return []byte(`{"type":"message","seq":` + string(rune('0'+i)) + `}`) }
	frames := [][]byte{small(1), small(2), small(3)}

	s, msgs := socketPair(t)
	if err := s.writeFrames(frames); err != nil {
		t.Fatal(err)
	}
	for i, m := range readN(t, msgs, 3) {
		if !bytes.Equal(m, frames[i]) {
			t.Fatalf("message %d = %s, want frame %s alone", i, m, frames[i])
		}
	}

	lines, msgs := socketPair(t)
	lines.lines = true
	if err := lines.writeFrames(frames); err != nil {
		t.Fatal(err)
	}
	if m := readN(t, msgs, 1)[0]; !bytes.Equal(m, bytes.Join(frames, []byte{'\n'})) {
		t.Fatalf("lines message = %s, want the three frames joined", m)
	}

	// Past MaxLinesBytes a new message starts; a frame that alone is
	// larger goes by itself.
	half := []byte(`"` + strings.Repeat("h", MaxLinesBytes/2) + `"`)
	huge := []byte(`"` + strings.Repeat("u", MaxLinesBytes+10) + `"`)
	if err := lines.writeFrames([][]byte{half, half, huge, small(4), small(5)}); err != nil {
		t.Fatal(err)
	}
	got := readN(t, msgs, 4)
	want := [][]byte{half, half, huge, append(append(small(4), '\n'), small(5)...)}
	for i := range want {
		if !bytes.Equal(got[i], want[i]) {
			t.Fatalf("message %d is %d bytes, want %d", i, len(got[i]), len(want[i]))
		}
		if len(got[i]) > MaxLinesBytes && bytes.Count(got[i], []byte{'\n'}) > 0 {
			t.Fatalf("message %d joins frames past MaxLinesBytes", i)
		}
	}
}

// A session's writer goroutine lives only while frames wait: it ends once
// the queue is empty, and the next frame starts another.
func TestWriterOnlyWhileFramesWait(t *testing.T) {
	s, msgs := socketPair(t)
	writerOn := func() bool {
		s.qmu.Lock()
		defer s.qmu.Unlock()
		return s.writerOn
	}
	for round := 1; round <= 3; round++ {
		frame := []byte(`{"round":` + string(rune('0'+round)) + `}`)
		s.enqueue(frame)
		if m := readN(t, msgs, 1)[0]; !bytes.Equal(m, frame) {
			t.Fatalf("round %d: got %s", round, m)
		}
		deadline := time.Now().Add(10 * time.Second)
		for writerOn() {
			if time.Now().After(deadline) {
				t.Fatalf("round %d: the writer is still on with nothing queued", round)
			}
			time.Sleep(time.Millisecond)
		}
	}
}
