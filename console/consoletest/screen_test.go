package consoletest_test

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/sagewai/observatory/console/consoletest"
)

// TestScreen checks the emulation the status block's tests rely on, each
// case as a terminal 10 wide and 4 high shows it.
func TestScreen(t *testing.T) {
	tests := []struct {
		name     string
		in       string
		want     []string
		scrolled int
		used     int
	}{
		{"lines", "ab\r\ncd\r\n", []string{"ab", "cd", "", ""}, 0, 2},
		{"line feed keeps the column", "ab\ncd", []string{"ab", "  cd", "", ""}, 0, 1},
		{"carriage return overwrites", "abcdef\rxy", []string{"xycdef", "", "", ""}, 0, 0},
		{"wraps at the last column", "0123456789abc", []string{"0123456789", "abc", "", ""}, 0, 1},
		{"no wrap until the next character", "0123456789\r\n", []string{"0123456789", "", "", ""}, 0, 1},
		{"scrolls at the bottom", "1\r\n2\r\n3\r\n4\r\n5\r\n", []string{"3", "4", "5", ""}, 2, 5},
		{"cursor up and erase to the end of the screen", "a\r\nb\r\nc\r\n\x1b[2A\r\x1b[Jx\r\n", []string{"a", "x", "", ""}, 0, 2},
		{"erase in line", "abcdef\r\x1b[3C\x1b[K", []string{"abc", "", "", ""}, 0, 0},
		{"cursor up stops at the top", "a\r\nb\x1b[9A\rX", []string{"X", "b", "", ""}, 0, 0},
		{"utf-8 split across writes counts as one column", "é·\r\n", []string{"é·", "", "", ""}, 0, 1},
		{"colours are ignored", "\x1b[1;31mred\x1b[0m", []string{"red", "", "", ""}, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := consoletest.NewScreen(10, 4)
			// One byte at a time, as reads of a pty may split anything.
			for i := range len(tt.in) {
				s.Write([]byte{tt.in[i]})
			}
			if d := cmp.Diff(tt.want, s.Lines()); d != "" {
				t.Errorf("screen (-want +got):\n%s", d)
			}
			if s.Scrolled() != tt.scrolled || s.Used() != tt.used {
				t.Errorf("scrolled %d, used %d; want %d, %d", s.Scrolled(), s.Used(), tt.scrolled, tt.used)
			}
			if s.Unknown() != 0 {
				t.Errorf("%d sequences not understood", s.Unknown())
			}
		})
	}
}

// TestScreenUnknown checks that sequences the emulation does not know
// are counted, so that a test can tell its screen may be wrong.
func TestScreenUnknown(t *testing.T) {
	s := consoletest.NewScreen(10, 4)
	s.Write([]byte("a\x1b[?25lb\x1b[5Sc\x1b7d"))
	if got := s.Unknown(); got != 3 {
		t.Errorf("Unknown() = %d, want 3", got)
	}
	if got := s.Text(); got != "abcd" {
		t.Errorf("text %q, want %q", got, "abcd")
	}
}

// FuzzScreen feeds arbitrary output: the screen never panics, keeps its
// size, and no line is wider than it.
func FuzzScreen(f *testing.F) {
	f.Add([]byte("a\r\nb\x1b[2A\x1b[J\x1b[K\x1b[3;4H\x1b[99Bz"))
	f.Add([]byte("\x1b[\x1b[0A\xe2\x82"))
	f.Fuzz(func(t *testing.T, b []byte) {
		s := consoletest.NewScreen(7, 3)
		s.Write(b)
		lines := s.Lines()
		if len(lines) != 3 {
			t.Fatalf("%d lines", len(lines))
		}
		for _, l := range lines {
			if n := len([]rune(l)); n > 7 {
				t.Fatalf("line %q is %d wide", l, n)
			}
		}
		if r, c := s.Cursor(); r < 0 || r >= 3 || c < 0 || c > 7 {
			t.Fatalf("cursor at %d,%d", r, c)
		}
		_ = strings.Count(s.Text(), "\n")
	})
}
