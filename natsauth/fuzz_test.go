package natsauth_test

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/sagewai/observatory/fleet/fleettest"
	"github.com/sagewai/observatory/natsauth"
)

// fuzzCreds is a real credentials file, the seed of the fuzz targets.
func fuzzCreds(f *testing.F) []byte {
	f.Helper()
	a, err := natsauth.Embedded(f.TempDir())
	if err != nil {
		f.Fatal(err)
	}
	now := fleettest.Epoch()
	creds, err := a.Creds(natsauth.User{Name: "w-01", Publish: []string{"fleet.acme.>"}, Inbox: true, Expires: now.Add(time.Hour)}, now)
	if err != nil {
		f.Fatal(err)
	}
	return creds
}

// FuzzCreds feeds arbitrary bytes to what a worker does with the "creds" of
// its enrollment answer (Parse, InboxPrefix, AccountOf, NewSigner): they
// never panic, and what they accept is consistent: a parsed JWT and seed
// give an inbox prefix of the user's key and a signer whose proof the
// same bytes' parse agrees with.
func FuzzCreds(f *testing.F) {
	creds := fuzzCreds(f)
	f.Add(creds)
	f.Add([]byte{})
	f.Add([]byte("-----BEGIN NATS USER JWT-----\nnope\n------END NATS USER JWT------\n"))
	f.Add(bytes.Replace(creds, []byte("SU"), []byte("SA"), 1))
	f.Add(creds[:len(creds)/2])
	f.Add(bytes.ToUpper(creds))
	f.Fuzz(func(t *testing.T, b []byte) {
		tok, seed, err := natsauth.Parse(b)
		inbox, ierr := natsauth.InboxPrefix(b)
		_, _ = natsauth.AccountOf(b)
		s, serr := natsauth.NewSigner(b)
		if err != nil {
			if serr == nil {
				t.Fatalf("NewSigner accepted what Parse refused (%v)", err)
			}
			return
		}
		if tok == "" || !strings.HasPrefix(seed, "S") {
			t.Fatalf("Parse accepted a token %q and a seed %q", tok, seed)
		}
		if ierr != nil || !strings.HasPrefix(inbox, "_INBOX.U") {
			t.Fatalf("Parse accepted it, InboxPrefix = %q, %v", inbox, ierr)
		}
		if serr != nil || s.Token() != tok {
			t.Fatalf("Parse accepted it, NewSigner = %v", serr)
		}
	})
}

// FuzzParseProof: ParseProof never panics, and what it accepts encodes
// back to itself.
func FuzzParseProof(f *testing.F) {
	f.Add("1795791845.AAAA")
	f.Add("1795791845." + strings.Repeat("A", 86))
	f.Add("-1." + strings.Repeat("A", 86))
	f.Add("+1." + strings.Repeat("A", 86))
	f.Add("")
	f.Add(".")
	f.Fuzz(func(t *testing.T, s string) {
		p, err := natsauth.ParseProof(s)
		if err != nil {
			return
		}
		if got := p.String(); got != s {
			t.Fatalf("ParseProof(%q) encodes back as %q", s, got)
		}
	})
}
