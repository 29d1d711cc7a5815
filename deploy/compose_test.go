package deploy

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"hellochat/security"
)

// composeFile is the part of the Compose specification compose.yaml uses.
// It is decoded strictly, so a misspelt key fails here; a key this struct
// lacks means adding it (after checking the Compose specification).
type composeFile struct {
	Name     string                    `json:"name"`
	XBuild   *composeBuild             `json:"x-build"`
	Services map[string]composeService `json:"services"`
	Volumes  map[string]*struct{}      `json:"volumes"`
}

type composeBuild struct {
	Context    string `json:"context"`
	Dockerfile string `json:"dockerfile"`
}

type composeService struct {
	Image           string            `json:"image"`
	Build           *composeBuild     `json:"build"`
	Command         []string          `json:"command"`
	Environment     map[string]string `json:"environment"`
	Volumes         []string          `json:"volumes"`
	Ports           []string          `json:"ports"`
	ReadOnly        bool              `json:"read_only"`
	CapDrop         []string          `json:"cap_drop"`
	SecurityOpt     []string          `json:"security_opt"`
	StopGracePeriod string            `json:"stop_grace_period"`
	Restart         string            `json:"restart"`
	DependsOn       map[string]struct {
		Condition string `json:"condition"`
	} `json:"depends_on"`
}

func TestCompose(t *testing.T) {
	raw, err := os.ReadFile("compose.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var cf composeFile
	if err := yaml.UnmarshalStrict(raw, &cf); err != nil {
		t.Fatalf("compose.yaml: %v", err)
	}
	if len(cf.Services) == 0 {
		t.Fatal("compose.yaml: no services")
	}
	names := make([]string, 0, len(cf.Services))
	for n := range cf.Services {
		names = append(names, n)
	}
	sort.Strings(names)

	type proc struct {
		service string
		p       parsed
		ports   map[string]int
	}
	var nodes, routers []proc
	ids := map[string]string{}
	// The dev-cert services, and the volume each exports a process's
	// certificate to (volume -> role/id).
	devCerts := map[string]bool{}
	exported := map[string]string{}
	mounted := map[string]map[string]string{} // service -> path -> volume
	images := map[string]bool{}
	for _, name := range names {
		s := cf.Services[name]
		where := "compose.yaml: service " + name
		images[s.Image] = true
		if s.Build == nil {
			t.Errorf("%s: no build: `up` would try to pull %s", where, s.Image)
		} else if _, err := os.Stat(filepath.Join(s.Build.Context, s.Build.Dockerfile)); err != nil {
			t.Errorf("%s: build context %q, dockerfile %q: %v", where, s.Build.Context, s.Build.Dockerfile, err)
		}
		if !s.ReadOnly || len(s.CapDrop) != 1 || s.CapDrop[0] != "ALL" {
			t.Errorf("%s: want read_only: true and cap_drop: [ALL]", where)
		}
		for d := range s.DependsOn {
			if _, ok := cf.Services[d]; !ok {
				t.Errorf("%s: depends_on %q, no such service", where, d)
			}
		}
		// Compose would interpolate ${VAR} and $VAR from the host's
		// environment; nothing here means to.
		for _, v := range append(append([]string{}, s.Command...), mapValues(s.Environment)...) {
			if strings.Contains(v, "$") {
				t.Errorf("%s: %q: a $ would be interpolated by compose", where, v)
			}
		}
		p, ok := mustParse(t, invocation{where: where, argv: s.Command, env: s.Environment})
		if !ok {
			continue
		}

		// Volumes: named ones are declared; the data dir is on this
		// service's own volume and the development PKI on the shared one.
		mounts := map[string]string{} // path -> volume
		for _, v := range s.Volumes {
			parts := strings.Split(v, ":")
			if len(parts) < 2 {
				t.Errorf("%s: volume %q: want NAME:PATH", where, v)
				continue
			}
			if _, ok := cf.Volumes[parts[0]]; !ok {
				t.Errorf("%s: volume %q is not declared under volumes:", where, parts[0])
			}
			mounts[parts[1]] = parts[0]
		}
		onVolume := func(path string) string {
			best := ""
			for m := range mounts {
				if (path == m || strings.HasPrefix(path, strings.TrimSuffix(m, "/")+"/")) && len(m) > len(best) {
					best = m
				}
			}
			return mounts[best]
		}
		if p.isDevCert() {
			checkDevCert(t, where, s, p, onVolume, exported)
			devCerts[name] = true
			continue
		}
		mounted[name] = mounts
		ports := checkCommon(t, where, p)
		if other, dup := ids[p.get("id")]; dup {
			t.Errorf("%s: --id %s is also %s's", where, p.get("id"), other)
		}
		ids[p.get("id")] = name
		if pki := p.get("dev-pki"); pki != "" && onVolume(pki) != "pki" {
			t.Errorf("%s: --dev-pki %s is not on the shared volume pki: each process would make its own CA", where, pki)
		}
		if p.isNode() {
			if vol := onVolume(p.get("data")); vol == "" || vol == "pki" {
				t.Errorf("%s: --data %s is on no volume of its own (read_only root: it could not even write)", where, p.get("data"))
			}
		}

		// Published ports: loopback only, and only ports the process opens.
		for _, pub := range s.Ports {
			parts := strings.Split(pub, ":")
			if len(parts) != 3 || parts[0] != "127.0.0.1" {
				t.Errorf("%s: publishes %q: publish on 127.0.0.1 of the host only (127.0.0.1:HOST:CONTAINER)", where, pub)
				continue
			}
			found := false
			for _, port := range ports {
				if fmt.Sprint(port) == parts[2] {
					found = true
				}
			}
			if !found {
				t.Errorf("%s: publishes container port %s, which no --*-addr opens (%v)", where, parts[2], ports)
			}
		}
		if p.isNode() {
			nodes = append(nodes, proc{name, p, ports})
			if len(s.Ports) > 0 {
				t.Errorf("%s: a node publishes ports; only the router should", where)
			}
		} else {
			routers = append(routers, proc{name, p, ports})
		}
	}
	if len(images) != 1 {
		t.Errorf("services use images %v, want one", images)
	}
	if len(nodes) != 3 || len(routers) != 1 {
		t.Fatalf("compose.yaml runs %d nodes and %d routers, want 3 and 1", len(nodes), len(routers))
	}
	// A service started before its certificate is exported would find
	// no files (or create a CA of its own).
	for _, name := range names {
		for d, dep := range cf.Services[name].DependsOn {
			if devCerts[d] && dep.Condition != "service_completed_successfully" {
				t.Errorf("compose.yaml: %s: depends_on %s with condition %q; want service_completed_successfully", name, d, dep.Condition)
			}
		}
	}
	// The router holds its own certificate and nothing more: not the
	// volume with the CA's key (it could mint any certificate), and its
	// files come from a volume a dev-cert service exported for it.
	for _, r := range routers {
		where := "compose.yaml: " + r.service
		if r.p.get("dev-pki") != "" {
			t.Errorf("%s: --dev-pki: the development PKI holds the CA's key; give the router files exported by objectnode dev-cert", where)
		}
		for path, vol := range mounted[r.service] {
			if vol == "pki" {
				t.Errorf("%s: mounts the volume pki (the development CA's key) at %s", where, path)
			}
		}
		self := security.RoleRouter + "/" + r.p.get("id")
		depends := false
		for d := range cf.Services[r.service].DependsOn {
			depends = depends || devCerts[d]
		}
		if !depends {
			t.Errorf("%s: does not depend on the service that exports its certificate", where)
		}
		for flag, file := range map[string]string{"tls-ca": "ca.pem", "tls-cert": "router-" + r.p.get("id") + ".pem", "tls-key": "router-" + r.p.get("id") + ".pem", "gossip-key": "gossip.key"} {
			got := r.p.get(flag)
			dir, base := filepath.Dir(got), filepath.Base(got)
			if vol := mounted[r.service][dir]; exported[vol] != self || base != file {
				t.Errorf("%s: --%s %q: want %s on a volume exported for %s by objectnode dev-cert", where, flag, got, file, self)
			}
		}
	}

	// Names: each node advertises its service name for gRPC; --join lists
	// the founders by service name and gossip port; the founders all
	// expect each other.
	founders := map[string]int{}
	for _, n := range nodes {
		if e := n.p.intValue("expect"); e > 0 {
			founders[n.service] = n.ports["gossip-addr"]
			if e != 3 {
				t.Errorf("compose.yaml: %s: --expect %d; the three founders must expect 3", n.service, e)
			}
		}
		if want := fmt.Sprintf("%s:%d", n.service, n.ports["grpc-addr"]); n.p.get("grpc-advertise") != want {
			t.Errorf("compose.yaml: %s: --grpc-advertise %q, want %q (its service name)", n.service, n.p.get("grpc-advertise"), want)
		}
	}
	for _, pr := range append(nodes, routers...) {
		if got := joinHosts(pr.p); fmt.Sprint(got) != fmt.Sprint(founders) {
			t.Errorf("compose.yaml: %s: --join %v, want the founders %v", pr.service, got, founders)
		}
	}
	r := routers[0]
	if !strings.Contains(strings.Join(cf.Services[r.service].Ports, " "), fmt.Sprintf("127.0.0.1:8080:%d", r.ports["http-addr"])) {
		t.Errorf("compose.yaml: the router's HTTP port %d is not published on 127.0.0.1:8080", r.ports["http-addr"])
	}
}

// checkDevCert checks a one-shot `objectnode dev-cert` service: it reads
// the shared development PKI and writes one process's files to a volume of
// their own; it must not restart once done.
func checkDevCert(t *testing.T, where string, s composeService, p parsed, onVolume func(string) string, exported map[string]string) {
	t.Helper()
	if s.Restart != "no" {
		t.Errorf("%s: restart %q; a one-shot service wants restart: \"no\"", where, s.Restart)
	}
	if onVolume(p.get("dev-pki")) != "pki" {
		t.Errorf("%s: --dev-pki %s is not on the shared volume pki", where, p.get("dev-pki"))
	}
	out := onVolume(p.get("out"))
	switch {
	case out == "":
		t.Errorf("%s: --out %s is on no volume: the files would vanish with the container", where, p.get("out"))
	case out == "pki":
		t.Errorf("%s: --out %s is on the volume pki, next to the CA's key", where, p.get("out"))
	default:
		role := p.get("role")
		if role == "" {
			role = security.RoleRouter
		}
		exported[out] = role + "/" + p.get("id")
	}
}

func mapValues(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for _, v := range m {
		out = append(out, v)
	}
	return out
}
