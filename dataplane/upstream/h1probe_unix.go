//go:build unix

package upstream

import "syscall"

// probeFD is the raw read of quiet: EAGAIN means nothing to read; data,
// end of file or any error mean the connection is done. The socket is
// non-blocking (Go's poller set it so), and the callback returns true so
// that the poller does not wait.
func (c *h1Conn) probeFD(fd uintptr) bool {
	_, err := syscall.Read(int(fd), c.one[:])
	c.readable = err != syscall.EAGAIN
	return true
}
