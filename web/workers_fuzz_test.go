package web_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/sagewai/observatory/fleet/fleettest"
	"github.com/sagewai/observatory/natsauth"
	"github.com/sagewai/observatory/stream"
	"github.com/sagewai/observatory/stream/streamtest"
	"github.com/sagewai/observatory/web"
	"github.com/sagewai/observatory/worker"
)

// FuzzPassRequest sends arbitrary bodies and queries to the pass routes
// of worker w-01 of acme, each signed with its credentials as the worker
// runtime signs them, so that every input reaches the decoders. Whatever
// the input, the answer is never a 5xx, a refusal has the API's error
// shape and words, and no count is ever kept for a project other than
// acme. The pass counts are a real KV bucket; the credentials are minted
// by a real authority (no NATS server judges them here: the server does).
func FuzzPassRequest(f *testing.F) {
	n := streamtest.Start(f, stream.HubConfig{Tick: 10 * time.Millisecond})
	ctx := context.Background()
	skips, err := stream.MissionSkips(ctx, n.JS)
	if err != nil {
		f.Fatal(err)
	}
	a, err := natsauth.Embedded(f.TempDir())
	if err != nil {
		f.Fatal(err)
	}
	clock := fleettest.NewClock()
	srv, err := web.New(web.Config{
		AdminPassword: adminPassword, SigningKey: bytes.Repeat([]byte("k"), 32), Logger: slog.New(slog.DiscardHandler),
		Now: clock.Now, BcryptCost: bcrypt.MinCost,
		Workers: web.WorkersConfig{Authority: a, Passes: worker.NewKVPasses(skips)},
	}, n.Hub, &testAuditor{})
	if err != nil {
		f.Fatal(err)
	}
	url := newTestServer(f, srv)
	creds, err := a.Creds(natsauth.User{Name: "w-01", Publish: []string{"fleet.acme.>"}, Inbox: true, Expires: time.Now().Add(time.Hour)}, time.Now())
	if err != nil {
		f.Fatal(err)
	}
	signer, err := natsauth.NewSigner(creds)
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []struct{ method, query, body string }{
		{"POST", "", `{"project":"acme","stream_seq":7}`},
		{"POST", "", `{"project":"globex","stream_seq":7}`},
		{"POST", "", `{"project":"acme","stream_seq":-1}`},
		{"POST", "", `{"project":"acme","stream_seq":"7"}`},
		{"POST", "", `{"project":"acme","stream_seq":18446744073709551616}`},
		{"POST", "", `{"project":"acme","stream_seq":7,"extra":1}`},
		{"POST", "", `[]`},
		{"GET", "project=acme&stream_seq=7", ""},
		{"GET", "project=acme&stream_seq=0x7", ""},
		{"DELETE", "project=Acme&stream_seq=7", ""},
		{"DELETE", "project=acme&project=globex&stream_seq=7", ""},
	} {
		f.Add(s.method, s.query, []byte(s.body))
	}
	const path = "/api/v1/workers/w-01/passes"
	f.Fuzz(func(t *testing.T, method, query string, body []byte) {
		switch method {
		case "POST", "GET", "DELETE":
		default:
			method = "POST"
		}
		uri := path
		if query != "" {
			uri += "?" + query
		}
		req, err := http.NewRequest(method, url+uri, bytes.NewReader(body))
		if err != nil {
			return // not a request a client could send
		}
		p, err := signer.Sign(method, req.URL.RequestURI(), clock.Now(), body)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+signer.Token())
		req.Header.Set(web.ProofHeader, p.String())
		req.Header.Set("Content-Type", "application/json")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		ct, _, _ := mime.ParseMediaType(res.Header.Get("Content-Type"))
		switch {
		case res.StatusCode >= 500:
			t.Fatalf("%s %s %q: %d %s", method, uri, body, res.StatusCode, b)
		case res.StatusCode >= 400:
			code, msg := response{status: res.StatusCode, body: b}.errorOf(t)
			if web.StatusOf(code) != res.StatusCode || ct != "application/json" {
				t.Fatalf("%d (%s) with code %q", res.StatusCode, ct, code)
			}
			if leak := goInternals(msg); leak != "" {
				t.Fatalf("%q refused with %q, which speaks Go (%q)", body, msg, leak)
			}
		}
		keys, err := skips.ListKeys(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for k := range keys.Keys() {
			if !strings.HasPrefix(k, "acme.") {
				t.Fatalf("a count kept for %q after %s %s %q", k, method, uri, body)
			}
		}
	})
}
