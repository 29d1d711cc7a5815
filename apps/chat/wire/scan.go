package wire

import (
	"encoding/json"
	"math"
	"unicode/utf8"
)

// What a room decodes per message (the browser's frame, and a stored
// message when it leaves the dedupe window) is read by hand when it has
// the plain shape our own encoders and browsers write: encoding/json's
// reflection was a tenth of the room's CPU per message. Anything else
// (escapes, other members, null, nesting, invalid UTF-8) goes to
// encoding/json, so every input decodes exactly as it would there
// (TestScanMatchesEncodingJSON).

// flatValue is one member's value as scanFlat read it: a string with
// nothing escaped, or an integer of at most 64 bits that is not negative.
type flatValue struct {
	str   []byte
	num   uint64
	isNum bool
}

// scanFlat reads data as one JSON object whose members are each a plain
// string (no escapes or control characters, valid UTF-8) or a
// non-negative integer, passing each to member in order. It returns
// false on anything else, or when member does, perhaps after passing
// some members: the caller then starts again with encoding/json.
func scanFlat(data []byte, member func(key []byte, v flatValue) bool) bool {
	i := skipSpace(data, 0)
	if i >= len(data) || data[i] != '{' {
		return false
	}
	if i = skipSpace(data, i+1); i < len(data) && data[i] == '}' {
		return skipSpace(data, i+1) == len(data)
	}
	for {
		key, j, ok := plainString(data, i)
		if !ok {
			return false
		}
		if i = skipSpace(data, j); i >= len(data) || data[i] != ':' {
			return false
		}
		i = skipSpace(data, i+1)
		var v flatValue
		if i < len(data) && data[i] == '"' {
			v.str, j, ok = plainString(data, i)
		} else {
			v.num, j, ok = plainUint(data, i)
			v.isNum = true
		}
		if !ok || !member(key, v) {
			return false
		}
		if i = skipSpace(data, j); i >= len(data) {
			return false
		}
		switch data[i] {
		case ',':
			i = skipSpace(data, i+1)
		case '}':
			return skipSpace(data, i+1) == len(data)
		default:
			return false
		}
	}
}

func skipSpace(data []byte, i int) int {
	for i < len(data) && (data[i] == ' ' || data[i] == '\t' || data[i] == '\n' || data[i] == '\r') {
		i++
	}
	return i
}

// plainString reads the JSON string at data[i], if it has no escapes,
// no control characters and only valid UTF-8: what encoding/json would
// decode to the same bytes.
func plainString(data []byte, i int) (s []byte, next int, ok bool) {
	if i >= len(data) || data[i] != '"' {
		return nil, 0, false
	}
	ascii := true
	for j := i + 1; j < len(data); j++ {
		switch b := data[j]; {
		case b == '"':
			s = data[i+1 : j]
			return s, j + 1, ascii || utf8.Valid(s)
		case b == '\\' || b < 0x20:
			return nil, 0, false
		case b >= utf8.RuneSelf:
			ascii = false
		}
	}
	return nil, 0, false
}

// plainUint reads the digits at data[i] as JSON writes an unsigned
// integer (no sign, no leading zero), if it fits 64 bits. A fraction or
// exponent after them is left for the caller to refuse.
func plainUint(data []byte, i int) (n uint64, next int, ok bool) {
	j := i
	for ; j < len(data) && data[j] >= '0' && data[j] <= '9'; j++ {
		d := uint64(data[j] - '0')
		if n > (math.MaxUint64-d)/10 {
			return 0, 0, false
		}
		n = n*10 + d
	}
	if j == i || data[i] == '0' && j > i+1 {
		return 0, 0, false
	}
	return n, j, true
}

// decodeFlat decodes data into a T: by hand through member when scanFlat
// takes it, else by encoding/json from a fresh T.
func decodeFlat[T any](data []byte, member func(in *T, key []byte, v flatValue) bool) (T, error) {
	var in T
	if scanFlat(data, func(key []byte, v flatValue) bool { return member(&in, key, v) }) {
		return in, nil
	}
	var fresh T
	err := json.Unmarshal(data, &fresh)
	return fresh, err
}

// decodeSeed decodes a seed browser's frame.
func decodeSeed(data []byte) (seedIn, error) {
	return decodeFlat(data, func(in *seedIn, key []byte, v flatValue) bool {
		if string(key) != "message" || v.isNum {
			return false
		}
		s := string(v.str)
		in.Message = &s
		return true
	})
}

// decodeV2 decodes a v2 browser's frame.
func decodeV2(data []byte) (v2In, error) {
	return decodeFlat(data, func(in *v2In, key []byte, v flatValue) bool {
		switch string(key) {
		case "type":
			in.Type = string(v.str)
		case "id":
			in.ID = string(v.str)
		case "text":
			in.Text = string(v.str)
		case "before":
			in.Before = v.num
			return v.isNum
		case "limit":
			in.Limit = uint32(v.num)
			return v.isNum && v.num <= math.MaxUint32
		default:
			return false
		}
		return !v.isNum
	})
}

// AppendRecord appends m as a room stores it: Message's JSON with the
// sender's client key as member "k" (omitted when empty), which no
// browser is shown. HTML characters are not escaped.
func AppendRecord(b []byte, m Message, key string) []byte {
	if b == nil {
		b = make([]byte, 0, frameCap(m)+len(`,"k":""`)+len(key))
	}
	b = append(b, '{')
	b = appendMessageFields(b, m)
	if key == "" {
		return b
	}
	b = append(b[:len(b)-1], `,"k":`...)
	b = appendString(b, key)
	return append(b, '}')
}

// record is a stored message as encoding/json reads it.
type record struct {
	Message
	Key string `json:"k,omitempty"`
}

// DecodeRecord reads a message stored by AppendRecord (or by
// encoding/json, as rooms stored them before) and its sender's key.
func DecodeRecord(data []byte) (Message, string, error) {
	r, err := decodeFlat(data, func(r *record, k []byte, v flatValue) bool {
		switch string(k) {
		case "seq":
			r.Seq = v.num
			return v.isNum
		case "ts":
			r.TS = int64(v.num)
			return v.isNum && v.num <= math.MaxInt64
		case "id":
			r.ID = string(v.str)
		case "name":
			r.Name = string(v.str)
		case "text":
			r.Text = string(v.str)
		case "k":
			r.Key = string(v.str)
		default:
			return false
		}
		return !v.isNum
	})
	if err != nil {
		return Message{}, "", err
	}
	return r.Message, r.Key, nil
}
