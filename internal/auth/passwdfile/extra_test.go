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
