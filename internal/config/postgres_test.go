package config

import (
	"strings"
	"testing"
	"time"
)

const pgGood = `
[pop3]
listen = ["127.0.0.1:1110"]

[auth]
database = "postgres://postoffice@db1,db2/mail?target_session_attrs=read-write"

[mail]
location = "postgres://postoffice@db1,db2/mail?target_session_attrs=read-write"
`

func TestParsePostgres(t *testing.T) {
	t.Parallel()
	c, err := Parse("x.toml", []byte(pgGood))
	if err != nil {
		t.Fatal(err)
	}
	if dsn, ok := c.Mail.PostgresDSN(); !ok || !strings.HasPrefix(dsn, "postgres://") {
		t.Errorf("PostgresDSN() = %q, %v", dsn, ok)
	}
	if c.Postgres.LockTTL.Duration != 30*time.Second || c.Postgres.ConnectTimeout.Duration != 10*time.Second || c.Postgres.MaxConns != 0 {
		t.Errorf("postgres defaults = %+v", c.Postgres)
	}
	c, err = Parse("x.toml", []byte(pgGood+"[postgres]\nmax_conns = 20\nconnect_timeout = \"3s\"\nlock_ttl = \"5s\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Postgres.LockTTL.Duration != 5*time.Second || c.Postgres.ConnectTimeout.Duration != 3*time.Second || c.Postgres.MaxConns != 20 {
		t.Errorf("postgres = %+v", c.Postgres)
	}
	for _, loc := range []string{
		"postgresql://u@h/db",
		"postgres:host=/run/postgresql dbname=mail",
		"host=/run/postgresql dbname=mail",
		"host=db1,db2 port=5432,5433 dbname=mail target_session_attrs=read-write",
	} {
		text := strings.Replace(pgGood, `location = "postgres://postoffice@db1,db2/mail?target_session_attrs=read-write"`, `location = "`+loc+`"`, 1)
		c, err := Parse("x.toml", []byte(text))
		if err != nil {
			t.Errorf("location %q: %v", loc, err)
			continue
		}
		if _, ok := c.Mail.PostgresDSN(); !ok {
			t.Errorf("location %q: PostgresDSN not ok", loc)
		}
	}
	c, err = Parse("x.toml", []byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := c.Mail.PostgresDSN(); ok {
		t.Errorf("maildir location: PostgresDSN ok")
	}
}

func TestParsePostgresErrors(t *testing.T) {
	t.Parallel()
	loc := `location = "postgres://postoffice@db1,db2/mail?target_session_attrs=read-write"`
	db := `database = "postgres://postoffice@db1,db2/mail?target_session_attrs=read-write"`
	tests := []struct{ text, want string }{
		{strings.Replace(pgGood, loc, `location = "postgres://u@h/db?connect_timeout=soon"`, 1), "x.toml:9: mail.location: not a PostgreSQL connection string"},
		{pgGood + "[postgres]\nlock_ttl = \"500ms\"\n", "x.toml:11: postgres.lock_ttl: 500ms is below 1s"},
		{pgGood + "[postgres]\nconnect_timeout = \"0s\"\n", "x.toml:11: postgres.connect_timeout: must be positive"},
		{pgGood + "[postgres]\nmax_conns = -1\n", "x.toml:11: postgres.max_conns: must not be negative"},
		{pgGood + "[postgres]\nlock_ttl = \"long\"\n", "x.toml:11"},
		{strings.Replace(pgGood, db, db+"\npasswd_file = \"/p\"", 1), "x.toml:6: auth.database: set auth.database or auth.passwd_file, not both"},
		{strings.Replace(pgGood, db, `database = "/etc/users"`, 1), "x.toml:6: auth.database: must be a PostgreSQL connection string"},
		{strings.Replace(pgGood, db, db+"\npassword_query = \"SELECT password FROM mailbox WHERE username = 'x'\"", 1), "x.toml:7: auth.password_query: must use $1"},
		{strings.Replace(pgGood, db, db+"\npassword_query = \"SELECT password FROM m WHERE u = $1 AND d = $2\"", 1), "x.toml:7: auth.password_query: has one parameter only"},
		{strings.Replace(pgGood, db, `passwd_file = "/p"`+"\npassword_query = \"SELECT password FROM m WHERE u = $1\"", 1), "x.toml:7: auth.password_query: needs auth.database"},
		{strings.Replace(pgGood, db, ``, 1), "auth.passwd_file: is required (or auth.database)"},
	}
	for _, tt := range tests {
		_, err := Parse("x.toml", []byte(tt.text))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Parse(...%q...) = %v, want error containing %q", tt.want, err, tt.want)
		}
	}
}

// TestPostgresDSNNoPassword: a DSN that fails to parse is reported without
// the password it holds (the config check prints its problems).
func TestPostgresDSNNoPassword(t *testing.T) {
	t.Parallel()
	text := strings.Replace(pgGood, `location = "postgres://postoffice@db1,db2/mail?target_session_attrs=read-write"`,
		`location = "postgres://u:s3cretpw@h/db?connect_timeout=soon"`, 1)
	_, err := Parse("x.toml", []byte(text))
	if err == nil {
		t.Fatal("Parse = nil error")
	}
	if strings.Contains(err.Error(), "s3cretpw") {
		t.Errorf("error shows the password: %v", err)
	}
}
