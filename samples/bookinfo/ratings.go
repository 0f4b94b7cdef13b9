package bookinfo

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// ratingsList is the ratings service's answer.
type ratingsList struct {
	ID      int            `json:"id"`
	Ratings map[string]int `json:"ratings"`
}

type ratings struct {
	fault string
	delay time.Duration
	// sleep waits d or until ctx ends; tests replace it to observe the
	// injected delay without waiting for it.
	sleep func(ctx context.Context, d time.Duration) error
	// fail reports whether this request is one of the failing half.
	fail func() bool

	mu    sync.Mutex
	added map[int]map[string]int // ratings POSTed per product, as Istio's service keeps them

	mux *http.ServeMux
}

// faultAliases maps the SERVICE_VERSION values of Istio's ratings images onto
// our fault names, so Istio's manifests for those variants work unchanged.
var faultAliases = map[string]string{
	"v-faulty":      FaultHalf500,
	"v-delayed":     FaultDelay7s,
	"v-unavailable": FaultAlways503,
	"v-unhealthy":   FaultAlways503,
}

func newRatings(opts Options) (*ratings, error) {
	fault := opts.RatingsFault
	if fault == "" {
		fault = faultAliases[opts.Version]
	}
	switch fault {
	case FaultNone, FaultAlways503, FaultHalf500, FaultDelay7s:
	default:
		return nil, fmt.Errorf("unknown ratings fault %q (want %s, %s or %s)", fault, FaultAlways503, FaultHalf500, FaultDelay7s)
	}
	s := &ratings{
		fault: fault,
		delay: 7 * time.Second,
		sleep: sleepCtx,
		fail:  func() bool { return rand.IntN(2) == 0 },
		added: map[int]map[string]int{},
		mux:   http.NewServeMux(),
	}
	s.mux.HandleFunc("GET /health", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "Ratings is healthy"})
	})
	s.mux.HandleFunc("GET /ratings/{id}", s.get)
	s.mux.HandleFunc("POST /ratings/{id}", s.post)
	return s, nil
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *ratings) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

func (s *ratings) get(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.Atoi(r.PathValue("id"))
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "please provide numeric product ID"})
		return
	}
	switch s.fault {
	case FaultAlways503:
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "Service unavailable"})
		return
	case FaultHalf500:
		if s.fail() {
			writeJSON(w, http.StatusInternalServerError, map[string]string{"error": "Service unavailable"})
			return
		}
	case FaultDelay7s:
		if err := s.sleep(r.Context(), s.delay); err != nil {
			return // the caller gave up or we are shutting down
		}
	}
	writeJSON(w, http.StatusOK, ratingsList{ID: id, Ratings: s.lookup(id)})
}

func (s *ratings) lookup(id int) map[string]int {
	out := map[string]int{"Reviewer1": 5, "Reviewer2": 4}
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, v := range s.added[id] {
		out[k] = v
	}
	return out
}

func (s *ratings) post(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.Atoi(r.PathValue("id"))
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "please provide numeric product ID"})
		return
	}
	var in map[string]int
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<16))
	if err == nil {
		err = json.Unmarshal(body, &in)
	}
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "please provide valid ratings JSON"})
		return
	}
	for k, v := range in {
		if v < 1 || v > 5 {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": fmt.Sprintf("rating of %s must be 1 to 5", k)})
			return
		}
	}
	s.mu.Lock()
	if s.added[id] == nil {
		s.added[id] = map[string]int{}
	}
	for k, v := range in {
		s.added[id][k] = v
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, ratingsList{ID: id, Ratings: s.lookup(id)})
}
