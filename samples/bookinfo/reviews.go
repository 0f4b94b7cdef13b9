package bookinfo

import (
	"fmt"
	"net/http"
	"os"
	"time"
)

type reviewsResponse struct {
	ID          string   `json:"id"`
	PodName     string   `json:"podname"`
	ClusterName string   `json:"clustername"`
	Reviews     []review `json:"reviews"`
	// Error is set only in productpage's error answer, never by reviews.
	Error string `json:"error,omitempty"`
}

type review struct {
	Reviewer string  `json:"reviewer"`
	Text     string  `json:"text"`
	Rating   *rating `json:"rating,omitempty"`
}

type rating struct {
	Stars int    `json:"stars,omitempty"`
	Color string `json:"color,omitempty"`
	Error string `json:"error,omitempty"`
}

// reviewTexts are the two reviews every product has, in order.
var reviewTexts = []struct{ reviewer, text string }{
	{"Reviewer1", "An extremely entertaining play by Shakespeare. The slapstick humour is refreshing!"},
	{"Reviewer2", "Absolutely fun and entertaining. The play lacks thematic depth when compared to other plays by Shakespeare."},
}

type reviews struct {
	podName, clusterName string
	// starColor is empty for v1, which never calls ratings.
	starColor string
	// ratingsTimeout is Istio's: v2 waits 10s for ratings, v3 only 2.5s.
	// The fault-injection task depends on the difference.
	ratingsTimeout time.Duration
	ratingsURL     string
	client         *http.Client
	mux            *http.ServeMux
}

func newReviews(opts Options) (*reviews, error) {
	s := &reviews{
		podName:     opts.PodName,
		clusterName: opts.ClusterName,
		ratingsURL:  baseURL(opts.RatingsHost, opts.ServicesDomain) + "/ratings/",
		client:      newClient(),
		mux:         http.NewServeMux(),
	}
	switch opts.Version {
	case "", "v1":
	case "v2":
		s.starColor, s.ratingsTimeout = "black", 10*time.Second
	case "v3":
		s.starColor, s.ratingsTimeout = "red", 2500*time.Millisecond
	default:
		return nil, fmt.Errorf("unknown reviews version %q (want v1, v2 or v3)", opts.Version)
	}
	if s.podName == "" {
		s.podName, _ = os.Hostname()
	}
	s.mux.HandleFunc("GET /health", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "Reviews is healthy"})
	})
	s.mux.HandleFunc("GET /reviews/{id}", s.get)
	return s, nil
}

func (s *reviews) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

func (s *reviews) get(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	resp := reviewsResponse{ID: id, PodName: s.podName, ClusterName: s.clusterName}

	var stars map[string]int
	if s.starColor != "" {
		var rl ratingsList
		if err := getJSON(r.Context(), s.client, s.ratingsURL+id, propagate(r.Header), s.ratingsTimeout, &rl); err == nil {
			stars = rl.Ratings
		}
	}
	for _, t := range reviewTexts {
		rv := review{Reviewer: t.reviewer, Text: t.text}
		if s.starColor != "" {
			if n, ok := stars[t.reviewer]; ok {
				rv.Rating = &rating{Stars: n, Color: s.starColor}
			} else {
				rv.Rating = &rating{Error: "Ratings service is currently unavailable"}
			}
		}
		resp.Reviews = append(resp.Reviews, rv)
	}
	writeJSON(w, http.StatusOK, resp)
}
