package config

import (
	"fmt"
	"math"
	"path"
	"reflect"
	"slices"
	"strconv"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/validate/content"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metavalidation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// The node port range of a default kube-apiserver
// (--service-node-port-range), which the lab publishes on the host.
const (
	NodePortMin = 30000
	NodePortMax = 32767
)

// maxDataSize is the most a ConfigMap's or Secret's values may hold
// together: etcd's object size, Kubernetes' core.MaxSecretSize.
const maxDataSize = 1 << 20

// maxClientIPAffinitySeconds is Kubernetes' core.MaxClientIPServiceAffinitySeconds.
const maxClientIPAffinitySeconds = 24 * 60 * 60

// validateKube checks obj as the Kubernetes API server (v1.37) checks an
// object it creates, with the same field paths and messages
// (k8s.io/kubernetes/pkg/apis/core/validation, apps/validation and the
// service node-port allocator), for the kinds meshlab stores. It validates
// a defaulted copy, as the API server validates after defaulting, and an
// empty namespace counts as the one apply will give. It says nothing of
// what a runtime can run: that is the runtime's to say.
func validateKube(obj runtime.Object) field.ErrorList {
	obj = obj.DeepCopyObject()
	defaultKube(obj)
	if m, ok := obj.(metav1.Object); ok && m.GetNamespace() == "" {
		if _, cluster := obj.(*corev1.Namespace); !cluster {
			m.SetNamespace(metav1.NamespaceDefault)
		}
	}
	switch o := obj.(type) {
	case *corev1.Namespace:
		return validateNamespace(o)
	case *corev1.ServiceAccount:
		return validateMeta(&o.ObjectMeta, true, apivalidation.ValidateServiceAccountName)
	case *corev1.Service:
		return validateService(o)
	case *corev1.ConfigMap:
		return validateConfigMap(o)
	case *corev1.Secret:
		return validateSecret(o)
	case *appsv1.Deployment:
		return validateDeployment(o)
	}
	return field.ErrorList{field.InternalError(nil, fmt.Errorf("no validation for %T", obj))}
}

// validateMeta is apimachinery's ValidateObjectMeta, with apply's rule
// about generateName said plainly instead of as an internal error.
func validateMeta(m *metav1.ObjectMeta, namespaced bool, name apivalidation.ValidateNameFunc) field.ErrorList {
	fld := field.NewPath("metadata")
	if m.Name == "" && m.GenerateName != "" {
		m = m.DeepCopy()
		m.GenerateName = ""
		errs := field.ErrorList{field.Forbidden(fld.Child("generateName"), "apply needs metadata.name (kubectl apply takes no generateName either); give the object a name")}
		for _, e := range apivalidation.ValidateObjectMeta(m, namespaced, name, fld) {
			if e.Field != "metadata.name" {
				errs = append(errs, e)
			}
		}
		return errs
	}
	return apivalidation.ValidateObjectMeta(m, namespaced, name, fld)
}

func validateNamespace(ns *corev1.Namespace) field.ErrorList {
	errs := validateMeta(&ns.ObjectMeta, false, apivalidation.ValidateNamespaceName)
	for i, f := range ns.Spec.Finalizers {
		p := field.NewPath("spec", "finalizers").Index(i)
		errs = append(errs, apivalidation.ValidateFinalizerName(string(f), p)...)
		if !strings.Contains(string(f), "/") && f != corev1.FinalizerKubernetes {
			errs = append(errs, field.Invalid(p, string(f), "name is neither a standard finalizer name nor is it fully qualified"))
		}
	}
	return errs
}

func validateConfigMap(cm *corev1.ConfigMap) field.ErrorList {
	errs := validateMeta(&cm.ObjectMeta, true, apivalidation.NameIsDNSSubdomain)
	size := 0
	for _, k := range sortedMapKeys(cm.Data) {
		p := field.NewPath("data").Key(k)
		for _, msg := range validation.IsConfigMapKey(k) {
			errs = append(errs, field.Invalid(p, k, msg))
		}
		if _, dup := cm.BinaryData[k]; dup {
			errs = append(errs, field.Invalid(p, k, "duplicate of key present in binaryData"))
		}
		size += len(cm.Data[k])
	}
	for _, k := range sortedMapKeys(cm.BinaryData) {
		for _, msg := range validation.IsConfigMapKey(k) {
			errs = append(errs, field.Invalid(field.NewPath("binaryData").Key(k), k, msg))
		}
		size += len(cm.BinaryData[k])
	}
	if size > maxDataSize {
		// The API server names no field; data and binaryData together are
		// what is too big.
		errs = append(errs, field.TooLong(field.NewPath("data"), "", maxDataSize))
	}
	return errs
}

func validateSecret(s *corev1.Secret) field.ErrorList {
	errs := validateMeta(&s.ObjectMeta, true, apivalidation.NameIsDNSSubdomain)
	data := field.NewPath("data")
	size := 0
	for _, k := range sortedMapKeys(s.Data) {
		for _, msg := range validation.IsConfigMapKey(k) {
			errs = append(errs, field.Invalid(data.Key(k), k, msg))
		}
		size += len(s.Data[k])
	}
	if size > maxDataSize {
		errs = append(errs, field.TooLong(data, "", maxDataSize))
	}
	require := func(keys ...string) {
		for _, k := range keys {
			if _, ok := s.Data[k]; !ok {
				errs = append(errs, field.Required(data.Key(k), ""))
			}
		}
	}
	switch s.Type {
	case corev1.SecretTypeServiceAccountToken:
		if s.Annotations[corev1.ServiceAccountNameKey] == "" {
			errs = append(errs, field.Required(field.NewPath("metadata", "annotations").Key(corev1.ServiceAccountNameKey), ""))
		}
	case corev1.SecretTypeDockercfg:
		require(corev1.DockerConfigKey)
	case corev1.SecretTypeDockerConfigJson:
		require(corev1.DockerConfigJsonKey)
	case corev1.SecretTypeBasicAuth:
		_, u := s.Data[corev1.BasicAuthUsernameKey]
		_, p := s.Data[corev1.BasicAuthPasswordKey]
		if !u && !p {
			require(corev1.BasicAuthUsernameKey, corev1.BasicAuthPasswordKey)
		}
	case corev1.SecretTypeSSHAuth:
		if len(s.Data[corev1.SSHAuthPrivateKey]) == 0 {
			errs = append(errs, field.Required(data.Key(corev1.SSHAuthPrivateKey), ""))
		}
	case corev1.SecretTypeTLS:
		require(corev1.TLSCertKey, corev1.TLSPrivateKeyKey)
	}
	return errs
}

var (
	portProtocols            = []string{string(corev1.ProtocolSCTP), string(corev1.ProtocolTCP), string(corev1.ProtocolUDP)}
	serviceTypes             = []string{string(corev1.ServiceTypeClusterIP), string(corev1.ServiceTypeExternalName), string(corev1.ServiceTypeLoadBalancer), string(corev1.ServiceTypeNodePort)}
	sessionAffinities        = []string{string(corev1.ServiceAffinityClientIP), string(corev1.ServiceAffinityNone)}
	trafficPolicies          = []string{"Cluster", "Local"}
	pullPolicies             = []string{string(corev1.PullAlways), string(corev1.PullIfNotPresent), string(corev1.PullNever)}
	httpSchemes              = []string{string(corev1.URISchemeHTTP), string(corev1.URISchemeHTTPS)}
	dnsPolicies              = []string{string(corev1.DNSClusterFirstWithHostNet), string(corev1.DNSClusterFirst), string(corev1.DNSDefault), string(corev1.DNSNone)}
	restartPolicies          = []string{string(corev1.RestartPolicyAlways), string(corev1.RestartPolicyOnFailure), string(corev1.RestartPolicyNever)}
	containerRestartPolicies = []string{string(corev1.ContainerRestartPolicyAlways), string(corev1.ContainerRestartPolicyNever), string(corev1.ContainerRestartPolicyOnFailure)}
	messagePolicies          = []string{string(corev1.TerminationMessageReadFile), string(corev1.TerminationMessageFallbackToLogsOnError)}
	deploymentStrategys      = []string{string(appsv1.RecreateDeploymentStrategyType), string(appsv1.RollingUpdateDeploymentStrategyType)}
)

func validateService(svc *corev1.Service) field.ErrorList {
	// Service names are DNS labels since v1.37 (RelaxedServiceNameValidation
	// is GA); before, DNS-1035 labels.
	errs := validateMeta(&svc.ObjectMeta, true, apivalidation.NameIsDNSLabel)
	spec := field.NewPath("spec")
	s := &svc.Spec
	headless := s.ClusterIP == corev1.ClusterIPNone
	ports := spec.Child("ports")

	if len(s.Ports) == 0 && !headless && s.Type != corev1.ServiceTypeExternalName {
		errs = append(errs, field.Required(ports, ""))
	}
	switch s.Type {
	case corev1.ServiceTypeLoadBalancer, corev1.ServiceTypeNodePort:
		if headless {
			errs = append(errs, field.Invalid(spec.Child("clusterIPs").Index(0), s.ClusterIPs[0], fmt.Sprintf("may not be set to 'None' for %s services", s.Type)))
		}
	case corev1.ServiceTypeExternalName:
		if len(s.ClusterIPs) > 0 {
			errs = append(errs, field.Forbidden(spec.Child("clusterIPs"), "may not be set for ExternalName services"))
		}
		if len(s.IPFamilies) > 0 {
			errs = append(errs, field.Forbidden(spec.Child("ipFamilies"), "may not be set for ExternalName services"))
		}
		if s.IPFamilyPolicy != nil {
			errs = append(errs, field.Forbidden(spec.Child("ipFamilyPolicy"), "may not be set for ExternalName services"))
		}
		// A CNAME may end in a dot, for a fully qualified name.
		if cname := strings.TrimSuffix(s.ExternalName, "."); cname == "" {
			errs = append(errs, field.Required(spec.Child("externalName"), ""))
		} else {
			for _, msg := range validation.IsDNS1123Subdomain(cname) {
				errs = append(errs, field.Invalid(spec.Child("externalName"), cname, msg))
			}
		}
	}

	names := sets.New[string]()
	for i := range s.Ports {
		errs = append(errs, validateServicePort(&s.Ports[i], len(s.Ports) > 1, names, ports.Index(i))...)
	}
	if s.Selector != nil {
		errs = append(errs, metavalidation.ValidateLabels(s.Selector, spec.Child("selector"))...)
	}

	if !slices.Contains(sessionAffinities, string(s.SessionAffinity)) {
		errs = append(errs, field.NotSupported(spec.Child("sessionAffinity"), s.SessionAffinity, sessionAffinities))
	}
	if s.SessionAffinity == corev1.ServiceAffinityClientIP {
		t := s.SessionAffinityConfig.ClientIP.TimeoutSeconds
		if *t <= 0 || *t > maxClientIPAffinitySeconds {
			errs = append(errs, field.Invalid(spec.Child("sessionAffinityConfig", "clientIP", "timeoutSeconds"), *t,
				fmt.Sprintf("must be greater than 0 and less than %d", maxClientIPAffinitySeconds)))
		}
	}

	if s.Type != corev1.ServiceTypeExternalName {
		errs = append(errs, validateClusterIPs(s, spec)...)
	}
	for i, ip := range s.ExternalIPs {
		errs = append(errs, validation.IsValidIP(spec.Child("externalIPs").Index(i), ip)...)
	}

	if !slices.Contains(serviceTypes, string(s.Type)) {
		errs = append(errs, field.NotSupported(spec.Child("type"), s.Type, serviceTypes))
	}

	// Node ports: none on a ClusterIP Service, the allocator's range on the
	// others, and no two the same (per protocol).
	nodePorts := map[corev1.ServicePort]bool{}
	seen := map[corev1.ServicePort]bool{}
	for i, p := range s.Ports {
		pp := ports.Index(i)
		if p.NodePort != 0 {
			switch {
			case s.Type == corev1.ServiceTypeClusterIP:
				errs = append(errs, field.Forbidden(pp.Child("nodePort"), "may not be used when `type` is 'ClusterIP'"))
			case p.NodePort < NodePortMin || p.NodePort > NodePortMax:
				errs = append(errs, field.Invalid(pp.Child("nodePort"), p.NodePort,
					fmt.Sprintf("provided port is not in the valid range. The range of valid ports is %d-%d", NodePortMin, NodePortMax)))
			}
			// The allocator, which runs before validation, is first to see a
			// node port twice.
			key := corev1.ServicePort{Protocol: p.Protocol, NodePort: p.NodePort}
			if nodePorts[key] {
				errs = append(errs, field.Invalid(pp.Child("nodePort"), p.NodePort, "provided port is already allocated"))
			}
			nodePorts[key] = true
		}
		key := corev1.ServicePort{Protocol: p.Protocol, Port: p.Port}
		if seen[key] {
			// The API server shows its internal ServicePort here; the port
			// and protocol are what is duplicated.
			errs = append(errs, field.Duplicate(pp, fmt.Sprintf("%d/%s", p.Port, p.Protocol)))
		}
		seen[key] = true
	}

	if len(s.LoadBalancerSourceRanges) > 0 && s.Type != corev1.ServiceTypeLoadBalancer {
		errs = append(errs, field.Forbidden(spec.Child("loadBalancerSourceRanges"), "may only be used when `type` is 'LoadBalancer'"))
	}
	if s.AllocateLoadBalancerNodePorts != nil && s.Type != corev1.ServiceTypeLoadBalancer {
		errs = append(errs, field.Forbidden(spec.Child("allocateLoadBalancerNodePorts"), "may only be used when `type` is 'LoadBalancer'"))
	}
	if s.LoadBalancerClass != nil && s.Type != corev1.ServiceTypeLoadBalancer {
		errs = append(errs, field.Forbidden(spec.Child("loadBalancerClass"), "may only be used when `type` is 'LoadBalancer'"))
	}
	if !externallyAccessible(svc) {
		if s.ExternalTrafficPolicy != "" {
			errs = append(errs, field.Invalid(spec.Child("externalTrafficPolicy"), s.ExternalTrafficPolicy, "may only be set for externally-accessible services"))
		}
	} else if !slices.Contains(trafficPolicies, string(s.ExternalTrafficPolicy)) {
		errs = append(errs, field.NotSupported(spec.Child("externalTrafficPolicy"), s.ExternalTrafficPolicy, trafficPolicies))
	}
	if s.InternalTrafficPolicy != nil && !slices.Contains(trafficPolicies, string(*s.InternalTrafficPolicy)) {
		errs = append(errs, field.NotSupported(spec.Child("internalTrafficPolicy"), *s.InternalTrafficPolicy, trafficPolicies))
	}
	needsHealthCheck := s.Type == corev1.ServiceTypeLoadBalancer && s.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal
	if s.HealthCheckNodePort != 0 && !needsHealthCheck {
		errs = append(errs, field.Invalid(spec.Child("healthCheckNodePort"), s.HealthCheckNodePort,
			"may only be set when `type` is 'LoadBalancer' and `externalTrafficPolicy` is 'Local'"))
	}
	return errs
}

func validateServicePort(p *corev1.ServicePort, requireName bool, names sets.Set[string], fld *field.Path) field.ErrorList {
	var errs field.ErrorList
	switch {
	case p.Name == "" && requireName:
		errs = append(errs, field.Required(fld.Child("name"), ""))
	case p.Name != "":
		for _, msg := range validation.IsDNS1123Label(p.Name) {
			errs = append(errs, field.Invalid(fld.Child("name"), p.Name, msg))
		}
		if names.Has(p.Name) {
			errs = append(errs, field.Duplicate(fld.Child("name"), p.Name))
		}
		names.Insert(p.Name)
	}
	for _, msg := range validation.IsValidPortNum(int(p.Port)) {
		errs = append(errs, field.Invalid(fld.Child("port"), p.Port, msg))
	}
	if !slices.Contains(portProtocols, string(p.Protocol)) {
		errs = append(errs, field.NotSupported(fld.Child("protocol"), p.Protocol, portProtocols))
	}
	errs = append(errs, validatePortNumOrName(p.TargetPort, fld.Child("targetPort"))...)
	if p.AppProtocol != nil {
		for _, msg := range content.IsLabelKey(*p.AppProtocol) {
			errs = append(errs, field.Invalid(fld.Child("appProtocol"), *p.AppProtocol, msg))
		}
	}
	return errs
}

// validateClusterIPs checks what a user may write of clusterIP/clusterIPs:
// nothing (the store allocates), None (headless), or addresses that agree.
func validateClusterIPs(s *corev1.ServiceSpec, spec *field.Path) field.ErrorList {
	var errs field.ErrorList
	ips := spec.Child("clusterIPs")
	if s.ClusterIP != "" && s.ClusterIPs[0] != s.ClusterIP {
		return append(errs, field.Invalid(ips, s.ClusterIPs, "first value must match `clusterIP`"))
	}
	for i, ip := range s.ClusterIPs {
		if ip == corev1.ClusterIPNone {
			if i > 0 || len(s.ClusterIPs) > 1 {
				errs = append(errs, field.Invalid(ips, s.ClusterIPs, "'None' must be the first and only value"))
			}
			continue
		}
		errs = append(errs, validation.IsValidIP(ips.Index(i), ip)...)
	}
	if len(s.ClusterIPs) > 2 {
		errs = append(errs, field.Invalid(ips, s.ClusterIPs, "may only hold up to 2 values"))
	}
	return errs
}

func validatePortNumOrName(port intstr.IntOrString, fld *field.Path) field.ErrorList {
	var errs field.ErrorList
	if port.Type == intstr.String {
		for _, msg := range validation.IsValidPortName(port.StrVal) {
			errs = append(errs, field.Invalid(fld, port.StrVal, msg))
		}
		return errs
	}
	for _, msg := range validation.IsValidPortNum(port.IntValue()) {
		errs = append(errs, field.Invalid(fld, port.IntValue(), msg))
	}
	return errs
}

func validateDeployment(d *appsv1.Deployment) field.ErrorList {
	errs := validateMeta(&d.ObjectMeta, true, apivalidation.NameIsDNSSubdomain)
	spec := field.NewPath("spec")
	s := &d.Spec
	errs = append(errs, apivalidation.ValidateNonnegativeField(int64(*s.Replicas), spec.Child("replicas"))...)

	if s.Selector == nil {
		errs = append(errs, field.Required(spec.Child("selector"), ""))
	} else {
		errs = append(errs, metavalidation.ValidateLabelSelector(s.Selector, metavalidation.LabelSelectorValidationOptions{}, spec.Child("selector"))...)
		if len(s.Selector.MatchLabels)+len(s.Selector.MatchExpressions) == 0 {
			errs = append(errs, field.Invalid(spec.Child("selector"), s.Selector, "empty selector is invalid for deployment"))
		}
	}

	tmpl := spec.Child("template")
	// No selector selects nothing, so no template matches it: the API
	// server says both.
	if selector, err := metav1.LabelSelectorAsSelector(s.Selector); err != nil {
		errs = append(errs, field.Invalid(spec.Child("selector"), s.Selector, "invalid label selector"))
	} else if !selector.Empty() && !selector.Matches(labels.Set(s.Template.Labels)) {
		errs = append(errs, field.Invalid(tmpl.Child("metadata", "labels"), s.Template.Labels, "`selector` does not match template `labels`"))
	}
	// The template's own labels and annotations are checked at
	// spec.template.labels, not …metadata.labels: the API server's path.
	errs = append(errs, metavalidation.ValidateLabels(s.Template.Labels, tmpl.Child("labels"))...)
	errs = append(errs, apivalidation.ValidateAnnotations(s.Template.Annotations, tmpl.Child("annotations"))...)
	errs = append(errs, validatePodSpec(&s.Template.Spec, tmpl.Child("spec"))...)
	if p := s.Template.Spec.RestartPolicy; p != corev1.RestartPolicyAlways && slices.Contains(restartPolicies, string(p)) {
		errs = append(errs, field.NotSupported(tmpl.Child("spec", "restartPolicy"), p, []string{string(corev1.RestartPolicyAlways)}))
	}
	if s.Template.Spec.ActiveDeadlineSeconds != nil {
		errs = append(errs, field.Forbidden(tmpl.Child("spec", "activeDeadlineSeconds"), "activeDeadlineSeconds in ReplicaSet is not Supported"))
	}
	if len(s.Template.Spec.EphemeralContainers) > 0 {
		errs = append(errs, field.Forbidden(tmpl.Child("spec", "ephemeralContainers"), "ephemeral containers not allowed in pod template"))
	}

	errs = append(errs, validateStrategy(&s.Strategy, spec.Child("strategy"))...)
	errs = append(errs, apivalidation.ValidateNonnegativeField(int64(s.MinReadySeconds), spec.Child("minReadySeconds"))...)
	errs = append(errs, apivalidation.ValidateNonnegativeField(int64(*s.RevisionHistoryLimit), spec.Child("revisionHistoryLimit"))...)
	pd := *s.ProgressDeadlineSeconds
	errs = append(errs, apivalidation.ValidateNonnegativeField(int64(pd), spec.Child("progressDeadlineSeconds"))...)
	if pd <= s.MinReadySeconds {
		errs = append(errs, field.Invalid(spec.Child("progressDeadlineSeconds"), pd, "must be greater than minReadySeconds"))
	}
	return errs
}

func validateStrategy(st *appsv1.DeploymentStrategy, fld *field.Path) field.ErrorList {
	var errs field.ErrorList
	switch st.Type {
	case appsv1.RecreateDeploymentStrategyType:
		if st.RollingUpdate != nil {
			errs = append(errs, field.Forbidden(fld.Child("rollingUpdate"), "may not be specified when strategy `type` is 'Recreate'"))
		}
	case appsv1.RollingUpdateDeploymentStrategyType:
		ru := st.RollingUpdate
		rf := fld.Child("rollingUpdate")
		errs = append(errs, validateIntOrPercent(*ru.MaxUnavailable, rf.Child("maxUnavailable"))...)
		errs = append(errs, validateIntOrPercent(*ru.MaxSurge, rf.Child("maxSurge"))...)
		if intOrPercent(*ru.MaxUnavailable) == 0 && intOrPercent(*ru.MaxSurge) == 0 {
			errs = append(errs, field.Invalid(rf.Child("maxUnavailable"), *ru.MaxUnavailable, "may not be 0 when `maxSurge` is 0"))
		}
		if v, pct := percent(*ru.MaxUnavailable); pct && v > 100 {
			errs = append(errs, field.Invalid(rf.Child("maxUnavailable"), *ru.MaxUnavailable, "must not be greater than 100%"))
		}
	default:
		errs = append(errs, field.NotSupported(fld, st.Type, deploymentStrategys))
	}
	return errs
}

func validateIntOrPercent(v intstr.IntOrString, fld *field.Path) field.ErrorList {
	if v.Type == intstr.String {
		var errs field.ErrorList
		for _, msg := range validation.IsValidPercent(v.StrVal) {
			errs = append(errs, field.Invalid(fld, v, msg))
		}
		return errs
	}
	return apivalidation.ValidateNonnegativeField(int64(v.IntValue()), fld)
}

// percent is the number of a valid "N%" value.
func percent(v intstr.IntOrString) (int, bool) {
	if v.Type != intstr.String || len(validation.IsValidPercent(v.StrVal)) != 0 {
		return 0, false
	}
	n, err := strconv.Atoi(strings.TrimSuffix(v.StrVal, "%"))
	return n, err == nil
}

func intOrPercent(v intstr.IntOrString) int {
	if n, ok := percent(v); ok {
		return n
	}
	return v.IntValue()
}

func validatePodSpec(s *corev1.PodSpec, fld *field.Path) field.ErrorList {
	vols, errs := validateVolumes(s.Volumes, fld.Child("volumes"))
	if len(s.Containers) == 0 {
		errs = append(errs, field.Required(fld.Child("containers"), ""))
	}
	names := sets.New[string]()
	for i := range s.Containers {
		errs = append(errs, validateContainer(&s.Containers[i], vols, names, false, fld.Child("containers").Index(i))...)
	}
	for i := range s.InitContainers {
		errs = append(errs, validateContainer(&s.InitContainers[i], vols, names, true, fld.Child("initContainers").Index(i))...)
	}
	if !slices.Contains(restartPolicies, string(s.RestartPolicy)) {
		errs = append(errs, field.NotSupported(fld.Child("restartPolicy"), s.RestartPolicy, restartPolicies))
	}
	if !slices.Contains(dnsPolicies, string(s.DNSPolicy)) {
		errs = append(errs, field.NotSupported(fld.Child("dnsPolicy"), s.DNSPolicy, dnsPolicies))
	}
	errs = append(errs, metavalidation.ValidateLabels(s.NodeSelector, fld.Child("nodeSelector"))...)
	if sc := s.SecurityContext; sc != nil {
		scf := fld.Child("securityContext")
		errs = append(errs, validateIDs(sc.RunAsUser, sc.RunAsGroup, scf)...)
		if sc.FSGroup != nil {
			for _, msg := range validation.IsValidGroupID(*sc.FSGroup) {
				errs = append(errs, field.Invalid(scf.Child("fsGroup"), *sc.FSGroup, msg))
			}
		}
		for i, g := range sc.SupplementalGroups {
			for _, msg := range validation.IsValidGroupID(g) {
				errs = append(errs, field.Invalid(scf.Child("supplementalGroups").Index(i), g, msg))
			}
		}
	}
	if s.ShareProcessNamespace != nil && *s.ShareProcessNamespace && s.HostPID {
		errs = append(errs, field.Invalid(fld.Child("shareProcessNamespace"), *s.ShareProcessNamespace, "ShareProcessNamespace and HostPID cannot both be enabled"))
	}
	if s.ServiceAccountName != "" {
		for _, msg := range apivalidation.ValidateServiceAccountName(s.ServiceAccountName, false) {
			errs = append(errs, field.Invalid(fld.Child("serviceAccountName"), s.ServiceAccountName, msg))
		}
	}
	if s.DeprecatedServiceAccount != s.ServiceAccountName { //nolint:staticcheck // the API server checks they agree
		errs = append(errs, field.Invalid(fld.Child("deprecatedServiceAccount"), s.DeprecatedServiceAccount, //nolint:staticcheck // as above
			fmt.Sprintf("must be the same as serviceAccountName: %q", s.ServiceAccountName)))
	}
	if s.Hostname != "" {
		for _, msg := range validation.IsDNS1123Label(s.Hostname) {
			errs = append(errs, field.Invalid(fld.Child("hostname"), s.Hostname, msg))
		}
	}
	if s.Subdomain != "" {
		for _, msg := range validation.IsDNS1123Label(s.Subdomain) {
			errs = append(errs, field.Invalid(fld.Child("subdomain"), s.Subdomain, msg))
		}
	}
	return errs
}

// validateVolumes returns the valid volumes by name, for the mounts to
// refer to.
func validateVolumes(vols []corev1.Volume, fld *field.Path) (map[string]corev1.VolumeSource, field.ErrorList) {
	var errs field.ErrorList
	byName := map[string]corev1.VolumeSource{}
	for i, v := range vols {
		vf := fld.Index(i)
		el := validateVolumeSource(&v.VolumeSource, vf)
		if v.Name == "" {
			el = append(el, field.Required(vf.Child("name"), ""))
		} else {
			for _, msg := range validation.IsDNS1123Label(v.Name) {
				el = append(el, field.Invalid(vf.Child("name"), v.Name, msg))
			}
		}
		if _, dup := byName[v.Name]; dup {
			el = append(el, field.Duplicate(vf.Child("name"), v.Name))
		}
		if len(el) == 0 {
			byName[v.Name] = v.VolumeSource
		}
		errs = append(errs, el...)
	}
	return byName, errs
}

func validateVolumeSource(src *corev1.VolumeSource, fld *field.Path) field.ErrorList {
	var errs field.ErrorList
	// Exactly one source: the API server names each source after the first.
	n := 0
	rv := reflect.ValueOf(src).Elem()
	for i := range rv.NumField() {
		if f := rv.Field(i); f.Kind() == reflect.Pointer && !f.IsNil() {
			n++
			if n > 1 {
				errs = append(errs, field.Forbidden(fld.Child(jsonName(rv.Type().Field(i))), "may not specify more than 1 volume type"))
			}
		}
	}
	if n == 0 {
		errs = append(errs, field.Required(fld, "must specify a volume type"))
	}
	if e := src.EmptyDir; e != nil && e.SizeLimit != nil && e.SizeLimit.Sign() < 0 {
		errs = append(errs, field.Forbidden(fld.Child("emptyDir", "sizeLimit"), "SizeLimit field must be a valid resource quantity"))
	}
	if c := src.ConfigMap; c != nil {
		cf := fld.Child("configMap")
		if c.Name == "" {
			errs = append(errs, field.Required(cf.Child("name"), ""))
		}
		errs = append(errs, validateMode(c.DefaultMode, cf.Child("defaultMode"))...)
		errs = append(errs, validateKeyToPaths(c.Items, cf.Child("items"), nil)...)
	}
	if s := src.Secret; s != nil {
		sf := fld.Child("secret")
		if s.SecretName == "" {
			errs = append(errs, field.Required(sf.Child("secretName"), ""))
		}
		errs = append(errs, validateMode(s.DefaultMode, sf.Child("defaultMode"))...)
		errs = append(errs, validateKeyToPaths(s.Items, sf.Child("items"), nil)...)
	}
	if p := src.Projected; p != nil {
		pf := fld.Child("projected")
		errs = append(errs, validateMode(p.DefaultMode, pf.Child("defaultMode"))...)
		paths := sets.New[string]()
		for i, ps := range p.Sources {
			sf := pf.Child("sources").Index(i)
			k := 0
			rv := reflect.ValueOf(&ps).Elem()
			for j := range rv.NumField() {
				if f := rv.Field(j); f.Kind() == reflect.Pointer && !f.IsNil() {
					k++
					if k > 1 {
						errs = append(errs, field.Forbidden(sf, "may not specify more than 1 volume type per source"))
					}
				}
			}
			if k == 0 {
				errs = append(errs, field.Required(sf, "must specify at least 1 volume type per source"))
			}
			if c := ps.ConfigMap; c != nil {
				if c.Name == "" {
					errs = append(errs, field.Required(sf.Child("configMap", "name"), ""))
				}
				errs = append(errs, validateKeyToPaths(c.Items, sf.Child("configMap", "items"), paths)...)
			}
			if s := ps.Secret; s != nil {
				if s.Name == "" {
					errs = append(errs, field.Required(sf.Child("secret", "name"), ""))
				}
				errs = append(errs, validateKeyToPaths(s.Items, sf.Child("secret", "items"), paths)...)
			}
		}
	}
	return errs
}

func jsonName(f reflect.StructField) string {
	name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
	if name == "" {
		return f.Name
	}
	return name
}

func validateMode(mode *int32, fld *field.Path) field.ErrorList {
	if mode != nil && (*mode > 0o777 || *mode < 0) {
		return field.ErrorList{field.Invalid(fld, *mode, "must be a number between 0 and 0777 (octal), both inclusive")}
	}
	return nil
}

// validateKeyToPaths checks the items of a configMap or secret volume;
// paths, when given, are those the other sources of a projected volume
// already write.
func validateKeyToPaths(items []corev1.KeyToPath, fld *field.Path, paths sets.Set[string]) field.ErrorList {
	var errs field.ErrorList
	for i, kp := range items {
		f := fld.Index(i)
		if kp.Key == "" {
			errs = append(errs, field.Required(f.Child("key"), ""))
		}
		if kp.Path == "" {
			errs = append(errs, field.Required(f.Child("path"), ""))
		}
		errs = append(errs, validateRelativePath(kp.Path, f.Child("path"))...)
		errs = append(errs, validateMode(kp.Mode, f.Child("mode"))...)
		if paths != nil && kp.Path != "" {
			if paths.Has(kp.Path) {
				errs = append(errs, field.Invalid(f.Child("path"), kp.Path, "conflicting duplicate paths"))
			}
			paths.Insert(kp.Path)
		}
	}
	return errs
}

// validateRelativePath is the API server's rule for a path inside a volume:
// relative, and never stepping out with "..".
func validateRelativePath(p string, fld *field.Path) field.ErrorList {
	var errs field.ErrorList
	if path.IsAbs(p) {
		errs = append(errs, field.Invalid(fld, p, "must be a relative path"))
	}
	if slices.Contains(strings.Split(p, "/"), "..") {
		errs = append(errs, field.Invalid(fld, p, "must not contain '..'"))
	} else if strings.HasPrefix(p, "..") {
		errs = append(errs, field.Invalid(fld, p, "must not start with '..'"))
	}
	return errs
}

func validateContainer(c *corev1.Container, vols map[string]corev1.VolumeSource, names sets.Set[string], init bool, fld *field.Path) field.ErrorList {
	var errs field.ErrorList
	if c.Name == "" {
		errs = append(errs, field.Required(fld.Child("name"), ""))
	} else {
		for _, msg := range validation.IsDNS1123Label(c.Name) {
			errs = append(errs, field.Invalid(fld.Child("name"), c.Name, msg))
		}
		if names.Has(c.Name) {
			errs = append(errs, field.Duplicate(fld.Child("name"), c.Name))
		}
		names.Insert(c.Name)
	}
	if c.Image == "" {
		errs = append(errs, field.Required(fld.Child("image"), ""))
	}
	if !slices.Contains(messagePolicies, string(c.TerminationMessagePolicy)) {
		errs = append(errs, field.NotSupported(fld.Child("terminationMessagePolicy"), c.TerminationMessagePolicy, messagePolicies))
	}
	if !slices.Contains(pullPolicies, string(c.ImagePullPolicy)) {
		errs = append(errs, field.NotSupported(fld.Child("imagePullPolicy"), c.ImagePullPolicy, pullPolicies))
	}
	errs = append(errs, validateContainerPorts(c.Ports, fld.Child("ports"))...)
	errs = append(errs, validateEnv(c.Env, fld.Child("env"))...)
	errs = append(errs, validateEnvFrom(c.EnvFrom, fld.Child("envFrom"))...)
	errs = append(errs, validateVolumeMounts(c.VolumeMounts, vols, fld.Child("volumeMounts"))...)
	errs = append(errs, validateSecurityContext(c.SecurityContext, fld.Child("securityContext"))...)

	probes := []struct {
		name  string
		probe *corev1.Probe
	}{{"livenessProbe", c.LivenessProbe}, {"readinessProbe", c.ReadinessProbe}, {"startupProbe", c.StartupProbe}}
	sidecar := c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways
	for _, p := range probes {
		if p.probe == nil {
			continue
		}
		pf := fld.Child(p.name)
		if init && !sidecar {
			errs = append(errs, field.Forbidden(pf, "may not be set for init containers without restartPolicy=Always"))
			continue
		}
		errs = append(errs, validateProbe(p.probe, c, pf)...)
		if p.name != "readinessProbe" && p.probe.SuccessThreshold != 1 {
			errs = append(errs, field.Invalid(pf.Child("successThreshold"), p.probe.SuccessThreshold, "must be 1"))
		}
		if p.name == "readinessProbe" && p.probe.TerminationGracePeriodSeconds != nil {
			errs = append(errs, field.Invalid(pf.Child("terminationGracePeriodSeconds"), *p.probe.TerminationGracePeriodSeconds, "must not be set for readinessProbes"))
		}
	}
	if l := c.Lifecycle; l != nil {
		if init && !sidecar {
			errs = append(errs, field.Forbidden(fld.Child("lifecycle"), "may not be set for init containers without restartPolicy=Always"))
		} else {
			if l.PostStart != nil {
				errs = append(errs, validateHandler(lifecycleHandler(l.PostStart), c, fld.Child("lifecycle", "postStart"))...)
			}
			if l.PreStop != nil {
				errs = append(errs, validateHandler(lifecycleHandler(l.PreStop), c, fld.Child("lifecycle", "preStop"))...)
			}
		}
	}
	// ContainerRestartRules (beta, on in v1.37) lets any container say how
	// it restarts; an init container that restarts Always is a sidecar.
	if p := c.RestartPolicy; p != nil && !slices.Contains(containerRestartPolicies, string(*p)) {
		errs = append(errs, field.NotSupported(fld.Child("restartPolicy"), *p, containerRestartPolicies))
	}
	return errs
}

func validateContainerPorts(ports []corev1.ContainerPort, fld *field.Path) field.ErrorList {
	var errs field.ErrorList
	names := sets.New[string]()
	for i, p := range ports {
		pf := fld.Index(i)
		if p.Name != "" {
			if msgs := validation.IsValidPortName(p.Name); len(msgs) > 0 {
				for _, msg := range msgs {
					errs = append(errs, field.Invalid(pf.Child("name"), p.Name, msg))
				}
			} else if names.Has(p.Name) {
				errs = append(errs, field.Duplicate(pf.Child("name"), p.Name))
			} else {
				names.Insert(p.Name)
			}
		}
		if p.ContainerPort == 0 {
			errs = append(errs, field.Required(pf.Child("containerPort"), ""))
		} else {
			for _, msg := range validation.IsValidPortNum(int(p.ContainerPort)) {
				errs = append(errs, field.Invalid(pf.Child("containerPort"), p.ContainerPort, msg))
			}
		}
		if p.HostPort != 0 {
			for _, msg := range validation.IsValidPortNum(int(p.HostPort)) {
				errs = append(errs, field.Invalid(pf.Child("hostPort"), p.HostPort, msg))
			}
		}
		if !slices.Contains(portProtocols, string(p.Protocol)) {
			errs = append(errs, field.NotSupported(pf.Child("protocol"), p.Protocol, portProtocols))
		}
	}
	return errs
}

// downwardFields are the pod fields an env var's fieldRef may name
// (besides metadata.labels['…'] and metadata.annotations['…']).
var downwardFields = []string{"metadata.name", "metadata.namespace", "metadata.uid", "spec.nodeName",
	"spec.serviceAccountName", "status.hostIP", "status.hostIPs", "status.podIP", "status.podIPs"}

var resourceFields = []string{"limits.cpu", "limits.ephemeral-storage", "limits.memory",
	"requests.cpu", "requests.ephemeral-storage", "requests.memory"}

func validateEnv(env []corev1.EnvVar, fld *field.Path) field.ErrorList {
	var errs field.ErrorList
	for i, e := range env {
		ef := fld.Index(i)
		if e.Name == "" {
			errs = append(errs, field.Required(ef.Child("name"), ""))
		} else {
			// RelaxedEnvironmentVariableValidation is GA: any printable
			// ASCII but '='.
			for _, msg := range validation.IsRelaxedEnvVarName(e.Name) {
				errs = append(errs, field.Invalid(ef.Child("name"), e.Name, msg))
			}
		}
		if e.ValueFrom == nil {
			continue
		}
		vf := ef.Child("valueFrom")
		n := 0
		if r := e.ValueFrom.FieldRef; r != nil {
			n++
			errs = append(errs, validateFieldRef(r, vf.Child("fieldRef"))...)
		}
		if r := e.ValueFrom.ResourceFieldRef; r != nil {
			n++
			if r.Resource == "" {
				errs = append(errs, field.Required(vf.Child("resourceFieldRef", "resource"), ""))
			} else if !slices.Contains(resourceFields, r.Resource) && !strings.HasPrefix(r.Resource, "requests.hugepages-") && !strings.HasPrefix(r.Resource, "limits.hugepages-") {
				errs = append(errs, field.NotSupported(vf.Child("resourceFieldRef", "resource"), r.Resource, resourceFields))
			}
		}
		if r := e.ValueFrom.ConfigMapKeyRef; r != nil {
			n++
			errs = append(errs, validateKeyRef(r.Name, r.Key, vf.Child("configMapKeyRef"))...)
		}
		if r := e.ValueFrom.SecretKeyRef; r != nil {
			n++
			errs = append(errs, validateKeyRef(r.Name, r.Key, vf.Child("secretKeyRef"))...)
		}
		if e.ValueFrom.FileKeyRef != nil {
			n++
		}
		switch {
		case n == 0:
			errs = append(errs, field.Invalid(vf, "", "must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef`, `secretKeyRef` or `fileKeyRef`"))
		case e.Value != "":
			errs = append(errs, field.Invalid(vf, "", "may not be specified when `value` is not empty"))
		case n > 1:
			errs = append(errs, field.Invalid(vf, "", "may not have more than one field specified at a time"))
		}
	}
	return errs
}

// fieldLabels are the pod fields the downward API converts (Kubernetes'
// pods.ConvertDownwardAPIFieldLabel); an env var may name the
// downwardFields among them.
var fieldLabels = []string{"metadata.annotations", "metadata.labels", "metadata.name", "metadata.namespace",
	"metadata.uid", "spec.nodeName", "spec.restartPolicy", "spec.serviceAccountName", "spec.schedulerName",
	"status.phase", "status.hostIP", "status.hostIPs", "status.podIP", "status.podIPs"}

func validateFieldRef(r *corev1.ObjectFieldSelector, fld *field.Path) field.ErrorList {
	if r.FieldPath == "" {
		return field.ErrorList{field.Required(fld.Child("fieldPath"), "")}
	}
	convErr := func(msg string) field.ErrorList {
		return field.ErrorList{field.Invalid(fld.Child("fieldPath"), r.FieldPath, "error converting fieldPath: "+msg)}
	}
	if r.APIVersion != "v1" {
		return convErr("unsupported pod version: " + r.APIVersion)
	}
	// metadata.labels['app'] and metadata.annotations['…'] name one key.
	if p, rest, ok := strings.Cut(r.FieldPath, "['"); ok && strings.HasSuffix(rest, "']") {
		key := strings.TrimSuffix(rest, "']")
		switch p {
		case "metadata.annotations":
			key = strings.ToLower(key)
		case "metadata.labels":
		default:
			return convErr("field label does not support subscript: " + r.FieldPath)
		}
		var errs field.ErrorList
		for _, msg := range content.IsLabelKey(key) {
			errs = append(errs, field.Invalid(fld, key, msg))
		}
		return errs
	}
	p := r.FieldPath
	if p == "spec.host" { // what old v1 clients send for spec.nodeName
		p = "spec.nodeName"
	}
	if !slices.Contains(fieldLabels, p) {
		return convErr("field label not supported: " + p)
	}
	if !slices.Contains(downwardFields, p) {
		return field.ErrorList{field.NotSupported(fld.Child("fieldPath"), p, downwardFields)}
	}
	return nil
}

func validateKeyRef(name, key string, fld *field.Path) field.ErrorList {
	var errs field.ErrorList
	for _, msg := range apivalidation.NameIsDNSSubdomain(name, false) {
		errs = append(errs, field.Invalid(fld.Child("name"), name, msg))
	}
	if key == "" {
		errs = append(errs, field.Required(fld.Child("key"), ""))
	}
	for _, msg := range validation.IsConfigMapKey(key) {
		if key != "" {
			errs = append(errs, field.Invalid(fld.Child("key"), key, msg))
		}
	}
	return errs
}

func validateEnvFrom(from []corev1.EnvFromSource, fld *field.Path) field.ErrorList {
	var errs field.ErrorList
	for i, ef := range from {
		f := fld.Index(i)
		if ef.Prefix != "" {
			for _, msg := range validation.IsRelaxedEnvVarName(ef.Prefix) {
				errs = append(errs, field.Invalid(f.Child("prefix"), ef.Prefix, msg))
			}
		}
		n := 0
		if ef.ConfigMapRef != nil {
			n++
			errs = append(errs, validateRefName(ef.ConfigMapRef.Name, f.Child("configMapRef", "name"))...)
		}
		if ef.SecretRef != nil {
			n++
			errs = append(errs, validateRefName(ef.SecretRef.Name, f.Child("secretRef", "name"))...)
		}
		switch {
		case n == 0:
			errs = append(errs, field.Invalid(fld, "", "must specify one of: `configMapRef` or `secretRef`"))
		case n > 1:
			errs = append(errs, field.Invalid(fld, "", "may not have more than one field specified at a time"))
		}
	}
	return errs
}

func validateRefName(name string, fld *field.Path) field.ErrorList {
	if name == "" {
		return field.ErrorList{field.Required(fld, "")}
	}
	var errs field.ErrorList
	for _, msg := range apivalidation.NameIsDNSSubdomain(name, false) {
		errs = append(errs, field.Invalid(fld, name, msg))
	}
	return errs
}

func validateVolumeMounts(mounts []corev1.VolumeMount, vols map[string]corev1.VolumeSource, fld *field.Path) field.ErrorList {
	var errs field.ErrorList
	paths := sets.New[string]()
	for i, m := range mounts {
		mf := fld.Index(i)
		if m.Name == "" {
			errs = append(errs, field.Required(mf.Child("name"), ""))
		}
		if _, ok := vols[m.Name]; !ok {
			errs = append(errs, field.NotFound(mf.Child("name"), m.Name))
		}
		if m.MountPath == "" {
			errs = append(errs, field.Required(mf.Child("mountPath"), ""))
		}
		if paths.Has(m.MountPath) {
			errs = append(errs, field.Invalid(mf.Child("mountPath"), m.MountPath, "must be unique"))
		}
		paths.Insert(m.MountPath)
		if m.SubPath != "" {
			errs = append(errs, validateDescendingPath(m.SubPath, mf.Child("subPath"))...)
		}
		if m.SubPathExpr != "" {
			if m.SubPath != "" {
				errs = append(errs, field.Invalid(mf.Child("subPathExpr"), m.SubPathExpr, "subPathExpr and subPath are mutually exclusive"))
			}
			errs = append(errs, validateDescendingPath(m.SubPathExpr, mf.Child("subPathExpr"))...)
		}
	}
	return errs
}

func validateDescendingPath(p string, fld *field.Path) field.ErrorList {
	var errs field.ErrorList
	if path.IsAbs(p) {
		errs = append(errs, field.Invalid(fld, p, "must be a relative path"))
	}
	if slices.Contains(strings.Split(p, "/"), "..") {
		errs = append(errs, field.Invalid(fld, p, "must not contain '..'"))
	}
	return errs
}

func validateIDs(uid, gid *int64, fld *field.Path) field.ErrorList {
	var errs field.ErrorList
	if uid != nil {
		for _, msg := range validation.IsValidUserID(*uid) {
			errs = append(errs, field.Invalid(fld.Child("runAsUser"), *uid, msg))
		}
	}
	if gid != nil {
		for _, msg := range validation.IsValidGroupID(*gid) {
			errs = append(errs, field.Invalid(fld.Child("runAsGroup"), *gid, msg))
		}
	}
	return errs
}

func validateSecurityContext(sc *corev1.SecurityContext, fld *field.Path) field.ErrorList {
	if sc == nil {
		return nil
	}
	errs := validateIDs(sc.RunAsUser, sc.RunAsGroup, fld)
	if sc.AllowPrivilegeEscalation != nil && !*sc.AllowPrivilegeEscalation {
		if sc.Privileged != nil && *sc.Privileged {
			errs = append(errs, field.Invalid(fld, field.OmitValueType{}, "cannot set `allowPrivilegeEscalation` to false and `privileged` to true"))
		}
		if sc.Capabilities != nil && slices.Contains(sc.Capabilities.Add, "CAP_SYS_ADMIN") {
			errs = append(errs, field.Invalid(fld, field.OmitValueType{}, "cannot set `allowPrivilegeEscalation` to false and `capabilities.Add` CAP_SYS_ADMIN"))
		}
	}
	if sc.ProcMount != nil {
		switch *sc.ProcMount {
		case corev1.DefaultProcMount:
		case corev1.UnmaskedProcMount:
			errs = append(errs, field.Invalid(fld.Child("procMount"), *sc.ProcMount, "`hostUsers` must be false to use `Unmasked`"))
		default:
			errs = append(errs, field.NotSupported(fld.Child("procMount"), *sc.ProcMount, []string{string(corev1.DefaultProcMount), string(corev1.UnmaskedProcMount)}))
		}
	}
	return errs
}

type handler struct {
	exec      *corev1.ExecAction
	httpGet   *corev1.HTTPGetAction
	tcpSocket *corev1.TCPSocketAction
	grpc      *corev1.GRPCAction
	sleep     *corev1.SleepAction
}

func lifecycleHandler(h *corev1.LifecycleHandler) handler {
	return handler{exec: h.Exec, httpGet: h.HTTPGet, tcpSocket: h.TCPSocket, sleep: h.Sleep}
}

func validateProbe(p *corev1.Probe, c *corev1.Container, fld *field.Path) field.ErrorList {
	errs := validateHandler(handler{exec: p.Exec, httpGet: p.HTTPGet, tcpSocket: p.TCPSocket, grpc: p.GRPC}, c, fld)
	for _, f := range []struct {
		name string
		v    int32
	}{{"initialDelaySeconds", p.InitialDelaySeconds}, {"timeoutSeconds", p.TimeoutSeconds}, {"periodSeconds", p.PeriodSeconds},
		{"successThreshold", p.SuccessThreshold}, {"failureThreshold", p.FailureThreshold}} {
		errs = append(errs, apivalidation.ValidateNonnegativeField(int64(f.v), fld.Child(f.name))...)
	}
	if g := p.TerminationGracePeriodSeconds; g != nil && *g <= 0 {
		errs = append(errs, field.Invalid(fld.Child("terminationGracePeriodSeconds"), *g, "must be greater than 0"))
	}
	return errs
}

// validateHandler checks that a probe or hook has exactly one action, and
// that action. A named port must be one of the container's: the API server
// lets a wrong name through and the pod then fails its probe for ever, so
// meshlab says so when the manifest is applied.
func validateHandler(h handler, c *corev1.Container, fld *field.Path) field.ErrorList {
	var errs field.ErrorList
	n := 0
	one := func(set bool, name string, check func(*field.Path) field.ErrorList) {
		if !set {
			return
		}
		if n > 0 {
			errs = append(errs, field.Forbidden(fld.Child(name), "may not specify more than 1 handler type"))
			return
		}
		n++
		errs = append(errs, check(fld.Child(name))...)
	}
	one(h.exec != nil, "exec", func(f *field.Path) field.ErrorList {
		if len(h.exec.Command) == 0 {
			return field.ErrorList{field.Required(f.Child("command"), "")}
		}
		return nil
	})
	one(h.httpGet != nil, "httpGet", func(f *field.Path) field.ErrorList {
		var errs field.ErrorList
		if h.httpGet.Path == "" {
			errs = append(errs, field.Required(f.Child("path"), ""))
		}
		errs = append(errs, validateProbePort(h.httpGet.Port, c, f.Child("port"))...)
		if !slices.Contains(httpSchemes, string(h.httpGet.Scheme)) {
			errs = append(errs, field.NotSupported(f.Child("scheme"), h.httpGet.Scheme, httpSchemes))
		}
		for _, hdr := range h.httpGet.HTTPHeaders {
			for _, msg := range validation.IsHTTPHeaderName(hdr.Name) {
				errs = append(errs, field.Invalid(f.Child("httpHeaders"), hdr.Name, msg))
			}
		}
		return errs
	})
	one(h.tcpSocket != nil, "tcpSocket", func(f *field.Path) field.ErrorList {
		return validateProbePort(h.tcpSocket.Port, c, f.Child("port"))
	})
	one(h.grpc != nil, "grpc", func(f *field.Path) field.ErrorList {
		return validatePortNumOrName(intstr.FromInt32(h.grpc.Port), f.Child("port"))
	})
	one(h.sleep != nil, "sleep", func(f *field.Path) field.ErrorList {
		if h.sleep.Seconds < 0 || h.sleep.Seconds > math.MaxInt32 {
			return field.ErrorList{field.Invalid(f.Child("seconds"), h.sleep.Seconds, "must be non-negative")}
		}
		return nil
	})
	if n == 0 {
		errs = append(errs, field.Required(fld, "must specify a handler type"))
	}
	return errs
}

func validateProbePort(port intstr.IntOrString, c *corev1.Container, fld *field.Path) field.ErrorList {
	errs := validatePortNumOrName(port, fld)
	if len(errs) > 0 || port.Type != intstr.String {
		return errs
	}
	for _, p := range c.Ports {
		if p.Name == port.StrVal {
			return nil
		}
	}
	return field.ErrorList{field.Invalid(fld, port.StrVal, fmt.Sprintf("names no port of container %q; name one of its ports or give a number", c.Name))}
}

// fieldErrors turns validateKube's (or a runtime's CheckRunnable's) errors
// into this package's, for the caller to stamp with file, document and
// resource: Field is the path, Msg what kubectl prints after it.
func fieldErrors(errs field.ErrorList) ErrorList {
	out := make(ErrorList, 0, len(errs))
	for _, e := range errs {
		out = append(out, &Error{Field: e.Field, Msg: e.ErrorBody()})
	}
	return out
}
