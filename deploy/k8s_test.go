package deploy

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// The manifests are checked offline: every document decodes strictly (no
// unknown or duplicate field) into the k8s.io/api type its apiVersion and
// kind name, and then the checks below tie the objects to each other and
// to the binaries.

// The values the downward API would give a pod in the test.
const (
	testNamespace = "hc-test"
	testPodIP     = "10.1.2.3"
)

// manifestGlobs are the files checked: deploy/k8s is what `kubectl apply
// -f deploy/k8s/` applies; deploy/ops holds one-off Jobs.
var manifestGlobs = []string{"k8s/*.yaml", "ops/*.yaml"}

type object struct {
	file string
	kind string // apiVersion/kind
	name string // or generateName
	meta metav1.Object
	obj  any
}

// codecs decode the API groups the manifests use, strictly: an unknown
// field (matched case-sensitively, as the API server does) or a duplicate
// one is an error, as it is for `kubectl apply` with the API server's
// default strict field validation.
var codecs = func() serializer.CodecFactory {
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{corev1.AddToScheme, appsv1.AddToScheme, batchv1.AddToScheme, policyv1.AddToScheme} {
		if err := add(scheme); err != nil {
			panic(err)
		}
	}
	return serializer.NewCodecFactory(scheme, serializer.EnableStrict)
}()

// decodeStrict decodes one YAML document into the typed object its
// apiVersion and kind name.
func decodeStrict(doc []byte) (runtime.Object, error) {
	obj, _, err := codecs.UniversalDeserializer().Decode(doc, nil, nil)
	return obj, err
}

// decodeManifests reads every YAML document of the files globs match.
func decodeManifests(t *testing.T, globs ...string) []object {
	t.Helper()
	var files []string
	for _, g := range globs {
		m, err := filepath.Glob(g)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, m...)
	}
	if len(files) == 0 {
		t.Fatalf("no manifests match %v", globs)
	}
	var objs []object
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(raw)))
		for i := 1; ; i++ {
			doc, err := r.Read()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("%s: document %d: %v", f, i, err)
			}
			j, err := yaml.YAMLToJSON(doc)
			if err != nil {
				t.Fatalf("%s: document %d: %v", f, i, err)
			}
			if s := strings.TrimSpace(string(j)); s == "null" || s == "{}" {
				continue // comments only
			}
			obj, err := decodeStrict(doc)
			if err != nil {
				t.Errorf("%s: document %d: %v", f, i, err)
				continue
			}
			meta, ok := obj.(metav1.Object)
			if !ok {
				t.Errorf("%s: document %d: %T has no object metadata", f, i, obj)
				continue
			}
			gvk := obj.GetObjectKind().GroupVersionKind()
			kind := gvk.GroupVersion().String() + "/" + gvk.Kind
			name := meta.GetName()
			if name == "" {
				name = meta.GetGenerateName()
			}
			objs = append(objs, object{file: f, kind: kind, name: name, meta: meta, obj: obj})
		}
	}
	return objs
}

// podRun is one container of one pod a workload would run.
type podRun struct {
	where     string
	owner     object
	podName   string
	podLabels map[string]string
	spec      *corev1.PodSpec
	claims    map[string]bool // volumeClaimTemplates of a StatefulSet
	container *corev1.Container
	env       map[string]string
	inv       invocation
	p         parsed
	parsedOK  bool
	ports     map[string]int // listening flag -> port
}

// workloadPods expands a workload into the pods it runs: a StatefulSet's
// ordinals 0..replicas-1, or one pod for a Deployment or a Job.
func workloadPods(o object) (pods []string, tmpl *corev1.PodTemplateSpec, claims map[string]bool, ok bool) {
	claims = map[string]bool{}
	switch w := o.obj.(type) {
	case *appsv1.StatefulSet:
		n := int32(1)
		if w.Spec.Replicas != nil {
			n = *w.Spec.Replicas
		}
		for i := int32(0); i < n; i++ {
			pods = append(pods, fmt.Sprintf("%s-%d", w.Name, i))
		}
		for _, c := range w.Spec.VolumeClaimTemplates {
			claims[c.Name] = true
		}
		return pods, &w.Spec.Template, claims, true
	case *appsv1.Deployment:
		return []string{w.Name + "-5d4f8b7c9-x2x7q"}, &w.Spec.Template, claims, true
	case *batchv1.Job:
		name := w.Name
		if name == "" {
			name = w.GenerateName + "x7k2p"
		}
		return []string{name + "-q9z4m"}, &w.Spec.Template, claims, true
	}
	return nil, nil, nil, false
}

// expandK8s expands $(VAR) the way the kubelet does in command, args and
// env values: defined variables are replaced, $$ is a literal $, and an
// undefined reference stays as written (reported here: it is a bug).
func expandK8s(s string, vars map[string]string) (string, []string) {
	var b strings.Builder
	var undefined []string
	for i := 0; i < len(s); i++ {
		if s[i] != '$' || i+1 >= len(s) {
			b.WriteByte(s[i])
			continue
		}
		switch s[i+1] {
		case '$':
			b.WriteByte('$')
			i++
		case '(':
			end := strings.IndexByte(s[i:], ')')
			if end < 0 {
				b.WriteString(s[i:])
				return b.String(), undefined
			}
			name := s[i+2 : i+end]
			if v, ok := vars[name]; ok {
				b.WriteString(v)
			} else {
				undefined = append(undefined, name)
				b.WriteString(s[i : i+end+1])
			}
			i += end
		default:
			b.WriteByte(s[i])
		}
	}
	return b.String(), undefined
}

// podRuns expands every workload of objs into its containers' command
// lines and parses them.
func podRuns(t *testing.T, objs []object) []*podRun {
	t.Helper()
	var runs []*podRun
	for _, o := range objs {
		pods, tmpl, claims, ok := workloadPods(o)
		if !ok {
			continue
		}
		for _, pod := range pods {
			for ci := range tmpl.Spec.Containers {
				c := &tmpl.Spec.Containers[ci]
				where := fmt.Sprintf("%s: %s pod %s container %s", o.file, o.kind, pod, c.Name)
				env := map[string]string{}
				for _, e := range c.Env {
					switch {
					case e.ValueFrom == nil:
						v, undef := expandK8s(e.Value, env)
						if len(undef) > 0 {
							t.Errorf("%s: env %s refers to undefined $(%s) (only variables defined above it expand)", where, e.Name, strings.Join(undef, "), $("))
						}
						env[e.Name] = v
					case e.ValueFrom.FieldRef != nil:
						switch e.ValueFrom.FieldRef.FieldPath {
						case "metadata.name":
							env[e.Name] = pod
						case "metadata.namespace":
							env[e.Name] = testNamespace
						case "status.podIP":
							env[e.Name] = testPodIP
						default:
							t.Errorf("%s: env %s: field %q unknown to this test", where, e.Name, e.ValueFrom.FieldRef.FieldPath)
						}
					default:
						t.Errorf("%s: env %s: only values and fieldRefs are expected", where, e.Name)
					}
				}
				var argv []string
				for _, a := range append(append([]string{}, c.Command...), c.Args...) {
					v, undef := expandK8s(a, env)
					if len(undef) > 0 {
						t.Errorf("%s: %q refers to undefined $(%s); the kubelet would pass it literally", where, a, strings.Join(undef, "), $("))
					}
					argv = append(argv, v)
				}
				if len(c.Command) == 0 {
					t.Errorf("%s: no command: the image's default only prints usage", where)
				}
				r := &podRun{where: where, owner: o, podName: pod, podLabels: tmpl.Labels, spec: &tmpl.Spec,
					claims: claims, container: c, env: env, inv: invocation{where: where, argv: argv, env: env}}
				r.p, r.parsedOK = mustParse(t, r.inv)
				if r.parsedOK {
					r.ports = checkCommon(t, where, r.p)
				}
				runs = append(runs, r)
			}
		}
	}
	return runs
}

// mountOf finds the volume mount holding path.
func mountOf(c *corev1.Container, path string) (corev1.VolumeMount, string, bool) {
	best, rel, found := corev1.VolumeMount{}, "", false
	for _, m := range c.VolumeMounts {
		mp := strings.TrimSuffix(m.MountPath, "/")
		if strings.HasPrefix(path, mp+"/") && len(mp) > len(best.MountPath) {
			best, rel, found = m, strings.TrimPrefix(path, mp+"/"), true
		}
	}
	return best, rel, found
}

func volumeOf(spec *corev1.PodSpec, name string) *corev1.Volume {
	for i := range spec.Volumes {
		if spec.Volumes[i].Name == name {
			return &spec.Volumes[i]
		}
	}
	return nil
}

// secretFile is a file a process reads from a mounted Secret.
type secretFile struct {
	flag, secret, key string
}

// secretFiles resolves the process's certificate and key flags to Secret
// keys, reporting a file that no Secret mount holds.
func secretFiles(t *testing.T, r *podRun) map[string]secretFile {
	t.Helper()
	out := map[string]secretFile{}
	for _, f := range []string{"tls-ca", "tls-cert", "tls-key", "gossip-key"} {
		path := r.p.get(f)
		if path == "" {
			continue
		}
		m, rel, ok := mountOf(r.container, path)
		if !ok {
			t.Errorf("%s: --%s %s is on no mounted volume", r.where, f, path)
			continue
		}
		v := volumeOf(r.spec, m.Name)
		if v == nil || v.Secret == nil {
			t.Errorf("%s: --%s %s: volume %q is not a Secret", r.where, f, path, m.Name)
			continue
		}
		if len(v.Secret.Items) > 0 || strings.Contains(rel, "/") {
			t.Errorf("%s: --%s %s: this test expects whole Secrets mounted (no items, no subdirectories)", r.where, f, path)
			continue
		}
		if !m.ReadOnly {
			t.Errorf("%s: Secret volume %q is mounted read-write", r.where, m.Name)
		}
		out[f] = secretFile{flag: f, secret: v.Secret.SecretName, key: rel}
	}
	return out
}

func findObject(objs []object, kind, name string) *object {
	for i := range objs {
		if objs[i].kind == kind && objs[i].name == name {
			return &objs[i]
		}
	}
	return nil
}

// portFlags maps a container port's name to the flag that opens it.
var portFlags = map[string]string{
	"grpc": "grpc-addr", "gossip-tcp": "gossip-addr", "gossip-udp": "gossip-addr",
	"admin": "admin-addr", "http": "http-addr",
}

// resolvePort finds the container port a probe or Service targets.
func resolvePort(c *corev1.Container, port intstr.IntOrString, proto corev1.Protocol) (corev1.ContainerPort, bool) {
	if proto == "" {
		proto = corev1.ProtocolTCP
	}
	for _, cp := range c.Ports {
		p := cp.Protocol
		if p == "" {
			p = corev1.ProtocolTCP
		}
		if p != proto {
			continue
		}
		if (port.Type == intstr.String && cp.Name == port.StrVal) || (port.Type == intstr.Int && cp.ContainerPort == port.IntVal) {
			return cp, true
		}
	}
	return corev1.ContainerPort{}, false
}

func selects(t *testing.T, sel *metav1.LabelSelector, podLabels map[string]string) bool {
	t.Helper()
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		t.Errorf("selector %v: %v", sel, err)
		return false
	}
	return !s.Empty() && s.Matches(labels.Set(podLabels))
}

func TestManifestsDecodeStrictly(t *testing.T) {
	objs := decodeManifests(t, manifestGlobs...)
	kinds := map[string]int{}
	for _, o := range objs {
		kinds[o.kind]++
		if ns := o.meta.GetNamespace(); ns != "" {
			t.Errorf("%s: %s %s sets namespace %q; the manifests are applied with -n", o.file, o.kind, o.name, ns)
		}
		nameCheck := validation.IsDNS1123Subdomain
		if o.kind == "v1/Service" {
			nameCheck = validation.IsDNS1035Label
		}
		if o.name == "" {
			t.Errorf("%s: %s has no name", o.file, o.kind)
		} else if errs := nameCheck(strings.TrimSuffix(o.name, "-")); len(errs) > 0 {
			t.Errorf("%s: %s name %q: %v", o.file, o.kind, o.name, errs)
		}
		for k, v := range o.meta.GetLabels() {
			if errs := append(validation.IsQualifiedName(k), validation.IsValidLabelValue(v)...); len(errs) > 0 {
				t.Errorf("%s: %s %s label %s=%s: %v", o.file, o.kind, o.name, k, v, errs)
			}
		}
	}
	for _, want := range []string{"v1/Service", "apps/v1/StatefulSet", "policy/v1/PodDisruptionBudget", "batch/v1/Job"} {
		if kinds[want] == 0 {
			t.Errorf("no %s in %v", want, manifestGlobs)
		}
	}

	// Strictness is what the decoding is for: a misspelt, miscased or
	// repeated field, or a value of the wrong type, must fail.
	for _, bad := range []string{
		"apiVersion: v1\nkind: Service\nmetadata:\n  name: x\nspec:\n  clusterIp: None\n",
		"apiVersion: v1\nkind: Service\nmetadata:\n  name: x\nspec:\n  clusterIP: None\n  clusterIP: None\n",
		"apiVersion: apps/v1\nkind: StatefulSet\nmetadata:\n  name: x\nspec:\n  replica: 3\n",
		"apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: x\nspec:\n  replicas: three\n",
		"apiVersion: v1\nkind: Pod\nmetadata:\n  name: x\nspec:\n  containers:\n    - name: c\n      resources:\n        requests:\n          memory: lots\n",
		"apiVersion: apps/v1\nkind: Statefulset\nmetadata:\n  name: x\n",
	} {
		if _, err := decodeStrict([]byte(bad)); err == nil {
			t.Errorf("strict decoding accepted:\n%s", bad)
		}
	}
	if _, err := decodeStrict([]byte("apiVersion: v1\nkind: Service\nmetadata:\n  name: x\nspec:\n  clusterIP: None\n")); err != nil {
		t.Errorf("strict decoding refused a good Service: %v", err)
	}
}

func TestManifestsHangTogether(t *testing.T) {
	objs := decodeManifests(t, manifestGlobs...)

	// Workloads: selectors, volumes, hardening, probes.
	type template struct {
		o      object
		labels map[string]string
		spec   *corev1.PodSpec
	}
	var templates []template
	for _, o := range objs {
		_, tmpl, claims, ok := workloadPods(o)
		if !ok {
			continue
		}
		where := fmt.Sprintf("%s: %s %s", o.file, o.kind, o.name)
		templates = append(templates, template{o, tmpl.Labels, &tmpl.Spec})
		var sel *metav1.LabelSelector
		switch w := o.obj.(type) {
		case *appsv1.StatefulSet:
			sel = w.Spec.Selector
			if w.Spec.ServiceName != "" && findObject(objs, "v1/Service", w.Spec.ServiceName) == nil {
				t.Errorf("%s: serviceName %q is no Service here", where, w.Spec.ServiceName)
			}
			if w.Spec.Replicas == nil {
				t.Errorf("%s: replicas unset", where)
			}
		case *appsv1.Deployment:
			sel = w.Spec.Selector
		}
		if sel != nil && !selects(t, sel, tmpl.Labels) {
			t.Errorf("%s: selector %v does not match the pod template's labels %v", where, sel.MatchLabels, tmpl.Labels)
		}
		spec := &tmpl.Spec
		if spec.EnableServiceLinks == nil || *spec.EnableServiceLinks {
			t.Errorf("%s: enableServiceLinks must be false: Kubernetes would set HELLOCHAT_ROUTER_SERVICE_HOST and the like, the prefix of the flags' variables", where)
		}
		if spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
			t.Errorf("%s: automountServiceAccountToken must be false: the programs never call the Kubernetes API", where)
		}
		if sc := spec.SecurityContext; sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot || sc.RunAsUser == nil || *sc.RunAsUser == 0 {
			t.Errorf("%s: the pod must run as a non-root user (runAsNonRoot, runAsUser)", where)
		}
		volumes := map[string]bool{}
		for _, v := range spec.Volumes {
			if volumes[v.Name] {
				t.Errorf("%s: volume %q defined twice", where, v.Name)
			}
			volumes[v.Name] = true
		}
		for _, c := range spec.Containers {
			cw := where + " container " + c.Name
			sc := c.SecurityContext
			if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
				t.Errorf("%s: readOnlyRootFilesystem must be true", cw)
			}
			if sc == nil || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
				t.Errorf("%s: allowPrivilegeEscalation must be false", cw)
			}
			if sc == nil || sc.Capabilities == nil || len(sc.Capabilities.Drop) != 1 || sc.Capabilities.Drop[0] != "ALL" {
				t.Errorf("%s: capabilities must drop ALL", cw)
			}
			for _, m := range c.VolumeMounts {
				if !volumes[m.Name] && !claims[m.Name] {
					t.Errorf("%s: volumeMount %q names no volume or volumeClaimTemplate", cw, m.Name)
				}
			}
			for _, cp := range c.Ports {
				if errs := validation.IsValidPortName(cp.Name); len(errs) > 0 {
					t.Errorf("%s: port name %q: %v", cw, cp.Name, errs)
				}
			}
			probes := map[string]*corev1.Probe{"startup": c.StartupProbe, "liveness": c.LivenessProbe, "readiness": c.ReadinessProbe}
			for kind, pr := range probes {
				if pr == nil {
					continue
				}
				if pr.HTTPGet == nil {
					t.Errorf("%s: %s probe is not an HTTP GET (the gRPC port needs a client certificate)", cw, kind)
					continue
				}
				if _, ok := resolvePort(&c, pr.HTTPGet.Port, corev1.ProtocolTCP); !ok {
					t.Errorf("%s: %s probe port %s is none of the container's ports", cw, kind, pr.HTTPGet.Port.String())
				}
				want := "/livez"
				if kind == "readiness" {
					want = "/readyz"
				}
				if pr.HTTPGet.Path != want {
					t.Errorf("%s: %s probe path %q, want %q", cw, kind, pr.HTTPGet.Path, want)
				}
			}
			if len(c.Ports) > 0 && (c.LivenessProbe == nil || c.ReadinessProbe == nil) {
				t.Errorf("%s: a server needs liveness and readiness probes", cw)
			}
		}
	}

	// Services and PodDisruptionBudgets select the pods they mean to.
	podsSelected := func(sel *metav1.LabelSelector) (out []int) {
		for i, tp := range templates {
			if selects(t, sel, tp.labels) {
				out = append(out, i)
			}
		}
		return out
	}
	for _, o := range objs {
		where := fmt.Sprintf("%s: %s %s", o.file, o.kind, o.name)
		switch s := o.obj.(type) {
		case *corev1.Service:
			matched := podsSelected(&metav1.LabelSelector{MatchLabels: s.Spec.Selector})
			if len(matched) == 0 {
				t.Errorf("%s: selector %v matches no pod template", where, s.Spec.Selector)
			}
			for _, sp := range s.Spec.Ports {
				target := sp.TargetPort
				if target.Type == intstr.Int && target.IntVal == 0 {
					target = intstr.FromInt32(sp.Port)
				}
				for _, i := range matched {
					found := false
					for ci := range templates[i].spec.Containers {
						if _, ok := resolvePort(&templates[i].spec.Containers[ci], target, sp.Protocol); ok {
							found = true
						}
					}
					if !found {
						t.Errorf("%s: port %s targets %s/%s, which %s %s does not declare", where, sp.Name, target.String(), sp.Protocol, templates[i].o.kind, templates[i].o.name)
					}
				}
			}
		case *policyv1.PodDisruptionBudget:
			if n := len(podsSelected(s.Spec.Selector)); n != 1 {
				t.Errorf("%s: selects %d workloads, want 1", where, n)
			}
			if s.Spec.MaxUnavailable == nil || s.Spec.MaxUnavailable.String() != "1" {
				t.Errorf("%s: maxUnavailable must be 1 (a shard's quorum is 2 of its 3 replicas)", where)
			}
		}
	}

	// The processes: flags, ports, files, names.
	runs := podRuns(t, objs)
	nodeSet := findObject(objs, "apps/v1/StatefulSet", "hellochat-node")
	if nodeSet == nil {
		t.Fatal("no StatefulSet hellochat-node")
	}
	nodes := nodeSet.obj.(*appsv1.StatefulSet)
	if nodes.Spec.PodManagementPolicy != appsv1.ParallelPodManagement {
		t.Errorf("%s: podManagementPolicy must be Parallel: the founders wait for each other to form the cluster, so OrderedReady never gets past pod 0", nodeSet.file)
	}
	headless := findObject(objs, "v1/Service", nodes.Spec.ServiceName)
	if headless == nil {
		t.Fatalf("no Service %q for the node StatefulSet", nodes.Spec.ServiceName)
	}
	hs := headless.obj.(*corev1.Service)
	if hs.Spec.ClusterIP != corev1.ClusterIPNone {
		t.Errorf("%s: Service %s must be headless (clusterIP: None) to give each node pod a DNS name", headless.file, hs.Name)
	}
	if !hs.Spec.PublishNotReadyAddresses {
		t.Errorf("%s: Service %s needs publishNotReadyAddresses: nodes are ready only once the cluster formed, which needs their names", headless.file, hs.Name)
	}

	var nodeJoin map[string]int
	var nodeGRPC, nodeGossip int
	images := map[string]bool{}
	for _, r := range runs {
		images[r.container.Image] = true
		if !r.parsedOK {
			continue
		}
		// Ports: each declared container port is opened by its flag, and
		// each listening flag's port is declared.
		declared := map[string]bool{}
		for _, cp := range r.container.Ports {
			f, ok := portFlags[cp.Name]
			if !ok {
				t.Errorf("%s: container port %q is none of %v", r.where, cp.Name, portFlags)
				continue
			}
			wantProto := corev1.ProtocolTCP
			if cp.Name == "gossip-udp" {
				wantProto = corev1.ProtocolUDP
			}
			if p := cp.Protocol; p != wantProto && !(p == "" && wantProto == corev1.ProtocolTCP) {
				t.Errorf("%s: port %s protocol %s, want %s", r.where, cp.Name, p, wantProto)
			}
			if got := r.ports[f]; got != int(cp.ContainerPort) {
				t.Errorf("%s: port %s is %d but --%s listens on %d", r.where, cp.Name, cp.ContainerPort, f, got)
			}
			declared[f+"/"+string(wantProto)] = true
		}
		if !r.p.isDecommission() {
			for f := range r.ports {
				protos := []string{"TCP"}
				if f == "gossip-addr" {
					protos = append(protos, "UDP")
				}
				for _, pr := range protos {
					if !declared[f+"/"+pr] {
						t.Errorf("%s: --%s listens on %d/%s, but the container declares no such port", r.where, f, r.ports[f], pr)
					}
				}
			}
			for _, pr := range []*corev1.Probe{r.container.LivenessProbe, r.container.ReadinessProbe, r.container.StartupProbe} {
				if pr == nil || pr.HTTPGet == nil {
					continue
				}
				if cp, ok := resolvePort(r.container, pr.HTTPGet.Port, corev1.ProtocolTCP); ok && int(cp.ContainerPort) != r.ports["admin-addr"] {
					t.Errorf("%s: probe on port %d, but --admin-addr (which serves /livez and /readyz) is on %d", r.where, cp.ContainerPort, r.ports["admin-addr"])
				}
			}
		}
		// Certificates come from mounted Secrets; the id is the pod name
		// (a certificate names one id, issued before the pod exists).
		files := secretFiles(t, r)
		if !r.p.isDecommission() {
			if len(files) != 4 {
				t.Errorf("%s: reads %d of its 4 security files from Secrets", r.where, len(files))
			}
			if id := r.p.get("id"); id != r.podName {
				t.Errorf("%s: --id %q is not the pod name", r.where, id)
			}
			if !strings.Contains(r.p.get("tls-cert"), r.podName) || !strings.Contains(r.p.get("tls-key"), r.podName) {
				t.Errorf("%s: --tls-cert %q / --tls-key %q: each pod must pick its own files by pod name", r.where, r.p.get("tls-cert"), r.p.get("tls-key"))
			}
		}
		if r.p.isNode() {
			if r.owner.name != nodes.Name {
				t.Errorf("%s: an object node outside StatefulSet %s", r.where, nodes.Name)
				continue
			}
			m, _, ok := mountOf(r.container, r.p.get("data")+"/x")
			if !ok || m.ReadOnly || !r.claims[m.Name] {
				t.Errorf("%s: --data %s must be on the pod's own volume (a volumeClaimTemplate), writable", r.where, r.p.get("data"))
			}
			if e := r.p.intValue("expect"); e != int(*nodes.Spec.Replicas) {
				t.Errorf("%s: --expect %d differs from the StatefulSet's %d replicas: the founders must all expect each other (scale up only after the cluster formed, deploy/README.md)", r.where, e, *nodes.Spec.Replicas)
			}
			nodeGRPC, nodeGossip = r.ports["grpc-addr"], r.ports["gossip-addr"]
			want := fmt.Sprintf("%s.%s.%s.svc:%d", r.podName, hs.Name, testNamespace, nodeGRPC)
			if got := r.p.get("grpc-advertise"); got != want {
				t.Errorf("%s: --grpc-advertise %q, want the pod's stable name %q", r.where, got, want)
			}
			if got := r.p.get("gossip-advertise"); got != fmt.Sprintf("%s:%d", testPodIP, nodeGossip) {
				t.Errorf("%s: --gossip-advertise %q, want the pod IP (status.podIP) and the gossip port", r.where, got)
			}
			founders := map[string]int{}
			for i := 0; i < r.p.intValue("expect"); i++ {
				founders[fmt.Sprintf("%s-%d.%s.%s.svc", nodes.Name, i, hs.Name, testNamespace)] = nodeGossip
			}
			if got := joinHosts(r.p); fmt.Sprint(got) != fmt.Sprint(founders) {
				t.Errorf("%s: --join %v, want the founders' stable names %v", r.where, got, founders)
			}
			nodeJoin = joinHosts(r.p)
		}
	}
	if len(images) != 1 {
		t.Errorf("containers use %d images %v, want one", len(images), images)
	}
	nodeSeen, routerSeen, decomSeen := false, false, false
	for _, r := range runs {
		if !r.parsedOK {
			continue
		}
		switch {
		case r.p.isNode():
			nodeSeen = true
		case r.p.isRouter():
			routerSeen = true
			if fmt.Sprint(joinHosts(r.p)) != fmt.Sprint(nodeJoin) {
				t.Errorf("%s: --join %v differs from the nodes' %v", r.where, joinHosts(r.p), nodeJoin)
			}
			if _, ok := r.owner.obj.(*appsv1.StatefulSet); !ok {
				t.Errorf("%s: routers must have stable pod names (a StatefulSet): each router's certificate names its --id", r.where)
			}
			if got := r.p.get("gossip-advertise"); got != fmt.Sprintf("%s:%d", testPodIP, r.ports["gossip-addr"]) {
				t.Errorf("%s: --gossip-advertise %q, want the pod IP and the gossip port", r.where, got)
			}
		case r.p.isDecommission():
			decomSeen = true
			host, port, _ := splitAddr(r.p.positional[0])
			if !strings.HasSuffix(host, fmt.Sprintf(".%s.%s.svc", hs.Name, testNamespace)) || port != nodeGRPC {
				t.Errorf("%s: decommission target %q is not a node pod's gRPC address", r.where, r.p.positional[0])
			}
		}
	}
	if !nodeSeen || !routerSeen || !decomSeen {
		t.Errorf("processes found: node %v, router %v, decommission %v; want all", nodeSeen, routerSeen, decomSeen)
	}
}

// secretNames is every Secret the workloads mount.
func secretNames(objs []object) []string {
	set := map[string]bool{}
	for _, o := range objs {
		if _, tmpl, _, ok := workloadPods(o); ok {
			for _, v := range tmpl.Spec.Volumes {
				if v.Secret != nil {
					set[v.Secret.SecretName] = true
				}
			}
		}
	}
	var out []string
	for s := range set {
		out = append(out, s)
	}
	sort.Strings(out)
	return out
}
