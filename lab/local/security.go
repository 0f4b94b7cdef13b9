package local

import (
	"os/user"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// AppUIDBase is the first uid of the pods whose manifest names none: each
// such pod gets a uid (and a group of the same number) of its own, so that
// no pod may signal, trace or read the /proc files of another's processes.
// Pods share the host's file system, so these uids must belong to no one:
// they sit far above every range accounts come from (login.defs' 1000-60000,
// systemd's dynamic users up to 65519, subordinate ids from 100000), below
// 2^31, which some tools read as signed, and a uid the user database knows
// is skipped.
const AppUIDBase = 2_000_000_000

// containerPath is the PATH a container gets: the one runc and Docker give
// an image that sets none.
const containerPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// identity is who a container's processes run as.
type identity struct {
	uid, gid uint32
}

// allocUID returns the next unused uid of the lab's range.
func (r *Runtime) allocUID() uint32 {
	r.mu.Lock()
	defer r.mu.Unlock()
	for {
		uid := AppUIDBase + r.uids
		r.uids++
		if !known(uid) {
			return uid
		}
	}
}

// known reports whether uid or the gid of the same number is an account's.
func known(id uint32) bool {
	s := strconv.FormatUint(uint64(id), 10)
	_, uerr := user.LookupId(s)
	_, gerr := user.LookupGroupId(s)
	return uerr == nil || gerr == nil
}

// appIdentity is the user and group container i of the pod template runs as,
// as kubelet has it: the container's securityContext over the pod's, else
// def (the pod's uid of the lab's range), with the group the same number as
// the uid when none is given (kubelet would take the image's, often root).
// It refuses what containerPrivileges refuses (CheckRunnable said so at
// apply; this keeps a pod from starting with privileges whatever path its
// spec came by).
func appIdentity(spec corev1.PodSpec, i int, def uint32) (identity, error) {
	if errs := containerPrivileges(&spec, i, field.NewPath("spec", "template", "spec")); len(errs) > 0 {
		return identity{}, errs.ToAggregate()
	}
	c := spec.Containers[i]
	var uid, gid *int64
	if psc := spec.SecurityContext; psc != nil {
		uid, gid = psc.RunAsUser, psc.RunAsGroup
	}
	if sc := c.SecurityContext; sc != nil {
		if sc.RunAsUser != nil {
			uid = sc.RunAsUser
		}
		if sc.RunAsGroup != nil {
			gid = sc.RunAsGroup
		}
	}
	id := identity{uid: def, gid: def}
	if uid != nil {
		id.uid, id.gid = uint32(*uid), uint32(*uid)
	}
	if gid != nil {
		id.gid = uint32(*gid)
	}
	return id, nil
}

// containerEnv is a container's whole environment, as kubelet builds one:
// PATH, HOSTNAME and HOME, the pod's identity (the lab's downward API),
// then the container's own variables. Nothing of the runtime's own
// environment (proxy settings, credentials, paths of root's) gets in.
func containerEnv(p *pod, id identity, env []string) []string {
	home := "/"
	if id.uid == 0 {
		home = "/root"
	}
	return append([]string{
		"PATH=" + containerPath,
		"HOSTNAME=" + p.Name,
		"HOME=" + home,
		"POD_NAME=" + p.Name,
		"POD_NAMESPACE=" + p.Namespace,
		"INSTANCE_IP=" + p.IP,
		"SERVICE_ACCOUNT=" + p.serviceAccount,
	}, env...)
}
