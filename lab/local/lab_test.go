package local

import (
	"slices"
	"testing"
	"time"

	"github.com/meshlab/meshlab/lab"
)

// TestWorkloadCertTTLReachesEveryProcess: up's --workload-cert-ttl goes to
// the runtime process, and from it to the control plane (its default) and
// to every proxy (what each asks for, which wins over the default).
func TestWorkloadCertTTLReachesEveryProcess(t *testing.T) {
	flagValue := func(argv []string, name string) string {
		if i := slices.Index(argv, name); i >= 0 && i+1 < len(argv) {
			return argv[i+1]
		}
		return ""
	}
	for _, c := range []struct {
		ttl  time.Duration
		want string
	}{{0, ""}, {30 * time.Second, "30s"}} {
		if got := flagValue(daemonArgs("/tmp/x", lab.UpOptions{WorkloadCertTTL: c.ttl}), "--workload-cert-ttl"); got != c.want {
			t.Errorf("daemon args with %v: --workload-cert-ttl %q, want %q", c.ttl, got, c.want)
		}
		r := &Runtime{opts: Options{Self: "/bin/meshlab", WorkloadCertTTL: c.ttl}}
		for _, mode := range []string{"proxy", "gateway"} {
			argv := r.proxyArgv(mode, &pod{})
			if got := flagValue(argv, "--secret-ttl"); got != c.want {
				t.Errorf("%s argv with %v: --secret-ttl %q, want %q (%v)", mode, c.ttl, got, c.want, argv)
			}
		}
	}
}
