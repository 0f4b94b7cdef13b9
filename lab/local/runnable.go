package local

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/meshlab/meshlab/lab/image"
)

// imageHint is what the local runtime runs, said where it refuses a
// container it cannot run.
const imageHint = "the local runtime runs this binary's modes (image " + image.Repository +
	", args …) or a host command given by absolute path in `command`; use --runtime kind for other images"

// CheckRunnable says what of a pod template the local runtime cannot run,
// one error per field, with fld the path of the template's spec (e.g.
// spec.template.spec). A container runs either
//
//   - one of this binary's modes: image meshlab.local/meshlab (any tag) with
//     args naming the mode, the image's entrypoint /meshlab being implied,
//     or with command ["/meshlab" or "meshlab", mode, …]; or
//   - a host executable named by absolute path in command[0], which must
//     exist and be executable here (the image is then only shown: the local
//     runtime has no image store and pulls nothing).
//
// It also refuses what the runtime does not give a pod (the host's
// namespaces, host ports, init containers, lifecycle hooks, volumes other
// than configMap, secret, emptyDir and projected configMap/secret, gRPC
// probes) and what would give an app container privileges (privileged,
// added capabilities, root or istio-proxy's uid or gid). spec is the
// template as written, before injection adds istio-init and istio-proxy.
// Validation of the object itself (names, ports, …) is the API server's
// rules, checked before; CheckRunnable assumes a valid spec.
func CheckRunnable(spec *corev1.PodSpec, fld *field.Path) field.ErrorList {
	var errs field.ErrorList
	const other = "; use --runtime kind"
	if spec.HostNetwork {
		errs = append(errs, field.Forbidden(fld.Child("hostNetwork"),
			"the local runtime gives every pod a network namespace of its own, where the sidecar captures its traffic"+other))
	}
	if spec.HostPID {
		errs = append(errs, field.Forbidden(fld.Child("hostPID"),
			"the local runtime gives no pod the host's processes to act on (a pod runs as a uid of its own, without privileges)"+other))
	}
	if spec.HostIPC {
		errs = append(errs, field.Forbidden(fld.Child("hostIPC"),
			"the local runtime gives no pod the host's IPC to act on (a pod runs as a uid of its own, without privileges)"+other))
	}
	if len(spec.InitContainers) > 0 {
		errs = append(errs, field.Forbidden(fld.Child("initContainers"),
			"the local runtime runs no init containers (its own istio-init aside): do their work in the container's command, or use --runtime kind"))
	}
	for i := range spec.Volumes {
		errs = append(errs, checkVolume(&spec.Volumes[i], fld.Child("volumes").Index(i))...)
	}
	seen := map[string]bool{} // a pod-level field is reported once, not per container
	for i := range spec.Containers {
		c := &spec.Containers[i]
		cf := fld.Child("containers").Index(i)
		errs = append(errs, checkArgv(c, cf)...)
		for j, p := range c.Ports {
			if p.HostPort != 0 {
				errs = append(errs, field.Forbidden(cf.Child("ports").Index(j).Child("hostPort"),
					"the local runtime publishes no host ports; publish the port through a NodePort Service (127.0.0.1:nodePort)"))
			}
		}
		for _, p := range []struct {
			name  string
			probe *corev1.Probe
		}{{"livenessProbe", c.LivenessProbe}, {"readinessProbe", c.ReadinessProbe}, {"startupProbe", c.StartupProbe}} {
			if p.probe != nil && p.probe.GRPC != nil {
				errs = append(errs, field.Forbidden(cf.Child(p.name, "grpc"),
					"the local runtime probes with httpGet, tcpSocket and exec; use one of them"))
			}
		}
		// The supervisor restarts every container that exits, as kubelet
		// does under a Deployment's restartPolicy Always.
		if p := c.RestartPolicy; p != nil && *p != corev1.ContainerRestartPolicyAlways {
			errs = append(errs, field.Invalid(cf.Child("restartPolicy"), *p,
				"the local runtime restarts every container that exits (the pod's restartPolicy Always); remove the field"))
		}
		if len(c.RestartPolicyRules) > 0 {
			errs = append(errs, field.Forbidden(cf.Child("restartPolicyRules"),
				"the local runtime restarts every container that exits, whatever its exit code; remove the rules"))
		}
		if c.Lifecycle != nil && (c.Lifecycle.PostStart != nil || c.Lifecycle.PreStop != nil) {
			errs = append(errs, field.Forbidden(cf.Child("lifecycle"),
				"the local runtime runs no postStart or preStop hooks: remove them, or use --runtime kind"))
		}
		for _, e := range containerPrivileges(spec, i, fld) {
			if !seen[e.Error()] {
				seen[e.Error()] = true
				errs = append(errs, e)
			}
		}
	}
	return errs
}

// IsMeshlabImage reports whether ref is this binary's image, with any tag
// or digest.
func IsMeshlabImage(ref string) bool {
	name, _, _ := strings.Cut(ref, "@")
	if i := strings.LastIndexByte(name, ':'); i > strings.LastIndexByte(name, '/') {
		name = name[:i]
	}
	return name == image.Repository
}

// Argv is what the local runtime executes for c (a container CheckRunnable
// accepts): command and args, with the meshlab image's entrypoint before
// args when command is empty, as a container engine does. "/meshlab" and
// "meshlab" name this binary, which the runtime puts in their place.
func Argv(c *corev1.Container) []string {
	argv := append(append([]string{}, c.Command...), c.Args...)
	if len(c.Command) == 0 && IsMeshlabImage(c.Image) {
		argv = append([]string{image.BinaryPath}, argv...)
	}
	return argv
}

func isSelf(arg string) bool { return arg == image.BinaryPath || arg == "meshlab" }

// checkArgv says whether the local runtime can run c's command.
func checkArgv(c *corev1.Container, fld *field.Path) field.ErrorList {
	switch {
	case len(c.Command) == 0 && !IsMeshlabImage(c.Image):
		return field.ErrorList{field.Invalid(fld.Child("image"), c.Image, imageHint)}
	case len(c.Command) == 0:
		// The image's entrypoint is /meshlab: args name the mode.
		if len(c.Args) == 0 {
			return field.ErrorList{field.Required(fld.Child("args"),
				"the image's entrypoint is /meshlab, which needs a mode to run, e.g. args: [sample, httpbin]")}
		}
		if isSelf(c.Args[0]) {
			return field.ErrorList{field.Invalid(fld.Child("args").Index(0), c.Args[0],
				"the image's entrypoint is already /meshlab; begin args with the mode (e.g. args: [sample, httpbin]) or put /meshlab in `command`")}
		}
		if strings.HasPrefix(c.Args[0], "-") {
			return field.ErrorList{field.Invalid(fld.Child("args").Index(0), c.Args[0],
				"names no mode of /meshlab; begin args with the mode, e.g. args: [sample, httpbin]")}
		}
		return nil
	case isSelf(c.Command[0]):
		if !IsMeshlabImage(c.Image) {
			return field.ErrorList{field.Invalid(fld.Child("image"), c.Image,
				"command "+c.Command[0]+" is this binary, whose image is "+image.Repository+"; give that image (the local runtime does not pull "+c.Image+")")}
		}
		rest := append(append([]string{}, c.Command[1:]...), c.Args...)
		if len(rest) == 0 || strings.HasPrefix(rest[0], "-") {
			return field.ErrorList{field.Invalid(fld.Child("command"), c.Command,
				"names no mode of /meshlab; follow it with the mode, e.g. [/meshlab, sample, httpbin]")}
		}
		return nil
	case !filepath.IsAbs(c.Command[0]):
		return field.ErrorList{field.Invalid(fld.Child("command").Index(0), c.Command[0],
			"the local runtime runs a host command only when named by absolute path (it has no image to look "+c.Command[0]+" up in); "+
				"write its path on this machine, or use --runtime kind")}
	}
	return checkHostExecutable(c.Command[0], fld.Child("command").Index(0))
}

// checkHostExecutable says whether path is a file this machine can execute
// for an app container, which runs as an unprivileged uid of its own: the
// file must be executable by others, not only by its owner or group.
func checkHostExecutable(path string, fld *field.Path) field.ErrorList {
	fi, err := os.Stat(path)
	switch {
	case os.IsNotExist(err):
		return field.ErrorList{field.Invalid(fld, path,
			"no such file on this machine; the local runtime runs host commands from this machine's file system and pulls no image")}
	case err != nil:
		return field.ErrorList{field.Invalid(fld, path, fmt.Sprintf("cannot check the host command: %v", err))}
	case !fi.Mode().IsRegular():
		return field.ErrorList{field.Invalid(fld, path, "is not a file on this machine; name an executable file")}
	case fi.Mode().Perm()&0o001 == 0:
		return field.ErrorList{field.Invalid(fld, path, fmt.Sprintf(
			"is not executable by others (mode %#o) and a pod runs as a uid of its own; make it so (chmod o+rx) or name another", fi.Mode().Perm()))}
	}
	return nil
}

// localVolumes are the volume sources the local runtime provides.
const localVolumes = "the local runtime provides configMap, secret, emptyDir and projected (of configMap and secret) volumes only"

func checkVolume(v *corev1.Volume, fld *field.Path) field.ErrorList {
	src := v.VolumeSource
	switch {
	case src.ConfigMap != nil, src.Secret != nil, src.EmptyDir != nil:
		return nil
	case src.Projected != nil:
		var errs field.ErrorList
		for i, s := range src.Projected.Sources {
			sf := fld.Child("projected", "sources").Index(i)
			switch {
			case s.ConfigMap != nil, s.Secret != nil:
			case s.DownwardAPI != nil:
				errs = append(errs, field.Forbidden(sf.Child("downwardAPI"), localVolumes))
			case s.ServiceAccountToken != nil:
				errs = append(errs, field.Forbidden(sf.Child("serviceAccountToken"), localVolumes+" (a pod's identity is the sidecar's certificate)"))
			default:
				errs = append(errs, field.Forbidden(sf, localVolumes))
			}
		}
		return errs
	}
	// Name the source the manifest gives: its JSON field is the one set.
	for _, name := range volumeSourceNames(&src) {
		return field.ErrorList{field.Forbidden(fld.Child(name), localVolumes)}
	}
	return field.ErrorList{field.Forbidden(fld, localVolumes)}
}

// volumeSourceNames are the JSON names of the sources v sets, for the
// error's path.
func volumeSourceNames(v *corev1.VolumeSource) []string {
	var names []string
	rv := reflect.ValueOf(v).Elem()
	for i := range rv.NumField() {
		if f := rv.Field(i); f.Kind() == reflect.Pointer && !f.IsNil() {
			name, _, _ := strings.Cut(rv.Type().Field(i).Tag.Get("json"), ",")
			names = append(names, name)
		}
	}
	return names
}

// containerPrivileges refuses what would give app container i privileges,
// naming the field that asks for them: privileged, added capabilities,
// root (runAsUser or runAsGroup 0) and the sidecar's uid or gid 1337, whose
// traffic capture lets through (Istio requires apps not to use it). A pod
// level runAsUser that every container overrides is no one's. This is the
// one copy of the rule: appIdentity applies it again when a pod starts.
func containerPrivileges(spec *corev1.PodSpec, i int, fld *field.Path) field.ErrorList {
	var errs field.ErrorList
	c := spec.Containers[i]
	cf := fld.Child("containers").Index(i).Child("securityContext")
	pf := fld.Child("securityContext")
	var uid, gid *int64
	var uidField, gidField *field.Path
	if psc := spec.SecurityContext; psc != nil {
		uid, uidField = psc.RunAsUser, pf.Child("runAsUser")
		gid, gidField = psc.RunAsGroup, pf.Child("runAsGroup")
	}
	if sc := c.SecurityContext; sc != nil {
		if sc.RunAsUser != nil {
			uid, uidField = sc.RunAsUser, cf.Child("runAsUser")
		}
		if sc.RunAsGroup != nil {
			gid, gidField = sc.RunAsGroup, cf.Child("runAsGroup")
		}
		if sc.Privileged != nil && *sc.Privileged {
			errs = append(errs, field.Forbidden(cf.Child("privileged"), "the local runtime runs no container privileged"))
		}
		if sc.Capabilities != nil && len(sc.Capabilities.Add) > 0 {
			errs = append(errs, field.Invalid(cf.Child("capabilities", "add"), sc.Capabilities.Add, "the local runtime runs app containers without capabilities"))
		}
	}
	if uid != nil {
		errs = append(errs, checkID(*uid, uidField, "uid")...)
	}
	if gid != nil {
		errs = append(errs, checkID(*gid, gidField, "gid")...)
	}
	return errs
}

func checkID(v int64, fld *field.Path, what string) field.ErrorList {
	switch {
	case v == 0:
		return field.ErrorList{field.Invalid(fld, v, fmt.Sprintf(
			"the local runtime never runs an app container as root (its processes share the host's file system); remove the field or give another %s", what))}
	case v == ProxyUID:
		return field.ErrorList{field.Invalid(fld, v, fmt.Sprintf(
			"%d is istio-proxy's %s, whose traffic the sidecar does not capture (Istio requires apps not to run as it); give another %s", v, what, what))}
	case v < 0 || v > 1<<31-1:
		return field.ErrorList{field.Invalid(fld, v, fmt.Sprintf("want a %s from 1 to 2147483647", what))}
	}
	return nil
}

// CheckServiceRunnable says what of a Service the local runtime cannot
// serve, one error per field, with fld the path of its spec. The lab has
// ClusterIP Services (a VIP of its own range), headless ones (clusterIP:
// None) and NodePort ones (published on the host); it has no load
// balancer, no DNS names outside the mesh's registry, and proxies TCP and
// UDP only.
func CheckServiceRunnable(spec *corev1.ServiceSpec, fld *field.Path) field.ErrorList {
	var errs field.ErrorList
	switch spec.Type {
	case corev1.ServiceTypeLoadBalancer:
		errs = append(errs, field.Invalid(fld.Child("type"), spec.Type,
			"the local runtime has no load balancer; use type NodePort, which it publishes at 127.0.0.1:nodePort, or --runtime kind"))
	case corev1.ServiceTypeExternalName:
		errs = append(errs, field.Invalid(fld.Child("type"), spec.Type,
			"the local runtime has no ExternalName Services; give the mesh the outside host with a ServiceEntry"))
	}
	if spec.ClusterIP != "" && spec.ClusterIP != corev1.ClusterIPNone {
		errs = append(errs, field.Invalid(fld.Child("clusterIP"), spec.ClusterIP,
			"the local runtime gives every Service a VIP of its own range; remove clusterIP (or write None for a headless Service)"))
	}
	if len(spec.ExternalIPs) > 0 {
		errs = append(errs, field.Forbidden(fld.Child("externalIPs"),
			"the local runtime publishes Services on the host through NodePort only; use type NodePort"))
	}
	for i, p := range spec.Ports {
		if p.Protocol == corev1.ProtocolSCTP {
			errs = append(errs, field.Invalid(fld.Child("ports").Index(i).Child("protocol"), p.Protocol,
				"the local runtime serves TCP and UDP ports only"))
		}
	}
	return errs
}
