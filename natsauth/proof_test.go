package natsauth_test

import (
	"errors"
	"testing"
	"time"

	"github.com/sagewai/observatory/fleet/fleettest"
	"github.com/sagewai/observatory/natsauth"
)

// TestProof: a proof made with a user's seed passes Check for the same
// request, and fails for another method, URI or body, a forged signature,
// a time too far from the checker's, a user another authority issued and
// an expired user.
func TestProof(t *testing.T) {
	a, err := natsauth.Embedded(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	now := fleettest.Epoch()
	creds, err := a.Creds(natsauth.User{Name: "w-01", Publish: []string{"fleet.acme.>"}, Inbox: true, Expires: now.Add(time.Hour)}, now)
	if err != nil {
		t.Fatal(err)
	}
	s, err := natsauth.NewSigner(creds)
	if err != nil {
		t.Fatal(err)
	}
	const uri = "/api/v1/workers/w-01/passes"
	body := []byte(`{"project":"acme","stream_seq":7}`)
	p, err := s.Sign("POST", uri, now, body)
	if err != nil {
		t.Fatal(err)
	}
	back, err := natsauth.ParseProof(p.String())
	if err != nil {
		t.Fatal(err)
	}
	uc, err := a.Check(s.Token(), back, "POST", uri, body, now.Add(time.Minute), now)
	if err != nil {
		t.Fatalf("a good proof: %v", err)
	}
	if uc.Name != "w-01" {
		t.Errorf("the user is %q, want w-01", uc.Name)
	}

	other, err := natsauth.Embedded(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	forged := back
	forged.Sig = append([]byte(nil), back.Sig...)
	forged.Sig[0] ^= 1
	for _, tc := range []struct {
		name            string
		a               *natsauth.Authority
		p               natsauth.Proof
		method, uri     string
		body            []byte
		checkAt, natsAt time.Time
		want            error
	}{
		{"another method", a, back, "DELETE", uri, body, now, now, natsauth.ErrProof},
		{"another URI", a, back, "POST", "/api/v1/workers/w-02/passes", body, now, now, natsauth.ErrProof},
		{"another body", a, back, "POST", uri, []byte(`{"project":"globex","stream_seq":7}`), now, now, natsauth.ErrProof},
		{"a forged signature", a, forged, "POST", uri, body, now, now, natsauth.ErrProof},
		{"signed long before", a, back, "POST", uri, body, now.Add(natsauth.MaxProofSkew + time.Second), now, natsauth.ErrStale},
		{"signed in the future", a, back, "POST", uri, body, now.Add(-natsauth.MaxProofSkew - time.Second), now, natsauth.ErrStale},
		{"another authority", other, back, "POST", uri, body, now, now, natsauth.ErrNotOurs},
		{"expired credentials", a, back, "POST", uri, body, now, now.Add(time.Hour), natsauth.ErrExpired},
	} {
		if _, err := tc.a.Check(s.Token(), tc.p, tc.method, tc.uri, tc.body, tc.checkAt, tc.natsAt); !errors.Is(err, tc.want) {
			t.Errorf("%s: Check = %v, want %v", tc.name, err, tc.want)
		}
	}
}
