package deploy

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// Docker is not needed to check what the image promises the manifests:
// the programs it holds and where, its user, its ports, its Go version,
// and a build context that holds every file the build reads.

type instruction struct {
	op   string // upper case
	args string
}

// dockerfile reads the Dockerfile's instructions (joining continued lines,
// dropping comments).
func dockerfile(t *testing.T) []instruction {
	t.Helper()
	raw, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	var out []instruction
	var cur strings.Builder
	for _, line := range strings.Split(string(raw), "\n") {
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "#") || (trimmed == "" && cur.Len() == 0) {
			continue
		}
		if strings.HasSuffix(trimmed, "\\") {
			cur.WriteString(strings.TrimSuffix(trimmed, "\\") + " ")
			continue
		}
		cur.WriteString(trimmed)
		op, args, _ := strings.Cut(strings.TrimSpace(cur.String()), " ")
		out = append(out, instruction{strings.ToUpper(op), strings.TrimSpace(args)})
		cur.Reset()
	}
	return out
}

func TestImage(t *testing.T) {
	ins := dockerfile(t)
	var froms, runs, copies, users, cmds []string
	exposed := map[string]bool{}
	for _, in := range ins {
		switch in.op {
		case "FROM":
			froms = append(froms, in.args)
		case "RUN":
			runs = append(runs, in.args)
		case "COPY":
			copies = append(copies, in.args)
		case "USER":
			users = append(users, in.args)
		case "CMD", "ENTRYPOINT":
			cmds = append(cmds, in.op+" "+in.args)
		case "EXPOSE":
			for _, p := range strings.Fields(in.args) {
				if !strings.Contains(p, "/") {
					p += "/tcp"
				}
				exposed[strings.ToLower(p)] = true
			}
		}
	}
	if len(froms) != 2 {
		t.Fatalf("Dockerfile: %d stages, want 2 (build, runtime)", len(froms))
	}

	// The builder's Go is at least the go.mod's.
	gomod, err := os.ReadFile("../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	mv := regexp.MustCompile(`(?m)^go (\d+)\.(\d+)`).FindStringSubmatch(string(gomod))
	iv := regexp.MustCompile(`^golang:(\d+)\.(\d+)\S* AS build$`).FindStringSubmatch(froms[0])
	if mv == nil || iv == nil {
		t.Errorf("Dockerfile: cannot compare %q with go.mod's go directive", froms[0])
	} else if a, b := atoi(iv[1])*1000+atoi(iv[2]), atoi(mv[1])*1000+atoi(mv[2]); a < b {
		t.Errorf("Dockerfile: builds with %s, older than go.mod's go %s.%s", froms[0], mv[1], mv[2])
	}

	// Static binaries of both programs, on the runtime image's PATH.
	built := false
	for _, r := range runs {
		if strings.Contains(r, "go build") && strings.Contains(r, "CGO_ENABLED=0") &&
			strings.Contains(r, "./cmd/objectnode") && strings.Contains(r, "./cmd/router") {
			built = true
		}
	}
	if !built {
		t.Error("Dockerfile: no RUN builds ./cmd/objectnode and ./cmd/router with CGO_ENABLED=0")
	}
	installed := false
	for _, c := range copies {
		if strings.Contains(c, "--from=build") && strings.HasSuffix(c, " /usr/local/bin/") &&
			strings.Contains(c, "/objectnode") && strings.Contains(c, "/router") {
			installed = true
		}
	}
	if !installed {
		t.Error("Dockerfile: objectnode and router are not copied to /usr/local/bin/, where the manifests' commands find them")
	}
	if len(cmds) != 1 || !strings.Contains(cmds[0], `"objectnode"`) {
		t.Errorf("Dockerfile: default command %v, want one naming objectnode", cmds)
	}

	// A numeric non-root user (runAsNonRoot can check only a number), the
	// one the manifests name.
	if len(users) != 1 {
		t.Fatalf("Dockerfile: USER %v, want one", users)
	}
	uid, err := strconv.Atoi(strings.Split(users[0], ":")[0])
	if err != nil || uid == 0 {
		t.Errorf("Dockerfile: USER %q, want a numeric non-root uid", users[0])
	}
	objs := decodeManifests(t, manifestGlobs...)
	for _, o := range objs {
		if _, tmpl, _, ok := workloadPods(o); ok {
			sc := tmpl.Spec.SecurityContext
			if sc != nil && sc.RunAsUser != nil && int(*sc.RunAsUser) != uid {
				t.Errorf("%s: %s runs as %d, the image's user is %d", o.file, o.name, *sc.RunAsUser, uid)
			}
			for _, c := range tmpl.Spec.Containers {
				for _, cp := range c.Ports {
					proto := cp.Protocol
					if proto == "" {
						proto = corev1.ProtocolTCP
					}
					if p := fmt.Sprintf("%d/%s", cp.ContainerPort, strings.ToLower(string(proto))); !exposed[p] {
						t.Errorf("%s: port %s is not EXPOSEd by the Dockerfile (%v)", o.file, p, exposed)
					}
				}
			}
		}
	}
	raw, err := os.ReadFile("compose.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var cf composeFile
	if err := yaml.Unmarshal(raw, &cf); err != nil {
		t.Fatal(err)
	}
	for name, s := range cf.Services {
		for _, pub := range s.Ports {
			parts := strings.Split(pub, ":")
			if p := parts[len(parts)-1] + "/tcp"; !exposed[p] {
				t.Errorf("compose.yaml: %s publishes %s, which the Dockerfile does not EXPOSE", name, p)
			}
		}
	}
}

func atoi(s string) int { n, _ := strconv.Atoi(s); return n }

// dockerignore reads ../.dockerignore, accepting only the pattern forms
// ignored() implements.
func dockerignore(t *testing.T) []string {
	t.Helper()
	raw, err := os.ReadFile("../.dockerignore")
	if err != nil {
		t.Fatal(err)
	}
	var pats []string
	for _, line := range strings.Split(string(raw), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if strings.HasPrefix(line, "!") || strings.Contains(strings.TrimPrefix(line, "**/"), "**") {
			t.Fatalf(".dockerignore: pattern %q is of a form this test does not implement; extend ignored()", line)
		}
		pats = append(pats, filepath.Clean(strings.TrimPrefix(line, "/")))
	}
	return pats
}

// ignored reports whether Docker leaves path (relative to the context, with
// slashes) out of the build context: a pattern matches the path or one of
// its parent directories; **/ matches any number of directories.
func ignored(pats []string, path string) bool {
	parts := strings.Split(path, "/")
	for _, p := range pats {
		for i := 1; i <= len(parts); i++ {
			if rest, ok := strings.CutPrefix(p, "**/"); ok {
				for j := 0; j < i; j++ {
					if m, _ := filepath.Match(rest, strings.Join(parts[j:i], "/")); m {
						return true
					}
				}
			} else if m, _ := filepath.Match(p, strings.Join(parts[:i], "/")); m {
				return true
			}
		}
	}
	return false
}

func TestDockerignoreKeepsTheBuildInputs(t *testing.T) {
	pats := dockerignore(t)
	for _, want := range []string{".git", "data/node1/x", "bin/router", "deploy/k8s/node.yaml", "router/router.test", "cover.out"} {
		if !ignored(pats, want) {
			t.Errorf(".dockerignore keeps %s in the build context", want)
		}
	}
	// Every file of this module the two programs are built from.
	cmd := exec.Command("go", "list", "-deps", "-f",
		`{{if .Module}}{{if eq .Module.Path "hellochat"}}{{$d := .Dir}}{{range .GoFiles}}{{$d}}/{{.}}{{"\n"}}{{end}}{{range .EmbedFiles}}{{$d}}/{{.}}{{"\n"}}{{end}}{{end}}{{end}}`,
		"hellochat/cmd/objectnode", "hellochat/cmd/router")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	files := []string{"go.mod", "go.sum"}
	for _, f := range strings.Fields(string(out)) {
		rel, err := filepath.Rel(root, f)
		if err != nil || strings.HasPrefix(rel, "..") {
			t.Fatalf("%s is outside the module root %s", f, root)
		}
		files = append(files, filepath.ToSlash(rel))
	}
	if len(files) < 20 {
		t.Fatalf("go list found only %d files:\n%s", len(files), out)
	}
	for _, f := range files {
		if ignored(pats, f) {
			t.Errorf(".dockerignore leaves %s out of the build context, and the build needs it", f)
		}
	}
}
