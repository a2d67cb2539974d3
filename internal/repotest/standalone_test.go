// Package repotest holds tests of the repository as a whole rather than of
// one package's code.
//
// TestStandalone keeps the repository readable on its own: code, comments,
// docs, scripts and test data must not point at files outside it (a
// checklist or design notes kept next to a working copy) or at numbered
// items of an issue tracker, because a reader of the repository can follow
// neither. A rule that comes from an RFC cites the RFC section
// ("RFC 1939 §7"); a decision is written down where it is made, with its
// reason.
package repotest

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path"
	"regexp"
	"strings"
	"testing"

	"github.com/postoffice-mail/postoffice/internal/testutil"
)

// An outsideRef is one kind of reference a reader of the repository cannot
// follow.
type outsideRef struct {
	re   *regexp.Regexp
	why  string
	skip func(line string, loc []int) bool // nil: every match counts
}

// outsideRefs are the kinds of reference TestStandalone refuses. They are
// narrow on purpose: "RFC 1939 issue", "an issue with STLS", "issue a
// certificate" and an upstream project's own tracker, named by its
// "owner/repo" before the word or as "repo#number", are fine.
var outsideRefs = []outsideRef{
	{
		// A numbered item of an outside conformance checklist.
		re:  regexp.MustCompile(`\bCONFORMANCE\s+[0-9]`),
		why: "checklist item number: cite the RFC section instead",
	},
	{
		// A numbered tracker item, unless an upstream repository names the
		// tracker: "owner/repo" just before the word (Go's own tracker
		// cited that way is fine; postoffice's numbers are not).
		re:  regexp.MustCompile(`(?i)\bissues?\s+#?[0-9]`),
		why: "tracker item number: say the decision and why instead",
		skip: func(line string, loc []int) bool {
			before := strings.Fields(line[:loc[0]])
			return len(before) > 0 && strings.Contains(before[len(before)-1], "/")
		},
	},
	{
		// A path out of the repository to where the notes were kept.
		re:  regexp.MustCompile(`(\.\./|/work/)shared\b`),
		why: "path outside the repository",
	},
	{
		// The notes themselves, by name: none of them is in the repository.
		re:  regexp.MustCompile(`\b(CONFORMANCE|PEERS|DESIGN|STYLE)\.md\b`),
		why: "document outside the repository: say what it says instead",
	},
}

// findOutsideRefs returns one message per offending line of text.
func findOutsideRefs(text string) []string {
	var found []string
	for i, line := range strings.Split(text, "\n") {
		for _, r := range outsideRefs {
			for _, loc := range r.re.FindAllStringIndex(line, -1) {
				if r.skip != nil && r.skip(line, loc) {
					continue
				}
				found = append(found, fmt.Sprintf("line %d: %q: %s", i+1, line[loc[0]:loc[1]], r.why))
				break
			}
		}
	}
	return found
}

// The matcher itself, on lines that must and must not be refused. The bad
// lines are assembled at run time so that this file passes its own test.
func TestFindOutsideRefs(t *testing.T) {
	t.Parallel()
	const (
		checklist = "CONFORMANCE"
		issue     = "issue"
		shared    = "../" + "shared"
	)
	bad := []string{
		"// " + checklist + " 13: LIST n equals the octets RETR sends",
		"// sends (RFC 1939 §11, " + checklist + " 13) and the UIDL",
		"# " + checklist + "  40, 42: LOGIN-DELAY",
		"// The scenarios of " + issue + " 7.",
		"skip under -race (" + issue + " 7: no allocation per command)",
		"## Targets of " + strings.ToUpper(issue[:1]) + issue[1:] + " 7",
		"see " + issue + "s 3 and 7",
		"fixed in " + issue + " #12",
		"see " + shared + "/PEERS",
		"root from a temporary directory as /work/" + "shared/x describes",
		"the same tests (" + "STYLE" + ".md habit 8)",
		"// " + "PEERS" + ".md: Dovecot's failure penalty",
	}
	good := []string{
		"// RFC 1939 §7: the password is the rest of the line",
		"// an RFC 1939 issue: servers disagree on the final CRLF",
		"// ca.issue(t, \"srv\", names, false)",
		"certificate, issue short-lived ones or replace the CA file",
		"// golang/go " + issue + " 25992: the workaround below",
		"the conformance suite every backend runs (storetest)",
		"shared by every POP3 listener",
		"/var/mail/shared",
		"docs/performance.md and README.md",
	}
	for _, line := range bad {
		if got := findOutsideRefs(line); len(got) != 1 {
			t.Errorf("findOutsideRefs(%q) = %q, want one finding", line, got)
		}
	}
	for _, line := range good {
		if got := findOutsideRefs(line); len(got) != 0 {
			t.Errorf("findOutsideRefs(%q) = %q, want none", line, got)
		}
	}
}

// Every text file git tracks, at every line.
func TestStandalone(t *testing.T) {
	t.Parallel()
	git := testutil.Need(t, "git", "git")
	top, err := exec.Command(git, "rev-parse", "--show-toplevel").Output()
	if err != nil {
		t.Skipf("not a git checkout (git rev-parse: %v): nothing to list the tracked files with", err)
	}
	root := strings.TrimSpace(string(top))
	out, err := exec.Command(git, "-C", root, "ls-files", "-z").Output()
	if err != nil {
		t.Fatalf("git ls-files: %v", err)
	}
	files := strings.Split(strings.TrimRight(string(out), "\x00"), "\x00")
	if len(files) < 10 {
		t.Fatalf("git ls-files listed %d files: %q", len(files), files)
	}
	for _, name := range files {
		b, err := os.ReadFile(path.Join(root, name))
		if os.IsNotExist(err) {
			continue // deleted in the working tree, not yet committed
		}
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if bytes.IndexByte(b, 0) >= 0 {
			continue // binary
		}
		for _, f := range findOutsideRefs(string(b)) {
			t.Errorf("%s: %s", name, f)
		}
	}
}
