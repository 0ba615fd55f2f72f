package protocol

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/sagewai/observatory/fleet"
)

// Patcher encodes the observatory.v2 diffs of one scope. It remembers, for
// every entity the scope's clients hold, the encoding its last frame gave
// each top-level field, so that a diff sends only the fields whose encoding
// changed (patch), the names of the fields that went (unset), and whole
// entities only for ids it has not described yet (set).
//
// Its memory is the JSON of the entities it remembers plus 16 bytes per
// field: at most about one snapshot of the scope, because an entity leaves
// it when a diff deletes it; beside that, the buffers a frame is built in
// (8 of them, none kept past 256 KiB: a few tens of KB at steady state,
// 2 MiB at the most). Encode must see every diff of the scope, in
// order, from the state Seed (or an empty memory) stood at; a scope that
// skips one must Reset.
type Patcher struct {
	// colls holds entities by collection and id, both as the quoted JSON
	// strings the encoder wrote, so that no key is ever unescaped.
	colls   map[string]map[string]*encoded
	posture *encoded
	bytes   int
	// sc is working memory kept between frames: a frame then allocates
	// little beyond itself and the encodings it remembers.
	sc scratch
}

// scratch holds the buffers a frame is built in. Each keeps its capacity
// for the next frame unless it grew past maxScratch (a burst such as a
// first diff after many changes), which is not kept.
type scratch struct {
	json                bytes.Buffer // one part of the Delta, as encoding/json writes it (encodeJSON)
	frame               []byte
	set, patch, unset   []byte // the three members, built side by side
	cs, cp, cu, changed []byte // one collection's part of each, and one entity's patch
}

const maxScratch = 256 << 10

func (sc *scratch) trim() {
	if sc.json.Cap() > maxScratch {
		sc.json = bytes.Buffer{}
	}
	for _, b := range []*[]byte{&sc.frame, &sc.set, &sc.patch, &sc.unset, &sc.cs, &sc.cp, &sc.cu, &sc.changed} {
		if cap(*b) > maxScratch {
			*b = nil
		}
	}
}

// encoded is one JSON object and where each of its members lies in it.
type encoded struct {
	raw    []byte
	fields []span
}

// span locates one member: raw[k0:k1] is its quoted name, raw[v0:v1] its value.
type span struct{ k0, k1, v0, v1 int32 }

func (e *encoded) key(i int) []byte   { f := e.fields[i]; return e.raw[f.k0:f.k1] }
func (e *encoded) value(i int) []byte { f := e.fields[i]; return e.raw[f.v0:f.v1] }

// set makes e a copy of obj, reusing e's buffers.
func (e *encoded) set(obj []byte) error {
	e.raw = append(e.raw[:0], obj...)
	e.fields = e.fields[:0]
	return members(e.raw, func(k0, k1, v0, v1 int) {
		e.fields = append(e.fields, span{int32(k0), int32(k1), int32(v0), int32(v1)})
	})
}

// find returns the index of the member named key, looking first at hint:
// entities of one type encode their fields in one order.
func (e *encoded) find(key []byte, hint int) int {
	if hint < len(e.fields) && string(e.key(hint)) == string(key) {
		return hint
	}
	for i := range e.fields {
		if string(e.key(i)) == string(key) {
			return i
		}
	}
	return -1
}

func (e *encoded) size() int { return cap(e.raw) + 16*cap(e.fields) }

// Bytes returns how many bytes the patcher's memory holds (entity
// encodings and field offsets, not map overhead).
func (p *Patcher) Bytes() int { return p.bytes }

// Entities returns how many entities the patcher remembers.
func (p *Patcher) Entities() int {
	n := 0
	for _, c := range p.colls {
		n += len(c)
	}
	return n
}

// Reset forgets everything: the next diff sends every entity whole.
func (p *Patcher) Reset() { *p = Patcher{} }

func (p *Patcher) coll(name string) map[string]*encoded {
	if p.colls == nil {
		p.colls = make(map[string]map[string]*encoded)
	}
	c := p.colls[name]
	if c == nil {
		c = make(map[string]*encoded)
		p.colls[name] = c
	}
	return c
}

// Seed remembers the entities and posture of an encoded snapshot frame of
// the scope, taken at the point the patcher stands: the clients that start
// from it hold them, so their first change can be a patch. Entities the
// patcher already remembers are kept (they are at the same point).
func (p *Patcher) Seed(snapshot []byte) error {
	var state []byte
	err := members(snapshot, func(k0, k1, v0, v1 int) {
		if string(snapshot[k0:k1]) == `"state"` {
			state = snapshot[v0:v1]
		}
	})
	if err != nil || len(state) == 0 || state[0] != '{' {
		return fmt.Errorf("patcher: seed: not a snapshot frame: %v", err)
	}
	return members(state, func(k0, k1, v0, v1 int) {
		name, v := string(state[k0:k1]), state[v0:v1]
		if name == `"posture"` {
			if p.posture == nil && len(v) > 0 && v[0] == '{' {
				p.posture = &encoded{}
				if p.posture.set(v) == nil {
					p.bytes += p.posture.size()
				} else {
					p.posture = nil
				}
			}
			return
		}
		if !isCollection(name) || len(v) == 0 || v[0] != '{' {
			return
		}
		c := p.coll(name)
		_ = members(v, func(i0, i1, e0, e1 int) {
			id := string(v[i0:i1])
			if c[id] != nil || v[e0] != '{' {
				return
			}
			e := &encoded{}
			if e.set(v[e0:e1]) == nil {
				c[id] = e
				p.bytes += e.size()
			}
		})
	})
}

var quotedCollections = func() map[string]bool {
	m := make(map[string]bool, len(fleet.Collections))
	for _, c := range fleet.Collections {
		m[strconv.Quote(c)] = true
	}
	return m
}()

func isCollection(quoted string) bool { return quotedCollections[quoted] }

// DiffHead is what a diff frame says besides its changes.
type DiffHead struct {
	Scope, Epoch string
	Prev, Seq    uint64
}

// Encode returns the observatory.v2 diff frame for d and remembers what it
// sent. d is the same Delta the v1 frame carries; its posture, when set,
// is the scope's whole posture.
func (p *Patcher) Encode(h DiffHead, d *fleet.Delta) ([]byte, error) {
	buf, err := p.encode(p.sc.frame[:0], h, d)
	p.sc.frame = buf
	var frame []byte
	if err == nil {
		frame = bytes.Clone(buf)
	}
	p.sc.trim()
	return frame, err
}

func (p *Patcher) encode(buf []byte, h DiffHead, d *fleet.Delta) ([]byte, error) {
	buf = append(buf, `{"op":"diff","scope":`...)
	buf = appendString(buf, h.Scope)
	buf = append(buf, `,"epoch":`...)
	buf = appendString(buf, h.Epoch)
	buf = append(buf, `,"prev":`...)
	buf = strconv.AppendUint(buf, h.Prev, 10)
	buf = append(buf, `,"seq":`...)
	buf = strconv.AppendUint(buf, h.Seq, 10)

	if !setEmpty(&d.Set) {
		setJSON, err := p.encodeJSON(d.Set)
		if err != nil {
			return buf, fmt.Errorf("patcher: encode set: %w", err)
		}
		if buf, err = p.entities(buf, setJSON); err != nil {
			return buf, err
		}
	}
	if len(d.Del) > 0 {
		b, err := p.encodeJSON(d.Del)
		if err != nil {
			return buf, fmt.Errorf("patcher: encode del: %w", err)
		}
		buf = append(buf, `,"del":`...)
		buf = append(buf, b...)
		for coll, ids := range d.Del {
			c := p.colls[strconv.Quote(coll)]
			if c == nil {
				continue
			}
			for _, id := range ids {
				q := string(appendString(nil, id))
				if e := c[q]; e != nil {
					p.bytes -= e.size()
					delete(c, q)
				}
			}
		}
	}
	if d.Posture != nil {
		b, err := p.encodeJSON(d.Posture)
		if err != nil {
			return buf, fmt.Errorf("patcher: encode posture: %w", err)
		}
		var unset [][]byte
		if p.posture == nil {
			buf = append(buf, `,"posture":`...)
			buf = append(buf, b...)
			p.posture = &encoded{}
		} else {
			start := len(buf)
			buf = append(buf, `,"posture":{`...)
			var n int
			if buf, n, unset, err = changed(buf, p.posture, b); err != nil {
				return buf, err
			}
			if n == 0 {
				buf = buf[:start]
			} else {
				buf = append(buf, '}')
			}
		}
		if len(unset) > 0 {
			// Posture is a fixed set of fields (DESIGN §5): one never goes.
			return buf, errors.New("patcher: a posture field disappeared")
		}
		p.bytes -= p.posture.size()
		if err := p.posture.set(b); err != nil {
			return buf, err
		}
		p.bytes += p.posture.size()
	}
	if len(d.Ticker) > 0 {
		b, err := p.encodeJSON(d.Ticker)
		if err != nil {
			return buf, fmt.Errorf("patcher: encode ticker: %w", err)
		}
		buf = append(buf, `,"ticker":`...)
		buf = append(buf, b...)
	}
	return append(buf, '}'), nil
}

// encodeJSON returns v as json.Marshal does (HTML characters escaped
// alike), written into the patcher's scratch: valid until the next call.
func (p *Patcher) encodeJSON(v any) ([]byte, error) {
	p.sc.json.Reset()
	if err := json.NewEncoder(&p.sc.json).Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(p.sc.json.Bytes(), []byte{'\n'}), nil
}

func setEmpty(s *fleet.Set) bool {
	return len(s.Projects) == 0 && len(s.Agents) == 0 && len(s.Workers) == 0 && len(s.Missions) == 0 && len(s.Budgets) == 0
}

// entities appends the set, patch and unset members for the entities of
// setJSON (the encoded fleet.Set) and remembers them.
func (p *Patcher) entities(buf, setJSON []byte) ([]byte, error) {
	// The three members are built side by side and joined at the end.
	sc := &p.sc
	set, patch, unset, scratch := sc.set[:0], sc.patch[:0], sc.unset[:0], sc.changed[:0]
	var ferr error
	err := members(setJSON, func(k0, k1, v0, v1 int) {
		collKey, entries := setJSON[k0:k1], setJSON[v0:v1]
		c := p.coll(string(collKey))
		cs, cp, cu := sc.cs[:0], sc.cp[:0], sc.cu[:0]
		err := members(entries, func(i0, i1, e0, e1 int) {
			id, obj := entries[i0:i1], entries[e0:e1]
			old := c[string(id)]
			if old == nil {
				cs = appendMember(cs, id, obj)
				e := &encoded{}
				if err := e.set(obj); err != nil {
					ferr = err
					return
				}
				c[string(id)] = e
				p.bytes += e.size()
				return
			}
			var n int
			var gone [][]byte
			var err error
			scratch, n, gone, err = changed(append(scratch[:0], '{'), old, obj)
			if err != nil {
				ferr = err
				return
			}
			if n > 0 {
				scratch = append(scratch, '}')
				cp = appendMember(cp, id, scratch)
			}
			if len(gone) > 0 {
				scratch = append(scratch[:0], '[')
				for i, g := range gone {
					if i > 0 {
						scratch = append(scratch, ',')
					}
					scratch = append(scratch, g...)
				}
				cu = appendMember(cu, id, append(scratch, ']'))
			}
			p.bytes -= old.size()
			if err := old.set(obj); err != nil {
				ferr = err
			}
			p.bytes += old.size()
		})
		if err != nil {
			ferr = err
		}
		set = appendGroup(set, collKey, cs)
		patch = appendGroup(patch, collKey, cp)
		unset = appendGroup(unset, collKey, cu)
		sc.cs, sc.cp, sc.cu = cs, cp, cu
	})
	sc.set, sc.patch, sc.unset, sc.changed = set, patch, unset, scratch
	if err == nil {
		err = ferr
	}
	if err != nil {
		return nil, fmt.Errorf("patcher: split set: %w", err)
	}
	for _, m := range []struct {
		name string
		body []byte
	}{{`,"set":{`, set}, {`,"patch":{`, patch}, {`,"unset":{`, unset}} {
		if len(m.body) > 0 {
			buf = append(buf, m.name...)
			buf = append(buf, m.body...)
			buf = append(buf, '}')
		}
	}
	return buf, nil
}

// changed appends to buf, as object members without braces, the members of
// obj whose encoding differs from old's (n of them), and returns the quoted
// names of old's members that obj lacks.
func changed(buf []byte, old *encoded, obj []byte) (_ []byte, n int, gone [][]byte, err error) {
	seen := 0 // members of old that obj has too
	i := 0
	err = members(obj, func(k0, k1, v0, v1 int) {
		key, val := obj[k0:k1], obj[v0:v1]
		j := old.find(key, i)
		i++
		if j >= 0 {
			seen++
			if string(old.value(j)) == string(val) {
				return
			}
		}
		if n > 0 {
			buf = append(buf, ',')
		}
		buf = append(buf, key...)
		buf = append(buf, ':')
		buf = append(buf, val...)
		n++
	})
	if err != nil || seen == len(old.fields) {
		return buf, n, nil, err
	}
	for j := range old.fields {
		if bytesIndexMember(obj, old.key(j)) < 0 {
			gone = append(gone, old.key(j))
		}
	}
	return buf, n, gone, nil
}

// bytesIndexMember returns the offset of the member named key in obj, or -1.
func bytesIndexMember(obj, key []byte) int {
	at := -1
	_ = members(obj, func(k0, k1, _, _ int) {
		if at < 0 && string(obj[k0:k1]) == string(key) {
			at = k0
		}
	})
	return at
}

func appendMember(buf, key, val []byte) []byte {
	if len(buf) > 0 {
		buf = append(buf, ',')
	}
	buf = append(buf, key...)
	buf = append(buf, ':')
	return append(buf, val...)
}

func appendGroup(buf, key, body []byte) []byte {
	if len(body) == 0 {
		return buf
	}
	if len(buf) > 0 {
		buf = append(buf, ',')
	}
	buf = append(buf, key...)
	buf = append(buf, ':', '{')
	buf = append(buf, body...)
	return append(buf, '}')
}

// appendString appends s as encoding/json quotes it (HTML characters
// escaped), so that an id quoted here matches a map key it wrote.
func appendString(buf []byte, s string) []byte {
	b, _ := json.Marshal(s)
	return append(buf, b...)
}

// members calls fn with the offsets of each member of the JSON object obj
// (name obj[k0:k1], quotes included; value obj[v0:v1]). obj must be the
// compact output of encoding/json: no whitespace between tokens.
func members(obj []byte, fn func(k0, k1, v0, v1 int)) error {
	if len(obj) < 2 || obj[0] != '{' {
		return errors.New("not a JSON object")
	}
	i := 1
	if obj[i] == '}' {
		return nil
	}
	for {
		k0 := i
		k1, err := skip(obj, i)
		if err != nil || k1 >= len(obj) || obj[k0] != '"' || obj[k1] != ':' {
			return errors.New("bad object member name")
		}
		v0 := k1 + 1
		v1, err := skip(obj, v0)
		if err != nil || v1 >= len(obj) {
			return errors.New("bad object member value")
		}
		fn(k0, k1, v0, v1)
		switch obj[v1] {
		case ',':
			i = v1 + 1
		case '}':
			return nil
		default:
			return errors.New("bad object")
		}
	}
}

// skip returns the offset just past the JSON value that starts at b[i].
func skip(b []byte, i int) (int, error) {
	if i >= len(b) {
		return 0, errors.New("truncated")
	}
	switch b[i] {
	case '"':
		for j := i + 1; j < len(b); j++ {
			switch b[j] {
			case '\\':
				j++
			case '"':
				return j + 1, nil
			}
		}
		return 0, errors.New("unterminated string")
	case '{', '[':
		depth := 0
		for j := i; j < len(b); j++ {
			switch b[j] {
			case '"':
				end, err := skip(b, j)
				if err != nil {
					return 0, err
				}
				j = end - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1, nil
				}
			}
		}
		return 0, errors.New("unterminated object or array")
	default:
		j := i
		for j < len(b) && b[j] != ',' && b[j] != '}' && b[j] != ']' {
			j++
		}
		if j == i {
			return 0, errors.New("empty value")
		}
		return j, nil
	}
}
