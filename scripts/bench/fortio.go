package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strconv"

	"github.com/meshlab/meshlab/lab/labtest"
)

// FortioVersion is the fortio the harness installs.
const FortioVersion = labtest.FortioVersion

// fortioResult is the part of `fortio load -json` the harness reads.
type fortioResult struct {
	ActualQPS               float64
	ActualDuration          int64 // ns
	RetCodes                map[string]int64
	ErrorsDurationHistogram histogram
	DurationHistogram       histogram
}

type histogram struct {
	Count int64
	Min   float64
	Max   float64
	Sum   float64
	Data  []bucket
}

// bucket is one histogram bucket; times in seconds.
type bucket struct {
	Start, End float64
	Count      int64
}

func parseFortio(b []byte) (fortioResult, error) {
	var r fortioResult
	// fortio logs to stderr, the JSON goes to stdout; still, skip anything
	// before the object.
	if i := bytes.IndexByte(b, '{'); i > 0 {
		b = b[i:]
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return r, fmt.Errorf("read fortio's JSON: %w", err)
	}
	return r, nil
}

// ok is the count of 200 answers.
func (r fortioResult) ok() int64 { return r.RetCodes["200"] }

// errs is every call that did not answer 200.
func (r fortioResult) errs() int64 { return r.DurationHistogram.Count - r.ok() }

// merge adds h's buckets into m. Runs with the same resolution share bucket
// edges except the first and last, which fortio clips to min and max; those
// are kept as they are, so the merge stays exact to a bucket.
func (m *histogram) merge(h histogram) {
	if m.Count == 0 || h.Min < m.Min {
		m.Min = h.Min
	}
	if h.Max > m.Max {
		m.Max = h.Max
	}
	m.Count += h.Count
	m.Sum += h.Sum
	m.Data = append(m.Data, h.Data...)
}

// percentile returns the p-th percentile in seconds, interpolating inside
// the bucket as fortio does.
func (m histogram) percentile(p float64) float64 {
	if m.Count == 0 {
		return math.NaN()
	}
	data := append([]bucket(nil), m.Data...)
	sort.SliceStable(data, func(i, j int) bool {
		if data[i].Start != data[j].Start {
			return data[i].Start < data[j].Start
		}
		return data[i].End < data[j].End
	})
	target := p / 100 * float64(m.Count)
	var cum float64
	for _, b := range data {
		if b.Count == 0 {
			continue
		}
		if cum+float64(b.Count) >= target {
			frac := (target - cum) / float64(b.Count)
			return b.Start + frac*(b.End-b.Start)
		}
		cum += float64(b.Count)
	}
	return m.Max
}

// loadSpec is one fortio load run.
type loadSpec struct {
	QPS      float64 // 0: as fast as it goes
	Conns    int
	Requests int     // exact number of calls, or
	Seconds  float64 // a duration when Requests is 0
	URL      string
	Host     string // Host header, when not the URL's
	CPU      int    // pin fortio to this CPU, -1 not
}

// args is fortio's command line for s.
func (s loadSpec) args(fortio string) []string {
	a := []string{fortio, "load", "-quiet", "-json", "-", "-qps", strconv.FormatFloat(s.QPS, 'f', -1, 64),
		"-c", strconv.Itoa(s.Conns), "-r", "0.00001", "-p", "50,90,99,99.9", "-allow-initial-errors"}
	if s.Requests > 0 {
		a = append(a, "-n", strconv.Itoa(s.Requests))
	} else {
		a = append(a, "-t", strconv.FormatFloat(s.Seconds, 'f', -1, 64)+"s")
	}
	if s.Host != "" {
		a = append(a, "-H", "Host: "+s.Host)
	}
	a = append(a, s.URL)
	if s.CPU >= 0 {
		a = append([]string{"taskset", "-c", strconv.Itoa(s.CPU)}, a...)
	}
	return a
}
