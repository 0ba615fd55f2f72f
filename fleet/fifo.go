package fleet

// fifo is a bounded queue of ids; pushing onto a full one evicts the oldest.
type fifo struct {
	cap   int
	items []string // ring
	head  int      // index of the oldest item when full
}

func (f *fifo) init(capacity int) {
	f.cap, f.items, f.head = capacity, make([]string, 0, min(capacity, 1024)), 0
}

// push appends id and returns the evicted id, if any.
func (f *fifo) push(id string) (evicted string, ok bool) {
	if len(f.items) < f.cap {
		f.items = append(f.items, id)
		return "", false
	}
	evicted = f.items[f.head]
	f.items[f.head] = id
	f.head = (f.head + 1) % f.cap
	return evicted, true
}

// list returns the items oldest first.
func (f *fifo) list() []string {
	out := make([]string, 0, len(f.items))
	out = append(out, f.items[f.head:]...)
	return append(out, f.items[:f.head]...)
}

// fifoSet is a set that remembers only its newest cap members.
type fifoSet struct {
	order fifo
	m     map[string]struct{}
}

func (s *fifoSet) init(capacity int) {
	s.order.init(capacity)
	s.m = make(map[string]struct{}, min(capacity, 1024))
}

func (s *fifoSet) has(id string) bool {
	_, ok := s.m[id]
	return ok
}

func (s *fifoSet) add(id string) {
	if s.has(id) {
		return
	}
	s.m[id] = struct{}{}
	if old, ok := s.order.push(id); ok {
		delete(s.m, old)
	}
}
