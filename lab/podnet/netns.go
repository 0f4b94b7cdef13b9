package podnet

import (
	"fmt"
	"runtime"

	"github.com/vishvananda/netns"
)

// Do runs fn on a locked OS thread inside the network namespace at nsPath
// and puts the thread back afterwards. Sockets fn opens stay in that
// namespace for their whole life, whatever thread later uses them.
func Do(nsPath string, fn func() error) error {
	target, err := netns.GetFromPath(nsPath)
	if err != nil {
		return fmt.Errorf("open netns %s: %w", nsPath, err)
	}
	// Closing a namespace handle (an fd opened read-only) cannot lose anything.
	defer func() { _ = target.Close() }()

	// A fresh goroutine, so that a thread we cannot switch back is thrown
	// away (a goroutine that exits locked takes its thread with it) instead
	// of being handed to unrelated goroutines in the wrong namespace.
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			errc <- fmt.Errorf("open current netns: %w", err)
			return
		}
		defer func() { _ = orig.Close() }()
		if err := netns.Set(target); err != nil {
			errc <- fmt.Errorf("enter netns %s: %w", nsPath, err)
			return
		}
		ferr := fn()
		if err := netns.Set(orig); err != nil {
			errc <- fmt.Errorf("leave netns %s: %w", nsPath, err)
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}
