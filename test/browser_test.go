package test

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"net/url"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	tc "hellochat/internal/testcluster"
)

const (
	browserRoom = "browsertest"
	// A step waits for something that crosses the cluster and a browser on a
	// loaded 2-core machine (with -race); twice the usual wait.
	browserStep = 2 * wait
	// The whole browser part, so that a wedged Chromium fails the test rather
	// than hanging it until go test's own 10 minute timeout.
	browserBudget = 60 * time.Second
	// Screenshot for people debugging a failure; nothing asserts on it.
	browserScreenshot = "/tmp/hellochat-browser.png"
)

// TestBrowserChat drives the real page (web/) in headless Chromium against an
// in-process cluster: two tabs chat live in both directions (button and
// Enter), sends are confirmed with the same seqs in both, a late third tab
// shows the history, HTML in a message stays text, and the invite QR code
// served by the router loads.
func TestBrowserChat(t *testing.T) {
	chrome := browserFindChromium(t)
	c := tc.New(t, 3, tc.Options{})

	allocCtx, console := browserStart(t, chrome)
	alice := browserOpenTab(t, allocCtx, "alice", console)
	defer alice.close()
	bobby := browserOpenTab(t, alice.ctx, "bobby", console)
	defer bobby.close()

	base := c.URL() + "/?room=" + browserRoom
	alice.navigate(base + "&name=alice")
	bobby.navigate(base + "&name=bobby")
	alice.waitConnected()
	bobby.waitConnected()
	alice.waitPresence("alice", "bobby")
	alice.waitText("#room-name", browserRoom)
	alice.waitText("#my-name", "alice")

	// alice → bobby, with the Send button.
	text1 := "hello bobby, this is alice"
	t0 := time.Now().UnixMilli()
	alice.do("type and click Send",
		chromedp.SendKeys(chromedp.CSS("#message-input"), text1),
		chromedp.Click(chromedp.CSS("#send-button")),
	)
	want := []browserWant{{"1", "alice", text1}}
	bobbyView := bobby.waitMessages("alice's message", want)
	t1 := time.Now().UnixMilli()
	browserCheckTimes(t, "bobby", bobbyView[:1], t0, t1)
	// The sender's own copy must be confirmed (pending → data-seq) by the server.
	aliceView := alice.waitMessages("alice's own message confirmed", want)
	if !aliceView[0].Own || bobbyView[0].Own {
		t.Errorf("own-message marking: alice sees %v own=%v, bobby sees own=%v; want true, false",
			aliceView[0], aliceView[0].Own, bobbyView[0].Own)
	}
	alice.waitInputEmpty()

	// bobby → alice, with Enter: keydown sends, and the newline must not be
	// left behind in the textarea.
	text2 := "hi alice! bobby here"
	t2 := time.Now().UnixMilli()
	bobby.do("type and press Enter", chromedp.SendKeys(chromedp.CSS("#message-input"), text2+"\n"))
	want = append(want, browserWant{"2", "bobby", text2})
	aliceView = alice.waitMessages("bobby's reply", want)
	t3 := time.Now().UnixMilli()
	browserCheckTimes(t, "alice", aliceView[1:], t2, t3)
	bobbyView = bobby.waitMessages("bobby's own reply confirmed", want)
	bobby.waitInputEmpty()
	browserSameView(t, "alice", aliceView, "bobby", bobbyView)
	if a, b := browserTS(aliceView[0]), browserTS(aliceView[1]); a > b {
		t.Errorf("timestamps go backwards: seq 1 at %d, seq 2 at %d", a, b)
	}

	// A late tab gets the room's history, as the others show it.
	carol := browserOpenTab(t, alice.ctx, "carol", console)
	defer carol.close()
	carol.navigate(base + "&name=carol")
	carol.waitConnected()
	carolView := carol.waitMessages("history", want)
	browserSameView(t, "alice", aliceView, "carol", carolView)
	carol.waitPresence("alice", "bobby", "carol")

	// Message text is data, never markup: if the page ever used innerHTML,
	// the <b> and <img> would become elements (and the onerror would run).
	text3 := `<b>bold</b><img src=x onerror=alert(1)>`
	alice.do("send HTML",
		chromedp.SendKeys(chromedp.CSS("#message-input"), text3),
		chromedp.Click(chromedp.CSS("#send-button")),
	)
	want = append(want, browserWant{"3", "alice", text3})
	for _, b := range []*browserTab{bobby, carol, alice} {
		view := b.waitMessages("the HTML message as text", want)
		if n := browserEval[int](b, "markup elements in #messages",
			`document.querySelectorAll('#messages b, #messages img, #messages script').length`); n != 0 {
			t.Errorf("%s: %d <b>/<img>/<script> elements inside #messages; message text was rendered as HTML", b.name, n)
		}
		if len(view[2].Tags) != 0 {
			t.Errorf("%s: .msg-text of %v has child elements %v", b.name, view[2], view[2].Tags)
		}
	}

	// The invite QR image is served by the router; the link it encodes is the
	// room alone (?name= is for tests and must not be passed on).
	wantShare := c.URL() + "/?room=" + browserRoom
	carol.waitText("#share-url", wantShare)
	qr := browserWaitEval(carol, "#qr loaded",
		`(() => { const q = document.getElementById('qr');
		  return {src: q.src, complete: q.complete, width: q.naturalWidth, broken: q.classList.contains('broken')}; })()`,
		func(q browserQR) error {
			if !q.Complete || q.Width <= 0 || q.Broken {
				return fmt.Errorf("not loaded: %+v", q)
			}
			return nil
		})
	if u, err := url.Parse(qr.Src); err != nil || u.Path != "/qr.png" || u.Query().Get("text") != wantShare {
		t.Errorf("#qr src = %q; want /qr.png?text=%s", qr.Src, url.QueryEscape(wantShare))
	}

	carol.screenshot(browserScreenshot)

	// The others keep their lists from joined/left alone: carol came, then
	// goes.
	alice.waitPresence("alice", "bobby", "carol")
	carol.close()
	alice.waitPresence("alice", "bobby")
	bobby.waitPresence("alice", "bobby")

	for _, m := range console.all() {
		if m.bad {
			t.Errorf("browser console: %s", m.text)
		}
	}
}

// browserFindChromium returns the browser to run, or skips the test when there
// is none, except in CI, where a missing browser must not pass unnoticed.
func browserFindChromium(t *testing.T) string {
	t.Helper()
	if env := os.Getenv("CHROME"); env != "" {
		p, err := exec.LookPath(env)
		if err != nil {
			t.Fatalf("CHROME=%q: %v", env, err)
		}
		return p
	}
	for _, name := range []string{"/usr/bin/chromium", "chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	const msg = "no Chromium (looked for $CHROME, /usr/bin/chromium, chromium, chromium-browser)"
	if os.Getenv("CI") != "" {
		t.Fatal(msg + ": .ci/run must install chromium (apt-get install chromium)")
	}
	t.Skip(msg + "; install chromium or set CHROME to run the browser test")
	return ""
}

// browserTab is one page (tab) of the shared browser, for one user.
type browserTab struct {
	t      *testing.T
	name   string
	ctx    context.Context
	cancel context.CancelFunc
}

// browserOpenTab opens a tab: the first one (parent is the allocator context)
// also starts the browser; later ones are new tabs in that browser.
// browserStart starts headless Chromium for the test, within its
// browserBudget, and gathers what its tabs log (shown if the test fails).
func browserStart(t *testing.T, chrome string) (context.Context, *browserConsole) {
	ctx, cancel := context.WithTimeout(context.Background(), browserBudget)
	allocCtx, cancelAlloc := browserAllocator(t, ctx, chrome)
	console := &browserConsole{}
	t.Cleanup(func() {
		cancelAlloc() // also waits for Chromium to exit, before TempDir is removed
		cancel()
		// A failed step ends the test early; what the pages logged says why.
		if t.Failed() {
			for _, m := range console.all() {
				t.Logf("browser console: %s", m.text)
			}
		}
	})
	return allocCtx, console
}

// browserAllocator starts headless Chromium for a test; cancelling waits
// for it to exit.
func browserAllocator(t *testing.T, ctx context.Context, chrome string) (context.Context, context.CancelFunc) {
	return chromedp.NewExecAllocator(ctx,
		chromedp.ExecPath(chrome),
		chromedp.Headless,
		chromedp.NoSandbox, // CI runs as root, where Chromium's sandbox refuses to start
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		// Nothing but our router may be contacted, and nothing may compete
		// with it for the machine's two cores.
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		// Containers often have a tiny /dev/shm, which crashes renderers.
		chromedp.Flag("disable-dev-shm-usage", true),
		// Three tabs are live at once and only one can be in front; the others
		// must not have their timers (hence reconnects) throttled.
		chromedp.Flag("disable-background-timer-throttling", true),
		chromedp.Flag("disable-backgrounding-occluded-windows", true),
		chromedp.Flag("disable-renderer-backgrounding", true),
		chromedp.WindowSize(1280, 800),
		// A fresh profile: no remembered name (localStorage) or cache from an earlier run.
		chromedp.UserDataDir(t.TempDir()),
	)
}

func browserOpenTab(t *testing.T, parent context.Context, name string, console *browserConsole) *browserTab {
	t.Helper()
	ctx, cancel := chromedp.NewContext(parent)
	b := &browserTab{t: t, name: name, ctx: ctx, cancel: cancel}
	// Subscribing creates the tab, so nothing the page logs is missed.
	msgs := chromedp.Console(ctx)
	if err := chromedp.Do(ctx); err != nil {
		cancel()
		t.Fatalf("%s: start browser tab: %v", name, err)
	}
	go console.collect(name, msgs)
	return b
}

func (b *browserTab) close() { b.cancel() }

// fatalf fails the test, saying when the cause is the test's overall budget
// rather than the step itself.
func (b *browserTab) fatalf(format string, args ...any) {
	b.t.Helper()
	msg := b.name + ": " + fmt.Sprintf(format, args...)
	if errors.Is(b.ctx.Err(), context.DeadlineExceeded) {
		msg += fmt.Sprintf(" (the test's %v browser budget is used up)", browserBudget)
	}
	b.t.Fatal(msg)
}

// do runs steps with a timeout of their own. The timeout derives from a
// context whose tab already runs, so it ends the step only, not the browser.
func (b *browserTab) do(what string, steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, browserStep)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		b.fatalf("%s: %v", what, err)
	}
}

// screenshot only logs failures: the picture is a debugging aid.
func (b *browserTab) screenshot(path string) {
	ctx, cancel := context.WithTimeout(b.ctx, browserStep)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err == nil {
		err = os.WriteFile(path, png, 0o644)
	}
	if err != nil {
		b.t.Logf("%s: screenshot: %v", b.name, err)
		return
	}
	b.t.Logf("%s: screenshot in %s", b.name, path)
}

func (b *browserTab) navigate(u string) {
	b.t.Helper()
	b.do("open "+u, chromedp.Navigate(u))
}

func (b *browserTab) waitConnected() {
	b.t.Helper()
	// The label tells a socket that keeps failing ("Reconnecting in 4s…")
	// from a room the cluster is moving ("Room moving…").
	browserWaitEval(b, "#status connected",
		`[document.getElementById('status').dataset.state, document.getElementById('status-text').textContent]`,
		func(s []string) error {
			if len(s) != 2 || s[0] != "connected" {
				return fmt.Errorf("data-state, label = %q", s)
			}
			return nil
		})
	b.do("#status visible", chromedp.WaitVisible(chromedp.CSS(`#status[data-state="connected"]`)))
}

func (b *browserTab) waitText(sel, want string) {
	b.t.Helper()
	browserWaitEval(b, sel+" text", `document.querySelector(`+strconv.Quote(sel)+`).textContent`,
		func(s string) error {
			if s != want {
				return fmt.Errorf("%q, want %q", s, want)
			}
			return nil
		})
}

func (b *browserTab) waitInputEmpty() {
	b.t.Helper()
	b.waitValue("#message-input", "")
}

func (b *browserTab) waitValue(sel, want string) {
	b.t.Helper()
	browserWaitEval(b, sel+" value", `document.querySelector(`+strconv.Quote(sel)+`).value`,
		func(s string) error {
			if s != want {
				return fmt.Errorf("%q, want %q", s, want)
			}
			return nil
		})
}

// waitPresence waits until the "Here now" list names exactly these people.
func (b *browserTab) waitPresence(names ...string) {
	b.t.Helper()
	browserWaitEval(b, "#presence",
		`Array.from(document.querySelectorAll('#presence .presence-name'), (e) => e.textContent)`,
		func(got []string) error {
			if !slices.Equal(got, names) {
				return fmt.Errorf("%q, want %q", got, names)
			}
			return nil
		})
}

// browserShown is a .msg element as the user sees it.
type browserShown struct {
	Seq     string   `json:"seq"`
	Name    string   `json:"name"`
	Text    string   `json:"text"`
	Time    string   `json:"time"`
	TS      string   `json:"ts"`
	Pending bool     `json:"pending"`
	Failed  bool     `json:"failed"`
	Own     bool     `json:"own"`
	Tags    []string `json:"tags"` // elements inside .msg-text
}

func (m browserShown) String() string {
	s := fmt.Sprintf("[seq=%q %s: %q at %q ts=%q]", m.Seq, m.Name, m.Text, m.Time, m.TS)
	if m.Pending {
		s += "(pending)"
	}
	if m.Failed {
		s += "(failed)"
	}
	return s
}

type browserWant struct{ seq, name, text string }

const browserMessagesJS = `Array.from(document.querySelectorAll('#messages .msg'), (m) => {
  const part = (sel, f) => { const e = m.querySelector(sel); return e ? f(e) : 'MISSING ' + sel; };
  const text = m.querySelector('.msg-text');
  return {
    seq: m.dataset.seq === undefined ? 'MISSING data-seq' : m.dataset.seq,
    name: part('.msg-name', (e) => e.textContent),
    text: part('.msg-text', (e) => e.textContent),
    time: part('.msg-time', (e) => e.textContent),
    ts: part('.msg-time', (e) => e.dataset.ts === undefined ? 'MISSING data-ts' : e.dataset.ts),
    pending: m.classList.contains('pending'),
    failed: m.classList.contains('failed'),
    own: m.classList.contains('own'),
    tags: text ? Array.from(text.querySelectorAll('*'), (e) => e.tagName.toLowerCase()) : [],
  };
})`

// waitMessages waits until the tab shows exactly want, in order, each
// confirmed (a seq, a server time, not pending) and with its text as plain
// text.
func (b *browserTab) waitMessages(what string, want []browserWant) []browserShown {
	b.t.Helper()
	return browserWaitEval(b, what, browserMessagesJS, func(got []browserShown) error {
		if len(got) != len(want) {
			return fmt.Errorf("%d messages %v, want %d", len(got), got, len(want))
		}
		for i, w := range want {
			g := got[i]
			if g.Seq != w.seq || g.Name != w.name || g.Text != w.text || g.Pending || g.Failed {
				return fmt.Errorf("message %d is %v, want seq %s %s: %q confirmed (all: %v)", i, g, w.seq, w.name, w.text, got)
			}
			if err := browserCheckShown(g); err != nil {
				return fmt.Errorf("message %d %v: %v", i, g, err)
			}
		}
		return nil
	})
}

var browserTimeRE = regexp.MustCompile(`^(\d{4}-\d{2}-\d{2} )?\d{2}:\d{2}:\d{2}$`)

// browserCheckShown checks what every displayed message needs whatever its content.
func browserCheckShown(m browserShown) error {
	if len(m.Tags) != 0 {
		return fmt.Errorf(".msg-text contains elements %v", m.Tags)
	}
	ts, err := strconv.ParseInt(m.TS, 10, 64)
	if err != nil {
		return fmt.Errorf(".msg-time data-ts %q is not unix ms", m.TS)
	}
	if !browserTimeRE.MatchString(m.Time) {
		return fmt.Errorf(".msg-time text %q is not [YYYY-MM-DD ]HH:MM:SS", m.Time)
	}
	// Chromium and this process share the machine's time zone.
	if local := time.UnixMilli(ts).Format("15:04:05"); !strings.HasSuffix(m.Time, local) {
		return fmt.Errorf(".msg-time text %q does not show data-ts %d (%s local)", m.Time, ts, local)
	}
	return nil
}

// browserCheckTimes checks that the server stamped the messages between the
// moment before they were sent and the moment they were seen.
func browserCheckTimes(t *testing.T, who string, msgs []browserShown, from, to int64) {
	t.Helper()
	const slack = 1000 // ms; the same clock, but stamped elsewhere
	for _, m := range msgs {
		if ts := browserTS(m); ts < from-slack || ts > to+slack {
			t.Errorf("%s: %v has ts %d, want within [%d, %d] (around now)", who, m, ts, from, to)
		}
	}
}

// browserTS is a message's data-ts, already validated by browserCheckShown.
func browserTS(m browserShown) int64 {
	ts, _ := strconv.ParseInt(m.TS, 10, 64)
	return ts
}

// browserSameView checks that two tabs show the same messages with the same
// seqs, names, texts and server times.
func browserSameView(t *testing.T, an string, a []browserShown, bn string, b []browserShown) {
	t.Helper()
	key := func(m browserShown) string { return fmt.Sprintf("%s|%s|%s|%s|%s", m.Seq, m.Name, m.Text, m.TS, m.Time) }
	ka, kb := make([]string, len(a)), make([]string, len(b))
	for i := range a {
		ka[i] = key(a[i])
	}
	for i := range b {
		kb[i] = key(b[i])
	}
	if !slices.Equal(ka, kb) {
		t.Errorf("tabs disagree:\n%s: %v\n%s: %v", an, a, bn, b)
	}
}

type browserQR struct {
	Src      string `json:"src"`
	Complete bool   `json:"complete"`
	Width    int    `json:"width"`
	Broken   bool   `json:"broken"`
}

// browserEval evaluates expr once.
func browserEval[T any](b *browserTab, what, expr string) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, browserStep)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		b.fatalf("%s: %v", what, err)
	}
	return v
}

// browserWaitEval evaluates expr until check accepts its value. Polling from
// Go rather than in the page keeps the last mismatch for the failure message.
func browserWaitEval[T any](b *browserTab, what, expr string, check func(T) error) T {
	b.t.Helper()
	deadline := time.Now().Add(browserStep)
	for {
		ctx, cancel := context.WithTimeout(b.ctx, browserStep)
		v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
		cancel()
		if err == nil {
			if err = check(v); err == nil {
				return v
			}
		}
		if time.Now().After(deadline) || b.ctx.Err() != nil {
			b.fatalf("no %s within %v: %v", what, browserStep, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// browserConsole gathers what the tabs write to their consoles.
type browserConsole struct {
	mu   sync.Mutex
	msgs []browserConsoleMsg
}

type browserConsoleMsg struct {
	text string
	bad  bool // an uncaught exception or an error: the page is broken
}

func (c *browserConsole) collect(tab string, msgs iter.Seq2[chromedp.ConsoleMessage, error]) {
	for m, err := range msgs {
		if err != nil {
			return // the tab or the test ended
		}
		bad := m.IsException() || m.Type == chromedp.ConsoleError
		where := ""
		if m.URL != "" {
			where = fmt.Sprintf(" (%s:%d)", m.URL, m.Line+1)
		}
		c.mu.Lock()
		c.msgs = append(c.msgs, browserConsoleMsg{text: tab + ": " + m.String() + where, bad: bad})
		c.mu.Unlock()
	}
}

func (c *browserConsole) all() []browserConsoleMsg {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.msgs)
}
