package config

import (
	"slices"
	"testing"
)

func TestReloaded(t *testing.T) {
	t.Parallel()
	parse := func(extra string) *Config {
		t.Helper()
		c, err := Parse("x.toml", []byte(good+extra))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	running := parse("")
	if running.Path() != "x.toml" {
		t.Errorf("Path = %q", running.Path())
	}

	next := parse(`
[limits]
max_connections = 10
max_connections_per_ip = 3
trusted_networks = ["10.0.0.0/8"]
[log]
level = "debug"
`)
	next.Auth.BanAfter, next.Auth.PenaltyBase.Duration = 3, 0
	m, restart := Reloaded(running, next)
	if len(restart) != 0 {
		t.Errorf("live keys only: restart %v, want none", restart)
	}
	if m.Log.Level != "debug" || m.Limits.MaxConnections != 10 || m.Limits.MaxConnectionsPerIP != 3 ||
		!slices.Equal(m.Limits.TrustedNetworks, []string{"10.0.0.0/8"}) {
		t.Errorf("merged = %+v %+v", m.Log, m.Limits)
	}
	if m.Auth.BanAfter != 3 || m.Auth.PenaltyBase.Duration != 0 {
		t.Errorf("merged auth penalty = %+v", m.Auth)
	}
	if running.Log.Level != "info" {
		t.Error("Reloaded changed the running config")
	}

	next = parse(`
[limits]
max_connections = 10
write_timeout = "30s"
[metrics]
listen = "127.0.0.1:9110"
[log]
format = "json"
`)
	m, restart = Reloaded(running, next)
	if want := []string{"limits", "log", "metrics"}; !slices.Equal(restart, want) {
		t.Errorf("restart = %v, want %v", restart, want)
	}
	if m.Limits.MaxConnections != 10 || m.Limits.WriteTimeout != running.Limits.WriteTimeout || m.Log.Format != "text" || m.Metrics.Listen != "" {
		t.Errorf("merged took a restart-only value or missed a live one: %+v %+v %+v", m.Limits, m.Log, m.Metrics)
	}
	// The merged config compared with next again names the same tables:
	// a second SIGHUP repeats the warning until the restart.
	if _, again := Reloaded(m, next); !slices.Equal(again, restart) {
		t.Errorf("second reload: restart = %v, want %v", again, restart)
	}
}
