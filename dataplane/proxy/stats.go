package proxy

import "time"

// statsConfig is an istio.stats filter's configuration (stats.go).
type statsConfig struct {
	tcpReport time.Duration
}
