package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/coder/websocket"

	"github.com/sagewai/observatory/protocol"
)

// Reconnection backoff of tail: 250 ms doubling to 10 s, ±20 % jitter.
const (
	tailBackoffMin    = 250 * time.Millisecond
	tailBackoffMax    = 10 * time.Second
	tailBackoffJitter = 0.2
	tailDialTimeout   = 15 * time.Second
	tailWriteTimeout  = 5 * time.Second
	// tailReadLimit bounds one frame; a snapshot of a large fleet is big.
	tailReadLimit = 256 << 20
)

const tailUsage = `usage: observatory tail [flags]

Follows one scope of a running server over /ws and prints every frame it
receives (the snapshot, then the diffs) as one JSON line on stdout. On a
dropped connection it reconnects and resumes where it stood. Diagnostics go
to stderr. It speaks observatory.v2 (diffs carry only changed fields) unless
--protocol observatory.v1 asks for whole entities and whole postures in
every diff (docs/protocol.md).

examples:
  observatory tail                                   # everything, as admin/admin
  observatory tail --scope acme --protocol observatory.v1 | jq -c 'select(.op=="diff") | .posture'
  OBSERVATORY_TOKEN=... observatory tail --url wss://observatory.example.com/ws --scope acme

flags:
`

// tailCmd runs `observatory tail`: a headless subscriber of /ws.
func tailCmd(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("tail", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), tailUsage)
		fs.PrintDefaults()
	}
	env := func(k, def string) string { return envDefault(getenv, k, def) }
	t := &tailer{stdout: stdout, stderr: stderr, client: http.DefaultClient}
	fs.StringVar(&t.url, "url", env("OBSERVATORY_URL", "ws://127.0.0.1:3001/ws"), "WebSocket URL of the server's /ws (env OBSERVATORY_URL)")
	fs.StringVar(&t.scope, "scope", env("OBSERVATORY_SCOPE", "*"), `scope to follow: "*" (all projects, admins only) or a project id (env OBSERVATORY_SCOPE)`)
	fs.StringVar(&t.token, "token", env("OBSERVATORY_TOKEN", ""), "bearer token; when empty, tail logs in with --username and --password (env OBSERVATORY_TOKEN)")
	fs.StringVar(&t.username, "username", env("OBSERVATORY_USERNAME", "admin"), "user to log in as when no token is given (env OBSERVATORY_USERNAME)")
	fs.StringVar(&t.password, "password", env("OBSERVATORY_PASSWORD", "admin"), "password to log in with when no token is given (env OBSERVATORY_PASSWORD)")
	fs.StringVar(&t.origin, "origin", env("OBSERVATORY_ORIGIN", ""), "Origin header to send, for servers that check it (env OBSERVATORY_ORIGIN)")
	fs.StringVar(&t.protocol, "protocol", env("OBSERVATORY_PROTOCOL", protocol.SubprotocolV2),
		"protocol version to ask for: observatory.v2 (falls back to v1 on servers without it) or observatory.v1 (env OBSERVATORY_PROTOCOL)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("tail: unexpected arguments %q", fs.Args())
	}
	if !protocol.Known(t.protocol) {
		return fmt.Errorf("tail: --protocol %q: want %s or %s", t.protocol, protocol.SubprotocolV2, protocol.Subprotocol)
	}
	// The server validates the subscribe frame the same way: fail early.
	if _, err := protocol.DecodeSubscribe(t.subscribeFrame()); err != nil {
		return fmt.Errorf("tail: --scope %q: %w", t.scope, err)
	}
	base, err := tailAPIBase(t.url)
	if err != nil {
		return fmt.Errorf("tail: --url: %w", err)
	}
	t.loginURL = base + "/api/v1/auth/login"
	t.ownToken = t.token == ""
	return t.run(ctx)
}

// tailAPIBase turns the /ws URL into the base URL of the HTTP API:
// ws://host:3001/ws → http://host:3001, wss://host/prefix/ws → https://host/prefix.
func tailAPIBase(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", err
	}
	switch u.Scheme {
	case "ws", "http":
		u.Scheme = "http"
	case "wss", "https":
		u.Scheme = "https"
	default:
		return "", fmt.Errorf("%q: the scheme must be ws or wss", raw)
	}
	if u.Host == "" {
		return "", fmt.Errorf("%q has no host", raw)
	}
	u.Path = strings.TrimSuffix(strings.TrimSuffix(u.Path, "/"), "/ws")
	u.RawPath, u.RawQuery, u.Fragment = "", "", ""
	return u.String(), nil
}

// tailer is one run of `observatory tail`. One goroutine uses it.
type tailer struct {
	url, scope, origin string
	token              string
	username, password string
	loginURL           string
	ownToken           bool // the token comes from a login of ours
	relogged           bool // we logged in again after an unauthorized
	client             *http.Client
	stdout, stderr     io.Writer
	protocol           string // the version asked for

	mirror protocol.Mirror // the scope as the frames printed so far build it
}

// tailPermanent marks an error that ends tail without a retry.
type tailPermanent struct{ err error }

func (e *tailPermanent) Error() string { return e.err.Error() }
func (e *tailPermanent) Unwrap() error { return e.err }

func tailPermanentErr(err error) error { return &tailPermanent{err} }

// run connects, follows and reconnects until ctx ends (nil) or an error
// that a retry cannot fix.
func (t *tailer) run(ctx context.Context) error {
	b := tailBackoff{next: tailBackoffMin}
	for {
		progressed, err := t.session(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if progressed {
			b.reset()
		}
		var perm *tailPermanent
		if errors.As(err, &perm) {
			var se *protocol.ServerError
			if errors.As(err, &se) && se.Code == protocol.CodeUnauthorized && t.ownToken && !t.relogged {
				// Our session expired: log in again, once.
				fmt.Fprintf(t.stderr, "tail: %v; logging in again\n", err)
				t.token, t.relogged = "", true
				continue
			}
			return fmt.Errorf("tail: %w", err)
		}
		d := b.wait()
		fmt.Fprintf(t.stderr, "tail: %v; reconnecting in %s\n", err, d.Round(time.Millisecond))
		timer := time.NewTimer(d)
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil
		case <-timer.C:
		}
	}
}

// tailBackoff is exponential backoff with jitter.
type tailBackoff struct{ next time.Duration }

func (b *tailBackoff) reset() { b.next = tailBackoffMin }

// wait returns the next delay, jittered by ±20 %, and doubles the base.
func (b *tailBackoff) wait() time.Duration {
	d := b.next
	b.next = min(2*b.next, tailBackoffMax)
	return time.Duration(float64(d) * (1 + tailBackoffJitter*(2*rand.Float64()-1)))
}

func (t *tailer) subscribeFrame() []byte {
	sub := protocol.Subscribe{Op: protocol.OpSubscribe, Scope: t.scope}
	if t.mirror.Epoch != "" {
		sub.Resume = &protocol.Resume{Epoch: t.mirror.Epoch, Seq: t.mirror.Seq}
	}
	b, _ := json.Marshal(sub)
	return b
}

// session is one connection: log in if needed, dial, subscribe (resuming
// where the mirror stands), then print and apply frames until the
// connection ends. progressed reports whether any frame was applied.
func (t *tailer) session(ctx context.Context) (progressed bool, err error) {
	if t.token == "" {
		if t.token, err = t.login(ctx); err != nil {
			return false, err
		}
	}
	hdr := http.Header{"Authorization": {"Bearer " + t.token}}
	if t.origin != "" {
		hdr.Set("Origin", t.origin)
	}
	// Asking for v2, tail offers v1 too, so that a server without v2
	// still serves it.
	offer := []string{protocol.Subprotocol}
	if t.protocol == protocol.SubprotocolV2 {
		offer = protocol.Subprotocols
	}
	dialCtx, cancel := context.WithTimeout(ctx, tailDialTimeout)
	c, resp, err := websocket.Dial(dialCtx, t.url, &websocket.DialOptions{
		HTTPClient:   t.client,
		Subprotocols: offer,
		HTTPHeader:   hdr,
	})
	cancel()
	if err != nil {
		return false, tailHandshakeError(t.url, resp, err)
	}
	defer c.CloseNow()
	c.SetReadLimit(tailReadLimit)
	sp := c.Subprotocol()
	if !slices.Contains(offer, sp) {
		return false, tailPermanentErr(fmt.Errorf("%s accepted none of the subprotocols %s", t.url, strings.Join(offer, ", ")))
	}
	// The state tail holds is the same in either version; only how a
	// diff's posture applies differs.
	t.mirror.Protocol = sp
	sub := t.subscribeFrame()
	wctx, cancel := context.WithTimeout(ctx, tailWriteTimeout)
	err = c.Write(wctx, websocket.MessageText, sub)
	cancel()
	if err != nil {
		return false, fmt.Errorf("send subscribe: %w", err)
	}
	resuming := t.mirror.Epoch != ""
	if resuming {
		fmt.Fprintf(t.stderr, "tail: connected to %s (%s), resuming scope %s at seq %d\n", t.url, sp, t.scope, t.mirror.Seq)
	} else {
		fmt.Fprintf(t.stderr, "tail: connected to %s (%s), subscribing to scope %s\n", t.url, sp, t.scope)
	}

	for {
		_, frame, err := c.Read(ctx)
		if err != nil {
			return progressed, tailCloseError(err)
		}
		if err := t.print(frame); err != nil {
			return progressed, tailPermanentErr(err)
		}
		op, err := t.mirror.Apply(frame)
		var se *protocol.ServerError
		switch {
		case errors.As(err, &se):
			switch se.Code {
			case protocol.CodeUnauthorized, protocol.CodeForbidden, protocol.CodeBadRequest:
				return progressed, tailPermanentErr(se)
			}
			// slow, going_away (a server shutting down) and codes of newer
			// servers: the server closes next; reconnect and resume.
			return progressed, se
		case errors.Is(err, protocol.ErrGap):
			fmt.Fprintf(t.stderr, "tail: %v; resubscribing for a fresh snapshot\n", err)
			t.mirror = protocol.Mirror{}
			c.Close(websocket.StatusNormalClosure, "resubscribing")
			return true, err
		case err != nil && op != protocol.OpSnapshot && op != protocol.OpDiff:
			fmt.Fprintf(t.stderr, "tail: ignoring a frame: %v\n", err)
			continue
		case err != nil:
			fmt.Fprintf(t.stderr, "tail: %v; resubscribing for a fresh snapshot\n", err)
			t.mirror = protocol.Mirror{}
			c.Close(websocket.StatusNormalClosure, "resubscribing")
			return progressed, err
		}
		progressed, t.relogged = true, false
		if resuming {
			resuming = false
			if op == protocol.OpDiff {
				fmt.Fprintf(t.stderr, "tail: resumed at seq %d (epoch %s)\n", t.mirror.Seq, t.mirror.Epoch)
				continue
			}
		}
		if op == protocol.OpSnapshot {
			fmt.Fprintf(t.stderr, "tail: snapshot of scope %s at seq %d (epoch %s)\n", t.mirror.Scope, t.mirror.Seq, t.mirror.Epoch)
		}
	}
}

// print writes frame to stdout as one line, as received (compacted only if
// it spans several lines).
func (t *tailer) print(frame []byte) error {
	line := frame
	if bytes.ContainsAny(frame, "\r\n") {
		var buf bytes.Buffer
		if err := json.Compact(&buf, frame); err == nil {
			line = buf.Bytes()
		}
	}
	if _, err := t.stdout.Write(append(line, '\n')); err != nil {
		return fmt.Errorf("write stdout: %w", err)
	}
	return nil
}

// tailCloseError explains how a connection ended. Close codes of errors that
// a retry cannot fix (when the error frame itself was lost) are permanent.
func tailCloseError(err error) error {
	code := websocket.CloseStatus(err)
	switch int(code) {
	case protocol.CloseUnauthorized:
		return tailPermanentErr(&protocol.ServerError{Code: protocol.CodeUnauthorized, Message: "closed with 4401"})
	case protocol.CloseForbidden:
		return tailPermanentErr(&protocol.ServerError{Code: protocol.CodeForbidden, Message: "closed with 4403"})
	case protocol.CloseBadRequest:
		return tailPermanentErr(&protocol.ServerError{Code: protocol.CodeBadRequest, Message: "closed with 4400"})
	case -1:
		return fmt.Errorf("connection lost: %w", err)
	default:
		return fmt.Errorf("connection closed (%d): %w", code, err)
	}
}

// tailHandshakeError explains a failed dial. A 4xx answer (other than 408 and
// 429) will not change on a retry; network errors and 5xx may.
func tailHandshakeError(u string, resp *http.Response, err error) error {
	if resp == nil {
		return fmt.Errorf("dial %s: %w", u, err)
	}
	msg := tailAPIError(resp)
	err = fmt.Errorf("dial %s: %s%s", u, resp.Status, msg)
	if tailPermanentStatus(resp.StatusCode) {
		return tailPermanentErr(err)
	}
	return err
}

func tailPermanentStatus(code int) bool {
	return code >= 400 && code < 500 && code != http.StatusRequestTimeout && code != http.StatusTooManyRequests
}

// tailAPIError returns ": <message>" from a JSON error body
// ({"error":{"code","message"}}), or "".
func tailAPIError(resp *http.Response) string {
	if resp.Body == nil {
		return ""
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	var e struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal(b, &e) != nil || e.Error.Message == "" {
		return ""
	}
	return ": " + e.Error.Message
}

// login gets a session token with POST /api/v1/auth/login.
func (t *tailer) login(ctx context.Context) (string, error) {
	body, _ := json.Marshal(map[string]string{"username": t.username, "password": t.password})
	ctx, cancel := context.WithTimeout(ctx, tailDialTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.loginURL, bytes.NewReader(body))
	if err != nil {
		return "", tailPermanentErr(fmt.Errorf("log in: %w", err))
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := t.client.Do(req)
	if err != nil {
		return "", fmt.Errorf("log in: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		err := fmt.Errorf("log in as %q at %s: %s%s", t.username, t.loginURL, resp.Status, tailAPIError(resp))
		if tailPermanentStatus(resp.StatusCode) {
			return "", tailPermanentErr(err)
		}
		return "", err
	}
	var out struct {
		Token string `json:"token"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&out); err != nil || out.Token == "" {
		return "", tailPermanentErr(fmt.Errorf("log in at %s: no token in the answer", t.loginURL))
	}
	fmt.Fprintf(t.stderr, "tail: logged in as %s\n", t.username)
	return out.Token, nil
}
