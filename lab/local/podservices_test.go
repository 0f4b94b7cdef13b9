package local

import (
	"fmt"
	"testing"
)

// kube-proxy's view of the registry: every port of every ClusterIP
// Service with a VIP, to its ready endpoints' target ports, in a stable
// order; headless Services, Services without a VIP and SCTP are not
// programmed.
func TestServicesNAT(t *testing.T) {
	got := fmt.Sprint(servicesNAT(testRegistry(t)))
	// Protocol 6 is TCP, 17 UDP.
	want := "[" +
		"{198.19.0.20:8000 6 [198.18.0.21:80]} " +
		"{198.19.0.21:8000 6 []} " +
		"{198.19.0.22:9000 6 [198.18.0.24:9000 198.18.0.25:9000]} " +
		"{198.19.0.22:9000 17 [198.18.0.24:9000 198.18.0.25:9000]}" +
		"]"
	if got != want {
		t.Errorf("servicesNAT =\n%s\nwant\n%s", got, want)
	}
}
