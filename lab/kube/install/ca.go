package install

import (
	"context"
	"fmt"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshlab/meshlab/controlplane/ca"
)

// NewMeshCA returns o with a new mesh root: the cacerts Secret to create
// and its root as the webhooks' caBundle.
func NewMeshCA(o Options) (Options, error) {
	c, err := ca.New()
	if err != nil {
		return o, err
	}
	files, err := c.Files()
	if err != nil {
		return o, err
	}
	o.CACerts, o.CABundle = files, c.RootPEM()
	return o, nil
}

// MeshCA returns o with the cluster's mesh CA: the root of its cacerts
// Secret when it has one, which is kept as it is (a re-install never
// rotates the root under running workloads, and an operator's plugged-in CA
// stays the operator's), or else a new one (NewMeshCA).
func (in *Installer) MeshCA(ctx context.Context, o Options) (Options, error) {
	if in.start.IsZero() {
		in.start = time.Now()
	}
	s, err := in.kube.CoreV1().Secrets(Namespace).Get(ctx, CACertsSecret, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		in.progress("no Secret %s/%s: making a new mesh root", Namespace, CACertsSecret)
		return NewMeshCA(o)
	}
	if err != nil {
		return o, fmt.Errorf("reading the mesh CA, Secret %s/%s: %w", Namespace, CACertsSecret, err)
	}
	c, err := ca.FromFiles(s.Data)
	if err != nil {
		return o, fmt.Errorf("the mesh CA in Secret %s/%s: %w (fix it, or delete it for a new root)", Namespace, CACertsSecret, err)
	}
	in.progress("keeping the mesh CA of Secret %s/%s (root %q, expires %s)", Namespace, CACertsSecret,
		c.Root().Subject.CommonName, c.Root().NotAfter.Format(time.DateOnly))
	o.CACerts, o.CABundle = nil, c.RootPEM()
	return o, nil
}
