package wire

// MessageInfo is one message of a maildrop as LIST and UIDL show it. It is
// pop3server.MessageInfo for the engine and store.Message for the stores:
// one type (both names are aliases), so the snapshot a store takes at login
// reaches the engine as it is, without a copy per session (2.4 MB for
// 100,000 messages), and neither package imports the other.
type MessageInfo struct {
	Size int64  // octets RETR sends, CRLF form, before dot-stuffing (CRLFSize)
	UID  string // UIDL: 1-70 characters of 0x21-0x7E, unique, stable (RFC 1939 §7)
}
