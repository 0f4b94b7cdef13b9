package lab_test

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/google/nftables"
	"golang.org/x/sys/unix"

	"github.com/meshlab/meshlab/dataplane/capture"
	"github.com/meshlab/meshlab/lab"
	"github.com/meshlab/meshlab/lab/labtest"
	"github.com/meshlab/meshlab/lab/local"
	"github.com/meshlab/meshlab/lab/podnet"
)

// nftFlushArg makes the test binary `nft flush ruleset` (there may be no
// nft on the machine): the same netlink batch, from inside a pod.
const nftFlushArg = "meshlab-test-nft-flush-ruleset"

func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == nftFlushArg {
		if err := nftFlush(len(os.Args) > 2 && os.Args[2] == "scratch"); err != nil {
			fmt.Println("nft flush ruleset:", err)
			os.Exit(1)
		}
		fmt.Println("nft flush ruleset: done")
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// nftFlush deletes every nftables table of its network namespace; with
// scratch, of a new namespace it first gives a table, to show the call does
// what nft's does where it is allowed.
func nftFlush(scratch bool) error {
	runtime.LockOSThread()
	if scratch {
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			return err
		}
		c, err := nftables.New()
		if err != nil {
			return err
		}
		c.AddTable(&nftables.Table{Name: "scratch", Family: nftables.TableFamilyIPv4})
		if err := c.Flush(); err != nil {
			return err
		}
	}
	c, err := nftables.New()
	if err != nil {
		return err
	}
	c.FlushRuleset()
	if err := c.Flush(); err != nil {
		return err
	}
	if scratch {
		if tables, err := c.ListTables(); err != nil || len(tables) != 0 {
			return fmt.Errorf("tables after the flush: %v %v", tables, err)
		}
	}
	return nil
}

// TestPodIsUnprivileged: an app container runs as kubelet would run it with
// a uid of its own, no capabilities and no_new_privs, so from inside a pod
// the lab's state (the store with the CA key and TLS secrets, the logs of
// other pods), other pods' processes and the pod's capture rules are out of
// reach; and down puts net.ipv4.ip_forward back.
func TestPodIsUnprivileged(t *testing.T) {
	labtest.Skip(t)
	l := labtest.New(t, "..")
	const forward = "/proc/sys/net/ipv4/ip_forward"
	orig, err := os.ReadFile(forward)
	if err != nil {
		t.Fatal(err)
	}
	// Back to the machine's value while this test still holds the lab lock.
	defer func() {
		if err := os.WriteFile(forward, orig, 0o644); err != nil {
			t.Error(err)
		}
	}()
	if err := os.WriteFile(forward, []byte("0\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	l.MustRun("up", "--http-port", "18082", "--https-port", "18445", "--api-port", "25016")
	// bookinfo serves through the gateway with every app unprivileged.
	if body := labtest.Get(t, "http://127.0.0.1:18082/productpage"); reviewsVersion(body) == "none" {
		t.Errorf("productpage shows no reviews:\n%s", body)
	}
	var st lab.Status
	if err := json.Unmarshal([]byte(l.MustRun("status", "-o", "json")), &st); err != nil {
		t.Fatal(err)
	}
	ratings, err := st.FindPod("default", "ratings")
	if err != nil {
		t.Fatal(err)
	}
	product, err := st.FindPod("default", "productpage")
	if err != nil {
		t.Fatal(err)
	}
	app := ratings.Containers[len(ratings.Containers)-1]
	other := product.Containers[len(product.Containers)-1]
	for _, c := range []lab.Container{app, other} {
		if c.UID < local.AppUIDBase || c.GID != c.UID {
			t.Errorf("app container %s runs as uid %d gid %d; want a uid of the lab's (from %d) and its own group", c.Name, c.UID, c.GID, local.AppUIDBase)
		}
	}
	if app.UID == other.UID {
		t.Errorf("ratings and productpage both run as uid %d; want one uid per pod", app.UID)
	}

	inPod := func(args ...string) (string, error) {
		return l.Run(append([]string{"exec", "-n", "default", "ratings", "--"}, args...)...)
	}
	id, err := inPod("id")
	if want := fmt.Sprintf("uid=%d gid=%d groups=%d", app.UID, app.GID, app.GID); err != nil || !strings.HasPrefix(id, want) {
		t.Errorf("id in ratings: %v %q; want %q", err, id, want)
	}
	if id, err := l.Run("exec", "-n", "default", "ratings", "-c", "istio-proxy", "--", "id", "-u"); err != nil || strings.TrimSpace(id) != "1337" {
		t.Errorf("id -u in ratings' istio-proxy: %v %q; want 1337", err, id)
	}

	status, err := inPod("cat", "/proc/self/status")
	if err != nil {
		t.Fatalf("cat /proc/self/status in ratings: %v\n%s", err, status)
	}
	for _, want := range []string{"NoNewPrivs:\t1", "CapInh:\t0000000000000000", "CapPrm:\t0000000000000000",
		"CapEff:\t0000000000000000", "CapBnd:\t0000000000000000", "CapAmb:\t0000000000000000"} {
		if !strings.Contains(status, want+"\n") {
			t.Errorf("/proc/self/status in ratings has no %q:\n%s", want, status)
		}
	}
	env, err := inPod("env")
	if err != nil || strings.Contains(env, "MESHLAB_STATE_DIR") || !strings.Contains(env, "HOME=/\n") {
		t.Errorf("env in ratings: %v\n%s\nwant a container's environment (HOME=/), none of the runtime's", err, env)
	}

	// Nothing of the lab's state, nor of another pod, can be read.
	for _, path := range []string{
		filepath.Join(l.State, lab.ControlPlaneDir, "meshlab.db"), // the CA key and TLS secrets are in the store
		filepath.Join(l.State, lab.StatusFile),
		filepath.Join(l.State, lab.DaemonLog),
		other.Log,                                  // another pod's log
		fmt.Sprintf("/proc/%d/environ", other.PID), // another pod's process
	} {
		if out, err := inPod("cat", path); err == nil || !strings.Contains(out, "Permission denied") {
			t.Errorf("cat %s in ratings: %v\n%.300s\nwant Permission denied", path, err, out)
		}
	}
	if out, err := inPod("ls", l.State); err == nil || !strings.Contains(out, "Permission denied") {
		t.Errorf("ls of the state dir in ratings: %v\n%s\nwant Permission denied", err, out)
	}
	if out, err := inPod("sh", "-c", "kill -0 "+strconv.Itoa(other.PID)); err == nil || !strings.Contains(out, "not permitted") {
		t.Errorf("kill -0 of productpage's app from ratings: %v %q; want Operation not permitted", err, out)
	}

	// The pod's capture rules hold: nft flush ruleset fails in the pod (no
	// CAP_NET_ADMIN), though the same call works where it is allowed.
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(self, nftFlushArg, "scratch").CombinedOutput(); err != nil {
		t.Fatalf("nft flush ruleset as root in a scratch namespace: %v\n%s", err, out)
	}
	if out, err := inPod(self, nftFlushArg); err == nil || !strings.Contains(out, "operation not permitted") {
		t.Errorf("nft flush ruleset in ratings: %v\n%s\nwant operation not permitted", err, out)
	}
	var installed bool
	if err := podnet.Do(ratings.Netns, func() (err error) { installed, err = capture.Installed(); return err }); err != nil || !installed {
		t.Errorf("ratings' capture table after the flush attempt: installed=%v %v", installed, err)
	}

	// The store, its directory and the state directory are root's alone.
	for path, want := range map[string]os.FileMode{l.State: 0o700, filepath.Join(l.State, lab.ControlPlaneDir): 0o700,
		filepath.Join(l.State, lab.ControlPlaneDir, "meshlab.db"): 0o600, filepath.Join(l.State, lab.DaemonLog): 0o600,
		filepath.Join(l.State, lab.StatusFile): 0o600, other.Log: 0o600} {
		if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != want {
			t.Errorf("%s: %v %v; want mode %v", path, fi.Mode(), err, want)
		}
	}

	l.MustRun("down")
	if b, err := os.ReadFile(forward); err != nil || strings.TrimSpace(string(b)) != "0" {
		t.Errorf("ip_forward after down = %q, %v; want 0 as before up", b, err)
	}
}
