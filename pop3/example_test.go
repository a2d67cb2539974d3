package pop3_test

import (
	"context"
	"io"
	"log"
	"os"
	"time"

	"github.com/postoffice-mail/postoffice/pop3"
)

func Example() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := pop3.DialTLS(ctx, "pop.example.org:995", nil)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close() // without Quit nothing is deleted
	if err := c.Login(ctx, "alice", "secret"); err != nil {
		log.Fatal(err) // an *pop3.Error with IsAuth() means the password is wrong
	}
	uids, err := c.UIDL(ctx)
	if err != nil {
		log.Fatal(err)
	}
	for _, u := range uids {
		body, err := c.Retr(ctx, u.Num)
		if err != nil {
			log.Fatal(err)
		}
		// The message streams: never whole in memory.
		if _, err := io.Copy(os.Stdout, body); err != nil {
			log.Fatal(err)
		}
		body.Close()
		if err := c.Dele(ctx, u.Num); err != nil {
			log.Fatal(err)
		}
	}
	// Deletions happen only when QUIT succeeds.
	if err := c.Quit(ctx); err != nil {
		log.Fatal(err)
	}
}
