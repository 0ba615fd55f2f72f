package stream

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
)

// RedactURL returns a NATS URL, or a comma-separated list of them, without
// userinfo (user, password or token): what may be printed in a banner, a
// log or an error. A URL that does not parse is replaced whole, since it
// may hold a secret where the parser cannot tell.
func RedactURL(s string) string {
	parts := strings.Split(s, ",")
	for i, p := range parts {
		parts[i] = redactOne(strings.TrimSpace(p))
	}
	return strings.Join(parts, ",")
}

func redactOne(s string) string {
	if s == "" {
		return s
	}
	raw := s
	if !strings.Contains(s, "://") {
		raw = "nats://" + s
	}
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		if !strings.Contains(s, "@") {
			return s
		}
		return "(a NATS URL that does not parse)"
	}
	u.User = nil
	out := u.String()
	if strings.Contains(out, "@") {
		// An "@" left elsewhere (a path, a fragment) may still be a
		// secret's end: say nothing of it.
		return "(a NATS URL that does not parse)"
	}
	if raw != s {
		out = strings.TrimPrefix(out, "nats://")
	}
	return out
}

// secretsOf returns the userinfo parts of the URLs in s (passwords, tokens,
// users): what must never be printed.
func secretsOf(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		p = strings.TrimSpace(p)
		at := strings.LastIndex(p, "@")
		if at < 0 {
			continue
		}
		info := p[:at]
		if i := strings.Index(info, "://"); i >= 0 {
			info = info[i+3:]
		}
		if info == "" {
			continue
		}
		out = append(out, info)
		if user, pass, ok := strings.Cut(info, ":"); ok {
			out = append(out, user, pass)
			if dec, err := url.PathUnescape(pass); err == nil && dec != pass {
				out = append(out, dec)
			}
		} else if dec, err := url.PathUnescape(info); err == nil && dec != info {
			out = append(out, dec)
		}
	}
	return out
}

// RedactError returns err with every userinfo part of the URLs in urls
// replaced in its text; errors.Is and errors.As still see err.
func RedactError(err error, urls string) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	for _, s := range secretsOf(urls) {
		if len(s) >= 3 {
			msg = strings.ReplaceAll(msg, s, "REDACTED")
		}
	}
	if msg == err.Error() {
		return err
	}
	return &redactedError{msg: msg, err: err}
}

type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }

// globalAccount is the directory of the global account's JetStream data,
// where a server without accounts (every release before operator mode)
// keeps its streams.
const globalAccount = "$G"

// adoptGlobalAccount moves the JetStream data of the global account under
// storeDir to the account's directory, when there is such data and the
// account has none yet: so that an upgrade to operator mode finds FLEET,
// AUDIT, MISSIONS and the buckets again. It must run before the server
// starts. It reports whether it moved anything.
func adoptGlobalAccount(storeDir, account string) (bool, error) {
	if account == "" || strings.ContainsAny(account, `/\.`) {
		return false, fmt.Errorf("adopt the global account's data: bad account %q", account)
	}
	js := filepath.Join(storeDir, "jetstream")
	from, to := filepath.Join(js, globalAccount), filepath.Join(js, account)
	if fi, err := os.Stat(from); err != nil || !fi.IsDir() {
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return false, fmt.Errorf("adopt the global account's data: %w", err)
		}
		return false, nil
	}
	if _, err := os.Stat(to); err == nil {
		return false, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return false, fmt.Errorf("adopt the global account's data: %w", err)
	}
	if err := os.Rename(from, to); err != nil {
		return false, fmt.Errorf("adopt the global account's data: %w", err)
	}
	// The rename is durable once its directory is synced.
	if d, err := os.Open(js); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return true, nil
}
