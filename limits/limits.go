// Package limits names every bound that user input is held to, in one place
// that the router, the object nodes and the docs (docs/protocol.md) share.
package limits

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"unicode"
	"unicode/utf8"
)

const (
	// MaxMessageBytes bounds a chat message's UTF-8 text after trimming.
	MaxMessageBytes = 4096
	// MaxFrameBytes bounds one WebSocket frame from a browser; larger frames
	// close the connection with 1009 since they cannot be read safely.
	MaxFrameBytes = 16 << 10
	// MaxNameRunes bounds a user name (the web UI asks for 3-20).
	MaxNameRunes = 32
	// MaxRoomBytes bounds a room name.
	MaxRoomBytes = 64
	// MaxClientIDBytes bounds a client message id; ids hold no control
	// characters (the dedupe index separates name, id and key with NULs).
	MaxClientIDBytes = 64
	// A v2 browser's key (?key=) is its secret, 16-64 letters, digits, '-'
	// or '_': the room dedupes its ids per (name, key), so ids others see
	// cannot be used against it. Browsers without a key dedupe per name.
	MinClientKeyBytes = 16
	MaxClientKeyBytes = 64
	// HistoryLimit is how many of the newest messages a new session gets, and
	// the largest page a history request returns.
	HistoryLimit = 100
	// MaxPageBytes bounds the message bytes of one page of history (also
	// cut at HistoryLimit messages); a page always holds at least one message
	// when there is one, so pages stay far below gRPC's message limit
	// whatever the messages' sizes.
	MaxPageBytes = 256 << 10
	// ResumeLimit is the most messages a resuming v2 client (after=) is sent;
	// a client that missed more gets the newest HistoryLimit and pages back.
	ResumeLimit = 1000
	// RouterIDMark begins the message ids routers make for seed-protocol
	// messages; a browser's own ids may not begin with it, so no browser
	// can pass for another's seed messages (or pre-empt their ids).
	RouterIDMark = "~"
	// MaxObjectMethodBytes bounds the name of a durable object's method in
	// a router's call to a node: 1 to this many letters, digits, '_', '-'
	// or '.'.
	MaxObjectMethodBytes = 64
	// MaxObjectArgBytes bounds a durable object call's argument, and
	// MaxObjectResultBytes the result a node answers with (a larger one is
	// refused as the object's error; its writes were committed).
	MaxObjectArgBytes    = 64 << 10
	MaxObjectResultBytes = 1 << 20
	// A request fetched from an object (Objects.Fetch): its method is an
	// HTTP token of at most MaxFetchMethodBytes, its URL absolute (http or
	// https) and at most MaxFetchURLBytes, at most MaxFetchHeaders header
	// lines of MaxFetchHeaderBytes in all, and a body of at most
	// MaxFetchBodyBytes. The response's body is held to
	// MaxObjectResultBytes.
	MaxFetchMethodBytes = 16
	MaxFetchURLBytes    = 4 << 10
	MaxFetchHeaders     = 64
	MaxFetchHeaderBytes = 16 << 10
	MaxFetchBodyBytes   = 1 << 20
	// MaxIdempotencyKeyBytes bounds an HTTP request's Idempotency-Key:
	// printable ASCII, no spaces, not beginning with RouterIDMark (a
	// router makes its own keys, with that mark, for requests without
	// one).
	MaxIdempotencyKeyBytes = 64
	// DurableObjectPrefix begins the name a durable object's storage lives
	// under (durable.ID.StorageObject): the prefix, its class name (1 to
	// MaxClassNameBytes letters, digits, '-' or '_'), '/', and its ID's 64
	// lowercase hex digits. Room names are printable, so none begins so.
	DurableObjectPrefix = "\x01do/"
	// MaxObjectNameBytes bounds the name an object's ID was made from
	// (durable.Namespace.IDFromName) as it travels beside the ID to the
	// object's node, which checks it against the ID. A longer name still
	// makes an ID; its object is not told the name (durable.ID.Name).
	MaxObjectNameBytes = 1024
	MaxClassNameBytes  = 64
	durableIDHexDigits = 64
	// DefaultRoom and DefaultName are the seed app's defaults.
	DefaultRoom = "default"
	DefaultName = "Anonymous"
)

// Error codes sent to clients.
const (
	CodeBadJSON     = "bad_json"
	CodeBinary      = "binary"
	CodeEmpty       = "empty"
	CodeTooLarge    = "too_large"
	CodeBadName     = "bad_name"
	CodeBadRoom     = "bad_room"
	CodeBadID       = "bad_id"
	CodeRateLimited = "rate_limited"
	CodeOverloaded  = "overloaded"
	CodeUnknownType = "unknown_type"
	CodeUnavailable = "unavailable"
)

// Codes is every error code, the bounded set a refusal metric's reason
// label takes.
var Codes = []string{CodeBadJSON, CodeBinary, CodeEmpty, CodeTooLarge, CodeBadName, CodeBadRoom,
	CodeBadID, CodeRateLimited, CodeOverloaded, CodeUnknownType, CodeUnavailable}

// Error is a rejection a client can act on.
type Error struct {
	Code    string
	Message string
}

func (e *Error) Error() string { return e.Message }

var _ error = (*Error)(nil)

func errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// Room trims a room name, applies the default, and checks it.
func Room(raw string) (string, error) {
	room := strings.TrimSpace(raw)
	if room == "" {
		return DefaultRoom, nil
	}
	if len(room) > MaxRoomBytes {
		return "", errorf(CodeBadRoom, "room name too long (max %d bytes)", MaxRoomBytes)
	}
	if err := printable(room); err != nil {
		return "", errorf(CodeBadRoom, "room name %v", err)
	}
	return room, nil
}

// Name trims a user name, applies the default, and checks it.
func Name(raw string) (string, error) {
	name := strings.TrimSpace(raw)
	if name == "" {
		return DefaultName, nil
	}
	if utf8.RuneCountInString(name) > MaxNameRunes {
		return "", errorf(CodeBadName, "name too long (max %d characters)", MaxNameRunes)
	}
	if err := printable(name); err != nil {
		return "", errorf(CodeBadName, "name %v", err)
	}
	for _, r := range name {
		if err := nameRune(r); err != nil {
			return "", errorf(CodeBadName, "name %v", err)
		}
	}
	for _, reserved := range ReservedNames {
		if strings.EqualFold(name, reserved) {
			return "", errorf(CodeBadName, "name %q is reserved", name)
		}
	}
	return name, nil
}

// ReservedNames may not be taken by anyone (case does not matter): the app
// speaks under them.
var ReservedNames = []string{"system"}

// nameRune refuses what would let one name pass for another: characters
// that do not show (zero-width, soft hyphen, fillers), that turn the text
// around (bidi overrides and isolates), and spaces other than the plain
// one.
func nameRune(r rune) error {
	switch {
	case unicode.Is(unicode.Cf, r):
		return fmt.Errorf("contains the invisible or direction-changing character %U", r)
	case unicode.IsSpace(r) && r != ' ':
		return fmt.Errorf("contains the space character %U (only plain spaces)", r)
	case r == 0x115F || r == 0x1160 || r == 0x3164 || r == 0xFFA0 || r == 0x2800:
		return fmt.Errorf("contains the blank character %U", r)
	}
	return nil
}

// Message trims a message and checks it. Messages may hold newlines and tabs
// but no other control characters.
func Message(raw string) (string, error) {
	text := strings.TrimSpace(raw)
	if text == "" {
		return "", errorf(CodeEmpty, "empty message")
	}
	if len(text) > MaxMessageBytes {
		return "", errorf(CodeTooLarge, "message too large (max %d bytes)", MaxMessageBytes)
	}
	if !utf8.ValidString(text) {
		return "", errorf(CodeBadJSON, "message is not valid UTF-8")
	}
	for _, r := range text {
		if unicode.IsControl(r) && r != '\n' && r != '\t' && r != '\r' {
			return "", errorf(CodeBadJSON, "message contains control character %U", r)
		}
	}
	return text, nil
}

// ClientKey checks a v2 browser's secret key (see MinClientKeyBytes).
func ClientKey(key string) error {
	if key == "" {
		return nil
	}
	if len(key) < MinClientKeyBytes || len(key) > MaxClientKeyBytes {
		return errorf(CodeBadID, "key must be %d-%d characters", MinClientKeyBytes, MaxClientKeyBytes)
	}
	for _, r := range key {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return errorf(CodeBadID, "key may hold only letters, digits, '-' and '_'")
		}
	}
	return nil
}

// ClientID checks a client message id.
func ClientID(id string) error {
	if id == "" {
		return errorf(CodeBadID, "message id is empty")
	}
	if len(id) > MaxClientIDBytes {
		return errorf(CodeBadID, "message id too long (max %d bytes)", MaxClientIDBytes)
	}
	if err := printable(id); err != nil {
		return errorf(CodeBadID, "message id %v", err)
	}
	return nil
}

// ObjectMethod checks the name of a durable object's method.
func ObjectMethod(m string) error {
	if m == "" || len(m) > MaxObjectMethodBytes {
		return fmt.Errorf("method name must be 1-%d bytes", MaxObjectMethodBytes)
	}
	for _, c := range []byte(m) {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-' || c == '.') {
			return fmt.Errorf("method name %q: only letters, digits, '_', '-' and '.'", m)
		}
	}
	return nil
}

// ObjectArg checks the size of a durable object call's argument.
func ObjectArg(arg []byte) error {
	if len(arg) > MaxObjectArgBytes {
		return fmt.Errorf("argument too large (%d bytes, max %d)", len(arg), MaxObjectArgBytes)
	}
	return nil
}

// IdempotencyKey checks a client's Idempotency-Key header.
func IdempotencyKey(k string) error {
	if k == "" || len(k) > MaxIdempotencyKeyBytes {
		return errorf(CodeBadID, "Idempotency-Key must be 1-%d bytes", MaxIdempotencyKeyBytes)
	}
	if strings.HasPrefix(k, RouterIDMark) {
		return errorf(CodeBadID, "Idempotency-Key may not begin with %q", RouterIDMark)
	}
	for _, c := range []byte(k) {
		if c <= ' ' || c > '~' {
			return errorf(CodeBadID, "Idempotency-Key may hold only printable ASCII without spaces")
		}
	}
	return nil
}

// StoredObject checks the name of an object the shards store: a room name
// as Room returns it, or a durable object's storage name (see
// DurableObjectPrefix). Every replica refuses to apply a command for
// anything else, so a proposer checks it first.
func StoredObject(name string) error {
	rest, ok := strings.CutPrefix(name, DurableObjectPrefix)
	if !ok {
		if room, err := Room(name); err != nil || room != name {
			return fmt.Errorf("object %q is neither a room name nor a durable object's", name)
		}
		return nil
	}
	class, id, ok := strings.Cut(rest, "/")
	if !ok || class == "" || len(class) > MaxClassNameBytes || len(id) != durableIDHexDigits {
		return fmt.Errorf("durable object %q: want class/id", name)
	}
	for _, c := range []byte(class) {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return fmt.Errorf("durable object %q: bad class name", name)
		}
	}
	for _, c := range []byte(id) {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return fmt.Errorf("durable object %q: id is not lowercase hex", name)
		}
	}
	return nil
}

var errControl = errors.New("contains a control character")

func printable(s string) error {
	if !utf8.ValidString(s) {
		return errors.New("is not valid UTF-8")
	}
	for _, r := range s {
		if unicode.IsControl(r) || r == utf8.RuneError {
			return errControl
		}
	}
	return nil
}

// FetchRequest checks a request fetched from an object against the
// MaxFetch limits: method, URL, headers (name: value pairs) and body size.
func FetchRequest(method, rawURL string, headers [][2]string, bodyLen int) error {
	if method == "" || len(method) > MaxFetchMethodBytes {
		return fmt.Errorf("HTTP method must be 1-%d bytes", MaxFetchMethodBytes)
	}
	for _, c := range []byte(method) {
		if !httpToken(c) {
			return fmt.Errorf("HTTP method %q is not a token", method)
		}
	}
	if len(rawURL) > MaxFetchURLBytes {
		return fmt.Errorf("URL too long (%d bytes, max %d)", len(rawURL), MaxFetchURLBytes)
	}
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("URL %.64q is not an absolute http(s) URL", rawURL)
	}
	if len(headers) > MaxFetchHeaders {
		return fmt.Errorf("%d header lines, max %d", len(headers), MaxFetchHeaders)
	}
	size := 0
	for _, h := range headers {
		size += len(h[0]) + len(h[1])
		if h[0] == "" {
			return errors.New("empty header name")
		}
		for _, c := range []byte(h[0]) {
			if !httpToken(c) {
				return fmt.Errorf("header name %.64q is not a token", h[0])
			}
		}
		for _, c := range []byte(h[1]) {
			if c < ' ' && c != '\t' || c == 0x7f {
				return fmt.Errorf("header %s holds a control byte", h[0])
			}
		}
	}
	if size > MaxFetchHeaderBytes {
		return fmt.Errorf("headers of %d bytes, max %d", size, MaxFetchHeaderBytes)
	}
	if bodyLen > MaxFetchBodyBytes {
		return fmt.Errorf("body too large (%d bytes, max %d)", bodyLen, MaxFetchBodyBytes)
	}
	return nil
}

// httpToken reports whether c may appear in an HTTP token (RFC 9110).
func httpToken(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}
