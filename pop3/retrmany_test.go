package pop3

import (
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// With PIPELINING the commands go out before the first reply is read: the
// fake server reads both RETRs and TOP before it answers anything, which a
// client waiting for each reply would never get to (RFC 2449 §6.6). A -ERR
// for one message is handed to fn and the others still come.
func TestRetrManyPipelined(t *testing.T) {
	t.Parallel()
	addr := fakeServer(t, `
		S: +OK ready
		C: CAPA
		S: +OK
		S: PIPELINING
		S: .
		C: RETR 1
		C: RETR 2
		C: TOP 3 0
		S: +OK
		S: one
		S: ..dot
		S: .
		S: -ERR no such message
		S: +OK
		S: Subject: three
		S: 
		S: .
		C: QUIT
		S: +OK bye
	`)
	ctx := testCtx(t)
	c, err := Dial(ctx, addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var got []string
	err = c.RetrMany(ctx, []BodyRequest{{1, -1}, {2, -1}, {3, 0}}, func(i int, body io.Reader, err error) error {
		if err != nil {
			var perr *Error
			if !errors.As(err, &perr) {
				t.Errorf("message %d: err = %v, want *Error", i, err)
			}
			got = append(got, fmt.Sprintf("%d: -ERR", i))
			return nil
		}
		b, err := io.ReadAll(body)
		if err != nil {
			return err
		}
		got = append(got, fmt.Sprintf("%d: %q", i, b))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{`0: "one\r\n.dot\r\n"`, "1: -ERR", `2: "Subject: three\r\n\r\n"`}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("RetrMany bodies (-want +got):\n%s", diff)
	}
	if err := c.Quit(ctx); err != nil {
		t.Fatal(err)
	}
}

// Without PIPELINING each command waits for the reply before it. When fn
// fails, the replies already asked for are read and discarded, nothing
// more is sent, and the session stays usable.
func TestRetrManyStopsInStep(t *testing.T) {
	t.Parallel()
	addr := fakeServer(t, `
		S: +OK ready
		C: CAPA
		S: +OK
		S: PIPELINING
		S: .
		C: RETR 1
		C: RETR 2
		S: +OK
		S: one
		S: .
		S: +OK
		S: two
		S: .
		C: NOOP
		S: +OK
		C: QUIT
		S: +OK bye
	`)
	ctx := testCtx(t)
	c, err := Dial(ctx, addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	stop := errors.New("stop")
	calls := 0
	err = c.RetrMany(ctx, []BodyRequest{{1, -1}, {2, -1}}, func(i int, body io.Reader, err error) error {
		calls++
		return stop
	})
	if !errors.Is(err, stop) || calls != 1 {
		t.Fatalf("RetrMany = %v after %d calls, want stop after 1", err, calls)
	}
	if err := c.Noop(ctx); err != nil {
		t.Fatalf("Noop after RetrMany: %v", err)
	}
	if err := c.Quit(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestRetrManyNoPipelining(t *testing.T) {
	t.Parallel()
	addr := fakeServer(t, `
		S: +OK ready
		C: CAPA
		S: -ERR unknown command
		C: RETR 1
		S: +OK
		S: one
		S: .
		C: RETR 2
		S: +OK
		S: two
		S: .
		C: QUIT
		S: +OK bye
	`)
	ctx := testCtx(t)
	c, err := Dial(ctx, addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	n := 0
	err = c.RetrMany(ctx, []BodyRequest{{1, -1}, {2, -1}}, func(i int, body io.Reader, err error) error {
		n++
		return err
	})
	if err != nil || n != 2 {
		t.Fatalf("RetrMany = %v after %d calls", err, n)
	}
	if err := c.Quit(ctx); err != nil {
		t.Fatal(err)
	}
}
