package bench

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// SeedOptions say what Seed writes. Dir is required.
type SeedOptions struct {
	// Dir receives mail/<user>/Maildir for each user, passwd (a Dovecot
	// passwd-file, {PLAIN} passwords, which postoffice reads too) and
	// users.txt (user:password lines for --users).
	Dir string
	// Users is the number of users, named user00001...; default 1, and 0
	// is allowed when Bigbox is set.
	Users int
	// Messages is the number of messages per user.
	Messages int
	// SizeDist is "realistic" (the default) or "fixed:BYTES".
	SizeDist string
	// Bigbox, if positive, adds user BigboxName with this many messages of
	// the realistic distribution without attachments, listed in
	// <BigboxName>.txt.
	Bigbox     int
	BigboxName string // default "bigbox"
	// BigboxSizeDist is like SizeDist for the bigbox messages; default the
	// realistic distribution without its 1-5 MB attachments.
	BigboxSizeDist string
	// WithSizes names the files like Dovecot's LDA, with ",S=<size>,W=<CRLF
	// size>"; without it they are named like Postfix's local(8).
	WithSizes bool
	// CRLF is the fraction of messages stored with CRLF line ends, 0..1.
	// 0 (the default) stores LF, as Postfix's local(8) and virtual(8)
	// write; 1 stores every message with CRLF, as a delivery over LMTP or
	// SMTP leaves it (DATA is CRLF on the wire, RFC 5321 §2.3.8) when the
	// server keeps the wire form, or Dovecot with mail_save_crlf = yes.
	// With WithSizes, S= of a CRLF message then equals its W=. The line
	// ends never change the messages themselves: which messages get CRLF
	// is drawn from a random stream of its own, so seeds that differ only
	// in CRLF give the same messages on the wire.
	CRLF float64
	// Password of every user; default "bench-password".
	Password string
	// Seed makes the content reproducible; the same options give the same
	// files (names included, except for the time they start at).
	Seed uint64
}

// SeedResult says what Seed wrote.
type SeedResult struct {
	Users    int
	Messages int
	Bytes    int64
	Passwd   string
	UsersTxt string
}

// DefaultPassword is the password Seed gives every user.
const DefaultPassword = "bench-password"

// Seed writes realistic Maildirs (see SeedOptions). Files are written
// directly, without fsync: a fixture, not a delivery.
func Seed(o SeedOptions) (*SeedResult, error) {
	if o.Dir == "" {
		return nil, errors.New("bench: seed needs --maildir")
	}
	if o.Users < 0 || o.Users == 0 && o.Bigbox <= 0 {
		o.Users = 1
	}
	if o.BigboxName == "" {
		o.BigboxName = "bigbox"
	}
	if o.Password == "" {
		o.Password = DefaultPassword
	}
	sizer, err := parseSizeDist(o.SizeDist)
	if err != nil {
		return nil, err
	}
	if o.Messages < 0 || o.Bigbox < 0 {
		return nil, errors.New("bench: negative message count")
	}
	if !(o.CRLF >= 0 && o.CRLF <= 1) { // also refuses NaN
		return nil, fmt.Errorf("bench: the fraction of CRLF messages must be 0..1, not %v", o.CRLF)
	}
	// Dir is searchable by all (0755, like the passwd-file in it): a
	// server that reads passwd after dropping privileges (Dovecot's auth
	// process runs as its own user) must reach it. The Maildirs below
	// stay 0700.
	if err := os.MkdirAll(o.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	res := &SeedResult{Passwd: filepath.Join(o.Dir, "passwd"), UsersTxt: filepath.Join(o.Dir, "users.txt")}
	var passwd, users strings.Builder
	type job struct {
		user  string
		n     int
		sizer func(*rand.Rand) int
		seed  uint64
	}
	var jobs []job
	for i := 1; i <= o.Users; i++ {
		u := fmt.Sprintf("user%05d", i)
		jobs = append(jobs, job{u, o.Messages, sizer, o.Seed + uint64(i)})
		fmt.Fprintf(&users, "%s:%s\n", u, o.Password)
		fmt.Fprintf(&passwd, "%s:{PLAIN}%s::::::\n", u, o.Password)
	}
	if o.Bigbox > 0 {
		bsizer := realisticText
		if o.BigboxSizeDist != "" {
			if bsizer, err = parseSizeDist(o.BigboxSizeDist); err != nil {
				return nil, err
			}
		}
		jobs = append(jobs, job{o.BigboxName, o.Bigbox, bsizer, o.Seed})
		fmt.Fprintf(&passwd, "%s:{PLAIN}%s::::::\n", o.BigboxName, o.Password)
		if err := os.WriteFile(filepath.Join(o.Dir, o.BigboxName+".txt"), []byte(o.BigboxName+":"+o.Password+"\n"), 0o600); err != nil {
			return nil, fmt.Errorf("bench: %w", err)
		}
	}
	base := time.Now().Add(-24 * time.Hour).Unix()
	var (
		mu    sync.Mutex
		first error
		wg    sync.WaitGroup
		next  = make(chan job)
	)
	for range 4 {
		wg.Go(func() {
			for j := range next {
				n, err := seedMaildir(filepath.Join(o.Dir, "mail", j.user, "Maildir"), j.n, j.sizer, j.seed, base, o)
				mu.Lock()
				res.Bytes += n
				if first == nil {
					first = err
				}
				mu.Unlock()
			}
		})
	}
	for _, j := range jobs {
		next <- j
		res.Users++
		res.Messages += j.n
	}
	close(next)
	wg.Wait()
	if first != nil {
		return nil, first
	}
	if err := os.WriteFile(res.Passwd, []byte(passwd.String()), 0o644); err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	if err := os.WriteFile(res.UsersTxt, []byte(users.String()), 0o600); err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	return res, nil
}

func seedMaildir(dir string, n int, sizer func(*rand.Rand) int, seed uint64, base int64, o SeedOptions) (int64, error) {
	for _, sub := range []string{"cur", "new", "tmp"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o700); err != nil {
			return 0, fmt.Errorf("bench: %w", err)
		}
	}
	r := rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15))
	// The CRLF choice has its own stream: drawing it from r would make
	// the content depend on the fraction.
	ends := rand.New(rand.NewPCG(seed, 0x6a09e667f3bcc908))
	g := &generator{r: r}
	var total int64
	for i := range n {
		size := sizer(r)
		crlf := o.CRLF >= 1 || o.CRLF > 0 && ends.Float64() < o.CRLF
		msg := g.message(i, size, crlf)
		secs := base + int64(i)/10
		usec := (i%10)*100000 + r.IntN(100000)
		var name string
		if o.WithSizes {
			// Dovecot LDA: <secs>.M<usec>P<pid>.<host>,S=<size>,W=<vsize>
			name = fmt.Sprintf("%d.M%dP%d.bench.example,S=%d,W=%d", secs, usec, 4000+i%1000, len(msg), crlfSize(msg))
		} else {
			// Postfix local(8): <secs>.V<dev>I<inode>M<usec>.<host>
			name = fmt.Sprintf("%d.V801I%xM%d.bench.example", secs, 0x10000+i, usec)
		}
		if err := os.WriteFile(filepath.Join(dir, "new", name), msg, 0o600); err != nil {
			return total, fmt.Errorf("bench: %w", err)
		}
		total += int64(len(msg))
	}
	return total, nil
}

// crlfSize is the size in CRLF form; the seeded messages end in a newline,
// so no completion is added (what Dovecot's W= holds).
func crlfSize(b []byte) int {
	return len(b) + bytes.Count(b, []byte{'\n'}) - bytes.Count(b, []byte("\r\n"))
}

// parseSizeDist returns a function that draws a message size.
func parseSizeDist(s string) (func(*rand.Rand) int, error) {
	switch {
	case s == "" || s == "realistic":
		return realistic, nil
	case strings.HasPrefix(s, "fixed:"):
		n, err := strconv.Atoi(strings.TrimPrefix(s, "fixed:"))
		if err != nil || n < 200 || n > 64<<20 {
			return nil, fmt.Errorf("bench: --size-dist fixed:BYTES needs 200..%d octets, got %q", 64<<20, s)
		}
		return func(*rand.Rand) int { return n }, nil
	}
	return nil, fmt.Errorf("bench: --size-dist must be realistic or fixed:BYTES, not %q", s)
}

// realistic draws a size: 2% are 1-5 MB messages with an attachment, the
// rest log-normal text messages (median 4 KB, a long tail to ~75 KB).
func realistic(r *rand.Rand) int {
	if r.Float64() < 0.02 {
		return 1_000_000 + r.IntN(4_000_000)
	}
	return realisticText(r)
}

func realisticText(r *rand.Rand) int {
	const median, sigma = 4096, 1.2
	n := int(median * math.Exp(sigma*r.NormFloat64()))
	return min(max(n, 900), 76_800)
}

// generator writes plausible messages.
type generator struct {
	r   *rand.Rand
	raw []byte // random octets for attachments
}

var words = strings.Fields(`the of and to in is for on that with as this by from at be are or was
it an have not which will has but all can more one about new our their report meeting please
attached thanks regards update project budget review quarter schedule invoice order shipment
customer server release build test deploy issue ticket support account password reset notice
weekly summary agenda minutes draft final version comments feedback changes request approved`)

var dotLines = []string{".", "..", "...", ". indented", ".signature follows", ".net framework", "...and so on"}

// message returns message i of about size octets, with LF (or CRLF) line
// ends and a final newline. A few body lines start with '.', and some
// messages have a line that is a single '.', which a server must stuff.
func (g *generator) message(i, size int, crlf bool) []byte {
	r := g.r
	var b bytes.Buffer
	b.Grow(size + 1024)
	t := time.Date(2026, 11, 1, 8, 0, 0, 0, time.UTC).Add(time.Duration(i) * 37 * time.Second)
	from := fmt.Sprintf("sender%d@example.net", r.IntN(500))
	fmt.Fprintf(&b, "Return-Path: <%s>\n", from)
	fmt.Fprintf(&b, "Delivered-To: user@bench.example\n")
	for h := range 2 + r.IntN(2) {
		fmt.Fprintf(&b, "Received: from mx%d.example.net (mx%d.example.net [192.0.2.%d])\n\tby mail.bench.example (Postfix) with ESMTPS id %X\n\tfor <user@bench.example>; %s\n",
			h, h, r.IntN(250)+1, r.Uint32(), t.Format(time.RFC1123Z))
	}
	fmt.Fprintf(&b, "DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=example.net; s=sel;\n\th=from:to:subject:date:message-id; bh=%s;\n\tb=%s\n",
		base64.StdEncoding.EncodeToString(g.random(32)), base64.StdEncoding.EncodeToString(g.random(128)))
	fmt.Fprintf(&b, "Date: %s\nFrom: Sender %d <%s>\nTo: user@bench.example\n", t.Format(time.RFC1123Z), i, from)
	fmt.Fprintf(&b, "Subject: %s %s %d\nMessage-ID: <%x.%d@example.net>\nMIME-Version: 1.0\n",
		words[r.IntN(len(words))], words[r.IntN(len(words))], i, r.Uint64(), i)
	attach := size > 200_000
	if attach {
		fmt.Fprintf(&b, "Content-Type: multipart/mixed; boundary=\"b%d\"\n\n--b%d\nContent-Type: text/plain; charset=utf-8\n\n", i, i)
	} else {
		b.WriteString("Content-Type: text/plain; charset=utf-8\n\n")
	}
	text := size - b.Len()
	if attach {
		text = 1500
	}
	g.text(&b, b.Len()+max(text, 40))
	if attach {
		fmt.Fprintf(&b, "\n--b%d\nContent-Type: application/octet-stream; name=\"file%d.bin\"\nContent-Transfer-Encoding: base64\n\n", i, i)
		end := fmt.Sprintf("\n--b%d--\n", i)
		n := size - b.Len() - len(end)
		raw := g.random(max(n, 0) * 76 / 77 * 3 / 4) // 76 octets and a newline per line
		enc := base64.StdEncoding.EncodeToString(raw)
		for len(enc) > 76 {
			b.WriteString(enc[:76])
			b.WriteByte('\n')
			enc = enc[76:]
		}
		b.WriteString(enc)
		b.WriteString(end)
	}
	out := b.Bytes()
	if crlf {
		out = bytes.ReplaceAll(out, []byte("\n"), []byte("\r\n"))
	}
	return out
}

// text writes lines of words until b holds end octets.
func (g *generator) text(b *bytes.Buffer, end int) {
	r := g.r
	for b.Len() < end {
		if r.IntN(40) == 0 {
			b.WriteString(dotLines[r.IntN(len(dotLines))])
			b.WriteByte('\n')
			continue
		}
		if r.IntN(12) == 0 {
			b.WriteByte('\n') // paragraph
			continue
		}
		n := 0
		for n < 60+r.IntN(12) {
			w := words[r.IntN(len(words))]
			if n > 0 {
				b.WriteByte(' ')
				n++
			}
			b.WriteString(w)
			n += len(w)
		}
		b.WriteByte('\n')
	}
}

// random returns n random octets (a view of a shared buffer).
func (g *generator) random(n int) []byte {
	if len(g.raw) < n {
		g.raw = make([]byte, max(n, 64<<10))
		for i := 0; i+8 <= len(g.raw); i += 8 {
			v := g.r.Uint64()
			for k := range 8 {
				g.raw[i+k] = byte(v >> (8 * k))
			}
		}
	}
	off := g.r.IntN(len(g.raw) - n + 1)
	return g.raw[off : off+n]
}
