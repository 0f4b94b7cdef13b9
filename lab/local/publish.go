package local

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// publish forwards hostAddr:port to a pod's address, the way docker-proxy
// publishes a container port: a user-space relay, because the pod network is
// not reachable from the host on macOS-like setups and DNAT on loopback needs
// route_localnet, which we would rather not flip on a person's machine.
func (r *Runtime) publish(ctx context.Context, port int, to netip.AddrPort) error {
	addr := net.JoinHostPort(r.opts.HostAddr, strconv.Itoa(port))
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("publish %s → %s: %w (is another lab or program using the port? choose another with the port flags of `up`)", addr, to, err)
	}
	r.wg.Add(2)
	go func() {
		defer r.wg.Done()
		<-ctx.Done()
		_ = lis.Close() // ends the accept loop below
	}()
	go func() {
		defer r.wg.Done()
		for {
			c, err := lis.Accept()
			if err != nil {
				if ctx.Err() == nil && !errors.Is(err, net.ErrClosed) {
					r.log.Warn("accept on published port", "addr", addr, "err", err)
				}
				return
			}
			r.wg.Add(1)
			go func() {
				defer r.wg.Done()
				relay(ctx, c, to.String())
			}()
		}
	}()
	return nil
}

// relay copies both ways between down and a connection to to. Its errors
// are the connections' ends: however a direction ends, the end is passed
// on as a half-close, and both close when both directions are over, so no
// error is left to act on.
func relay(ctx context.Context, down net.Conn, to string) {
	defer func() { _ = down.Close() }()
	d := net.Dialer{Timeout: 5 * time.Second}
	up, err := d.DialContext(ctx, "tcp", to)
	if err != nil {
		return
	}
	defer func() { _ = up.Close() }()
	stop := context.AfterFunc(ctx, func() { _ = down.Close(); _ = up.Close() })
	defer stop()
	done := make(chan struct{})
	go func() {
		_, err := io.Copy(up, down)
		endHalf(up, err)
		close(done)
	}()
	_, err = io.Copy(down, up)
	endHalf(down, err)
	<-done
}

// endHalf passes on how the other side of a relay ended: a FIN as a
// half-close, a reset as a reset, as a packet path would (a sidecar's
// STRICT refusal reaches curl as "(56) Connection reset by peer", not as
// an empty reply).
func endHalf(c net.Conn, err error) {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return
	}
	if errors.Is(err, syscall.ECONNRESET) {
		_ = tc.SetLinger(0)
		_ = tc.Close()
		return
	}
	_ = tc.CloseWrite()
}

// killNetnsProcesses kills every process whose network namespace is one of
// the lab's (named with prefix under /run/netns). It is how `down` cleans up
// after a runtime that died without stopping its containers.
func killNetnsProcesses(prefix string) error {
	entries, err := os.ReadDir("/run/netns")
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("list network namespaces: %w", err)
	}
	inodes := map[uint64]bool{}
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), prefix) {
			continue
		}
		var st syscall.Stat_t
		if syscall.Stat(filepath.Join("/run/netns", e.Name()), &st) == nil {
			inodes[st.Ino] = true
		}
	}
	if len(inodes) == 0 {
		return nil
	}
	procs, err := os.ReadDir("/proc")
	if err != nil {
		return fmt.Errorf("list processes: %w", err)
	}
	var killed []int
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		var st syscall.Stat_t
		if syscall.Stat(filepath.Join("/proc", p.Name(), "ns", "net"), &st) != nil || !inodes[st.Ino] {
			continue
		}
		if syscall.Kill(pid, syscall.SIGKILL) == nil {
			killed = append(killed, pid)
		}
	}
	// Wait (bounded) for them to go, so the namespaces can be removed.
	deadline := time.Now().Add(5 * time.Second)
	for _, pid := range killed {
		for time.Now().Before(deadline) {
			if _, err := os.Stat(fmt.Sprintf("/proc/%d/ns", pid)); err != nil {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	return nil
}
