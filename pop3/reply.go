package pop3

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"

	"github.com/postoffice-mail/postoffice/internal/wire"
	"github.com/postoffice-mail/postoffice/pop3proto"
)

// MaxReplyLine is the longest reply line the client accepts, terminator
// included. RFC 1939 §3 and RFC 2449 §4 allow 512 octets for a status line;
// real servers send longer ones, so the limit is lenient. Message bodies
// are not bounded by it.
const MaxReplyLine = 8192

// status is the kind of a reply line.
type status int

const (
	statusOK   status = iota // +OK
	statusErr                // -ERR
	statusCont               // "+ " SASL continuation (RFC 5034 §4)
)

// parseReply classifies one reply line (without its line end) and returns
// the text after the status indicator. Servers must send "+OK" and "-ERR"
// in upper case (RFC 1939 §3); the client accepts any case.
func parseReply(line []byte) (status, string, error) {
	switch {
	case wire.HasPrefixFoldASCII(line, "+OK") && (len(line) == 3 || line[3] == ' '):
		return statusOK, trimText(line[3:]), nil
	case wire.HasPrefixFoldASCII(line, "-ERR") && (len(line) == 4 || line[4] == ' '):
		return statusErr, trimText(line[4:]), nil
	case len(line) > 0 && line[0] == '+' && (len(line) == 1 || line[1] == ' '):
		// RFC 5034 §4: "+" SP base64; an empty challenge is exactly "+ ",
		// and servers that drop the space are tolerated.
		return statusCont, strings.TrimSpace(string(line[1:])), nil
	}
	return 0, "", fmt.Errorf("%w: unexpected reply %q", ErrProtocol, clip(line))
}

func trimText(b []byte) string {
	return string(bytes.TrimLeft(b, " "))
}

// clip shortens what a protocol error quotes from the server.
func clip(b []byte) string {
	if len(b) > 64 {
		return string(b[:64]) + "..."
	}
	return string(b)
}

// parseError splits the text of a -ERR reply into its response code and
// the rest (RFC 2449 §8): resp-code = "[" resp-level *("/" resp-level) "]",
// resp-level = 1*<any CHAR except "/", "]", SP and CTLs>. Text that starts
// with "[" but is no valid code is kept whole.
func parseError(text string) *Error {
	if len(text) < 3 || text[0] != '[' {
		return &Error{Text: text}
	}
	end := strings.IndexByte(text, ']')
	if end < 0 {
		return &Error{Text: text}
	}
	code := text[1:end]
	for _, level := range strings.Split(code, "/") {
		if level == "" {
			return &Error{Text: text}
		}
		for i := 0; i < len(level); i++ {
			// RFC 2449 §8's rchar, less '[': no registered code has
			// one, and "[[]" is a bracketed text, not a code.
			if c := level[i]; c <= ' ' || c >= 0x7f || c == '[' {
				return &Error{Text: text}
			}
		}
	}
	return &Error{Code: pop3proto.Code(code), Text: strings.TrimLeft(text[end+1:], " ")}
}

// parseNumbers parses the first two fields of a STAT reply, a LIST line or
// a LIST n reply: "n size", with anything after them ignored (RFC 1939 §5
// allows more information after the size).
func parseNumbers(text string) (int, int64, error) {
	f := strings.Fields(text)
	if len(f) < 2 {
		return 0, 0, fmt.Errorf("%w: want two numbers, got %q", ErrProtocol, clip([]byte(text)))
	}
	n, err1 := strconv.Atoi(f[0])
	size, err2 := strconv.ParseInt(f[1], 10, 64)
	if err1 != nil || err2 != nil || n < 0 || size < 0 {
		return 0, 0, fmt.Errorf("%w: want two numbers, got %q", ErrProtocol, clip([]byte(text)))
	}
	return n, size, nil
}

// parseUID parses a UIDL line or UIDL n reply: "n uid" (RFC 1939 §7). The
// uid should be 1-70 octets of 0x21-0x7E; longer ones are accepted, since
// refusing them would only strand the messages.
func parseUID(text string) (int, string, error) {
	f := strings.Fields(text)
	if len(f) < 2 {
		return 0, "", fmt.Errorf("%w: want \"n uid\", got %q", ErrProtocol, clip([]byte(text)))
	}
	n, err := strconv.Atoi(f[0])
	if err != nil || n <= 0 {
		return 0, "", fmt.Errorf("%w: want \"n uid\", got %q", ErrProtocol, clip([]byte(text)))
	}
	return n, f[1], nil
}

// apopTimestamp finds the msg-id timestamp of an APOP greeting (RFC 1939
// §7): a "<...>" without spaces. One containing "@" is preferred, as
// RFC 822 msg-ids have one; otherwise the first is taken.
func apopTimestamp(text string) string {
	first := ""
	for s := text; ; {
		i := strings.IndexByte(s, '<')
		if i < 0 {
			break
		}
		j := strings.IndexByte(s[i:], '>')
		if j < 0 {
			break
		}
		cand := s[i : i+j+1]
		if len(cand) > 2 && !strings.ContainsAny(cand[1:len(cand)-1], " \t<") {
			if strings.Contains(cand, "@") {
				return cand
			}
			if first == "" {
				first = cand
			}
		}
		s = s[i+1:]
	}
	return first
}
