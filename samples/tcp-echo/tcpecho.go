// Package tcpecho owns the tcp-echo sample: Istio's TCP server that answers
// each line it reads with the line prefixed by a word ("hello", "one",
// "two"), on several ports, so TCP routing, traffic shifting and TCP
// authorization exercises can see which version answered on which port.
package tcpecho

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/meshlab/meshlab/lab/drain"
)

// DefaultPorts are the ports of Istio's manifests: 9000 and 9001 are in
// the Service, 9002 is left out of it on purpose (passthrough tests).
var DefaultPorts = []int{9000, 9001, 9002}

// Options configures Run.
type Options struct {
	// Prefix is written, followed by a space, before every echoed line.
	Prefix string
	// Host is the address listened on, on every port; empty for all.
	Host string
	// Ports are listened on; DefaultPorts when empty and Listeners is nil.
	Ports []int
	// Listeners, when set, are served instead of listening on Ports.
	Listeners []net.Listener
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Drain bounds how long open connections may go on once ctx is done
	// (drain.DefaultDuration when zero); then they are closed.
	Drain time.Duration
}

// Run echoes on every port until ctx is done, then stops accepting and
// gives open connections the drain to finish.
func Run(ctx context.Context, opts Options) error {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Drain <= 0 {
		opts.Drain = drain.DefaultDuration
	}
	log := opts.Logger.With("service", "tcp-echo", "prefix", opts.Prefix)
	lns := opts.Listeners
	if lns == nil {
		ports := opts.Ports
		if len(ports) == 0 {
			ports = DefaultPorts
		}
		for _, p := range ports {
			addr := net.JoinHostPort(opts.Host, strconv.Itoa(p))
			ln, err := new(net.ListenConfig).Listen(ctx, "tcp", addr)
			if err != nil {
				for _, l := range lns {
					_ = l.Close()
				}
				return fmt.Errorf("tcp-echo: listen on %s: %w", addr, err)
			}
			lns = append(lns, ln)
		}
	}

	s := &server{prefix: opts.Prefix, log: log, conns: map[net.Conn]struct{}{}}
	var accepting sync.WaitGroup
	errc := make(chan error, len(lns))
	for _, ln := range lns {
		log.Info("listening", "addr", ln.Addr().String())
		accepting.Add(1)
		go func() {
			defer accepting.Done()
			if err := s.accept(ln); err != nil {
				errc <- err
			}
		}()
	}

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
	}
	for _, ln := range lns {
		_ = ln.Close() // ends the accept loops
	}
	accepting.Wait()
	log.Info("draining", "timeout", opts.Drain, "connections", s.open())
	drained := make(chan struct{})
	go func() { s.handlers.Wait(); close(drained) }()
	select {
	case <-drained:
	case <-time.After(opts.Drain):
		// The drain is a bound, not a failure, as for the HTTP samples.
		log.Warn("drain ended with connections open; closing them", "connections", s.open())
		s.closeAll()
		<-drained
	}
	return runErr
}

type server struct {
	prefix   string
	log      *slog.Logger
	handlers sync.WaitGroup

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool // set by closeAll: late connections are closed at once
}

func (s *server) accept(ln net.Listener) error {
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return fmt.Errorf("tcp-echo: accept on %s: %w", ln.Addr(), err)
		}
		s.handlers.Add(1)
		go func() {
			defer s.handlers.Done()
			s.serve(c)
		}()
	}
}

func (s *server) serve(c net.Conn) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		_ = c.Close()
		return
	}
	s.conns[c] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
		_ = c.Close()
	}()
	r := bufio.NewReader(c)
	for {
		// As Istio's server: whole lines only; a last line without its
		// newline is not answered.
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		s.log.Debug("echo", "remote", c.RemoteAddr().String(), "line", strings.TrimSuffix(line, "\n"))
		if _, err := fmt.Fprintf(c, "%s %s", s.prefix, line); err != nil {
			return
		}
	}
}

func (s *server) open() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

func (s *server) closeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	for c := range s.conns {
		_ = c.Close()
	}
}

// parsePorts reads Istio's comma-separated port list, e.g. "9000,9001,9002".
func parsePorts(s string) ([]int, error) {
	var ports []int
	for _, f := range strings.Split(s, ",") {
		p, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || p < 1 || p > 65535 {
			return nil, fmt.Errorf("port %q in %q: want numbers 1-65535 separated by commas, e.g. 9000,9001", f, s)
		}
		ports = append(ports, p)
	}
	return ports, nil
}

// Command returns `tcp-echo`, which takes the arguments of Istio's
// tcp-echo-server image: [PORTS] PREFIX.
func Command() *cli.Command {
	return &cli.Command{
		Name:      "tcp-echo",
		Usage:     "run the tcp-echo sample (answers each line with PREFIX and the line)",
		ArgsUsage: "[PORTS] PREFIX",
		Description: `Listens on every port of PORTS (comma-separated; default 9000,9001,9002) and
answers each line it reads with PREFIX, a space and the line, as Istio's
tcp-echo-server image does with the same arguments.

Examples:
   meshlab sample tcp-echo hello
   meshlab sample tcp-echo 9000,9001,9002 one
   echo world | nc localhost 9000          # hello world
   meshlab exec deploy/sleep -- sh -c 'echo port 9000 | nc tcp-echo 9000'`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "host", Usage: "address to listen on, on every port (default: all)"},
			drain.Flag(),
		},
		Action: func(c *cli.Context) error {
			args := c.Args().Slice()
			ports := DefaultPorts
			switch len(args) {
			case 1:
			case 2:
				var err error
				if ports, err = parsePorts(args[0]); err != nil {
					return cli.Exit("tcp-echo: "+err.Error(), 2)
				}
				args = args[1:]
			default:
				return cli.Exit(fmt.Sprintf("tcp-echo: want [PORTS] PREFIX, e.g. `9000,9001 hello`, got %q", c.Args().Slice()), 2)
			}
			// c.Context ends on SIGTERM (main catches it): Run drains.
			return Run(c.Context, Options{Prefix: args[0], Host: c.String("host"), Ports: ports, Drain: drain.FromFlag(c)})
		},
	}
}
