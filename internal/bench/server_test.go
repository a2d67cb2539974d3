package bench

import (
	"context"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/postoffice-mail/postoffice/internal/auth/passwdfile"
	"github.com/postoffice-mail/postoffice/internal/backend"
	"github.com/postoffice-mail/postoffice/internal/store/maildir"
	"github.com/postoffice-mail/postoffice/pop3server"
)

// BenchmarkServer runs the real server stack in this process (engine,
// backend, passwd-file, Maildir store) under the load generator, so that a
// CPU profile shows where the server spends its time:
//
//	go test -run x -bench Server -cpuprofile cpu.out ./internal/bench
//	go tool pprof -top -focus pop3server cpu.out
func BenchmarkServer(b *testing.B) {
	dir := b.TempDir()
	if _, err := Seed(SeedOptions{Dir: dir, Users: 8, Messages: 50, Bigbox: 100_000, BigboxSizeDist: "fixed:2048", Seed: 1}); err != nil {
		b.Fatal(err)
	}
	users, err := passwdfile.Open(filepath.Join(dir, "passwd"), passwdfile.Options{})
	if err != nil {
		b.Fatal(err)
	}
	st, err := maildir.New(maildir.Options{Location: dir + "/mail/%u/Maildir"})
	if err != nil {
		b.Fatal(err)
	}
	be, err := backend.New(backend.Options{Users: users, Store: st})
	if err != nil {
		b.Fatal(err)
	}
	srv, err := pop3server.New(pop3server.Options{Backend: be, AuthFailDelay: -1})
	if err != nil {
		b.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go srv.Serve(l)
	b.Cleanup(func() { srv.Close() })
	creds, err := ReadUsers(filepath.Join(dir, "users.txt"))
	if err != nil {
		b.Fatal(err)
	}
	big, err := ReadUsers(filepath.Join(dir, "bigbox.txt"))
	if err != nil {
		b.Fatal(err)
	}
	for _, sc := range []struct {
		scenario Scenario
		users    []Credential
		c        int
	}{{Login, creds, 8}, {Download, creds, 8}, {Bigbox, big, 1}} {
		b.Run(string(sc.scenario), func(b *testing.B) {
			// One untimed run warms the indexes.
			o := Options{Addr: l.Addr().String(), Users: sc.users, Scenario: sc.scenario, Concurrency: sc.c, Sessions: sc.c, Timeout: time.Minute}
			if _, err := Run(context.Background(), o); err != nil {
				b.Fatal(err)
			}
			o.Sessions = b.N
			b.ResetTimer()
			res, err := Run(context.Background(), o)
			if err != nil {
				b.Fatal(err)
			}
			if res.Errors > 0 {
				b.Fatalf("%d errors: %v", res.Errors, res.ErrorSamples)
			}
			b.ReportMetric(res.MBPerS, "MB/s")
			b.ReportMetric(res.LatencyMs.P50, "p50-ms")
		})
	}
}
