package jsonstream

import "unicode/utf8"

// appendEscaped appends the contents of a JSON string holding src, with
// no quotes, escaped exactly as encoding/json escapes a string (its
// appendString with escapeHTML, which json.Marshal and a default
// json.Encoder use): ", \ and control characters; <, > and & as \u003c,
// \u003e, \u0026 (a JSON body is safe to embed in HTML); U+2028 and
// U+2029 (JSONP); each byte of invalid UTF-8 as \ufffd.
func appendEscaped[T []byte | string](dst []byte, src T) []byte {
	const hex = "0123456789abcdef"
	start := 0
	for i := 0; i < len(src); {
		if b := src[i]; b < utf8.RuneSelf {
			if safe(b) {
				i++
				continue
			}
			dst = append(dst, src[start:i]...)
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
				dst = append(dst, '\\', 'u', '0', '0', hex[b>>4], hex[b&0xF])
			}
			i++
			start = i
			continue
		}
		// A short copy, so that a string's conversion stays on the stack.
		c, size := utf8.DecodeRune([]byte(src[i:min(len(src), i+utf8.UTFMax)]))
		switch {
		case c == utf8.RuneError && size == 1:
			dst = append(dst, src[start:i]...)
			dst = append(dst, `\ufffd`...)
		case c == '\u2028' || c == '\u2029':
			dst = append(dst, src[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hex[c&0xF])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	return append(dst, src[start:]...)
}

// safe reports whether the ASCII byte b stands for itself in a JSON
// string encoding/json writes: printable, and none of " \ < > &.
func safe(b byte) bool {
	switch b {
	case '"', '\\', '<', '>', '&':
		return false
	}
	return b >= 0x20
}
