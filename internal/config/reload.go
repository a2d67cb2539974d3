package config

import (
	"reflect"
	"slices"
)

// Path returns the file the configuration was read from ("" when it was
// built in code, as serve --dev does).
func (c *Config) Path() string { return c.path }

// Reloaded merges a configuration read again on SIGHUP into the running
// one. The keys a running server can change take next's values: log.level,
// limits.max_connections, limits.max_connections_per_ip,
// limits.trusted_networks, and the auth penalty's delays and bans
// (penalty_base, penalty_max, penalty_window, ban_after, ban_time,
// user_penalty_after, user_penalty_max; turning auth.penalty on or off
// needs a restart). The certificate files are re-read anyway (tlsconf). Everything else keeps the running value, and restart names the
// tables in which next differs from it, sorted: those changes need a
// restart.
func Reloaded(running, next *Config) (merged *Config, restart []string) {
	m := *running
	m.Log.Level = next.Log.Level
	m.Limits.MaxConnections = next.Limits.MaxConnections
	m.Limits.MaxConnectionsPerIP = next.Limits.MaxConnectionsPerIP
	m.Limits.TrustedNetworks = next.Limits.TrustedNetworks
	a, na := &m.Auth, next.Auth
	a.PenaltyBase, a.PenaltyMax, a.PenaltyWindow = na.PenaltyBase, na.PenaltyMax, na.PenaltyWindow
	a.BanAfter, a.BanTime, a.UserPenaltyAfter, a.UserPenaltyMax = na.BanAfter, na.BanTime, na.UserPenaltyAfter, na.UserPenaltyMax
	mv, nv := reflect.ValueOf(m), reflect.ValueOf(*next)
	t := mv.Type()
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		if !reflect.DeepEqual(mv.Field(i).Interface(), nv.Field(i).Interface()) {
			restart = append(restart, f.Tag.Get("toml"))
		}
	}
	slices.Sort(restart)
	return &m, restart
}
