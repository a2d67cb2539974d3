package sdps

import (
	"context"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/postoffice-mail/postoffice/pop3proto"
	"github.com/postoffice-mail/postoffice/pop3server"
)

func TestSplit(t *testing.T) {
	d, err := NewDomains([]string{"Host.Example"})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		in          string
		drop, local string
		ok          bool
	}{
		{"host.example", "host.example", "", true},
		{"HOST.example", "host.example", "", true},
		{"john@host.example", "host.example", "john", true},
		{"john+host.example", "host.example", "john", true},
		{"john+news@host.example", "host.example", "john+news", true},
		{"john@other.example", "", "", false},
		{"john+other.example", "", "", false},
		{"alice", "", "", false},
		{"@host.example", "", "", false},
		{"+host.example", "", "", false},
	} {
		drop, local, ok := d.Split(c.in)
		if drop != c.drop || local != c.local || ok != c.ok {
			t.Errorf("Split(%q) = %q, %q, %v, want %q, %q, %v", c.in, drop, local, ok, c.drop, c.local, c.ok)
		}
	}
	var none *Domains
	if _, _, ok := none.Split("host.example"); ok {
		t.Error("nil Domains split a name")
	}
	if _, err := NewDomains([]string{"bad domain"}); err == nil {
		t.Error("NewDomains accepted a name with a space")
	}
}

func TestReadEnvelope(t *testing.T) {
	for _, c := range []struct {
		in       string
		from, to string
		ok       bool
	}{
		{"Return-Path: <a@x.example>\r\nDelivered-To: <john@host.example>\r\nSubject: s\r\n\r\nb\r\n", "a@x.example", "john@host.example", true},
		{"return-path: <>\nDELIVERED-TO: <john@host.example>\n\nb\n", "", "john@host.example", true},
		// Delivered-To further down is someone else's.
		{"Subject: s\r\nDelivered-To: <john@host.example>\r\n\r\n", "", "", false},
		{"Return-Path: <a@x.example>\r\nSubject: s\r\nDelivered-To: <john@host.example>\r\n", "", "", false},
		{"Return-Path: a@x.example\r\nDelivered-To: <john@host.example>\r\n", "", "", false},
		{"Return-Path: <" + strings.Repeat("a", 2000) + ">\r\nDelivered-To: <j@h>\r\n", "", "", false},
		{"", "", "", false},
	} {
		from, to, ok := ReadEnvelope(strings.NewReader(c.in))
		if from != c.from || to != c.to || ok != c.ok {
			t.Errorf("ReadEnvelope(%.40q) = %q, %q, %v, want %q, %q, %v", c.in, from, to, ok, c.from, c.to, c.ok)
		}
	}
}

// drop is a Mailbox of fixed messages that records its commit.
type drop struct {
	msgs      []string
	committed []int
	closed    bool
}

func (d *drop) Messages() []pop3proto.MessageInfo {
	var m []pop3proto.MessageInfo
	for i, s := range d.msgs {
		m = append(m, pop3proto.MessageInfo{Size: int64(len(s)), UID: fmt.Sprint("u", i)})
	}
	return m
}

func (d *drop) Open(_ context.Context, i int) (io.ReadCloser, error) {
	if d.msgs[i] == "gone" {
		return nil, &pop3server.Error{Code: pop3proto.CodeSysPerm, Text: "gone"}
	}
	return io.NopCloser(strings.NewReader(d.msgs[i])), nil
}

func (d *drop) Commit(_ context.Context, del []int) error { d.committed = del; return nil }
func (d *drop) Close() error                              { d.closed = true; return nil }

func env(from, to string) string {
	return "Return-Path: <" + from + ">\r\nDelivered-To: <" + to + ">\r\n\r\nbody\r\n"
}

// A selection shows the recipient's copies only, numbered from 1, and a
// deletion through it deletes the drop's messages behind them.
func TestWrapSelection(t *testing.T) {
	ctx := context.Background()
	d := &drop{msgs: []string{
		env("a@x", "john@host.example"),
		env("b@x", "mary@host.example"),
		"no envelope\r\n",
		"gone",
		env("c@x", "John@host.example"),
		"Subject: s\r\nDelivered-To: <john@host.example>\r\n\r\n",
	}}
	m, err := Wrap(ctx, d, "john")
	if err != nil {
		t.Fatal(err)
	}
	got := m.Messages()
	want := []pop3proto.MessageInfo{d.Messages()[0], d.Messages()[4]}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("selection (-want +got):\n%s", diff)
	}
	from, to, err := m.(pop3server.EnvelopeMailbox).Envelope(ctx, 1)
	if from != "c@x" || to != "John@host.example" || err != nil {
		t.Errorf("Envelope(1) = %q, %q, %v", from, to, err)
	}
	if err := m.Commit(ctx, []int{0, 1}); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]int{0, 4}, d.committed); diff != "" {
		t.Errorf("drop commit (-want +got):\n%s", diff)
	}
	m.Close()
	if !d.closed {
		t.Error("Close did not close the drop")
	}

	none, err := Wrap(ctx, &drop{msgs: []string{env("a@x", "mary@host.example")}}, "john")
	if err != nil || len(none.Messages()) != 0 {
		t.Errorf("selection of nobody's mail = %v, %v", none.Messages(), err)
	}
}

// The whole drop: every message, envelopes read on demand, unknown ones
// empty.
func TestWrapWhole(t *testing.T) {
	ctx := context.Background()
	d := &drop{msgs: []string{env("a@x", "john@host.example"), "no envelope\r\n"}}
	m, err := Wrap(ctx, d, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Messages()) != 2 {
		t.Fatalf("%d messages, want 2", len(m.Messages()))
	}
	em := m.(pop3server.EnvelopeMailbox)
	if f, to, _ := em.Envelope(ctx, 1); f != "" || to != "" {
		t.Errorf("unknown envelope = %q, %q", f, to)
	}
	m.Commit(ctx, []int{1})
	if diff := cmp.Diff([]int{1}, d.committed); diff != "" {
		t.Errorf("drop commit (-want +got):\n%s", diff)
	}
}
