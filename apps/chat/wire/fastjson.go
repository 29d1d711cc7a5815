package wire

import (
	"strconv"
	"unicode/utf8"
)

// The frames every message makes (a message in each protocol, an ack)
// are written by hand: encoding/json's reflection was a third of the
// room's own CPU per message. They are byte for byte what encode makes of
// the same values (TestFastFramesMatchEncodingJSON), so the protocol does
// not change.

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string, escaped as encoding/json does
// with HTML escaping off: quotes, backslashes and control characters
// escaped, invalid UTF-8 as U+FFFD, U+2028 and U+2029 escaped.
func appendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		if b := s[i]; b < utf8.RuneSelf {
			if b >= 0x20 && b != '"' && b != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch b {
			case '\\', '"':
				dst = append(dst, '\\', b)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[b>>4], hexDigits[b&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// appendMessageFields appends m's fields as Message's JSON has them,
// after the opening brace and what precedes them.
func appendMessageFields(b []byte, m Message) []byte {
	b = append(b, `"seq":`...)
	b = strconv.AppendUint(b, m.Seq, 10)
	if m.ID != "" {
		b = append(b, `,"id":`...)
		b = appendString(b, m.ID)
	}
	b = append(b, `,"name":`...)
	b = appendString(b, m.Name)
	b = append(b, `,"text":`...)
	b = appendString(b, m.Text)
	b = append(b, `,"ts":`...)
	b = strconv.AppendInt(b, m.TS, 10)
	return append(b, '}')
}

func frameBuf(m Message) []byte { return make([]byte, 0, frameCap(m)) }

func frameCap(m Message) int { return frameFixedBytes + len(m.ID) + len(m.Name) + len(m.Text) }

// frameFixedBytes is what a message frame or record holds besides its
// strings: the field names and quotes (59 bytes in a v2 frame), two
// numbers of up to 20 digits, and room for a few escapes. Short of it,
// the last field appended (ts) reallocated the frame, once per message.
const frameFixedBytes = 128
