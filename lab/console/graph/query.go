package graph

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/common/model"
)

// OptionsFromQuery reads Kiali's graph query parameters: namespaces (comma
// separated), graphType, duration ("600s", "10m" or plain seconds),
// queryTime (unix seconds), injectServiceNodes (default true), idleEdges,
// idleNodes, appenders (comma separated; absent = all), responseTime,
// throughput. A bad value is an error wrapping ErrBadOptions that names
// the parameter, for an HTTP 400; Build checks the rest.
func OptionsFromQuery(q url.Values) (Options, error) {
	o := Options{InjectServiceNodes: true, GraphType: q.Get("graphType"), ResponseTime: q.Get("responseTime"), Throughput: q.Get("throughput")}
	for _, ns := range strings.Split(q.Get("namespaces"), ",") {
		if ns = strings.TrimSpace(ns); ns != "" {
			o.Namespaces = append(o.Namespaces, ns)
		}
	}
	if v := q.Get("duration"); v != "" {
		d, err := parseDuration(v)
		if err != nil {
			return o, fmt.Errorf("%w: duration: %q, want seconds (600, 600s) or a duration (10m)", ErrBadOptions, v)
		}
		o.Duration = d
	}
	if v := q.Get("queryTime"); v != "" {
		secs, err := strconv.ParseInt(v, 10, 64)
		if err != nil || secs <= 0 {
			return o, fmt.Errorf("%w: queryTime: %q, want unix seconds", ErrBadOptions, v)
		}
		o.QueryTime = time.Unix(secs, 0)
	}
	for name, dst := range map[string]*bool{"injectServiceNodes": &o.InjectServiceNodes, "idleEdges": &o.IdleEdges, "idleNodes": &o.IdleNodes} {
		v := q.Get(name)
		if v == "" {
			continue
		}
		b, err := strconv.ParseBool(v)
		if err != nil {
			return o, fmt.Errorf("%w: %s: %q, want true or false", ErrBadOptions, name, v)
		}
		*dst = b
	}
	if q.Has("appenders") {
		o.Appenders = []string{}
		for _, a := range strings.Split(q.Get("appenders"), ",") {
			if a = strings.TrimSpace(a); a != "" {
				o.Appenders = append(o.Appenders, a)
			}
		}
	}
	return o, nil
}

// parseDuration takes Kiali's "600s", Prometheus's "10m" or plain seconds.
func parseDuration(v string) (time.Duration, error) {
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		return time.Duration(secs) * time.Second, nil
	}
	d, err := model.ParseDuration(v)
	return time.Duration(d), err
}
