package bench

import (
	"bytes"
	"encoding/json"
	"strconv"
	"unicode/utf8"
)

// The load generator reads every frame every client is shown: 90,000 a
// second in the hot room at 10,000 msgs/s, and encoding/json's decoding
// of them was half its CPU, taken from the two cores the cluster under
// test runs on. So a frame of the plain shape servers write (one flat
// object of strings without escapes and unsigned integers) is read by
// hand; anything else goes to encoding/json, which decides as before
// (TestDecodeFrameMatchesEncodingJSON).

// decodeFrame reads data into f as json.Unmarshal would, reporting
// whether it is valid.
func decodeFrame(data []byte, f *frame) bool {
	var out frame
	if scanFrame(data, &out) {
		*f = out
		return true
	}
	*f = frame{}
	return json.Unmarshal(data, f) == nil
}

// scanFrame reads a flat object of plain strings and unsigned integers;
// false means "not that shape" (the caller asks encoding/json), never
// "invalid".
func scanFrame(d []byte, f *frame) bool {
	i := skipWS(d, 0)
	if i >= len(d) || d[i] != '{' {
		return false
	}
	i = skipWS(d, i+1)
	if i < len(d) && d[i] == '}' {
		return skipWS(d, i+1) == len(d)
	}
	seen := 0
	for {
		key, j, ok := plain(d, i)
		if !ok {
			return false
		}
		i = skipWS(d, j)
		if i >= len(d) || d[i] != ':' {
			return false
		}
		i = skipWS(d, i+1)
		if i >= len(d) {
			return false
		}
		var str []byte
		var num uint64
		isNum := d[i] != '"'
		if isNum {
			j = i
			for j < len(d) && d[j] >= '0' && d[j] <= '9' {
				j++
			}
			if j == i || j-i > 1 && d[i] == '0' || j < len(d) && (d[j] == '.' || d[j] == 'e' || d[j] == 'E') {
				return false
			}
			var err error
			if num, err = strconv.ParseUint(string(d[i:j]), 10, 64); err != nil {
				return false
			}
		} else if str, j, ok = plain(d, i); !ok {
			return false
		}
		// A repeated member, or one whose name differs from a field's
		// only in case, is encoding/json's to resolve.
		bit, known := frameFields[string(key)]
		if !known {
			if bytes.IndexFunc(key, func(r rune) bool { return r >= 'A' && r <= 'Z' }) >= 0 || matchesFold(key) {
				return false
			}
		} else {
			if seen&bit != 0 || !set(f, bit, str, num, isNum) {
				return false
			}
			seen |= bit
		}
		i = skipWS(d, j)
		if i >= len(d) {
			return false
		}
		switch d[i] {
		case ',':
			i = skipWS(d, i+1)
		case '}':
			return skipWS(d, i+1) == len(d)
		default:
			return false
		}
	}
}

// The frame's fields, as bits of the set scanFrame has seen.
const (
	fieldType = 1 << iota
	fieldSeq
	fieldID
	fieldText
	fieldMessage
	fieldName
	fieldTS
)

var frameFields = map[string]int{"type": fieldType, "seq": fieldSeq, "id": fieldID, "text": fieldText,
	"message": fieldMessage, "name": fieldName, "ts": fieldTS}

// matchesFold reports whether key is a field's name in other case.
func matchesFold(key []byte) bool {
	for name := range frameFields {
		if bytes.EqualFold(key, []byte(name)) {
			return true
		}
	}
	return false
}

// set stores one member; false when its kind is not the field's.
func set(f *frame, field int, str []byte, num uint64, isNum bool) bool {
	switch field {
	case fieldSeq:
		f.Seq = num
		return isNum
	case fieldTS:
		f.TS = int64(num)
		return isNum && num <= 1<<63-1
	}
	if isNum {
		return false
	}
	switch s := string(str); field {
	case fieldType:
		f.Type = s
	case fieldID:
		f.ID = s
	case fieldText:
		f.Text = s
	case fieldMessage:
		f.Message = s
	case fieldName:
		f.Name = s
	}
	return true
}

// plain reads a string at d[i] with no escapes, control characters or
// invalid UTF-8, returning its bytes and the index after it.
func plain(d []byte, i int) ([]byte, int, bool) {
	if i >= len(d) || d[i] != '"' {
		return nil, i, false
	}
	for j := i + 1; j < len(d); j++ {
		switch c := d[j]; {
		case c == '"':
			s := d[i+1 : j]
			return s, j + 1, utf8.Valid(s)
		case c == '\\' || c < 0x20:
			return nil, i, false
		}
	}
	return nil, i, false
}

func skipWS(d []byte, i int) int {
	for i < len(d) && (d[i] == ' ' || d[i] == '\t' || d[i] == '\n' || d[i] == '\r') {
		i++
	}
	return i
}
