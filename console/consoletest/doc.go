// Package consoletest emulates as much of a terminal as the tests of the
// status block need: a Screen of fixed width and height with scrollback,
// fed the bytes a program writes to its terminal. It interprets carriage
// return, line feed (as a terminal in raw mode does: down one line, same
// column; a pty's ONLCR adds the carriage return), backspace, tab,
// automatic wrap at the last column, and the CSI sequences cursor up,
// down, forward, back and position (A, B, C, D, H), erase in line (K) and
// erase in display (J); SGR (m) is accepted and ignored. Other escape
// sequences are counted in Unknown and otherwise ignored.
//
// It imports only the standard library.
//
// # Concurrency
//
// A Screen is safe for one writer and many readers.
package consoletest
