package passwdfile

import (
	"testing"
)

func TestExtraFieldHelpers(t *testing.T) {
	extra, err := ParseExtraFields("nologin reason=moved userdb_mail=maildir:~/Mail")
	if err != nil {
		t.Fatal(err)
	}
	lf, err := CheckLoginFields(extra, true)
	if err != nil || !lf.Restrict.NoLogin || lf.Restrict.Reason != "moved" {
		t.Errorf("CheckLoginFields(%v) = %+v, %v", extra, lf, err)
	}
	if _, err := ParseExtraFields("=x"); err == nil {
		t.Error(`ParseExtraFields("=x") = nil error`)
	}
	for _, bad := range []map[string]string{{"proxy": ""}, {"allow_foo": "1"}, {"nopassword": "no"}} {
		if _, err := CheckLoginFields(bad, false); err == nil {
			t.Errorf("CheckLoginFields(%v) = nil error", bad)
		}
	}
	lf, err = CheckLoginFields(map[string]string{"nopassword": ""}, false)
	if err != nil || !lf.NoPassword {
		t.Errorf("CheckLoginFields(nopassword) = %+v, %v", lf, err)
	}
}

// The per-user expiry fields are accepted when they are ages and refused
// at load when they are not.
func TestExpireFields(t *testing.T) {
	t.Parallel()
	for _, v := range []string{"30d", "2w", "36h", "never", "0d"} {
		if _, err := CheckLoginFields(map[string]string{"expire_after_retrieval": v, "expire_after_arrival": v}, true); err != nil {
			t.Errorf("expire fields = %q: %v", v, err)
		}
	}
	for _, v := range []string{"", "soon", "-1d", "30x"} {
		if _, err := CheckLoginFields(map[string]string{"expire_after_retrieval": v}, true); err == nil {
			t.Errorf("expire_after_retrieval=%q accepted", v)
		}
	}
}
