package csr

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/meshlab/meshlab/controlplane/ca"
)

// Store keeps the pod tokens; *store.Store satisfies it.
type Store interface {
	GetMeta(bucket, key string) ([]byte, error)
	PutMeta(bucket, key string, val []byte) error
	ListMeta(bucket string) (map[string][]byte, error)
}

// TokenBucket is the metadata bucket of the pod tokens: the key is the
// SHA-256 of a token in hex, so a copy of the store gives away no token.
const TokenBucket = "podtokens"

// PodToken is what a pod token stands for.
type PodToken struct {
	ca.Identity
	Pod     string    `json:"pod"`
	Created time.Time `json:"created"`
}

// PodTokens are the local runtime's workload credentials, its stand-in for
// Kubernetes' projected istio-token: the runtime asks for one per pod
// (Issue), mounts it where only the pod's istio-proxy can read it, and the
// proxy sends it to CreateCertificate. The token names the pod's namespace
// and service account, and nothing a CSR says can change them. The store
// keeps their hashes, so they survive a restart of the control plane.
type PodTokens struct {
	mu sync.Mutex // one Issue or Revoke at a time: each reads, then writes
	st Store
}

// NewPodTokens keeps the tokens in st.
func NewPodTokens(st Store) *PodTokens { return &PodTokens{st: st} }

// Issue makes a new random token (256 bits, hex) for the pod ns/pod running
// as service account sa, replacing any token the pod had: a restarted pod
// gets a fresh one and the old one stops working.
func (p *PodTokens) Issue(ns, sa, pod string) (string, error) {
	id := ca.Identity{Namespace: ns, ServiceAccount: sa}
	if err := id.Validate(); err != nil {
		return "", fmt.Errorf("issue a token for pod %s/%s: %w", ns, pod, err)
	}
	if errs := validation.IsDNS1123Subdomain(pod); len(errs) > 0 {
		return "", fmt.Errorf("issue a token for pod %s/%s: pod name: %v", ns, pod, errs)
	}
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("issue a token for pod %s/%s: %w", ns, pod, err)
	}
	token := hex.EncodeToString(b)
	val, err := json.Marshal(PodToken{Identity: id, Pod: pod, Created: time.Now().UTC()})
	if err != nil {
		return "", fmt.Errorf("issue a token for pod %s/%s: %w", ns, pod, err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.revoke(ns, pod); err != nil {
		return "", fmt.Errorf("issue a token for pod %s/%s: %w", ns, pod, err)
	}
	if err := p.st.PutMeta(TokenBucket, hash(token), val); err != nil {
		return "", fmt.Errorf("issue a token for pod %s/%s: %w", ns, pod, err)
	}
	return token, nil
}

// Revoke forgets the token of pod ns/pod (when the pod is deleted); none is
// not an error.
func (p *PodTokens) Revoke(ns, pod string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.revoke(ns, pod); err != nil {
		return fmt.Errorf("revoke the token of pod %s/%s: %w", ns, pod, err)
	}
	return nil
}

func (p *PodTokens) revoke(ns, pod string) error {
	all, err := p.st.ListMeta(TokenBucket)
	if err != nil {
		return err
	}
	for key, val := range all {
		var t PodToken
		if json.Unmarshal(val, &t) == nil && t.Namespace == ns && t.Pod == pod {
			if err := p.st.PutMeta(TokenBucket, key, nil); err != nil {
				return err
			}
		}
	}
	return nil
}

// Authenticate looks the token's hash up; comparing hashes by map lookup
// leaks nothing useful through timing, as the hash of a guess says nothing
// about the token's.
func (p *PodTokens) Authenticate(_ context.Context, token string) (ca.Identity, error) {
	val, err := p.st.GetMeta(TokenBucket, hash(token))
	if err != nil {
		return ca.Identity{}, fmt.Errorf("look the pod token up: %w", err)
	}
	if val == nil {
		return ca.Identity{}, fmt.Errorf("%w: not a pod token this control plane issued (or its pod was deleted or restarted)", ErrUnauthenticated)
	}
	var t PodToken
	if err := json.Unmarshal(val, &t); err != nil {
		return ca.Identity{}, fmt.Errorf("read pod token record: %w", err)
	}
	return t.Identity, nil
}

func hash(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}
