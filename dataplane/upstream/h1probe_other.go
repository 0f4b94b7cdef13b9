//go:build !unix

package upstream

// probeFD cannot read a socket without blocking here: quiet falls back to
// what the connection's buffer holds.
func (c *h1Conn) probeFD(uintptr) bool {
	c.readable = false
	return true
}
