package lab

import (
	"github.com/meshlab/meshlab/controlplane/api"
)

// ControlPlaneClient finds the control plane a command talks to: addr when
// given, else the running lab's of stateDir, else the default port on
// loopback. Its credential is token, else the lab's token from the state
// directory, which is only ever sent to that lab's API.
//
// A token that cannot be read is not fatal (calls that need none still
// work, the others are refused with the control plane's hint): it comes
// back as warning, for the caller to show.
func ControlPlaneClient(stateDir, addr, token string) (cl *api.Client, warning error) {
	var labAddr string
	if stateDir != "" {
		if st, err := ReadStatus(stateDir); err == nil {
			labAddr = st.URLs.ControlPlane
		}
	}
	switch {
	case addr != "":
	case labAddr != "":
		addr = labAddr
	default:
		addr = "127.0.0.1:15014"
	}
	cl = api.NewClient(addr)
	cl.Token = token
	if cl.Token == "" && labAddr != "" && api.NewClient(labAddr).Base == cl.Base {
		cl.Token, warning = ReadAPIToken(stateDir)
	}
	return cl, warning
}
