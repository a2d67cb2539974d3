package replytext

import "testing"

func TestCheck(t *testing.T) {
	tests := []struct {
		text string
		ok   bool
	}{
		{"-ERR Unknown command", false},
		{"-ERR [IN-USE] Mailbox is locked by another POP3 session", false},
		{"-ERR [SYS/TEMP] Cannot open mailbox, try again later", false},
		{"-ERR Unknown command: send CAPA for the commands this server supports", true},
		{"-ERR [LOGIN-DELAY] Logins are limited to one every 15 minutes; the next login is allowed in 4 minutes", true},
		{"-ERR [AUTH] This server accepts passwords only over TLS: use port 995 or STLS", true},
		{"-ERR Error: something", false},
		{"-ERR Something failed: it failed", false},
		{"[IN-USE] Another session holds this maildrop; it ends when that client quits", true},
	}
	for _, tt := range tests {
		if err := Check(tt.text); (err == nil) != tt.ok {
			t.Errorf("Check(%q) = %v, want ok %v", tt.text, err, tt.ok)
		}
	}
}
