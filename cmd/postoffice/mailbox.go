package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/mail"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/postoffice-mail/postoffice/internal/auth"
	"github.com/postoffice-mail/postoffice/internal/config"
	"github.com/postoffice-mail/postoffice/internal/store"
	"github.com/postoffice-mail/postoffice/internal/sysexits"
)

const mailboxUsage = `usage: postoffice mailbox stat|list|purge [flags] USER

  stat USER     number of messages and their total size (octets as POP3 STAT counts them)
  list USER     number, size and UIDL of each message (and arrival time when
                the store records it); --json for a JSON array
  purge USER    delete every message, or those --older-than AGE (30d, 12h)
                and/or with --uidl X (repeatable); --dry-run prints what
                would go and deletes nothing

The store is the one of --config (default /etc/postoffice/postoffice.toml),
and USER a name of its user database. Each command locks the maildrop as a
POP3 session does: while a session (or another command) holds it, the
command is refused with exit status 75 (EX_TEMPFAIL); try again later.
purge deletes through the store's commit, as a POP3 QUIT does.

Exit status: 0 done; 2 command line error; 65 a --uidl names no message
(nothing deleted); 67 unknown user; 75 maildrop in use or temporary
failure; 78 configuration error.`

// uidlFlags collects repeated --uidl values.
type uidlFlags []string

func (u *uidlFlags) String() string     { return strings.Join(*u, ",") }
func (u *uidlFlags) Set(v string) error { *u = append(*u, v); return nil }

// arrivals is what a Maildrop implements when its store records when each
// message arrived (i is an index into Messages). A store without it gets
// no arrival column in list; purge --older-than then dates a message by
// its topmost Received: field (receivedDate).
type arrivals interface {
	Arrived(i int) (time.Time, bool)
}

// runMailbox is "postoffice mailbox": look into and clean out one user's
// maildrop from the command line, through the store serve serves.
func runMailbox(args []string, stdout, stderr io.Writer) error {
	sub, err := subcommand(args, mailboxUsage, stderr)
	if err != nil {
		return err
	}
	if !slices.Contains([]string{"stat", "list", "purge"}, sub) {
		return usageError{fmt.Sprintf("unknown subcommand %q (stat, list, purge)", sub)}
	}
	fs := newFlagSet("mailbox "+sub, stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, mailboxUsage)
		fs.PrintDefaults()
	}
	cfgPath := fs.String("config", defaultConfig, "configuration `file` (TOML)")
	asJSON := fs.Bool("json", false, "stat, list: print JSON")
	olderThan := fs.String("older-than", "", "purge: only messages that arrived more than `AGE` ago (30d, 12h)")
	var uidls uidlFlags
	fs.Var(&uidls, "uidl", "purge: only the message with this `UIDL` (repeatable)")
	dryRun := fs.Bool("dry-run", false, "purge: print what would be deleted, delete nothing")
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usageError{sub + " needs exactly one USER"}
	}
	if sub != "purge" && (*olderThan != "" || len(uidls) > 0 || *dryRun) {
		return usageError{"--older-than, --uidl and --dry-run are for purge"}
	}
	if sub == "purge" && *asJSON {
		return usageError{"--json is for stat and list"}
	}
	var age time.Duration
	if *olderThan != "" {
		var err error
		if age, err = parseAge(*olderThan); err != nil {
			return usageError{err.Error()}
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	md, name, closeAll, err := openMaildrop(ctx, *cfgPath, fs.Arg(0), stderr)
	if err != nil {
		return err
	}
	defer closeAll()
	switch sub {
	case "stat":
		return mailboxStat(stdout, md, *asJSON)
	case "list":
		return mailboxList(stdout, md, *asJSON)
	}
	return mailboxPurge(ctx, stdout, md, name, purgeOptions{age: age, uidls: uidls, dryRun: *dryRun, now: time.Now()})
}

// openMaildrop loads the config, builds the store and locks user's
// maildrop. It returns the maildrop, the user's name in the store, and
// what releases both.
func openMaildrop(ctx context.Context, cfgPath, user string, stderr io.Writer) (store.Maildrop, string, func(), error) {
	cfg, err := config.Load(cfgPath)
	if err != nil {
		return nil, "", nil, exitError{code: sysexits.Config, err: err}
	}
	a := newApp(cfg, stderr)
	if errs := a.build(partStore); errs != nil {
		a.close()
		var be *buildError
		if errors.As(errs[0], &be) && be.part == partUsers {
			return nil, "", nil, exitError{code: sysexits.TempFail, err: errs[0]}
		}
		return nil, "", nil, exitError{code: sysexits.Config, err: errs[0]}
	}
	// Only a user of the database has a maildrop: the store would make
	// one for any name it can place.
	u, err := a.users.Lookup(ctx, user)
	switch {
	case errors.Is(err, auth.ErrUnknownUser):
		a.close()
		return nil, "", nil, exitError{code: sysexits.NoUser, err: fmt.Errorf("unknown user %q", user)}
	case err != nil:
		a.close()
		return nil, "", nil, exitError{code: sysexits.TempFail, err: fmt.Errorf("looking up %q: %w", user, err)}
	}
	md, err := a.store.Open(ctx, u.Name)
	switch {
	case errors.Is(err, store.ErrInUse):
		a.close()
		return nil, "", nil, exitError{code: sysexits.TempFail,
			err: fmt.Errorf("maildrop of %q is in use (a POP3 session or another command holds its lock); try again later", u.Name)}
	case err != nil:
		a.close()
		return nil, "", nil, exitError{code: sysexits.TempFail, err: fmt.Errorf("opening the maildrop of %q: %w", u.Name, err)}
	}
	return md, u.Name, func() { md.Close(); a.close() }, nil
}

// parseAge reads --older-than: a whole number of days ("30d") or weeks
// ("2w"), or a Go duration ("36h", "90m").
func parseAge(s string) (time.Duration, error) {
	bad := fmt.Errorf("--older-than %q: want a positive age such as 30d, 2w or 12h", s)
	var d time.Duration
	switch unit := s[len(s)-1]; unit {
	case 'd', 'w':
		n, err := strconv.Atoi(s[:len(s)-1])
		if err != nil || n <= 0 || n > 100*365 {
			return 0, bad
		}
		d = time.Duration(n) * 24 * time.Hour
		if unit == 'w' {
			d *= 7
		}
	default:
		var err error
		if d, err = time.ParseDuration(s); err != nil || d <= 0 {
			return 0, bad
		}
	}
	return d, nil
}

// mailboxStat prints the message count and total size, as POP3 STAT
// counts them (RFC 1939 §5: octets in CRLF form).
func mailboxStat(w io.Writer, md store.Maildrop, asJSON bool) error {
	var total int64
	msgs := md.Messages()
	for _, m := range msgs {
		total += m.Size
	}
	if asJSON {
		return json.NewEncoder(w).Encode(struct {
			Messages int   `json:"messages"`
			Octets   int64 `json:"octets"`
		}{len(msgs), total})
	}
	_, err := fmt.Fprintf(w, "%d messages, %d octets\n", len(msgs), total)
	return err
}

// listEntry is one line of mailbox list; numbers are POP3's message
// numbers (1-based, RFC 1939 §5) in this snapshot.
type listEntry struct {
	Number  int        `json:"number"`
	Size    int64      `json:"size"`
	UIDL    string     `json:"uidl"`
	Arrived *time.Time `json:"arrived,omitempty"`
}

// mailboxList prints every message: a table, or a JSON array.
func mailboxList(w io.Writer, md store.Maildrop, asJSON bool) error {
	msgs := md.Messages()
	arr, dated := md.(arrivals)
	entries := make([]listEntry, len(msgs))
	for i, m := range msgs {
		entries[i] = listEntry{Number: i + 1, Size: m.Size, UIDL: m.UID}
		if dated {
			if t, ok := arr.Arrived(i); ok {
				t = t.UTC()
				entries[i].Arrived = &t
			}
		}
	}
	if asJSON {
		return json.NewEncoder(w).Encode(entries)
	}
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', tabwriter.AlignRight)
	if dated {
		fmt.Fprintln(tw, "NUMBER\tSIZE\tUIDL\tARRIVED\t")
	} else {
		fmt.Fprintln(tw, "NUMBER\tSIZE\tUIDL\t")
	}
	for _, e := range entries {
		fmt.Fprintf(tw, "%d\t%d\t%s\t", e.Number, e.Size, e.UIDL)
		if dated {
			at := "-"
			if e.Arrived != nil {
				at = e.Arrived.Format(time.RFC3339)
			}
			fmt.Fprintf(tw, "%s\t", at)
		}
		fmt.Fprintln(tw)
	}
	return tw.Flush()
}

// purgeOptions select what mailbox purge deletes: every message, narrowed
// by age and by UIDL when set (a message must match both).
type purgeOptions struct {
	age    time.Duration // 0: any age
	uidls  []string      // nil: any UIDL
	dryRun bool
	now    time.Time
}

// mailboxPurge deletes the selected messages through the maildrop's Commit,
// as a POP3 session's UPDATE state does (RFC 1939 §6): durably before it
// returns, and nothing when it fails. A --uidl that names no message
// deletes nothing at all. A message whose age is asked for but cannot be
// told is kept: purge never deletes on a guess.
func mailboxPurge(ctx context.Context, w io.Writer, md store.Maildrop, user string, o purgeOptions) error {
	msgs := md.Messages()
	for _, u := range o.uidls {
		if !slices.ContainsFunc(msgs, func(m store.Message) bool { return m.UID == u }) {
			return exitError{code: sysexits.DataErr, err: fmt.Errorf("no message of %q has UIDL %q; nothing deleted", user, u)}
		}
	}
	var del []int
	var octets int64
	undated := 0
	arr, dated := md.(arrivals)
	for i, m := range msgs {
		if o.uidls != nil && !slices.Contains(o.uidls, m.UID) {
			continue
		}
		if o.age > 0 {
			var at time.Time
			ok := false
			if dated {
				at, ok = arr.Arrived(i)
			}
			if !ok {
				at, ok = receivedDate(ctx, md, i)
			}
			if !ok {
				undated++
				continue
			}
			if o.now.Sub(at) <= o.age {
				continue
			}
		}
		del = append(del, i)
		octets += m.Size
	}
	verb := "deleted"
	if o.dryRun {
		verb = "would delete"
		for _, i := range del {
			fmt.Fprintf(w, "%d %d %s\n", i+1, msgs[i].Size, msgs[i].UID)
		}
	} else if len(del) > 0 {
		if err := md.Commit(ctx, del); err != nil {
			return exitError{code: sysexits.TempFail, err: fmt.Errorf("deleting from the maildrop of %q: %w", user, err)}
		}
	}
	fmt.Fprintf(w, "%s %d of %d messages (%d octets)\n", verb, len(del), len(msgs), octets)
	if undated > 0 {
		fmt.Fprintf(w, "kept %d messages whose arrival time is unknown (no dated Received: field)\n", undated)
	}
	return nil
}

// maxHeader bounds what receivedDate reads of a message.
const maxHeader = 256 << 10

// receivedDate returns the date of message i's topmost Received: field,
// the one the last MTA added when the message reached this host (RFC 5321
// §4.4: the date-time follows the last ";"). Only the header is read, at
// most maxHeader octets. The Date: field is not used: it is what the
// sender claims.
func receivedDate(ctx context.Context, md store.Maildrop, i int) (time.Time, bool) {
	r, err := md.Open(ctx, i)
	if err != nil {
		return time.Time{}, false
	}
	defer r.Close()
	msg, err := mail.ReadMessage(io.LimitReader(r, maxHeader))
	if err != nil {
		return time.Time{}, false
	}
	rcvd := msg.Header.Get("Received")
	semi := strings.LastIndexByte(rcvd, ';')
	if semi < 0 {
		return time.Time{}, false
	}
	t, err := mail.ParseDate(strings.TrimSpace(rcvd[semi+1:]))
	return t, err == nil
}
