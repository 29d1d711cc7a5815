// Package web serves the hellochat browser UI.
//
// The page, script and style sheet are embedded in the binary rather than
// read from disk or pulled from a CDN: the router binary is self-contained, so
// a node can be copied anywhere and run, and the UI served always matches the
// protocol version of the router serving it.
package web

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"net/http"
	"time"
)

//go:embed index.html app.js style.css
var files embed.FS

// contentSecurityPolicy allows only same-origin resources. Message text is
// always rendered as text, but this is a second line of defence should that
// ever regress; it also documents that the UI never talks to a third party.
const contentSecurityPolicy = "default-src 'self'; img-src 'self' data:; connect-src 'self' ws: wss:; " +
	"script-src 'self'; style-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"

type asset struct {
	body        []byte
	contentType string
	etag        string
}

// Handler returns an http.Handler serving the UI: "/" (and "/index.html")
// is the page, plus "/app.js" and "/style.css". Anything else is 404.
// Responses carry Cache-Control: no-cache with an ETag, so browsers
// revalidate (cheaply, via 304) and never run a stale script against a
// newer router.
func Handler() http.Handler {
	index := load("index.html", "text/html; charset=utf-8")
	assets := map[string]asset{
		"/":           index,
		"/index.html": index,
		"/app.js":     load("app.js", "text/javascript; charset=utf-8"),
		"/style.css":  load("style.css", "text/css; charset=utf-8"),
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a, ok := assets[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		h := w.Header()
		h.Set("Content-Type", a.contentType)
		h.Set("Cache-Control", "no-cache")
		h.Set("ETag", a.etag)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Content-Security-Policy", contentSecurityPolicy)
		// ServeContent handles HEAD, Range and If-None-Match for us.
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(a.body))
	})
}

func load(name, contentType string) asset {
	b, err := files.ReadFile(name)
	if err != nil {
		// Unreachable: go:embed guarantees the file exists at build time.
		panic("web: missing embedded file " + name + ": " + err.Error())
	}
	sum := sha256.Sum256(b)
	return asset{
		body:        b,
		contentType: contentType,
		etag:        `"` + hex.EncodeToString(sum[:8]) + `"`,
	}
}
