package consoletest

import (
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"
)

// Screen is an emulated terminal. Its zero value is not usable: call
// NewScreen.
type Screen struct {
	// mu guards everything below.
	mu         sync.Mutex
	cols, rows int
	screen     [][]rune // rows lines, each at most cols runes
	scrollback []string
	r, c       int // the cursor; c == cols means a wrap is pending
	pending    []byte
	state      int // ground, after ESC, inside CSI
	params     []byte
	unknown    int
}

const (
	stGround = iota
	stEsc
	stCSI
)

// NewScreen returns an empty screen cols wide and rows high, the cursor
// at its top left.
func NewScreen(cols, rows int) *Screen {
	return &Screen{cols: max(cols, 1), rows: max(rows, 1), screen: make([][]rune, max(rows, 1))}
}

// Write feeds p to the screen. It never fails.
func (s *Screen) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := append(s.pending, p...)
	s.pending = nil
	for len(b) > 0 {
		if s.state != stGround || b[0] < utf8.RuneSelf {
			s.byte(b[0])
			b = b[1:]
			continue
		}
		if !utf8.FullRune(b) {
			s.pending = append([]byte(nil), b...)
			break
		}
		r, n := utf8.DecodeRune(b)
		s.print(r)
		b = b[n:]
	}
	return len(p), nil
}

func (s *Screen) byte(c byte) {
	switch s.state {
	case stEsc:
		if c == '[' {
			s.state, s.params = stCSI, s.params[:0]
			return
		}
		s.state = stGround
		s.unknown++
		return
	case stCSI:
		if c >= 0x40 && c <= 0x7e {
			s.state = stGround
			s.csi(c)
			return
		}
		s.params = append(s.params, c)
		return
	}
	switch c {
	case 0x1b:
		s.state = stEsc
	case '\r':
		s.c = 0
	case '\n', '\v', '\f':
		s.lineFeed()
	case '\b':
		s.c = max(min(s.c, s.cols-1)-1, 0)
	case '\t':
		s.c = min((s.c/8+1)*8, s.cols-1)
	case 0x07: // bell
	default:
		if c >= 0x20 && c != 0x7f {
			s.print(rune(c))
		}
	}
}

func (s *Screen) print(r rune) {
	if s.c >= s.cols {
		s.c = 0
		s.lineFeed()
	}
	line := s.screen[s.r]
	for len(line) <= s.c {
		line = append(line, ' ')
	}
	line[s.c] = r
	s.screen[s.r] = line
	s.c++
}

func (s *Screen) lineFeed() {
	if s.r < s.rows-1 {
		s.r++
		return
	}
	s.scrollback = append(s.scrollback, trim(s.screen[0]))
	copy(s.screen, s.screen[1:])
	s.screen[s.rows-1] = nil
}

func (s *Screen) csi(final byte) {
	p := string(s.params)
	if final == 'm' {
		return
	}
	if strings.HasPrefix(p, "?") {
		s.unknown++ // private modes: none is expected
		return
	}
	args := strings.Split(p, ";")
	arg := func(i, def int) int {
		if i >= len(args) || args[i] == "" {
			return def
		}
		n, err := strconv.Atoi(args[i])
		if err != nil {
			return def
		}
		return n
	}
	n := max(arg(0, 1), 1)
	switch final {
	case 'A':
		s.r = max(s.r-n, 0)
		s.c = min(s.c, s.cols-1)
	case 'B':
		s.r = min(s.r+n, s.rows-1)
		s.c = min(s.c, s.cols-1)
	case 'C':
		s.c = min(s.c+n, s.cols-1)
	case 'D':
		s.c = max(min(s.c, s.cols-1)-n, 0)
	case 'H':
		s.r = min(max(arg(0, 1), 1), s.rows) - 1
		s.c = min(max(arg(1, 1), 1), s.cols) - 1
	case 'K':
		s.eraseLine(s.r, arg(0, 0))
	case 'J':
		switch arg(0, 0) {
		case 0:
			s.eraseLine(s.r, 0)
			for r := s.r + 1; r < s.rows; r++ {
				s.screen[r] = nil
			}
		case 1:
			for r := 0; r < s.r; r++ {
				s.screen[r] = nil
			}
			s.eraseLine(s.r, 1)
		default:
			for r := range s.screen {
				s.screen[r] = nil
			}
		}
	default:
		s.unknown++
	}
}

// eraseLine erases line r: from the cursor to its end (mode 0), from its
// start to the cursor (1) or all of it (2).
func (s *Screen) eraseLine(r, mode int) {
	line := s.screen[r]
	c := min(s.c, s.cols-1)
	switch mode {
	case 0:
		if c < len(line) {
			s.screen[r] = line[:c]
		}
	case 1:
		for i := 0; i <= c && i < len(line); i++ {
			line[i] = ' '
		}
	default:
		s.screen[r] = nil
	}
}

func trim(line []rune) string { return strings.TrimRight(string(line), " ") }

// Lines returns the screen's lines, top to bottom, without trailing spaces.
func (s *Screen) Lines() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, len(s.screen))
	for i, l := range s.screen {
		out[i] = trim(l)
	}
	return out
}

// Text returns the screen's lines joined with newlines, trailing empty
// lines left out.
func (s *Screen) Text() string {
	return strings.TrimRight(strings.Join(s.Lines(), "\n"), "\n")
}

// Scrolled is how many lines have scrolled off the top of the screen.
func (s *Screen) Scrolled() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.scrollback)
}

// Scrollback returns the lines that scrolled off the top, oldest first.
func (s *Screen) Scrollback() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.scrollback...)
}

// Used is how many lines the output has used so far: the lines scrolled
// off plus the cursor's line. A block redrawn in place leaves it where it
// was; a waterfall makes it grow by one per line.
func (s *Screen) Used() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.scrollback) + s.r
}

// Cursor returns the cursor's line and column on the screen.
func (s *Screen) Cursor() (row, col int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.r, s.c
}

// Unknown counts the escape sequences the screen did not interpret.
func (s *Screen) Unknown() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.unknown
}
