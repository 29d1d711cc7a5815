package deploy

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// This file knows the binaries' command lines: it builds them once, reads
// the flags each accepts from its -h output, and parses a command line the
// way the flag package and internal/flagenv do (environment first, then
// the arguments).

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error

	helpMu    sync.Mutex
	helpCache = map[string]*cli{}
)

// binaries builds objectnode and router from this module once per test
// process (the go build cache makes later runs cheap).
func binaries(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "hellochat-deploy-bin-")
		if buildErr != nil {
			return
		}
		cmd := exec.Command("go", "build", "-o", binDir+string(filepath.Separator), "hellochat/cmd/objectnode", "hellochat/cmd/router")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binDir
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// flagInfo is one flag as -h shows it.
type flagInfo struct {
	name   string
	typ    string // "" for a boolean flag, else what -h prints: string, int, duration, float, ...
	envVar string // HELLOCHAT_..., from the "[$...]" that flagenv appends
}

// cli is the flag set of one command (objectnode, objectnode decommission,
// objectnode dev-cert, router).
type cli struct {
	name  string
	flags map[string]flagInfo
	byEnv map[string]flagInfo
	// positional is how many arguments follow the flags.
	positional int
}

var (
	// "  -name type" or "  -name" (a boolean), as flag.PrintDefaults writes
	// flags of more than one letter.
	helpFlagLine = regexp.MustCompile(`^  -([A-Za-z0-9][A-Za-z0-9._-]*)(?: ([A-Za-z0-9]+))?$`)
	helpEnv      = regexp.MustCompile(`\[\$(HELLOCHAT_[A-Z0-9_]+)\]`)
)

// commandCLI returns the flags of the command named by argv's first words:
// objectnode, router or "objectnode decommission".
func commandCLI(t *testing.T, command string) *cli {
	t.Helper()
	helpMu.Lock()
	defer helpMu.Unlock()
	if c, ok := helpCache[command]; ok {
		return c
	}
	words := strings.Fields(command)
	bin := filepath.Join(binaries(t), words[0])
	args := append(append([]string{}, words[1:]...), "-h")
	cmd := exec.Command(bin, args...)
	cmd.Env = cleanEnv()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s -h: %v\n%s", command, err, out)
	}
	c := &cli{name: command, flags: map[string]flagInfo{}, byEnv: map[string]flagInfo{}}
	if command == "objectnode decommission" {
		c.positional = 1 // HOST:PORT
	}
	var cur *flagInfo
	flush := func() {
		if cur != nil {
			c.flags[cur.name] = *cur
			if cur.envVar != "" {
				c.byEnv[cur.envVar] = *cur
			}
		}
		cur = nil
	}
	for _, line := range strings.Split(string(out), "\n") {
		if m := helpFlagLine.FindStringSubmatch(line); m != nil {
			flush()
			cur = &flagInfo{name: m[1], typ: m[2]}
			continue
		}
		if cur != nil && strings.HasPrefix(line, "    \t") {
			if m := helpEnv.FindStringSubmatch(line); m != nil {
				cur.envVar = m[1]
			}
			continue
		}
		flush()
	}
	flush()
	// A parse that found nothing would make every flag look unknown; one
	// that lost the variables would wave HELLOCHAT_* through. Both are
	// this parser's bugs, not the manifests'.
	minFlags := 5
	if command == "objectnode dev-cert" {
		minFlags = 4 // --dev-pki, --role, --id, --out
	}
	if len(c.flags) < minFlags {
		t.Fatalf("%s -h: found only %d flags in:\n%s", command, len(c.flags), out)
	}
	for _, f := range c.flags {
		if f.envVar == "" {
			t.Fatalf("%s -h: flag -%s shows no [$HELLOCHAT_...] variable:\n%s", command, f.name, out)
		}
	}
	helpCache[command] = c
	return c
}

// cleanEnv is the test's environment without HELLOCHAT_* variables, which
// would change the defaults -h shows.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "HELLOCHAT_") {
			env = append(env, kv)
		}
	}
	return env
}

// invocation is one process a manifest or the compose file starts.
type invocation struct {
	where string            // for messages
	argv  []string          // the command and its arguments, variables expanded
	env   map[string]string // its environment, variables expanded
}

// parsed is what an invocation sets: every flag given by the environment
// or the command line (the latter wins), and the positional arguments.
type parsed struct {
	cli        *cli
	values     map[string]string
	fromEnv    map[string]bool
	positional []string
}

func (p parsed) has(name string) bool     { _, ok := p.values[name]; return ok }
func (p parsed) get(name string) string   { return p.values[name] }
func (p parsed) program() string          { return p.cli.name }
func (p parsed) isNode() bool             { return p.cli.name == "objectnode" }
func (p parsed) isRouter() bool           { return p.cli.name == "router" }
func (p parsed) isDecommission() bool     { return p.cli.name == "objectnode decommission" }
func (p parsed) isDevCert() bool          { return p.cli.name == "objectnode dev-cert" }
func (p parsed) intValue(name string) int { n, _ := strconv.Atoi(p.values[name]); return n }

// parseInvocation checks inv against the binary's flags and returns what
// it sets, and every problem it found.
func parseInvocation(t *testing.T, inv invocation) (parsed, []string) {
	t.Helper()
	var problems []string
	fail := func(format string, args ...any) {
		problems = append(problems, fmt.Sprintf(format, args...))
	}
	if len(inv.argv) == 0 {
		fail("no command: the image's default command only prints usage")
		return parsed{}, problems
	}
	prog := filepath.Base(inv.argv[0])
	args := inv.argv[1:]
	if prog != "objectnode" && prog != "router" {
		fail("runs %q; the image holds objectnode and router", inv.argv[0])
		return parsed{}, problems
	}
	if prog == "objectnode" && len(args) > 0 && (args[0] == "decommission" || args[0] == "dev-cert") {
		prog, args = "objectnode "+args[0], args[1:]
	}
	c := commandCLI(t, prog)
	p := parsed{cli: c, values: map[string]string{}, fromEnv: map[string]bool{}}

	envNames := make([]string, 0, len(inv.env))
	for k := range inv.env {
		envNames = append(envNames, k)
	}
	sort.Strings(envNames)
	for _, k := range envNames {
		if !strings.HasPrefix(k, "HELLOCHAT_") {
			continue
		}
		f, known := c.byEnv[k]
		if !known {
			fail("environment variable %s sets no flag of %s (flagenv reads only HELLOCHAT_<FLAG> of a defined flag, so it would be ignored)", k, prog)
			continue
		}
		if err := checkValue(f, inv.env[k]); err != nil {
			fail("$%s=%q: %v", k, inv.env[k], err)
			continue
		}
		p.values[f.name], p.fromEnv[f.name] = inv.env[k], true
	}

	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			p.positional = append(p.positional, args[i+1:]...)
			break
		}
		if len(a) < 2 || a[0] != '-' {
			// The flag package stops at the first non-flag.
			p.positional = append(p.positional, args[i:]...)
			break
		}
		name := strings.TrimPrefix(strings.TrimPrefix(a, "-"), "-")
		value, hasValue := "", false
		if eq := strings.IndexByte(name, '='); eq >= 0 {
			name, value, hasValue = name[:eq], name[eq+1:], true
		}
		f, known := c.flags[name]
		if !known {
			fail("%s has no flag -%s (%q)", prog, name, a)
			continue
		}
		if f.typ == "" { // boolean: only -name or -name=value
			if !hasValue {
				value = "true"
			}
		} else if !hasValue {
			if i+1 >= len(args) {
				fail("flag -%s needs a value", name)
				continue
			}
			i++
			value = args[i]
		}
		if err := checkValue(f, value); err != nil {
			fail("-%s %q: %v", name, value, err)
			continue
		}
		if _, dup := p.values[name]; dup && !p.fromEnv[name] {
			fail("flag -%s given twice", name)
		}
		p.values[name], p.fromEnv[name] = value, false
	}
	if len(p.positional) != c.positional {
		fail("%s takes %d argument(s) after its flags, got %q (the flag package stops parsing at the first non-flag)", prog, c.positional, p.positional)
	}
	return p, problems
}

// mustParse is parseInvocation that reports the problems; ok is false if
// there were any.
func mustParse(t *testing.T, inv invocation) (parsed, bool) {
	t.Helper()
	p, problems := parseInvocation(t, inv)
	for _, pr := range problems {
		t.Errorf("%s: %s", inv.where, pr)
	}
	return p, len(problems) == 0
}

// checkValue parses v as flag f's type.
func checkValue(f flagInfo, v string) error {
	var err error
	switch f.typ {
	case "":
		_, err = strconv.ParseBool(v)
	case "int":
		_, err = strconv.ParseInt(v, 0, 64)
	case "uint":
		_, err = strconv.ParseUint(v, 0, 64)
	case "float":
		_, err = strconv.ParseFloat(v, 64)
	case "duration":
		_, err = time.ParseDuration(v)
	case "string":
	default:
		err = fmt.Errorf("flag type %q unknown to this test", f.typ)
	}
	return err
}

// checkCommon checks what every process needs whatever runs it: an id,
// security, listen addresses reachable from outside the container, and an
// advertised gossip address memberlist can use. It returns the ports the
// process listens on, by flag (grpc-addr, gossip-addr, admin-addr,
// http-addr).
func checkCommon(t *testing.T, where string, p parsed) map[string]int {
	t.Helper()
	ports := map[string]int{}
	switch {
	case p.get("insecure") == "true":
		t.Errorf("%s: runs with --insecure", where)
	case p.get("dev-pki") != "":
		for _, f := range []string{"tls-ca", "tls-cert", "tls-key", "gossip-key"} {
			if p.has(f) {
				t.Errorf("%s: sets both --dev-pki and --%s (--dev-pki wins)", where, f)
			}
		}
	default:
		for _, f := range []string{"tls-ca", "tls-cert", "tls-key", "gossip-key"} {
			if p.get(f) == "" {
				t.Errorf("%s: no --%s: a process needs --tls-ca, --tls-cert, --tls-key and --gossip-key (or --dev-pki)", where, f)
			}
		}
	}
	if p.isDecommission() {
		if len(p.positional) != 1 {
			return ports // reported by parseInvocation
		}
		if _, _, err := splitAddr(p.positional[0]); err != nil {
			t.Errorf("%s: decommission target %q: %v", where, p.positional[0], err)
		}
		return ports
	}
	if p.get("id") == "" {
		t.Errorf("%s: no --id (the default, %s's, is for make cluster)", where, p.program())
	}
	if f := p.get("log-format"); p.has("log-format") && f != "text" && f != "json" {
		t.Errorf("%s: --log-format %q: text or json", where, f)
	}
	listen := []string{"gossip-addr", "admin-addr"}
	if p.isNode() {
		listen = append(listen, "grpc-addr")
		if !p.has("data") {
			t.Errorf("%s: no --data (the default is relative to the working directory)", where)
		}
	} else {
		listen = append(listen, "http-addr")
	}
	for _, f := range listen {
		if !p.has(f) {
			t.Errorf("%s: no --%s: its default listens on loopback (or, for a node's admin endpoints, nowhere), out of reach of other containers and probes", where, f)
			continue
		}
		host, port, err := splitAddr(p.get(f))
		if err != nil {
			t.Errorf("%s: --%s %q: %v", where, f, p.get(f), err)
			continue
		}
		if host != "0.0.0.0" && host != "" {
			t.Errorf("%s: --%s %q: in a container, listen on 0.0.0.0 so that other containers and probes reach it", where, f, p.get(f))
		}
		ports[f] = port
	}
	if a := p.get("gossip-advertise"); a != "" {
		host, port, err := splitAddr(a)
		switch {
		case err != nil:
			t.Errorf("%s: --gossip-advertise %q: %v", where, a, err)
		case net.ParseIP(host) == nil:
			// memberlist's NetTransport.FinalAdvertiseAddr: "failed to
			// parse advertise address".
			t.Errorf("%s: --gossip-advertise %q: memberlist accepts only an IP address, not a name", where, a)
		case port != ports["gossip-addr"]:
			t.Errorf("%s: --gossip-advertise %q: port differs from --gossip-addr %q", where, a, p.get("gossip-addr"))
		}
	}
	for _, f := range []string{"grpc-advertise", "http-advertise"} {
		if a := p.get(f); a != "" {
			if _, _, err := splitAddr(a); err != nil {
				t.Errorf("%s: --%s %q: %v", where, f, a, err)
			}
		}
	}
	if p.get("join") == "" {
		t.Errorf("%s: no --join: the process would never meet the cluster", where)
	}
	for _, s := range strings.Split(p.get("join"), ",") {
		if _, _, err := splitAddr(s); err != nil {
			t.Errorf("%s: --join entry %q: %v", where, s, err)
		}
	}
	return ports
}

// splitAddr splits host:port and checks the port.
func splitAddr(a string) (string, int, error) {
	host, ps, err := net.SplitHostPort(a)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(ps)
	if err != nil || port <= 0 || port > 65535 {
		return "", 0, fmt.Errorf("bad port %q", ps)
	}
	return host, port, nil
}

// joinHosts is the --join list as host -> port.
func joinHosts(p parsed) map[string]int {
	out := map[string]int{}
	for _, s := range strings.Split(p.get("join"), ",") {
		if h, port, err := splitAddr(s); err == nil {
			out[h] = port
		}
	}
	return out
}

func TestHelpParser(t *testing.T) {
	node := commandCLI(t, "objectnode")
	for _, f := range []string{"id", "data", "grpc-addr", "grpc-advertise", "gossip-addr", "gossip-advertise", "join", "expect", "admin-addr", "tls-ca", "dev-pki"} {
		if _, ok := node.flags[f]; !ok {
			t.Errorf("objectnode -h shows no -%s", f)
		}
	}
	if node.flags["insecure"].typ != "" || node.flags["expect"].typ != "int" {
		t.Errorf("flag types misread: insecure %q, expect %q", node.flags["insecure"].typ, node.flags["expect"].typ)
	}
	if node.flags["tls-ca"].envVar != "HELLOCHAT_TLS_CA" {
		t.Errorf("objectnode -tls-ca variable read as %q", node.flags["tls-ca"].envVar)
	}
	// The parser must catch what it exists to catch.
	bad := []invocation{
		{where: "unknown flag", argv: []string{"objectnode", "--id=a", "--grpc-adress=0.0.0.0:1"}},
		{where: "bad int", argv: []string{"objectnode", "--expect", "three"}},
		{where: "missing value", argv: []string{"router", "--id"}},
		{where: "stray argument", argv: []string{"router", "--id", "r", "extra"}},
		{where: "unknown variable", argv: []string{"router"}, env: map[string]string{"HELLOCHAT_ROUTER_PORT": "tcp://10.0.0.1:80"}},
		{where: "decommission without target", argv: []string{"objectnode", "decommission", "--dev-pki", "/pki"}},
	}
	for _, inv := range bad {
		if _, problems := parseInvocation(t, inv); len(problems) == 0 {
			t.Errorf("%s: accepted %q %v", inv.where, inv.argv, inv.env)
		}
	}
	good := invocation{where: "good", argv: []string{"objectnode", "-id", "n", "--insecure", "--expect=0", "--join", "a:1,b:2"},
		env: map[string]string{"HELLOCHAT_LOG_FORMAT": "json", "OTHER": "x"}}
	p, ok := mustParse(t, good)
	if !ok || p.get("id") != "n" || p.get("insecure") != "true" || p.get("log-format") != "json" || p.get("join") != "a:1,b:2" {
		t.Errorf("good invocation parsed as %+v (ok %v)", p.values, ok)
	}
}
