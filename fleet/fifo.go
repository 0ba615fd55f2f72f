package fleet

// fifo is a queue of ids, oldest first. It grows as ids come, so that an
// empty one costs nothing: the fold keeps two per project.
type fifo struct {
	items []string
	head  int // index of the oldest item
}

// push appends id, then drops the oldest items while more than max are
// held, calling evict with each.
func (f *fifo) push(id string, max int, evict func(string)) {
	f.items = append(f.items, id)
	for f.len() > max {
		old := f.items[f.head]
		f.items[f.head] = ""
		f.head++
		if evict != nil {
			evict(old)
		}
	}
	if f.head > 64 && f.head*2 > len(f.items) {
		n := copy(f.items, f.items[f.head:])
		clear(f.items[n:])
		f.items, f.head = f.items[:n], 0
	}
}

func (f *fifo) len() int { return len(f.items) - f.head }

// list returns the items oldest first.
func (f *fifo) list() []string {
	out := make([]string, f.len())
	copy(out, f.items[f.head:])
	return out
}

// fifoSet is a set that remembers only its newest members.
type fifoSet struct {
	order fifo
	m     map[string]struct{}
}

func (s *fifoSet) has(id string) bool {
	_, ok := s.m[id]
	return ok
}

// add adds id, forgetting the oldest members past max.
func (s *fifoSet) add(id string, max int) {
	if s.has(id) {
		return
	}
	if s.m == nil {
		s.m = make(map[string]struct{})
	}
	s.m[id] = struct{}{}
	s.order.push(id, max, func(old string) { delete(s.m, old) })
}

func (s *fifoSet) len() int { return len(s.m) }
