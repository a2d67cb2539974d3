// Package packaging holds the files that install postoffice: the
// container image (Dockerfile), the .deb and .rpm (nfpm.yaml, scripts/,
// the default postoffice.toml) and the systemd units. Its tests lint them
// against each other and against the code, without Docker or systemd:
// test-deb.sh and the CI build the real artefacts where those exist.
package packaging

import (
	"bufio"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/postoffice-mail/postoffice/internal/config"
)

// instruction is one Dockerfile instruction, continuation lines joined.
type instruction struct {
	cmd, args string
	line      int
}

func parseDockerfile(t *testing.T, path string) []instruction {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []instruction
	var cur strings.Builder
	start, n := 0, 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if cur.Len() == 0 && (line == "" || strings.HasPrefix(line, "#")) {
			continue
		}
		if cur.Len() == 0 {
			start = n
		}
		if strings.HasPrefix(line, "#") {
			continue // a comment inside a continued instruction
		}
		if s, ok := strings.CutSuffix(line, "\\"); ok {
			cur.WriteString(s + " ")
			continue
		}
		cur.WriteString(line)
		cmd, args, _ := strings.Cut(cur.String(), " ")
		out = append(out, instruction{strings.ToUpper(cmd), strings.TrimSpace(args), start})
		cur.Reset()
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if cur.Len() > 0 {
		t.Fatalf("%s ends inside a continued instruction", path)
	}
	return out
}

// TestDockerfile is the Dockerfile's lint: what the image promises in
// docs/install.md must be in it.
func TestDockerfile(t *testing.T) {
	ins := parseDockerfile(t, "Dockerfile")
	known := []string{"FROM", "RUN", "COPY", "WORKDIR", "USER", "VOLUME", "EXPOSE", "HEALTHCHECK",
		"STOPSIGNAL", "ENTRYPOINT", "CMD", "ENV", "ARG", "LABEL"}
	var froms []instruction
	var final []instruction // the instructions of the last stage
	for _, in := range ins {
		if !slices.Contains(known, in.cmd) {
			t.Errorf("Dockerfile:%d: unknown instruction %s", in.line, in.cmd)
		}
		if in.cmd == "FROM" {
			froms = append(froms, in)
			final = nil
		}
		final = append(final, in)
	}
	if len(froms) < 2 {
		t.Fatalf("Dockerfile: want a multi-stage build, have %d FROM", len(froms))
	}
	if !strings.HasPrefix(froms[0].args, "golang:") {
		t.Errorf("Dockerfile:%d: the build stage should start FROM golang:..., not %q", froms[0].line, froms[0].args)
	}
	last := froms[len(froms)-1].args
	if !strings.HasPrefix(last, "gcr.io/distroless/static") && last != "scratch" {
		t.Errorf("Dockerfile: the final stage is %q, want distroless/static or scratch", last)
	}
	var build bool
	for _, in := range ins {
		if in.cmd == "RUN" && strings.Contains(in.args, "CGO_ENABLED=0") && strings.Contains(in.args, "-trimpath") &&
			strings.Contains(in.args, "./cmd/postoffice") {
			build = true
		}
	}
	if !build {
		t.Error("Dockerfile: no RUN builds ./cmd/postoffice with CGO_ENABLED=0 and -trimpath")
	}
	get := func(cmd string) (instruction, bool) {
		for _, in := range final {
			if in.cmd == cmd {
				return in, true
			}
		}
		return instruction{}, false
	}
	if u, ok := get("USER"); !ok {
		t.Error("Dockerfile: the final stage has no USER: it would run as root")
	} else if name, _, _ := strings.Cut(u.args, ":"); name == "root" || name == "0" {
		t.Errorf("Dockerfile:%d: USER %s is root", u.line, u.args)
	}
	for cmd, want := range map[string][]string{
		"VOLUME": {"/etc/postoffice", "/var/vmail"},
		"EXPOSE": {"110", "995"},
	} {
		in, ok := get(cmd)
		if !ok {
			t.Errorf("Dockerfile: the final stage has no %s", cmd)
			continue
		}
		for _, w := range want {
			if !strings.Contains(in.args, w) {
				t.Errorf("Dockerfile:%d: %s %s lacks %s", in.line, cmd, in.args, w)
			}
		}
	}
	for _, cmd := range []string{"HEALTHCHECK", "ENTRYPOINT", "CMD"} {
		in, ok := get(cmd)
		switch {
		case !ok:
			t.Errorf("Dockerfile: the final stage has no %s", cmd)
		case !strings.Contains(in.args, "["):
			// distroless has no shell: only the exec (JSON) form runs.
			t.Errorf("Dockerfile:%d: %s must use the exec form [\"...\"]: the image has no shell", in.line, cmd)
		}
	}
	// Every file the build copies from the context exists.
	for _, in := range ins {
		for _, f := range regexp.MustCompile(`packaging/[A-Za-z0-9_./-]+`).FindAllString(in.args, -1) {
			if _, err := os.Stat(filepath.Join("..", f)); err != nil {
				t.Errorf("Dockerfile:%d: %v", in.line, err)
			}
		}
	}
}

// TestDefaultConfigs parses the configurations the package and the image
// install, with the server's own parser.
func TestDefaultConfigs(t *testing.T) {
	for _, path := range []string{"postoffice.toml", "container/postoffice.toml"} {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		c, err := config.Parse(path, data)
		if err != nil {
			t.Errorf("%v", err)
			continue
		}
		if c.Auth.PasswdFile != "/etc/postoffice/users" {
			t.Errorf("%s: auth.passwd_file = %q; the package and the image create /etc/postoffice/users", path, c.Auth.PasswdFile)
		}
		if c.Mail.MaildirPath() != "/var/vmail/%d/%n/Maildir" {
			t.Errorf("%s: mail.location = %q; the package and the image create /var/vmail", path, c.Mail.Location)
		}
		if c.Auth.AllowPlaintext {
			t.Errorf("%s: auth.allow_plaintext must stay false by default", path)
		}
	}
	pkg := readConfig(t, "postoffice.toml")
	if pkg.Server.User != "postoffice" {
		t.Errorf("postoffice.toml: server.user = %q; the package's units and postinstall use postoffice", pkg.Server.User)
	}
	if want := unitValue(t, "systemd/postoffice-lmtp.socket", "ListenStream"); pkg.LMTP.Socket != want {
		t.Errorf("postoffice.toml: lmtp.socket = %q, postoffice-lmtp.socket listens on %q", pkg.LMTP.Socket, want)
	}
	if img := readConfig(t, "container/postoffice.toml"); img.Server.User != "" {
		t.Errorf("container/postoffice.toml: server.user = %q; the image runs as its non-root user from the start", img.Server.User)
	}
}

func readConfig(t *testing.T, path string) *config.Config {
	t.Helper()
	c, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// unitValue returns the value of key in a systemd unit file, all its
// occurrences joined by spaces.
func unitValue(t *testing.T, path, key string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var vals []string
	for _, l := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), key+"="); ok {
			vals = append(vals, v)
		}
	}
	return strings.Join(vals, " ")
}

// TestSystemdUnits checks the units against each other and against the
// socket names serve accepts (docs/systemd.md).
func TestSystemdUnits(t *testing.T) {
	sockets, err := filepath.Glob("systemd/*.socket")
	if err != nil || len(sockets) == 0 {
		t.Fatalf("no socket units: %v", err)
	}
	names := map[string]bool{"pop3": false, "pop3s": false, "lmtp": false, "metrics": false}
	for _, s := range sockets {
		n := unitValue(t, s, "FileDescriptorName")
		if _, ok := names[n]; !ok {
			t.Errorf("%s: FileDescriptorName=%q is not a name serve accepts (pop3, pop3s, lmtp, metrics)", s, n)
		}
		names[n] = true
		if svc := unitValue(t, s, "Service"); svc != "postoffice.service" {
			t.Errorf("%s: Service=%q, want postoffice.service", s, svc)
		}
	}
	for _, n := range []string{"pop3", "pop3s", "lmtp"} {
		if !names[n] {
			t.Errorf("no socket unit is named %s", n)
		}
	}
	svc := "systemd/postoffice.service"
	for _, s := range strings.Fields(unitValue(t, svc, "Sockets")) {
		if _, err := os.Stat(filepath.Join("systemd", s)); err != nil {
			t.Errorf("%s: Sockets= names %s: %v", svc, s, err)
		}
		if !strings.Contains(unitValue(t, svc, "Requires"), s) {
			t.Errorf("%s: %s is in Sockets= but not in Requires=", svc, s)
		}
	}
	if strings.Contains(unitValue(t, svc, "Sockets"), "pop3s") {
		t.Errorf("%s: the pop3s socket needs a certificate the default config does not have; it is added by a drop-in", svc)
	}
	exec := strings.Fields(unitValue(t, svc, "ExecStart"))
	if len(exec) == 0 || exec[0] != "/usr/sbin/postoffice" {
		t.Errorf("%s: ExecStart=%q, want /usr/sbin/postoffice (where the package installs it)", svc, exec)
	}
	if u := unitValue(t, svc, "User"); u != "postoffice" {
		t.Errorf("%s: User=%q, want postoffice (created by postinstall)", svc, u)
	}
}

// TestNFPMContents checks that every file nfpm.yaml packages exists (the
// binary excepted: build-packages.sh builds it) and that every unit is
// packaged.
func TestNFPMContents(t *testing.T) {
	data, err := os.ReadFile("nfpm.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var dsts []string
	for _, m := range regexp.MustCompile(`(?m)^\s*-?\s*(src|dst): (\S+)$`).FindAllStringSubmatch(string(data), -1) {
		if m[1] == "dst" {
			dsts = append(dsts, m[2])
			continue
		}
		if m[2] == "dist/postoffice" {
			continue
		}
		if matches, _ := filepath.Glob(filepath.Join("..", m[2])); len(matches) == 0 {
			t.Errorf("nfpm.yaml: src %s matches no file", m[2])
		}
	}
	units, _ := filepath.Glob("systemd/*")
	for _, u := range units {
		if !slices.Contains(dsts, "/usr/lib/systemd/system/"+filepath.Base(u)) {
			t.Errorf("nfpm.yaml does not install %s", u)
		}
	}
	for _, want := range []string{"/usr/sbin/postoffice", "/etc/postoffice/postoffice.toml"} {
		if !slices.Contains(dsts, want) {
			t.Errorf("nfpm.yaml does not install %s", want)
		}
	}
	for _, s := range []string{"postinstall", "preremove", "postremove"} {
		if !strings.Contains(string(data), s+": packaging/scripts/"+s+".sh") {
			t.Errorf("nfpm.yaml does not run scripts/%s.sh", s)
		}
	}
}
