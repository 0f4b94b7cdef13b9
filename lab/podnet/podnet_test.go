package podnet

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/google/nftables"
	"golang.org/x/sys/unix"
)

// testNetwork is apart from the real lab's (other bridge, other namespace
// prefix, a /24 the lab's IPAM reaches last) so the test can run beside it.
var testNetwork = Network{
	Bridge:      "mlabt0",
	Prefix:      netip.MustParsePrefix("198.18.254.0/24"),
	Gateway:     netip.MustParseAddr("198.18.254.1"),
	NetnsPrefix: "mlabt-",
}

func needRoot(t *testing.T) {
	t.Helper()
	if err := Check(); err != nil {
		t.Skipf("pod network test: %v", err)
	}
}

func TestNetwork(t *testing.T) {
	needRoot(t)
	ctx := context.Background()
	n := testNetwork
	if err := n.Teardown(ctx); err != nil { // an interrupted earlier run
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.Teardown(ctx) })

	for i := 0; i < 2; i++ {
		if err := n.EnsureBridge(ctx); err != nil {
			t.Fatalf("EnsureBridge #%d: %v", i+1, err)
		}
	}
	ipA, ipB := netip.MustParseAddr("198.18.254.2"), netip.MustParseAddr("198.18.254.3")
	a, err := n.AddPod(ctx, "productpage-v1-abcde", ipA)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n.AddPod(ctx, "reviews", ipB); err != nil {
		t.Fatal(err)
	}
	// Adding a pod again replaces it.
	b, err := n.AddPod(ctx, "reviews", ipB)
	if err != nil {
		t.Fatalf("AddPod again: %v", err)
	}
	if len(a.HostVeth) > 15 || a.HostVeth == b.HostVeth {
		t.Fatalf("host veths %q and %q: want distinct names of at most 15 bytes", a.HostVeth, b.HostVeth)
	}
	if a.NetnsPath != "/run/netns/mlabt-productpage-v1-abcde" {
		t.Fatalf("NetnsPath = %q", a.NetnsPath)
	}

	t.Run("pod sees lo and eth0 with its address", func(t *testing.T) {
		var got []string
		err := Do(a.NetnsPath, func() error {
			ifs, err := net.Interfaces()
			if err != nil {
				return err
			}
			for _, i := range ifs {
				addrs, _ := i.Addrs()
				got = append(got, fmt.Sprintf("%s up=%v %v", i.Name, i.Flags&net.FlagUp != 0, addrs))
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		want := []string{"lo up=true [127.0.0.1/8 ::1/128]", "eth0 up=true [198.18.254.2/24"}
		if len(got) != 2 || got[0] != want[0] || got[1][:len(want[1])] != want[1] {
			t.Fatalf("interfaces in pod = %q, want %q...", got, want)
		}
	})

	t.Run("pod to pod and host to pod", func(t *testing.T) {
		var l net.Listener
		if err := Do(b.NetnsPath, func() (err error) { l, err = net.Listen("tcp4", netip.AddrPortFrom(ipB, 9080).String()); return err }); err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				c.Write([]byte(c.RemoteAddr().(*net.TCPAddr).IP.String()))
				c.Close()
			}
		}()
		for _, from := range []struct {
			ns   string
			want string
		}{{a.NetnsPath, ipA.String()}, {"", n.Gateway.String()}} {
			var got []byte
			dial := func() error {
				c, err := net.DialTimeout("tcp4", l.Addr().String(), 10*time.Second)
				if err != nil {
					return err
				}
				defer c.Close()
				c.SetReadDeadline(time.Now().Add(10 * time.Second))
				got, err = io.ReadAll(c)
				return err
			}
			var err error
			if from.ns == "" {
				err = dial()
			} else {
				err = Do(from.ns, dial)
			}
			if err != nil || string(got) != from.want {
				t.Fatalf("from %q: server saw %q, %v; want %s", from.ns, got, err, from.want)
			}
		}
	})

	left, err := n.Leftovers()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"bridge mlabt0", "netns mlabt-reviews", "veth " + a.HostVeth} {
		if !slices.Contains(left, want) {
			t.Errorf("Leftovers() = %q, want it to list %q", left, want)
		}
	}

	for i := 0; i < 2; i++ {
		if err := n.DelPod(ctx, "reviews"); err != nil {
			t.Fatalf("DelPod #%d: %v", i+1, err)
		}
	}
	if _, err := os.Stat(b.NetnsPath); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("netns %s after DelPod: %v", b.NetnsPath, err)
	}
	if err := n.Teardown(ctx); err != nil {
		t.Fatal(err)
	}
	if left, err := n.Leftovers(); err != nil || len(left) != 0 {
		t.Fatalf("Leftovers() after Teardown = %q, %v; want nothing", left, err)
	}
}

func TestCheckWithoutPrivilege(t *testing.T) {
	needRoot(t)
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with its dropped credentials
		// setresuid(-1, 65534, -1) on this thread alone clears its effective
		// capabilities, as for an unprivileged user.
		if _, _, e := unix.RawSyscall(unix.SYS_SETRESUID, ^uintptr(0), 65534, ^uintptr(0)); e != 0 {
			errc <- fmt.Errorf("setresuid: %w", e)
			return
		}
		_, err := testNetwork.AddPod(context.Background(), "unprivileged", netip.MustParseAddr("198.18.254.9"))
		errc <- err
	}()
	if err := <-errc; !errors.Is(err, ErrNoPrivilege) {
		t.Fatalf("without privileges: %v, want ErrNoPrivilege", err)
	}
}

// A "meshlab" nftables table in the host is a leftover too. It is made in a
// throwaway namespace standing in for the host: a real one in the host would
// be the lab's (or another test's) own.
func TestLeftoverTable(t *testing.T) {
	needRoot(t)
	ctx := context.Background()
	const name = "mlabtables-test"
	n := Network{Bridge: "mlabtt0", Prefix: testNetwork.Prefix, Gateway: testNetwork.Gateway, NetnsPrefix: "mlabtt-"}
	h, err := newNamedNetns(name)
	if err != nil {
		t.Fatal(err)
	}
	h.Close()
	t.Cleanup(func() { _ = deleteNamedNetns(NetnsDir + "/" + name) })

	var before, after []string
	err = Do(NetnsDir+"/"+name, func() error {
		c, err := nftables.New()
		if err != nil {
			return err
		}
		c.AddTable(&nftables.Table{Name: "meshlab", Family: nftables.TableFamilyIPv4})
		if err := c.Flush(); err != nil {
			return err
		}
		if before, err = n.Leftovers(); err != nil {
			return err
		}
		if err := n.Teardown(ctx); err != nil {
			return err
		}
		after, err = n.Leftovers()
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"nftables table ip meshlab"}; !slices.Equal(before, want) {
		t.Fatalf("Leftovers() = %q, want %q", before, want)
	}
	if len(after) != 0 {
		t.Fatalf("Leftovers() after Teardown = %q, want nothing", after)
	}
}

// Teardown puts back the host sysctls EnsureBridge changed, from the record,
// so even the Teardown of another process (down after a crash) does; a
// second EnsureBridge keeps the first one's record. It runs in a throwaway
// namespace standing in for the host: ip_forward is per network namespace.
func TestTeardownRestoresSysctls(t *testing.T) {
	needRoot(t)
	ctx := context.Background()
	for _, before := range []string{"0", "1"} {
		t.Run("ip_forward="+before, func(t *testing.T) {
			const name = "mlabsysctl-test"
			record := t.TempDir() + "/sysctls.json"
			n := Network{Bridge: "mlabts0", Prefix: testNetwork.Prefix, Gateway: testNetwork.Gateway, NetnsPrefix: "mlabts-", SysctlRecord: record}
			h, err := newNamedNetns(name)
			if err != nil {
				t.Fatal(err)
			}
			h.Close()
			t.Cleanup(func() { _ = deleteNamedNetns(NetnsDir + "/" + name) })

			var up, down string
			err = Do(NetnsDir+"/"+name, func() error {
				if err := writeSysctl("net.ipv4.ip_forward", before); err != nil {
					return err
				}
				for range 2 {
					if err := n.EnsureBridge(ctx); err != nil {
						return err
					}
				}
				if up, err = readSysctl("net.ipv4.ip_forward"); err != nil {
					return err
				}
				crashed := Network{Bridge: n.Bridge, Prefix: n.Prefix, Gateway: n.Gateway, NetnsPrefix: n.NetnsPrefix, SysctlRecord: record}
				if err := crashed.Teardown(ctx); err != nil {
					return err
				}
				down, err = readSysctl("net.ipv4.ip_forward")
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			if up != "1" {
				t.Errorf("ip_forward after EnsureBridge = %s, want 1", up)
			}
			if down != before {
				t.Errorf("ip_forward after Teardown = %s, want %s as before EnsureBridge", down, before)
			}
			if _, err := os.Stat(record); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("Teardown left the sysctl record: %v", err)
			}
		})
	}
}
