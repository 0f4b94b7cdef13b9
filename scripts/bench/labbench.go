package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"sort"
	"strconv"
	"time"
)

var upReported = regexp.MustCompile(`Lab is up in ([0-9.]+)s`)

// labBench times `up` (bookinfo, to productpage answering through the
// gateway) and `down` (to nothing left), as a person runs them.
func (h *harness) labBench(ctx context.Context) error {
	l := h.newLab()
	h.cmd(append([]string{"meshlab"}, l.upArgs()...)...)
	h.cmd("meshlab", "down")
	r := &LabResult{Rounds: h.labRounds}
	for i := 0; i < h.labRounds; i++ {
		start := time.Now()
		out, err := l.up(ctx)
		up := time.Since(start).Seconds()
		if err != nil {
			return errors.Join(err, l.down(context.WithoutCancel(ctx)))
		}
		if m := upReported.FindStringSubmatch(out); m != nil {
			f, _ := strconv.ParseFloat(m[1], 64)
			r.Reported = append(r.Reported, f)
		}
		start = time.Now()
		if err := l.down(context.WithoutCancel(ctx)); err != nil {
			return err
		}
		down := time.Since(start).Seconds()
		if err := labBusy(); err != nil {
			return fmt.Errorf("after down: %w", err)
		}
		r.UpS = append(r.UpS, round3(up))
		r.DownS = append(r.DownS, round3(down))
		slog.Info("lab round", "round", i+1, "up", up, "down", down)
	}
	r.UpP50, r.UpMax = p50max(r.UpS)
	r.DownP50, r.DownMax = p50max(r.DownS)
	h.res.Lab = r
	return nil
}

func p50max(v []float64) (float64, float64) {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	return quantile(s, 0.5), s[len(s)-1]
}

// quantile of sorted values, nearest rank.
func quantile(sorted []float64, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q*float64(len(sorted))+0.5) - 1
	if i < 0 {
		i = 0
	}
	if i >= len(sorted) {
		i = len(sorted) - 1
	}
	return sorted[i]
}
