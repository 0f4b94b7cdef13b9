package tcpecho

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/urfave/cli/v2"
)

type running struct {
	addrs []string
	stop  context.CancelFunc
	done  chan error
}

// start runs tcp-echo on n loopback listeners.
func start(t *testing.T, prefix string, n int, drain time.Duration) *running {
	t.Helper()
	var lns []net.Listener
	var addrs []string
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln)
		addrs = append(addrs, ln.Addr().String())
	}
	ctx, stop := context.WithCancel(context.Background())
	r := &running{addrs: addrs, stop: stop, done: make(chan error, 1)}
	go func() {
		r.done <- Run(ctx, Options{Prefix: prefix, Listeners: lns, Drain: drain, Logger: slog.New(slog.DiscardHandler)})
	}()
	t.Cleanup(func() {
		stop()
		select {
		case <-r.done:
		case <-time.After(10 * time.Second):
			t.Error("Run did not return")
		}
	})
	return r
}

func dial(t *testing.T, addr string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	return c, bufio.NewReader(c)
}

// roundTrip writes line and reads one answer line.
func roundTrip(t *testing.T, c net.Conn, r *bufio.Reader, line string) string {
	t.Helper()
	if _, err := io.WriteString(c, line); err != nil {
		t.Fatal(err)
	}
	got, err := r.ReadString('\n')
	if err != nil {
		t.Fatalf("read answer to %q: %v (got %q)", line, err, got)
	}
	return got
}

func TestEcho(t *testing.T) {
	tests := []struct {
		name   string
		prefix string
		lines  []string
		want   []string
	}{
		{"hello", "hello", []string{"world\n"}, []string{"hello world\n"}},
		{"several lines on one connection", "one", []string{"port 9000\n", "again\n", "\n"},
			[]string{"one port 9000\n", "one again\n", "one \n"}},
		{"spaces kept", "two", []string{"  a  b \n"}, []string{"two   a  b \n"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := start(t, tt.prefix, 2, time.Second)
			// Every port answers the same way, independently.
			for _, addr := range r.addrs {
				c, br := dial(t, addr)
				for i, line := range tt.lines {
					if got := roundTrip(t, c, br, line); got != tt.want[i] {
						t.Errorf("%s: %q answered %q, want %q", addr, line, got, tt.want[i])
					}
				}
			}
		})
	}
}

// TestPartialLine: a last line without its newline gets no answer, and the
// connection is closed when the client's side ends, as Istio's server does.
func TestPartialLine(t *testing.T) {
	r := start(t, "hello", 1, time.Second)
	c, br := dial(t, r.addrs[0])
	if _, err := io.WriteString(c, "full\npartial"); err != nil {
		t.Fatal(err)
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	rest, err := io.ReadAll(br)
	if err != nil {
		t.Fatal(err)
	}
	if string(rest) != "hello full\n" {
		t.Errorf("answers = %q, want only %q", rest, "hello full\n")
	}
}

// TestShutdown: once stopped, new connections are refused while an open
// one keeps echoing until it ends (then Run returns at once) or until the
// drain is up (then it is closed).
func TestShutdown(t *testing.T) {
	tests := []struct {
		name         string
		drain        time.Duration
		clientCloses bool
		minReturn    time.Duration
		maxReturn    time.Duration
	}{
		{"connection ends within the drain", 5 * time.Second, true, 0, 2 * time.Second},
		{"connection outlasts the drain", 500 * time.Millisecond, false, 400 * time.Millisecond, 3 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := start(t, "hello", 1, tt.drain)
			c, br := dial(t, r.addrs[0])
			if got := roundTrip(t, c, br, "before\n"); got != "hello before\n" {
				t.Fatalf("answer %q", got)
			}
			stopped := time.Now()
			r.stop()
			deadline := time.Now().Add(2 * time.Second)
			for {
				nc, err := net.DialTimeout("tcp", r.addrs[0], time.Second)
				if errors.Is(err, syscall.ECONNREFUSED) {
					break
				}
				// A dial racing the listener's close may be reset instead.
				if err == nil {
					_ = nc.Close()
				} else if !errors.Is(err, syscall.ECONNRESET) {
					t.Fatalf("dial after stop: %v, want connection refused", err)
				}
				if time.Now().After(deadline) {
					t.Fatal("new connections still accepted 2s after stop")
				}
				time.Sleep(10 * time.Millisecond)
			}
			if got := roundTrip(t, c, br, "during\n"); got != "hello during\n" {
				t.Errorf("open connection while draining answered %q", got)
			}
			if tt.clientCloses {
				_ = c.Close()
			} else {
				// The server closes it when the drain is up.
				if _, err := br.ReadString('\n'); err == nil {
					t.Error("read an answer nobody asked for")
				}
			}
			select {
			case err := <-r.done:
				if err != nil {
					t.Errorf("Run: %v, want nil", err)
				}
				d := time.Since(stopped)
				if d < tt.minReturn || d > tt.maxReturn {
					t.Errorf("Run returned %v after stop, want between %v and %v", d, tt.minReturn, tt.maxReturn)
				}
				r.done <- nil // for the cleanup
			case <-time.After(10 * time.Second):
				t.Fatal("Run did not return")
			}
		})
	}
}

func TestParsePorts(t *testing.T) {
	tests := []struct {
		in      string
		want    []int
		wantErr bool
	}{
		{"9000", []int{9000}, false},
		{"9000,9001,9002", []int{9000, 9001, 9002}, false},
		{"9000, 9001", []int{9000, 9001}, false},
		{"9000,", nil, true},
		{"hello", nil, true},
		{"0", nil, true},
		{"70000", nil, true},
	}
	for _, tt := range tests {
		got, err := parsePorts(tt.in)
		if (err != nil) != tt.wantErr || !slices.Equal(got, tt.want) {
			t.Errorf("parsePorts(%q) = %v, %v; want %v, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var ports []int
	var lns []net.Listener
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	for _, ln := range lns {
		_ = ln.Close()
	}
	return ports
}

// TestCommand runs the mode with Istio's arguments and checks both ports answer.
func TestCommand(t *testing.T) {
	ports := freePorts(t, 2)
	portList := strconv.Itoa(ports[0]) + "," + strconv.Itoa(ports[1])
	ctx, stop := context.WithCancel(context.Background())
	app := &cli.App{Name: "meshlab", Commands: []*cli.Command{Command()}, Writer: io.Discard, ErrWriter: io.Discard}
	done := make(chan error, 1)
	go func() {
		done <- app.RunContext(ctx, []string{"meshlab", "tcp-echo", "--host", "127.0.0.1", portList, "two"})
	}()
	for _, p := range ports {
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(p))
		var c net.Conn
		deadline := time.Now().Add(5 * time.Second)
		for {
			var err error
			if c, err = net.DialTimeout("tcp", addr, time.Second); err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("port %d not listening: %v", p, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		if got := roundTrip(t, c, bufio.NewReader(c), "x\n"); got != "two x\n" {
			t.Errorf("port %d answered %q", p, got)
		}
		_ = c.Close()
	}
	stop()
	if err := <-done; err != nil {
		t.Errorf("command: %v", err)
	}

	argTests := []struct {
		args    []string
		wantErr string
	}{
		{[]string{"meshlab", "tcp-echo", "--help"}, ""},
		{[]string{"meshlab", "tcp-echo"}, "want [PORTS] PREFIX"},
		{[]string{"meshlab", "tcp-echo", "9000", "a", "b"}, "want [PORTS] PREFIX"},
		{[]string{"meshlab", "tcp-echo", "9000,x", "hello"}, `port "x"`},
	}
	for _, tt := range argTests {
		out := new(strings.Builder)
		app := &cli.App{Name: "meshlab", Commands: []*cli.Command{Command()}, Writer: out, ErrWriter: out,
			ExitErrHandler: func(*cli.Context, error) {}}
		err := app.Run(tt.args)
		if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
			t.Errorf("%v: err = %v, want %q", tt.args, err, tt.wantErr)
		}
	}
}
