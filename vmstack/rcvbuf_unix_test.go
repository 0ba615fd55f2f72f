//go:build unix

package vmstack_test

import "syscall"

// setReceiveBuffer sets a socket's receive buffer (SO_RCVBUF) before it
// connects, which caps the window the peer may fill.
func setReceiveBuffer(bytes int) func(network, address string, c syscall.RawConn) error {
	return func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, bytes)
		})
		if err != nil {
			return err
		}
		return serr
	}
}
