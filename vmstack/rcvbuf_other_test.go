//go:build !unix

package vmstack_test

import "syscall"

// setReceiveBuffer leaves the receive buffer alone where SO_RCVBUF is not
// set this way: slow subscribers then take longer to fill their window.
func setReceiveBuffer(int) func(network, address string, c syscall.RawConn) error {
	return nil
}
