package store

import "context"

type watcher struct {
	ch chan uint64
}

// Watch delivers the store revision after each commit that moved it. The
// channel holds one value: a reader that falls behind gets the latest
// revision, not every one. It is closed when ctx is done.
func (s *Store) Watch(ctx context.Context) <-chan uint64 {
	w := &watcher{ch: make(chan uint64, 1)}
	s.mu.Lock()
	s.watchers[w] = struct{}{}
	s.mu.Unlock()
	// context.AfterFunc owns the cleanup, so no goroutine waits per watcher.
	context.AfterFunc(ctx, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		delete(s.watchers, w)
		close(w.ch)
	})
	return w.ch
}

// committed publishes a revision, if it moved, to every watcher.
func (s *Store) committed(rev uint64) {
	for {
		old := s.rev.Load()
		if rev <= old {
			return
		}
		if s.rev.CompareAndSwap(old, rev) {
			break
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for w := range s.watchers {
		// Replace an unread older revision with this one.
		select {
		case <-w.ch:
		default:
		}
		w.ch <- rev
	}
}
