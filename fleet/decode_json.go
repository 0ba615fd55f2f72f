package fleet

import (
	"encoding/json"
	"fmt"
	"strconv"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
)

// This file holds the decoder of event bodies: a hand-written reader of
// one JSON text into the envelope and the payload types, without
// reflection. It exists because encoding/json spent more than half of what
// the consumer pays per message (docs/performance.md, "The fold").
//
// It accepts and refuses exactly what json.Unmarshal (and the
// json.Decoder DecodeEvent used before) accept and refuse for these types,
// and stores the same values: the same grammar and nesting limit (10,000),
// keys matched exactly first and then case-insensitively with Unicode
// simple folding, unknown keys skipped, a repeated key decoded again over
// the first value (last wins; a map merges, a slice is overwritten in
// place), null leaving a string, number or time as it was and clearing a
// pointer, slice or map, invalid UTF-8 and lone surrogates replaced by
// U+FFFD, and the values of the types with their own UnmarshalJSON (time,
// Micros, Priority, json.RawMessage) handed to it as raw bytes. Only the
// wording of its errors differs. The fuzz test
// FuzzDecodeEventMatchesEncodingJSON holds it to that against the
// encoding/json decoder kept in the tests (decode_ref_test.go).

// maxNestingDepth is encoding/json's limit on nested objects and arrays.
const maxNestingDepth = 10000

// jsonFields is a struct the reader can decode into: field returns a
// pointer to the field of the given JSON name, or nil when there is none.
// Names are lower-case ASCII (TestDecoderCoversEveryField checks it
// against the struct tags), which is what lets lookup fold keys cheaply.
type jsonFields interface {
	field(name []byte) any
}

// jsonReader reads one JSON text from b.
type jsonReader struct {
	b     []byte
	i     int
	depth int
	// scratch holds the unquoted contents of strings that had escapes or
	// bytes outside ASCII; they are valid until the next string is read.
	scratch []byte
}

// jsonSyntaxError is a malformed JSON text.
type jsonSyntaxError struct {
	msg string
	off int
}

func (e *jsonSyntaxError) Error() string {
	return fmt.Sprintf("invalid JSON at offset %d: %s", e.off, e.msg)
}

// jsonTypeError is a well-formed value that does not fit its field.
type jsonTypeError struct {
	value string // the kind of JSON value: string, number, object, ...
	into  string // the Go type it was meant for
	off   int
	field string // the member it was the value of, when known
}

func (e *jsonTypeError) Error() string {
	if e.field != "" {
		return fmt.Sprintf("cannot decode a JSON %s into %s (%s) at offset %d", e.value, e.field, e.into, e.off)
	}
	return fmt.Sprintf("cannot decode a JSON %s into %s at offset %d", e.value, e.into, e.off)
}

func (r *jsonReader) syntaxError(msg string) error {
	if r.i >= len(r.b) {
		return &jsonSyntaxError{msg: "unexpected end of JSON input", off: r.i}
	}
	return &jsonSyntaxError{msg: fmt.Sprintf("invalid character %q %s", r.b[r.i], msg), off: r.i}
}

// typeError reports the value at r.i as unfit for into; it is only called
// where a value starts.
func (r *jsonReader) typeError(into string) error {
	if r.i >= len(r.b) {
		return r.syntaxError("looking for beginning of value")
	}
	kind := "value"
	switch c := r.b[r.i]; {
	case c == '"':
		kind = "string"
	case c == '{':
		kind = "object"
	case c == '[':
		kind = "array"
	case c == 't' || c == 'f':
		kind = "bool"
	case c == 'n':
		kind = "null"
	case c == '-' || c >= '0' && c <= '9':
		kind = "number"
	default:
		return r.syntaxError("looking for beginning of value")
	}
	return &jsonTypeError{value: kind, into: into, off: r.i}
}

// ws skips JSON white space (space, tab, CR, LF, and nothing else).
func (r *jsonReader) ws() {
	b, i := r.b, r.i
	for i < len(b) && (b[i] == ' ' || b[i] == '\n' || b[i] == '\t' || b[i] == '\r') {
		i++
	}
	r.i = i
}

// peek returns the byte at r.i, or 0 at the end of the input (0 is never
// valid where a value or a delimiter is expected).
func (r *jsonReader) peek() byte {
	if r.i < len(r.b) {
		return r.b[r.i]
	}
	return 0
}

func (r *jsonReader) push() error {
	r.depth++
	if r.depth > maxNestingDepth {
		return &jsonSyntaxError{msg: "exceeded max depth", off: r.i}
	}
	return nil
}

// literal consumes word (true, false or null) at r.i.
func (r *jsonReader) literal(word string) error {
	for k := 0; k < len(word); k++ {
		if r.i >= len(r.b) || r.b[r.i] != word[k] {
			return r.syntaxError("in literal " + word)
		}
		r.i++
	}
	return nil
}

// number consumes a JSON number at r.i and returns its text.
func (r *jsonReader) number() ([]byte, error) {
	start := r.i
	if r.peek() == '-' {
		r.i++
	}
	switch c := r.peek(); {
	case c == '0':
		r.i++
	case c >= '1' && c <= '9':
		r.i++
		for c := r.peek(); c >= '0' && c <= '9'; c = r.peek() {
			r.i++
		}
	default:
		return nil, r.syntaxError("in numeric literal")
	}
	if r.peek() == '.' {
		r.i++
		if c := r.peek(); c < '0' || c > '9' {
			return nil, r.syntaxError("after decimal point in numeric literal")
		}
		for c := r.peek(); c >= '0' && c <= '9'; c = r.peek() {
			r.i++
		}
	}
	if c := r.peek(); c == 'e' || c == 'E' {
		r.i++
		if c := r.peek(); c == '+' || c == '-' {
			r.i++
		}
		if c := r.peek(); c < '0' || c > '9' {
			return nil, r.syntaxError("in exponent of numeric literal")
		}
		for c := r.peek(); c >= '0' && c <= '9'; c = r.peek() {
			r.i++
		}
	}
	return r.b[start:r.i], nil
}

// stringEnd checks the string starting at r.i (on its opening quote) and
// moves past it. plain reports that it has no escape and no byte outside
// printable ASCII, so that its contents are its bytes.
func (r *jsonReader) stringEnd() (plain bool, err error) {
	r.i++ // the opening quote
	plain = true
	for r.i < len(r.b) {
		// Most bytes are plain: pass them in a loop on locals.
		b, i := r.b, r.i
		for i < len(b) && plainByte[b[i]] {
			i++
		}
		r.i = i
		if i == len(b) {
			break
		}
		c := b[i]
		switch {
		case c == '"':
			r.i++
			return plain, nil
		case c < 0x20:
			return false, r.syntaxError("in string literal")
		case c == '\\':
			plain = false
			r.i++
			switch r.peek() {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				r.i++
			case 'u':
				r.i++
				for range 4 {
					if !isHex(r.peek()) {
						return false, r.syntaxError("in \\u hexadecimal character escape")
					}
					r.i++
				}
			default:
				return false, r.syntaxError("in string escape code")
			}
		default: // a byte of a multi-byte or an invalid UTF-8 sequence
			plain = false
			r.i++
		}
	}
	return false, r.syntaxError("in string literal")
}

// plainByte marks the bytes a string holds as they are: printable ASCII
// other than the quote and the backslash.
var plainByte = func() (t [256]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

// str reads the string at r.i and returns its contents, unquoted as
// encoding/json unquotes them. The result may live in r.scratch.
func (r *jsonReader) str() ([]byte, error) {
	start := r.i
	plain, err := r.stringEnd()
	if err != nil {
		return nil, err
	}
	if plain {
		return r.b[start+1 : r.i-1], nil
	}
	r.scratch = unquote(r.scratch[:0], r.b[start+1:r.i-1])
	return r.scratch, nil
}

// unquote appends the contents of the well-formed JSON string body s (its
// quotes removed) to dst, as encoding/json's unquoteBytes does: escapes
// resolved, a surrogate pair joined, a lone surrogate and each byte of
// invalid UTF-8 replaced by U+FFFD.
func unquote(dst, s []byte) []byte {
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == '\\':
			switch s[i+1] {
			case 'b':
				dst = append(dst, '\b')
			case 'f':
				dst = append(dst, '\f')
			case 'n':
				dst = append(dst, '\n')
			case 'r':
				dst = append(dst, '\r')
			case 't':
				dst = append(dst, '\t')
			case 'u':
				rr := hex4(s[i+2:])
				i += 6
				if utf16.IsSurrogate(rr) {
					if i+6 <= len(s) && s[i] == '\\' && s[i+1] == 'u' {
						if dec := utf16.DecodeRune(rr, hex4(s[i+2:])); dec != unicode.ReplacementChar {
							dst = utf8.AppendRune(dst, dec)
							i += 6
							continue
						}
					}
					rr = unicode.ReplacementChar
				}
				dst = utf8.AppendRune(dst, rr)
				continue
			default: // '"', '\\', '/'
				dst = append(dst, s[i+1])
			}
			i += 2
		case c < utf8.RuneSelf:
			dst = append(dst, c)
			i++
		default:
			rr, n := utf8.DecodeRune(s[i:])
			dst = utf8.AppendRune(dst, rr)
			i += n
		}
	}
	return dst
}

// hex4 reads the four hexadecimal digits stringEnd checked.
func hex4(s []byte) rune {
	var r rune
	for _, c := range s[:4] {
		switch {
		case c <= '9':
			c -= '0'
		case c >= 'a':
			c -= 'a' - 10
		default:
			c -= 'A' - 10
		}
		r = r<<4 | rune(c)
	}
	return r
}

// skip checks the value at r.i and moves past it.
func (r *jsonReader) skip() error {
	switch c := r.peek(); {
	case c == '"':
		_, err := r.stringEnd()
		return err
	case c == '{':
		if err := r.push(); err != nil {
			return err
		}
		r.i++
		r.ws()
		if r.peek() == '}' {
			r.i++
			r.depth--
			return nil
		}
		for {
			if r.peek() != '"' {
				return r.syntaxError("looking for beginning of object key string")
			}
			if _, err := r.stringEnd(); err != nil {
				return err
			}
			if err := r.colon(); err != nil {
				return err
			}
			if err := r.skip(); err != nil {
				return err
			}
			if more, err := r.next('}'); err != nil || !more {
				return err
			}
		}
	case c == '[':
		if err := r.push(); err != nil {
			return err
		}
		r.i++
		r.ws()
		if r.peek() == ']' {
			r.i++
			r.depth--
			return nil
		}
		for {
			if err := r.skip(); err != nil {
				return err
			}
			if more, err := r.next(']'); err != nil || !more {
				return err
			}
		}
	case c == 't':
		return r.literal("true")
	case c == 'f':
		return r.literal("false")
	case c == 'n':
		return r.literal("null")
	case c == '-' || c >= '0' && c <= '9':
		_, err := r.number()
		return err
	}
	return r.syntaxError("looking for beginning of value")
}

// colon consumes the white space, colon and white space after a key.
func (r *jsonReader) colon() error {
	r.ws()
	if r.peek() != ':' {
		return r.syntaxError("after object key")
	}
	r.i++
	r.ws()
	return nil
}

// next consumes the white space and the comma or the closing byte after a
// member of an object or an array, and the white space after a comma. It
// reports whether another member follows.
func (r *jsonReader) next(closing byte) (bool, error) {
	r.ws()
	switch r.peek() {
	case ',':
		r.i++
		r.ws()
		return true, nil
	case closing:
		r.i++
		r.depth--
		return false, nil
	}
	if closing == '}' {
		return false, r.syntaxError("after object key:value pair")
	}
	return false, r.syntaxError("after array element")
}

// object decodes the object at r.i into o.
func (r *jsonReader) object(o jsonFields) error {
	if err := r.push(); err != nil {
		return err
	}
	r.i++
	r.ws()
	if r.peek() == '}' {
		r.i++
		r.depth--
		return nil
	}
	for {
		if r.peek() != '"' {
			return r.syntaxError("looking for beginning of object key string")
		}
		keyAt := r.i
		key, err := r.str()
		if err != nil {
			return err
		}
		target := lookup(o, key)
		if err := r.colon(); err != nil {
			return err
		}
		if err := r.value(target); err != nil {
			if te, ok := err.(*jsonTypeError); ok && te.field == "" {
				// Name the member for the log. The key is read again:
				// the value may have reused the scratch it was in.
				again := jsonReader{b: r.b, i: keyAt}
				k, _ := again.str()
				te.field = strconv.Quote(string(k))
			}
			return err
		}
		if more, err := r.next('}'); err != nil || !more {
			return err
		}
	}
}

// lookup finds the field of o that key names: the field of that exact
// name, or else one whose name equals key under Unicode simple folding (so
// "ID", "Id" and "\u0069d" all name id, as "ſpan_id" names span_id), as
// encoding/json does.
func lookup(o jsonFields, key []byte) any {
	if t := o.field(key); t != nil {
		return t
	}
	var arr [32]byte
	folded := arr[:0]
	for i := 0; i < len(key); {
		c := key[i]
		if c < utf8.RuneSelf {
			folded = append(folded, c)
			i++
			continue
		}
		r, n := utf8.DecodeRune(key[i:])
		r = foldRune(r)
		if r >= utf8.RuneSelf {
			return nil // every field name is ASCII
		}
		folded = append(folded, byte(r))
		i += n
	}
	for i, c := range folded {
		if c >= 'A' && c <= 'Z' {
			folded[i] = c + 'a' - 'A'
		}
	}
	return o.field(folded)
}

// foldRune returns the smallest rune of r's simple fold orbit, as
// encoding/json's key matching does.
func foldRune(r rune) rune {
	for {
		r2 := unicode.SimpleFold(r)
		if r2 <= r {
			return r2
		}
		r = r2
	}
}

// value decodes the value at r.i into target (a pointer to a field, or
// nil to check and skip the value).
func (r *jsonReader) value(target any) error {
	switch t := target.(type) {
	case nil:
		return r.skip()
	case *string:
		switch r.peek() {
		case '"':
			s, err := r.str()
			if err != nil {
				return err
			}
			*t = string(s)
			return nil
		case 'n':
			return r.literal("null")
		}
		return r.typeError("string")
	case *int64:
		n, null, err := r.integer(64, "int64")
		if err == nil && !null {
			*t = n
		}
		return err
	case *int:
		n, null, err := r.integer(strconv.IntSize, "int")
		if err == nil && !null {
			*t = int(n)
		}
		return err
	case *float64:
		switch c := r.peek(); {
		case c == '-' || c >= '0' && c <= '9':
			start := r.i
			num, err := r.number()
			if err != nil {
				return err
			}
			f, ok := parseFloat(num)
			if !ok {
				r.i = start
				return r.typeError("float64")
			}
			*t = f
			return nil
		case c == 'n':
			return r.literal("null")
		}
		return r.typeError("float64")
	case **uint64:
		switch c := r.peek(); {
		case c == '-' || c >= '0' && c <= '9':
			start := r.i
			num, err := r.number()
			if err != nil {
				return err
			}
			n, err := strconv.ParseUint(string(num), 10, 64)
			if err != nil {
				r.i = start
				return r.typeError("uint64")
			}
			if *t == nil {
				*t = new(uint64)
			}
			**t = n
			return nil
		case c == 'n':
			*t = nil
			return r.literal("null")
		}
		return r.typeError("*uint64")
	case *[]string:
		return r.strings(t)
	case *map[string]string:
		return r.labels(t)
	case json.Unmarshaler:
		start := r.i
		if err := r.skip(); err != nil {
			return err
		}
		return t.UnmarshalJSON(r.b[start:r.i])
	}
	panic(fmt.Sprintf("fleet: the JSON reader has no case for %T", target))
}

// integer reads a number that must be an integer of the given bits, or
// null (which leaves the field as it is).
func (r *jsonReader) integer(bits int, into string) (n int64, null bool, err error) {
	switch c := r.peek(); {
	case c == '-' || c >= '0' && c <= '9':
		start := r.i
		num, err := r.number()
		if err != nil {
			return 0, false, err
		}
		n, ok := parseInt(num, bits)
		if !ok {
			r.i = start
			return 0, false, r.typeError(into)
		}
		return n, false, nil
	case c == 'n':
		return 0, true, r.literal("null")
	}
	return 0, false, r.typeError(into)
}

// parseInt parses a JSON number as strconv.ParseInt(s, 10, bits) does,
// without converting it to a string when it is a short run of digits.
func parseInt(num []byte, bits int) (int64, bool) {
	if bits == 64 && len(num) > 0 && len(num) <= 18 && num[0] != '-' {
		var n int64
		for _, c := range num {
			if c < '0' || c > '9' {
				return 0, false // a fraction or an exponent
			}
			n = n*10 + int64(c-'0')
		}
		return n, true // 18 digits fit every int of 64 bits
	}
	n, err := strconv.ParseInt(string(num), 10, bits)
	return n, err == nil
}

// parseFloat parses a JSON number as strconv.ParseFloat(s, 64) does,
// without converting it when it is a short run of digits (up to 15 digits
// are exact in a float64, so the conversion is the correctly rounded one).
func parseFloat(num []byte) (float64, bool) {
	if len(num) > 0 && len(num) <= 15 && num[0] != '-' {
		var n int64
		plain := true
		for _, c := range num {
			if c < '0' || c > '9' {
				plain = false
				break
			}
			n = n*10 + int64(c-'0')
		}
		if plain {
			return float64(n), true
		}
	}
	f, err := strconv.ParseFloat(string(num), 64)
	return f, err == nil
}

// strings decodes an array of strings into *t as encoding/json does: it
// overwrites the elements of the slice already there (a repeated key), so
// a null element keeps what that element held.
func (r *jsonReader) strings(t *[]string) error {
	switch r.peek() {
	case 'n':
		*t = nil
		return r.literal("null")
	case '[':
	default:
		return r.typeError("[]string")
	}
	if err := r.push(); err != nil {
		return err
	}
	r.i++
	r.ws()
	s := *t
	n := 0
	if r.peek() == ']' {
		r.i++
		r.depth--
	} else {
		for {
			if n >= cap(s) {
				s = append(s[:cap(s)], "")[:len(s)]
			}
			if n >= len(s) {
				s = s[:n+1]
			}
			if err := r.value(&s[n]); err != nil {
				*t = s
				return err
			}
			n++
			if more, err := r.next(']'); err != nil || !more {
				if err != nil {
					*t = s
					return err
				}
				break
			}
		}
	}
	if n < len(s) {
		s = s[:n]
	}
	if n == 0 {
		s = []string{}
	}
	*t = s
	return nil
}

// labels decodes an object of strings into *t as encoding/json does: into
// the map already there (a repeated key merges), a null value as "".
func (r *jsonReader) labels(t *map[string]string) error {
	switch r.peek() {
	case 'n':
		*t = nil
		return r.literal("null")
	case '{':
	default:
		return r.typeError("map[string]string")
	}
	if err := r.push(); err != nil {
		return err
	}
	if *t == nil {
		*t = map[string]string{}
	}
	r.i++
	r.ws()
	if r.peek() == '}' {
		r.i++
		r.depth--
		return nil
	}
	for {
		if r.peek() != '"' {
			return r.syntaxError("looking for beginning of object key string")
		}
		k, err := r.str()
		if err != nil {
			return err
		}
		key := string(k)
		if err := r.colon(); err != nil {
			return err
		}
		var v string
		if err := r.value(&v); err != nil {
			return err
		}
		(*t)[key] = v
		if more, err := r.next('}'); err != nil || !more {
			return err
		}
	}
}

// decodeJSON decodes the JSON text b, an object or null, into o, as
// json.Unmarshal does: nothing but white space may follow the value.
func decodeJSON(b []byte, o jsonFields) error {
	r := jsonReader{b: b}
	r.ws()
	switch r.peek() {
	case '{':
		if err := r.object(o); err != nil {
			return err
		}
	case 'n':
		if err := r.literal("null"); err != nil {
			return err
		}
	default:
		start := r.i
		if err := r.skip(); err != nil {
			return err
		}
		r.i = start
		return r.typeError("an object")
	}
	r.ws()
	if r.i < len(r.b) {
		return r.syntaxError("after top-level value")
	}
	return nil
}
